// Who may enter, take a nickname, change roles and affiliations (XEP-0045 §5, §7.2, §7.6, §8-§10).
import { type Element, x } from "../../xml/element.ts";
import { StanzaError } from "../../xmpp/errors.ts";
import type { JID } from "../../xmpp/jid.ts";
import { type Affiliation, type Role, type RoomConfig, reasonOf } from "./form.ts";
import {
	isAffiliation,
	isRole,
	type JidParser,
	jidAttr,
	type Occupant,
	RANK,
	type RoomView,
} from "./occupant.ts";

// --- entering (§5.1.2, §7.2, §7.6) ---

/** §5.1.2 default roles: owners and admins moderate; visitors in moderated rooms. */
export function defaultRole(aff: Affiliation, config: RoomConfig): Role {
	if (aff === "owner" || aff === "admin") return "moderator";
	if (aff === "member") return "participant";
	if (aff === "outcast") return "none";
	return config.moderated ? "visitor" : "participant";
}

/** The bare JID that reserved `nick` (§7.12), if another one did. */
function nickOwner(room: RoomView, nick: string): string | undefined {
	for (const [bare, e] of room.affiliations) if (e.nick === nick) return bare;
	return undefined;
}

/**
 * Whether the user `bare` (affiliation `aff`) may enter as `nick`, with the MUC <x/> of its
 * presence; throws the error that says why not. Returns the occupant of that nickname if it is
 * the same user's (another session of it).
 */
export function checkEntry(
	room: RoomView,
	bare: string,
	aff: Affiliation,
	nick: string,
	mucX: Element | undefined,
): Occupant | undefined {
	// §7.2.11: nobody but the owner enters a room that is still locked.
	if (room.locked && aff !== "owner")
		throw new StanzaError("item-not-found", "the room is locked until its owner configures it");
	// §7.2.8: banned users cannot enter.
	if (aff === "outcast") throw new StanzaError("forbidden", "you are banned from this room");
	// §7.2.7: members-only rooms admit members, admins and owners.
	if (room.config.members_only && aff === "none")
		throw new StanzaError("registration-required", "this room is members-only");
	// §7.2.6: a password-protected room needs the right password.
	if (room.config.password !== "" && mucX?.getChildText("password") !== room.config.password)
		throw new StanzaError("not-authorized", "a password is required to enter this room");
	// §7.2.9: the nickname is someone else's (in use, or reserved by another user).
	const same = room.occupants.get(nick);
	if (same && same.bare !== bare)
		throw new StanzaError("conflict", "that nickname is in use", { type: "cancel" });
	const owner = nickOwner(room, nick);
	if (owner !== undefined && owner !== bare)
		throw new StanzaError("conflict", "that nickname is reserved", { type: "cancel" });
	checkEnforcedNick(room, bare, nick);
	// §7.2.10: the room is full (admins and owners still enter).
	if (
		!same &&
		room.occupants.size >= room.config.max_occupants &&
		aff !== "owner" &&
		aff !== "admin"
	)
		throw new StanzaError("service-unavailable", "the room is full", { type: "wait" });
	return same;
}

/**
 * §7.12 ("the service MAY require the user to use the reserved nickname"), when the room
 * enforces it: a user with a registered nickname enters and stays under it only.
 */
function checkEnforcedNick(room: RoomView, bare: string, nick: string): void {
	if (!room.config.enforce_nicks) return;
	const reserved = room.affiliations.get(bare)?.nick;
	if (reserved !== undefined && reserved !== nick)
		throw new StanzaError("not-acceptable", `your registered nickname here is ${reserved}`, {
			type: "cancel",
		});
}

/**
 * §7.10: whether `bare` may register `nick`: not banned, a member already in a members-only
 * room, and the nickname nobody else's (reserved, or in use by another user: conflict).
 */
