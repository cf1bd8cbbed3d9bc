/**
 * Message Archive Management for accounts (XEP-0313, urn:xmpp:mam:2 and #extended), with
 * XEP-0359 stanza ids:
 *
 * - Archiving (§5.1.1 and XEP-0334 hints): every one-to-one message of type chat or normal
 *   with a body (or a `<store/>` hint; never one with `<no-store/>` or `<no-permanent-store/>`)
 *   goes into the archive of the sender when the sender is an account here (`pre-message/*`,
 *   c2s) and of the recipient when the recipient is (`message/bare|full`, before delivery or
 *   offline storage). The recipient's archive id goes into the delivered copy as
 *   `<stanza-id by=account id>`, after any `<stanza-id>` claiming that `by` was removed
 *   (XEP-0359 §5): so the copies carbons and offline storage make of it carry it too.
 *   The appends are queued, not awaited: the message moves on at once, and its archive copies
 *   are committed with the backend's next group commit (see docs/architecture.md).
 * - Preferences (§7 of the older text, now XEP-0441): default always / never / roster, always
 *   and never JID lists; kept in the `mam_prefs` keyval store, cached.
 * - Queries (§4): the form, RSM paging, `<fin/>`, the archive's metadata (protocol.ts).
 * - Retention: `expire_after` deletes older messages periodically; `deleteUser` removes the
 *   `mam` store with the account; XEP-0227 export/import carries it (src/storage/xep0227.ts).
 */
import { z } from "zod";
import type { ClusterNotice } from "../../core/contracts.ts";
import { HANDLED, Priority } from "../../core/events.ts";
import { defineModule } from "../../core/modules/define.ts";
import type { StanzaEvent } from "../../core/router.ts";
import { newArchiveId } from "../../storage/memory.ts";
import type { Json } from "../../storage/types.ts";
import { type Element, x } from "../../xml/element.ts";
import { StanzaError } from "../../xmpp/errors.ts";
import { resultFor } from "../../xmpp/stanza.ts";
import {
	type ArchivedMessage,
	archivedForm,
	metadata,
	NS_HINTS,
	NS_MAM,
	NS_MAM_EXTENDED,
	NS_SID,
	parseDuration,
	parseQuery,
	queryForm,
	resultMessage,
	runQuery,
	stanzaId,
	stripStanzaIds,
} from "./protocol.ts";

export const MAM_STORE = "mam";
export const PREFS_STORE = "mam_prefs";

type Policy = "always" | "never" | "roster";
interface Prefs {
	default: Policy;
	always: string[];
	never: string[];
}

const duration = z.union([z.number().positive(), z.string()]).refine(
	(v) => {
		try {
			parseDuration(v);
			return true;
		} catch {
			return false;
		}
	},
	{ message: 'a duration: "1y", "30d", "12h", "15m", seconds as a number, or "never"' },
);

const options = z.strictObject({
	/** What is archived for an account that set no preferences (XEP-0313 §7 / XEP-0441). */
	default: z.enum(["always", "never", "roster"]).default("always"),
	/** Messages a page holds when the query says no `<max/>`. */
	default_page: z.number().int().min(1).default(50),
	/** The most a page holds, whatever `<max/>` asks. */
	max_page: z.number().int().min(1).default(250),
	/** Messages older than this are deleted (checked every hour, or sooner for short ones). */
	expire_after: duration.default("never"),
});

/** Whether a message belongs in a user archive: XEP-0313 §5.1.1 with XEP-0334 hints. */
export function isArchivable(stanza: Element): boolean {
	const type = stanza.attrs.type ?? "normal";
	if (type !== "chat" && type !== "normal") return false;
	if (stanza.getChild("no-store", NS_HINTS) || stanza.getChild("no-permanent-store", NS_HINTS))
		return false;
	if (stanza.getChild("store", NS_HINTS)) return true;
	return stanza.getChild("body") !== undefined;
}

const CACHE = 10_000;

/** What {@link unchanged} compares: the stanza's namespace, children and attributes. */
interface Seen {
	ns: string | null;
	children: Element["children"];
	count: number;
	attrs: string[];
}

