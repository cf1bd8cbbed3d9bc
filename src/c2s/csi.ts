/**
 * Client State Indication (XEP-0352): while a client says it is inactive (a phone with the
 * screen off), what it does not need at once is held back, and sent in order when it becomes
 * active again or when something important has to go out (which then goes after what was
 * held, so the order stays the one the server sent in). Presence from the same address is
 * held once (the latest replaces the earlier), which is most of the saving: a busy roster or
 * room changes presence far more often than it sends messages.
 *
 * Important, sent at once: IQs, errors, subscription requests and answers, messages with a body
 * (one-to-one; in a room only when it names the user), encrypted messages (OMEMO), call
 * signalling (XEP-0353), invitations, and carbon copies of those. Held: other presence, chat
 * states, receipts and markers, PubSub notifications, room messages that do not name the user.
 */
import type { Element } from "../xml/element.ts";

export const NS_CSI = "urn:xmpp:csi:0";

/** Past this many held stanzas everything goes out (a bound, and a client that reads anyway). */
const MAX_HELD = 256;

const ENCRYPTED = ["eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2", "jabber:x:encrypted"];
const NS_CARBONS = "urn:xmpp:carbons:2";
const NS_FORWARD = "urn:xmpp:forward:0";

function importantMessage(m: Element, user: string): boolean {
	if (m.attrs.type === "error") return true;
	const body = m.getChild("body");
	if (m.attrs.type === "groupchat") {
		// A room is chatty: only a message that names the user wakes it (as Prosody's csi_simple).
		return body !== undefined && user !== "" && body.text().toLowerCase().includes(user);
	}
	if (body) return true;
	for (const c of m.elements()) {
		if (c.ns && ENCRYPTED.includes(c.ns)) return true;
		// XEP-0353 call signalling, XEP-0249 / XEP-0045 invitations.
		if (c.ns === "urn:xmpp:jingle-message:0" || c.ns === "jabber:x:conference") return true;
		if (c.ns === "http://jabber.org/protocol/muc#user" && c.getChild("invite")) return true;
		// XEP-0280: a carbon copy is as important as what it carries.
		if (c.ns === NS_CARBONS && (c.name === "received" || c.name === "sent")) {
			const inner = c.getChild("forwarded", NS_FORWARD)?.getChild("message");
			if (inner && importantMessage(inner, user)) return true;
		}
	}
	return false;
}

/** Whether a stanza must reach an inactive client at once. */
export function isImportant(stanza: Element, user: string): boolean {
	if (stanza.name === "iq") return true;
	const type = stanza.attrs.type;
	if (stanza.name === "presence")
		return (
			type === "subscribe" ||
			type === "subscribed" ||
			type === "unsubscribe" ||
			type === "unsubscribed" ||
			type === "error"
		);
	return importantMessage(stanza, user);
}

export class ClientState {
	inactive = false;
	/** Held stanzas in the order they were sent. */
	#held: Element[] = [];
	/** Stanzas held and later replaced or never sent: what inactivity saved. */
	saved = 0;
	readonly #user: string;

	constructor(user: string) {
		this.#user = user.toLowerCase();
	}

	get held(): number {
		return this.#held.length;
	}

	/**
	 * While inactive: true when `stanza` is held; false when it must go out now (after
	 * `release()`, which the caller writes first).
	 */
	hold(stanza: Element): boolean {
		if (!this.inactive || isImportant(stanza, this.#user)) return false;
		if (this.#held.length >= MAX_HELD) return false;
		if (stanza.name === "presence") {
			const from = stanza.attrs.from;
			const i = this.#held.findIndex((s) => s.name === "presence" && s.attrs.from === from);
			if (i >= 0) {
				this.#held.splice(i, 1);
				this.saved++;
			}
		}
		this.#held.push(stanza);
		return true;
	}

	/** Everything held, oldest first; the list is emptied. */
	release(): Element[] {
		return this.#held.splice(0);
	}
}
