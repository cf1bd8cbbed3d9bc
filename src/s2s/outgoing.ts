/**
 * An outgoing server-to-server stream: from one local domain to one remote domain (RFC 6120
 * §4, the initiating entity). It connects to the targets the resolver gives, negotiates
 * STARTTLS, authenticates with Server Dialback (XEP-0220 §2.1) and then carries stanzas.
 * Stanzas that arrive before it is ready wait in a bounded queue; when it fails, each of them
 * goes back to its sender as an error (RFC 6120 §8.3), none is dropped silently.
 *
 * The same stream carries the dialback verification requests (`<db:verify/>`, XEP-0220 §2.1.2)
 * this server, as a receiving server, sends to the remote domain's authoritative server.
 */
import { randomUUID } from "node:crypto";
import net from "node:net";
import tls from "node:tls";
import type { MetricsRecorder } from "../core/contracts.ts";
import type { Logger } from "../core/log.ts";
import { Liveness } from "../net/liveness.ts";
import { XmlSocket } from "../net/xml-socket.ts";
import { type Attrs, type Element, x } from "../xml/element.ts";
import { StanzaError, type StanzaErrorCondition } from "../xmpp/errors.ts";
import { NS_DIALBACK, NS_PING, NS_SASL, NS_SERVER, NS_STREAMS, NS_TLS } from "../xmpp/ns.ts";
import type { PeerCheck } from "./certificates.ts";
import type { Target } from "./resolver.ts";

export interface OutgoingContext {
	readonly log: Logger;
	/** Counts the stanzas written and a dead peer (docs/architecture.md "Metrics"). */
	readonly metrics: MetricsRecorder;
	readonly requireEncryption: boolean;
	readonly connectTimeoutMs: number;
	readonly idleTimeoutMs: number;
	/**
	 * Liveness of a ready stream (issue 21): a XEP-0199 ping to the remote domain after this
	 * long without a sign of life, answered within `pingTimeoutMs`; 0: no checks.
	 */
	readonly idlePingMs: number;
	readonly pingTimeoutMs: number;
	readonly queueSize: number;
	readonly stanzaBytes: number;
	readonly maxDepth: number;
	resolve(domain: string): Promise<Target[]>;
	/** TLS client options for a local domain: its certificate, for a peer that asks for one. */
	tlsOptions(localDomain: string): tls.ConnectionOptions;
	/** XEP-0220 key for (receiving = remote, originating = local, stream id). */
	dialbackKey(local: string, remote: string, streamId: string): string;
	/** Whether `remote` must prove itself with a certificate (no dialback). */
	secureFor(remote: string): boolean;
	/** Does the peer's certificate on `socket` name `domain` and verify? */
	checkPeer(socket: XmlSocket, domain: string): PeerCheck;
	/** The stanza could not be delivered: answer its sender with this error. */
	bounce(stanza: Element, error: StanzaError): void;
	/** The stream is authenticated and carries stanzas. */
	authenticated(stream: OutgoingStream): void;
	/** The stream is gone (failed, idle or closed); the manager forgets it. */
	ended(stream: OutgoingStream): void;
	/**
	 * Messages written to a stream that then broke, with no sign the remote server read them:
	 * the manager sends them once more on a new stream.
	 */
	retry(stream: OutgoingStream, stanzas: Element[]): void;
}

/** Ids of the liveness pings, so that their answers are told from other IQs. */
export const S2S_PING_PREFIX = "s2s-live-";

type State = "connecting" | "negotiating" | "authenticating" | "ready" | "closed";

interface PendingVerify {
	el: Element;
	resolve: (valid: boolean) => void;
}

export class OutgoingStream {
	readonly local: string;
	readonly remote: string;
	readonly #ctx: OutgoingContext;
	#state: State = "connecting";
	#socket: XmlSocket | null = null;
	#streamId = "";
	readonly #queue: Element[] = [];
	/** db:verify requests waiting for the stream to be past TLS, and those sent, by id. */
	readonly #verifyQueue: PendingVerify[] = [];
	readonly #verifying = new Map<string, PendingVerify>();
	#setupTimer: NodeJS.Timeout | null = null;
	/** When the stream was asked for (ms since the epoch). */
	readonly since = Date.now();
	#idleTimer: NodeJS.Timeout | null = null;
	#dialbackSent = false;
	/** SASL EXTERNAL: not tried yet, sent and waiting, refused, or done (the stream restarted). */
	#sasl: "none" | "sent" | "refused" | "done" = "none";
	/** How this stream authenticated, for the logs: "external" or "dialback". */
	#method = "";
	/** Once ready: is the remote server still reading, and what has it surely read. */
	#liveness: Liveness | null = null;
	/**
	 * The remote server ended the stream itself (its closing tag or a stream error, as Prosody and
	 * ejabberd do when they stop): it read what we wrote (RFC 6120 §4.4: the closing side keeps
	 * processing what it receives), so nothing is sent again.
	 */
	#peerClosed = false;

