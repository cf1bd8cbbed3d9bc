/**
 * The syntax of Message Archive Management (XEP-0313, urn:xmpp:mam:2 and #extended), shared by
 * user archives (src/modules/mam/index.ts) and MUC archives (src/modules/muc/): the query form
 * and its XEP-0059 RSM set turned into an {@link ArchiveQuery}, and a page of stored messages
 * turned into `<result/>` messages and the `<fin/>` that ends them. No state, no storage calls
 * beyond the archive store handed in.
 */
import { StorageError } from "../../storage/memory.ts";
import type { ArchiveItem, ArchiveQuery, ArchiveStore } from "../../storage/types.ts";
import { Element, x } from "../../xml/element.ts";
import { parseDocument } from "../../xml/parser.ts";
import { StanzaError } from "../../xmpp/errors.ts";
import { NS_CLIENT, NS_DELAY } from "../../xmpp/ns.ts";

export const NS_MAM = "urn:xmpp:mam:2";
export const NS_MAM_EXTENDED = "urn:xmpp:mam:2#extended";
export const NS_SID = "urn:xmpp:sid:0";
export const NS_RSM = "http://jabber.org/protocol/rsm";
export const NS_FORWARD = "urn:xmpp:forward:0";
export const NS_DATA = "jabber:x:data";
export const NS_HINTS = "urn:xmpp:hints";

/** What one archived message is: the stanza as XML text, with its namespace declared. */
export type ArchivedMessage = { xml: string };

/** A query as the archive sees it, plus what the answer needs. */
export interface ParsedQuery {
	queryid: string | undefined;
	/** Filters and paging for the store; `limit` is the page size. */
	q: ArchiveQuery;
	/** §4.1.4 (#extended): the page is sent newest first. */
	flip: boolean;
}

/** Page sizes: what a query without `<max/>` gets, and the most any query gets. */
export interface PageLimits {
	defaultPage: number;
	maxPage: number;
}

/** XEP-0082 DateTime (or Date) -> ms; bad-request when it is not one (XEP-0313 §4.1.3). */
function parseDate(field: string, value: string): number {
	// XEP-0082 profiles: a date alone, or a date and time with a zone.
	if (!/^\d{4}-\d\d-\d\d(T\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d))?$/.test(value))
		throw new StanzaError("bad-request", `${field}: not a XEP-0082 date and time`);
	const t = Date.parse(value);
	if (!Number.isFinite(t))
		throw new StanzaError("bad-request", `${field}: not a XEP-0082 date and time`);
	return t;
}

/** The bare form of a JID string, checked only for shape (the store compares strings). */
export function bareOf(jid: string): string {
	const slash = jid.indexOf("/");
	return (slash < 0 ? jid : jid.slice(0, slash)).toLowerCase();
}

/**
 * XEP-0313 §4.1 (form fields with, start, end; #extended: before-id, after-id, ids) and §4.2
 * (RSM paging: max, after, before, an empty before for the last page; flip-page). Throws
 * bad-request for a form of another type, an unknown field or a malformed value.
 */
