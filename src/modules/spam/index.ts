/**
 * Spam and abuse defence (issue 19). This file: XEP-0377 Blocking Command Reports.
 *
 * A report rides on a XEP-0191 block (§blocking): the blocking module blocks as usual and fires
 * `blocking/changed` with the request; here every report in it is queued in the host's
 * `spam_reports` store for the admins (`report.list`, `report.resolve`), counted, and forwarded
 * where the reporter opted in (§processing) and the operator allows it:
 *
 *   <report-origin/>  to the reported domain's abuse addresses (XEP-0157 §3, `abuse-addresses`
 *                     in its disco#info), when `report_forward_to_origin` is on;
 *   <third-party/>    to the JIDs of `report_forward_to` (block-list services such as xmppbl.org).
 *
 * A forwarded report never names the reporter: it comes from the host, with the reported JID
 * (`<jid xmlns='urn:xmpp:jid:0'>`, the format Prosody's mod_report_forward and xmppbl.org use),
 * the reason, the text and the stanza-ids.
 */
import { randomUUID } from "node:crypto";
import { z } from "zod";
import type { ClusterNotice, MucAdmitEvent } from "../../core/contracts.ts";
import { HANDLED, Priority } from "../../core/events.ts";
import { defineModule } from "../../core/modules/define.ts";
import type { StanzaEvent } from "../../core/router.ts";
import { RateLimiter } from "../../security/rate.ts";
import type { Json, KeyValStore } from "../../storage/types.ts";
import { type Element, x } from "../../xml/element.ts";
import { StanzaError } from "../../xmpp/errors.ts";
import type { JID } from "../../xmpp/jid.ts";
import type { BlockingChanged } from "../blocking.ts";
import { MAM_STORE } from "../mam/index.ts";
import { type ArchivedMessage, archivedStanza, stamp } from "../mam/protocol.ts";
import { sentDirectedPresence } from "../presence.ts";
import type { AccountEvent } from "../register.ts";
import { loadRosterItem } from "../roster.ts";
import { QUARANTINE_STORE, type QuarantineQuery, type QuarantineRecord } from "./quarantine.ts";
import {
	NS_REPORTING_0,
	NS_REPORTING_1,
	NS_SID,
	REASON_ABUSE,
	REASON_SPAM,
	REPORT_STORE,
	reportsOf,
	type StoredReport,
} from "./reports.ts";
import {
	hashesOf,
	itemIds,
	itemsIq,
	NS_PUBSUB,
	NS_PUBSUB_EVENT,
	RTBL_STORE,
	type RtblSource,
	sourceKey,
	subscribeIq,
} from "./rtbl.ts";
import {
	isInvite,
	STRANGERS_HELD_STORE,
	STRANGERS_POLICY_STORE,
	type StrangersPolicy,
	type StrangersPolicyQuery,
	type StrangersRelease,
	strangerOf,
	worthKeeping,
} from "./strangers.ts";

const NS_DISCO_INFO = "http://jabber.org/protocol/disco#info";
const NS_SERVERINFO = "http://jabber.org/network/serverinfo";
const NS_JID = "urn:xmpp:jid:0";
const NS_FORWARD = "urn:xmpp:forward:0";
const NS_DELAY = "urn:xmpp:delay";
/** How long an answer to our disco#info may take before the domain counts as silent. */
const DISCO_TIMEOUT_MS = 10_000;
/** How long a domain's abuse addresses are reused. */
const ABUSE_CACHE_MS = 3_600_000;

