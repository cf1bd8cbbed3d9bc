/**
 * One XEP-0045 room: occupants, roles and affiliations, history, subject and configuration.
 * Everything here is synchronous: the room's state changes in one step per stanza, so two
 * occupants' stanzas handled concurrently cannot interleave inside a change. Storage writes
 * (persistent rooms) go through `MucService.save`, which the callers await before answering.
 * Who may do what is checked in rules.ts and messages.ts, the stanzas are built by presence.ts
 * and messages.ts: they read the room; only the Room changes it.
 *
 * Fan-out: a broadcast is built once as a PreparedStanza (src/xml/prepared.ts) and each
 * occupant's session gets it addressed to its own JID; occupants' presences are cached per
 * variant (with and without the real JID) until they change.
 */

import { createHash } from "node:crypto";
import type { Session } from "../../core/contracts.ts";
import { Element, x } from "../../xml/element.ts";
import { parseDocument } from "../../xml/parser.ts";
import { PreparedStanza } from "../../xml/prepared.ts";
import { StanzaError } from "../../xmpp/errors.ts";
import type { JID } from "../../xmpp/jid.ts";
import {
	type Affiliation,
	applyConfigForm,
	checkFormSize,
	configForm,
	type FormLimits,
	NS_DATA,
	NS_MUC,
	NS_MUC_USER,
	type Role,
	type RoomConfig,
	reasonOf,
} from "./form.ts";
import { HAT_DOFF, HAT_DON, type Hat, type HatChange } from "./hats.ts";
import { type HistoryEntry, historyEntry, parseHistoryRequest, selectHistory } from "./history.ts";
import {
	checkInviter,
	declineMessage,
	groupchatCopy,
	invitationMakesMember,
	inviteMessage,
	privateMessage,
	subjectMessage,
} from "./messages.ts";
import {
	type AffiliationEntry,
	type JidParser,
	jidAttr,
	Occupant,
	type OccupantSession,
	RANK,
	type Subject,
} from "./occupant.ts";
import {
	configChangeCodes,
	destroyElement,
	destroyPresence,
	entryCodes,
	occupantPresence,
	type PresenceOpts,
	selfOpts,
	statusMessage,
} from "./presence.ts";
import {
	adminList,
	checkEntry,
	checkNickChange,
	checkRegistration,
	defaultRole,
	planAdminSet,
} from "./rules.ts";
import { approvalForm, isRequest, parseApproval, requestForm } from "./voice.ts";

export type { OccupantSession } from "./occupant.ts";

/** What a room needs from the service it lives in. */
export interface RoomHost extends JidParser {
	/** Write to one occupant session (directly to a local session, else through the router). */
	deliver(to: OccupantSession, stanza: Element): void;
	/** Send through the router (invitations, forwarded IQs: the addressee may be anyone). */
	route(stanza: Element): void;
	/** Service admins are owners of every room. */
	isServiceAdmin(bare: string): boolean;
	/** A session of the room joined or left: the service keeps an index for `session/closed`. */
	sessionIndex(room: Room, realJid: string, joined: boolean): void;
	/** The room has no reason to exist any more (destroyed, or temporary and empty). */
	discard(room: Room): void;
	limits: FormLimits;
	now(): number;
	/** §7.13: milliseconds between two voice requests of one user. */
	voiceRequestInterval: number;
	/** XEP-0421: the occupant id of `bare` in `room` (occupant-id.ts). */
	occupantId(room: string, bare: string): string;
}

/** A groupchat message checked and built, not yet sent (Room.prepareGroupchat). */
export interface PreparedGroupchat {
	msg: Element;
	body: boolean;
	kind: "subject" | "message";
}

/** What a persistent room keeps in storage. */
export interface StoredRoom {
	[key: string]: unknown;
	v: 1;
	config: RoomConfig;
	affiliations: [string, Exclude<Affiliation, "none">, string | null, string | null][];
	subject: Subject | null;
	creator: string;
	created: number;
	/** XEP-0486: the room's vCard as XML (absent in records older than it). */
	vcard?: string | null;
	/** XEP-0317: bare JID -> hats. */
	hats?: [string, Hat[]][];
}