export function parseQuery(query: Element, limits: PageLimits): ParsedQuery {
	const q: ArchiveQuery = {};
	let afterId: string | undefined;
	let beforeId: string | undefined;
	const form = query.getChild("x", NS_DATA);
	if (form) {
		const type = form.attrs.type ?? "submit";
		if (type !== "submit") throw new StanzaError("bad-request", "the query form must be submitted");
		for (const field of form.getChildren("field", NS_DATA)) {
			const name = field.attrs.var;
			const values = field.getChildren("value", NS_DATA).map((v) => v.text());
			const value = values[0]?.trim();
			switch (name) {
				case "FORM_TYPE":
					if (value !== NS_MAM) throw new StanzaError("bad-request", `FORM_TYPE must be ${NS_MAM}`);
					break;
				case "with":
					if (!value || value.startsWith("@") || value.startsWith("/"))
						throw new StanzaError("bad-request", "with: not a JID");
					// §4.1.1: archives key conversations on bare JIDs; a full JID narrows to its account.
					q.with = bareOf(value);
					break;
				case "start":
					if (value) q.start = parseDate("start", value);
					break;
				case "end":
					if (value) q.end = parseDate("end", value);
					break;
				case "after-id":
					if (value) afterId = value;
					break;
				case "before-id":
					if (value) beforeId = value;
					break;
				case "ids":
					q.ids = values.map((v) => v.trim()).filter((v) => v !== "");
					break;
				default:
					// §4.1: a field the server does not support.
					throw new StanzaError("bad-request", `unsupported field ${name ?? "(no var)"}`);
			}
		}
	}
	if (q.start !== undefined && q.end !== undefined && q.start > q.end)
		throw new StanzaError("bad-request", "start is after end");

	let limit = limits.defaultPage;
	const set = query.getChild("set", NS_RSM);
	let rsmAfter: string | undefined;
	let rsmBefore: string | undefined;
	let last = false;
	if (set) {
		const max = set.getChildText("max", NS_RSM);
		if (max !== undefined) {
			const n = Number(max.trim());
			if (!/^\d+$/.test(max.trim()) || !Number.isSafeInteger(n))
				throw new StanzaError("bad-request", "max: not a non-negative integer");
			limit = Math.min(n, limits.maxPage);
		}
		const after = set.getChild("after", NS_RSM);
		if (after) {
			const id = after.text().trim();
			if (!id) throw new StanzaError("bad-request", "after: empty");
			rsmAfter = id;
		}
		const before = set.getChild("before", NS_RSM);
		if (before) {
			const id = before.text().trim();
			// XEP-0059 §2.5: an empty <before/> asks for the last page.
			if (id) rsmBefore = id;
			else last = true;
		}
	}
	// RSM anchors page within the result set the form (after-id/before-id) delimits: a later
	// page's anchor lies inside that range, so it is the one that applies.
	const after = rsmAfter ?? afterId;
	const before = rsmBefore ?? beforeId;
	if (after !== undefined) q.after = after;
	if (before !== undefined) q.before = before;
	// The walk goes backwards for RSM <before/> (empty or not), forwards otherwise (also for a
	// form's before-id alone, §4.1.2: the oldest messages before it first).
	q.reverse = last || rsmBefore !== undefined;
	q.limit = limit;
	return {
		queryid: query.attrs.queryid,
		q,
		flip: query.getChild("flip-page", NS_MAM) !== undefined,
	};
}

/** "1y", "30d", "12h", "15m", "90s", a number of seconds, or "never". Milliseconds, or null. */
export function parseDuration(v: string | number): number | null {
	if (typeof v === "number") return v * 1000;
	if (v === "never") return null;
	const m = /^(\d+(?:\.\d+)?)\s*([smhdwy]?)$/.exec(v.trim());
	if (!m) throw new Error(`not a duration: ${v}`);
	const unit = { "": 1, s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400, y: 365 * 86400 }[
		m[2] as "" | "s"
	];
	return Number(m[1]) * unit * 1000;
}

/** XEP-0082 DateTime with milliseconds, UTC. */
export function stamp(when: number): string {
	return new Date(when).toISOString();
}

const LIMITS = { maxStanzaBytes: 1 << 20, maxDepth: 64 };

/** The archived stanza, parsed; undefined when it no longer parses. */
export function archivedStanza(item: ArchiveItem<ArchivedMessage>): Element | undefined {
	try {
		const el = parseDocument(item.value.xml, LIMITS);
		if (el.ns === null) el.ns = NS_CLIENT;
		return el;
	} catch {
		return undefined;
	}
}

/**
 * §4.2: one result: `<message to from><result xmlns queryid id><forwarded><delay stamp/>
 * <message/></forwarded></result></message>`.
 */
export function resultMessage(
	item: ArchiveItem<ArchivedMessage>,
	stanza: Element,
	opts: { to: string; from: string; queryid: string | undefined },
): Element {
	return x(
		"message",
		{ to: opts.to, from: opts.from },
		x(
			"result",
			{ xmlns: NS_MAM, queryid: opts.queryid, id: item.id },
			x(
				"forwarded",
				{ xmlns: NS_FORWARD },
				x("delay", { xmlns: NS_DELAY, stamp: stamp(item.when) }),
				stanza,
			),
		),
	);
}

/**
 * Runs a parsed query against an archive: sends each result through `send` (in the order
 * asked for) and returns the `<fin/>` of §4.3 with its RSM set (first, with its index on a forward
 * walk; last; count).
 * Unknown ids (anchors, before-id/after-id, ids) are item-not-found (§4.1.2, #extended).
 */
