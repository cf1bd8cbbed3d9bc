/**
 * One BOSH session (XEP-0124) carrying one XMPP stream (XEP-0206). The session is the
 * Transport of a C2SStream: elements the stream sends are queued and handed out in the body of
 * the oldest held HTTP request; bodies the client posts are fed to the stream in `rid` order.
 */
import { randomBytes } from "node:crypto";
import type { ChannelBindingSource } from "../auth/channel-binding.ts";
import { C2SStream } from "../c2s/stream.ts";
import type { Transport } from "../c2s/transport.ts";
import type { Core } from "../core/contracts.ts";
import { standaloneXml } from "../http/serialize.ts";
import type { Lease } from "../security/limits.ts";
import { type Attrs, Element, escapeAttr } from "../xml/element.ts";
import { NS_CLIENT, NS_STREAMS } from "../xmpp/ns.ts";

export const NS_HTTPBIND = "http://jabber.org/protocol/httpbind";
export const NS_XBOSH = "urn:xmpp:xbosh";

/** Room for the `<body/>` wrapper's attributes on top of the stanza size limit. */
export const BODY_SLACK = 1024;

/** XEP-0124 §17.2 terminal binding conditions (the ones we use). */
export type BoshCondition =
	| "bad-request"
	| "host-unknown"
	| "item-not-found"
	| "policy-violation"
	| "remote-stream-error"
	| "system-shutdown"
	| "undefined-condition";

export interface BoshSessionOptions {
	ip: string;
	secure: boolean;
	/** Seconds a held request waits for data before an empty response (§7.1 'wait'). */
	wait: number;
	/** Requests held at once (§7.1 'hold'). */
	hold: number;
	/** Seconds without any pending request before the session ends (§7.1 'inactivity'). */
	inactivity: number;
	maxPause: number;
	/** Shortest interval between empty polls, seconds (§7.1 'polling'). */
	polling: number;
	/** The client asked for acknowledgements (§9.1). */
	ack: boolean;
	/** The stream header attributes: to, xml:lang, version. */
	streamAttrs: Attrs;
	/** Put before the random part of the sid: the cluster node holding the session. */
	sidPrefix?: string;
	/** Its place among its address's unauthenticated connections, until SASL success. */
	preauth?: Lease;
}

interface PendingRequest {
	rid: number;
	body: Element;
	bytes: number;
	resolve: (xml: string) => void;
	timer: NodeJS.Timeout | null;
	answered: boolean;
}

/** A `<body/>` start tag in the httpbind namespace with these attributes. */
export function bodyXml(attrs: Record<string, string | undefined>, children = ""): string {
	let s = `<body xmlns="${NS_HTTPBIND}"`;
	for (const k in attrs) {
		const v = attrs[k];
		if (v !== undefined) s += ` ${k}="${escapeAttr(v)}"`;
	}
	return children ? `${s}>${children}</body>` : `${s}/>`;
}

/** XEP-0124 §17.2: a terminal binding error. */
export function terminateBody(condition?: BoshCondition, children = ""): string {
	return bodyXml(
		{ type: "terminate", condition, "xmlns:stream": children ? NS_STREAMS : undefined },
		children,
	);
}

/** Stanzas queued for a client between two requests before the session is ended. */
const MAX_QUEUED_ELEMENTS = 10_000;

export class BoshSession implements Transport {
	readonly kind = "bosh" as const;
	readonly sid: string;
	readonly remoteAddress: string;
	readonly secure: boolean;
	readonly canStartTls = false;
	readonly #server: Core;
	readonly #opts: BoshSessionOptions;
	readonly #stream: C2SStream;
	readonly #requests: number;
	readonly #onEnd: (s: BoshSession) => void;
	/** The rid the next in-order request must carry (XEP-0124 §14.1). */
	#nextRid = 0;
	/** Requests that arrived ahead of a missing rid, processed when the gap fills (§14.1). */
	readonly #ahead = new Map<number, PendingRequest>();
	/** Held requests, oldest first (§11). */
	readonly #held: PendingRequest[] = [];
	/** Responses by rid, kept for retransmission within the window (§14.3). */
	readonly #cache = new Map<number, string>();
	#inflight = 0;
	#out: Element[] = [];
	#flushQueued = false;
	#streamHeader: Attrs | null = null;
	#awaitingRestart = false;
	#stanzaLimit: number;
	#inactivityTimer: NodeJS.Timeout | null = null;
	#pauseSeconds = 0;
	#lastEmptyPoll = 0;
	/** Set once the session is over: the answer to anything that still comes in. */
	#final: string | null = null;

