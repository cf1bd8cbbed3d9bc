// Messages through a room: groupchat, subject, private messages, invitations (XEP-0045 §7).
import { Element, x } from "../../xml/element.ts";
import { PreparedStanza } from "../../xml/prepared.ts";
import { StanzaError } from "../../xmpp/errors.ts";
import type { JID } from "../../xmpp/jid.ts";
import { NS_DELAY } from "../../xmpp/ns.ts";
import { delayStamp } from "../offline.ts";
import { type Affiliation, NS_MUC_USER, type RoomConfig, reasonOf } from "./form.ts";
import { withoutForgedModeration } from "./moderation.ts";
import { type Occupant, RANK, type RoomView, type Subject } from "./occupant.ts";
import { occupantIdElement, withoutOccupantIds } from "./occupant-id.ts";

/** §7.4: a groupchat message as the room broadcasts it, from the sender's occupant JID. */
export function groupchatCopy(stanza: Element, from: Occupant): Element {
	const attrs: Record<string, string> = { from: from.jid.toString(), type: "groupchat" };
	if (stanza.attrs.id !== undefined) attrs.id = stanza.attrs.id;
	const lang = stanza.attrs["xml:lang"];
	if (lang !== undefined) attrs["xml:lang"] = lang;
	// XEP-0421 §4: every occupant-id the client sent goes, the room adds the sender's;
	// XEP-0425 §7: so do moderation marks (only the room moderates).
	const children = withoutOccupantIds(withoutForgedModeration(stanza.children));
	children.push(occupantIdElement(from.id));
	return new Element("message", null, attrs, children);
}

/**
 * §7.2.16: the subject a new occupant gets after the history, always (an empty <subject/>
 * when none was set). A subject that was set carries a XEP-0203 <delay/> from the room with
 * the time it was set (as the history does, §7.2.14), so clients do not take it for new.
 */
export function subjectMessage(room: JID, subject: Subject | null, to: string): Element {
	return x(
		"message",
		{
			from: subject?.nick ? room.withResource(subject.nick).toString() : room.toString(),
			to,
			type: "groupchat",
		},
		x("subject", null, subject?.text ?? ""),
		subject !== null &&
			x("delay", { xmlns: NS_DELAY, from: room.toString(), stamp: delayStamp(subject.when) }),
	);
}

/**
 * §7.5: a private message from `real` to the occupant `nick`: the addressee and the copy its
 * sessions get, or null for an error message (dropped).
 */
export function privateMessage(
	room: RoomView,
	stanza: Element,
	real: JID,
	nick: string,
): { to: Occupant; copy: PreparedStanza } | null {
	const type = stanza.attrs.type ?? "normal";
	if (type === "error") return null;
	// §7.5: a private message of type groupchat is refused.
	if (type === "groupchat")
		throw new StanzaError("bad-request", "private messages cannot be of type groupchat");
	const from = room.byReal.get(real.toString());
	// §7.5: only occupants send private messages.
	if (!from) throw new StanzaError("not-acceptable", "only occupants may send private messages");
	const to = room.occupants.get(nick);
	// §7.5: no occupant with that nickname.
	if (!to) throw new StanzaError("item-not-found", "no occupant with that nickname");
	const pm = room.config.allow_pm;
	if (
		pm === "none" ||
		(pm === "moderators" && from.role !== "moderator") ||
		(pm === "participants" && from.role === "visitor")
	)
		throw new StanzaError("forbidden", "private messages are not allowed here");
	const attrs: Record<string, string> = { ...stanza.attrs, from: from.jid.toString() };
	delete attrs.to;
	// XEP-0421 §4: private messages carry the sender's occupant id, never a client's.
	const children = withoutOccupantIds(stanza.children);
	children.push(occupantIdElement(from.id));
	// §7.5: the service adds <x xmlns='muc#user'/> so that clients (and XEP-0280 carbons)
	// know it is a private message in a room.
	if (!stanza.getChild("x", NS_MUC_USER)) children.push(x("x", { xmlns: NS_MUC_USER }));
	return { to, copy: new PreparedStanza(new Element("message", stanza.ns, attrs, children)) };
}

/** §7.8.2: who may invite; `inviter` is the sender's occupant, if it is in the room. */
export function checkInviter(
	config: RoomConfig,
	inviter: Occupant | undefined,
): asserts inviter is Occupant {
	// §7.8.2: the inviter must be in the room.
	if (!inviter) throw new StanzaError("not-acceptable", "only occupants may invite");
	// §7.8.2 / muc#roomconfig_allowinvites: otherwise only moderators invite.
	if (!config.allow_invites && inviter.role !== "moderator")
		throw new StanzaError("forbidden", "only moderators may invite to this room");
}

/**
 * §9.3 / §7.8.2: in a members-only room, an invitation by an admin (or by anyone the room lets
 * invite) makes the invitee a member, so that it can enter.
 */
export function invitationMakesMember(
	config: RoomConfig,
	inviter: Affiliation,
	invitee: Affiliation,
): boolean {
	return (
		config.members_only &&
		invitee === "none" &&
		(RANK[inviter] >= RANK.admin || config.allow_invites)
	);
}

/** §7.8.2: the mediated invitation the room sends the invitee on behalf of `real`. */
export function inviteMessage(
	room: string,
	password: string,
	to: JID,
	real: JID,
	invite: Element,
): Element {
	const reason = reasonOf(invite);
	return x(
		"message",
		{ from: room, to: to.toString() },
		x(
			"x",
			{ xmlns: NS_MUC_USER },
			x("invite", { from: real.toString() }, reason !== undefined && x("reason", null, reason)),
			password !== "" && x("password", null, password),
		),
		x("body", null, `${real.bare.toString()} invites you to the room ${room}`),
	);
}

/** §7.8.2: a decline goes back to the inviter, from the room, naming the invitee. */
export function declineMessage(room: string, to: JID, real: JID, decline: Element): Element {
	const reason = reasonOf(decline);
	return x(
		"message",
		{ from: room, to: to.toString() },
		x(
			"x",
			{ xmlns: NS_MUC_USER },
			x(
				"decline",
				{ from: real.bare.toString() },
				reason !== undefined && x("reason", null, reason),
			),
		),
	);
}
