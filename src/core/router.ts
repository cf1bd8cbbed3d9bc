/**
 * The stanza router: where does a stanza go? It follows RFC 6120 §10 (server rules for
 * processing XML stanzas) and RFC 6121 §8 (IM-specific delivery rules), and lets modules claim
 * stanzas through events on the destination host's bus:
 *
 *   pre-<kind>/<dest>          on the sender's host, c2s only (blocking, carbons, firewall)
 *   inbound-<kind>/<dest>      on the destination host, first, for every stanza (blocking)
 *   iq-<type>/<dest>/<ns>:<name> for IQ get/set, keyed by the payload (XEP-0030, XEP-0199, ...)
 *   <kind>/self                 stanzas a user addresses to their own account (RFC 6120 §10.3)
 *   <kind>/<dest>               the general event
 *   message/delivered           after the default rules wrote a message to sessions (carbons)
 *
 * where <kind> is message|presence|iq and <dest> is host|bare|full. Whatever no module claims
 * gets the default treatment below (delivery to sessions or an error per the RFCs).
 */
import type { Element } from "../xml/element.ts";
import { errorReply, mayReplyWithError, StanzaError } from "../xmpp/errors.ts";
import { type JID, JIDError } from "../xmpp/jid.ts";
import type { ClusterHook, Core, Host, Session, StanzaRouter } from "./contracts.ts";

export type Destination = "host" | "bare" | "full";

/** What every stanza event handler receives. */
export interface StanzaEvent {
	stanza: Element;
	/** The client session that sent it; null for stanzas the server itself generates. */
	origin: Session | null;
	/** The host the event fires on. */
	host: Host;
	from: JID;
	/** The addressee; for a stanza without `to` from a client, the sender's bare JID. */
	to: JID;
}

/** `message/delivered`: the sessions a message was just written to. */
export interface DeliveredEvent extends StanzaEvent {
	sessions: Session[];
}

const KINDS = new Set(["message", "presence", "iq"]);

/**
 * The node that handles a stanza for component `host` to `to`, or null: this one. A stanza
 * another node passed on (or any without a session of ours behind it) is looked up `fresh`, so
 * nodes whose caches are stale cannot pass it back and forth.
 */
async function nodeFor(
	host: Host,
	to: JID,
	stanza: Element,
	cluster: ClusterHook,
	fresh: boolean,
): Promise<string | null> {
	const placement = host.placement ?? "leader";
	if (placement === "any") return null;
	if (placement === "leader" || !cluster.owners) return cluster.leader ? null : cluster.leaderNode;
	const unit = placement.unitOf(to, stanza);
	if (unit === null) return null;
	return cluster.owners.ownerOf(host, unit, fresh);
}

export class Router implements StanzaRouter {
	readonly #server: Core;

	constructor(server: Core) {
		this.#server = server;
	}

	/**
	 * A stanza from a bound client session. `from` is stamped by the caller (the stream layer
	 * enforces RFC 6120 §8.1.2.1). Resolves when the stanza has been fully handled, so the
	 * session can process its stanzas in order (RFC 6120 §10.1).
	 */
	async fromClient(session: Session, stanza: Element): Promise<void> {
		const from = session.jid as JID;
		const toAttr = stanza.attrs.to;
		let to: JID;
		if (toAttr === undefined || toAttr === "") {
			// RFC 6120 §10.3: no 'to' means the stanza is for the account itself.
			to = from.bare;
		} else {
			try {
				to = this.#server.jids.parse(toAttr);
			} catch (e) {
				if (!(e instanceof JIDError)) throw e;
				// RFC 6120 §8.3.3.8: jid-malformed.
				this.#bounce(session, stanza, new StanzaError("jid-malformed"));
				return;
			}
			stanza.attrs.to = to.toString();
		}
		const kind = stanza.name;
		const iqError = kind === "iq" ? checkIq(stanza) : null;
		if (iqError) {
			this.#bounce(session, stanza, iqError);
			return;
		}
		const event: StanzaEvent = { stanza, origin: session, host: session.host, from, to };
		try {
			const dest = destinationOf(to);
			if (await session.host.events.fire(`pre-${kind}/${dest}`, event)) return;
			await this.#deliver(event);
		} catch (err) {
			this.#handlerFailed(event, err);
		}
	}

