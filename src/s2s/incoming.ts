/**
 * An incoming server-to-server stream (RFC 6120 §4, the receiving entity). It offers STARTTLS
 * (required by default), then Server Dialback (XEP-0220): it verifies each domain a peer claims
 * with that domain's authoritative server before accepting stanzas from it, and answers the
 * verification requests of servers that received our own keys (`<db:verify/>`).
 *
 * A peer speaks only for the (from-domain, to-domain) pairs it authenticated: any other `from`
 * ends the stream with `invalid-from` (RFC 6120 §4.9.3.9), a `to` not hosted here with
 * `host-unknown` (§4.9.3.6). Stanzas are routed one at a time, in order (§10.1).
 */
import type { Logger } from "../core/log.ts";
import type { XmlSocket } from "../net/xml-socket.ts";
import { type Attrs, type Element, x } from "../xml/element.ts";
import type { XmlErrorCondition } from "../xml/errors.ts";
import { type StreamErrorCondition, streamErrorElement } from "../xmpp/errors.ts";
import { type JIDCache, JIDError } from "../xmpp/jid.ts";
import {
	NS_DIALBACK,
	NS_DIALBACK_FEATURE,
	NS_SASL,
	NS_SERVER,
	NS_STANZA_ERRORS,
	NS_STREAMS,
	NS_TLS,
} from "../xmpp/ns.ts";
import { intoClientNs } from "../xmpp/stanza.ts";
import type { PeerCheck } from "./certificates.ts";
import { newStreamId } from "./outgoing.ts";

export type DialbackOutcome = "valid" | "invalid" | { error: string };

export interface IncomingContext {
	readonly log: Logger;
	readonly jids: JIDCache;
	readonly requireEncryption: boolean;
	readonly stanzaBytes: number;
	/**
	 * How long a stream may stay without an authenticated domain (`limits.auth_timeout`): RFC 6120
	 * §4.9.3.4 connection-timeout, so silent or never-authenticating peers do not hold sockets.
	 */
	readonly authTimeoutMs: number;
	isLocal(domain: string): boolean;
	/** Federation with this remote domain is allowed by the config. */
	allowed(domain: string): boolean;
	/** A domain authenticated on `stream` (the manager's list of streams changed). */
	authenticated(stream: IncomingStream): void;
	/** `domain` already has `s2s.max_streams_per_domain` other incoming streams. */
	tooManyStreams(domain: string, stream: IncomingStream): boolean;
	/** Whether `domain` must authenticate with a certificate (no dialback). */
	secureFor(domain: string): boolean;
	/** Does the peer's certificate on `socket` name `domain` and verify? */
	checkPeer(socket: XmlSocket, domain: string): PeerCheck;
	/** Upgrades to TLS with the certificate of `local` (the peer may send no SNI). */
	startTls(socket: XmlSocket, local: string): Promise<void>;
	/** XEP-0220 key this server (as `originating`) would have given `receiving`'s stream `id`. */
	dialbackKey(originating: string, receiving: string, id: string): string;
	keysMatch(received: string, expected: string): boolean;
	/** XEP-0220 §2.1.2: asks `originating`'s authoritative server about a key. */
	verifyWithAuthority(
		receiving: string,
		originating: string,
		id: string,
		key: string,
	): Promise<DialbackOutcome>;
	route(stanza: Element): Promise<void>;
	ended(stream: IncomingStream): void;
}

const STANZAS = new Set(["message", "presence", "iq"]);
/** Stanzas being routed before the stream stops reading (as for client streams). */
const MAX_QUEUE = 64;
/** Dialback claims (`<db:result/>`) of one stream being verified at once. */
const MAX_VERIFYING = 8;

export class IncomingStream {
	readonly id = newStreamId();
	readonly #ctx: IncomingContext;
	#socket!: XmlSocket;
	#state: "header" | "open" | "closed" = "header";
	/** The local domain the peer's stream header addressed. */
	#local = "";
	/** "remote local" pairs the peer has authenticated (XEP-0220 §2.5: several per stream). */
	readonly #authenticated = new Set<string>();
	#pending = 0;
	/** XEP-0220 verifications of the peer's claims still waiting for the authority's answer. */
	#verifying = 0;
	#chain: Promise<void> = Promise.resolve();
	/** The domain the peer's stream header says it is (RFC 6120 §4.7.1 'from'). */
	#peerFrom = "";
	/** The domain SASL EXTERNAL authenticated; the stream restarted after it. */
	#saslDomain = "";
	/** How each remote domain authenticated: "external" or "dialback". */
	readonly methods = new Map<string, string>();
	/** When the connection was accepted (ms since the epoch). */
	readonly since = Date.now();
	/** Until a domain authenticates (RFC 6120 §4.9.3.4); see `#authTimedOut`. */
	#authTimer: NodeJS.Timeout | null = null;

