// A room's state: occupants and sessions, affiliations and ranks (XEP-0045 §5), the subject.
import type { Session } from "../../core/contracts.ts";
import type { Element } from "../../xml/element.ts";
import type { PreparedStanza } from "../../xml/prepared.ts";
import { StanzaError } from "../../xmpp/errors.ts";
import type { JID } from "../../xmpp/jid.ts";
import type { Affiliation, Role, RoomConfig } from "./form.ts";

export interface OccupantSession {
	/** The real full JID. */
	jid: JID;
	/** jid.toString(). */
	key: string;
	/** The local session, when the occupant is a client of this server. */
	session: Session | null;
	/** The last presence this session sent to the room, as received. */
	presence: Element;
}

export class Occupant {
	nick: string;
	/** room@service/nick */
	jid: JID;
	/** The real bare JID. */
	readonly bare: string;
	role: Role;
	readonly sessions = new Map<string, OccupantSession>();
	/** The session whose presence the other occupants see (the latest to send one). */
	primary: OccupantSession;
	/** Cached presence broadcasts: [without real JID, with real JID]. */
	cache: [PreparedStanza | null, PreparedStanza | null] = [null, null];
	/** XEP-0421: the occupant id of this user in this room (occupant-id.ts). */
	readonly id: string;

	constructor(
		nick: string,
		jid: JID,
		bare: string,
		role: Role,
		first: OccupantSession,
		id: string,
	) {
		this.id = id;
		this.nick = nick;
		this.jid = jid;
		this.bare = bare;
		this.role = role;
		this.primary = first;
		this.sessions.set(first.key, first);
	}
}

export interface AffiliationEntry {
	affiliation: Exclude<Affiliation, "none">;
	/** A reserved nickname (XEP-0045 §7.12, §9.3 'nick'). */
	nick?: string;
	reason?: string;
}

export interface Subject {
	text: string;
	/** Nickname of whoever set it ("" for the room itself). */
	nick: string;
	when: number;
}

/** What the rules in rules.ts and messages.ts read of a room (a Room is one). */
export interface RoomView {
	readonly config: RoomConfig;
	readonly affiliations: ReadonlyMap<string, AffiliationEntry>;
	/** nick -> occupant */
	readonly occupants: ReadonlyMap<string, Occupant>;
	/** real full JID -> occupant */
	readonly byReal: ReadonlyMap<string, Occupant>;
	/** §10.1: not yet configured by its owner. */
	readonly locked: boolean;
	affiliationOf(bare: string): Affiliation;
}

/** §5.2: affiliations by rank, outcast lowest. */
export const RANK: Record<Affiliation, number> = {
	owner: 4,
	admin: 3,
	member: 2,
	none: 1,
	outcast: 0,
};

export function isAffiliation(s: string): s is Affiliation {
	return s === "owner" || s === "admin" || s === "member" || s === "outcast" || s === "none";
}

export function isRole(s: string): s is Role {
	return s === "moderator" || s === "participant" || s === "visitor" || s === "none";
}

/** Parses a JID (the server's cache); throws JIDError. */
export interface JidParser {
	parseJid(s: string): JID;
}

/** A JID attribute of an item, invitation or decline; errors are the client's. */
export function jidAttr(jids: JidParser, v: string | undefined): JID {
	if (v === undefined) throw new StanzaError("bad-request", "'to' is required");
	try {
		return jids.parseJid(v);
	} catch {
		throw new StanzaError("jid-malformed", `not a JID: ${v}`);
	}
}