export class Room {
	readonly jid: JID;
	readonly key: string;
	readonly #host: RoomHost;
	config: RoomConfig;
	readonly affiliations = new Map<string, AffiliationEntry>();
	subject: Subject | null = null;
	readonly history: HistoryEntry[] = [];
	/** nick -> occupant */
	readonly occupants = new Map<string, Occupant>();
	/** real full JID -> occupant */
	readonly byReal = new Map<string, Occupant>();
	/** §10.1: a room created with the MUC protocol is locked until its owner configures it. */
	locked = false;
	creator: string;
	created: number;
	lockTimer: NodeJS.Timeout | null = null;
	/** XEP-0317: bare JID -> the hats the room's owners and admins gave it. */
	readonly hats = new Map<string, Hat[]>();
	/** XEP-0486: the room's vCard (vcard-temp), set by its owners, and its avatar's SHA-1. */
	vcard: Element | null = null;
	avatarHash: string | null = null;
	/** §7.13: bare JID -> when it last asked for voice (the rate limit). */
	readonly #voiceAsked = new Map<string, number>();

	constructor(jid: JID, config: RoomConfig, host: RoomHost, creator: string, created: number) {
		this.jid = jid;
		this.key = jid.toString();
		this.config = config;
		this.#host = host;
		this.creator = creator;
		this.created = created;
	}

	// --- affiliations and roles (§5) ---

	affiliationOf(bare: string): Affiliation {
		if (this.#host.isServiceAdmin(bare)) return "owner";
		return this.affiliations.get(bare)?.affiliation ?? "none";
	}

	/** §4.2 semi-anonymous rooms show real JIDs to moderators only; non-anonymous to all. */
	seesRealJids(o: Occupant): boolean {
		return this.config.whois === "anyone" || o.role === "moderator";
	}

	get isEmpty(): boolean {
		return this.occupants.size === 0;
	}

	// --- presence building and broadcast ---

	/** The occupant's presence (presence.ts) with its current affiliation. */
	#presence(o: Occupant, withJid: boolean, opts?: PresenceOpts): Element {
		return occupantPresence(o, this.affiliationOf(o.bare), withJid, opts, this.hats.get(o.bare));
	}

	/** The occupant's current presence as another occupant `viewer` sees it. */
	#cachedPresence(o: Occupant, viewer: Occupant): PreparedStanza {
		const i = this.seesRealJids(viewer) ? 1 : 0;
		let p = o.cache[i];
		if (!p) {
			p = new PreparedStanza(this.#presence(o, i === 1));
			o.cache[i] = p;
		}
		return p;
	}