	/**
	 * Route a stanza that carries its own `from` and `to` (sent by a module or the server).
	 * Errors come back to `from` as error stanzas.
	 */
	async route(stanza: Element, origin: Session | null = null): Promise<void> {
		const from = this.#server.jids.parse(stanza.attrs.from ?? "");
		const to = this.#server.jids.parse(stanza.attrs.to ?? "");
		const host = this.#server.local(from.domain) ?? this.#server.local(to.domain);
		if (!host) return;
		const event: StanzaEvent = { stanza, origin, host, from, to };
		try {
			await this.#deliver(event);
		} catch (err) {
			this.#handlerFailed(event, err);
		}
	}

	async #deliver(event: StanzaEvent): Promise<void> {
		const { stanza, to } = event;
		// Hosts and components (XEP-0045 MUC, ...) alike: a component has its own bus.
		const host = this.#server.local(to.domain);
		if (!host) {
			// RFC 6120 §10.4: not a local domain. Federation takes it when it is on (only for
			// stanzas from a local address: a remote server cannot relay through us); otherwise
			// the domain is unreachable: §8.3.3.16 remote-server-not-found.
			const remote = this.#server.remote;
			if (remote && this.#server.local(event.from.domain)) {
				remote.send(stanza, event.from, to);
				return;
			}
			this.#error(event, new StanzaError("remote-server-not-found"));
			return;
		}
		// In a cluster a component runs where its placement says (issue 16): on the leader, on
		// any node, or split into units (MUC rooms) each owned by one node. Stanzas for another
		// node's part are passed on to it.
		const cluster = this.#server.cluster;
		if (host.kind === "component" && cluster) {
			const node = await nodeFor(host, to, stanza, cluster, event.origin === null);
			if (node !== null && node !== cluster.node) {
				cluster.routeOn(node, stanza);
				return;
			}
		}
		event.host = host;
		const kind = stanza.name;
		const dest = destinationOf(to);
		// A sharded cluster registry knows where the addressee's sessions are once looked up;
		// a cached (or local) account answers at once, so the local path stays synchronous.
		if (to.local && host.kind !== "component" && cluster?.resolve) {
			const lookup = cluster.resolve(host, to.local);
			if (lookup) await lookup;
		}
		const bus = host.events;
		// Destination-side filters (XEP-0191 blocking) see every stanza for a local address
		// before any module answers it, IQs to an account's bare JID included.
		if (await bus.fire(`inbound-${kind}/${dest}`, event)) return;
		if (kind === "iq") {
			const type = stanza.attrs.type;
			if (type === "get" || type === "set") {
				const payload = stanza.elements()[0] as Element;
				if (await bus.fire(`iq-${type}/${dest}/${payload.ns}:${payload.name}`, event)) return;
			}
		}
		if (dest === "bare" && event.origin && event.from.bare.equals(to)) {
			if (await bus.fire(`${kind}/self`, event)) return;
		}
		if (await bus.fire(`${kind}/${dest}`, event)) return;
		await this.#defaultDelivery(event, host, dest);
	}

	/**
	 * Delivery when no module claimed the stanza. Async because a message may go to offline
	 * storage: the session waits for that write before its next stanza (RFC 6120 §10.1), so a
	 * later answer on the same stream implies the message is stored.
	 */
	async #defaultDelivery(event: StanzaEvent, host: Host, dest: Destination): Promise<void> {
		const { stanza, to } = event;
		const kind = stanza.name;
		const type = stanza.attrs.type;
		if (dest === "full") {
			const session = host.sessions.get(to.local)?.get(to.resource);
			if (session) {
				session.send(stanza);
				if (kind === "message") this.#delivered(event, host, [session]);
				return;
			}
			if (kind === "message") {
				// RFC 6121 §8.5.3.2.1: a chat message to an unavailable resource is treated as if
				// it were addressed to the bare JID; errors and headlines are silently ignored;
				// normal and groupchat get service-unavailable (the RFC's option (b)).
				if (type === "chat") await this.#toBareMessage(event, host);
				else if (type !== "error" && type !== "headline")
					this.#error(event, new StanzaError("service-unavailable"));
				return;
			}
			if (kind === "presence") return; // RFC 6121 §8.5.3.2.3: ignore
			// RFC 6121 §8.5.3.2.2: IQ to an unavailable resource: service-unavailable.
			this.#error(event, new StanzaError("service-unavailable"));
			return;
		}
		if (dest === "bare") {
			if (kind === "message") {
				await this.#toBareMessage(event, host);
				return;
			}
			if (kind === "presence") return; // subscription handling lives in the presence module
			// RFC 6121 §8.5.2.1.3 / RFC 6120 §10.5.3.2: an IQ to a bare JID is handled by the
			// server on behalf of the account; unhandled -> service-unavailable (§8.4).
			this.#error(event, new StanzaError("service-unavailable"));
			return;
		}
		// To the host itself: RFC 6120 §8.4, an unhandled IQ gets service-unavailable; other
		// stanzas to the server are ignored.
		if (kind === "iq") this.#error(event, new StanzaError("service-unavailable"));
	}

	/** RFC 6121 §8.5.2: message to a bare JID of a local account. */
	async #toBareMessage(event: StanzaEvent, host: Host): Promise<void> {
		const { stanza, to } = event;
		const type = stanza.attrs.type ?? "normal";
		if (type === "groupchat") {
			// RFC 6121 §8.5.2.1.1 and §8.5.2.2.1: never delivered to an account's resources.
			this.#error(event, new StanzaError("service-unavailable"));
			return;
		}
		const targets = pickMessageTargets(host.sessionsOf(to.local), type);
		if (targets.length) {
			for (const s of targets) s.send(stanza);
			this.#delivered(event, host, targets);
			return;
		}
		if (type === "headline") return; // RFC 6121 §8.5.2.2.1: silently ignore
		// No available resource. Offline storage (XEP-0160) claims this through the
		// `message/offline` event; without it the sender learns the message was not delivered
		// (RFC 6121 §8.5.2.2.1 and §8.5.1 for accounts that do not exist).
		await this.#offline(event, host);
	}

	async #offline(event: StanzaEvent, host: Host): Promise<void> {
		try {
			if (await host.events.fire("message/offline", event)) return;
			this.#error(event, new StanzaError("service-unavailable"));
		} catch (err) {
			this.#handlerFailed(event, err);
		}
	}

	/**
	 * `message/delivered` tells modules which sessions got a message by the default rules
	 * (XEP-0280 §7 carbons copy it to the others). Nothing can claim or stop it.
	 */
	#delivered(event: StanzaEvent, host: Host, sessions: Session[]): void {
		if (!host.events.has("message/delivered")) return;
		host.events
			.fire<DeliveredEvent>("message/delivered", { ...event, sessions })
			.catch((err: unknown) => {
				this.#server.log.error({ err }, "message/delivered handler failed");
			});
	}

	#handlerFailed(event: StanzaEvent, err: unknown): void {
		if (err instanceof StanzaError) {
			this.#error(event, err);
			return;
		}
		this.#server.log.error({ err, stanza: event.stanza.toString() }, "stanza handler failed");
		this.#error(event, new StanzaError("internal-server-error"));
	}

	/** Send an error reply for a stanza back to its sender (RFC 6120 §8.3). */
	#error(event: StanzaEvent, error: StanzaError): void {
		const { stanza } = event;
		if (!mayReplyWithError(stanza)) return;
		const reply = errorReply(stanza, error);
		if (event.origin?.jid?.equals(event.from)) {
			event.origin.send(reply);
			return;
		}
		if (stanza.attrs.from) void this.route(reply);
	}

	#bounce(session: Session, stanza: Element, error: StanzaError): void {
		if (!mayReplyWithError(stanza)) return;
		const reply = errorReply(stanza, error);
		delete reply.attrs.from;
		session.send(reply);
	}
}

