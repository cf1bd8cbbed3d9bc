/**
 * Message moderation (XEP-0425) and retraction (XEP-0424) in a room: the requests, the
 * announcements the room broadcasts and the tombstones that replace retracted messages in the
 * room's archive. Both versions clients speak are understood and sent: 0.2 (moderate:0,
 * retract:0 inside a XEP-0422 <apply-to/>, what slixmpp, older Converse and ejabberd use) and
 * 0.3 (moderate:1, retract:1, Prosody 13, Gajim, Conversations). These functions read
 * stanzas and build new ones; the service does the archive work and the broadcast.
 */
import { Element, type Node, x } from "../../xml/element.ts";
import { StanzaError } from "../../xmpp/errors.ts";
import { NS_HINTS, stamp } from "../mam/protocol.ts";
import { reasonOf } from "./form.ts";
import { NS_OCCUPANT_ID, occupantIdElement } from "./occupant-id.ts";

export const NS_FASTEN = "urn:xmpp:fasten:0";
export const NS_MODERATE_0 = "urn:xmpp:message-moderate:0";
export const NS_MODERATE_1 = "urn:xmpp:message-moderate:1";
export const NS_RETRACT_0 = "urn:xmpp:message-retract:0";
export const NS_RETRACT_1 = "urn:xmpp:message-retract:1";

/** XEP-0425 §3 / XEP-0424 §3: what rooms and the service advertise. */
export const MODERATION_FEATURES = [NS_MODERATE_0, NS_MODERATE_1, NS_RETRACT_1];

/** A moderator's request: retract the message the room archived as `id`. */
export interface ModerationRequest {
	id: string;
	reason: string | undefined;
}

/**
 * The payload of an IQ set to the room, if it is a XEP-0425 request:
 * 0.2 (§4): `<apply-to xmlns='urn:xmpp:fasten:0' id><moderate xmlns=':0'><retract xmlns=
 * 'urn:xmpp:message-retract:0'/><reason/></moderate></apply-to>`;
 * 0.3 (§4): `<moderate xmlns=':1' id><retract xmlns='urn:xmpp:message-retract:1'/><reason/>
 * </moderate>`. Null when the payload is neither. Throws for a request the room cannot do.
 */
export function parseModeration(q: Element): ModerationRequest | null {
	let moderate: Element | undefined;
	let id: string | undefined;
	let retractNs: string;
	if (q.name === "apply-to" && q.ns === NS_FASTEN) {
		moderate = q.getChild("moderate", NS_MODERATE_0);
		if (!moderate) return null;
		id = q.attrs.id;
		retractNs = NS_RETRACT_0;
	} else if (q.name === "moderate" && q.ns === NS_MODERATE_1) {
		moderate = q;
		id = q.attrs.id;
		retractNs = NS_RETRACT_1;
	} else return null;
	if (!id) throw new StanzaError("bad-request", "which message: the id is missing");
	// XEP-0425 §4: retraction is the one moderation action defined.
	if (!moderate.getChild("retract", retractNs))
		throw new StanzaError("feature-not-implemented", "only retraction is supported");
	return { id, reason: reasonOf(moderate) };
}

/**
 * XEP-0424 §4 in a room: the stanza-id (by the room) of the message an occupant retracts, if
 * the groupchat message is a retraction: `<retract xmlns=':1' id/>` or (0.2, §4)
 * `<apply-to xmlns='urn:xmpp:fasten:0' id><retract xmlns=':0'/></apply-to>`.
 */
export function retractionTarget(msg: Element): string | undefined {
	const r1 = msg.getChild("retract", NS_RETRACT_1);
	if (r1?.attrs.id) return r1.attrs.id;
	for (const a of msg.getChildren("apply-to", NS_FASTEN))
		if (a.attrs.id && a.getChild("retract", NS_RETRACT_0)) return a.attrs.id;
	return undefined;
}

const isModeration = (c: Node) =>
	typeof c !== "string" &&
	c.name === "moderated" &&
	(c.ns === NS_MODERATE_0 || c.ns === NS_MODERATE_1);