	constructor(local: string, remote: string, ctx: OutgoingContext) {
		this.local = local;
		this.remote = remote;
		this.#ctx = ctx;
		this.#setupTimer = setTimeout(
			() => this.fail("remote-server-timeout", "the remote server did not answer in time"),
			ctx.connectTimeoutMs,
		);
		this.#setupTimer.unref();
		void this.#connect();
	}

	get state(): State {
		return this.#state;
	}

	get ready(): boolean {
		return this.#state === "ready";
	}

	get tlsVersion(): string | null {
		return this.#socket?.tlsVersion ?? null;
	}

	/** "external" or "dialback" once authenticated. */
	get method(): string {
		return this.#method;
	}

	/** Sends a stanza now, or queues it until the stream is authenticated. */
	send(stanza: Element): void {
		if (this.#state === "ready" && this.#socket) {
			this.#socket.send(stanza);
			this.#ctx.metrics.stanzaOut("s2s", stanza.name);
			this.#liveness?.sent(stanza);
			this.#touch();
			return;
		}
		if (this.#state === "closed") {
			this.#ctx.bounce(stanza, new StanzaError("remote-server-not-found"));
			return;
		}
		if (this.#queue.length >= this.#ctx.queueSize) {
			// RFC 6120 §8.3.3.19 resource-constraint: too much is waiting for this domain.
			this.#ctx.bounce(
				stanza,
				new StanzaError("resource-constraint", `too many stanzas waiting for ${this.remote}`),
			);
			return;
		}
		this.#queue.push(stanza);
	}

	/**
	 * XEP-0220 §2.1.2: asks the remote domain's authoritative server whether `key` is the one
	 * it gave `receiving`'s stream `id`. Resolves false on any failure.
	 */
	verify(receiving: string, id: string, key: string): Promise<boolean> {
		return new Promise((resolve) => {
			const el = x("db:verify", { xmlns: NS_DIALBACK, from: receiving, to: this.remote, id }, key);
			const pending = { el, resolve };
			if (this.#state === "closed") return resolve(false);
			if ((this.#state === "authenticating" || this.#state === "ready") && this.#socket) {
				this.#sendVerify(pending);
			} else this.#verifyQueue.push(pending);
		});
	}

	#sendVerify(p: PendingVerify): void {
		const id = p.el.attrs.id ?? "";
		this.#verifying.set(id, p);
		this.#socket?.send(p.el);
	}

	async #connect(): Promise<void> {
		let targets: Target[];
		try {
			targets = await this.#ctx.resolve(this.remote);
		} catch (err) {
			this.#ctx.log.debug({ err, remote: this.remote }, "s2s resolution failed");
			targets = [];
		}
		if (this.#state === "closed") return;
		if (targets.length === 0) {
			this.fail("remote-server-not-found", `no XMPP service found for ${this.remote}`);
			return;
		}
		for (const target of targets) {
			try {
				const socket = await this.#open(target);
				if ((this.#state as State) === "closed") {
					socket.destroy();
					return;
				}
				this.#attach(socket, target.directTls);
				return;
			} catch (err) {
				this.#ctx.log.debug(
					{ err: (err as Error).message, remote: this.remote, target },
					"s2s connection attempt failed",
				);
			}
		}
		this.fail("remote-server-not-found", `could not connect to ${this.remote}`);
	}

	#open(target: Target): Promise<net.Socket> {
		return new Promise((resolve, reject) => {
			const socket = target.directTls
				? tls.connect({
						...this.#ctx.tlsOptions(this.local),
						host: target.host,
						port: target.port,
						servername: this.remote,
						// XEP-0368 §3: the ALPN protocol of direct TLS server-to-server streams.
						ALPNProtocols: ["xmpp-server"],
						rejectUnauthorized: false,
					})
				: net.connect({ host: target.host, port: target.port });
			const ready = target.directTls ? "secureConnect" : "connect";
			socket.once(ready, () => {
				socket.off("error", reject);
				resolve(socket);
			});
			socket.once("error", reject);
		});
	}

	#attach(raw: net.Socket, secure: boolean): void {
		this.#state = "negotiating";
		this.#socket = new XmlSocket(
			raw,
			secure,
			{ stanzaBytes: this.#ctx.stanzaBytes, maxDepth: this.#ctx.maxDepth },
			{
				streamStart: (attrs, name, ns, defaultNs) => this.#streamStart(attrs, name, ns, defaultNs),
				element: (el) => this.#element(el),
				streamEnd: () => {
					this.#peerClosed = true;
					this.fail("remote-server-not-found", "the remote server closed the stream");
				},
				parseError: (_condition, text) => this.fail("remote-server-not-found", `bad XML: ${text}`),
				closed: () => this.fail("remote-server-not-found", "the connection closed"),
				inbound: () => this.#liveness?.inbound(),
			},
			this.#ctx.log,
		);
		this.#openStream();
	}

	#openStream(): void {
		const attrs: Attrs = Object.create(null);
		attrs.from = this.local;
		attrs.to = this.remote;
		attrs.version = "1.0";
		this.#socket?.openStream(NS_SERVER, attrs, { db: NS_DIALBACK });
	}

	#streamStart(attrs: Attrs, name: string, ns: string | null, defaultNs: string | null): void {
		if (name !== "stream" || ns !== NS_STREAMS || defaultNs !== NS_SERVER) {
			this.fail("remote-server-not-found", "the remote server did not open an s2s stream");
			return;
		}
		this.#streamId = attrs.id ?? "";
		if (attrs.version === undefined) {
			// RFC 6120 §4.7.5: a peer without version 1.0 sends no features; only dialback
			// without TLS is possible, which our policy may forbid.
			if (this.#ctx.requireEncryption && !this.#socket?.secure) {
				this.fail("remote-server-not-found", "the remote server does not offer TLS");
				return;
			}
			this.#state = "authenticating";
			for (const p of this.#verifyQueue.splice(0)) this.#sendVerify(p);
			this.#dialback();
		}
	}

	#element(el: Element): void {
		if (el.ns === NS_STREAMS && el.name === "features") {
			this.#features(el);
			return;
		}
		if (el.ns === NS_TLS) {
			if (el.name === "proceed") {
				void this.#startTls();
				return;
			}
			this.fail("remote-server-not-found", "the remote server refused STARTTLS");
			return;
		}
		if (el.ns === NS_DIALBACK) {
			this.#dialbackAnswer(el);
			return;
		}
		if (el.ns === NS_SASL) {
			this.#saslOutcome(el);
			return;
		}
		if (el.ns === NS_STREAMS && el.name === "error") {
			const condition = el.elements()[0]?.name ?? "undefined-condition";
			this.#ctx.log.info(
				{ remote: this.remote, condition },
				"s2s stream error from the remote server",
			);
			this.#peerClosed = true;
			this.fail(
				condition === "connection-timeout" ? "remote-server-timeout" : "remote-server-not-found",
				`stream error: ${condition}`,
			);
			return;
		}
		// An outgoing stream is one-way (RFC 6120 §2.5): nothing else should come back on it.
		this.#ctx.log.debug(
			{ remote: this.remote, el: el.name },
			"s2s: ignored element on an outgoing stream",
		);
	}

	#features(features: Element): void {
		const socket = this.#socket;
		if (!socket) return;
		const starttls = features.getChild("starttls", NS_TLS);
		if (!socket.secure && starttls) {
			socket.send(x("starttls", { xmlns: NS_TLS }));
			return;
		}
		if (!socket.secure && this.#ctx.requireEncryption) {
			this.fail("remote-server-not-found", "the remote server does not offer TLS");
			return;
		}
		// Past TLS: dialback verification requests may go now, whatever we authenticate with.
		this.#state = "authenticating";
		for (const p of this.#verifyQueue.splice(0)) this.#sendVerify(p);
		if (this.#sasl === "done") {
			// RFC 6120 §6.4.6: the stream restarted after SASL; nothing else is negotiated on s2s.
			this.#ready("external");
			return;
		}
		const secure = this.#ctx.secureFor(this.remote);
		if (secure) {
			// A peer held to certificates must show one for its domain (RFC 6120 §13.7.2).
			const check = this.#ctx.checkPeer(socket, this.remote);
			if (!check.valid) {
				this.fail("remote-server-not-found", `the certificate of ${this.remote}: ${check.reason}`);
				return;
			}
		}
		// XEP-0178 §3: a receiving server offers EXTERNAL when it accepts our certificate; the
		// authorization identity is our domain.
		const mechanisms = features.getChild("mechanisms", NS_SASL);
		const external = mechanisms
			?.getChildren("mechanism")
			.some((m) => m.text().trim().toUpperCase() === "EXTERNAL");
		if (socket.secure && external && this.#sasl === "none") {
			this.#sasl = "sent";
			socket.send(
				x(
					"auth",
					{ xmlns: NS_SASL, mechanism: "EXTERNAL" },
					Buffer.from(this.local).toString("base64"),
				),
			);
			return;
		}
		if (secure) {
			this.fail("remote-server-not-found", `${this.remote} does not accept our certificate`);
			return;
		}
		// XEP-0220 §2.1: dialback. RFC 6120 peers advertise it (urn:xmpp:features:dialback), older
		// ones do not, and Prosody accepts dialback either way, so it is tried anyway.
		this.#dialback();
	}

	/** RFC 6120 §6.4.6 / §6.4.5: the answer to our SASL EXTERNAL. */
	#saslOutcome(el: Element): void {
		const socket = this.#socket;
		if (!socket || this.#sasl !== "sent") return;
		if (el.name === "success") {
			this.#sasl = "done";
			socket.resetParser();
			this.#openStream();
			return;
		}
		this.#sasl = "refused";
		const condition = el.elements()[0]?.name ?? "failure";
		this.#ctx.log.info(
			{ local: this.local, remote: this.remote, condition },
			"s2s SASL EXTERNAL refused; trying dialback",
		);
		if (this.#ctx.secureFor(this.remote)) {
			this.fail("remote-server-not-found", `${this.remote} refused our certificate (${condition})`);
			return;
		}
		this.#dialback();
	}

	async #startTls(): Promise<void> {
		const socket = this.#socket;
		if (!socket) return;
		socket.resetParser();
		try {
			await socket.startTlsClient(this.remote, this.#ctx.tlsOptions(this.local));
		} catch (err) {
			this.fail("remote-server-not-found", `TLS failed: ${(err as Error).message}`);
			return;
		}
		// RFC 6120 §5.4.3.3: a new stream over TLS.
		this.#openStream();
	}

	/** XEP-0220 §2.1.1: our key for this stream, to be checked with our authoritative server. */
	#dialback(): void {
		if (this.#dialbackSent) return;
		this.#dialbackSent = true;
		const key = this.#ctx.dialbackKey(this.local, this.remote, this.#streamId);
		this.#socket?.send(
			x("db:result", { xmlns: NS_DIALBACK, from: this.local, to: this.remote }, key),
		);
	}

	#dialbackAnswer(el: Element): void {
		const type = el.attrs.type;
		if (el.name === "verify") {
			const p = this.#verifying.get(el.attrs.id ?? "");
			if (!p) return;
			this.#verifying.delete(el.attrs.id ?? "");
			p.resolve(type === "valid");
			return;
		}
		if (el.name !== "result" || el.attrs.from !== this.remote || el.attrs.to !== this.local) return;
		if (type === "valid") {
			this.#ready("dialback");
			return;
		}
		// XEP-0220 §2.4: an error says why (e.g. item-not-found: the domain is not hosted there).
		const condition = el.getChild("error")?.elements()[0]?.name;
		this.fail(
			"remote-server-not-found",
			type === "error" ? `dialback error: ${condition ?? "unknown"}` : "dialback refused",
		);
	}

	#ready(method: "external" | "dialback"): void {
		if (this.#setupTimer) clearTimeout(this.#setupTimer);
		this.#setupTimer = null;
		this.#state = "ready";
		this.#method = method;
		this.#ctx.log.info(
			{
				direction: "outgoing",
				local: this.local,
				remote: this.remote,
				auth: method,
				tls: this.#socket?.tlsVersion ?? "none",
			},
			"s2s stream authenticated",
		);
		this.#startLiveness();
		const socket = this.#socket;
		for (const stanza of this.#queue.splice(0)) {
			socket?.send(stanza);
			this.#ctx.metrics.stanzaOut("s2s", stanza.name);
			this.#liveness?.sent(stanza);
		}
		this.#touch();
		this.#ctx.authenticated(this);
	}

	/**
	 * Issue 21: a remote server whose network vanished reads nothing and says nothing, and TCP
	 * may not tell for many minutes. So after `idlePingMs` without a byte on this stream the
	 * remote domain gets a XEP-0199 ping (§4.3, server to server); its answer comes back on the
	 * remote's own stream to us (RFC 6120 §4.1: streams are one-way), where the manager hands
	 * it to `pong`. No answer within `pingTimeoutMs`: the stream is dead, and the messages
	 * written since the last answered ping are sent again on a new stream.
	 */
	#startLiveness(): void {
		if (this.#ctx.idlePingMs <= 0) return;
		this.#liveness = new Liveness(
			{
				idlePing: this.#ctx.idlePingMs,
				pingTimeout: this.#ctx.pingTimeoutMs,
				// Every message counts between servers, groupchat included (a room elsewhere has
				// no copy of what our user sent it).
				track: (stanza) => stanza.name === "message" && stanza.attrs.type !== "error",
			},
			{
				ping: (id) =>
					this.#socket?.send(
						x(
							"iq",
							{ type: "get", id: `${S2S_PING_PREFIX}${id}`, from: this.local, to: this.remote },
							x("ping", { xmlns: NS_PING }),
						),
					),
				dead: () => this.#dead(),
			},
		);
		this.#liveness.start();
	}

	/** The answer to a liveness ping (the manager found it on an incoming stream). */
	pong(id: string): boolean {
		if (!id.startsWith(S2S_PING_PREFIX)) return false;
		return this.#liveness?.answered(id.slice(S2S_PING_PREFIX.length)) ?? false;
	}

	#dead(): void {
		if (this.#state === "closed") return;
		this.#ctx.log.info(
			{ local: this.local, remote: this.remote, reason: "no answer to a ping" },
			"s2s outgoing stream dead",
		);
		this.#ctx.metrics.deadPeer("s2s");
		// Written but never confirmed: they go again, on a new stream (the manager's `retry`).
		const unread = this.#liveness?.stop() ?? [];
		this.#liveness = null;
		this.fail("remote-server-timeout", "the remote server stopped answering");
		if (unread.length) this.#ctx.retry(this, unread);
	}

	#touch(): void {
		if (this.#idleTimer) this.#idleTimer.refresh();
		else {
			this.#idleTimer = setTimeout(() => this.close(), this.#ctx.idleTimeoutMs);
			this.#idleTimer.unref();
		}
	}

	/** Gives up: waiting stanzas go back to their senders with `condition`. */
	fail(condition: StanzaErrorCondition, text: string): void {
		if (this.#state === "closed") return;
		const wasReady = this.#state === "ready";
		// The connection broke under a ready stream: what it carried since the last answered
		// ping may be lost, so it goes again (stanzas still queued bounce below, as before). Not
		// when the remote server closed the stream: it had read them, and they would arrive twice
		// (or, with the server still down, come back to their senders as errors though delivered).
		const unread = this.#liveness?.stop() ?? [];
		this.#liveness = null;
		this.#end();
		if (unread.length && !this.#peerClosed) this.#ctx.retry(this, unread);
		if (!wasReady)
			this.#ctx.log.info(
				{ local: this.local, remote: this.remote, reason: text },
				"s2s outgoing stream failed",
			);
		else
			this.#ctx.log.info(
				{ local: this.local, remote: this.remote, reason: text },
				"s2s outgoing stream closed",
			);
		for (const stanza of this.#queue.splice(0))
			this.#ctx.bounce(stanza, new StanzaError(condition, text));
	}

	/** Closes the stream (idle, or the server stops). */
	close(): void {
		if (this.#state === "closed") return;
		this.#end();
		this.#ctx.log.debug({ local: this.local, remote: this.remote }, "s2s outgoing stream closed");
		for (const stanza of this.#queue.splice(0))
			this.#ctx.bounce(stanza, new StanzaError("remote-server-not-found", "the stream closed"));
	}

	#end(): void {
		this.#state = "closed";
		this.#liveness?.stop();
		this.#liveness = null;
		if (this.#setupTimer) clearTimeout(this.#setupTimer);
		if (this.#idleTimer) clearTimeout(this.#idleTimer);
		this.#setupTimer = this.#idleTimer = null;
		this.#socket?.close();
		for (const p of this.#verifyQueue.splice(0)) p.resolve(false);
		for (const p of this.#verifying.values()) p.resolve(false);
		this.#verifying.clear();
		this.#ctx.ended(this);
	}
}

export function newStreamId(): string {
	return randomUUID().replaceAll("-", "");
}