export function destinationOf(to: JID): Destination {
	if (to.resource) return "full";
	return to.local ? "bare" : "host";
}

/** RFC 6120 §8.2.3: an IQ needs an id, a known type, and get/set exactly one payload child. */
export function checkIq(stanza: Element): StanzaError | null {
	const type = stanza.attrs.type;
	if (!stanza.attrs.id) return new StanzaError("bad-request", "IQ without id");
	if (type === "get" || type === "set") {
		if (stanza.elements().length !== 1)
			return new StanzaError("bad-request", "IQ get/set must have exactly one child");
		return null;
	}
	if (type === "result" || type === "error") return null;
	return new StanzaError("bad-request", "IQ type must be get, set, result or error");
}

/**
 * RFC 6121 §8.5.2.1.1: chat and normal messages go to the available resource(s) with the
 * highest non-negative priority; resources with negative priority never get bare-JID messages.
 * Headlines go to every non-negative resource (§8.5.2.1.2 allows it, Prosody does it).
 */
export function pickMessageTargets(sessions: Session[], type: string): Session[] {
	let best = -1;
	const out: Session[] = [];
	for (const s of sessions) {
		if (!s.available || s.priority < 0) continue;
		if (type === "headline") {
			out.push(s);
			continue;
		}
		if (s.priority > best) {
			best = s.priority;
			out.length = 0;
			out.push(s);
		} else if (s.priority === best) out.push(s);
	}
	return out;
}

export function isStanzaName(name: string): boolean {
	return KINDS.has(name);
}