const jidList = z.array(z.string().min(1)).default([]);
const options = z.strictObject({
	/** XEP-0377 §processing report-origin: forward to the reported domain's XEP-0157 abuse JIDs. */
	report_forward_to_origin: z.boolean().default(false),
	/** XEP-0377 §processing third-party: forward to these JIDs (block-list services). */
	report_forward_to: jidList,
	/** Open reports a host keeps at most; beyond, new reports are counted and logged, not kept. */
	report_queue_max: z.number().int().min(0).default(10_000),
	/**
	 * Reports one account may file per hour (a burst of as many); more still block but are
	 * only counted, so one account cannot fill the queue. 0: no limit.
	 */
	reports_per_hour: z.number().int().min(0).default(30),
	/** Real-time block lists: XEP-0060 nodes whose item ids are SHA-256 of JIDs and domains. */
	rtbl: z
		.array(
			z.strictObject({
				service: z.string().min(1),
				node: z.string().min(1).default("muc_bans_sha256"),
				/** What a listed sender is refused: joining rooms and speaking in them, writing to strangers. */
				applies_to: z.array(z.enum(["muc", "strangers"])).default(["muc", "strangers"]),
			}),
		)
		.default([]),
	/** Seconds between two full fetches of each list (notifications keep it current between). */
	rtbl_refresh: z.number().positive().default(3600),
	/** Messages and invitations from JIDs not in the roster, for users who chose no policy. */
	strangers: z.enum(["allow", "hold", "bounce"]).default("allow"),
	/** Held messages one user keeps at most; beyond, they bounce. */
	strangers_held_max: z.number().int().min(0).default(100),
	/**
	 * Seconds an account registered in-band stays in quarantine (no messages to strangers, no
	 * new rooms) unless an admin approves it first; 0: no quarantine.
	 */
	quarantine_seconds: z.number().min(0).default(0),
	/**
	 * Groupchat and private messages one unaffiliated occupant may send in a room: a burst, then
	 * `muc_message_rate` per second (Prosody's mod_muc_limits: 0.5/s, burst 6). 0 (the default,
	 * as ejabberd's `min_message_interval`): no limit; bots and benchmarks send fast.
	 */
	muc_message_rate: z.number().min(0).default(0),
	muc_message_burst: z.number().int().min(1).default(10),
	/**
	 * Joins of unaffiliated users into one room per remote domain and per local user's IP
	 * address: a burst, then `muc_join_rate` per second. 0 (the default): no limit; a popular
	 * room sees a whole server rejoin after that server restarts.
	 */
	muc_join_rate: z.number().min(0).default(0),
	muc_join_burst: z.number().int().min(1).default(10),
});

export type SpamOptions = z.infer<typeof options>;

/** Counters (issue 19: simple counters on the server for now), per host. */
export interface SpamCounters {
	reports: number;
	reportsDropped: number;
	reportsForwarded: number;
	/** Stanzas refused because their sender is on a block list. */
	rtblRefused: number;
	/** Messages and invitations from strangers held for review, and bounced. */
	strangersHeld: number;
	strangersBounced: number;
	/** Stanzas a quarantined account was not allowed to send. */
	quarantineRefused: number;
	/** Room messages and joins over the rate limits. */
	mucRateLimited: number;
}

/**
 * A bounded read-through cache of one keyval store: the strangers and quarantine checks read a
 * user's record for every message, and most users have none. Writes go through `set`, which
 * calls `changed` so that the other nodes of a cluster `forget` their copy (`cluster/<topic>`).
 */
function cachedStore<T extends Json>(
	store: KeyValStore<T>,
	changed: (user: string) => void,
	size = 10_000,
) {
	const cache = new Map<string, T | null>();
	return {
		async get(user: string): Promise<T | undefined> {
			const hit = cache.get(user);
			if (hit !== undefined) return hit ?? undefined;
			const value = await store.get(user);
			if (cache.size >= size) cache.clear();
			cache.set(user, value ?? null);
			return value;
		},
		async set(user: string, value: T | undefined): Promise<void> {
			await store.set(user, value);
			cache.set(user, value ?? null);
			changed(user);
		},
		/** Another node changed the record: read it from the store next time. */
		forget(user: string): void {
			cache.delete(user);
		},
	};
}