	/**
	 * §7.2.3, §7.7: the occupant's presence to every occupant; its own sessions get it with
	 * status 110 (and `selfCodes`) and their real JID.
	 */
	#broadcastPresence(o: Occupant, opts: PresenceOpts = {}, selfCodes: number[] = []): void {
		const stateful = opts.type === undefined && !opts.codes && !opts.actor && !opts.reason;
		let plain: PreparedStanza | null = null;
		let withJid: PreparedStanza | null = null;
		for (const viewer of this.occupants.values()) {
			if (viewer === o) continue;
			let p: PreparedStanza;
			if (stateful) p = this.#cachedPresence(o, viewer);
			else if (this.seesRealJids(viewer))
				p = withJid ??= new PreparedStanza(this.#presence(o, true, opts));
			else p = plain ??= new PreparedStanza(this.#presence(o, false, opts));
			for (const s of viewer.sessions.values()) this.#host.deliver(s, p.to(s.key));
		}
		this.#selfPresence(o, [...o.sessions.values()], opts, selfCodes);
	}

	#selfPresence(
		o: Occupant,
		sessions: OccupantSession[],
		opts: PresenceOpts,
		selfCodes: number[],
	): void {
		if (!sessions.length) return;
		const self = new PreparedStanza(this.#presence(o, true, selfOpts(opts, selfCodes)));
		for (const s of sessions) this.#host.deliver(s, self.to(s.key));
	}

	// --- entering, changing, leaving (§7.2, §7.6, §7.7, §7.14) ---

	/**
	 * An available presence to room@service/nick from `real`. `created`: this presence just
	 * created the room (§10.1).
	 */
	presence(stanza: Element, real: JID, nick: string, session: Session | null, created: boolean) {
		const key = real.toString();
		const current = this.byReal.get(key);
		if (!current) return this.#enter(stanza, real, key, nick, session, created);
		const s = current.sessions.get(key) as OccupantSession;
		if (session) s.session = session;
		if (current.nick === nick) {
			// §7.7: a change of availability status, broadcast to everyone.
			s.presence = stanza;
			current.primary = s;
			current.cache = [null, null];
			this.#broadcastPresence(current);
			return;
		}
		this.#changeNick(current, s, stanza, nick);
	}

	#enter(
		stanza: Element,
		real: JID,
		key: string,
		nick: string,
		session: Session | null,
		created: boolean,
	): void {
		const bare = real.bare.toString();
		const aff = this.affiliationOf(bare);
		const mucX = stanza.getChild("x", NS_MUC);
		// §7.2.6-§7.2.11: locked, banned, members-only, password, nickname, full (rules.ts).
		const same = checkEntry(this, bare, aff, nick, mucX);
		const s: OccupantSession = { jid: real, key, session, presence: stanza };
		let o: Occupant;
		if (same) {
			// Several sessions of one user may share a nickname (Prosody's multi-session nicks):
			// the newest session's presence is the one the others see.
			o = same;
			o.sessions.set(key, s);
			o.primary = s;
			o.cache = [null, null];
		} else {
			o = new Occupant(
				nick,
				this.jid.withResource(nick),
				bare,
				defaultRole(aff, this.config),
				s,
				this.#host.occupantId(this.key, bare),
			);
		}
		// §7.2.3: first the presence of every occupant already there...
		for (const other of this.occupants.values()) {
			if (other === o) continue;
			this.#host.deliver(s, this.#cachedPresence(other, o).to(key));
		}
		this.occupants.set(nick, o);
		this.byReal.set(key, o);
		this.#host.sessionIndex(this, key, true);
		// ...then the new occupant's presence to everyone, itself last with its status codes
		// (110 self, and entryCodes: 100 non-anonymous, 201 new room).
		for (const viewer of this.occupants.values()) {
			if (viewer === o) continue;
			const p = this.#cachedPresence(o, viewer);
			for (const vs of viewer.sessions.values()) this.#host.deliver(vs, p.to(vs.key));
		}
		// The user's other sessions under this nick learn of the new one's presence too.
		this.#selfPresence(
			o,
			[...o.sessions.values()].filter((x) => x !== s),
			{},
			[],
		);
		this.#selfPresence(o, [s], {}, entryCodes(this.config, created));
		// §7.2.14, §7.2.15: the discussion history, with XEP-0203 delays.
		const req = parseHistoryRequest(mucX?.getChild("history", NS_MUC));
		const now = this.#host.now();
		for (const e of selectHistory(
			this.history,
			req,
			this.config.max_history_fetch,
			now,
			key.length,
		))
			this.#host.deliver(s, e.stanza.to(key));
		// §7.2.16: then the subject, always (empty when there is none).
		this.#host.deliver(s, subjectMessage(this.jid, this.subject, key));
	}

	#changeNick(o: Occupant, s: OccupantSession, stanza: Element, nick: string): void {
		// §7.6: the nickname conflict rules of entering (§7.2.9, rules.ts).
		checkNickChange(this, o, nick);
		// §7.6: unavailable from the old nickname with 303 and the new one, then available from
		// the new one. Every session of the occupant moves: a nickname belongs to the user.
		this.#broadcastPresence(o, { type: "unavailable", codes: [303], newNick: nick });
		this.occupants.delete(o.nick);
		o.nick = nick;
		o.jid = this.jid.withResource(nick);
		s.presence = stanza;
		o.primary = s;
		o.cache = [null, null];
		this.occupants.set(nick, o);
		this.#broadcastPresence(o);
	}

	/**
	 * §7.14: a session leaves (unavailable presence, or its stream ended). `stanza` is the
	 * client's unavailable presence, whose <status/> the others see.
	 */
	leave(realKey: string, stanza: Element | null): void {
		const o = this.byReal.get(realKey);
		if (!o) return;
		const s = o.sessions.get(realKey) as OccupantSession;
		this.#detach(o, s);
		const payload = stanza ?? x("presence", { type: "unavailable" });
		if (o.sessions.size === 0) {
			this.occupants.delete(o.nick);
			this.#broadcastPresence(o, { type: "unavailable", payload });
			this.#selfPresence(o, [s], { type: "unavailable", payload }, []);
		} else {
			this.#selfPresence(o, [s], { type: "unavailable", payload }, []);
			if (o.primary === s) {
				o.primary = o.sessions.values().next().value as OccupantSession;
				o.cache = [null, null];
				this.#broadcastPresence(o);
			}
		}
		this.#maybeDiscard();
	}

	#detach(o: Occupant, s: OccupantSession): void {
		o.sessions.delete(s.key);
		this.byReal.delete(s.key);
		this.#host.sessionIndex(this, s.key, false);
	}

	/** A temporary room is destroyed when its last occupant leaves (§4.2, §10.1.3 for locked). */
	#maybeDiscard(): void {
		if (this.isEmpty && (!this.config.persistent || this.locked)) this.#host.discard(this);
	}

	/** Removes every session of an occupant (kick, ban, affiliation change), saying why. */
	#remove(o: Occupant, codes: number[], actor?: string, reason?: string): void {
		const sessions = [...o.sessions.values()];
		for (const s of sessions) this.#detach(o, s);
		this.occupants.delete(o.nick);
		const opts: PresenceOpts = { type: "unavailable", codes, actor, reason };
		this.#broadcastPresence(o, opts);
		this.#selfPresence(o, sessions, opts, []);
	}

	// --- messages (§7.4, §7.5, §8.1) ---

	/** §7.4: a groupchat message from `real` to the room. Returns the subject if it changed. */
	groupchat(stanza: Element, real: JID): "subject" | "message" {
		const p = this.prepareGroupchat(stanza, real);
		this.sendGroupchat(p);
		return p.kind;
	}

	/**
	 * The checks and the subject change of §7.4 / §8.1, and the copy occupants will get, without
	 * sending it: the service archives it first (XEP-0313, stanza-id by the room), then calls
	 * {@link sendGroupchat}.
	 */
	prepareGroupchat(stanza: Element, real: JID): PreparedGroupchat {
		const o = this.byReal.get(real.toString());
		// §7.4: only occupants may send messages to all occupants.
		if (!o) throw new StanzaError("not-acceptable", "only occupants may send to the room");
		// §7.4 / §5.1.1: visitors in a moderated room have no voice.
		if (o.role === "visitor" || o.role === "none")
			throw new StanzaError("forbidden", "you have no voice in this room");
		const subject = stanza.getChild("subject");
		const body = stanza.getChild("body");
		if (subject && !body) {
			// §8.1: moderators, and participants when the room allows it, change the subject.
			if (o.role !== "moderator" && !this.config.change_subject)
				throw new StanzaError("forbidden", "you may not change the subject");
			const text = subject.text();
			if (text.length > this.#host.limits.maxText)
				throw new StanzaError("not-acceptable", "the subject is too long");
			this.subject = { text, nick: o.nick, when: this.#host.now() };
		}
		const msg = groupchatCopy(stanza, o);
		return { msg, body: body !== undefined, kind: subject && !body ? "subject" : "message" };
	}

	/** Broadcasts a prepared groupchat message and keeps it in the history (§7.2.14). */
	sendGroupchat(p: PreparedGroupchat): void {
		this.broadcast(new PreparedStanza(p.msg));
		if (p.body) this.#remember(p.msg);
	}

	/** Adds a message (with its time) to the history: restoring it from the archive. */
	restoreHistory(msg: Element, when: number): void {
		this.history.push(historyEntry(msg, this.key, when));
		this.#trimHistory();
	}

	/** §7.2.14: at most muc#roomconfig_historylength messages, the newest. */
	#trimHistory(): void {
		const max = this.config.history_length;
		if (this.history.length > max) this.history.splice(0, this.history.length - max);
	}

	/**
	 * XEP-0424 §5.1, XEP-0425 §5: a retracted message leaves the history too; its tombstone
	 * takes its place, so a newcomer's client does not show it.
	 */
	replaceHistory(id: string, tombstone: Element): void {
		const i = this.history.findIndex((e) => e.id === id);
		const e = this.history[i];
		if (e) this.history[i] = historyEntry(tombstone, this.key, e.when);
	}

	/** Writes a prepared stanza to every session of every occupant. */
	broadcast(p: PreparedStanza): void {
		for (const o of this.occupants.values())
			for (const s of o.sessions.values()) this.#host.deliver(s, p.to(s.key));
	}

	/** §7.2.14: the room's history, at most muc#roomconfig_historylength messages. */
	#remember(msg: Element): void {
		const max = this.config.history_length;
		if (max === 0) return;
		this.history.push(historyEntry(msg, this.key, this.#host.now()));
		this.#trimHistory();
	}

	/** §7.5: a private message from `real` to the occupant `nick` (messages.ts). */
	privateMessage(stanza: Element, real: JID, nick: string): void {
		const pm = privateMessage(this, stanza, real, nick);
		if (pm) for (const s of pm.to.sessions.values()) this.#host.deliver(s, pm.copy.to(s.key));
	}

	occupantByReal(real: JID): Occupant | undefined {
		return this.byReal.get(real.toString());
	}

	// --- invitations (§7.8.2) ---

	/**
	 * §7.8.2 mediated invitations and declines inside a message to the room (the rules and
	 * the messages are in messages.ts). Returns whether there were any.
	 */
	invitations(stanza: Element, real: JID): boolean {
		const xEl = stanza.getChild("x", NS_MUC_USER);
		if (!xEl) return false;
		const invites = xEl.getChildren("invite");
		const declines = xEl.getChildren("decline");
		if (!invites.length && !declines.length) return false;
		if (invites.length) {
			const o = this.byReal.get(real.toString());
			checkInviter(this.config, o);
			// Every invitee's JID (and reason) is checked before any invitation goes out.
			const targets: JID[] = [];
			for (const inv of invites) {
				reasonOf(inv);
				targets.push(jidAttr(this.#host, inv.attrs.to));
			}
			const aff = this.affiliationOf(o.bare);
			for (const [i, to] of targets.entries()) {
				const toBare = to.bare.toString();
				// §9.3: like any membership, told to the room (the invitee is not in it yet).
				if (invitationMakesMember(this.config, aff, this.affiliationOf(toBare)))
					this.#setAffiliation(toBare, "member", o.nick, undefined, undefined);
				const inv = invites[i] as Element;
				this.#host.route(inviteMessage(this.key, this.config.password, to, real, inv));
			}
		}
		for (const dec of declines)
			this.#host.route(declineMessage(this.key, jidAttr(this.#host, dec.attrs.to), real, dec));
		return true;
	}

	// --- muc#admin (§8, §9) ---

	/** The list a muc#admin get asks for (rules.ts). */
	adminList(real: JID, item: Element): Element[] {
		return adminList(this, real, item);
	}

	/**
	 * A muc#admin set: every item is checked (rules.ts) before any is applied (§8, §9). Returns
	 * whether affiliations changed (so the service saves a persistent room).
	 */
	adminSet(real: JID, items: Element[]): boolean {
		const changes = planAdminSet(this, this.#host, real, items);
		const actorNick = this.byReal.get(real.toString())?.nick;
		for (const c of changes)
			if (c.kind === "affiliation")
				this.#setAffiliation(c.bare, c.affiliation, actorNick, c.reason, c.reserve);
			else this.#setRole(c.target, c.role, actorNick, c.reason);
		return changes.some((c) => c.kind === "affiliation");
	}

	#setAffiliation(
		bare: string,
		aff: Affiliation,
		actorNick: string | undefined,
		reason: string | undefined,
		nick: string | undefined,
	): void {
		if (aff === "none") this.affiliations.delete(bare);
		else {
			const e: AffiliationEntry = { affiliation: aff };
			const known = this.affiliations.get(bare)?.nick;
			if (nick !== undefined) e.nick = nick;
			else if (known !== undefined) e.nick = known;
			if (reason !== undefined) e.reason = reason;
			this.affiliations.set(bare, e);
		}
		let present = false;
		for (const o of [...this.occupants.values()]) {
			if (o.bare !== bare) continue;
			present = true;
			if (aff === "outcast") {
				// §9.1: banned, status 301.
				this.#remove(o, [301], actorNick, reason);
			} else if (aff === "none" && this.config.members_only) {
				// §9.4: no longer a member of a members-only room, status 321.
				this.#remove(o, [321], actorNick, reason);
			} else {
				// §9.3, §10.3, §10.6: the new affiliation (and the role it implies) is broadcast.
				o.role = defaultRole(aff, this.config);
				o.cache = [null, null];
				this.#broadcastPresence(o, { actor: actorNick, reason });
			}
		}
		if (!present) this.#absentAffiliation(bare, aff, actorNick, reason);
		this.#maybeDiscard();
	}

	/**
	 * §9.3, §9.4, §9.1, §10.3-§10.7: the affiliation of a user who is not in the room changed:
	 * no presence can say it, so a message from the room does, with the bare JID: to every
	 * occupant in a non-anonymous room, to the moderators only in a semi-anonymous one. OMEMO
	 * clients keep their member lists by it.
	 */
	#absentAffiliation(
		bare: string,
		aff: Affiliation,
		actorNick: string | undefined,
		reason: string | undefined,
	): void {
		const item = x("item", { affiliation: aff, jid: bare, role: "none" });
		if (actorNick !== undefined) item.append(x("actor", { nick: actorNick }));
		if (reason !== undefined) item.append(x("reason", null, reason));
		const p = new PreparedStanza(
			x("message", { from: this.key }, x("x", { xmlns: NS_MUC_USER }, item)),
		);
		for (const o of this.occupants.values())
			if (this.seesRealJids(o))
				for (const s of o.sessions.values()) this.#host.deliver(s, p.to(s.key));
	}

	#setRole(o: Occupant, role: Role, actorNick: string | undefined, reason?: string): void {
		if (!this.occupants.has(o.nick) || this.occupants.get(o.nick) !== o) return;
		if (role === "none") {
			// §8.2: kicked, status 307.
			this.#remove(o, [307], actorNick, reason);
			this.#maybeDiscard();
			return;
		}
		// §8.3, §8.4, §9.6, §9.7: voice and moderator granted or revoked.
		o.role = role;
		o.cache = [null, null];
		this.#broadcastPresence(o, { actor: actorNick, reason });
	}

	// --- voice requests (§7.13, §8.6) ---

	/**
	 * A muc#request form in a message to the room: a visitor asking for voice (§7.13), passed
	 * to every moderator as the §8.6 approval form, at most once per `voiceRequestInterval`
	 * per user; or a moderator's answer (§8.6), which grants voice when it allows it. Returns
	 * false when the message holds no such form.
	 */
	voiceRequest(stanza: Element, real: JID): boolean {
		const form = requestForm(stanza);
		if (!form) return false;
		checkFormSize(form, "muc#request");
		const o = this.byReal.get(real.toString());
		// §7.13: occupants ask; §8.6: moderators answer.
		if (!o) throw new StanzaError("not-acceptable", "only occupants may ask for voice");
		if (isRequest(form)) {
			// §7.13: a visitor asks; one who has voice has nothing to ask for.
			if (o.role !== "visitor") return true;
			const now = this.#host.now();
			const last = this.#voiceAsked.get(o.bare);
			if (last !== undefined && now - last < this.#host.voiceRequestInterval)
				throw new StanzaError("resource-constraint", "you asked for voice a moment ago", {
					type: "wait",
				});
			this.#voiceAsked.set(o.bare, now);
			for (const [bare, t] of this.#voiceAsked)
				if (now - t >= this.#host.voiceRequestInterval) this.#voiceAsked.delete(bare);
			// Moderators see real JIDs in every room (§4.2), so the form names the user.
			const p = new PreparedStanza(approvalForm(this.key, o, true));
			for (const m of this.occupants.values()) {
				if (m.role !== "moderator") continue;
				for (const s of m.sessions.values()) this.#host.deliver(s, p.to(s.key));
			}
			return true;
		}
		const answer = parseApproval(form);
		if (!answer)
			throw new StanzaError(
				"bad-request",
				"a muc#request answer needs muc#roomnick and muc#request_allow",
			);
		// §8.6: only moderators approve.
		if (o.role !== "moderator") throw new StanzaError("forbidden", "only moderators grant voice");
		const target = this.occupants.get(answer.nick);
		if (answer.allow && target?.role === "visitor") {
			// §8.6 -> §8.3: voice granted, broadcast like any role change.
			this.#voiceAsked.delete(target.bare);
			this.#setRole(target, "participant", o.nick);
		}
		return true;
	}

	// --- registration (§7.10) and reserved nicknames (§7.12) ---

	/** §7.12: the nickname `bare` registered (or was given, §9.3) in this room. */
	reservedNick(bare: string): string | undefined {
		return this.affiliations.get(bare)?.nick;
	}

	/**
	 * §7.10: `real` registers `nick` (rules.ts checks it): an unaffiliated user becomes a
	 * member with that nickname, an affiliated one keeps its affiliation. Returns whether
	 * anything changed (the service then saves the room).
	 */
	register(real: JID, nick: string): boolean {
		const bare = real.bare.toString();
		checkRegistration(this, bare, nick);
		const e = this.affiliations.get(bare);
		if (e?.nick === nick) return false;
		if (e) e.nick = nick;
		else this.#setAffiliation(bare, "member", undefined, undefined, nick);
		return true;
	}

	/** §7.10 / XEP-0077 §3.2: cancels a registration: a plain member is one no more. */
	unregister(real: JID): boolean {
		const bare = real.bare.toString();
		const e = this.affiliations.get(bare);
		if (!e || e.nick === undefined) return false;
		if (e.affiliation === "member")
			this.#setAffiliation(bare, "none", undefined, undefined, undefined);
		else delete e.nick;
		return true;
	}

	// --- hats (XEP-0317) ---

	/**
	 * XEP-0317 §3.2, §3.3: an owner or admin puts a hat on a user or takes it off; an occupant
	 * that wears it is broadcast again. Returns whether anything changed.
	 */
	changeHat(real: JID, change: HatChange): boolean {
		this.ownerOrAdmin(real);
		const bare = jidAttr(this.#host, change.jid).bare.toString();
		const worn = this.hats.get(bare) ?? [];
		const rest = worn.filter((h) => h.uri !== change.hat.uri);
		const next = change.node === HAT_DON ? [...rest, change.hat] : rest;
		if (next.length === worn.length && change.node === HAT_DOFF) return false;
		if (next.length) this.hats.set(bare, next);
		else this.hats.delete(bare);
		for (const o of this.occupants.values())
			if (o.bare === bare) {
				o.cache = [null, null];
				this.#broadcastPresence(o);
			}
		return true;
	}

	// --- the room's vCard (XEP-0486) ---

	/**
	 * XEP-0486 §3: an owner sets the room's vCard; the avatar hash (muc#roominfo_avatarhash)
	 * is the SHA-1 of the PHOTO's bytes. Returns whether the avatar changed (the service then
	 * tells the occupants with status 104, XEP-0486 §3.2 / XEP-0045 §10.2.1).
	 */
	setVcard(vcard: Element): boolean {
		const binval = vcard.getChild("PHOTO")?.getChildText("BINVAL")?.replace(/\s+/g, "");
		const hash = binval
			? createHash("sha1").update(Buffer.from(binval, "base64")).digest("hex")
			: null;
		const empty = vcard.elements().length === 0;
		this.vcard = empty ? null : new Element("vCard", vcard.ns, {}, vcard.children);
		const changed = hash !== this.avatarHash;
		this.avatarHash = hash;
		return changed;
	}

	// --- muc#owner (§10) ---

	/** XEP-0317 (and §9): owners and admins only. */
	ownerOrAdmin(real: JID): void {
		if (RANK[this.affiliationOf(real.bare.toString())] < RANK.admin)
			throw new StanzaError("forbidden", "only owners and admins may do this");
	}

	ownerOnly(real: JID): void {
		// §10.2: only owners configure the room.
		if (this.affiliationOf(real.bare.toString()) !== "owner")
			throw new StanzaError("forbidden", "only owners may configure the room");
	}

	configForm(): Element {
		return configForm(this.config, this.#host.limits);
	}

	/**
	 * §10.1.2, §10.1.3, §10.2: a submitted configuration form. Returns the change; the service
	 * saves the room, answers, then calls `announce`.
	 */
	configure(form: Element): { before: RoomConfig; after: RoomConfig } {
		if (form.ns !== NS_DATA || form.attrs.type !== "submit")
			throw new StanzaError("bad-request", "expected a submitted jabber:x:data form");
		const before = this.config;
		const after = applyConfigForm(before, form, this.#host.limits);
		this.config = after;
		// §7.2.14 / muc#roomconfig_historylength: a shorter history takes effect at once.
		this.#trimHistory();
		this.locked = false;
		if (this.lockTimer) clearTimeout(this.lockTimer);
		this.lockTimer = null;
		return { before, after };
	}

	/** §10.2.1: tell the occupants what changed; §9.? members-only removes non-members (322). */
	announce(before: RoomConfig, after: RoomConfig): void {
		if (after.whois !== before.whois || after.moderated !== before.moderated)
			for (const o of this.occupants.values()) o.cache = [null, null];
		if (after.members_only && !before.members_only) {
			for (const o of [...this.occupants.values()])
				if (this.affiliationOf(o.bare) === "none") this.#remove(o, [322]);
		}
		// §10.2.1: 104, 172, 173.
		const codes = configChangeCodes(before, after);
		if (codes.length) this.broadcast(new PreparedStanza(statusMessage(this.key, codes)));
		this.#maybeDiscard();
	}

	/**
	 * The node holding the room stops (a cluster's rolling restart): each occupant still here
	 * (those on other nodes) gets its unavailable self-presence with status 332, removed by a
	 * system shutdown (XEP-0045 §15.6.2), and knows to enter again; the next node a stanza for
	 * the room reaches loads it from storage. Nothing is broadcast: everyone leaves at once.
	 */
	shutdown(): void {
		for (const o of [...this.occupants.values()]) {
			const sessions = [...o.sessions.values()];
			for (const s of sessions) this.#detach(o, s);
			this.occupants.delete(o.nick);
			this.#selfPresence(o, sessions, { type: "unavailable", codes: [332] }, []);
		}
	}

	/** §10.9: every occupant is told the room is gone (with the alternate venue, if any). */
	destroy(reason?: string, alternate?: string): void {
		const destroy = destroyElement(reason, alternate);
		// §10.9: one unavailable presence to each occupant (none broadcast), with <destroy/>
		// and 110 (destroyPresence).
		for (const o of [...this.occupants.values()]) {
			const p = new PreparedStanza(destroyPresence(o, destroy));
			for (const s of [...o.sessions.values()]) {
				this.#detach(o, s);
				this.#host.deliver(s, p.to(s.key));
			}
			this.occupants.delete(o.nick);
		}
		this.#host.discard(this);
	}

	// --- persistence ---

	toStored(): StoredRoom {
		return {
			v: 1,
			config: this.config,
			affiliations: [...this.affiliations].map(([jid, e]) => [
				jid,
				e.affiliation,
				e.nick ?? null,
				e.reason ?? null,
			]),
			subject: this.subject,
			creator: this.creator,
			created: this.created,
			vcard: this.vcard?.toString() ?? null,
			hats: [...this.hats].map(([jid, hats]) => [jid, hats.map((h) => ({ ...h }))]),
		};
	}

	restore(stored: StoredRoom): void {
		const config = { ...this.config, ...stored.config };
		// The service's limits may have been lowered since the room was stored.
		const { maxHistory, maxOccupants } = this.#host.limits;
		config.history_length = Math.min(config.history_length, maxHistory);
		config.max_history_fetch = Math.min(config.max_history_fetch, maxHistory);
		config.max_occupants = Math.min(config.max_occupants, maxOccupants);
		this.config = config;
		for (const [jid, affiliation, nick, reason] of stored.affiliations) {
			const e: AffiliationEntry = { affiliation };
			if (nick !== null) e.nick = nick;
			if (reason !== null) e.reason = reason;
			this.affiliations.set(jid, e);
		}
		this.subject = stored.subject;
		for (const [jid, hats] of stored.hats ?? []) this.hats.set(jid, hats);
		if (typeof stored.vcard === "string") {
			try {
				this.setVcard(parseDocument(stored.vcard, { maxStanzaBytes: 1 << 22, maxDepth: 16 }));
			} catch {
				// A vCard that no longer parses is dropped, the room stays.
			}
		}
	}
}
