// The presences a room sends and their status codes (XEP-0045 §7.2, §7.6, §7.14, §10.9, §16.6).
import { Element, x } from "../../xml/element.ts";
import { type Affiliation, NS_MUC, NS_MUC_USER, type RoomConfig } from "./form.ts";
import { type Hat, hatsElement, NS_HATS } from "./hats.ts";
import type { Occupant } from "./occupant.ts";
import { NS_OCCUPANT_ID, occupantIdElement } from "./occupant-id.ts";

/** Options of one presence built for the room. */
export interface PresenceOpts {
	type?: "unavailable";
	codes?: number[];
	/** <item nick=...> (nick change, status 303). */
	newNick?: string;
	actor?: string;
	reason?: string;
	/** <destroy/> (§10.9). */
	destroy?: Element;
	/** Replaces the occupant's own presence payload (an exit's <status/>). */
	payload?: Element;
}

/**
 * The occupant's presence as the room sends it: the client's payload, then the room's
 * muc#user <x/> with the occupant's `affiliation` and role, its real JID when `withJid`.
 */
export function occupantPresence(
	o: Occupant,
	affiliation: Affiliation,
	withJid: boolean,
	opts: PresenceOpts = {},
	hats: readonly Hat[] = [],
): Element {
	const source = opts.payload ?? o.primary.presence;
	const p = new Element("presence", null, { from: o.jid.toString() }, []);
	if (opts.type) p.attrs.type = opts.type;
	for (const c of source.children) {
		// The client's own MUC elements are not repeated (§7.2.3: the service adds its own);
		// XEP-0421 §4: nor any occupant-id it sent (the room's own is added below).
		if (typeof c === "string" || c.ns === NS_MUC || c.ns === NS_MUC_USER) continue;
		if (c.ns === NS_OCCUPANT_ID && c.name === "occupant-id") continue;
		// XEP-0317: hats are the room's to give; a client's own are dropped.
		if (c.ns === NS_HATS) continue;
		p.children.push(c);
	}
	// XEP-0317 §3.1: the hats the room gave the user.
	if (hats.length) p.children.push(hatsElement(hats));
	// XEP-0421 §4: every presence of the occupant carries its occupant id.
	p.children.push(occupantIdElement(o.id));
	const item = x("item", {
		affiliation,
		// An exit has role none; a nick change's unavailable keeps the role (§7.6, Example 49).
		role: opts.type === "unavailable" && opts.newNick === undefined ? "none" : o.role,
		jid: withJid ? o.primary.key : undefined,
		nick: opts.newNick,
	});
	if (opts.actor !== undefined) item.append(x("actor", { nick: opts.actor }));
	if (opts.reason !== undefined) item.append(x("reason", null, opts.reason));
	const xEl = x("x", { xmlns: NS_MUC_USER }, item);
	if (opts.destroy) xEl.append(opts.destroy);
	for (const code of opts.codes ?? []) xEl.append(x("status", { code: String(code) }));
	p.append(xEl);
	return p;
}

/** The options of a self-presence: the broadcast's codes, `selfCodes`, and 110, in order. */
export function selfOpts(opts: PresenceOpts, selfCodes: number[]): PresenceOpts {
	const codes = [...(opts.codes ?? []), ...selfCodes, 110].sort((a, b) => a - b);
	return { ...opts, codes };
}

/**
 * The status codes of a new occupant's self-presence besides 110: 100 in a non-anonymous room
 * (§7.2.4), 170 an archived room (§7.2.12), 201 a new room (§10.1.1). No 210 (§7.2.3: "if the service modifies the user's
 * nickname"): the nickname is the resource of the 'to' the client sent, prepared like every
 * JID (RFC 7622 §3.4), and no policy here rewrites it.
 */
export function entryCodes(config: RoomConfig, created: boolean): number[] {
	const codes: number[] = [];
	if (config.whois === "anyone") codes.push(100);
	// §7.2.12: the discussion is archived (XEP-0313), so the newcomer is warned (Prosody's
	// muc_mam does the same).
	if (config.archive) codes.push(170);
	if (created) codes.push(201);
	return codes;
}

/** §10.9: the <destroy/> of a destroyed room, with the alternate venue, if any. */
export function destroyElement(reason?: string, alternate?: string): Element {
	return x("destroy", { jid: alternate }, reason !== undefined && x("reason", null, reason));
}

/**
 * §10.9: the unavailable presence that tells an occupant the room is gone, with <destroy/>.
 * It comes from the occupant's own JID, so it is self-presence and carries 110: the status code
 * registry (§16.6) gives 110 the context "any room presence", and §7.14 requires it on the
 * presence that tells an occupant it is out of the room.
 */
export function destroyPresence(o: Occupant, destroy: Element): Element {
	return x(
		"presence",
		{ from: o.jid.toString(), type: "unavailable" },
		x(
			"x",
			{ xmlns: NS_MUC_USER },
			x("item", { affiliation: "none", role: "none" }),
			destroy,
			x("status", { code: "110" }),
		),
	);
}

/**
 * §10.2.1: the status codes that tell the occupants the configuration changed: 104 a change
 * that does not touch privacy, 170/171 archiving on/off, 172 the room is now non-anonymous,
 * 173 semi-anonymous.
 */
export function configChangeCodes(before: RoomConfig, after: RoomConfig): number[] {
	const codes: number[] = [];
	const privacy = after.whois !== before.whois;
	const other = (Object.keys(after) as (keyof RoomConfig)[]).some(
		(k) => k !== "whois" && after[k] !== before[k],
	);
	if (other) codes.push(104);
	// §10.2.1: 170 logging (here: archiving) enabled, 171 disabled.
	if (after.archive !== before.archive) codes.push(after.archive ? 170 : 171);
	if (privacy) codes.push(after.whois === "anyone" ? 172 : 173);
	return codes;
}

/** A groupchat message from the room itself carrying only status codes (§10.2.1). */
export function statusMessage(room: string, codes: number[]): Element {
	return x(
		"message",
		{ from: room, type: "groupchat" },
		x(
			"x",
			{ xmlns: NS_MUC_USER },
			codes.map((c) => x("status", { code: String(c) })),
		),
	);
}