/**
 * XEP-0425 §7 (Security Considerations): only the room says a message was moderated. From an
 * occupant's message go: top-level <moderated/> and <retracted/> (forged announcements and
 * tombstones), <moderated/> inside its <retract/> (:1) and <apply-to/> (:0).
 */
export function withoutForgedModeration(children: readonly Node[]): Node[] {
	const out: Node[] = [];
	for (const c of children) {
		if (typeof c === "string") {
			out.push(c);
			continue;
		}
		if (isModeration(c)) continue;
		if (c.name === "retracted" && (c.ns === NS_RETRACT_0 || c.ns === NS_RETRACT_1)) continue;
		if (
			(c.name === "retract" && c.ns === NS_RETRACT_1) ||
			(c.name === "apply-to" && c.ns === NS_FASTEN)
		) {
			if (c.children.some(isModeration)) {
				out.push(
					new Element(
						c.name,
						c.ns,
						c.attrs,
						c.children.filter((g) => !isModeration(g)),
					),
				);
				continue;
			}
		}
		out.push(c);
	}
	return out;
}

/** Who moderated: the moderator's occupant JID and occupant id, and the reason. */
export interface Moderator {
	/** room@service/nick */
	by: string;
	occupantId: string;
	reason: string | undefined;
}

const reasonEl = (reason: string | undefined) => reason !== undefined && x("reason", null, reason);

/**
 * XEP-0425 §4 (0.3) and 0.2 §4: the room's announcement that message `id` was retracted by a
 * moderator, both forms in one message (Prosody does the same): clients read the one they know.
 */
export function moderationAnnouncement(room: string, id: string, m: Moderator): Element {
	return x(
		"message",
		{ from: room, type: "groupchat", id: `moderation-${id}` },
		x(
			"retract",
			{ xmlns: NS_RETRACT_1, id },
			x("moderated", { xmlns: NS_MODERATE_1, by: m.by }, occupantIdElement(m.occupantId)),
			reasonEl(m.reason),
		),
		x(
			"apply-to",
			{ xmlns: NS_FASTEN, id },
			x(
				"moderated",
				{ xmlns: NS_MODERATE_0, by: m.by },
				x("retract", { xmlns: NS_RETRACT_0 }),
				reasonEl(m.reason),
				occupantIdElement(m.occupantId),
			),
		),
		// XEP-0334: archive it, so a device that was away learns of the removal by MAM too.
		x("store", { xmlns: NS_HINTS }),
	);
}

/**
 * XEP-0425 §5 (Tombstones) and XEP-0424 §5.1: what the archive keeps instead of a retracted
 * message: its addressing, stanza-id and occupant-id, the content gone, a <retracted/> with
 * the time (and, moderated, who and why) in both versions' forms.
 */
export function tombstone(original: Element, when: number, m: Moderator | null): Element {
	const keep = original.children.filter(
		(c): c is Element =>
			typeof c !== "string" &&
			((c.name === "stanza-id" && c.ns === "urn:xmpp:sid:0") ||
				(c.name === "occupant-id" && c.ns === NS_OCCUPANT_ID)),
	);
	const at = stamp(when);
	const marks: Element[] = m
		? [
				x(
					"retracted",
					{ xmlns: NS_RETRACT_1, stamp: at },
					x("moderated", { xmlns: NS_MODERATE_1, by: m.by }, occupantIdElement(m.occupantId)),
					reasonEl(m.reason),
				),
				x(
					"moderated",
					{ xmlns: NS_MODERATE_0, by: m.by },
					x("retracted", { xmlns: NS_RETRACT_0, stamp: at }),
					reasonEl(m.reason),
					occupantIdElement(m.occupantId),
				),
			]
		: [
				x("retracted", { xmlns: NS_RETRACT_1, stamp: at }),
				x("retracted", { xmlns: NS_RETRACT_0, stamp: at }),
			];
	return new Element("message", original.ns, { ...original.attrs }, [...keep, ...marks]);
}
