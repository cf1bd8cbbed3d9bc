/**
 * Blocking Command (XEP-0191 v1.3): a user keeps a list of blocked JIDs; nothing from them
 * reaches the user, and nothing the user sends reaches them.
 *
 * The list is stored per user in the "blocklist" map store (key = normalised JID) and cached
 * in memory; reads and changes of one user's list run one after the other.
 *
 * Events: the module answers `blocking/outbound` ({user, jid}: true when user blocked jid), so
 * another host can check stanzas the server generates on a user's behalf, and fires
 * `blocking/changed` ({user, blocked, unblocked, all}) after every change, for the presence
 * module (presence to and from contacts is its business).
 */

import { randomUUID } from "node:crypto";
import type { ClusterNotice, Session } from "../core/contracts.ts";
import { HANDLED, Priority } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { StanzaEvent } from "../core/router.ts";
import { type Element, x } from "../xml/element.ts";
import { mayReplyWithError, StanzaError } from "../xmpp/errors.ts";
import { type JID, JIDError } from "../xmpp/jid.ts";
import { resultFor } from "../xmpp/stanza.ts";

export const NS_BLOCKING = "urn:xmpp:blocking";
export const NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors";
/** session.data key: the resource requested the blocklist (XEP-0191 §3.3 pushes go there). */
const INTERESTED = "blocking";
/** Users whose lists stay cached at most; the oldest loaded is dropped first. */
const CACHE_SIZE = 10_000;

export interface BlockingChanged {
	user: string;
	blocked: JID[];
	unblocked: JID[];
	/** The whole list was cleared (XEP-0191 §3.5). */
	all: boolean;
	/**
	 * The `<block/>` request itself, for a block: its items may carry XEP-0377 reports
	 * (§blocking), which the spam module queues once the block is done.
	 */
	request?: Element;
	/** The resource that asked, for a block. */
	origin?: Session;
}

/**
 * XEP-0191 §6 (the XEP-0016 order): an item matches the exact full JID, the bare JID (any
 * resource), and a domain item matches the domain itself, everything at it, and its
 * subdomains.
 */
export function isBlocked(list: ReadonlySet<string>, jid: JID): boolean {
	if (list.size === 0) return false;
	if (list.has(jid.toString())) return true;
	if (jid.local && list.has(jid.bareString)) return true;
	let domain = jid.domain;
	for (;;) {
		if (list.has(domain)) return true;
		const dot = domain.indexOf(".");
		if (dot < 0) return false;
		domain = domain.slice(dot + 1);
	}
}

function itemsOf(jids: Iterable<string>): Element[] {
	return [...jids].map((jid) => x("item", { jid }));
}