	constructor(ctx: IncomingContext) {
		this.#ctx = ctx;
	}

	/** Connects the socket; called once, right after construction. */
	attach(socket: XmlSocket): void {
		this.#socket = socket;
		this.#armAuthTimer();
	}

	#armAuthTimer(): void {
		if (this.#authTimer) clearTimeout(this.#authTimer);
		this.#authTimer = setTimeout(() => this.#authTimedOut(), this.#ctx.authTimeoutMs);
		this.#authTimer.unref();
	}

	#stopAuthTimer(): void {
		if (this.#authTimer) clearTimeout(this.#authTimer);
		this.#authTimer = null;
	}

	/**
	 * No domain authenticated in time. A dialback verification still running (bounded by
	 * `s2s.connect_timeout`) gets its answer first; otherwise the stream ends with
	 * connection-timeout (RFC 6120 §4.9.3.4), as a client stream does.
	 */
	#authTimedOut(): void {
		this.#authTimer = null;
		if (this.#state === "closed" || this.#authenticated.size > 0) return;
		if (this.#verifying > 0) {
			this.#armAuthTimer();
			return;
		}
		this.close("connection-timeout", "no domain authenticated in time");
	}

	get remoteAddress(): string {
		return this.#socket.remoteAddress;
	}

	/** Remote domains this stream may send from. */
	get remoteDomains(): string[] {
		return [...new Set([...this.#authenticated].map((p) => p.split(" ")[0] ?? ""))];
	}

	get local(): string {
		return this.#local;
	}

	get tlsVersion(): string | null {
		return this.#socket.tlsVersion;
	}

	streamStart(attrs: Attrs, name: string, ns: string | null, defaultNs: string | null): void {
		if (this.#state === "closed") return;
		if (name !== "stream" || ns !== NS_STREAMS) {
			this.close("invalid-namespace", "not an XMPP stream");
			return;
		}
		const to = attrs.to?.toLowerCase();
		if (to !== undefined && to !== "") {
			if (!this.#ctx.isLocal(to)) {
				this.#open(attrs);
				this.close("host-unknown", `${to} is not served here`);
				return;
			}
			this.#local = to;
		}
		if (attrs.from) this.#peerFrom = attrs.from.toLowerCase();
		this.#open(attrs);
		// RFC 6120 §4.8.2: the content namespace of a server-to-server stream is jabber:server.
		if (defaultNs !== NS_SERVER) {
			this.close("invalid-namespace", "use jabber:server");
			return;
		}
		if (attrs.version === undefined) {
			// RFC 6120 §4.7.5: a pre-1.0 peer gets no features; it may only use dialback without
			// TLS, which our policy forbids by default.
			if (this.#ctx.requireEncryption) {
				this.close("unsupported-version", "version 1.0 and TLS are required");
				return;
			}
			return;
		}
		this.#socket.send(this.#features());
	}

	#open(peer: Attrs): void {
		if (this.#state !== "header") return;
		this.#state = "open";
		const attrs: Attrs = Object.create(null);
		if (this.#local) attrs.from = this.#local;
		// RFC 6120 §4.7.2: answer the peer's 'from' as 'to'.
		if (peer.from) attrs.to = peer.from;
		attrs.id = this.id;
		attrs.version = "1.0";
		this.#socket.openStream(NS_SERVER, attrs, { db: NS_DIALBACK });
	}

	#features(): Element {
		const secure = this.#socket.secure;
		const f = x("stream:features");
		// RFC 6120 §6.4.6: after SASL the restarted stream has nothing left to negotiate.
		if (this.#saslDomain) return f;
		if (!secure) {
			f.append(
				x("starttls", { xmlns: NS_TLS }, this.#ctx.requireEncryption ? x("required") : undefined),
			);
		}
		if (secure && this.#peerFrom && this.#ctx.checkPeer(this.#socket, this.#peerFrom).valid) {
			// XEP-0178 §2 (RFC 6120 §13.7.2): EXTERNAL is offered when the peer's certificate proves
			// the domain its stream header names.
			f.append(x("mechanisms", { xmlns: NS_SASL }, x("mechanism", null, "EXTERNAL")));
		}
		// XEP-0220 §2.1 and urn:xmpp:features:dialback (with <errors/>: we understand XEP-0220 §2.4
		// error replies), offered once TLS is there or not required, to peers not held to
		// certificates.
		const dialback = !this.#peerFrom || !this.#ctx.secureFor(this.#peerFrom);
		if ((secure || !this.#ctx.requireEncryption) && dialback) {
			f.append(x("dialback", { xmlns: NS_DIALBACK_FEATURE }, x("errors")));
		}
		return f;
	}

	/** RFC 6120 §6.4 with the EXTERNAL mechanism (RFC 4422 Appendix A), as XEP-0178 §3 uses it. */
	#sasl(el: Element): void {
		const failure = (condition: string, text?: string) => {
			this.#socket.send(
				x(
					"failure",
					{ xmlns: NS_SASL },
					x(condition),
					text ? x("text", { "xml:lang": "en" }, text) : undefined,
				),
			);
		};
		if (this.#saslDomain) {
			this.close("policy-violation", "already authenticated");
			return;
		}
		if (el.name !== "auth") {
			failure(el.name === "abort" ? "aborted" : "malformed-request");
			return;
		}
		if (!this.#socket.secure) {
			failure("encryption-required");
			return;
		}
		if (el.attrs.mechanism !== "EXTERNAL") {
			failure("invalid-mechanism");
			return;
		}
		// The authorization identity is the peer's domain; "=" or nothing means the stream's 'from'.
		const raw = el.text().trim();
		let authzid = "";
		if (raw && raw !== "=") {
			const decoded = Buffer.from(raw, "base64");
			if (decoded.toString("base64") !== raw.replace(/\s/g, "")) {
				failure("incorrect-encoding");
				return;
			}
			authzid = decoded.toString("utf8").toLowerCase();
		}
		const domain = authzid || this.#peerFrom;
		if (!domain) {
			failure("invalid-authzid", "no domain to authenticate");
			return;
		}
		// XEP-0178 §3: an authorization identity other than the stream's 'from' is refused.
		if (this.#peerFrom && domain !== this.#peerFrom) {
			failure("invalid-authzid", "not the domain of the stream header");
			return;
		}
		const check = this.#ctx.checkPeer(this.#socket, domain);
		if (!check.valid || !this.#ctx.allowed(domain) || this.#ctx.isLocal(domain)) {
			this.#ctx.log.info(
				{
					remote: domain,
					ip: this.remoteAddress,
					reason: check.valid ? "not allowed" : check.reason,
				},
				"s2s SASL EXTERNAL refused",
			);
			failure("not-authorized");
			return;
		}
		if (this.#ctx.tooManyStreams(domain, this)) {
			this.close("policy-violation", `too many streams from ${domain}`);
			return;
		}
		this.#saslDomain = domain;
		this.#authenticated.add(`${domain} ${this.#local}`);
		this.#stopAuthTimer();
		this.methods.set(domain, "external");
		this.#ctx.authenticated(this);
		this.#socket.setStanzaLimit(this.#ctx.stanzaBytes);
		this.#socket.send(x("success", { xmlns: NS_SASL }));
		this.#socket.resetParser();
		this.#state = "header";
		this.#ctx.log.info(
			{
				direction: "incoming",
				local: this.#local,
				remote: domain,
				auth: "external",
				tls: this.#socket.tlsVersion ?? "none",
			},
			"s2s stream authenticated",
		);
	}

	element(el: Element): void {
		if (this.#state !== "open") return;
		if (el.ns === NS_TLS && el.name === "starttls") {
			void this.#startTls();
			return;
		}
		if (el.ns === NS_SASL) {
			this.#sasl(el);
			return;
		}
		if (el.ns === NS_DIALBACK) {
			if (el.name === "result") {
				this.#dialbackResult(el);
				return;
			}
			if (el.name === "verify") {
				this.#dialbackVerify(el);
				return;
			}
			return;
		}
		if (el.ns === NS_SERVER && STANZAS.has(el.name)) {
			this.#stanza(el);
			return;
		}
		if (el.ns === NS_STREAMS && el.name === "error") {
			// RFC 6120 §4.9.1.1: the peer ended the stream with an error (Prosody and ejabberd send
			// system-shutdown when they stop); we close ours (§4.4), without an error of our own.
			this.#ctx.log.info(
				{
					ip: this.remoteAddress,
					remote: this.remoteDomains,
					condition: el.elements()[0]?.name ?? "undefined-condition",
				},
				"s2s stream error from the remote server",
			);
			this.close();
			return;
		}
		this.close("unsupported-stanza-type", `<${el.name}/> is not allowed here`);
	}

	async #startTls(): Promise<void> {
		if (this.#socket.secure) {
			this.#socket.send(x("failure", { xmlns: NS_TLS }));
			this.close();
			return;
		}
		this.#socket.send(x("proceed", { xmlns: NS_TLS }));
		this.#socket.resetParser();
		try {
			await this.#ctx.startTls(this.#socket, this.#local);
		} catch (err) {
			this.#ctx.log.debug({ err, ip: this.remoteAddress }, "s2s TLS handshake failed");
			this.#socket.destroy();
			return;
		}
		// RFC 6120 §5.4.3.3: the peer opens a new stream over TLS.
		this.#state = "header";
	}

	/** XEP-0220 §2.1.1: the peer claims `from` and gives a key for this stream. */
	#dialbackResult(el: Element): void {
		const from = el.attrs.from?.toLowerCase() ?? "";
		const to = el.attrs.to?.toLowerCase() ?? "";
		const key = el.text().trim();
		if (!this.#socket.secure && this.#ctx.requireEncryption) {
			this.close("policy-violation", "STARTTLS is required before dialback");
			return;
		}
		const reply = (type: string, error?: Element) =>
			this.#socket.send(x("db:result", { xmlns: NS_DIALBACK, from: to, to: from, type }, error));
		// XEP-0220 §2.4: errors in the reply, the stream stays open.
		if (!this.#ctx.isLocal(to)) {
			reply("error", dialbackError("cancel", "item-not-found"));
			return;
		}
		if (!from || !key || this.#ctx.isLocal(from)) {
			this.close("improper-addressing");
			return;
		}
		if (!this.#ctx.allowed(from)) {
			reply("error", dialbackError("cancel", "forbidden"));
			return;
		}
		// A domain held to certificates does not get in by dialback (RFC 6120 §8.3.3.12).
		if (this.#ctx.secureFor(from)) {
			reply("error", dialbackError("cancel", "policy-violation"));
			return;
		}
		// Each claim makes us reach the claimed domain's server (DNS, a connection, a db:verify):
		// unbounded, one cheap stream could have us connect to thousands of hosts. XEP-0220 §2.4
		// errors leave the stream open; resource-constraint (type wait) says to try again later.
		if (this.#verifying >= MAX_VERIFYING) {
			reply("error", dialbackError("wait", "resource-constraint"));
			return;
		}
		this.#verifying++;
		void this.#ctx
			.verifyWithAuthority(to, from, this.id, key)
			.then((outcome) => {
				this.#verifying--;
				if (this.#state === "closed") return;
				if (outcome === "valid") {
					// A peer opens a stream or two per domain pair; hundreds are an attack on memory.
					if (!this.#authenticated.size && this.#ctx.tooManyStreams(from, this)) {
						this.close("policy-violation", `too many streams from ${from}`);
						return;
					}
					this.#authenticated.add(`${from} ${to}`);
					this.#stopAuthTimer();
					if (!this.methods.has(from)) this.methods.set(from, "dialback");
					this.#ctx.authenticated(this);
					// Past authentication, stanzas may be as large as a client's (RFC 6120 §13.12).
					this.#socket.setStanzaLimit(this.#ctx.stanzaBytes);
					reply("valid");
					this.#ctx.log.info(
						{
							direction: "incoming",
							local: to,
							remote: from,
							auth: "dialback",
							tls: this.#socket.tlsVersion ?? "none",
						},
						"s2s stream authenticated",
					);
				} else if (outcome === "invalid") {
					this.#ctx.log.info(
						{ local: to, remote: from, ip: this.remoteAddress },
						"s2s dialback key refused",
					);
					reply("invalid");
				} else {
					reply("error", dialbackError("cancel", outcome.error));
				}
			})
			.catch((err: unknown) => {
				this.#verifying--;
				this.#ctx.log.error({ err }, "s2s dialback verification failed");
				reply("error", dialbackError("wait", "internal-server-error"));
			});
	}

