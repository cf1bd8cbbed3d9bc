/**
 * Federation: the server-to-server streams of one server instance. It implements the core's
 * `RemoteDomains` (the router hands it every stanza for a domain that is not ours) and owns
 *
 * - the outgoing streams, one per (local domain, remote domain) pair, made on demand, reused,
 *   closed when idle (outgoing.ts);
 * - the incoming streams the s2s listener accepts (incoming.ts);
 * - the XEP-0220 dialback keys, made from each host's persistent secret.
 *
 * In a cluster each node keeps its own streams: a stanza leaves from the node its sender is on,
 * so nothing crosses between nodes to reach a remote domain, and a node that dies takes only
 * its own streams with it. The dialback secret is in the shared storage, so any node can
 * answer a verification request for a key another node gave out.
 */
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import type net from "node:net";
import { dirname, join } from "node:path";
import type { TLSSocket } from "node:tls";
import { resolveDataPath } from "../core/config/load.ts";
import type { Core, Listener, RemoteDomains } from "../core/contracts.ts";
import type { Logger } from "../core/log.ts";
import { SocketListener } from "../net/listener.ts";
import { XmlSocket } from "../net/xml-socket.ts";
import type { Element } from "../xml/element.ts";
import { errorReply, mayReplyWithError, StanzaError } from "../xmpp/errors.ts";
import type { JID } from "../xmpp/jid.ts";
import { type PeerCheck, PeerVerifier } from "./certificates.ts";
import { dialbackKey, keysMatch } from "./dialback.ts";
import { type DialbackOutcome, IncomingStream } from "./incoming.ts";
import { type OutgoingContext, OutgoingStream, S2S_PING_PREFIX } from "./outgoing.ts";
import { type Resolver, S2SResolver } from "./resolver.ts";

/** What `parley s2s` shows of one open stream. */
export interface S2SStreamInfo {
	direction: "incoming" | "outgoing";
	local: string;
	/** The remote domains it carries (several on an incoming stream: XEP-0220 §2.5). */
	remote: string[];
	state: string;
	/** How each remote domain authenticated ("external", "dialback"), in `remote`'s order. */
	auth: string[];
	tls: string | null;
	/** ISO 8601: when the connection was made. */
	since: string;
}

/**
 * The file a running server keeps its streams in, under `data_dir` (one per process, so the
 * workers of `server.workers` and a CLI next to them do not collide): `parley s2s` reads it.
 */
export function s2sStatusFile(dataDir: string, pid: number): string {
	return join(dataDir, "run", `s2s-${pid}.json`);
}

export class S2SManager implements RemoteDomains {
	readonly #core: Core;
	readonly #log: Logger;
	readonly #resolver: Resolver;
	readonly #out = new Map<string, OutgoingStream>();
	readonly #in = new Set<IncomingStream>();
	/** Messages already sent again once after a dead stream (`#retry`). */
	readonly #retried = new WeakSet<Element>();
	readonly #outCtx: OutgoingContext;
	readonly #verifier: PeerVerifier;
	readonly #statusFile: string;
	#statusTimer: NodeJS.Timeout | null = null;
	#stopping = false;

	constructor(core: Core, resolver?: Resolver) {
		this.#core = core;
		this.#log = core.log.child({ component: "s2s" });
		const cfg = core.config.s2s;
		this.#resolver = resolver ?? new S2SResolver(cfg.routes);
		this.#verifier = new PeerVerifier(cfg.ca_file);
		this.#statusFile = s2sStatusFile(resolveDataPath(core.config, "."), process.pid);
		this.#outCtx = {
			log: this.#log,
			metrics: core.metrics,
			requireEncryption: cfg.require_encryption,
			connectTimeoutMs: cfg.connect_timeout * 1000,
			idleTimeoutMs: cfg.idle_timeout * 1000,
			idlePingMs: cfg.idle_ping * 1000,
			pingTimeoutMs: cfg.ping_timeout * 1000,
			queueSize: cfg.queue_size,
			stanzaBytes: core.config.limits.stanza_size,
			maxDepth: core.config.limits.max_depth,
			resolve: (domain) => this.#resolver.resolve(domain),
			tlsOptions: (local) => ({ secureContext: core.certificates.contextFor(local) }),
			dialbackKey: (local, remote, id) => this.#key(local, remote, id),
			secureFor: (remote) => this.secureFor(remote),
			checkPeer: (socket, domain) => this.#checkPeer(socket, domain),
			bounce: (stanza, error) => this.#bounce(stanza, error),
			authenticated: () => this.#changed(),
			ended: (stream) => {
				const key = pairKey(stream.local, stream.remote);
				if (this.#out.get(key) === stream) this.#out.delete(key);
				this.#changed();
			},
			retry: (stream, stanzas) => this.#retry(stream, stanzas),
		};
	}

