/**
 * One client-to-server XML stream (RFC 6120 §4-§7): stream headers, features, STARTTLS, SASL,
 * resource binding, then stanzas handed to the router in order. Transport-agnostic: TCP/TLS,
 * WebSocket and BOSH each carry it through the `Transport` contract (transport.ts). What it
 * offers is built in features.ts, which resource it binds is chosen in bind.ts.
 */
import { randomUUID } from "node:crypto";
import {
	createFastMechanism,
	FastTokens,
	offeredFastMechanisms,
	type TokenRecord,
} from "../auth/fast.ts";
import {
	createMechanism,
	decodeSaslPayload,
	offeredMechanisms,
	type SaslContext,
	type SaslFailure,
	type SaslMechanism,
	type SaslStep,
	sanitizeTrace,
	strictBase64Decode,
} from "../auth/sasl.ts";
import type { ScramHash, StoredCredentials } from "../auth/scram.ts";
import { ScramUpgrade, taskName, UPGRADE_TASKS, upgradesToRun } from "../auth/upgrade.ts";
import {
	type Bind2Event,
	type Bind2FeaturesEvent,
	type ClientTransportKind,
	type Core,
	HIBERNATING,
	type Host,
	type PreauthEvent,
	type Session,
	SM_ABANDON,
} from "../core/contracts.ts";
import { isStanzaName } from "../core/router.ts";
import { SessionData } from "../core/session.ts";
import { Liveness } from "../net/liveness.ts";
import { type Attrs, type Element, x } from "../xml/element.ts";
import type { XmlErrorCondition } from "../xml/errors.ts";
import {
	errorReply,
	mayReplyWithError,
	StanzaError,
	type StanzaErrorCondition,
	type StreamErrorCondition,
	streamErrorElement,
} from "../xmpp/errors.ts";
import { type JID, makeJID } from "../xmpp/jid.ts";
import {
	NS_BIND,
	NS_BIND2,
	NS_CLIENT,
	NS_FAST,
	NS_PING,
	NS_SASL,
	NS_SASL_UPGRADE,
	NS_SASL2,
	NS_SESSION,
	NS_STANZA_ERRORS,
	NS_STREAMS,
	NS_TLS,
} from "../xmpp/ns.ts";
import { bind2ClientId, bind2Resource, chooseResource } from "./bind.ts";
import { ClientState, NS_CSI } from "./csi.ts";
import {
	boundFeatures,
	guestLimit,
	preauthFeatures,
	releaseGuest,
	sasl2Feature,
	saslContextFor,
} from "./features.ts";
import { NS_SM, parseCount, REQUEST_EVERY, resourceOf, StreamManagement } from "./sm.ts";
import type { Transport } from "./transport.ts";

type State = "header" | "features" | "tls" | "closed";

const MAX_QUEUE = 64;
/**
 * XEP-0198: stanzas kept unacknowledged. A connected client acknowledges what it has read, so
 * a burst in flight can be large (the transport's outbound buffer bounds it); a session waiting
 * to be resumed keeps fewer, and past that it ends and its messages go to offline storage.
 */
const MAX_UNACKED = 20_000;
const MAX_UNACKED_HIBERNATING = 2000;

export class C2SStream implements Session {
	// randomUUID draws from a pool Node refills in bulk: one CSPRNG call per 128 ids, not one
	// per stream (randomBytes was 3% of the login profile).
	readonly id = randomUUID();
	readonly data = new SessionData(() => this.#changed());
	#available = false;
	#priority = 0;
	#presence: Element | null = null;
	#interested = false;

	readonly #server: Core;
	/** Replaced when the session is resumed on another connection (XEP-0198 §5). */
	#transport: Transport;
	#host: Host | null = null;
	#state: State = "header";
	#headerSent = false;
	#username: string | null = null;
	#jid: JID | null = null;
	#sasl: SaslMechanism | null = null;
	/** XEP-0388: the running SASL2 exchange and the `<authenticate/>` that started it. */
	#sasl2: Sasl2Exchange | null = null;
	/**
	 * XEP-0388 §2.6.3: the credentials were proven and the login's tasks run (XEP-0480
	 * upgrades): the `<success/>` waits until the last is done.
	 */
	#sasl2Tasks: {
		exchange: Sasl2Exchange;
		step: SaslStep & { kind: "success" };
		/** What the login was checked against (an upgrade adds to exactly these). */
		creds: StoredCredentials;
		pending: ScramHash[];
		running: ScramUpgrade | null;
	} | null = null;
	#saslFailures = 0;
	/** The SASL mechanism of the exchange under way, for `parley_auth_total` ("" before one is chosen). */
	#mech = "";
	#queue: Element[] = [];
	#draining = false;
	#idleWaiters: (() => void)[] = [];
	#paused = false;
	#authTimer: NodeJS.Timeout | null;
	#onClosed: (() => void) | null = null;
	/** Once bound: is the client still there, and which messages has it surely read (liveness.ts). */
	#liveness: Liveness | null = null;
	/** XEP-0352 once bound: what an inactive client does not need yet is held (csi.ts). */
	#csi: ClientState | null = null;
	/** XEP-0198 once enabled (sm.ts). */
	#sm: StreamManagement | null = null;
	/** The connection broke and the session waits to be resumed (XEP-0198 §5). */
	#hibernation: NodeJS.Timeout | null = null;
	/** Bound with Bind 2 by a client with a `<user-agent id>`: who it is (bind.ts bind2ClientId). */
	#bind2Client: string | null = null;
	/** This connection resumed another session (XEP-0198 §5): what it receives goes there. */
	#resumedInto: C2SStream | null = null;

