/**
 * Voice requests (XEP-0045 §7.13) and their approval (§8.6): the muc#request form a visitor
 * sends, the form the room passes to the moderators, and the moderator's answer.
 */
import { type Element, x } from "../../xml/element.ts";
import { field, findForm, formValues, NS_DATA, parseBoolean } from "../../xmpp/data-form.ts";
import type { Occupant } from "./occupant.ts";

export const NS_MUC_REQUEST = "http://jabber.org/protocol/muc#request";

/** The muc#request form of a message to the room, if it has one (§7.13, §8.6). */
export function requestForm(stanza: Element): Element | undefined {
	return findForm(stanza, NS_MUC_REQUEST);
}

/** §8.6 (Example 93): what a moderator's submitted form asks: whose voice, and yes or no. */
export function parseApproval(form: Element): { nick: string; allow: boolean } | null {
	if (form.attrs.type !== "submit") return null;
	const values = formValues(form);
	const nick = values.get("muc#roomnick")?.[0];
	const allow = values.get("muc#request_allow")?.[0];
	if (nick === undefined || allow === undefined) return null;
	return { nick, allow: parseBoolean(allow) === true };
}

/** §7.13 (Example 91): a visitor's request, as opposed to a moderator's answer. */
export function isRequest(form: Element): boolean {
	return form.attrs.type === "submit" && !formValues(form).has("muc#request_allow");
}

/** §8.6 (Example 92): the approval form the room sends each moderator. */
export function approvalForm(room: string, o: Occupant, withJid: boolean): Element {
	return x(
		"message",
		{ from: room, id: `voice-${o.id}` },
		x(
			"x",
			{ xmlns: NS_DATA, type: "form" },
			x("title", null, "Voice request"),
			x(
				"instructions",
				null,
				'To approve this request for voice, select the "Grant voice to this person?" checkbox and click OK. To skip this request, click the cancel button.',
			),
			field("FORM_TYPE", "hidden", undefined, NS_MUC_REQUEST),
			field("muc#role", "list-single", "Requested role", "participant"),
			withJid && field("muc#jid", "jid-single", "User ID", o.primary.key),
			field("muc#roomnick", "text-single", "Room Nickname", o.nick),
			field("muc#request_allow", "boolean", "Grant voice to this person?", "false"),
		),
	);
}