	constructor(server: Core, opts: BoshSessionOptions, onEnd: (s: BoshSession) => void) {
		this.#server = server;
		this.#opts = opts;
		this.sid = (opts.sidPrefix ?? "") + randomBytes(16).toString("base64url");
		this.remoteAddress = opts.ip;
		this.secure = opts.secure;
		// XEP-0124 §7.1: 'requests' SHOULD be one more than 'hold'; at least 2, so that a
		// polling client (hold=0) may still send while a poll is on its way back.
		this.#requests = Math.max(2, opts.hold + 1);
		this.#onEnd = onEnd;
		this.#stanzaLimit = server.config.limits.preauth_stanza_size;
		this.#stream = new C2SStream(server, this);
		server.streams.add(this.#stream);
		this.#stream.onClosed(() => server.streams.delete(this.#stream));
	}

	get stream(): C2SStream {
		return this.#stream;
	}

	authenticated(): void {
		this.#opts.preauth?.release();
	}

	get ended(): boolean {
		return this.#final !== null;
	}

	/** The terminal body every later request gets, once the session is over. */
	get finalBody(): string | null {
		return this.#final;
	}

	/** XEP-0124 §7.1 / XEP-0206 §4: the session creation response, features included. */
	create(rid: number): string {
		this.#nextRid = rid + 1;
		this.#stream.streamStart("stream", NS_STREAMS, this.#opts.streamAttrs, NS_CLIENT);
		if (this.#final !== null) return this.#final;
		const header = this.#streamHeader ?? Object.create(null);
		const o = this.#opts;
		const response = bodyXml(
			{
				"xmlns:xmpp": NS_XBOSH,
				"xmlns:stream": NS_STREAMS,
				sid: this.sid,
				wait: String(o.wait),
				hold: String(o.hold),
				requests: String(this.#requests),
				polling: String(o.polling),
				inactivity: String(o.inactivity),
				maxpause: String(o.maxPause),
				ver: "1.11",
				from: header.from,
				authid: header.id,
				secure: "true",
				// XEP-0124 §9.1: acknowledging the creation request switches acks on.
				ack: o.ack ? String(rid) : undefined,
				"xmpp:version": header.version,
				// XEP-0206 §5: we support restarts with xmpp:restart.
				"xmpp:restartlogic": "true",
			},
			this.#takeOut(),
		);
		this.#cache.set(rid, response);
		this.#startInactivity();
		return response;
	}

	/** One HTTP request of this session; resolves with the response body. */
	request(rid: number, body: Element, bytes: number): Promise<string> {
		if (this.#final !== null) return Promise.resolve(this.#final);
		this.#stopInactivity();
		if (rid < this.#nextRid) return this.#retransmission(rid);
		// XEP-0124 §14.1: a rid further ahead than the window of 'requests' is an error.
		if (rid >= this.#nextRid + this.#requests || this.#ahead.has(rid))
			return Promise.resolve(this.#terminate("item-not-found", `rid ${rid} is outside the window`));
		// XEP-0124 §12: more simultaneous requests than 'requests' is overactivity.
		if (this.#inflight >= this.#requests)
			return Promise.resolve(this.#terminate("policy-violation", "too many simultaneous requests"));
		if (bytes > this.#stanzaLimit + BODY_SLACK)
			return Promise.resolve(this.#terminate("policy-violation", "body too large"));
		return new Promise((resolve) => {
			this.#inflight++;
			this.#ahead.set(rid, { rid, body, bytes, resolve, timer: null, answered: false });
			this.#processInOrder();
		});
	}

	/** The server ends the session: stream error or shutdown. */
	end(condition: BoshCondition): void {
		this.#terminate(condition, condition);
	}

	// --- requests ---

	#retransmission(rid: number): Promise<string> {
		// XEP-0124 §14.3: a rid we already answered gets the same response again.
		const cached = this.#cache.get(rid);
		if (cached !== undefined) return Promise.resolve(cached);
		const held = this.#held.find((r) => r.rid === rid);
		if (held) {
			// The client resent a request we still hold (its connection broke): the old HTTP
			// exchange is gone, so the new one takes its place in the queue.
			return new Promise((resolve) => {
				const previous = held.resolve;
				held.resolve = resolve;
				previous(bodyXml({}));
			});
		}
		return Promise.resolve(this.#terminate("item-not-found", `rid ${rid} is no longer known`));
	}

	#processInOrder(): void {
		for (;;) {
			const req = this.#ahead.get(this.#nextRid);
			if (!req || this.#final !== null) return;
			this.#ahead.delete(this.#nextRid);
			this.#nextRid++;
			this.#process(req);
		}
	}

	#process(req: PendingRequest): void {
		// Every request, empty polls included, says the client is there (liveness.ts).
		this.#stream.inbound();
		const body = req.body;
		const attrs = body.attrs;
		const children = body.elements();
		this.#held.push(req);
		if (attrs["xmpp:restart"] === "true") {
			// XEP-0206 §5: the stream restarts after SASL; the features go out in the response.
			if (!this.#awaitingRestart) {
				this.#terminate("bad-request", "no stream restart is due");
				return;
			}
			this.#awaitingRestart = false;
			this.#stream.streamStart("stream", NS_STREAMS, this.#opts.streamAttrs, NS_CLIENT);
		} else if (this.#awaitingRestart && children.length > 0) {
			// XEP-0206 §5: after SASL success nothing else is valid before the restart.
			this.#stream.close("not-authorized", "restart the stream first (XEP-0206 §5)");
			return;
		}
		for (const child of children) this.#stream.stanza(toClientNs(child));
		if (this.#final !== null) return;
		if (attrs.type === "terminate") {
			// XEP-0124 §13: the last stanzas are routed, then the stream ends.
			void this.#stream.whenIdle().then(() => this.#stream.streamEnd());
			return;
		}
		if (attrs.pause !== undefined) {
			const seconds = Number(attrs.pause);
			// XEP-0124 §10: a pause longer than maxpause is a policy-violation.
			if (!Number.isInteger(seconds) || seconds < 0 || seconds > this.#opts.maxPause) {
				this.#terminate("policy-violation", "pause longer than maxpause");
				return;
			}
			this.#pauseSeconds = seconds;
			for (const r of [...this.#held]) this.#respond(r);
			return;
		}
		if (children.length === 0 && this.#opts.hold === 0 && attrs["xmpp:restart"] === undefined) {
			// XEP-0124 §12: polling sessions may not send empty requests faster than 'polling'.
			const now = Date.now();
			if (now - this.#lastEmptyPoll < this.#opts.polling * 1000) {
				this.#terminate("policy-violation", "polling too frequently");
				return;
			}
			this.#lastEmptyPoll = now;
		}
		// XEP-0124 §11: hold at most 'hold' requests; answer the oldest beyond that.
		while (this.#held.length > this.#opts.hold) {
			const oldest = this.#held[0] as PendingRequest;
			this.#respond(oldest);
		}
		if (!req.answered) {
			req.timer = setTimeout(() => this.#respond(req), this.#opts.wait * 1000);
			req.timer.unref();
		}
		this.#scheduleFlush();
	}

	/** Answers a request with whatever is queued (possibly nothing). */
	#respond(req: PendingRequest): void {
		if (req.answered) return;
		req.answered = true;
		if (req.timer) clearTimeout(req.timer);
		const i = this.#held.indexOf(req);
		if (i >= 0) this.#held.splice(i, 1);
		this.#inflight--;
		// XEP-0124 §9.2: when answering a request other than the latest, say which rid we are at.
		const ack =
			this.#opts.ack && req.rid < this.#nextRid - 1 ? String(this.#nextRid - 1) : undefined;
		const out = this.#takeOut();
		const response = bodyXml({ "xmlns:stream": out ? NS_STREAMS : undefined, ack }, out);
		this.#cache.set(req.rid, response);
		// Only the last 'requests' responses can be asked for again (§14.3).
		for (const rid of this.#cache.keys())
			if (rid < this.#nextRid - this.#requests) this.#cache.delete(rid);
		req.resolve(response);
		if (this.#inflight === 0) this.#startInactivity();
	}

	#takeOut(): string {
		let s = "";
		for (const el of this.#out) s += standaloneXml(el);
		this.#out = [];
		return s;
	}

	#scheduleFlush(): void {
		if (this.#flushQueued) return;
		this.#flushQueued = true;
		// Everything the stream sends while handling one batch goes out in one response.
		queueMicrotask(() => {
			this.#flushQueued = false;
			const oldest = this.#held[0];
			if (oldest && this.#out.length > 0 && this.#final === null) this.#respond(oldest);
		});
	}

	// --- inactivity (XEP-0124 §7.1 'inactivity', §10 pause) ---

	#startInactivity(): void {
		if (this.#final !== null || this.#inactivityTimer) return;
		const seconds = this.#pauseSeconds || this.#opts.inactivity;
		this.#inactivityTimer = setTimeout(() => {
			this.#server.log.debug({ sid: this.sid, ip: this.remoteAddress }, "BOSH session inactive");
			// The client stopped polling: its connection is as dead as an unanswered ping says.
			this.#server.metrics.deadPeer("c2s");
			this.#terminate(undefined, "inactivity");
		}, seconds * 1000);
		this.#inactivityTimer.unref();
	}

	#stopInactivity(): void {
		this.#pauseSeconds = 0;
		if (this.#inactivityTimer) clearTimeout(this.#inactivityTimer);
		this.#inactivityTimer = null;
	}

	// --- ending ---

	/**
	 * Ends the session with a binding condition: every pending request gets the terminal body,
	 * the stream goes away without a stream error (the condition says it all).
	 */
	#terminate(condition: BoshCondition | undefined, why: string): string {
		if (this.#final !== null) return this.#final;
		this.#server.log.debug(
			{ sid: this.sid, ip: this.remoteAddress, condition, why },
			"BOSH terminate",
		);
		this.#final = terminateBody(condition);
		this.#out = [];
		this.#finish();
		this.#stream.transportClosed();
		return this.#final;
	}

	#finish(): void {
		this.#stopInactivity();
		const final = this.#final as string;
		for (const req of [...this.#held, ...this.#ahead.values()]) {
			if (req.answered) continue;
			req.answered = true;
			if (req.timer) clearTimeout(req.timer);
			req.resolve(final);
		}
		this.#held.length = 0;
		this.#ahead.clear();
		this.#cache.clear();
		this.#inflight = 0;
		this.#onEnd(this);
	}

	// --- Transport ---

	channelBinding(): ChannelBindingSource | null {
		// The TLS session (if any) ends at the HTTP server, not per BOSH session.
		return null;
	}

	openStream(attrs: Attrs, _features: Element | null): void {
		// XEP-0206 §4: the header's attributes travel in the creation response's <body/>.
		this.#streamHeader = attrs;
	}

	send(el: Element): void {
		if (this.#final !== null) return;
		this.#out.push(el);
		if (this.#out.length > MAX_QUEUED_ELEMENTS) {
			// A client that stopped polling would have us queue its stanzas without bound.
			this.#terminate("policy-violation", "the client is not collecting its stanzas");
			return;
		}
		this.#scheduleFlush();
	}

	closeStream(): void {
		if (this.#final !== null) return;
		// XEP-0206 §7: a stream error travels inside a terminate body as remote-stream-error.
		const out = this.#takeOut();
		const streamError = out.includes("<stream:error");
		this.#final = terminateBody(streamError ? "remote-stream-error" : undefined, out);
		this.#finish();
	}

	startTls(): Promise<void> {
		return Promise.reject(new Error("STARTTLS is not available over BOSH"));
	}

	resetParser(): void {
		// After SASL success the client must restart the stream (XEP-0206 §5).
		this.#awaitingRestart = true;
	}

	setStanzaLimit(bytes: number): void {
		this.#stanzaLimit = bytes;
	}

	// A body is bounded by the size limit and the rid window bounds how many are in flight, so
	// there is no socket to pause: flow control is the client's wait for our responses.
	pause(): void {}
	resume(): void {}
}

/**
 * XEP-0206 §6: stanzas in a body are in jabber:client; a client that leaves them unqualified
 * puts them in the body's httpbind namespace, which means the same thing here.
 */
function toClientNs(el: Element): Element {
	if (el.ns !== NS_HTTPBIND) return el;
	return new Element(
		el.name,
		NS_CLIENT,
		el.attrs,
		el.children.map((c) => (typeof c === "string" ? c : toClientNs(c))),
	);
}
