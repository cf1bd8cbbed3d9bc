/**
 * Presence (RFC 6121 §4): availability and priority of each resource; broadcast to the
 * account's other resources and to contacts subscribed to the user (from/both); probes to the
 * contacts the user is subscribed to (to/both), answered directly since every domain is local;
 * directed presence and its clean-up; unavailable presence when a session ends, however it
 * ends. Delivery of presence addressed to a bare JID goes to every available resource.
 *
 * Rosters (and so who is subscribed) come from the roster module's storage through
 * `loadRoster`, which also includes items added by providers such as shared roster groups; a
 * probe answer reads only the one item it checks (`loadRosterItem`).
 *
 * On `blocking/changed` it does the presence side of XEP-0191: unavailable presence both ways
 * on a block (§3.3), current presence both ways on an unblock (§3.4).
 *
 * Fires `presence/initial` ({ session }) after a resource's initial presence has been
 * broadcast: the roster module re-delivers pending subscription requests on it, and offline
 * storage can deliver stored messages.
 */
import { z } from "zod";
import type { Host, RemoteShownChange, Session } from "../core/contracts.ts";
import { HANDLED, Priority } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { StanzaEvent } from "../core/router.ts";
import { type Element, x } from "../xml/element.ts";
import type { JID } from "../xmpp/jid.ts";
import { type BlockingChanged, isBlocked } from "./blocking.ts";
import { hasFrom, hasTo, loadRoster, loadRosterItem } from "./roster.ts";

/** RFC 6121 §4.7.2.3: an integer in -128..127; missing or invalid means 0. */
export function presencePriority(presence: Element): number {
	const text = presence.getChildText("priority");
	if (text === undefined) return 0;
	const n = Number.parseInt(text.trim(), 10);
	if (!Number.isFinite(n)) return 0;
	return Math.max(-128, Math.min(127, n));
}

const DIRECTED = "presence.directed";

/**
 * Whether one of the sessions sent directed available presence to an entity at `bare` (a MUC
 * room the user is in, RFC 6121 §4.6): the spam module's strangers policy lets it through.
 */
export function sentDirectedPresence(sessions: Iterable<Session>, bare: string): boolean {
	for (const s of sessions) {
		const set = s.data.get(DIRECTED) as Set<string> | undefined;
		if (!set) continue;
		for (const to of set) if (to === bare || to.startsWith(`${bare}/`)) return true;
	}
	return false;
}

/** Entities a session sent directed available presence to (RFC 6121 §4.6.3). */
function directedOf(session: Session): Set<string> {
	let set = session.data.get(DIRECTED) as Set<string> | undefined;
	if (!set) {
		set = new Set();
		session.data.set(DIRECTED, set);
	}
	return set;
}

/**
 * Answer a presence probe from `requester` for the account `contact` on `host`
 * (RFC 6121 §4.3.2): when the requester is subscribed (the contact's roster says from/both),
 * the last presence of each of the contact's available resources; otherwise nothing, so that
 * nothing is revealed. A contact with no available resource gets no answer (§4.3.2 allows it).
 */
export async function answerProbe(
	host: Host,
	contact: string,
	requester: JID,
	reply: (presence: Element, from: Session) => void,
): Promise<void> {
	await host.server.cluster?.resolve?.(host, contact);
	const sessions = host.sessionsOf(contact).filter((s) => s.available && s.presence && s.jid);
	if (!sessions.length) return;
	// §4.3.2: only a requester the contact's roster says is subscribed (from/both) gets an
	// answer. One item is read, not the contact's whole roster.
	const item = await loadRosterItem(host, contact, requester.bare.toString());
	if (!hasFrom(item?.subscription)) return;
	// XEP-0191 §3.5: no presence between a user and someone either of them blocked. The
	// answer goes straight to a session, so the router's blocking hooks never see it.
	const contactJid = host.server.jids.parse(`${contact}@${host.name}`);
	if (await host.events.fire("blocking/outbound", { user: contact, jid: requester })) return;
	const requesterHost = host.server.hosts.get(requester.domain);
	if (
		await requesterHost?.events.fire("blocking/outbound", {
			user: requester.local,
			jid: contactJid,
		})
	)
		return;
	for (const s of sessions) {
		const p = (s.presence as Element).clone();
		p.attrs.from = (s.jid as JID).toString();
		p.attrs.to = requester.toString();
		reply(p, s);
	}
}