	/** XEP-0220 §2.1.3: a receiving server asks us, the authority, about one of our keys. */
	#dialbackVerify(el: Element): void {
		const from = el.attrs.from?.toLowerCase() ?? "";
		const to = el.attrs.to?.toLowerCase() ?? "";
		const id = el.attrs.id ?? "";
		const attrs = { xmlns: NS_DIALBACK, from: to, to: from, id };
		if (!this.#ctx.isLocal(to)) {
			this.#socket.send(
				x("db:verify", { ...attrs, type: "error" }, dialbackError("cancel", "item-not-found")),
			);
			return;
		}
		const expected = this.#ctx.dialbackKey(to, from, id);
		const valid = this.#ctx.keysMatch(el.text(), expected);
		this.#socket.send(x("db:verify", { ...attrs, type: valid ? "valid" : "invalid" }));
		// XEP-0220 §2.1.3: a stream that only carries a peer's verification requests never
		// authenticates; while it is used it stays (it still ends once left idle).
		if (this.#authenticated.size === 0 && this.#authTimer) this.#armAuthTimer();
	}

	#stanza(el: Element): void {
		let fromDomain: string;
		let toDomain: string;
		try {
			// RFC 6120 §4.9.3.11 improper-addressing: an s2s stanza carries both addresses.
			if (!el.attrs.from || !el.attrs.to) {
				this.close("improper-addressing");
				return;
			}
			fromDomain = this.#ctx.jids.parse(el.attrs.from).domain;
			toDomain = this.#ctx.jids.parse(el.attrs.to).domain;
		} catch (e) {
			if (!(e instanceof JIDError)) throw e;
			this.close("improper-addressing", "malformed address");
			return;
		}
		if (!this.#ctx.isLocal(toDomain)) {
			this.close("host-unknown", `${toDomain} is not served here`);
			return;
		}
		if (!this.#authenticated.has(`${fromDomain} ${toDomain}`)) {
			if (this.#authenticated.size === 0) {
				this.close("not-authorized", "authenticate first");
				return;
			}
			this.close("invalid-from", `${fromDomain} is not authenticated on this stream`);
			return;
		}
		intoClientNs(el, NS_SERVER);
		this.#pending++;
		if (this.#pending > MAX_QUEUE) this.#socket.pause();
		this.#chain = this.#chain.then(async () => {
			try {
				if (this.#state !== "closed") await this.#ctx.route(el);
			} catch (err) {
				this.#ctx.log.error({ err }, "s2s stanza routing failed");
			} finally {
				this.#pending--;
				if (this.#pending <= MAX_QUEUE / 2) this.#socket.resume();
			}
		});
	}

	streamEnd(): void {
		this.close();
	}

	parseError(condition: XmlErrorCondition, text: string): void {
		this.close(condition, text);
	}

	/** Ends the stream, with a stream error when a condition is given. */
	close(condition?: StreamErrorCondition, text?: string): void {
		if (this.#state === "closed") return;
		if (condition) {
			if (this.#state === "header") this.#open(Object.create(null));
			this.#socket.send(streamErrorElement(condition, text));
			this.#ctx.log.info(
				{ ip: this.remoteAddress, remote: this.remoteDomains, condition, text },
				"s2s incoming stream error",
			);
		}
		this.#state = "closed";
		this.#stopAuthTimer();
		this.#socket.close();
		this.#ctx.ended(this);
	}

	/** The connection went away. */
	closed(): void {
		if (this.#state === "closed") return;
		this.#state = "closed";
		this.#stopAuthTimer();
		this.#ctx.ended(this);
	}
}

/** XEP-0220 §2.4: `<error type='cancel'><item-not-found xmlns='...stanzas'/></error>`. */
function dialbackError(type: string, condition: string): Element {
	return x("error", { type }, x(condition, { xmlns: NS_STANZA_ERRORS }));
}
