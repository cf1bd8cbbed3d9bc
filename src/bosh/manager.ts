/**
 * The BOSH connection manager (XEP-0124 §7): parses each POSTed `<body/>`, creates sessions
 * and hands later bodies to the session their `sid` names.
 */

import type { Core } from "../core/contracts.ts";
import { type Lease, leaseAll } from "../security/limits.ts";
import type { Element } from "../xml/element.ts";
import { XmlError } from "../xml/errors.ts";
import { parseDocument } from "../xml/parser.ts";
import { BODY_SLACK, BoshSession, NS_HTTPBIND, terminateBody } from "./session.ts";

/** How long an ended session still answers its final body to a late request. */
const ENDED_GRACE_MS = 10_000;
/** Ended sessions remembered for late requests at most; past it the oldest are forgotten first. */
const MAX_ENDED = 10_000;

export interface BoshPeer {
	ip: string;
	secure: boolean;
}

/**
 * In a cluster a sid is `<node>.<random>`, the node that holds the session in base64url (which
 * has no "."): a request that lands on another node (another worker behind SO_REUSEPORT, or
 * another machine behind a round-robin balancer) is handed to that node over the cluster link.
 */
const SID_NODE_SEP = ".";

export class BoshManager {
	readonly #server: Core;
	/** The kind of cluster request this manager answers (one per listener: http, https). */
	readonly #kind: string;
	/** This node's sid prefix; "" outside a cluster. */
	readonly #sidPrefix: string;
	readonly #sessions = new Map<string, BoshSession>();
	/**
	 * The final body of each session that ended in the last ENDED_GRACE_MS, by sid, oldest
	 * first: a late request gets it. Only the string is kept, not the session (its stream,
	 * parser, queues), so what a session leaves behind is a few hundred bytes for 10 s.
	 */
	readonly #ended = new Map<string, string>();