	async start(): Promise<void> {
		await this.#writeStatus();
	}

	/** The list of streams changed: the status file follows within a fifth of a second. */
	#changed(): void {
		if (this.#statusTimer || this.#stopping) return;
		this.#statusTimer = setTimeout(() => {
			this.#statusTimer = null;
			void this.#writeStatus();
		}, 200);
		this.#statusTimer.unref();
	}

	async #writeStatus(): Promise<void> {
		const file = this.#statusFile;
		const body = JSON.stringify({
			pid: process.pid,
			updated: new Date().toISOString(),
			streams: this.streams(),
		});
		try {
			await mkdir(dirname(file), { recursive: true });
			// Written aside and renamed, so a reader never sees half a file.
			await writeFile(`${file}.tmp`, body);
			await rename(`${file}.tmp`, file);
		} catch (err) {
			this.#log.warn({ err, file }, "could not write the s2s status file");
		}
	}

	send(stanza: Element, from: JID, to: JID): void {
		const remote = to.domain;
		if (this.#stopping) {
			this.#bounce(stanza, new StanzaError("remote-server-not-found", "the server is stopping"));
			return;
		}
		if (!this.allowed(remote)) {
			// Federation with this domain is off by the operator's choice (`s2s.blocked_domains`,
			// `s2s.allowed_domains`): RFC 6120 §8.3.3.16 remote-server-not-found, with the reason.
			this.#bounce(
				stanza,
				new StanzaError("remote-server-not-found", `federation with ${remote} is not allowed here`),
			);
			return;
		}
		this.#outgoing(from.domain, remote).send(stanza);
	}

	/**
	 * Messages a broken stream may not have delivered go once more, on a new stream to the same
	 * domain: at least once rather than lost (docs/architecture.md "Dead connections"). A
	 * message that was already retried once goes back to its sender as an error instead, so a
	 * peer that accepts and drops connections cannot keep a message going round.
	 */
	#retry(stream: OutgoingStream, stanzas: Element[]): void {
		for (const stanza of stanzas) {
			if (this.#stopping || this.#retried.has(stanza)) {
				this.#bounce(
					stanza,
					new StanzaError("remote-server-timeout", `${stream.remote} stopped answering`),
				);
				continue;
			}
			this.#retried.add(stanza);
			this.#outgoing(stream.local, stream.remote).send(stanza);
		}
		this.#log.info(
			{ local: stream.local, remote: stream.remote, messages: stanzas.length },
			"s2s messages sent again after a dead stream",
		);
	}

	/**
	 * An incoming stanza that answers one of our outgoing streams' liveness pings (outgoing.ts)
	 * stops here; any other goes on to the router.
	 */
	#livenessAnswer(stanza: Element): boolean {
		if (stanza.name !== "iq") return false;
		const type = stanza.attrs.type;
		const id = stanza.attrs.id;
		if ((type !== "result" && type !== "error") || !id?.startsWith(S2S_PING_PREFIX)) return false;
		const local = stanza.attrs.to ?? "";
		const remote = stanza.attrs.from ?? "";
		return this.#out.get(pairKey(local, remote))?.pong(id) ?? false;
	}

	/** The outgoing stream for a pair, made when there is none. */
	#outgoing(local: string, remote: string): OutgoingStream {
		const key = pairKey(local, remote);
		let stream = this.#out.get(key);
		if (!stream) {
			stream = new OutgoingStream(local, remote, this.#outCtx);
			this.#out.set(key, stream);
		}
		return stream;
	}

	/** Whether the config lets us federate with `domain` (or the parent domain listed). */
	allowed(domain: string): boolean {
		const cfg = this.#core.config.s2s;
		const matches = (list: string[]) => list.some((d) => domain === d || domain.endsWith(`.${d}`));
		if (matches(cfg.blocked_domains)) return false;
		return cfg.allowed_domains.length === 0 || matches(cfg.allowed_domains);
	}

	/**
	 * Whether `domain` must authenticate with a certificate (`s2s.secure_auth`, Prosody's
	 * s2s_secure_auth), with the per-domain exceptions.
	 */
	secureFor(domain: string): boolean {
		const cfg = this.#core.config.s2s;
		const listed = (list: string[]) => list.some((d) => domain === d || domain.endsWith(`.${d}`));
		if (listed(cfg.secure_domains)) return true;
		if (listed(cfg.insecure_domains)) return false;
		return cfg.secure_auth;
	}

	#checkPeer(socket: XmlSocket, domain: string): PeerCheck {
		if (!socket.secure) return { valid: false, reason: "no TLS" };
		return this.#verifier.check(socket.socket as TLSSocket, domain);
	}

	#key(originating: string, receiving: string, id: string): string {
		const host = this.#core.hosts.get(originating) ?? this.#core.components.get(originating);
		// Hosts and components have their own secrets; a subdomain an external component serves
		// (not a component itself) signs with its parent host's.
		const secret = host?.secret.length ? host.secret : this.#parentSecret(originating);
		return dialbackKey(secret, receiving, originating, id);
	}

	#parentSecret(domain: string): Buffer {
		for (const [name, host] of this.#core.hosts)
			if (domain.endsWith(`.${name}`)) return host.secret;
		return this.#core.hosts.values().next().value?.secret ?? Buffer.alloc(0);
	}

	#bounce(stanza: Element, error: StanzaError): void {
		// RFC 6120 §8.3.1: never answer an error with an error.
		if (!mayReplyWithError(stanza)) return;
		void this.#core.router.route(errorReply(stanza, error)).catch((err: unknown) => {
			this.#log.error({ err }, "s2s bounce failed");
		});
	}

	/** The listeners for incoming streams: `[listeners.s2s]` and `[listeners.s2s_direct_tls]`. */
	listeners(): Listener[] {
		const core = this.#core;
		const l = core.config.listeners;
		const out: Listener[] = [];
		// Peer servers count as unauthenticated for their connections' whole life: a server
		// needs a few, and limits.unauthenticated_per_ip bounds a flood of idle ones.
		const common = {
			log: core.log,
			limiters: [core.connectionLimiter, core.unauthenticatedLimiter],
		};
		if (l.s2s.enabled)
			out.push(
				new SocketListener({
					...common,
					kind: "s2s",
					address: l.s2s.address,
					port: l.s2s.port,
					onSocket: (socket) => this.accept(socket, false),
				}),
			);
		// XEP-0368: TLS from the first byte, ALPN "xmpp-server", the certificate by SNI; the
		// peer's certificate is asked for and checked by us (SASL EXTERNAL), not by OpenSSL.
		if (l.s2s_direct_tls.enabled)
			out.push(
				new SocketListener({
					...common,
					kind: "s2s_direct_tls",
					address: l.s2s_direct_tls.address,
					port: l.s2s_direct_tls.port,
					tls: () => ({
						...core.certificates.serverOptions(),
						requestCert: true,
						rejectUnauthorized: false,
						ALPNProtocols: ["xmpp-server"],
						// No longer than a stream gets to authenticate (Node's default is 120 s).
						handshakeTimeout: Math.min(120_000, core.config.limits.auth_timeout * 1000),
					}),
					onSocket: (socket) => this.accept(socket, true),
				}),
			);
		return out;
	}

	/** Takes an accepted connection (already TLS for XEP-0368 direct TLS). */
	accept(socket: net.Socket, secure: boolean): void {
		const core = this.#core;
		const cfg = core.config;
		const stream: IncomingStream = new IncomingStream({
			log: this.#log,
			jids: core.jids,
			requireEncryption: cfg.s2s.require_encryption,
			stanzaBytes: cfg.limits.stanza_size,
			authTimeoutMs: cfg.limits.auth_timeout * 1000,
			isLocal: (domain) => core.local(domain) !== undefined,
			allowed: (domain) => this.allowed(domain),
			tooManyStreams: (domain, self) => {
				let n = 0;
				for (const s of this.#in) if (s !== self && s.remoteDomains.includes(domain)) n++;
				if (n < cfg.s2s.max_streams_per_domain) return false;
				core.metrics.refused("s2s.max_streams_per_domain");
				return true;
			},
			secureFor: (domain) => this.secureFor(domain),
			checkPeer: (socket, domain) => this.#checkPeer(socket, domain),
			// Prosody 0.12 sends no SNI on s2s: the stream header's `to` chooses the certificate,
			// SNI (when there is one) still wins through the SNICallback.
			startTls: (s, local) => {
				// The peer's certificate is asked for (and checked by us, not OpenSSL) for SASL
				// EXTERNAL; a peer without one can still use dialback.
				const options = { ...core.certificates.serverOptions(), requestCert: true };
				const context = local ? core.certificates.contextFor(local) : undefined;
				return s.startTlsServer(context ? { ...options, secureContext: context } : options);
			},
			dialbackKey: (originating, receiving, id) => this.#key(originating, receiving, id),
			keysMatch,
			verifyWithAuthority: (receiving, originating, id, key) =>
				this.#verify(receiving, originating, id, key),
			route: (stanza) => {
				if (this.#livenessAnswer(stanza)) return Promise.resolve();
				core.metrics.stanzaIn("s2s", stanza.name);
				return core.router.route(stanza);
			},
			authenticated: () => this.#changed(),
			ended: (s) => {
				this.#in.delete(s);
				this.#changed();
			},
		});
		const s2sSocket = new XmlSocket(
			socket,
			secure,
			{ stanzaBytes: cfg.limits.preauth_stanza_size, maxDepth: cfg.limits.max_depth },
			{
				streamStart: (attrs, name, ns, defaultNs) => stream.streamStart(attrs, name, ns, defaultNs),
				element: (el) => stream.element(el),
				streamEnd: () => stream.streamEnd(),
				parseError: (condition, text) => stream.parseError(condition, text),
				closed: () => stream.closed(),
			},
			this.#log,
		);
		stream.attach(s2sSocket);
		this.#in.add(stream);
	}

	/**
	 * XEP-0220 §2.1.2: asks the authoritative server of `originating` whether `key` is right,
	 * over our outgoing stream to it (made if needed; the verification does not wait for our own
	 * authentication on it).
	 */
	async #verify(
		receiving: string,
		originating: string,
		id: string,
		key: string,
	): Promise<DialbackOutcome> {
		const stream = this.#outgoing(receiving, originating);
		const valid = await stream.verify(receiving, id, key);
		if (valid) return "valid";
		// The stream to the authority failed, so it was never asked: XEP-0220 §2.4
		// remote-server-not-found, not a verdict on the key.
		return stream.state === "closed" ? { error: "remote-server-not-found" } : "invalid";
	}

	/** Open streams, for the logs and the CLI. */
	/** Open streams each way, for the metrics (`parley_s2s_streams`). */
	streamCounts(): { incoming: number; outgoing: number } {
		return { incoming: this.#in.size, outgoing: this.#out.size };
	}

	streams(): S2SStreamInfo[] {
		return [
			...[...this.#out.values()].map((s) => ({
				direction: "outgoing" as const,
				local: s.local,
				remote: [s.remote],
				state: s.state,
				auth: [s.method],
				tls: s.tlsVersion,
				since: new Date(s.since).toISOString(),
			})),
			...[...this.#in].map((s) => {
				const remote = s.remoteDomains;
				return {
					direction: "incoming" as const,
					local: s.local,
					remote,
					state: remote.length ? "ready" : "negotiating",
					auth: remote.map((d) => s.methods.get(d) ?? ""),
					tls: s.tlsVersion,
					since: new Date(s.since).toISOString(),
				};
			}),
		];
	}

	/** The streams of a local domain a reload removed (`RemoteDomains.domainGone`). */
	domainGone(domain: string): void {
		for (const s of [...this.#in])
			if (s.local === domain) s.close("host-gone", `${domain} is no longer served here`);
		for (const s of [...this.#out.values()]) if (s.local === domain) s.close();
	}

	async stop(): Promise<void> {
		this.#stopping = true;
		if (this.#statusTimer) clearTimeout(this.#statusTimer);
		await rm(this.#statusFile, { force: true });
		for (const s of [...this.#in]) s.close("system-shutdown");
		for (const s of [...this.#out.values()]) s.close();
		this.#in.clear();
		this.#out.clear();
	}
}

function pairKey(local: string, remote: string): string {
	return `${local} ${remote}`;
}
