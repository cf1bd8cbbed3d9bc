/**
 * Rosters and presence subscriptions (RFC 6121 §2 and §3).
 *
 * A user's roster is one keyval value ("roster" store): a version counter (§2.6), the items,
 * and the pending inbound subscription requests (§3.1.3), which are not roster items. Every
 * change is written (and awaited, so it is durable) before the IQ result or the roster push
 * goes out. Changes to one user's roster are serialised by a per-user lock held in the module
 * instance.
 *
 * Other modules add items that are not stored (shared roster groups) by hooking `roster/load`
 * (see RosterLoadEvent): `loadRoster()` gives the merged view used for roster gets, presence
 * fan-out and probe answers. The subscription state machine works on the stored items only.
 *
 * Subscription stanzas are handled twice, as RFC 6121 describes for two servers: outbound on
 * the sender's host (`pre-presence/*`, where the stanza is stamped with bare JIDs, §3.1.2)
 * and inbound on the recipient's host (`presence/bare`), whether both users share a host or not.
 */
import { createHash, randomBytes } from "node:crypto";
import { z } from "zod";
import { type Invite, InviteStore, NS_PARS } from "../auth/invites.ts";
import type { Host, Session } from "../core/contracts.ts";
import { HANDLED } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { StanzaEvent } from "../core/router.ts";
import type { Json } from "../storage/types.ts";
import { type Element, x } from "../xml/element.ts";
import { parseDocument } from "../xml/parser.ts";
import { StanzaError } from "../xmpp/errors.ts";
import { type JID, JIDError } from "../xmpp/jid.ts";
import { resultFor } from "../xmpp/stanza.ts";

export const NS_ROSTER = "jabber:iq:roster";
/** RFC 6121 §2.6.1: roster versioning stream feature. */
export const NS_ROSTER_VER = "urn:xmpp:features:rosterver";
/** RFC 6121 §3.4.1: subscription pre-approval stream feature. */
export const NS_PRE_APPROVAL = "urn:xmpp:features:pre-approval";

export type Subscription = "none" | "to" | "from" | "both";

export type RosterItem = {
	name?: string;
	groups: string[];
	subscription: Subscription;
	/** Pending-out: the user asked to subscribe (§2.1.2.2 ask="subscribe"). */
	ask?: boolean;
	/** Pre-approved (§3.4, approved="true"). */
	approved?: boolean;
};

type StoredRoster = {
	ver: number;
	items: Record<string, RosterItem>;
	/** Pending-in: inbound subscribe stanzas (serialised) by the requester's bare JID. */
	pending: Record<string, string>;
};

/**
 * Fired on a host's bus whenever a roster is built (roster get, presence fan-out, probes).
 * Handlers add or change entries of `items` (bare JID -> item); they must not store them.
 */
export interface RosterLoadEvent {
	host: Host;
	user: string;
	items: Map<string, RosterItem>;
}

/** Fired after a stored roster item changes: `item` null means it was removed. */
export interface RosterChangedEvent {
	user: string;
	jid: string;
	item: RosterItem | null;
}

/**
 * `roster/befriend` on a host's bus: make `user` and `contact` (both accounts of this host)
 * subscribed to each other's presence, as an accepted invitation does (XEP-0401 §5, XEP-0379:
 * a mutual subscription without the subscribe/subscribed round trip). Fired by the
 * registration module after an invited newcomer registered.
 */
export interface RosterBefriendEvent {
	user: string;
	contact: string;
}

const SUBSCRIPTION_TYPES = new Set(["subscribe", "subscribed", "unsubscribe", "unsubscribed"]);
/** RFC 6121 §2.3.3: "server-configured limit" on the length of names and groups. */
const MAX_TEXT = 1023;

const options = z.strictObject({
	/** Roster items per user (RFC 6121 §2.3.3 leaves the limit to the server). */
	max_items: z.number().int().min(1).default(1000),
	/** Stored inbound subscription requests per user; more are dropped (flood protection). */
	max_pending: z.number().int().min(1).default(1000),
});

