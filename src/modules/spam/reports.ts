/**
 * XEP-0377 Blocking Command Reports (v0.4.1): what a report in a XEP-0191 `<block/>` says, in
 * both namespaces clients send, and how it is kept for the admins.
 *
 *   urn:xmpp:reporting:0  `<report><spam/>|<abuse/><text/></report>` (v0.2/0.3; Conversations,
 *                         Gajim, slixmpp). slixmpp 1.8 puts it beside the items, in `<block/>`.
 *   urn:xmpp:reporting:1  `<report reason='urn:xmpp:reporting:spam|abuse'>` with `<stanza-id/>`
 *                         copies, `<text/>` and the opt-ins `<report-origin/>`, `<third-party/>`
 *                         (§processing).
 */
import type { Element } from "../../xml/element.ts";

export const NS_REPORTING_0 = "urn:xmpp:reporting:0";
export const NS_REPORTING_1 = "urn:xmpp:reporting:1";
export const REASON_SPAM = "urn:xmpp:reporting:spam";
export const REASON_ABUSE = "urn:xmpp:reporting:abuse";
export const NS_SID = "urn:xmpp:sid:0";
/** The keyval store of a host that holds its reports, one value per report id. */
export const REPORT_STORE = "spam_reports";

/** Texts and stanza-ids kept per report at most: a report is not a place to store a novel. */
const MAX_TEXT = 4096;
const MAX_STANZA_IDS = 50;

export type ParsedReport = {
	/** `urn:xmpp:reporting:spam`, `...:abuse`, or another URN a newer client sends. */
	reason: string;
	/** 0 or 1: the namespace it came in. */
	version: 0 | 1;
	text: string;
	stanzaIds: { by: string; id: string }[];
	/** §processing: the reporter allows forwarding to the reported JID's domain. */
	reportOrigin: boolean;
	/** §processing: the reporter allows forwarding to third parties (block-list services). */
	thirdParty: boolean;
};

export type StoredReport = ParsedReport & {
	id: string;
	/** Milliseconds since the epoch. */
	when: number;
	/** The reporter's bare JID (never forwarded). */
	reporter: string;
	/** The reported (and blocked) JID. */
	jid: string;
	status: "open" | "resolved";
	resolution: string;
	resolvedBy: string;
	resolvedAt: number;
	/** Where the report was forwarded to (JIDs), for the admin. */
	forwardedTo: string[];
};

/** A `<report/>` element of either namespace, or null when it is not one. */
export function parseReport(el: Element): ParsedReport | null {
	const stanzaIds = el
		.getChildren("stanza-id", NS_SID)
		.slice(0, MAX_STANZA_IDS)
		.map((s) => ({ by: s.attrs.by ?? "", id: s.attrs.id ?? "" }))
		.filter((s) => s.id !== "");
	const text = el
		.getChildren("text", el.ns ?? undefined)
		.map((t) => t.text().trim())
		.join("\n")
		.slice(0, MAX_TEXT);
	if (el.is("report", NS_REPORTING_1)) {
		const reason = el.attrs.reason;
		// The reason attribute is REQUIRED (§payload); without it the report says nothing.
		if (!reason) return null;
		return {
			reason,
			version: 1,
			text,
			stanzaIds,
			reportOrigin: el.getChild("report-origin", NS_REPORTING_1) !== undefined,
			thirdParty: el.getChild("third-party", NS_REPORTING_1) !== undefined,
		};
	}
	if (el.is("report", NS_REPORTING_0)) {
		const abuse = el.getChild("abuse", NS_REPORTING_0) !== undefined;
		// v0.3 also allowed the reason attribute on the :0 element.
		const reason = el.attrs.reason ?? (abuse ? REASON_ABUSE : REASON_SPAM);
		// :0 has no opt-ins, so nothing is forwarded (§processing: MUST NOT without them).
		return { reason, version: 0, text, stanzaIds, reportOrigin: false, thirdParty: false };
	}
	return null;
}

/**
 * The reports of a `<block/>` request, by blocked JID (as the item spelt it). §blocking puts a
 * report in its `<item/>`; a report directly in `<block/>` (slixmpp 1.8's xep_0377) applies to
 * every item of the request.
 */
export function reportsOf(block: Element): { jid: string; report: ParsedReport }[] {
	const outer = block
		.elements()
		.map(parseReport)
		.find((r) => r !== null);
	const out: { jid: string; report: ParsedReport }[] = [];
	for (const item of block.getChildren("item", block.ns ?? undefined)) {
		const jid = item.attrs.jid;
		if (!jid) continue;
		const inner = item
			.elements()
			.map(parseReport)
			.find((r) => r !== null);
		const report = inner ?? outer;
		if (report) out.push({ jid, report });
	}
	return out;
}