	constructor(server: Core, kind = "bosh") {
		this.#server = server;
		this.#kind = kind;
		const cluster = server.cluster;
		this.#sidPrefix = cluster
			? `${Buffer.from(cluster.node).toString("base64url")}${SID_NODE_SEP}`
			: "";
		// Bodies for our sessions that landed on another node (XEP-0124 §7: every request of a
		// session reaches the connection manager that holds it).
		cluster?.answer(kind, async (raw) => Buffer.from(await this.#handleHere(raw, true)));
	}

	get size(): number {
		return this.#sessions.size;
	}

	/** The largest body any session may post, for the HTTP layer's own limit. */
	get maxBodyBytes(): number {
		return this.#server.config.limits.stanza_size + BODY_SLACK;
	}

	/** Handles one POSTed body; resolves with the XML to answer (always HTTP 200, §17.2). */
	handle(raw: Buffer, peer: BoshPeer): Promise<string> {
		return this.#handleHere(raw, false, peer);
	}

	/**
	 * `relayed`: another node passed the body on; it never creates a session, and a sid of yet
	 * another node is not passed on again.
	 */
	#handleHere(raw: Buffer, relayed: boolean, peer?: BoshPeer): Promise<string> {
		const limits = this.#server.config.limits;
		let body: Element;
		try {
			body = parseDocument(raw, {
				maxStanzaBytes: this.maxBodyBytes,
				maxDepth: limits.max_depth + 1,
			});
		} catch (err) {
			if (!(err instanceof XmlError)) throw err;
			// XEP-0124 §17.2 bad-request: the body is not well-formed (restricted) XML.
			const condition = err.condition === "policy-violation" ? "policy-violation" : "bad-request";
			return Promise.resolve(terminateBody(condition));
		}
		if (body.name !== "body" || body.ns !== NS_HTTPBIND)
			return Promise.resolve(terminateBody("bad-request"));
		const rid = parseRid(body.attrs.rid);
		// XEP-0124 §7.1: every request carries a rid.
		if (rid === null) return Promise.resolve(terminateBody("bad-request"));
		const sid = body.attrs.sid;
		if (sid === undefined)
			return Promise.resolve(
				peer ? this.#create(body, rid, raw.length, peer) : terminateBody("bad-request"),
			);
		const session = this.#sessions.get(sid);
		if (!session && !relayed && !sid.startsWith(this.#sidPrefix)) return this.#relay(sid, raw);
		if (!session) {
			const final = this.#ended.get(sid);
			// XEP-0124 §17.2 item-not-found: the sid is not (or no longer) known.
			return Promise.resolve(final ?? terminateBody("item-not-found"));
		}
		return session.request(rid, body, raw.length);
	}

	/** Hands the body to the node named in the sid, and its answer back to the client. */
	async #relay(sid: string, raw: Buffer): Promise<string> {
		const cluster = this.#server.cluster;
		const cut = sid.indexOf(SID_NODE_SEP);
		if (!cluster || cut <= 0) return terminateBody("item-not-found");
		const node = Buffer.from(sid.slice(0, cut), "base64url").toString();
		this.#server.log.debug(
			{ node, listener: this.#kind },
			"BOSH body handed to its session's node",
		);
		// The other node holds the request at most 'wait' seconds (§7.1, at most max_wait here).
		const timeout = (this.#server.config.http.bosh.max_wait + 10) * 1000;
		const answer = await cluster.ask(node, this.#kind, raw, timeout);
		// XEP-0124 §17.2 item-not-found: no live node holds that sid.
		return answer ? answer.toString() : terminateBody("item-not-found");
	}

	#create(body: Element, rid: number, bytes: number, peer: BoshPeer): string {
		const server = this.#server;
		const cfg = server.config.http.bosh;
		const attrs = body.attrs;
		if (bytes > server.config.limits.preauth_stanza_size + BODY_SLACK)
			return terminateBody("policy-violation");
		const to = (attrs.to ?? "").toLowerCase().replace(/\.$/, "");
		// XEP-0124 §17.2 host-unknown: 'to' names no host of ours.
		const host = server.hosts.get(to);
		if (!host) return terminateBody("host-unknown");
		// RFC 6120 §5.3.1: TLS is mandatory for this host, and BOSH cannot STARTTLS.
		if (host.requireEncryption && !peer.secure) return terminateBody("policy-violation");
		const leases = leaseAll(peer.ip, [server.connectionLimiter, server.unauthenticatedLimiter]);
		if (!leases) return terminateBody("policy-violation");
		const streamAttrs = Object.create(null) as Record<string, string>;
		streamAttrs.to = to;
		// XEP-0206 §4: the XMPP version rides on the body as xmpp:version.
		const version = attrs["xmpp:version"];
		if (version !== undefined) streamAttrs.version = version;
		const lang = attrs["xml:lang"];
		if (lang !== undefined) streamAttrs["xml:lang"] = lang;
		const session = new BoshSession(
			server,
			{
				ip: peer.ip,
				secure: peer.secure,
				// XEP-0124 §7.1: we may lower what the client asks for, never raise it.
				wait: clamp(parseCount(attrs.wait), 1, cfg.max_wait, cfg.max_wait),
				hold: clamp(parseCount(attrs.hold), 0, cfg.max_hold, 1),
				inactivity: cfg.inactivity,
				maxPause: cfg.max_pause,
				polling: cfg.polling,
				ack: attrs.ack === "1",
				streamAttrs,
				sidPrefix: this.#sidPrefix,
				preauth: leases[1],
			},
			(s) => this.#sessionEnded(s, leases),
		);
		this.#sessions.set(session.sid, session);
		return session.create(rid);
	}

	#sessionEnded(session: BoshSession, leases: readonly Lease[]): void {
		for (const lease of leases) lease.release();
		const sid = session.sid;
		if (this.#sessions.get(sid) === session) this.#sessions.delete(sid);
		// Late requests still get the terminal body for a moment, then item-not-found.
		const final = session.finalBody;
		if (final === null) return;
		this.#ended.set(sid, final);
		if (this.#ended.size > MAX_ENDED) this.#ended.delete(this.#ended.keys().next().value as string);
		setTimeout(() => {
			if (this.#ended.get(sid) === final) this.#ended.delete(sid);
		}, ENDED_GRACE_MS).unref();
	}

	/** Ends every session (server shutdown, listener close). */
	closeAll(): void {
		for (const s of this.#sessions.values()) if (!s.ended) s.end("system-shutdown");
		this.#sessions.clear();
		this.#ended.clear();
	}
}

/** XEP-0124 §7.1: a positive integer below 2^53. */
function parseRid(value: string | undefined): number | null {
	if (value === undefined || !/^[0-9]{1,16}$/.test(value)) return null;
	const n = Number(value);
	return Number.isSafeInteger(n) && n > 0 ? n : null;
}

function parseCount(value: string | undefined): number | undefined {
	if (value === undefined || !/^[0-9]{1,9}$/.test(value)) return undefined;
	return Number(value);
}

function clamp(value: number | undefined, min: number, max: number, fallback: number): number {
	if (value === undefined) return fallback;
	return Math.min(max, Math.max(min, value));
}