function emptyRoster(): StoredRoster {
	return { ver: 0, items: {}, pending: {} };
}

async function readStored(host: Host, user: string): Promise<StoredRoster> {
	// The store holds JSON written by this module only; the cast restores its shape.
	const value = (await host.keyval("roster").get(user)) as StoredRoster | undefined;
	return value ?? emptyRoster();
}

function stableJson(items: Map<string, RosterItem>): string {
	return JSON.stringify([...items.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
}

/**
 * The roster as the user sees it: stored items merged with those of `roster/load` providers,
 * and its version string (§2.6: opaque; the stored counter, plus a hash of what providers
 * added so that a change in a shared group also changes the version).
 */
export async function loadRoster(
	host: Host,
	user: string,
): Promise<{ items: Map<string, RosterItem>; ver: string; stored: StoredRoster }> {
	const stored = await readStored(host, user);
	const items = new Map<string, RosterItem>();
	for (const [jid, item] of Object.entries(stored.items))
		items.set(jid, { ...item, groups: [...item.groups] });
	let ver = String(stored.ver);
	// Only providers of unstored items (shared groups) can change the roster here; without one,
	// skip serialising it twice (it is loaded for every probe answer and presence broadcast).
	if (host.events.has("roster/load")) {
		const before = stableJson(items);
		await host.events.fire<RosterLoadEvent>("roster/load", { host, user, items });
		const after = stableJson(items);
		if (after !== before) ver += `-${createHash("sha1").update(after).digest("hex").slice(0, 12)}`;
	}
	return { items, ver, stored };
}

/**
 * One item of the roster as `user` sees it (what `loadRoster(host, user).items.get(jid)`
 * gives), or undefined. Without `roster/load` providers, only that item is read from storage
 * (a probe answer checks one subscription, RFC 6121 §4.3.2: reading and copying the whole
 * roster for it made a login's probes cost one full roster per online contact). With one,
 * the merged roster is built, since a provider may add or change any item.
 */
export async function loadRosterItem(
	host: Host,
	user: string,
	jid: string,
): Promise<RosterItem | undefined> {
	if (host.events.has("roster/load")) return (await loadRoster(host, user)).items.get(jid);
	// The store holds JSON written by this module only; the cast restores its shape.
	const item = await host.keyval("roster").getPath(user, ["items", jid]);
	return (item ?? undefined) as RosterItem | undefined;
}

export function hasFrom(s: Subscription | undefined): boolean {
	return s === "from" || s === "both";
}

export function hasTo(s: Subscription | undefined): boolean {
	return s === "to" || s === "both";
}

/** RFC 6121 §2.1.2: the <item/> element of a roster result or push. */
export function itemElement(jid: string, item: RosterItem | null): Element {
	if (!item) return x("item", { jid, subscription: "remove" });
	return x(
		"item",
		{
			jid,
			name: item.name,
			subscription: item.subscription,
			ask: item.ask ? "subscribe" : undefined,
			approved: item.approved ? "true" : undefined,
		},
		item.groups.map((g) => x("group", null, g)),
	);
}

/**
 * RFC 6121 §2.1.6 roster push of one item to every interested resource of `user`, with the
 * new version (§2.6.3 for a client that uses versioning; for the others see the roster get).
 */
export async function pushItem(
	host: Host,
	user: string,
	jid: string,
	item: RosterItem | null,
): Promise<void> {
	// The user's resources on other nodes too (a sharded cluster registry looks them up).
	await host.server.cluster?.resolve?.(host, user);
	const sessions = host.sessionsOf(user).filter((s) => s.interested);
	if (!sessions.length) return;
	const { ver } = await loadRoster(host, user);
	for (const s of sessions) {
		s.send(
			x(
				"iq",
				{ type: "set", id: `push-${randomBytes(6).toString("hex")}`, to: s.jid?.toString() },
				x("query", { xmlns: NS_ROSTER, ver }, itemElement(jid, item)),
			),
		);
	}
}

/** Subscription state after adding / removing a direction (RFC 6121 Appendix A). */
function addFrom(s: Subscription): Subscription {
	return s === "to" || s === "both" ? "both" : "from";
}
function addTo(s: Subscription): Subscription {
	return s === "from" || s === "both" ? "both" : "to";
}
function removeFrom(s: Subscription): Subscription {
	return s === "both" || s === "to" ? "to" : "none";
}
function removeTo(s: Subscription): Subscription {
	return s === "both" || s === "from" ? "from" : "none";
}

export default defineModule({
	name: "roster",
	description: "RFC 6121 rosters, roster versioning and presence subscriptions",
	options,
	load(api) {
		const host = api.host;
		const { max_items, max_pending } = api.options;
		const store = api.keyval("roster");
		const locks = new Map<string, Promise<unknown>>();
		const invites = new InviteStore(api.keyval<Invite>("invites"));

		/** Read-modify-write of one user's roster under that user's lock; the write is awaited. */
		function update<R>(user: string, fn: (r: StoredRoster) => R): Promise<R> {
			const prev = locks.get(user) ?? Promise.resolve();
			const run = prev.then(async () => {
				const r = await readStored(host, user);
				const before = JSON.stringify(r);
				const result = fn(r);
				if (JSON.stringify(r) !== before) {
					r.ver++;
					// The stored roster is plain JSON built by this module.
					await store.set(user, r as unknown as Json);
				}
				return result;
			});
			const tail = run.catch(() => {});
			locks.set(user, tail);
			void tail.then(() => {
				if (locks.get(user) === tail) locks.delete(user);
			});
			return run;
		}

		async function changed(user: string, jid: string, item: RosterItem | null): Promise<void> {
			await pushItem(host, user, jid, item);
			await host.events.fire<RosterChangedEvent>("roster/changed", { user, jid, item });
		}

		/** Sessions that should see subscription stanzas: available or interested (§3.1.3, §3.1.6). */
		function recipients(user: string): Session[] {
			return host.sessionsOf(user).filter((s) => s.available || s.interested);
		}

		/**
		 * Presence of each of `user`'s available resources to `to` (RFC 6121 §3.1.5 after an
		 * approval), or unavailable presence from each of them (§3.2.2, §3.3.3 after a cancel).
		 */
		async function sendPresenceOf(user: string, to: string, unavailable: boolean): Promise<void> {
			await host.server.cluster?.resolve?.(host, user);
			for (const s of host.sessionsOf(user)) {
				if (!s.available || !s.jid) continue;
				const p = unavailable
					? x("presence", { type: "unavailable" })
					: (s.presence?.clone() ?? x("presence"));
				p.attrs.from = s.jid.toString();
				p.attrs.to = to;
				await api.send(p);
			}
		}

		function subscriptionStanza(type: string, from: string, to: string, orig?: Element): Element {
			const p = orig ? orig.clone() : x("presence");
			p.attrs.type = type;
			p.attrs.from = from;
			p.attrs.to = to;
			delete p.attrs.id;
			if (orig?.attrs.id) p.attrs.id = orig.attrs.id;
			return p;
		}

		// --- accepted invitations (XEP-0401 §5): both subscribed at once ---
		api.hook("roster/befriend", async ({ user, contact }: RosterBefriendEvent) => {
			for (const [a, b] of [
				[user, contact],
				[contact, user],
			] as const) {
				const jid = `${b}@${host.name}`;
				const item = await update(a, (r) => {
					const it: RosterItem = r.items[jid] ?? { groups: [], subscription: "none" };
					it.subscription = "both";
					delete it.ask;
					delete it.approved;
					r.items[jid] = it;
					return { ...it, groups: [...it.groups] };
				});
				await changed(a, jid, item);
			}
			return HANDLED;
		});

		// --- stream features (RFC 6121 §2.6.1, §3.4.1) ---
		api.hook(
			"stream-features",
			({ features }: { features: Element }) => {
				features.append(x("ver", { xmlns: NS_ROSTER_VER }));
				features.append(x("sub", { xmlns: NS_PRE_APPROVAL }));
			},
			100,
		);

		// --- roster get (RFC 6121 §2.1.3, §2.6.3) ---
		api.hook(
			`iq-get/bare/${NS_ROSTER}:query`,
			async ({ stanza, origin, from, to }: StanzaEvent) => {
				// Only the account itself manages its roster (RFC 6121 §2.3.3 forbidden; also §2.1.5).
				if (!from.bare.equals(to)) throw new StanzaError("forbidden");
				if (!origin) return HANDLED;
				const query = stanza.elements()[0] as Element;
				const clientVer = query.attrs.ver;
				const { items, ver } = await loadRoster(host, from.local);
				origin.interested = true; // §2.1.6: an interested resource from now on
				if (clientVer !== undefined && clientVer === ver) {
					// §2.6.3: the client's version is current: empty result, changes come as pushes.
					origin.send(resultFor(stanza));
					return HANDLED;
				}
				// The version goes with every roster, whether or not the client sent one (as Prosody
				// does). §2.6.2 only says that a client without versioning "will not include the
				// 'ver' attribute"; nothing asks the server to leave it out. The attribute is part
				// of the roster syntax (§2.1.1) and the roster results of RFC 6121's own examples
				// carry it (§2.1.3), a client that does not version ignores it, and one that does
				// can start from it instead of asking again with ver="" (§2.6.2).
				origin.send(
					resultFor(
						stanza,
						x(
							"query",
							{ xmlns: NS_ROSTER, ver },
							[...items].map(([jid, item]) => itemElement(jid, item)),
						),
					),
				);
				return HANDLED;
			},
		);

		// --- roster set (RFC 6121 §2.3, §2.4, §2.5) ---
		api.hook(
			`iq-set/bare/${NS_ROSTER}:query`,
			async ({ stanza, origin, from, to }: StanzaEvent) => {
				// §2.3.3: only an authenticated resource of the account may update it.
				if (!from.bare.equals(to)) throw new StanzaError("forbidden");
				const query = stanza.elements()[0] as Element;
				const items = query.getChildren("item");
				// §2.3.3: exactly one <item/>.
				if (items.length !== 1 || query.elements().length !== 1)
					throw new StanzaError("bad-request", "a roster set contains exactly one item");
				const el = items[0] as Element;
				const jidAttr = el.attrs.jid;
				// §2.1.2.3: 'jid' is required.
				if (jidAttr === undefined) throw new StanzaError("bad-request", "item without jid");
				let contact: JID;
				try {
					contact = host.server.jids.parse(jidAttr);
				} catch (e) {
					if (e instanceof JIDError) throw new StanzaError("jid-malformed"); // RFC 6120 §8.3.3.8
					throw e;
				}
				if (contact.resource)
					throw new StanzaError("jid-malformed", "a roster item is a bare JID (RFC 6121 §2.1.2.3)");
				const jid = contact.toString();
				const user = from.local;

				if (el.attrs.subscription === "remove") {
					await removeItem(user, from.bare.toString(), jid);
					origin?.send(resultFor(stanza));
					return HANDLED;
				}
				// §2.1.2.5: any other 'subscription' value, and 'ask' / 'approved', are ignored.
				const name = el.attrs.name;
				if (name !== undefined && name.length > MAX_TEXT)
					throw new StanzaError("not-acceptable", "name too long"); // §2.3.3
				const groups: string[] = [];
				for (const g of el.getChildren("group")) {
					const text = g.text();
					// §2.3.3: an empty group or one over the limit is not-acceptable.
					if (text === "") throw new StanzaError("not-acceptable", "empty group name");
					if (text.length > MAX_TEXT)
						throw new StanzaError("not-acceptable", "group name too long");
					// §2.3.3: duplicate groups are bad-request.
					if (groups.includes(text)) throw new StanzaError("bad-request", "duplicate group");
					groups.push(text);
				}
				const item = await update(user, (r) => {
					const existing = r.items[jid];
					if (!existing && Object.keys(r.items).length >= max_items)
						throw new StanzaError("not-allowed", `roster is full (at most ${max_items} items)`);
					const next: RosterItem = {
						...(existing ?? { subscription: "none" }),
						groups,
					};
					if (name !== undefined && name !== "") next.name = name;
					else delete next.name;
					r.items[jid] = next;
					return next;
				});
				// §2.3.2: result to the sender, then a push to every interested resource.
				origin?.send(resultFor(stanza));
				await changed(user, jid, item);
				return HANDLED;
			},
		);

		/** §2.5.2: removing an item also cancels the subscriptions both ways. */
		async function removeItem(user: string, userBare: string, jid: string): Promise<void> {
			const found = await update(user, (r) => {
				const item = r.items[jid];
				const pending = r.pending[jid] !== undefined;
				if (!item && !pending) return null;
				delete r.items[jid];
				delete r.pending[jid];
				return { item, pending };
			});
			// §2.5.3: removing an item that is not there is item-not-found.
			if (!found) throw new StanzaError("item-not-found");
			const { item, pending } = found;
			if (item && (hasTo(item.subscription) || item.ask))
				await api.send(subscriptionStanza("unsubscribe", userBare, jid));
			if ((item && hasFrom(item.subscription)) || pending) {
				await api.send(subscriptionStanza("unsubscribed", userBare, jid));
				if (item && hasFrom(item.subscription)) await sendPresenceOf(user, jid, true);
			}
			if (item) await changed(user, jid, null);
		}

		// --- outbound subscription stanzas, on the sender's host (RFC 6121 §3.1.2, §3.2.2,
		// §3.3.2, §3.1.5, §3.4) ---
		const outbound = async (event: StanzaEvent) => {
			const { stanza, origin, from, to } = event;
			const type = stanza.attrs.type;
			if (!origin || type === undefined || !SUBSCRIPTION_TYPES.has(type)) return undefined;
			const user = from.local;
			const userBare = from.bare.toString();
			// §3.1.3 (and §3.1.2): a full JID is treated as the bare JID.
			const contact = to.bare.toString();
			// Subscribing to oneself is meaningless: the server already shares a user's presence
			// among their resources (§4.2.2). Ignored, as Prosody does.
			if (to.bare.equals(from.bare)) return HANDLED;
			// §3.1.2: the server stamps the bare JIDs.
			const out = subscriptionStanza(type, userBare, contact, stanza);
			switch (type) {
				case "subscribe": {
					const item = await update(user, (r) => {
						const existing = r.items[contact];
						if (!existing && Object.keys(r.items).length >= max_items)
							throw new StanzaError("not-allowed", `roster is full (at most ${max_items} items)`);
						const next: RosterItem = existing ?? { subscription: "none", groups: [] };
						// Appendix A.2.1: pending-out unless already subscribed to the contact.
						if (!hasTo(next.subscription)) next.ask = true;
						r.items[contact] = next;
						return next;
					});
					await changed(user, contact, item);
					await api.send(out);
					return HANDLED;
				}
				case "unsubscribe": {
					// §3.3.2: the user cancels their subscription to the contact.
					const item = await update(user, (r) => {
						const existing = r.items[contact];
						if (!existing) return null;
						existing.subscription = removeTo(existing.subscription);
						delete existing.ask;
						return existing;
					});
					if (item) await changed(user, contact, item);
					await api.send(out);
					return HANDLED;
				}
				case "subscribed": {
					// §3.1.5: approve a pending request; §3.4.1: otherwise a pre-approval.
					const result = await update(user, (r) => {
						const existing = r.items[contact];
						if (r.pending[contact] !== undefined) {
							delete r.pending[contact];
							if (!existing && Object.keys(r.items).length >= max_items)
								throw new StanzaError("not-allowed", `roster is full (at most ${max_items} items)`);
							const next: RosterItem = existing ?? { subscription: "none", groups: [] };
							next.subscription = addFrom(next.subscription);
							delete next.approved;
							r.items[contact] = next;
							return { item: next, route: true };
						}
						if (existing && hasFrom(existing.subscription)) return null; // nothing to do
						if (existing?.approved) return null;
						if (!existing && Object.keys(r.items).length >= max_items)
							throw new StanzaError("not-allowed", `roster is full (at most ${max_items} items)`);
						// §3.4.1: not routed; the approval is kept and pushed with approved="true".
						const next: RosterItem = existing ?? { subscription: "none", groups: [] };
						next.approved = true;
						r.items[contact] = next;
						return { item: next, route: false };
					});
					if (!result) return HANDLED;
					await changed(user, contact, result.item);
					if (result.route) {
						await api.send(out);
						// §3.1.5: the contact (now a subscriber) gets the user's current presence.
						await sendPresenceOf(user, contact, false);
					}
					return HANDLED;
				}
				case "unsubscribed": {
					// §3.2.2: cancel the contact's subscription, deny a pending request, or
					// withdraw a pre-approval.
					const result = await update(user, (r) => {
						const existing = r.items[contact];
						const pending = r.pending[contact] !== undefined;
						delete r.pending[contact];
						const wasFrom = existing !== undefined && hasFrom(existing.subscription);
						const hadApproval = existing?.approved === true;
						if (existing) {
							existing.subscription = removeFrom(existing.subscription);
							delete existing.approved;
						}
						return { item: existing, route: pending || wasFrom, wasFrom, hadApproval };
					});
					if (result.item && (result.wasFrom || result.hadApproval))
						await changed(user, contact, result.item);
					if (result.route) {
						await api.send(out);
						// §3.2.2: the contact no longer sees the user: unavailable from each resource.
						if (result.wasFrom) await sendPresenceOf(user, contact, true);
					}
					return HANDLED;
				}
			}
			return undefined;
		};
		api.hook("pre-presence/bare", outbound);
		api.hook("pre-presence/full", outbound);

		// --- inbound subscription stanzas, on the recipient's host (RFC 6121 §3.1.3, §3.1.6,
		// §3.2.3, §3.3.3) ---
		const inbound = async (event: StanzaEvent) => {
			const { stanza, from, to } = event;
			const type = stanza.attrs.type;
			if (type === undefined || !SUBSCRIPTION_TYPES.has(type)) return undefined;
			if (event.origin) return undefined; // client stanzas go through `outbound` first
			const user = to.local;
			const userBare = to.bare.toString();
			const contact = from.bare.toString();
			if (contact === userBare) return HANDLED;
			const deliver = (p: Element) => {
				for (const s of recipients(user)) {
					const copy = p.clone();
					copy.attrs.to = userBare;
					s.send(copy);
				}
			};
			if (!(await host.accounts.exists(user))) {
				// RFC 6121 §8.5.1: for a subscribe to an account that does not exist, the server
				// replies "unsubscribed" on its behalf; other types are silently ignored.
				if (type === "subscribe")
					await api.send(subscriptionStanza("unsubscribed", userBare, contact));
				return HANDLED;
			}
			switch (type) {
				case "subscribe": {
					// XEP-0379 §3: a subscription request carrying the token of the user's own
					// contact invitation is approved at once, and answered with a request back.
					const preauth = stanza.getChild("preauth", NS_PARS)?.attrs.token;
					const invited =
						preauth !== undefined && (await invites.useForRoster(preauth, user, contact));
					const result = await update(user, (r) => {
						if (invited) {
							const it: RosterItem = r.items[contact] ?? { groups: [], subscription: "none" };
							it.subscription = addFrom(it.subscription);
							if (!hasTo(it.subscription)) it.ask = true;
							delete it.approved;
							delete r.pending[contact];
							r.items[contact] = it;
							return { kind: "approved" as const, item: { ...it, groups: [...it.groups] } };
						}
						const item = r.items[contact];
						// §3.1.3 rule 2: already subscribed: auto-reply "subscribed".
						if (item && hasFrom(item.subscription)) return { kind: "already" as const };
						// §3.4.2: pre-approved: approve now.
						if (item?.approved) {
							item.subscription = addFrom(item.subscription);
							delete item.approved;
							delete r.pending[contact];
							return { kind: "approved" as const, item };
						}
						if (r.pending[contact] !== undefined) return { kind: "duplicate" as const };
						if (Object.keys(r.pending).length >= max_pending) return { kind: "full" as const };
						// §3.1.3 rule 4: keep the complete stanza until the contact answers.
						r.pending[contact] = subscriptionStanza(
							"subscribe",
							contact,
							userBare,
							stanza,
						).toString();
						return { kind: "stored" as const };
					});
					if (result.kind === "already" || result.kind === "approved") {
						if (result.kind === "approved") await changed(user, contact, result.item);
						await api.send(subscriptionStanza("subscribed", userBare, contact));
						if (result.kind === "approved") await sendPresenceOf(user, contact, false);
						if (result.kind === "approved" && result.item.ask)
							await api.send(subscriptionStanza("subscribe", userBare, contact));
						return HANDLED;
					}
					if (result.kind === "full") {
						api.log.warn({ user, contact }, "pending subscription requests limit reached");
						return HANDLED;
					}
					// §3.1.3 rule 3: deliver to the available resources; a repeated request is not
					// delivered twice (the note under rule 4).
					if (result.kind === "stored") deliver(stanza);
					return HANDLED;
				}
				case "subscribed": {
					// §3.1.6: only if the user asked (pending-out); otherwise silently ignored.
					const item = await update(user, (r) => {
						const existing = r.items[contact];
						if (!existing?.ask) return null;
						delete existing.ask;
						existing.subscription = addTo(existing.subscription);
						return existing;
					});
					if (!item) return HANDLED;
					deliver(stanza);
					await changed(user, contact, item);
					return HANDLED;
				}
				case "unsubscribe": {
					// §3.3.3: the contact cancels their subscription to the user (or withdraws a
					// pending request).
					const result = await update(user, (r) => {
						const existing = r.items[contact];
						const pending = r.pending[contact] !== undefined;
						delete r.pending[contact];
						const wasFrom = existing !== undefined && hasFrom(existing.subscription);
						if (existing) existing.subscription = removeFrom(existing.subscription);
						return { item: existing, pending, wasFrom };
					});
					if (!result.wasFrom && !result.pending) return HANDLED;
					deliver(stanza);
					if (result.item && result.wasFrom) {
						await changed(user, contact, result.item);
						// §3.3.3: the contact stops seeing the user.
						await sendPresenceOf(user, contact, true);
					}
					return HANDLED;
				}
				case "unsubscribed": {
					// §3.2.3: the contact denied or cancelled the user's subscription.
					const item = await update(user, (r) => {
						const existing = r.items[contact];
						if (!existing || (!hasTo(existing.subscription) && !existing.ask)) return null;
						existing.subscription = removeTo(existing.subscription);
						delete existing.ask;
						return existing;
					});
					if (!item) return HANDLED;
					deliver(stanza);
					await changed(user, contact, item);
					return HANDLED;
				}
			}
			return undefined;
		};
		api.hook("presence/bare", inbound);
		// §3.1.3: subscription stanzas to a full JID are handled as if sent to the bare JID.
		api.hook("presence/full", inbound);

		// §3.1.3 rule 4: pending requests are delivered again whenever the user comes online.
		api.hook("presence/initial", async ({ session }: { session: Session }) => {
			const user = session.jid?.local;
			if (!user) return;
			const stored = await readStored(host, user);
			for (const xml of Object.values(stored.pending)) {
				try {
					const p = parseDocument(xml, {
						maxStanzaBytes: Buffer.byteLength(xml) + 1,
						maxDepth: 64,
					});
					session.send(p);
				} catch (err) {
					api.log.warn({ err, user }, "unreadable stored subscription request");
				}
			}
		});

		// A removed account takes its roster along; storage.deleteUser covers the store.
	},
});