function seenOf(stanza: Element): Seen {
	const attrs: string[] = [];
	for (const k in stanza.attrs) attrs.push(k, stanza.attrs[k] as string);
	return { ns: stanza.ns, children: stanza.children, count: stanza.children.length, attrs };
}

/** Whether `stanza` still has the namespace, children (the same list) and attributes seen. */
function unchanged(stanza: Element, seen: Seen): boolean {
	if (stanza.ns !== seen.ns || stanza.children !== seen.children) return false;
	if (stanza.children.length !== seen.count) return false;
	let i = 0;
	for (const k in stanza.attrs) {
		if (seen.attrs[i] !== k || seen.attrs[i + 1] !== stanza.attrs[k]) return false;
		i += 2;
	}
	return i === seen.attrs.length;
}

export default defineModule({
	name: "mam",
	description: "XEP-0313 Message Archive Management with XEP-0359 stanza ids",
	options,
	load(api) {
		const host = api.host;
		const server = host.server;
		const store = api.archive<ArchivedMessage>(MAM_STORE);
		const prefsStore = api.keyval(PREFS_STORE);
		const roster = api.keyval("roster");
		const defaults: Prefs = { default: api.options.default, always: [], never: [] };
		const limits = { defaultPage: api.options.default_page, maxPage: api.options.max_page };
		api.addAccountFeature(NS_MAM);
		api.addAccountFeature(NS_MAM_EXTENDED);
		api.addAccountFeature(NS_SID);
		// §6.1 asks for the feature on the archiving JID (the account) only, but clients that
		// look for it on their server's disco#info alone (Profanity up to 0.14, Debian 12's 0.13.1,
		// and others) otherwise never query the archive: ejabberd lists it on the domain too.
		api.addFeature(NS_MAM);

		// --- preferences ---

		/** user -> prefs (the defaults when none are stored); oldest first for eviction. */
		const cache = new Map<string, Prefs>();
		const prefsOf = async (user: string): Promise<Prefs> => {
			const hit = cache.get(user);
			if (hit) return hit;
			const stored = (await prefsStore.get(user)) as unknown as Prefs | undefined;
			const prefs = stored ?? defaults;
			if (cache.size >= CACHE) cache.delete(cache.keys().next().value as string);
			cache.set(user, prefs);
			return prefs;
		};
		const forget = (user: string) => cache.delete(user);
		api.hook("cluster/mam-prefs", ({ data }: ClusterNotice) => forget(data));
		api.hook("account/deleted", ({ username }: { username: string }) => forget(username));

		/**
		 * XEP-0313 §7 (XEP-0441 §3): whether `user` archives a message with `peer` (bare). A
		 * boolean at once when the prefs are cached and decide without the roster (the common
		 * case), so the archiving hooks need not wait a turn of the microtask queue.
		 */
		const wants = (user: string, peer: string): boolean | Promise<boolean> => {
			const hit = cache.get(user);
			if (hit) return decide(user, hit, peer);
			return prefsOf(user).then((prefs) => decide(user, prefs, peer));
		};
		const decide = (user: string, prefs: Prefs, peer: string): boolean | Promise<boolean> => {
			if (prefs.never.includes(peer)) return false;
			if (prefs.always.includes(peer)) return true;
			if (prefs.default === "always") return true;
			if (prefs.default === "never") return false;
			// roster: only contacts in the user's roster, whatever the subscription.
			return roster.getPath(user, ["items", peer]).then((item) => item !== undefined);
		};

		const prefsElement = (p: Prefs) =>
			x(
				"prefs",
				{ xmlns: NS_MAM, default: p.default },
				x(
					"always",
					null,
					p.always.map((j) => x("jid", null, j)),
				),
				x(
					"never",
					null,
					p.never.map((j) => x("jid", null, j)),
				),
			);

		const ownArchive = ({ origin, from, to }: StanzaEvent) => {
			// §4: an account's archive is its owner's alone.
			if (!origin || !from.bare.equals(to) || !from.local)
				throw new StanzaError("forbidden", "only the account may use its archive");
			return from.local;
		};

		api.hook(`iq-get/bare/${NS_MAM}:prefs`, async (e: StanzaEvent) => {
			const user = ownArchive(e);
			api.reply(e.origin, resultFor(e.stanza, prefsElement(await prefsOf(user))));
			return HANDLED;
		});

		api.hook(`iq-set/bare/${NS_MAM}:prefs`, async (e: StanzaEvent) => {
			const user = ownArchive(e);
			const el = e.stanza.getChild("prefs", NS_MAM) as Element;
			const policy = el.attrs.default ?? "always";
			if (policy !== "always" && policy !== "never" && policy !== "roster")
				throw new StanzaError("bad-request", "default must be always, never or roster");
			const list = (name: string) => {
				const out: string[] = [];
				for (const j of el.getChild(name, NS_MAM)?.getChildren("jid", NS_MAM) ?? []) {
					let jid: string;
					try {
						jid = server.jids.parse(j.text().trim()).bare.toString();
					} catch {
						throw new StanzaError("bad-request", `not a JID: ${j.text()}`);
					}
					if (!out.includes(jid)) out.push(jid);
				}
				return out;
			};
			const prefs: Prefs = { default: policy, always: list("always"), never: list("never") };
			// A JID in both lists is never archived (never wins, as in `wants`).
			prefs.always = prefs.always.filter((j) => !prefs.never.includes(j));
			await prefsStore.set(user, prefs as unknown as Json);
			forget(user);
			server.cluster?.notify(host, "mam-prefs", user);
			api.reply(e.origin, resultFor(e.stanza, prefsElement(prefs)));
			return HANDLED;
		});

		// --- archiving ---

		/**
		 * The archived form of `stanza`, written once for both archives: a message between two
		 * accounts here is the same Element on `pre-message` (the sender's copy) and on
		 * `message/bare|full` (the recipient's), and serialising it was about a tenth of the
		 * server's CPU with mam on (docs/performance.md). The text is reused only while the
		 * stanza's attributes and its list of children are what they were: a hook in between
		 * that adds or removes a child (carbons' `<private/>`, a spoofed `<stanza-id/>`) or sets
		 * an attribute gets a fresh serialisation. Children are not changed in place on the way.
		 */
		const written = new WeakMap<Element, { form: ArchivedMessage; seen: Seen }>();
		const serialised = (stanza: Element): ArchivedMessage => {
			const last = written.get(stanza);
			if (last && unchanged(stanza, last.seen)) return last.form;
			// Frozen: the SQLite backend then stringifies it once for both appends.
			const form = Object.freeze(archivedForm(stanza));
			written.set(stanza, { form, seen: seenOf(stanza) });
			return form;
		};

		/**
		 * Queues the append and returns its id at once: the message is not held for the commit.
		 * The append is lazy: the backend commits it with the writes around it (the sender's and
		 * the recipient's copy, other messages', and the next write someone awaits, such as an
		 * offline message) in one group commit, in the order queued, and before any read; SQLite
		 * holds lazy appends up to LAZY_APPEND_MS (src/storage/types.ts) to make that group
		 * larger. A failed append is logged.
		 */
		const archive = (user: string, peer: string, stanza: Element): string => {
			const id = newArchiveId();
			const item = { id, value: serialised(stanza), with: peer };
			store.append(user, item, { lazy: true }).catch((err: unknown) => {
				api.log.error({ err, user, id }, "archiving a message failed");
			});
			return id;
		};

		// Sent by an account here (c2s), after blocking (BLOCK) refused what it refuses and
		// before carbons copy it. To one's own account only the recipient side archives it.
		// Both hooks return a promise only when they have to wait (prefs not cached, a roster
		// policy, an account to look up): the event chain then goes on without an await.
		const outgoing = ({ stanza, origin, from, to }: StanzaEvent): Promise<void> | undefined => {
			if (!origin || !from.local || to.bare.equals(from.bare) || !isArchivable(stanza)) return;
			const user = from.local;
			const own = from.bare.toString();
			stripStanzaIds(stanza, own);
			const peer = to.bare.toString();
			const yes = wants(user, peer);
			if (yes === true) archive(user, peer, stanza);
			else if (yes !== false)
				return yes.then((w) => {
					if (w) archive(user, peer, stanza);
				});
		};
		api.hook("pre-message/bare", outgoing, Priority.TRANSFORM);
		api.hook("pre-message/full", outgoing, Priority.TRANSFORM);

		/** The recipient's copy, with its stanza-id added to the stanza, when `user` wants it. */
		const archiveIncoming = (
			user: string,
			own: string,
			peer: string,
			stanza: Element,
		): Promise<void> | undefined => {
			const yes = wants(user, peer);
			if (yes === true) stanza.append(stanzaId(own, archive(user, peer, stanza)));
			else if (yes !== false)
				return yes.then((w) => {
					if (w) stanza.append(stanzaId(own, archive(user, peer, stanza)));
				});
		};

		// For an account here, before delivery, carbons and offline storage (all of which then
		// carry the stanza-id, chosen before the append is committed).
		const incoming = ({ stanza, from, to }: StanzaEvent): Promise<void> | undefined => {
			const user = to.local;
			if (!user) return;
			const own = to.bare.toString();
			// XEP-0359 §5: nobody else speaks for this archive.
			stripStanzaIds(stanza, own);
			if (!isArchivable(stanza)) return;
			const sessions = host.sessionsOf(user);
			if (to.resource && stanza.attrs.type !== "chat") {
				// RFC 6121 §8.5.3.2.1: a normal message to a resource that is gone bounces.
				if (!sessions.some((s) => s.jid?.resource === to.resource)) return;
			}
			const peer = from.bare.toString();
			if (sessions.length > 0) return archiveIncoming(user, own, peer, stanza);
			// RFC 6121 §8.5.1: no such account, no archive (the router bounces it).
			return host.accounts
				.exists(user)
				.then((exists) => (exists ? archiveIncoming(user, own, peer, stanza) : undefined));
		};
		api.hook("message/bare", incoming, Priority.TRANSFORM);
		api.hook("message/full", incoming, Priority.TRANSFORM);

		// --- queries ---

		api.hook(`iq-get/bare/${NS_MAM}:query`, (e: StanzaEvent) => {
			ownArchive(e);
			api.reply(e.origin, resultFor(e.stanza, queryForm()));
			return HANDLED;
		});

		api.hook(`iq-set/bare/${NS_MAM}:query`, async (e: StanzaEvent) => {
			const user = ownArchive(e);
			const session = e.origin;
			if (!session) return HANDLED;
			const parsed = parseQuery(e.stanza.getChild("query", NS_MAM) as Element, limits);
			const to = e.from.toString();
			const archiveJid = e.from.bare.toString();
			const fin = await runQuery(
				store,
				user,
				parsed,
				(item, stanza) =>
					session.send(
						resultMessage(item, stanza, { to, from: archiveJid, queryid: parsed.queryid }),
					),
				(item) => api.log.warn({ user, id: item.id }, "unreadable archived message skipped"),
			);
			// §4.3: the IQ result comes after the last result message.
			api.reply(session, resultFor(e.stanza, fin));
			return HANDLED;
		});

		api.hook(`iq-get/bare/${NS_MAM}:metadata`, async (e: StanzaEvent) => {
			const user = ownArchive(e);
			api.reply(e.origin, resultFor(e.stanza, await metadata(store, user)));
			return HANDLED;
		});

		// --- retention ---

		const expire = parseDuration(api.options.expire_after);
		if (expire !== null) {
			const every = Math.max(1000, Math.min(3_600_000, expire / 2));
			let running = false;
			api.every(every, () => {
				if (running) return;
				running = true;
				void expireOld(Date.now() - expire).finally(() => {
					running = false;
				});
			});
		}
		async function expireOld(cutoff: number): Promise<void> {
			try {
				let n = 0;
				for (const user of await host.accounts.list())
					n += await store.delete(user, { end: cutoff - 1 });
				if (n > 0) api.log.info({ deleted: n }, "expired archived messages deleted");
			} catch (err) {
				api.log.error({ err }, "archive expiry failed");
			}
		}
	},
});