/** `cluster/<topic>` topics: what another node changed, so this one reads it again. */
const TOPIC_RTBL = "spam-rtbl";
const TOPIC_STRANGERS = "spam-strangers";
const TOPIC_QUARANTINE = "spam-quarantine";
const TOPIC_REPORTS = "spam-reports";

export default defineModule({
	name: "spam",
	description:
		"Spam and abuse defence: XEP-0377 reports, block lists, strangers, quarantine, room limits",
	options,
	async load(api) {
		const host = api.host;
		const server = host.server;
		const store = host.keyval<StoredReport>(REPORT_STORE);
		const counters: SpamCounters = {
			reports: 0,
			reportsDropped: 0,
			reportsForwarded: 0,
			rtblRefused: 0,
			strangersHeld: 0,
			strangersBounced: 0,
			quarantineRefused: 0,
			mucRateLimited: 0,
		};
		// Other parts (metrics, admin) read them from the host's bus: `spam/counters` fills in
		// `{ counters }` (a copy).
		api.hook("spam/counters", (q: { counters?: SpamCounters }) => {
			q.counters = { ...counters };
			return HANDLED;
		});

		// XEP-0377 §discovery (and v0.2's reason features, which Conversations and Gajim look for).
		for (const f of [
			NS_REPORTING_0,
			NS_REPORTING_1,
			"urn:xmpp:reporting:reason:spam:0",
			"urn:xmpp:reporting:reason:abuse:0",
		])
			api.addFeature(f);

		// IQs the host sends (disco#info to a reported domain) and their answers.
		const pending = new Map<string, (answer: Element | null) => void>();
		api.onUnload(() => {
			for (const done of pending.values()) done(null);
			pending.clear();
		});
		api.hook("iq/host", ({ stanza }: StanzaEvent) => {
			const type = stanza.attrs.type;
			if (type !== "result" && type !== "error") return undefined;
			const done = pending.get(stanza.attrs.id ?? "");
			if (!done) return undefined;
			done(stanza);
			return HANDLED;
		});
		/** Sends an IQ from the host; resolves to the answer, or null without one in time. */
		function request(iq: Element): Promise<Element | null> {
			const id = `spam-${randomUUID()}`;
			iq.attrs.id = id;
			return new Promise((resolve) => {
				const timer = setTimeout(() => finish(null), DISCO_TIMEOUT_MS);
				function finish(answer: Element | null) {
					clearTimeout(timer);
					pending.delete(id);
					resolve(answer);
				}
				pending.set(id, finish);
				api.send(iq).catch(() => finish(null));
			});
		}

		/** XEP-0157 §3: the xmpp: URIs among a domain's abuse addresses, as JIDs. */
		const abuseCache = new Map<string, { at: number; jids: string[] }>();
		async function abuseAddresses(domain: string): Promise<string[]> {
			const hit = abuseCache.get(domain);
			if (hit && Date.now() - hit.at < ABUSE_CACHE_MS) return hit.jids;
			const answer = await request(
				x("iq", { type: "get", from: host.name, to: domain }, x("query", { xmlns: NS_DISCO_INFO })),
			);
			const jids: string[] = [];
			const query =
				answer?.attrs.type === "result" ? answer.getChild("query", NS_DISCO_INFO) : null;
			for (const form of query?.getChildren("x", "jabber:x:data") ?? []) {
				const fields = form.getChildren("field", "jabber:x:data");
				const type = fields.find((f) => f.attrs.var === "FORM_TYPE")?.getChildText("value");
				if (type !== NS_SERVERINFO) continue;
				const abuse = fields.find((f) => f.attrs.var === "abuse-addresses");
				for (const v of abuse?.getChildren("value", "jabber:x:data") ?? []) {
					const uri = v.text().trim();
					if (!uri.startsWith("xmpp:")) continue;
					try {
						// RFC 5122: xmpp:node@domain, possibly with a ?query.
						const jid = server.jids.parse(decodeURIComponent(uri.slice(5).split("?")[0] ?? ""));
						jids.push(jid.bareString);
					} catch {
						// Not a JID: skip it, as a client would.
					}
				}
			}
			abuseCache.set(domain, { at: Date.now(), jids });
			return jids;
		}

		/**
		 * The reported messages: the stanza-ids the reporter's own archive assigned (`by` = the
		 * reporter) name messages only the reporter's server can find, and they name the reporter.
		 * So those are replaced by copies of the messages from the archive, sent by the reported
		 * JID (§blocking: "SHOULD be by the same JID being reported"), without their `to`: the
		 * one anonymisation §processing allows. Other stanza-ids (a room's) are kept.
		 */
		async function evidence(
			r: StoredReport,
			reported: JID,
		): Promise<{ ids: StoredReport["stanzaIds"]; copies: Element[] }> {
			const own = r.stanzaIds.filter((s) => s.by === r.reporter).map((s) => s.id);
			const ids = r.stanzaIds.filter((s) => s.by !== r.reporter);
			const copies: Element[] = [];
			if (own.length === 0) return { ids, copies };
			const local = r.reporter.slice(0, r.reporter.indexOf("@"));
			const page = await host.archive<ArchivedMessage>(MAM_STORE).query(local, { ids: own });
			for (const item of page.items) {
				const m = archivedStanza(item);
				const from = m?.attrs.from;
				if (!m || !from || server.jids.parse(from).bareString !== reported.bareString) continue;
				delete m.attrs.to;
				copies.push(
					x(
						"forwarded",
						{ xmlns: NS_FORWARD },
						x("delay", { xmlns: NS_DELAY, stamp: stamp(item.when) }),
						m,
					),
				);
			}
			return { ids, copies };
		}

		/** The message a forwarded report travels in; it never names the reporter. */
		function forwardStanza(
			to: string,
			r: StoredReport,
			proof: { ids: StoredReport["stanzaIds"]; copies: Element[] },
		): Element {
			const what =
				r.reason === REASON_ABUSE ? "abuse" : r.reason === REASON_SPAM ? "spam" : r.reason;
			return x(
				"message",
				{ from: host.name, to, type: "normal", id: `report-${r.id}` },
				x("body", null, `Report (${what}) about ${r.jid}${r.text ? `: ${r.text}` : ""}`),
				x(
					"report",
					{ xmlns: NS_REPORTING_1, reason: r.reason },
					x("jid", { xmlns: NS_JID }, r.jid),
					proof.ids.map((s) => x("stanza-id", { xmlns: NS_SID, by: s.by, id: s.id })),
					r.text ? x("text", null, r.text) : [],
				),
				proof.copies.map((c) => c.clone()),
			);
		}

		async function forward(r: StoredReport, reported: JID): Promise<void> {
			const targets = new Set<string>();
			// §processing: "MUST NOT process a report ... that do not explicitly include the
			// corresponding processing option".
			if (r.thirdParty) for (const j of api.options.report_forward_to) targets.add(j);
			if (r.reportOrigin && api.options.report_forward_to_origin)
				for (const j of await abuseAddresses(reported.domain)) targets.add(j);
			if (targets.size === 0) return;
			const proof = await evidence(r, reported);
			for (const to of targets) {
				await api.send(forwardStanza(to, r, proof));
				counters.reportsForwarded++;
			}
			const now = await store.get(r.id);
			if (now) await store.set(r.id, { ...now, forwardedTo: [...targets] });
			api.log.info({ report: r.id, to: [...targets] }, "report forwarded");
		}

		let open: number | null = null;
		async function openCount(): Promise<number> {
			if (open === null) {
				let n = 0;
				for (const id of await store.users()) if ((await store.get(id))?.status === "open") n++;
				open = n;
			}
			return open;
		}
		// The queue is shared by the nodes of a cluster: a report kept or resolved on one node
		// makes the others count again (report_queue_max holds for the cluster).
		api.hook("spam/report-resolved", () => {
			open = null;
			server.cluster?.notify(host, TOPIC_REPORTS, "");
		});
		api.hook(`cluster/${TOPIC_REPORTS}`, () => {
			open = null;
			return undefined;
		});

		const perHour = api.options.reports_per_hour;
		const perReporter =
			perHour > 0
				? new RateLimiter({ rate: perHour / 3600, burst: perHour, maxKeys: 10_000 })
				: null;
		if (perReporter) api.every(600_000, () => perReporter.sweep());

		// XEP-0377 §blocking: the block is done (the blocking module answered); now the reports.
		api.hook("blocking/changed", async (e: BlockingChanged) => {
			if (!e.request) return undefined;
			const reporter = `${e.user}@${host.name}`;
			for (const { jid, report } of reportsOf(e.request)) {
				let reported: JID;
				try {
					reported = server.jids.parse(jid);
				} catch {
					continue; // the blocking module refused the request already
				}
				counters.reports++;
				if (perReporter && !perReporter.take(reporter)) {
					counters.reportsDropped++;
					api.log.info({ reporter, jid }, "report not kept: the reporter files too many");
					continue;
				}
				if ((await openCount()) >= api.options.report_queue_max) {
					counters.reportsDropped++;
					api.log.warn({ reporter, jid }, "report queue full, report not kept");
					continue;
				}
				const stored: StoredReport = {
					...report,
					id: randomUUID(),
					when: Date.now(),
					reporter,
					jid: reported.toString(),
					status: "open",
					resolution: "",
					resolvedBy: "",
					resolvedAt: 0,
					forwardedTo: [],
				};
				await store.set(stored.id, stored);
				// Unknown (another node's notice came meanwhile): counted again next time.
				if (open !== null) open++;
				server.cluster?.notify(host, TOPIC_REPORTS, stored.id);
				api.log.info(
					{ report: stored.id, jid: stored.jid, reason: stored.reason },
					"spam report queued",
				);
				void forward(stored, reported).catch((err: unknown) =>
					api.log.warn({ err, report: stored.id }, "report forwarding failed"),
				);
			}
			return undefined;
		});

		// --- Real-time block lists (rtbl.ts) ---
		const sources = api.options.rtbl;
		const rtblStore = host.keyval<{ ids: string[] }>(RTBL_STORE);
		/** sourceKey -> the listed hashes. */
		const lists = new Map<string, Set<string>>();
		for (const s of sources)
			lists.set(sourceKey(s), new Set((await rtblStore.get(sourceKey(s)))?.ids ?? []));

		/** Recent senders' hashes: a busy room asks about the same few JIDs for every message. */
		const hashCache = new Map<string, string[]>();
		function hashesCached(jid: JID): string[] {
			let h = hashCache.get(jid.bareString);
			if (!h) {
				if (hashCache.size >= 10_000) hashCache.clear();
				h = hashesOf(jid);
				hashCache.set(jid.bareString, h);
			}
			return h;
		}

		/** Whether `jid` (its bare JID or its domain) is on a list that applies to `use`. */
		function listed(jid: JID, use: "muc" | "strangers"): boolean {
			const hashes = hashesCached(jid);
			for (const s of sources) {
				if (!s.applies_to.includes(use)) continue;
				const list = lists.get(sourceKey(s));
				if (list && hashes.some((h) => list.has(h))) return true;
			}
			return false;
		}

		async function persist(s: RtblSource): Promise<void> {
			await rtblStore.set(sourceKey(s), { ids: [...(lists.get(sourceKey(s)) ?? [])] });
		}

		/** XEP-0060 §6.1 subscribe (for the notifications), then §6.5 all items: the whole list. */
		async function refresh(s: RtblSource): Promise<boolean> {
			const sub = await request(subscribeIq(s, host.name, ""));
			if (sub?.attrs.type !== "result")
				api.log.warn(
					{ service: s.service, node: s.node },
					"block list: subscription refused or unanswered",
				);
			const got = await request(itemsIq(s, host.name, ""));
			if (got?.attrs.type !== "result") return false;
			const items = got.getChild("pubsub", NS_PUBSUB)?.getChild("items", NS_PUBSUB);
			lists.set(sourceKey(s), new Set(itemIds(items, "item")));
			await persist(s);
			server.cluster?.notify(host, TOPIC_RTBL, sourceKey(s));
			api.log.info(
				{ service: s.service, node: s.node, entries: lists.get(sourceKey(s))?.size },
				"block list fetched",
			);
			return true;
		}

		let stopped = false;
		const retries = new Set<NodeJS.Timeout>();
		api.onUnload(() => {
			stopped = true;
			for (const t of retries) clearTimeout(t);
		});
		/** Fetches, and on failure tries again (1 s, 2 s, ... up to a minute): the service may not be up yet. */
		function keepFetching(s: RtblSource, delay: number): void {
			const t = setTimeout(async () => {
				retries.delete(t);
				if (stopped) return;
				// In a cluster the answers to the host's IQs (and the notifications of a local
				// service) reach the leader, which runs the components: it fetches and stores, the
				// other nodes read the list it stored when told (cluster/spam-rtbl). A node that
				// becomes the leader fetches at the next rtbl_refresh.
				if (server.cluster && !server.cluster.leader) return;
				const ok = await refresh(s).catch(() => false);
				if (!ok && !stopped) keepFetching(s, Math.min(60_000, Math.max(1000, delay * 2)));
			}, delay);
			retries.add(t);
		}
		// After the server's start (components and federation come up after the hosts).
		for (const s of sources) keepFetching(s, 0);
		if (sources.length)
			api.every(api.options.rtbl_refresh * 1000, () => {
				for (const s of sources) keepFetching(s, 0);
			});

		// XEP-0060 §7.1.2.1 (new items), §7.2.2.1 (retract), §7.5.2 (purge): live updates.
		api.hook("message/host", async ({ stanza, from }: StanzaEvent) => {
			const event = stanza.getChild("event", NS_PUBSUB_EVENT);
			if (!event) return undefined;
			for (const change of event.elements()) {
				const s = sources.find(
					(c) => c.service === from.bareString && c.node === change.attrs.node,
				);
				if (!s) continue;
				const list = lists.get(sourceKey(s)) ?? new Set<string>();
				lists.set(sourceKey(s), list);
				if (change.name === "purge") list.clear();
				if (change.name === "items") {
					for (const id of itemIds(change, "item")) list.add(id);
					for (const id of itemIds(change, "retract")) list.delete(id);
				}
				await persist(s);
				// The notification came to this node only: the others read the list again.
				server.cluster?.notify(host, TOPIC_RTBL, sourceKey(s));
			}
			return sources.some((c) => c.service === from.bareString) ? HANDLED : undefined;
		});

		api.hook(`cluster/${TOPIC_RTBL}`, async ({ data: key }: ClusterNotice) => {
			const s = sources.find((c) => sourceKey(c) === key);
			if (s) lists.set(key, new Set((await rtblStore.get(key))?.ids ?? []));
			return undefined;
		});

		// MUC (mod_muc_rtbl's rule): listed unaffiliated users neither join nor speak.
		api.hook("muc/admit", (e: MucAdmitEvent) => {
			// Per groupchat message: nothing to hash when no list is followed.
			if (!sources.length || e.affiliation !== "none" || !listed(e.from, "muc")) return undefined;
			counters.rtblRefused++;
			api.log.info(
				{ from: e.from.bareString, room: e.room.toString(), kind: e.kind },
				"block list: refused",
			);
			return HANDLED;
		});

		/**
		 * Strangers: a listed sender reaches only users who have it in their roster. Messages are
		 * bounced with policy-violation (as Prosody's mod_anti_spam), subscription requests are
		 * dropped (RFC 6121 §3.1.3 lets a server drop them).
		 */
		const strangers = async (e: StanzaEvent) => {
			const { stanza, from, to } = e;
			if (!to.local || from.domain === host.name || !sources.length) return undefined;
			const type = stanza.attrs.type;
			if (stanza.name === "message" && (type === "error" || type === "groupchat")) return undefined;
			if (stanza.name === "presence" && type !== "subscribe") return undefined;
			if (!listed(from, "strangers")) return undefined;
			if (await loadRosterItem(host, to.local, from.bareString)) return undefined;
			counters.rtblRefused++;
			if (stanza.name === "presence") return HANDLED;
			throw new StanzaError("policy-violation", "the sender is on a block list");
		};
		for (const kind of ["message", "presence"])
			for (const dest of ["bare", "full"])
				api.hook(`inbound-${kind}/${dest}`, strangers, Priority.POLICY);

		// --- Strangers (strangers.ts): messages and invitations from JIDs not in the roster ---
		const policies = cachedStore(host.keyval<StrangersPolicy>(STRANGERS_POLICY_STORE), (user) =>
			server.cluster?.notify(host, TOPIC_STRANGERS, user),
		);
		api.hook(`cluster/${TOPIC_STRANGERS}`, ({ data: user }: ClusterNotice) => {
			policies.forget(user);
			return undefined;
		});
		const held = host.archive<ArchivedMessage>(STRANGERS_HELD_STORE);
		/** Stanzas being released by an admin or the user: they pass this time. */
		const releasing = new WeakSet<Element>();

		const policyOf = async (user: string): Promise<StrangersPolicy> =>
			(await policies.get(user)) ?? api.options.strangers;

		const onStrangers = async (e: StanzaEvent) => {
			const { stanza, to } = e;
			if (!to.local || releasing.has(stanza)) return undefined;
			const stranger = strangerOf(stanza, e.from);
			if (!stranger || stranger.bareString === to.bare.toString()) return undefined;
			// The host itself and services without a localpart (pubsub, the MUC service) are no strangers.
			if (!stranger.local) return undefined;
			const policy = await policyOf(to.local);
			if (policy === "allow") return undefined;
			if (await loadRosterItem(host, to.local, stranger.bareString)) return undefined;
			// A room the user is in (directed presence, RFC 6121 §4.6): its private messages pass.
			if (!isInvite(stanza) && sentDirectedPresence(host.sessionsOf(to.local), e.from.bareString))
				return undefined;
			// Chat states, receipts, call proposals... from a stranger: nothing to review.
			if (!worthKeeping(stanza)) return HANDLED;
			if (policy === "hold") {
				const kept = await held.count(to.local);
				if (kept < api.options.strangers_held_max) {
					// Stored with its namespace: a stanza the server built (a room's) has none yet.
					const copy = stanza.clone();
					copy.ns ??= "jabber:client";
					await held.append(to.local, {
						value: { xml: copy.toString() },
						with: stranger.bareString,
					});
					counters.strangersHeld++;
					return HANDLED;
				}
			}
			counters.strangersBounced++;
			throw new StanzaError(
				"policy-violation",
				"the recipient does not accept messages from strangers",
			);
		};
		for (const dest of ["bare", "full"])
			api.hook(`inbound-message/${dest}`, onStrangers, Priority.POLICY - 1);

		// The commands (src/admin/commands/strangers.ts) reach the module through the host's bus.
		api.hook("spam/strangers-policy", async (q: StrangersPolicyQuery) => {
			if (q.set !== undefined) await policies.set(q.user, q.set === "default" ? undefined : q.set);
			q.policy = await policyOf(q.user);
			q.own = (await policies.get(q.user)) !== undefined;
			return HANDLED;
		});
		api.hook("spam/strangers-release", async (q: StrangersRelease) => {
			const page = await held.query(q.user, { ids: [q.id] });
			const item = page.items[0];
			if (!item) return undefined;
			await held.delete(q.user, { ids: [q.id] });
			if (q.deliver) {
				const stanza = archivedStanza(item);
				if (stanza) {
					releasing.add(stanza);
					await server.router.route(stanza);
				}
			}
			q.done = true;
			return HANDLED;
		});

		// --- Quarantine (quarantine.ts) ---
		const quarantine = cachedStore(host.keyval<QuarantineRecord>(QUARANTINE_STORE), (user) =>
			server.cluster?.notify(host, TOPIC_QUARANTINE, user),
		);
		api.hook(`cluster/${TOPIC_QUARANTINE}`, ({ data: user }: ClusterNotice) => {
			quarantine.forget(user);
			return undefined;
		});
		const quarantined = async (user: string): Promise<boolean> => {
			const r = await quarantine.get(user);
			if (!r) return false;
			if (r.until > Date.now()) return true;
			await quarantine.set(user, undefined);
			return false;
		};
		api.hook("account/created", async ({ username }: AccountEvent) => {
			if (api.options.quarantine_seconds > 0)
				await quarantine.set(username, {
					until: Date.now() + api.options.quarantine_seconds * 1000,
				});
			return undefined;
		});
		api.hook("spam/quarantine", async (q: QuarantineQuery) => {
			if (q.release) await quarantine.set(q.user, undefined);
			q.quarantined = await quarantined(q.user);
			return HANDLED;
		});
		// No new rooms (XEP-0045 §10.1) while in quarantine.
		api.hook("muc/admit", async (e: MucAdmitEvent) => {
			if (!e.creates || e.from.domain !== host.name || !(await quarantined(e.from.local)))
				return undefined;
			counters.quarantineRefused++;
			return HANDLED;
		});
		// No messages or invitations to strangers: what its roster does not hold.
		const outbound = async (e: StanzaEvent) => {
			const { stanza, from, to, origin } = e;
			if (!origin || !to.local || to.bare.equals(from.bare)) return undefined;
			if (!strangerOf(stanza, from) || !worthKeeping(stanza)) return undefined;
			if (!(await quarantined(from.local))) return undefined;
			if (await loadRosterItem(host, from.local, to.bareString)) return undefined;
			// A room the account is in: its private messages and invitations are room business.
			if (sentDirectedPresence([origin], to.bareString)) return undefined;
			counters.quarantineRefused++;
			throw new StanzaError(
				"policy-violation",
				"new accounts may write only to their contacts for now",
			);
		};
		for (const dest of ["bare", "full"]) api.hook(`pre-message/${dest}`, outbound, Priority.POLICY);

		// --- Room limits: message and join rates (src/security/rate.ts) ---
		const opts = api.options;
		const messages =
			opts.muc_message_rate > 0
				? new RateLimiter({ rate: opts.muc_message_rate, burst: opts.muc_message_burst })
				: null;
		const joins =
			opts.muc_join_rate > 0
				? new RateLimiter({ rate: opts.muc_join_rate, burst: opts.muc_join_burst })
				: null;
		if (messages || joins)
			api.every(60_000, () => {
				messages?.sweep();
				joins?.sweep();
			});
		api.hook("muc/admit", (e: MucAdmitEvent) => {
			if (e.affiliation !== "none") return undefined;
			const room = e.room.toString();
			let ok = true;
			if (e.kind === "join") {
				if (!joins || e.creates) return undefined;
				// A local user's address; a remote user's domain (its server's address is not its own).
				const session =
					e.from.domain === host.name
						? host.sessions.get(e.from.local)?.get(e.from.resource)
						: undefined;
				ok = session
					? joins.take(`${room} ip ${session.remoteAddress}`)
					: joins.take(`${room} domain ${e.from.domain}`);
			} else if (messages) ok = messages.take(`${room} ${e.from.bareString}`);
			if (ok) return undefined;
			counters.mucRateLimited++;
			e.refusal = {
				condition: "policy-violation",
				type: "wait",
				text:
					e.kind === "join"
						? "too many joins, try again later"
						: "you are sending too fast, try again later",
			};
			return HANDLED;
		});
	},
});
