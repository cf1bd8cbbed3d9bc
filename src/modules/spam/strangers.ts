/**
 * Strangers (issue 19): what a user gets from JIDs that are not in the roster. Each user has a
 * policy (else the host's `strangers` option): `allow`, `hold` (kept for review in the
 * `strangers_held` archive, released or discarded later) or `bounce` (`policy-violation`).
 * It covers chat and normal messages and both kinds of invitation: XEP-0249 direct invitations
 * (a message from the inviter) and XEP-0045 §7.8.2 mediated ones, which come from the room and
 * name the inviter in `<invite from/>`: the inviter is the one who must be known.
 */
import type { Element } from "../../xml/element.ts";
import { type JID, tryParseJID } from "../../xmpp/jid.ts";

export const STRANGERS_POLICY_STORE = "strangers_policy";
export const STRANGERS_HELD_STORE = "strangers_held";
export const NS_CONFERENCE = "jabber:x:conference";
export const NS_MUC_USER = "http://jabber.org/protocol/muc#user";

export type StrangersPolicy = "allow" | "hold" | "bounce";

/** `spam/strangers-policy`: reads a user's policy, and sets it first when `set` is given. */
export interface StrangersPolicyQuery {
	user: string;
	/** `default` removes the user's own choice (the host's applies again). */
	set?: StrangersPolicy | "default";
	policy?: StrangersPolicy;
	/** Whether the user chose it (false: the host's default). */
	own?: boolean;
}

/** `spam/strangers-release`: delivers (or with `deliver` false discards) one held message. */
export interface StrangersRelease {
	user: string;
	id: string;
	deliver: boolean;
	done?: boolean;
}

/** XEP-0045 §7.8.2: the `<invite/>` a room relays. */
function mediatedInvite(stanza: Element): Element | undefined {
	return stanza.getChild("x", NS_MUC_USER)?.getChild("invite", NS_MUC_USER);
}

export function isInvite(stanza: Element): boolean {
	return stanza.getChild("x", NS_CONFERENCE) !== undefined || mediatedInvite(stanza) !== undefined;
}

/**
 * Who must be in the roster for this message to pass, or null when the policy does not apply:
 * the inviter of a mediated invitation, else the sender of a chat or normal message.
 * Groupchat, headline and error messages are not a stranger's (they come from rooms and
 * services the user chose).
 */
export function strangerOf(stanza: Element, from: JID): JID | null {
	const type = stanza.attrs.type ?? "normal";
	const invite = mediatedInvite(stanza);
	if (invite) {
		const inviter = invite.attrs.from ? tryParseJID(invite.attrs.from) : null;
		return inviter ?? from;
	}
	if (type !== "chat" && type !== "normal") return null;
	return from;
}

/** A message a person would want to review: a body, or an invitation. */
export function worthKeeping(stanza: Element): boolean {
	return stanza.getChild("body") !== undefined || isInvite(stanza);
}