export async function runQuery(
	store: ArchiveStore<ArchivedMessage>,
	user: string,
	parsed: ParsedQuery,
	send: (item: ArchiveItem<ArchivedMessage>, stanza: Element) => void,
	onBroken: (item: ArchiveItem<ArchivedMessage>) => void = () => {},
): Promise<Element> {
	const { q } = parsed;
	try {
		if (q.ids !== undefined && q.ids.length > 0) {
			// #extended: every requested id must exist in this archive.
			const found = await store.count(user, { ids: q.ids });
			if (found < new Set(q.ids).size)
				throw new StanzaError("item-not-found", "no such message in the archive");
		}
		const page = await store.query(user, q);
		const filters = { with: q.with, start: q.start, end: q.end, ids: q.ids };
		const items = parsed.flip ? [...page.items].reverse() : page.items;
		for (const item of items) {
			const stanza = archivedStanza(item);
			if (stanza) send(item, stanza);
			else onBroken(item);
		}
		const count = await store.count(user, clean(filters));
		const set = x("set", { xmlns: NS_RSM });
		const first = page.items[0];
		const last = page.items.at(-1);
		if (first && last) {
			// XEP-0059 §2.6: the first item's position in the whole result set, on a forward walk
			// only. The index is optional (§2.1) and Prosody and ejabberd never send it; a page
			// asked for with <before/> goes without: slixmpp's ResultIterator (xep_0059, 1.8 to
			// this day, poezio's MAM) ends any walk once index + page size = count, which on a
			// backwards walk is already true of the newest page, so it would never page further.
			const index =
				q.reverse === true
					? undefined
					: q.after === undefined
						? 0
						: await store.count(user, clean({ ...filters, before: first.id }));
			set.append(
				x("first", index === undefined ? null : { index: String(index) }, first.id),
				x("last", null, last.id),
			);
		}
		set.append(x("count", null, String(count)));
		return x("fin", { xmlns: NS_MAM, complete: page.complete ? "true" : undefined }, set);
	} catch (e) {
		if (e instanceof StorageError && e.code === "item-not-found")
			throw new StanzaError("item-not-found", "no such message in the archive");
		throw e;
	}
}

function clean<T extends object>(o: T): T {
	const out = {} as T;
	for (const [k, v] of Object.entries(o))
		if (v !== undefined) (out as Record<string, unknown>)[k] = v;
	return out;
}

/** §4.1.1 (#extended fields included): the form a client gets for `<query/>` of type get. */
export function queryForm(): Element {
	const field = (v: string, type: string) => x("field", { var: v, type });
	return x(
		"query",
		{ xmlns: NS_MAM },
		x(
			"x",
			{ xmlns: NS_DATA, type: "form" },
			x("field", { var: "FORM_TYPE", type: "hidden" }, x("value", null, NS_MAM)),
			field("with", "jid-single"),
			field("start", "text-single"),
			field("end", "text-single"),
			field("before-id", "text-single"),
			field("after-id", "text-single"),
			field("ids", "text-multi"),
		),
	);
}

/** The archive's first and last message (§7 metadata, #extended): `<metadata><start/><end/>`. */
export async function metadata(
	store: ArchiveStore<ArchivedMessage>,
	user: string,
): Promise<Element> {
	const el = x("metadata", { xmlns: NS_MAM });
	const [first] = (await store.query(user, { limit: 1 })).items;
	const [last] = (await store.query(user, { limit: 1, reverse: true })).items;
	if (first && last) {
		el.append(
			x("start", { id: first.id, timestamp: stamp(first.when) }),
			x("end", { id: last.id, timestamp: stamp(last.when) }),
		);
	}
	return el;
}

/** Removes `<stanza-id/>` elements that claim to come from `by` (XEP-0359 §5: spoofing). */
export function stripStanzaIds(stanza: Element, by: string): void {
	const spoofed = stanza.children.some(
		(c) => c instanceof Element && c.name === "stanza-id" && c.ns === NS_SID,
	);
	if (!spoofed) return;
	stanza.children = stanza.children.filter(
		(c) =>
			!(c instanceof Element) ||
			c.name !== "stanza-id" ||
			c.ns !== NS_SID ||
			bareOf(c.attrs.by ?? "") !== by.toLowerCase(),
	);
}

/** The XEP-0359 element a server adds for the archive of `by`. */
export function stanzaId(by: string, id: string): Element {
	return x("stanza-id", { xmlns: NS_SID, by, id });
}

/** The stanza as it is archived: its text, with its namespace declared. */
export function archivedForm(stanza: Element): ArchivedMessage {
	if (stanza.ns !== null) return { xml: stanza.toString() };
	// Children without a namespace inherit it: declaring it on the root says it once.
	stanza.ns = NS_CLIENT;
	try {
		return { xml: stanza.toString() };
	} finally {
		stanza.ns = null;
	}
}