export function checkRegistration(room: RoomView, bare: string, nick: string): void {
	const aff = room.affiliationOf(bare);
	if (aff === "outcast") throw new StanzaError("forbidden", "you are banned from this room");
	if (room.config.members_only && aff === "none")
		throw new StanzaError("registration-required", "only members register in this room");
	const owner = nickOwner(room, nick);
	const inUse = room.occupants.get(nick);
	if ((owner !== undefined && owner !== bare) || (inUse && inUse.bare !== bare))
		throw new StanzaError("conflict", "that nickname is someone else's", { type: "cancel" });
}

/** §7.6: whether occupant `o` may take `nick`: the same conflict rules as on entering (§7.2.9). */
export function checkNickChange(room: RoomView, o: Occupant, nick: string): void {
	if (room.occupants.has(nick))
		throw new StanzaError("conflict", "that nickname is in use", { type: "cancel" });
	const owner = nickOwner(room, nick);
	if (owner !== undefined && owner !== o.bare)
		throw new StanzaError("conflict", "that nickname is reserved", { type: "cancel" });
	checkEnforcedNick(room, o.bare, nick);
}

// --- muc#admin (§5, §8, §9, §10.3-§10.8) ---

/** One checked item of a muc#admin set, for the room to apply. */
export type AdminChange =
	| {
			kind: "affiliation";
			bare: string;
			affiliation: Affiliation;
			reason: string | undefined;
			/** A nickname to reserve (§9.3). */
			reserve: string | undefined;
	  }
	| { kind: "role"; target: Occupant; role: Role; reason: string | undefined };

/** The list a muc#admin get asks for (§8.5, §9.2, §9.5, §9.8, §10.5, §10.8). */
export function adminList(room: RoomView, real: JID, item: Element): Element[] {
	const bare = real.bare.toString();
	const aff = room.affiliationOf(bare);
	const { affiliation, role } = item.attrs;
	if (affiliation !== undefined) {
		if (!isAffiliation(affiliation) || affiliation === "none")
			throw new StanzaError("bad-request", "unknown affiliation");
		// §9.2, §9.5: admins and owners read the lists; §7.11: members read the member list of
		// a members-only room.
		const allowed =
			RANK[aff] >= RANK.admin ||
			(aff === "member" && room.config.members_only && affiliation !== "outcast");
		if (!allowed) throw new StanzaError("forbidden", "you may not read this list");
		const out: Element[] = [];
		for (const [jid, e] of room.affiliations)
			if (e.affiliation === affiliation)
				out.push(
					x(
						"item",
						{ affiliation, jid, nick: e.nick },
						e.reason !== undefined && x("reason", null, e.reason),
					),
				);
		return out;
	}
	if (role !== undefined) {
		if (!isRole(role) || role === "none") throw new StanzaError("bad-request", "unknown role");
		// §8.5, §9.8: moderators read the role lists.
		if (room.byReal.get(real.toString())?.role !== "moderator")
			throw new StanzaError("forbidden", "only moderators may read this list");
		const out: Element[] = [];
		for (const o of room.occupants.values())
			if (o.role === role)
				out.push(
					x("item", {
						role,
						nick: o.nick,
						affiliation: room.affiliationOf(o.bare),
						jid: o.primary.key,
					}),
				);
		return out;
	}
	throw new StanzaError("bad-request", "an item needs an affiliation or a role");
}

/**
 * The changes a muc#admin set asks for. Every item is checked before any is applied (§8, §9):
 * this throws on the first refused item, and the room applies the changes only if none is.
 */