/** Whether `s` is still its resource's session on its host (not ended, not replaced). */
function current(s: Session): boolean {
	return !!s.jid && s.host.sessions.get(s.jid.local)?.get(s.jid.resource) === s;
}

/**
 * `to`, a session of this node, was just shown the presence of `from`: when `from` is a replica
 * of another node's session, it remembers that (see `session/remote-unavailable`).
 */
function shown(from: Session, to: Session): void {
	const set = from.shownTo;
	if (!set) return;
	// Bounded by the sessions still there: a replica may outlive many short sessions.
	if (set.size >= 64) for (const s of set) if (!current(s)) set.delete(s);
	set.add(to);
}

/**
 * How long after a login in a cluster its local probes run again: well above a Redis round trip
 * and a registry batch (one event-loop turn), short enough that a user does not notice.
 */
const CLUSTER_PROBE_AGAIN_MS = 1000;

const options = z.strictObject({
	/** Entities one session may have sent directed presence to and be tracked (§4.6.3). */
	max_directed: z.number().int().min(1).default(1000),
});

export default defineModule({
	name: "presence",
	description: "RFC 6121 presence: broadcast, probes, directed presence, unavailable on exit",
	options,
	load(api) {
		const host = api.host;
		const { max_directed } = api.options;
		const availableOthers = (session: Session) =>
			host.sessionsOf(session.jid?.local ?? "").filter((s) => s !== session && s.available);

		/** Bare JIDs of the contacts subscribed to the user's presence (from/both, §4.2.2). */
		async function subscribers(user: string, self: string): Promise<string[]> {
			const { items } = await loadRoster(host, user);
			const out: string[] = [];
			for (const [jid, item] of items)
				if (jid !== self && hasFrom(item.subscription)) out.push(jid);
			return out;
		}

		async function broadcastToContacts(session: Session, stanza: Element): Promise<void> {
			const jid = session.jid as JID;
			const contacts = await subscribers(jid.local, jid.bareString);
			// A sharded cluster registry looks the contacts up in one round trip, not one each.
			await host.server.cluster?.resolveAll?.(contacts);
			for (const contact of contacts) {
				const p = stanza.clone();
				p.attrs.from = jid.toString();
				p.attrs.to = contact;
				await api.send(p);
			}
		}

		/**
		 * §4.3.1: probe the contacts the user is subscribed to; local ones answer at once. `sent`
		 * collects the full JIDs whose presence went to the session, and none is sent twice;
		 * `localOnly` probes no other server (a second pass, see {@link probeAgainLater}).
		 */
		async function probeContacts(
			session: Session,
			sent = new Set<string>(),
			localOnly = false,
		): Promise<Set<string>> {
			const jid = session.jid as JID;
			const { items } = await loadRoster(host, jid.local);
			await host.server.cluster?.resolveAll?.(
				[...items].filter(([, item]) => hasTo(item.subscription)).map(([contact]) => contact),
			);
			for (const [contact, item] of items) {
				if (!hasTo(item.subscription) || contact === jid.bareString) continue;
				let cjid: JID;
				try {
					cjid = host.server.jids.parse(contact);
				} catch {
					continue;
				}
				if (!cjid.local) continue;
				const chost = host.server.hosts.get(cjid.domain);
				if (!chost) {
					// A contact on another server (RFC 6120 §10.4): the probe goes there, from the
					// user's bare JID, and the answers come back to every available resource.
					if (!localOnly)
						await api.send(x("presence", { type: "probe", from: jid.bareString, to: contact }));
					continue;
				}
				await answerProbe(chost, cjid.local, jid, (p, s) => {
					const from = p.attrs.from as string;
					if (sent.has(from)) return;
					sent.add(from);
					session.send(p);
					shown(s, session);
				});
			}
			return sent;
		}

		/**
		 * In a cluster a login reaches the other nodes' registries a Redis round trip later. Two
		 * contacts whose initial presences reach two nodes at once each find no available session
		 * of the other: neither the broadcast (§4.2.2) nor the probe answers (§4.3.2) carry their
		 * presence, and they would not see each other until one changes it. So a new session's
		 * local probes run once more a moment later, sending only what was not sent the first time.
		 */
		const pendingProbes = new Set<NodeJS.Timeout>();
		api.onUnload(() => {
			for (const t of pendingProbes) clearTimeout(t);
			pendingProbes.clear();
		});
		function probeAgainLater(session: Session, sent: Set<string>): void {
			const timer = setTimeout(() => {
				pendingProbes.delete(timer);
				if (!session.available) return;
				probeContacts(session, sent, true).catch((err: unknown) =>
					api.log.warn({ err }, "probing the contacts again failed"),
				);
			}, CLUSTER_PROBE_AGAIN_MS);
			timer.unref();
			pendingProbes.add(timer);
		}

		/**
		 * §4.5.2: unavailable to the other resources, the subscribers and directed-presence
		 * recipients. `reflect`: the session sent it itself and is still there, so it gets it back
		 * too ("as well as to the resource that generated the unavailable presence in the first
		 * place"), like available presence in §4.2.2 / §4.4.2.
		 */
		async function goUnavailable(
			session: Session,
			stanza: Element,
			reflect: boolean,
		): Promise<void> {
			const jid = session.jid as JID;
			const others = availableOthers(session);
			session.available = false;
			session.presence = null;
			const p = stanza.clone();
			p.attrs.from = jid.toString();
			delete p.attrs.to;
			for (const s of others) s.send(p.clone());
			if (reflect) session.send(p.clone());
			const sent = new Set<string>();
			const contacts = await subscribers(jid.local, jid.bareString);
			await host.server.cluster?.resolveAll?.(contacts);
			for (const contact of contacts) {
				sent.add(contact);
				const c = p.clone();
				c.attrs.to = contact;
				await api.send(c);
			}
			const directed = directedOf(session);
			for (const to of directed) {
				if (sent.has(to)) continue;
				const c = p.clone();
				c.attrs.to = to;
				await api.send(c);
			}
			directed.clear();
		}

		api.hook("presence/self", async ({ stanza, origin }: StanzaEvent) => {
			// Only broadcast presence (no 'to') is about the session's own availability.
			if (!origin?.jid || stanza.attrs.to !== undefined) return;
			const type = stanza.attrs.type;
			if (type === undefined) {
				const initial = !origin.available;
				origin.available = true;
				origin.priority = presencePriority(stanza);
				origin.presence = stanza;
				// RFC 6121 §4.2.2 / §4.4.2: to all of the user's available resources,
				// including the one that sent it.
				for (const s of availableOthers(origin)) s.send(stanza.clone());
				origin.send(stanza.clone());
				if (initial) {
					// RFC 6121 §4.2.2: the new resource learns about the account's other resources.
					for (const s of availableOthers(origin))
						if (s.presence) {
							origin.send(s.presence.clone());
							shown(s, origin);
						}
				}
				// §4.2.2 / §4.4.2: to every contact with a subscription from/both.
				await broadcastToContacts(origin, stanza);
				if (initial) {
					// §4.2.2: probe the contacts the user is subscribed to.
					const sent = await probeContacts(origin);
					if (host.server.cluster) probeAgainLater(origin, sent);
					await host.events.fire("presence/initial", { session: origin });
				}
				return HANDLED;
			}
			if (type === "unavailable") {
				// RFC 6121 §4.5.2, the sender included.
				if (origin.available) await goUnavailable(origin, stanza, true);
				return HANDLED;
			}
			// §4.3: a probe to oneself or other types to one's own bare JID: nothing to do.
			return HANDLED;
		});

		// --- outbound directed presence and probes, on the sender's host ---
		const outbound = async ({ stanza, origin, from, to }: StanzaEvent) => {
			if (!origin || to.bare.equals(from.bare)) return undefined;
			const type = stanza.attrs.type;
			if (type === "probe") {
				// §4.3: probes are the server's business; a client's probe is answered the same
				// way as one the server sends, for a local account.
				const chost = host.server.hosts.get(to.domain);
				// A contact on another server answers it there: the router takes it (§4.3.1).
				if (!chost && !host.server.local(to.domain)) return undefined;
				if (chost && to.local)
					await answerProbe(chost, to.local, from, (p, s) => {
						origin.send(p);
						shown(s, origin);
					});
				return HANDLED;
			}
			if (type === undefined) {
				// §4.6.2: directed presence while available is remembered, so that the entity
				// learns when the user goes offline (§4.6.3). Bounded per session.
				if (origin.available) {
					const set = directedOf(origin);
					const key = to.toString();
					if (set.has(key) || set.size < max_directed) set.add(key);
					else api.log.debug({ jid: from.toString() }, "directed presence set full");
				}
			} else if (type === "unavailable") {
				// §4.6.4: directed unavailable ends it.
				directedOf(origin).delete(to.toString());
			}
			return undefined;
		};
		api.hook("pre-presence/bare", outbound);
		api.hook("pre-presence/full", outbound);

		// --- inbound presence to a bare JID (RFC 6121 §8.5.2.1.2, §8.5.2.2.2) ---
		api.hook(
			"presence/bare",
			async ({ stanza, from, to }: StanzaEvent) => {
				const type = stanza.attrs.type;
				if (type === "probe") {
					// §4.3.2, for a probe that reached the contact's host through the router.
					const reply = (p: Element) => void api.send(p);
					await answerProbe(host, to.local, from, reply);
					return HANDLED;
				}
				if (type !== undefined && type !== "unavailable" && type !== "error") return undefined;
				// Available, unavailable and errors go to every available resource (negative
				// priority included: §4.7.2.3 only keeps those from bare-JID messages); with none,
				// or for an account that does not exist, the presence is dropped (§8.5.2.2.2,
				// §8.5.1).
				for (const s of host.sessionsOf(to.local)) if (s.available) s.send(stanza);
				return HANDLED;
			},
			Priority.LATE,
		);

		/**
		 * Of the addresses a block list change names (`items`, as a set of strings and a list),
		 * those that cover `contact` (a bare JID): the contact itself when an item matches its
		 * bare JID or its domain (XEP-0191 §6), else the full-JID items of its resources.
		 */
		function covering(items: ReadonlySet<string>, list: JID[], contact: JID): string[] {
			if (isBlocked(items, contact)) return [contact.toString()];
			return list.filter((j) => j.resource && j.bare.equals(contact)).map((j) => j.toString());
		}

		function parseJid(s: string): JID | null {
			try {
				return host.server.jids.parse(s);
			} catch {
				return null;
			}
		}

		/**
		 * XEP-0191 §3.3: the user blocked `blocked`. The user's server "MUST send unavailable
		 * presence information to the contact (but only if the contact is allowed to receive
		 * presence notifications from the user)": a contact subscribed to the user (from/both,
		 * RFC 6121 §4.2.2) and an entity a resource sent directed presence to (RFC 6121 §4.6.2),
		 * from each available resource. Nobody else learns the user's resources this way.
		 *
		 * And the user's resources see the blocked contacts go unavailable: from now on nothing
		 * from them is delivered (§3.3), so the presence they showed would stay forever, where
		 * a new session of the user sees them offline (probes are not answered across a block).
		 * Only contacts the user is subscribed to (to/both) had their presence broadcast to the
		 * user; one that blocked the user already went unavailable for them and is skipped.
		 */
		async function blockedPresence(user: string, mine: Session[], blocked: JID[]): Promise<void> {
			const items = new Set(blocked.map((j) => j.toString()));
			const userJid = (mine[0] as Session).jid?.bare as JID;
			const { items: roster } = await loadRoster(host, user);
			const subscribers: string[] = [];
			const watched: [JID, string[]][] = [];
			for (const [contact, item] of roster) {
				const cjid = parseJid(contact);
				if (!cjid || cjid.equals(userJid)) continue;
				const cover = covering(items, blocked, cjid);
				if (!cover.length) continue;
				if (hasFrom(item.subscription)) subscribers.push(...cover);
				if (hasTo(item.subscription)) watched.push([cjid, cover]);
			}
			for (const s of mine) {
				const targets = new Set(subscribers);
				// §4.6.3 would send these at the end of the session: send them now, once.
				const directed = directedOf(s);
				for (const to of [...directed]) {
					const j = parseJid(to);
					if (j && isBlocked(items, j)) {
						targets.add(to);
						directed.delete(to);
					}
				}
				for (const to of targets)
					await api.send(
						x("presence", { type: "unavailable", from: (s.jid as JID).toString(), to }),
					);
			}
			for (const [cjid, cover] of watched) {
				const chost = host.server.hosts.get(cjid.domain);
				if (!chost || !cjid.local) continue; // no federation: only local contacts
				if (await chost.events.fire("blocking/outbound", { user: cjid.local, jid: userJid }))
					continue;
				await host.server.cluster?.resolve?.(chost, cjid.local);
				const whole = cover.length === 1 && cover[0] === cjid.toString();
				for (const cs of chost.sessionsOf(cjid.local)) {
					if (!cs.available || !cs.jid) continue;
					if (!whole && !cover.includes(cs.jid.toString())) continue;
					const p = x("presence", {
						type: "unavailable",
						from: cs.jid.toString(),
						to: userJid.toString(),
					});
					// Straight to the sessions: the router would now drop it as from a blocked JID.
					for (const us of mine) us.send(p.clone());
				}
			}
		}

		/**
		 * XEP-0191 §3.4: the user unblocked `unblocked`. The user's server "MUST send the user's
		 * current presence information to the contact (but only if the contact is allowed to
		 * receive presence notifications from the user)": each available resource's last
		 * presence to each contact subscribed to the user (from/both) that no other item still
		 * blocks. The other way round, the contacts the user is subscribed to (to/both) are
		 * probed for the user (RFC 6121 §4.3.2), so their presence shows again.
		 */
		async function unblockedPresence(
			user: string,
			mine: Session[],
			unblocked: JID[],
		): Promise<void> {
			const items = new Set(unblocked.map((j) => j.toString()));
			const userJid = (mine[0] as Session).jid?.bare as JID;
			const { items: roster } = await loadRoster(host, user);
			for (const [contact, item] of roster) {
				const cjid = parseJid(contact);
				if (!cjid || cjid.equals(userJid)) continue;
				const cover: string[] = [];
				for (const to of covering(items, unblocked, cjid)) {
					const j = parseJid(to) as JID;
					// Still blocked by another item (its domain, say): nothing changes for it.
					if (!(await host.events.fire("blocking/outbound", { user, jid: j }))) cover.push(to);
				}
				if (!cover.length) continue;
				if (hasFrom(item.subscription))
					for (const s of mine) {
						if (!s.presence || !s.jid) continue;
						for (const to of cover) {
							const p = s.presence.clone();
							p.attrs.from = s.jid.toString();
							p.attrs.to = to;
							await api.send(p);
						}
					}
				const chost = host.server.hosts.get(cjid.domain);
				if (hasTo(item.subscription) && chost && cjid.local)
					await answerProbe(chost, cjid.local, userJid, (p, s) => {
						for (const us of mine) {
							us.send(p.clone());
							shown(s, us);
						}
					});
			}
		}

		api.hook("blocking/changed", async (change: BlockingChanged) => {
			const mine = host.sessionsOf(change.user).filter((s) => s.available && s.jid);
			if (!mine.length) return undefined;
			if (change.blocked.length) await blockedPresence(change.user, mine, change.blocked);
			if (change.unblocked.length) await unblockedPresence(change.user, mine, change.unblocked);
			return undefined;
		});

		/**
		 * In a cluster: another node's session that this node showed to a local session (the
		 * account's new resource, §4.2.2; a contact's probe, §4.3.2) went unavailable or ended.
		 * Its node sent unavailable presence (§4.5.2) to the sessions it knew of; one that logged
		 * in here within a registry propagation of that (milliseconds) was not among them, and
		 * would see the ended resource available for ever. Those get the unavailable from here.
		 */
		api.hook("session/remote-unavailable", ({ session: r, knew }: RemoteShownChange) => {
			const to = r.shownTo;
			if (!to?.size || !r.jid) return;
			const targets = [...to];
			to.clear();
			for (const s of targets) {
				if (!s.available || !s.jid || knew(s) || !current(s)) continue;
				s.send(
					x("presence", { type: "unavailable", from: r.jid.toString(), to: s.jid.toString() }),
				);
			}
		});

		/**
		 * In a cluster: another node's session that this node showed to a local session (as
		 * above) changed its presence (§4.4.2: away, a new status). Its node broadcast it to the
		 * sessions it knew of; one that logged in here within a registry propagation of that was
		 * not among them, and would keep the old presence. Those get the new one from here.
		 */
		api.hook("session/remote-presence", ({ session: r, knew }: RemoteShownChange) => {
			const to = r.shownTo;
			if (!to?.size || !r.jid || !r.presence) return;
			for (const s of [...to]) {
				if (!s.jid || !current(s)) {
					to.delete(s);
					continue;
				}
				if (!s.available || knew(s)) continue;
				const p = r.presence.clone();
				p.attrs.from = r.jid.toString();
				p.attrs.to = s.jid.toString();
				s.send(p);
			}
		});

		// RFC 6121 §4.5.2: a session that ends without saying so (connection lost, stream
		// error) is broadcast as unavailable.
		api.hook("session/closed", async ({ session }: { session: Session }) => {
			if (!session.available || !session.jid) return;
			await goUnavailable(session, x("presence", { type: "unavailable" }), false);
		});
	},
});
