/**
 * Discussion history (XEP-0045 §7.2.14) and how much of it a new occupant gets (§7.2.15).
 */
import { Element, x } from "../../xml/element.ts";
import { PreparedStanza } from "../../xml/prepared.ts";
import { NS_CLIENT, NS_DELAY } from "../../xmpp/ns.ts";
import { NS_SID } from "../mam/protocol.ts";
import { delayStamp } from "../offline.ts";

export interface HistoryEntry {
	/** The message as broadcast, with its XEP-0203 `<delay/>` already added. */
	stanza: PreparedStanza;
	/** Milliseconds since the epoch. */
	when: number;
	/** Characters of the stanza without its `to` value (§7.2.15 counts whole stanzas). */
	chars: number;
	/** Its XEP-0359 stanza-id by the room, when the room archives (what retractions name). */
	id?: string | undefined;
}

export interface HistoryRequest {
	maxchars?: number;
	maxstanzas?: number;
	seconds?: number;
	/** Milliseconds since the epoch. */
	since?: number;
}

const nonNegativeInt = (v: string | undefined): number | undefined => {
	if (v === undefined) return undefined;
	const n = Number(v);
	return Number.isInteger(n) && n >= 0 ? n : undefined;
};

/** The `<history/>` element of a join (§7.2.15); values that are not numbers or dates are ignored. */
export function parseHistoryRequest(history: Element | undefined): HistoryRequest {
	if (!history) return {};
	const req: HistoryRequest = {};
	const maxchars = nonNegativeInt(history.attrs.maxchars);
	if (maxchars !== undefined) req.maxchars = maxchars;
	const maxstanzas = nonNegativeInt(history.attrs.maxstanzas);
	if (maxstanzas !== undefined) req.maxstanzas = maxstanzas;
	const seconds = nonNegativeInt(history.attrs.seconds);
	if (seconds !== undefined) req.seconds = seconds;
	if (history.attrs.since !== undefined) {
		// XEP-0082 DateTime.
		const t = Date.parse(history.attrs.since);
		if (Number.isFinite(t)) req.since = t;
	}
	return req;
}

export function entryChars(stanza: PreparedStanza): number {
	const [head, tail] = stanza.parts(NS_CLIENT);
	return head.length + tail.length;
}

/** §7.2.14: history keeps the message as sent, with a delay stamp from the room's JID. */
export function historyEntry(msg: Element, room: string, when: number): HistoryEntry {
	const delay = x("delay", { xmlns: NS_DELAY, from: room, stamp: delayStamp(when) });
	const stanza = new PreparedStanza(
		new Element(msg.name, msg.ns, msg.attrs, [...msg.children, delay]),
	);
	let id: string | undefined;
	for (const c of msg.children)
		if (typeof c !== "string" && c.name === "stanza-id" && c.ns === NS_SID && c.attrs.by === room)
			id = c.attrs.id;
	return { stanza, when, chars: entryChars(stanza), id };
}

/**
 * XEP-0045 §7.2.15: every limit the client gave applies at once (the service sends the
 * smallest history that meets all of them); without `maxstanzas` the room's default
 * (muc#maxhistoryfetch) applies. Returns entries oldest first.
 */
export function selectHistory(
	entries: readonly HistoryEntry[],
	req: HistoryRequest,
	defaultMaxStanzas: number,
	now: number,
	toLength: number,
): HistoryEntry[] {
	const maxstanzas = req.maxstanzas ?? defaultMaxStanzas;
	const maxchars = req.maxchars ?? Number.POSITIVE_INFINITY;
	const oldest = Math.max(
		req.seconds === undefined ? Number.NEGATIVE_INFINITY : now - req.seconds * 1000,
		req.since === undefined ? Number.NEGATIVE_INFINITY : req.since,
	);
	let chars = 0;
	let first = entries.length;
	for (let i = entries.length - 1; i >= 0; i--) {
		const e = entries[i] as HistoryEntry;
		if (entries.length - i > maxstanzas) break;
		if (e.when < oldest) break;
		chars += e.chars + toLength;
		if (chars > maxchars) break;
		first = i;
	}
	return entries.slice(first);
}