export function planAdminSet(
	room: RoomView,
	jids: JidParser,
	real: JID,
	items: Element[],
): AdminChange[] {
	if (!items.length) throw new StanzaError("bad-request", "no item");
	const actorBare = real.bare.toString();
	const actorAff = room.affiliationOf(actorBare);
	const actor = room.byReal.get(real.toString());
	const changes: AdminChange[] = [];
	// Affiliations as they will be once the earlier items of this request are applied.
	const pending = new Map<string, Affiliation>();
	const current = (bare: string) => pending.get(bare) ?? room.affiliationOf(bare);
	for (const item of items) {
		const reason = reasonOf(item);
		const { affiliation, role, nick, jid } = item.attrs;
		if (affiliation !== undefined) {
			if (!isAffiliation(affiliation)) throw new StanzaError("bad-request", "unknown affiliation");
			let bare: string;
			if (jid !== undefined) bare = jidAttr(jids, jid).bare.toString();
			else if (nick !== undefined) {
				const o = room.occupants.get(nick);
				if (!o) throw new StanzaError("item-not-found", "no occupant with that nickname");
				bare = o.bare;
			} else throw new StanzaError("bad-request", "an affiliation item needs a jid or nick");
			maySetAffiliation(room, actorBare, actorAff, bare, current(bare), affiliation);
			pending.set(bare, affiliation);
			// A nick given with a jid reserves it for that user (§9.3); one naming an occupant
			// only finds the user.
			const reserve = jid !== undefined ? nick : undefined;
			changes.push({ kind: "affiliation", bare, affiliation, reason, reserve });
		} else if (role !== undefined) {
			if (!isRole(role)) throw new StanzaError("bad-request", "unknown role");
			let target: Occupant | undefined;
			if (nick !== undefined) target = room.occupants.get(nick);
			else if (jid !== undefined) target = room.byReal.get(jidAttr(jids, jid).toString());
			else throw new StanzaError("bad-request", "a role item needs a nick");
			// §8.2, §8.3: the occupant must be in the room.
			if (!target) throw new StanzaError("item-not-found", "no occupant with that nickname");
			maySetRole(actor, actorAff, target, current(target.bare), role);
			changes.push({ kind: "role", target, role, reason });
		} else throw new StanzaError("bad-request", "an item needs an affiliation or a role");
	}
	return changes;
}

/**
 * §5.1.3, §8.2-§8.4, §9.6-§9.7 (and Prosody's may_set_role): only moderators change roles;
 * nobody changes an admin's or an owner's role; granting or revoking moderator needs an
 * admin or owner.
 */
function maySetRole(
	actor: Occupant | undefined,
	actorAff: Affiliation,
	target: Occupant,
	targetAff: Affiliation,
	role: Role,
): void {
	if (actor?.role !== "moderator")
		throw new StanzaError("forbidden", "only moderators may change roles");
	if (targetAff === "owner" || targetAff === "admin")
		throw new StanzaError("not-allowed", "the roles of admins and owners cannot be changed");
	if ((target.role === "moderator" || role === "moderator") && RANK[actorAff] < RANK.admin)
		throw new StanzaError("not-allowed", "only admins and owners grant or revoke moderator");
}

/**
 * §5.2.3, §9, §10.3-§10.8 (and Prosody's set_affiliation): owners change any affiliation
 * but a room keeps at least one owner; admins only move users between none, member and
 * outcast; others may not change affiliations at all.
 */
function maySetAffiliation(
	room: RoomView,
	actorBare: string,
	actorAff: Affiliation,
	target: string,
	targetAff: Affiliation,
	next: Affiliation,
): void {
	if (RANK[actorAff] < RANK.admin)
		throw new StanzaError("forbidden", "only admins and owners change affiliations");
	if (actorAff === "owner") {
		if (target === actorBare && next !== "owner" && targetAff === "owner") {
			// §10.5: the last owner cannot step down.
			let owners = 0;
			for (const e of room.affiliations.values()) if (e.affiliation === "owner") owners++;
			if (owners <= 1) throw new StanzaError("conflict", "a room needs an owner");
		}
		return;
	}
	if (next === "owner" || next === "admin" || targetAff === "owner" || targetAff === "admin")
		throw new StanzaError("not-allowed", "admins cannot change owners and admins");
}