	constructor(server: Core, transport: Transport) {
		this.#server = server;
		this.#transport = transport;
		this.#authTimer = setTimeout(() => {
			// RFC 6120 §4.9.3.4 connection-timeout: no bound session in time.
			this.close("connection-timeout", "authentication took too long");
		}, server.config.limits.auth_timeout * 1000);
		this.#authTimer.unref();
	}

	get host(): Host {
		return this.#host as Host;
	}
	/** The host the stream header named (`Connection.domain`), once it did. */
	get domain(): string | undefined {
		return this.#host?.name;
	}
	get jid(): JID | null {
		return this.#jid;
	}
	// The state other nodes of a cluster replicate: a change is published (once per tick).
	get available(): boolean {
		return this.#available;
	}
	set available(v: boolean) {
		if (v === this.#available) return;
		this.#available = v;
		this.#changed();
	}
	get priority(): number {
		return this.#priority;
	}
	set priority(v: number) {
		if (v === this.#priority) return;
		this.#priority = v;
		this.#changed();
	}
	get presence(): Element | null {
		return this.#presence;
	}
	set presence(v: Element | null) {
		this.#presence = v;
		this.#changed();
	}
	get interested(): boolean {
		return this.#interested;
	}
	set interested(v: boolean) {
		if (v === this.#interested) return;
		this.#interested = v;
		this.#changed();
	}

	#changed(): void {
		if (this.#jid && this.#state !== "closed") this.#server.cluster?.sessionChanged(this);
	}

	get remoteAddress(): string {
		return this.#transport.remoteAddress;
	}
	/** What carries the session now (metrics). */
	get transport(): ClientTransportKind {
		return this.#transport.kind;
	}
	get secure(): boolean {
		return this.#transport.secure;
	}
	/** Stanzas XEP-0352 holds for this inactive client, and how many it replaced (saved). */
	get csiHeld(): { held: number; saved: number } {
		return { held: this.#csi?.held ?? 0, saved: this.#csi?.saved ?? 0 };
	}

	/** The connection broke and the session waits to be resumed (XEP-0198 §5). */
	get hibernating(): boolean {
		return this.#hibernation !== null;
	}

	get closed(): boolean {
		if (this.#resumedInto) return this.#resumedInto.closed;
		return this.#state === "closed";
	}

	/** Called once when the stream is over, for the listener's bookkeeping. */
	onClosed(fn: () => void): void {
		this.#onClosed = fn;
	}

	// --- input from the parser ---

	streamStart(name: string, ns: string | null, attrs: Attrs, defaultNs: string | null): void {
		if (this.#resumedInto) {
			this.#resumedInto.streamStart(name, ns, attrs, defaultNs);
			return;
		}
		if (this.#state !== "header") {
			this.close("bad-format", "unexpected stream header");
			return;
		}
		// RFC 6120 §4.8.1: the stream element is <stream> in the streams namespace.
		if (name !== "stream" || ns !== NS_STREAMS) {
			this.close(
				"invalid-namespace",
				"expected <stream:stream> in http://etherx.jabber.org/streams",
			);
			return;
		}
		// RFC 6120 §4.8.2: the content namespace of a client stream is jabber:client.
		if (defaultNs !== NS_CLIENT) {
			this.close("invalid-namespace", "the default namespace must be jabber:client");
			return;
		}
		const to = (attrs.to ?? "").toLowerCase().replace(/\.$/, "");
		const host = to ? this.#server.hosts.get(to) : undefined;
		if (this.#host && host !== this.#host) {
			this.close("host-unknown", "the host may not change on a stream restart");
			return;
		}
		this.#host = host ?? null;
		// RFC 6120 §4.7.5: we speak version 1.0; a missing version means pre-1.0 (RFC 6120 §4.7.5
		// says treat as 0.9), which we do not support.
		const version = attrs.version;
		const major = version ? Number.parseInt(version.split(".")[0] ?? "", 10) : 0;
		this.#sendHeader(attrs);
		if (!host) {
			// RFC 6120 §4.9.3.6 host-unknown.
			this.close("host-unknown", to ? `${to} is not served here` : "the stream header has no 'to'");
			return;
		}
		if (major !== 1) {
			this.close("unsupported-version", "XMPP version 1.0 is required");
			return;
		}
		this.#state = "features";
		this.#transport.send(this.#features());
	}

	/** The transport received bytes from the client (any, whitespace keepalives included). */
	inbound(): void {
		if (this.#resumedInto) {
			this.#resumedInto.inbound();
			return;
		}
		this.#liveness?.inbound();
	}

	stanza(el: Element): void {
		if (this.#resumedInto) {
			this.#resumedInto.stanza(el);
			return;
		}
		if (this.#state === "closed") return;
		// The answer to the server's own liveness ping (XEP-0199 §4.2) goes no further.
		if (
			this.#liveness &&
			el.name === "iq" &&
			(el.attrs.type === "result" || el.attrs.type === "error") &&
			this.#liveness.answered(el.attrs.id)
		)
			return;
		this.#queue.push(el);
		if (this.#queue.length >= MAX_QUEUE && !this.#paused) {
			// Stop reading until the backlog is handled: a flood slows its sender down and
			// nobody else (Prosody's mod_limits pauses reads the same way).
			this.#paused = true;
			this.#transport.pause();
		}
		if (!this.#draining) void this.#drain();
	}

	streamEnd(): void {
		if (this.#resumedInto) {
			this.#resumedInto.streamEnd();
			return;
		}
		// RFC 6120 §4.4: answer the closing tag with ours and end the connection.
		this.#queue.length = 0;
		this.close();
	}

	parseError(condition: XmlErrorCondition, text: string): void {
		if (this.#resumedInto) {
			this.#resumedInto.parseError(condition, text);
			return;
		}
		this.close(condition as StreamErrorCondition, text);
	}

	/** The connection went away without a closing tag. */
	transportClosed(): void {
		if (this.#resumedInto) {
			this.#resumedInto.transportClosed();
			return;
		}
		if (this.#state === "closed" || this.#hibernation) return;
		// What CSI held goes into the queues below (SM's or the unconfirmed list).
		this.#releaseHeld();
		// XEP-0198 §5: a resumable session waits for its client to come back.
		if (this.#sm?.resumable) {
			this.#hibernate();
			return;
		}
		this.#state = "closed";
		// What it may not have read goes to offline storage rather than nowhere: with XEP-0198,
		// what it did not acknowledge; without, what no ping answer confirmed.
		const confirmedByPings = this.#liveness?.stop() ?? [];
		const unread = this.#sm
			? this.#sm.unacked.splice(0).filter((s) => s.name === "message")
			: confirmedByPings;
		this.#teardown();
		this.#keepUnread(unread);
	}

	/** The client did not answer a ping in time (liveness.ts): its connection is dead. */
	#gone(): void {
		this.#releaseHeld();
		const unread = this.#liveness?.stop() ?? [];
		const s = this.#server.config.sessions;
		if (this.#sm?.resumable) {
			this.#server.metrics.deadPeer("c2s");
			// XEP-0198 §5: the connection is dropped, the session waits to be resumed.
			this.#host?.log.info(
				{ jid: this.#jid?.toString(), ip: this.remoteAddress },
				`no answer to an ack request within ${s.ping_timeout} s: connection dropped, session hibernates`,
			);
			this.#transport.detach?.();
			this.#transport.closeStream();
			this.#hibernate();
			return;
		}
		this.#host?.log.info(
			{ jid: this.#jid?.toString(), ip: this.remoteAddress, unread: unread.length },
			`no answer to a ping within ${s.ping_timeout} s: connection dropped`,
		);
		this.#server.metrics.deadPeer("c2s");
		this.close("connection-timeout", "no answer to a ping");
		this.#keepUnread(unread);
	}

	/**
	 * Messages written to a connection that died before they were confirmed are stored offline
	 * (XEP-0160), as if the client had been offline: the offline module decides what is kept
	 * (RFC 6121 §8.5.2.2.1 types, XEP-0334 hints) and delivers it at the next login.
	 */
	#keepUnread(unread: Element[]): void {
		const host = this.#host;
		const jid = this.#jid;
		if (!host || !jid || unread.length === 0) return;
		void (async () => {
			for (const stanza of unread) {
				let from: JID;
				try {
					from = this.#server.jids.parse(stanza.attrs.from ?? host.name);
				} catch {
					continue;
				}
				await host.events.fire("message/offline", {
					stanza,
					origin: null,
					host,
					from,
					to: jid.bare,
				});
			}
		})().catch((err: unknown) => host.log.error({ err }, "storing unread messages failed"));
	}

	// --- processing, one element at a time (RFC 6120 §10.1 in-order processing) ---

	async #drain(): Promise<void> {
		this.#draining = true;
		try {
			while (this.#queue.length && this.#state !== "closed") {
				const el = this.#queue.shift() as Element;
				try {
					await this.#handle(el);
				} catch (err) {
					this.#server.log.error({ err }, "stream element handling failed");
					this.close("internal-server-error");
				}
				if (this.#paused && this.#queue.length < MAX_QUEUE / 2) {
					this.#paused = false;
					this.#transport.resume();
				}
			}
		} finally {
			this.#draining = false;
			for (const wake of this.#idleWaiters.splice(0)) wake();
		}
	}

	/**
	 * Resolves once every queued element has been handled. BOSH needs it: a terminate body may
	 * carry last stanzas (XEP-0124 §13) that must be routed before the stream ends.
	 */
	whenIdle(): Promise<void> {
		if (!this.#draining && this.#queue.length === 0) return Promise.resolve();
		return new Promise((resolve) => this.#idleWaiters.push(resolve));
	}

	async #handle(el: Element): Promise<void> {
		if (this.#state === "tls") return; // bytes after <starttls/> before the handshake: dropped
		if (el.ns === NS_SM) return this.#smElement(el);
		if (el.ns === NS_CSI && this.#csi) return this.#clientState(el);
		if (this.#jid) {
			if (el.ns === NS_CLIENT && isStanzaName(el.name)) {
				await this.#clientStanza(el);
				// XEP-0198 §4: counted once handled (what an <a/> acknowledges is done).
				this.#sm?.handled();
				return;
			}
			// RFC 6120 §4.9.3.24: anything else at the top level ends the stream.
			return this.close("unsupported-stanza-type", `<${el.name}/> in ${el.ns} is not a stanza`);
		}
		if (el.ns === NS_TLS && el.name === "starttls") return this.#startTls();
		if (el.ns === NS_SASL) return this.#saslElement(el);
		if (el.ns === NS_SASL2) return this.#sasl2Element(el);
		if (el.ns === NS_CLIENT && el.name === "iq" && this.#username) return this.#preBindIq(el);
		if (el.ns === NS_CLIENT && el.name === "iq" && (await this.#preauthIq(el))) return;
		if (el.ns === NS_CLIENT && isStanzaName(el.name)) {
			// RFC 6120 §6.4.1 / §7.1: no stanzas before authentication and binding.
			return this.close("not-authorized", "authenticate and bind a resource first");
		}
		return this.close("unsupported-stanza-type", `<${el.name}/> is not allowed here`);
	}

	// --- stream features (RFC 6120 §4.3.2) ---

	#features(): Element {
		const host = this.host;
		const limits = this.#server.config.limits;
		if (this.#username) {
			// After a XEP-0386 Bind 2 login (no stream restart, XEP-0388 §2.6.1) the session is
			// bound already: no binding to offer, nor stream management once it is enabled.
			const f = boundFeatures(limits.stanza_size, this.#jid !== null);
			// XEP-0198 §2, where the transport can hand a session to a new connection.
			if (this.#transport.detach && !this.#sm) f.append(x("sm", { xmlns: NS_SM }));
			// XEP-0352 §3.
			f.append(x("csi", { xmlns: NS_CSI }));
			void host.events.fire("stream-features", { session: this, features: f });
			return f;
		}
		const tlsRequired = host.requireEncryption && !this.secure;
		const sasl = this.#saslContext();
		const f = preauthFeatures({
			canStartTls: this.#transport.canStartTls && !this.secure,
			tlsRequired,
			sasl,
			maxBytes: limits.preauth_stanza_size,
			...(this.#sasl2Offered() && { sasl2: this.#sasl2Feature(sasl) }),
		});
		// Modules may offer pre-authentication features (XEP-0077 §8 in-band registration).
		// Handlers must append synchronously: the features are written right after this.
		if (!tlsRequired) {
			host.events
				.fire("stream-features/preauth", this.#preauth({ features: f }))
				.catch((err: unknown) => host.log.error({ err }, "stream-features/preauth failed"));
		}
		return f;
	}

	#sendHeader(clientAttrs: Attrs): void {
		if (this.#headerSent) return;
		this.#headerSent = true;
		const attrs: Attrs = Object.create(null);
		// RFC 6120 §4.7.3: unique and unpredictable (122 random bits).
		attrs.id = randomUUID().replaceAll("-", "");
		attrs.from = this.#host?.name ?? this.#server.defaultHost;
		attrs.version = "1.0";
		attrs["xml:lang"] = "en";
		// RFC 6120 §4.7.2: echo the client's 'from' as our 'to' only if it was given.
		if (clientAttrs.from) attrs.to = clientAttrs.from;
		this.#transport.openStream(attrs, null);
	}

	// --- STARTTLS (RFC 6120 §5.4) ---

	async #startTls(): Promise<void> {
		if (!this.#transport.canStartTls || this.secure || this.#username) {
			// RFC 6120 §5.4.2.2: failure, then close the stream.
			this.#transport.send(x("failure", { xmlns: NS_TLS }));
			this.close();
			return;
		}
		this.#state = "tls";
		this.#queue.length = 0;
		this.#transport.send(x("proceed", { xmlns: NS_TLS }));
		this.#transport.resetParser();
		try {
			await this.#transport.startTls();
		} catch (err) {
			this.#server.log.debug({ err, ip: this.remoteAddress }, "TLS handshake failed");
			this.transportClosed();
			return;
		}
		// RFC 6120 §5.4.3.3: the client opens a new stream over TLS.
		this.#headerSent = false;
		this.#state = "header";
	}

	// --- SASL (RFC 6120 §6) ---

	#saslContext(): SaslContext {
		return saslContextFor(
			this.host,
			{
				secure: this.secure,
				channelBinding: this.#transport.channelBinding(),
				remoteAddress: this.remoteAddress,
			},
			this.#server.config.auth,
		);
	}

	async #saslElement(el: Element): Promise<void> {
		if (this.#username) {
			// RFC 6120 §6.4.8 ... a second authentication is not allowed once authenticated.
			return this.close("policy-violation", "already authenticated");
		}
		if (this.host.requireEncryption && !this.secure) {
			return this.#saslFailure("encryption-required", "use STARTTLS first");
		}
		if (el.name === "abort") {
			this.#sasl = null;
			return this.#saslFailure("aborted");
		}
		let mech = this.#sasl;
		if (el.name === "auth") {
			if (mech) return this.#saslFailure("malformed-request", "an exchange is already running");
			const name = el.attrs.mechanism ?? "";
			mech = createMechanism(name, this.#saslContext());
			// RFC 6120 §6.4.2 invalid-mechanism.
			if (!mech) return this.#saslFailure("invalid-mechanism", `${name} is not offered`);
			this.#sasl = mech;
			this.#mech = mech.name;
		} else if (el.name !== "response" || !mech) {
			return this.#saslFailure("malformed-request", `unexpected <${el.name}/>`);
		}
		const delay = this.#server.authFailures.reserve(this.remoteAddress);
		if (delay > 0) await new Promise((r) => setTimeout(r, delay));
		if (this.closed) return;
		// RFC 6120 §6.4.2: "=" is an empty initial response; no text means none at all.
		const input = decodeSaslPayload(el.text().trim());
		if (input === "invalid") return this.#saslFailure("incorrect-encoding");
		const step = await mech.step(input);
		if (this.closed) return;
		if (step.kind === "challenge") {
			this.#transport.send(x("challenge", { xmlns: NS_SASL }, step.data.toString("base64")));
			return;
		}
		this.#sasl = null;
		if (step.kind === "failure") {
			this.#logAuthFailure(mech, step);
			return this.#saslFailure(step.condition, step.text, step.throttle);
		}
		// RFC 6120 §6.5.1: an account an admin disabled (issue 19) does not log in.
		if (await this.#disabled(step.username)) return;
		this.#username = step.username;
		this.#server.metrics.auth(mech.name, true);
		this.#transport.send(
			x("success", { xmlns: NS_SASL }, step.data ? step.data.toString("base64") : undefined),
		);
		// RFC 6120 §6.4.6: the stream restarts; the parser starts over and the size limit grows.
		this.#transport.resetParser();
		this.#transport.setStanzaLimit(this.#server.config.limits.stanza_size);
		this.#transport.authenticated();
		this.#headerSent = false;
		this.#state = "header";
		// A guest's RFC 4505 trace is logged (sanitised, at most 255 characters) and never used.
		this.#host?.log.info(
			{
				user: step.username,
				ip: this.remoteAddress,
				mech: mech.name,
				...(step.trace !== undefined && { trace: step.trace }),
			},
			"authenticated",
		);
	}

	/**
	 * Only failures that speak against the credentials count (SaslFailure.throttle): a channel
	 * binding type we lack (slixmpp 1.8 asks for tls-unique) never does. The log says why, so an
	 * operator can tell such a client from a wrong password.
	 */
	#logAuthFailure(mech: SaslMechanism, step: SaslFailure, sasl2 = false): void {
		const fields = {
			ip: this.remoteAddress,
			mech: mech.name,
			user: step.username,
			condition: step.condition,
			reason: step.reason,
			channelBinding: step.channelBinding,
			counted: step.throttle,
			...(sasl2 && { sasl2 }),
		};
		if (step.warn) this.host.log.warn(fields, "authentication failed");
		else this.host.log.info(fields, "authentication failed");
	}

	/**
	 * RFC 6120 §6.4.5 `<failure/>`, or XEP-0388 §2.6.2's (`ns` NS_SASL2), whose condition keeps
	 * the RFC 6120 namespace; a guess counts toward the per-connection and per-IP limits.
	 */
	/** RFC 6120 §6.5.1: answers account-disabled (true) when an admin disabled the account. */
	async #disabled(user: string, ns = NS_SASL): Promise<boolean> {
		if (!(await this.host.accounts.isDisabled(user))) return false;
		if (this.closed) return true;
		this.host.log.info({ user, ip: this.remoteAddress }, "login of a disabled account refused");
		this.#saslFailure("account-disabled", "this account is disabled", false, ns);
		return true;
	}

	#saslFailure(
		condition: string,
		text?: string,
		countsAsGuess = false,
		ns = NS_SASL,
		appCondition?: Element,
	): void {
		this.#sasl = null;
		this.#sasl2 = null;
		this.#sasl2Tasks = null;
		this.#server.metrics.auth(this.#mech, false);
		this.#mech = "";
		this.#transport.send(
			x(
				"failure",
				{ xmlns: ns },
				ns === NS_SASL ? x(condition) : x(condition, { xmlns: NS_SASL }),
				// XEP-0388 §2.6.2: the RFC 6120 condition, an application-specific one, the text.
				appCondition,
				text ? x("text", { "xml:lang": "en" }, text) : undefined,
			),
		);
		if (!countsAsGuess) return;
		this.#server.authFailures.recordFailure(this.remoteAddress);
		this.#saslFailures++;
		if (this.#saslFailures >= this.#server.config.limits.sasl_failures_per_connection) {
			// RFC 6120 §6.4.5 lets the server close after repeated failures.
			this.close("policy-violation", "too many failed authentication attempts");
		}
	}

	// --- SASL2 (XEP-0388), with Bind 2 (XEP-0386), inline XEP-0198 and FAST (XEP-0484) ---

	/** XEP-0388 §4: only after TLS, and only where the operator keeps it on. */
	#sasl2Offered(): boolean {
		return this.#server.config.auth.sasl2 && this.secure;
	}

	/** FAST tokens on this host, or null: off (`auth.fast_token_lifetime = 0`) or a guest host. */
	#fastTokens(): FastTokens | null {
		const auth = this.#server.config.auth;
		const host = this.host;
		if (auth.fast_token_lifetime === 0 || host.accounts.anonymous) return null;
		return new FastTokens(host.map<TokenRecord>("fast_tokens"), {
			lifetime: auth.fast_token_lifetime * 1000,
			rotation: auth.fast_token_rotation * 1000,
		});
	}

	#sasl2Feature(sasl: SaslContext): Element {
		// XEP-0386 §4.1: what a Bind 2 request may enable. CSI and stream management are the
		// stream's; modules add theirs (carbons) synchronously on `bind2/features`.
		const bind2: string[] = [];
		void this.host.events
			.fire<Bind2FeaturesEvent>("bind2/features", { host: this.host, features: bind2 })
			.catch((err: unknown) => this.host.log.error({ err }, "bind2/features failed"));
		bind2.push(NS_CSI);
		if (this.#transport.detach) bind2.push(NS_SM);
		return sasl2Feature({
			mechanisms: offeredMechanisms(sasl),
			bind2,
			sm: this.#transport.detach !== undefined,
			fast: this.#fastTokens() ? offeredFastMechanisms(sasl) : [],
			upgrades: this.#upgradesOffered(),
		});
	}

	/**
	 * XEP-0480 §2.1: the upgrade tasks this host can run, whatever the account: the list says
	 * nothing about who exists or what an account stores (the login runs only those it lacks).
	 */
	#upgradesOffered(): string[] {
		return this.host.accounts.anonymous ? [] : Object.keys(UPGRADE_TASKS);
	}

	async #sasl2Element(el: Element): Promise<void> {
		const fail = (condition: string, text?: string) =>
			this.#saslFailure(condition, text, false, NS_SASL2);
		// XEP-0388 §3.8: once authenticated, another <authenticate/> is a stream error.
		if (this.#username) return this.close("policy-violation", "already authenticated");
		if (!this.#sasl2Offered()) {
			return fail(
				this.secure ? "invalid-mechanism" : "encryption-required",
				"SASL2 is not offered",
			);
		}
		if (this.#sasl2Tasks) return this.#sasl2Task(el);
		if (el.name === "abort") return fail("aborted");
		let exchange = this.#sasl2;
		let payload: string | undefined;
		if (el.name === "authenticate") {
			if (exchange) return fail("malformed-request", "an exchange is already running");
			const started = this.#sasl2Start(el);
			if (typeof started === "string") return fail("invalid-mechanism", started);
			if ("condition" in started) return fail(started.condition, started.text);
			exchange = this.#sasl2 = started;
			this.#mech = started.mech.name;
			// §2.3: no <initial-response/> means none; an empty one is an empty response.
			payload = el.getChild("initial-response", NS_SASL2)?.text().trim();
		} else if (el.name === "response" && exchange) {
			payload = el.text().trim();
		} else {
			return fail("malformed-request", `unexpected <${el.name}/>`);
		}
		// §2.2: plain base64 without RFC 6120's "=" special case.
		const input =
			payload === undefined ? null : payload === "" ? Buffer.alloc(0) : strictBase64Decode(payload);
		if (input === null && payload !== undefined) return fail("incorrect-encoding");
		// The same slowdown as RFC 6120 SASL after failures from this address.
		const delay = this.#server.authFailures.reserve(this.remoteAddress);
		if (delay > 0) await new Promise((r) => setTimeout(r, delay));
		if (this.closed) return;
		const mech = exchange.mech;
		const step = await mech.step(input);
		if (this.closed) return;
		if (step.kind === "challenge") {
			this.#transport.send(x("challenge", { xmlns: NS_SASL2 }, step.data.toString("base64")));
			return;
		}
		this.#sasl2 = null;
		if (step.kind === "failure") {
			this.#logAuthFailure(mech, step, true);
			return this.#saslFailure(step.condition, step.text, step.throttle, NS_SASL2);
		}
		if (await this.#disabled(step.username, NS_SASL2)) return;
		if (await this.#sasl2StartTasks(exchange, step)) return;
		await this.#sasl2Success(exchange, step);
	}

	/**
	 * XEP-0388 §2.6.3 / XEP-0480 §2.2: after the credentials were proven, the upgrades the
	 * client asked for whose hash the account lacks, one `<continue/>` each; true when they
	 * started. Not after a FAST token login: a token proves no password, and the new credential
	 * could then be for any password at all. Unreadable credentials skip the upgrades, not the
	 * login.
	 */
	async #sasl2StartTasks(
		exchange: Sasl2Exchange,
		step: SaslStep & { kind: "success" },
	): Promise<boolean> {
		if (exchange.upgrades.length === 0) return false;
		const user = step.username;
		if (exchange.fast) {
			this.host.log.info({ user }, "SASL upgrade tasks skipped: a FAST login proves no password");
			return false;
		}
		let creds: StoredCredentials | null;
		try {
			creds = await this.host.accounts.getCredentials(user);
		} catch (err) {
			this.host.log.warn({ err, user }, "SASL upgrade tasks skipped: credentials unreadable");
			return false;
		}
		if (this.closed) return true;
		const pending = creds ? upgradesToRun(exchange.upgrades, creds) : [];
		if (!creds || pending.length === 0) return false;
		this.#sasl2Tasks = { exchange, step, creds, pending, running: null };
		this.#sasl2Continue(step.data);
		return true;
	}

	/**
	 * XEP-0388 §2.6.3 `<continue/>`: XEP-0480 §2.2 names one task, the next the client asked
	 * for; the first carries the mechanism's additional data (SCRAM's v=), which the
	 * `<success/>` then leaves out.
	 */
	#sasl2Continue(data: Buffer | null): void {
		const hash = this.#sasl2Tasks?.pending[0] as ScramHash;
		this.#transport.send(
			x(
				"continue",
				{ xmlns: NS_SASL2 },
				data ? x("additional-data", null, data.toString("base64")) : undefined,
				x("tasks", null, x("task", null, taskName(hash))),
				x("text", null, `This account gets SCRAM-${hash}, as the client asked`),
			),
		);
	}

	/** A `<next/>`, `<task-data/>` or `<abort/>` while the login's tasks run. */
	async #sasl2Task(el: Element): Promise<void> {
		const t = this.#sasl2Tasks;
		if (!t) return;
		// Credentials were proven: no failure here counts as a guess.
		const fail = (condition: string, text?: string) =>
			this.#saslFailure(condition, text, false, NS_SASL2);
		// XEP-0388 §3.8: after a <continue/>, another <authenticate/> is a stream error.
		if (el.name === "authenticate") return this.close("policy-violation", "a task is running");
		if (el.name === "abort") return fail("aborted");
		const hash = t.pending[0] as ScramHash;
		if (el.name === "next" && !t.running) {
			// XEP-0388 §2.6.3: <next task> names one of the tasks offered.
			if (el.attrs.task !== taskName(hash))
				return fail("malformed-request", `the task offered is ${taskName(hash)}`);
			t.running = new ScramUpgrade(hash, this.#server.config.auth.scram_iterations);
			this.#transport.send(t.running.start());
			return;
		}
		if (el.name !== "task-data" || !t.running)
			return fail("malformed-request", `unexpected <${el.name}/> during a task`);
		const cred = t.running.finish(el);
		if (typeof cred === "string") return fail("malformed-request", cred);
		const user = t.step.username;
		let added: boolean;
		try {
			added = await this.host.accounts.addCredential(user, hash, cred, t.creds);
		} catch (err) {
			this.host.log.warn({ err, user }, "an upgraded SCRAM credential could not be stored");
			if (!this.closed) fail("temporary-auth-failure", "the new credential could not be stored");
			return;
		}
		if (this.closed) return;
		this.host.log.info(
			{ user, hash, added },
			added
				? "SCRAM credential added by an upgrade task (XEP-0480)"
				: "upgrade task not stored: the account's credentials changed meanwhile",
		);
		t.pending.shift();
		t.running = null;
		if (t.pending.length > 0) return this.#sasl2Continue(null);
		this.#sasl2Tasks = null;
		// The mechanism's additional data went with the first <continue/>.
		await this.#sasl2Success(t.exchange, { ...t.step, data: null });
	}

	/**
	 * The mechanism an `<authenticate/>` asks for (§2.3): a FAST one with `<fast/>` (XEP-0484
	 * §3.3), else one of RFC 6120 SASL's, SCRAM with XEP-0474 downgrade protection. A string is
	 * why the mechanism is refused (invalid-mechanism).
	 */
	#sasl2Start(el: Element): Sasl2Exchange | string | { condition: string; text: string } {
		const name = el.attrs.mechanism ?? "";
		// XEP-0480 §2.2: the upgrade tasks asked for; XEP-0388 §2.3: one not offered fails.
		const upgrades = el.getChildren("upgrade", NS_SASL_UPGRADE).map((u) => u.text().trim());
		const offered = this.#upgradesOffered();
		const unknown = upgrades.find((u) => !offered.includes(u));
		if (unknown !== undefined) return `${unknown} is not an upgrade task offered here`;
		const ua = el.getChild("user-agent", NS_SASL2);
		const uaId = ua?.attrs.id;
		const userAgent = uaId && uaId.length <= 256 ? uaId : null;
		const ctx = this.#saslContext();
		const fastEl = el.getChild("fast", NS_FAST);
		if (fastEl) {
			const tokens = this.#fastTokens();
			if (!tokens) return `FAST is not offered here`;
			// §4.1: tokens are per client installation, named by the <user-agent id>.
			if (!userAgent)
				return { condition: "malformed-request", text: "FAST needs a <user-agent id>" };
			const count = fastEl.attrs.count === undefined ? null : parseCount(fastEl.attrs.count);
			if (count === null && fastEl.attrs.count !== undefined) {
				return { condition: "malformed-request", text: "count must be a positive integer" };
			}
			const invalidate = fastEl.attrs.invalidate === "true" || fastEl.attrs.invalidate === "1";
			const mech = createFastMechanism(name, ctx, { tokens, userAgent, count, invalidate });
			if (!mech) return `${name} is not a FAST mechanism offered here`;
			return { request: el, mech, userAgent, fast: mech, upgrades };
		}
		const mechanisms = offeredMechanisms(ctx);
		const cbTypes = ctx.channelBinding?.types() ?? [];
		const mech = createMechanism(name, ctx, {
			downgradeProtection: { mechanisms, channelBindings: cbTypes.length ? cbTypes : null },
		});
		if (!mech) return `${name} is not offered`;
		return { request: el, mech, userAgent, fast: null, upgrades };
	}

	/**
	 * §2.6.1: the client is authenticated. What it asked for inline is done in the XEPs' order:
	 * XEP-0198 resumption first (when it works, nothing is bound and no features follow, §6.2),
	 * then Bind 2 (XEP-0386 §4.2) with what it enables, then the FAST token (XEP-0484 §3.2, §3.4).
	 * The `<success/>` carries the results, and new features follow without a stream restart.
	 */
	async #sasl2Success(
		exchange: Sasl2Exchange,
		step: SaslStep & { kind: "success" },
	): Promise<void> {
		const host = this.host;
		const req = exchange.request;
		const user = step.username;
		const bindRequest = req.getChild("bind", NS_BIND2);
		if (bindRequest && host.accounts.anonymous) {
			// Guests that authenticated together: the same cap as at RFC 6120 bind time (§7.6.2.1).
			const limit = await guestLimit(host, this.remoteAddress, this);
			if (limit) {
				host.log.info({ ip: this.remoteAddress, reason: limit.reason }, "guest refused at bind");
				return this.#saslFailure("temporary-auth-failure", limit.text, false, NS_SASL2);
			}
		}
		const resume = req.getChild("resume", NS_SM);
		const planned = bindRequest
			? bind2Resource(
					bindRequest.getChildText("tag", NS_BIND2),
					user,
					exchange.userAgent,
					host.secret,
				)
			: undefined;
		if (
			planned !== undefined &&
			!resume &&
			exchange.userAgent &&
			this.#server.config.sessions.on_resource_conflict === "refuse"
		) {
			// `refuse` (RFC 6120 §7.7.2.2's choice, as for RFC 6120 binding): this client's
			// resource is online, so the new login fails and nothing changes (XEP-0388 §2.6:
			// not authenticated). temporary-auth-failure: it may work once the old one has gone.
			const existing = host.sessions.get(user)?.get(planned);
			if (existing && existing !== this) {
				host.log.info({ user, resource: planned, sasl2: true }, "bind refused: resource online");
				return this.#saslFailure(
					"temporary-auth-failure",
					"this client's resource is already online",
					false,
					NS_SASL2,
					x("conflict", { xmlns: NS_STANZA_ERRORS }),
				);
			}
		}
		this.#username = user;
		this.#server.metrics.auth(exchange.mech.name, true);
		this.#transport.setStanzaLimit(this.#server.config.limits.stanza_size);
		this.#transport.authenticated();
		const software = sanitizeTrace(
			Buffer.from(req.getChild("user-agent", NS_SASL2)?.getChildText("software", NS_SASL2) ?? ""),
		);
		host.log.info(
			{
				user,
				ip: this.remoteAddress,
				mech: exchange.mech.name,
				sasl2: true,
				...(software && { software }),
				...(step.trace !== undefined && { trace: step.trace }),
			},
			"authenticated",
		);
		const token = await this.#fastToken(exchange, user);
		if (this.closed) return;
		const success = x(
			"success",
			{ xmlns: NS_SASL2 },
			step.data ? x("additional-data", null, step.data.toString("base64")) : undefined,
		);
		const authzid = (jid: string) => x("authorization-identifier", null, jid);
		// XEP-0198 §6.2: resumption first; the resumed session's full JID is the identity.
		let smFailed: Element | null = null;
		if (resume) {
			smFailed = this.#resumeFrom(resume, (resumed, old) => {
				success.append(authzid((old.#jid as JID).toString()), resumed);
				if (token) success.append(token);
				return success;
			});
			if (!smFailed) return;
		}
		let commit: (() => Element) | null = null;
		if (bindRequest && planned !== undefined) {
			commit = await this.#bind2Prepare(bindRequest, planned, exchange.userAgent);
			if (this.closed) return;
		}
		// From here to the features nothing waits: once bound, stanzas may come for the session,
		// and they must follow the <success/>.
		const bound = commit?.();
		success.append(authzid((this.#jid ?? makeJID(user, host.name)).toString()));
		if (smFailed) success.append(smFailed);
		if (bound) success.append(bound);
		if (token) success.append(token);
		this.#transport.send(success);
		this.#transport.send(this.#features());
		if (bound) await host.events.fire("session/bound", { session: this });
	}

	/**
	 * XEP-0484: the `<token/>` for the `<success/>`, if any: on `<request-token/>` (§3.2), or when
	 * the token just used is due for rotation (§3.4), never after an invalidation unless asked.
	 * Needs the client's `<user-agent id>`; a storage error costs the client its token, not its
	 * login.
	 */
	async #fastToken(exchange: Sasl2Exchange, user: string): Promise<Element | undefined> {
		const tokens = this.#fastTokens();
		const requested = exchange.request.getChild("request-token", NS_FAST);
		const mechanism = requested ? requested.attrs.mechanism : exchange.fast?.name;
		if (!tokens || !exchange.userAgent || !mechanism) return undefined;
		if (!requested && !exchange.fast?.rotate) return undefined;
		if (!offeredFastMechanisms(this.#saslContext()).includes(mechanism)) return undefined;
		try {
			const creds = await this.host.accounts.getCredentials(user);
			if (!creds) return undefined;
			const { token, expiry } = await tokens.issue(user, exchange.userAgent, mechanism, creds);
			return x("token", { xmlns: NS_FAST, token, expiry: expiry.toISOString() });
		} catch (err) {
			this.host.log.warn({ err, user }, "FAST token could not be stored");
			return undefined;
		}
	}

	/**
	 * XEP-0386 §4.2: lets modules enable what the request names while the session is not
	 * reachable yet; the returned function binds `planned` (bind2Resource) synchronously, applying
	 * `sessions.on_resource_conflict` as RFC 6120 binding does, with CSI and stream management as
	 * asked, and gives the `<bound/>`.
	 */
	async #bind2Prepare(
		request: Element,
		planned: string,
		userAgent: string | null,
	): Promise<() => Element> {
		const host = this.host;
		const user = this.#username as string;
		const bound = x("bound", { xmlns: NS_BIND2 });
		await host.events.fire<Bind2Event>("bind2/bind", { session: this, request, bound });
		await this.#server.cluster?.resolve?.(host, user);
		return () => {
			const policy = this.#server.config.sessions.on_resource_conflict;
			const client = userAgent ? bind2ClientId(user, userAgent, host.secret) : null;
			const sessions = host.sessions.get(user);
			let resource = planned;
			const existing = sessions?.get(resource);
			// Sessions this login ends: with `replace`, every earlier one of the same client
			// (§4.2: "SHOULD terminate any earlier sessions from the same client"), whatever its
			// tag; with `refuse` or `rename` the operator keeps old sessions.
			const ended =
				client && policy === "replace"
					? [...(sessions?.values() ?? [])].filter(
							(s) => s !== this && #bind2Client in s && s.#bind2Client === client,
						)
					: [];
			if (existing && existing !== this) {
				if (client && policy === "replace") {
					if (!ended.includes(existing)) ended.push(existing);
				} else {
					// `rename`; or a random resource that is taken (RFC 6120 §7.6: one the server
					// makes up must be unique); or `refuse` after a failed <resume>, or a race with
					// another login, when failing is too late: a resource of its own, as `rename`.
					resource = `${resource}.${randomUUID().slice(0, 8)}`;
				}
			}
			for (const s of ended) s.close("conflict", "replaced by a new connection of the same client");
			this.#bind2Client = client;
			this.#bindAs(makeJID(user, host.name, resource));
			host.log.debug({ jid: this.#jid?.toString(), bind2: true }, "resource bound");
			this.#startLiveness();
			this.#csi = new ClientState(user);
			const csi = request.getChild("inactive", NS_CSI) ?? request.getChild("active", NS_CSI);
			if (csi?.name === "inactive") (this.#csi as ClientState).inactive = true;
			const enable = request.getChild("enable", NS_SM);
			if (enable) bound.append(this.#smEnabled(enable));
			return bound;
		};
	}

	// --- before authentication: IQs a module answers (XEP-0077 §3.1.1 in-band registration) ---

	/**
	 * `PreauthEvent.data`: what modules keep for this stream before authentication; made on
	 * first use, so that a stream that never needs it costs nothing more.
	 */
	#preauthData: Map<string, unknown> | undefined;

	#preauth<T>(extra: T): PreauthEvent & T {
		const stream = this;
		return {
			host: this.host,
			remoteAddress: this.remoteAddress,
			secure: this.secure,
			get data() {
				stream.#preauthData ??= new Map();
				return stream.#preauthData;
			},
			send: (el) => this.#transport.send(el),
			close: (condition, text) => this.close(condition, text),
			...extra,
		};
	}

	/**
	 * Fires `preauth-iq/<ns>:<name>` for a well-formed IQ get/set before authentication; true
	 * when a module answered it. Anything unclaimed keeps the RFC 6120 §6.4.1 behaviour.
	 */
	async #preauthIq(iq: Element): Promise<boolean> {
		// RFC 6120 §5.3.1: while TLS is mandatory-to-negotiate, nothing comes before it.
		if (this.host.requireEncryption && !this.secure) return false;
		const type = iq.attrs.type;
		const children = iq.elements();
		const payload = children[0];
		if (!iq.attrs.id || (type !== "get" && type !== "set") || !payload || children.length !== 1)
			return false;
		return this.host.events.fire(
			`preauth-iq/${payload.ns}:${payload.name}`,
			this.#preauth({ stanza: iq }),
		);
	}

	// --- resource binding (RFC 6120 §7) and the legacy session (RFC 3921 §3) ---

	async #preBindIq(iq: Element): Promise<void> {
		const type = iq.attrs.type;
		const bind = iq.getChild("bind", NS_BIND);
		if (type === "set" && bind && iq.attrs.id) return this.#bind(iq, bind);
		if (type === "set" && iq.getChild("session", NS_SESSION)) {
			this.#transport.send(x("iq", { type: "result", id: iq.attrs.id }));
			return;
		}
		// RFC 6120 §7.1: the client may not send other stanzas before binding.
		if (type === "get" || type === "set") {
			const reply = errorReply(iq, new StanzaError("not-authorized", "bind a resource first"));
			delete reply.attrs.from;
			this.#transport.send(reply);
		}
	}

	async #bind(iq: Element, bind: Element): Promise<void> {
		const host = this.host;
		const user = this.#username as string;
		// RFC 6120 §7.7.2.2: a conflict with a session on another node is one too (sharded registry).
		await this.#server.cluster?.resolve?.(host, user);
		const choice = chooseResource(
			bind.getChildText("resource")?.trim() ?? "",
			(r) => {
				const existing = host.sessions.get(user)?.get(r);
				return existing === this ? undefined : existing;
			},
			this.#server.config.sessions.on_resource_conflict,
		);
		if (choice instanceof StanzaError) return this.#bindError(iq, choice);
		if (host.accounts.anonymous) {
			// Guests that authenticated together passed the SASL-time cap before any of them was
			// bound: RFC 6120 §7.6.2.1 resource-constraint, the limit on connected resources.
			const limit = await guestLimit(host, this.remoteAddress, this);
			if (limit) {
				host.log.info({ ip: this.remoteAddress, reason: limit.reason }, "guest refused at bind");
				return this.#bindError(iq, new StanzaError("resource-constraint", limit.text));
			}
		}
		const { resource } = choice;
		choice.replaces?.close("conflict", "replaced by a new connection with the same resource");
		const jid = makeJID(user, host.name, resource);
		this.#bindAs(jid);
		this.#transport.send(
			x(
				"iq",
				{ type: "result", id: iq.attrs.id },
				x("bind", { xmlns: NS_BIND }, x("jid", null, jid.toString())),
			),
		);
		host.log.debug({ jid: jid.toString() }, "resource bound");
		this.#startLiveness();
		this.#csi = new ClientState(user);
		await host.events.fire("session/bound", { session: this });
	}

	/** The session is bound to `jid`: reachable from now on (RFC 6120 §7, XEP-0386 §4.2). */
	#bindAs(jid: JID): void {
		const host = this.host;
		this.#jid = jid;
		let resources = host.sessions.get(jid.local);
		if (!resources) {
			resources = new Map();
			host.sessions.set(jid.local, resources);
		}
		resources.set(jid.resource, this);
		this.#server.cluster?.sessionChanged(this);
		if (this.#authTimer) clearTimeout(this.#authTimer);
		this.#authTimer = null;
	}

	/** Pings (or, with XEP-0198, ack requests) that find a dead connection (liveness.ts). */
	#startLiveness(): void {
		const host = this.#host as Host;
		const jid = this.#jid as JID;
		const { idle_ping, ping_timeout } = this.#server.config.sessions;
		if (idle_ping > 0) {
			this.#liveness = new Liveness(
				{ idlePing: idle_ping * 1000, pingTimeout: ping_timeout * 1000 },
				{
					ping: (id) => {
						// With stream management the check is an <r/>: an IQ would upset the counts.
						if (this.#sm) return this.#requestAck();
						this.#transport.send(
							x(
								"iq",
								{ type: "get", id, from: host.name, to: jid.toString() },
								x("ping", { xmlns: NS_PING }),
							),
						);
					},
					dead: () => this.#gone(),
				},
			);
			this.#liveness.start();
		}
	}

	#bindError(iq: Element, err: StanzaError): void {
		const reply = errorReply(iq, err);
		delete reply.attrs.from;
		this.#transport.send(reply);
	}

	// --- stanzas after binding ---

	async #clientStanza(el: Element): Promise<void> {
		const jid = this.#jid as JID;
		const from = el.attrs.from;
		// RFC 6120 §8.1.2.1: the server stamps 'from', overriding what the client wrote. A client
		// that claims another account is trying to spoof: invalid-from (§4.9.3.9). One that names
		// its own account with another resource is not, and is overridden as Prosody does:
		// Converse 14 resumes its session (XEP-0198) after a page reload under the old resource
		// but writes the new one it picked into 'from'.
		if (from !== undefined && from !== jid.toString() && from !== jid.bareString) {
			let ok = false;
			try {
				ok = this.#server.jids.parse(from).bare.equals(jid.bare);
			} catch {}
			if (!ok) return this.close("invalid-from", "the 'from' address is not yours");
		}
		el.attrs.from = jid.toString();
		this.#server.metrics.stanzaIn("c2s", el.name);
		if (el.name === "iq" && isLegacySession(el, this.host.name)) {
			// RFC 3921 §3: clients that still establish a "session" after binding get a result.
			// Through send(), like any stanza to the client: XEP-0198 §4 counts it in h (libpurple
			// sends <enable/> before this IQ and acknowledges the result).
			this.send(x("iq", { type: "result", id: el.attrs.id, to: jid.toString() }));
			return;
		}
		await this.#server.router.fromClient(this, el);
	}

	// --- Stream Management (XEP-0198) ---

	#smFailed(condition: StanzaErrorCondition, h?: number): void {
		this.#transport.send(smFailedElement(condition, h));
	}

	async #smElement(el: Element): Promise<void> {
		const sm = this.#sm;
		switch (el.name) {
			case "enable":
				return this.#smEnable(el);
			case "resume":
				return this.#smResume(el);
			case "r":
				// §4: how many stanzas from the client were handled.
				if (!sm) return this.close("unsupported-stanza-type", "stream management is not enabled");
				{
					// Handled includes stored: in a cluster, what went to another node must be held by
					// Redis before the <a/> (a node killed right after it must not lose them, issue 16);
					// and the archive copies (XEP-0313) of what was handled, which the mam module
					// queues as lazy appends, must be committed (storage `settle`).
					// Elements are handled one at a time, so `inbound` cannot grow meanwhile.
					const pending = this.#server.cluster?.settled?.();
					if (pending) await pending;
					await this.#server.storage.settle();
				}
				this.#transport.send(x("a", { xmlns: NS_SM, h: String(sm.inbound) }));
				return;
			case "a": {
				if (!sm) return this.close("unsupported-stanza-type", "stream management is not enabled");
				const h = parseCount(el.attrs.h);
				if (h === null) return this.close("bad-format", "an <a/> needs h, from 0 to 2^32-1");
				sm.requested = false;
				if (!sm.ack(h)) {
					// §4: the client acknowledges more than was sent.
					this.#transport.send(
						streamErrorElement("undefined-condition", "acknowledged more stanzas than were sent"),
					);
					return this.close();
				}
				this.#liveness?.pong();
				return;
			}
			default:
				return this.close("unsupported-stanza-type", `<${el.name}/> in ${NS_SM} is not known`);
		}
	}

	/** §3: enable stream management (after binding), with resumption when asked for and possible. */
	#smEnable(el: Element): void {
		this.#transport.send(this.#smEnabled(el));
	}

	/** The answer to an `<enable/>`, on its own or inside a Bind 2 `<bound/>` (§6.1). */
	#smEnabled(el: Element): Element {
		const jid = this.#jid;
		if (!jid || this.#sm || !this.#transport.detach) return smFailedElement("unexpected-request");
		const cfg = this.#server.config.sessions;
		const wanted = el.attrs.resume === "true" || el.attrs.resume === "1";
		const asked = parseCount(el.attrs.max);
		const max = Math.min(asked ?? cfg.hibernation, cfg.max_hibernation);
		const sm = new StreamManagement({
			resume: wanted && cfg.hibernation > 0 && max > 0,
			resource: jid.resource,
			max,
		});
		this.#sm = sm;
		return x("enabled", {
			xmlns: NS_SM,
			id: sm.id,
			resume: sm.resumable ? "true" : undefined,
			max: sm.resumable ? String(sm.max) : undefined,
		});
	}

	/**
	 * §5: a new connection, authenticated as the same account, takes over a session whose
	 * connection broke (or is breaking: the newer connection wins). What the client has not
	 * acknowledged is sent again.
	 */
	#smResume(el: Element): void {
		if (!this.#username || this.#jid) {
			this.#smFailed("unexpected-request");
			return;
		}
		const failed = this.#resumeFrom(el, (resumed) => resumed);
		if (failed) this.#transport.send(failed);
	}

	/**
	 * Resumes the session `<resume/>` names on this connection, or returns the `<failed/>` to
	 * answer. `first` builds what goes out before the stanzas sent again: the `<resumed/>`
	 * itself, or a SASL2 `<success/>` holding it (XEP-0198 §6.2).
	 */
	#resumeFrom(el: Element, first: (resumed: Element, old: C2SStream) => Element): Element | null {
		const user = this.#username as string;
		const h = parseCount(el.attrs.h);
		const previd = el.attrs.previd ?? "";
		if (h === null) return smFailedElement("bad-request");
		const resource = resourceOf(previd);
		const old = resource === null ? undefined : this.host.sessions.get(user)?.get(resource);
		if (!(old instanceof C2SStream) || !old.#sm?.matches(previd) || old.#state === "closed") {
			// Expired, never ours, or held by another cluster node: the client binds afresh. A
			// session another node holds in hibernation ends there now (`abandon`), so what it
			// queued reaches the new session instead of waiting for the hibernation to run out.
			if (old !== undefined && !(old instanceof C2SStream) && this.#server.cluster)
				this.#server.cluster.notify(this.host, SM_ABANDON, `${user}\n${previd}`);
			return smFailedElement("item-not-found");
		}
		if (!old.#sm.ack(h)) return smFailedElement("unexpected-request");
		// This connection now carries the old session; this stream only passes things on.
		if (this.#authTimer) clearTimeout(this.#authTimer);
		this.#authTimer = null;
		this.#state = "closed";
		this.#resumedInto = old;
		const fn = this.#onClosed;
		this.#onClosed = null;
		fn?.();
		old.#takeOver(this.#transport, previd, (resumed) => first(resumed, old));
		return null;
	}

	#takeOver(transport: Transport, previd: string, first: (resumed: Element) => Element): void {
		const sm = this.#sm as StreamManagement;
		if (this.#hibernation) clearTimeout(this.#hibernation);
		this.#hibernation = null;
		const previous = this.#transport;
		if (previous !== transport) {
			previous.detach?.();
			previous.closeStream();
		}
		this.#transport = transport;
		this.data.delete(HIBERNATING);
		this.#host?.log.info(
			{ jid: this.#jid?.toString(), ip: transport.remoteAddress, resent: sm.unacked.length },
			"session resumed",
		);
		transport.send(first(x("resumed", { xmlns: NS_SM, previd, h: String(sm.inbound) })));
		for (const stanza of sm.unacked) transport.send(stanza);
		if (sm.unacked.length) this.#requestAck();
		this.#liveness?.stop();
		this.#startLiveness();
	}

	/** The client bound afresh on another node after its resume failed there (contracts.ts). */
	abandon(previd: string): void {
		if (!this.#hibernation || !this.#sm?.matches(previd)) return;
		clearTimeout(this.#hibernation);
		this.#host?.log.info(
			{ jid: this.#jid?.toString() },
			"resumption failed on another node: the hibernating session ends",
		);
		this.#hibernationOver();
	}

	/** §5: the connection is gone; the session stays (presence included) until resumed or expired. */
	#hibernate(): void {
		const sm = this.#sm as StreamManagement;
		this.#liveness?.stop();
		sm.requested = false;
		this.#host?.log.info(
			{ jid: this.#jid?.toString(), ip: this.remoteAddress, seconds: sm.max },
			"connection lost, session hibernates",
		);
		this.#hibernation = setTimeout(() => this.#hibernationOver(), sm.max * 1000);
		this.#hibernation.unref();
		// Modules (push notifications) and other cluster nodes read it (contracts.ts `Session.data`).
		this.data.set(HIBERNATING, true);
	}

	/**
	 * Nobody resumed the session in time: it ends (unavailable presence, RFC 6121 §4.5.2), the
	 * messages the client never acknowledged go to offline storage (never lost), and requests
	 * it will not answer get an error (§5: as if delivery failed).
	 */
	#hibernationOver(): void {
		this.#hibernation = null;
		if (this.#state === "closed") return;
		const unacked = this.#sm?.unacked.splice(0) ?? [];
		this.#state = "closed";
		this.#teardown();
		this.#keepUnread(unacked.filter((s) => s.name === "message"));
		for (const s of unacked) {
			const type = s.attrs.type;
			if (s.name !== "iq" || (type !== "get" && type !== "set") || !mayReplyWithError(s)) continue;
			void this.#server.router
				.route(errorReply(s, new StanzaError("service-unavailable")))
				.catch(() => undefined);
		}
	}

	// --- Session ---

	send(stanza: Element): void {
		if (this.#state === "closed") return;
		const csi = this.#csi;
		if (csi?.inactive) {
			if (csi.hold(stanza)) return;
			// Something important: what was held goes first, in order.
			for (const held of csi.release()) this.#deliver(held);
		}
		this.#deliver(stanza);
	}

	/** XEP-0352 §4: `<active/>` sends what was held; `<inactive/>` starts holding. */
	#clientState(el: Element): void {
		const csi = this.#csi as ClientState;
		if (el.name === "inactive") csi.inactive = true;
		else if (el.name === "active") {
			csi.inactive = false;
			this.#releaseHeld();
		}
	}

	/** Sends whatever CSI held (on `<active/>`, or into the queues when the connection breaks). */
	#releaseHeld(): void {
		for (const held of this.#csi?.release() ?? []) this.#deliver(held);
	}

	#deliver(stanza: Element): void {
		const sm = this.#sm;
		if (sm) {
			sm.sent(stanza);
			if (this.#hibernation && sm.unacked.length > MAX_UNACKED_HIBERNATING) {
				clearTimeout(this.#hibernation);
				this.#hibernationOver();
				return;
			}
			if (sm.unacked.length > MAX_UNACKED) {
				// A client that acknowledges nothing cannot make us keep everything.
				this.close("policy-violation", "too many unacknowledged stanzas");
				return;
			}
			if (this.#hibernation) return; // kept for the resumption (XEP-0198 §5)
		}
		this.#transport.send(stanza);
		this.#server.metrics.stanzaOut("c2s", stanza.name);
		this.#liveness?.sent(stanza);
		// XEP-0198 §4: ask for an acknowledgement once a few are outstanding.
		if (sm && !sm.requested && sm.unacked.length >= REQUEST_EVERY) this.#requestAck();
	}

	#requestAck(): void {
		if (!this.#sm || this.#hibernation) return;
		this.#sm.requested = true;
		this.#transport.send(x("r", { xmlns: NS_SM }));
	}

	close(condition?: StreamErrorCondition, text?: string): void {
		if (this.#resumedInto) {
			this.#resumedInto.close(condition, text);
			return;
		}
		if (this.#state === "closed") return;
		// What CSI held goes out before the end (and into the counts below).
		this.#releaseHeld();
		if (condition) {
			// RFC 6120 §4.9.1.2: an error before our header still needs the header first.
			if (!this.#headerSent) this.#sendHeader(Object.create(null));
			this.#transport.send(streamErrorElement(condition, text));
			this.#server.log.debug({ ip: this.remoteAddress, condition, text }, "stream error");
		}
		this.#state = "closed";
		this.#transport.closeStream();
		// XEP-0198: messages the client never acknowledged (it was replaced by a new login, asked
		// to leave, or the server stops) go to offline storage: possibly twice, never lost.
		const unacked = this.#sm ? this.#sm.unacked.splice(0).filter((s) => s.name === "message") : [];
		this.#teardown();
		this.#keepUnread(unacked);
	}

	#teardown(): void {
		this.#liveness?.stop();
		if (this.#hibernation) clearTimeout(this.#hibernation);
		this.#hibernation = null;
		if (this.#authTimer) clearTimeout(this.#authTimer);
		this.#authTimer = null;
		this.#queue.length = 0;
		releaseGuest(this);
		const jid = this.#jid;
		const host = this.#host;
		if (jid && host) {
			const resources = host.sessions.get(jid.local);
			if (resources?.get(jid.resource) === this) {
				resources.delete(jid.resource);
				if (resources.size === 0) host.sessions.delete(jid.local);
			}
			this.#server.cluster?.sessionClosed(this);
			void host.events.fire("session/closed", { session: this }).catch((err: unknown) => {
				host.log.error({ err }, "session/closed handler failed");
			});
		}
		const fn = this.#onClosed;
		this.#onClosed = null;
		fn?.();
	}
}

/** A SASL2 exchange under way (XEP-0388 §2.3): its `<authenticate/>` holds the inline requests. */
interface Sasl2Exchange {
	request: Element;
	mech: SaslMechanism;
	/** The `<user-agent id>` (XEP-0388 §2.3), or null. */
	userAgent: string | null;
	/** The FAST mechanism, when this is a XEP-0484 token login. */
	fast: (SaslMechanism & { rotate: boolean }) | null;
	/** XEP-0480 upgrade tasks asked for (`<upgrade/>`), all offered ones. */
	upgrades: string[];
}

function smFailedElement(condition: StanzaErrorCondition, h?: number): Element {
	return x(
		"failed",
		{ xmlns: NS_SM, h: h === undefined ? undefined : String(h) },
		x(condition, { xmlns: NS_STANZA_ERRORS }),
	);
}

function isLegacySession(iq: Element, host: string): boolean {
	const to = iq.attrs.to;
	return (
		iq.attrs.type === "set" &&
		(to === undefined || to === host) &&
		iq.getChild("session", NS_SESSION) !== undefined
	);
}
