/**
 * Hats (XEP-0317, urn:xmpp:hats:0): extra roles an owner or admin gives a user in a room
 * ("teacher", "host"), shown in the occupant's presence and managed with XEP-0050 ad-hoc
 * commands on the room's JID, as ejabberd does: urn:xmpp:hats:commands:don (add) and
 * :doff (remove).
 */
import { type Element, x } from "../../xml/element.ts";
import { field, formValues, NS_DATA } from "../../xmpp/data-form.ts";
import { StanzaError } from "../../xmpp/errors.ts";

export const NS_HATS = "urn:xmpp:hats:0";
export const NS_COMMANDS = "http://jabber.org/protocol/commands";
export const HATS_FORM = "urn:xmpp:hats:commands";
export const HAT_DON = "urn:xmpp:hats:commands:don";
export const HAT_DOFF = "urn:xmpp:hats:commands:doff";

export interface Hat {
	uri: string;
	title: string;
}

/** XEP-0317 §3.1: the occupant's hats, as the room adds them to its presence. */
export function hatsElement(hats: readonly Hat[]): Element {
	return x(
		"hats",
		{ xmlns: NS_HATS },
		hats.map((h) => x("hat", { uri: h.uri, title: h.title })),
	);
}

/** XEP-0050 §2.2: the room's commands, for disco#items on the commands node. */
export function commandItems(room: string): Element[] {
	return [
		x("item", { jid: room, node: HAT_DON, name: "Assign a hat" }),
		x("item", { jid: room, node: HAT_DOFF, name: "Remove a hat" }),
	];
}

/** XEP-0317 §3.2 (Example 3): the form of both commands. */
function hatForm(node: string): Element {
	const jid = field("accountjid", "jid-single", "User address", []);
	jid.append(x("required"));
	const hat = field("hat", "text-single", "Hat URI", []);
	hat.append(x("required"));
	return x(
		"x",
		{ xmlns: NS_DATA, type: "form" },
		x("title", null, node === HAT_DON ? "Assigning a hat" : "Removing a hat"),
		field("FORM_TYPE", "hidden", undefined, HATS_FORM),
		jid,
		hat,
		node === HAT_DON && field("hats#title", "text-single", "Title shown to occupants", []),
	);
}

/** What a submitted command asks. */
export interface HatChange {
	node: typeof HAT_DON | typeof HAT_DOFF;
	jid: string;
	hat: Hat;
}

/**
 * A XEP-0050 command IQ payload for a hats command: the form to fill in (first stage), the
 * change a submitted form asks (ejabberd's field names `hats#jid`, `hats#uri` read too), or
 * "cancel" (XEP-0050 §3.4).
 */
export function parseHatCommand(
	cmd: Element,
	sessionid: string,
): { form: Element } | { change: HatChange } | "cancel" {
	const node = cmd.attrs.node;
	if (node !== HAT_DON && node !== HAT_DOFF)
		throw new StanzaError("item-not-found", "no such command");
	if (cmd.attrs.action === "cancel") return "cancel";
	const submitted = cmd.getChild("x", NS_DATA);
	if (submitted?.attrs.type !== "submit")
		return {
			form: x(
				"command",
				{ xmlns: NS_COMMANDS, node, sessionid, status: "executing" },
				x("actions", { execute: "complete" }, x("complete")),
				hatForm(node),
			),
		};
	const v = formValues(submitted as Element);
	const jid = (v.get("accountjid") ?? v.get("hats#jid"))?.[0]?.trim();
	const uri = (v.get("hat") ?? v.get("hats#uri"))?.[0]?.trim();
	if (!jid || !uri) throw new StanzaError("bad-request", "accountjid and hat are required");
	if (uri.length > 1024) throw new StanzaError("not-acceptable", "the hat URI is too long");
	const title = v.get("hats#title")?.[0]?.trim() || uri;
	if (title.length > 1024) throw new StanzaError("not-acceptable", "the hat title is too long");
	return { change: { node, jid, hat: { uri, title } } };
}

/** XEP-0050 §3.2: the command is done. */
export function completed(node: string, sessionid: string): Element {
	return x("command", { xmlns: NS_COMMANDS, node, sessionid, status: "completed" });
}
