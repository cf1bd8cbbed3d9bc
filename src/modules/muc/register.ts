/**
 * Registering with a room (XEP-0045 §7.10) and reserved nicknames (§7.12): the
 * jabber:iq:register exchange with the muc#register form, and the x-roomuser-item node.
 * The room keeps a registration as the user's affiliation entry with its `nick` (the same
 * record §9.3 reserves a nickname in), so a registration is at least a membership.
 */
import { type Element, x } from "../../xml/element.ts";
import { field, formValues, NS_DATA } from "../../xmpp/data-form.ts";
import { StanzaError } from "../../xmpp/errors.ts";
import { NS_DISCO_INFO } from "../../xmpp/ns.ts";

export const NS_REGISTER = "jabber:iq:register";
export const NS_MUC_REGISTER = "http://jabber.org/protocol/muc#register";
/** §7.12: the disco#info node that tells a user its reserved nickname. */
export const ROOMUSER_NODE = "x-roomuser-item";

/**
 * §7.10 (Examples 68, 69): what a get answers: `<registered/>` with the nickname when the
 * user has one, else the muc#register form to fill in.
 */
export function registrationQuery(nick: string | undefined): Element {
	if (nick !== undefined)
		return x("query", { xmlns: NS_REGISTER }, x("registered"), x("username", null, nick));
	const nickField = field("muc#register_roomnick", "text-single", "Desired nickname", []);
	nickField.append(x("required"));
	return x(
		"query",
		{ xmlns: NS_REGISTER },
		x("instructions", null, "Reserve a nickname in this room by filling in this form."),
		x(
			"x",
			{ xmlns: NS_DATA, type: "form" },
			x("title", null, "Room registration"),
			field("FORM_TYPE", "hidden", undefined, NS_MUC_REGISTER),
			nickField,
		),
	);
}

/**
 * §7.10 (Example 70): a set is a submitted muc#register form (the nickname), `<remove/>`
 * (cancel the registration, as XEP-0077 §3.2 does for a service), or a cancelled form.
 */
export function parseRegistration(q: Element): { nick: string } | "remove" | "cancel" {
	if (q.getChild("remove")) return "remove";
	const form = q.getChild("x", NS_DATA);
	if (!form) throw new StanzaError("bad-request", "expected the muc#register form or <remove/>");
	if (form.attrs.type === "cancel") return "cancel";
	const values = formValues(form);
	const formType = values.get("FORM_TYPE")?.[0];
	if (formType !== undefined && formType !== NS_MUC_REGISTER)
		throw new StanzaError("bad-request", `FORM_TYPE must be ${NS_MUC_REGISTER}`);
	const nick = values.get("muc#register_roomnick")?.[0]?.trim();
	// §7.10 (Example 72): a required field left out is not-acceptable.
	if (!nick) throw new StanzaError("not-acceptable", "muc#register_roomnick is required");
	return { nick };
}

/** §7.12 (Examples 79, 80): the reserved nickname as an identity, or none. */
export function roomUserItem(nick: string | undefined): Element {
	return x(
		"query",
		{ xmlns: NS_DISCO_INFO, node: ROOMUSER_NODE },
		nick !== undefined && x("identity", { category: "conference", type: "text", name: nick }),
	);
}