export default defineModule({
	name: "blocking",
	description: "XEP-0191 Blocking Command",
	load(api) {
		const host = api.host;
		const server = host.server;
		const store = api.map<boolean>("blocklist");
		const cache = new Map<string, Set<string>>();
		const tails = new Map<string, Promise<void>>();
		api.addFeature(NS_BLOCKING);
		api.addAccountFeature(NS_BLOCKING);

		/** One user's list operations in order, so the cache never holds a stale list. */
		function serial<T>(user: string, job: () => Promise<T>): Promise<T> {
			const run = (tails.get(user) ?? Promise.resolve()).then(job);
			const tail = run.then(
				() => {},
				() => {},
			);
			tails.set(user, tail);
			void tail.then(() => {
				if (tails.get(user) === tail) tails.delete(user);
			});
			return run;
		}

		async function load(user: string): Promise<Set<string>> {
			let list = cache.get(user);
			if (list) return list;
			list = new Set((await store.getAll(user)).keys());
			if (cache.size >= CACHE_SIZE) {
				const oldest = cache.keys().next().value;
				if (oldest !== undefined) cache.delete(oldest);
			}
			cache.set(user, list);
			return list;
		}

		/** The user's blocklist; cheap once cached. */
		function listOf(user: string): Promise<Set<string>> | Set<string> {
			return cache.get(user) ?? serial(user, () => load(user));
		}

		/** Parses the `<item jid/>` children: jid-malformed (RFC 6120 §8.3.3.8) on a bad one. */
		function parseItems(payload: Element): JID[] {
			const out = new Map<string, JID>();
			for (const item of payload.getChildren("item", NS_BLOCKING)) {
				const raw = item.attrs.jid;
				if (raw === undefined) throw new StanzaError("bad-request", "an item without a jid");
				try {
					const jid = server.jids.parse(raw);
					out.set(jid.toString(), jid);
				} catch (e) {
					if (e instanceof JIDError) throw new StanzaError("jid-malformed");
					throw e;
				}
			}
			return [...out.values()];
		}

		/** XEP-0191 §3.3, §3.4, §3.5: the change goes to every resource that asked for the list. */
		function push(user: string, payload: Element): void {
			for (const s of host.sessionsOf(user)) {
				if (!s.jid || s.data.get(INTERESTED) !== true) continue;
				s.send(
					x(
						"iq",
						{ type: "set", id: `push-${randomUUID()}`, to: s.jid.toString() },
						payload.clone(),
					),
				);
			}
		}

		const self = ({ origin, from, to }: StanzaEvent): Session | null =>
			origin && from.bare.equals(to) ? origin : null;

		// XEP-0191 §3.2: the list; asking for it makes the resource an interested one.
		api.hook(`iq-get/bare/${NS_BLOCKING}:blocklist`, async (event: StanzaEvent) => {
			const origin = self(event);
			if (!origin) return undefined;
			const list = await listOf(event.from.local);
			origin.data.set(INTERESTED, true);
			origin.send(
				resultFor(event.stanza, x("blocklist", { xmlns: NS_BLOCKING }, itemsOf([...list].sort()))),
			);
			return HANDLED;
		});

		// XEP-0191 §3.3: block.
		api.hook(`iq-set/bare/${NS_BLOCKING}:block`, async (event: StanzaEvent) => {
			const origin = self(event);
			if (!origin) return undefined;
			const user = event.from.local;
			const request = event.stanza.elements()[0] as Element;
			const jids = parseItems(request);
			// §3.3: a block without any item is bad-request.
			if (!jids.length) throw new StanzaError("bad-request", "block needs at least one item");
			const added = await serial(user, async () => {
				const list = await load(user);
				const fresh = jids.filter((j) => !list.has(j.toString()));
				for (const j of fresh) {
					await store.set(user, j.toString(), true);
					list.add(j.toString());
				}
				if (fresh.length) server.cluster?.notify(host, "blocking", user);
				return fresh;
			});
			origin.send(resultFor(event.stanza));
			push(user, x("block", { xmlns: NS_BLOCKING }, itemsOf(jids.map((j) => j.toString()))));
			// §3.3: unavailable presence to the contacts allowed to see the user's presence is
			// the presence module's business (blocking/changed), like §3.4's presence on unblock.
			await host.events.fire<BlockingChanged>("blocking/changed", {
				user,
				blocked: added,
				unblocked: [],
				all: false,
				request,
				origin,
			});
			return HANDLED;
		});

		// XEP-0191 §3.4 unblock, §3.5 unblock everything (an empty <unblock/>).
		api.hook(`iq-set/bare/${NS_BLOCKING}:unblock`, async (event: StanzaEvent) => {
			const origin = self(event);
			if (!origin) return undefined;
			const user = event.from.local;
			const jids = parseItems(event.stanza.elements()[0] as Element);
			const all = jids.length === 0;
			const removed = await serial(user, async () => {
				const list = await load(user);
				if (all) {
					const was = [...list];
					await store.deleteAll(user);
					list.clear();
					server.cluster?.notify(host, "blocking", user);
					return was.map((j) => server.jids.parse(j));
				}
				const gone = jids.filter((j) => list.has(j.toString()));
				for (const j of gone) {
					await store.set(user, j.toString(), undefined);
					list.delete(j.toString());
				}
				if (gone.length) server.cluster?.notify(host, "blocking", user);
				return gone;
			});
			origin.send(resultFor(event.stanza));
			push(
				user,
				x("unblock", { xmlns: NS_BLOCKING }, all ? [] : itemsOf(jids.map((j) => j.toString()))),
			);
			await host.events.fire<BlockingChanged>("blocking/changed", {
				user,
				blocked: [],
				unblocked: removed,
				all,
			});
			return HANDLED;
		});

		// Another node of the cluster changed a user's list: the cached copy here is stale.
		api.hook("cluster/blocking", ({ data: user }: ClusterNotice) =>
			serial(user, async () => {
				cache.delete(user);
			}),
		);

		// For other hosts: did `user` of this host block `jid`?
		api.hook("blocking/outbound", async ({ user, jid }: { user: string; jid: JID }) =>
			isBlocked(await listOf(user), jid) ? HANDLED : undefined,
		);

		/**
		 * Inbound (XEP-0191 §3.3): from a blocked JID, presence and IQ results/errors are dropped
		 * silently, messages and IQ get/set get service-unavailable, so the user looks offline.
		 * A stanza the server generates for a local sender (no client origin; a client's own
		 * stanzas were checked on the way out) is dropped when that sender blocked the recipient.
		 */
		const inbound = async (event: StanzaEvent) => {
			const { stanza, from, to, origin } = event;
			if (!to.local || from.bare.equals(to.bare)) return undefined;
			if (isBlocked(await listOf(to.local), from)) {
				const kind = stanza.name;
				const type = stanza.attrs.type;
				if (kind === "presence") return HANDLED;
				if (kind === "iq" && type !== "get" && type !== "set") return HANDLED;
				throw new StanzaError("service-unavailable");
			}
			if (origin || !from.local) return undefined;
			// The unavailable presence sent when blocking (§3.3) must get through.
			if (stanza.name === "presence" && stanza.attrs.type === "unavailable") return undefined;
			const senderHost = server.hosts.get(from.domain);
			if (
				senderHost &&
				(await senderHost.events.fire("blocking/outbound", { user: from.local, jid: to }))
			)
				return HANDLED;
			return undefined;
		};
		for (const kind of ["message", "presence", "iq"])
			for (const dest of ["bare", "full"])
				api.hook(`inbound-${kind}/${dest}`, inbound, Priority.BLOCK);

		/**
		 * Outbound (XEP-0191 §3.3): a client's stanza to a JID its user blocked is not routed;
		 * the sender gets not-acceptable with <blocked xmlns='urn:xmpp:blocking:errors'/>.
		 */
		const outbound = async (event: StanzaEvent) => {
			const { stanza, from, to, origin } = event;
			if (!origin || to.bare.equals(from.bare)) return undefined;
			// A user's own server stays reachable whatever the list says.
			if (!to.local && to.domain === from.domain) return undefined;
			if (!isBlocked(await listOf(from.local), to)) return undefined;
			// RFC 6120 §8.3.1: errors and IQ results are never answered with an error.
			if (!mayReplyWithError(stanza)) return HANDLED;
			throw new StanzaError("not-acceptable", undefined, {
				type: "cancel",
				appCondition: x("blocked", { xmlns: NS_BLOCKING_ERRORS }),
			});
		};
		for (const kind of ["message", "presence", "iq"])
			for (const dest of ["host", "bare", "full"])
				api.hook(`pre-${kind}/${dest}`, outbound, Priority.BLOCK);
	},
});
