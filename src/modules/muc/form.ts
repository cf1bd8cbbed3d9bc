/**
 * XEP-0045 names and the data forms (XEP-0004) the MUC service speaks: the room configuration
 * form (muc#roomconfig, XEP-0045 §10.2 and §15.5.3) and the room information form
 * (muc#roominfo, §6.4 and §15.5.4).
 */
import { type Element, x } from "../../xml/element.ts";
import { field, formValues, NS_DATA } from "../../xmpp/data-form.ts";
import { StanzaError } from "../../xmpp/errors.ts";

import { NS_MAM, NS_MAM_EXTENDED, NS_SID } from "../mam/protocol.ts";

export const NS_MUC = "http://jabber.org/protocol/muc";
export const NS_MUC_USER = "http://jabber.org/protocol/muc#user";
export const NS_MUC_ADMIN = "http://jabber.org/protocol/muc#admin";
export const NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner";
export const NS_ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig";
export const NS_ROOMINFO = "http://jabber.org/protocol/muc#roominfo";
/** XEP-0410 §4: the room answers its occupants' self-pings itself. */
export const NS_SELF_PING = "http://jabber.org/protocol/muc#self-ping-optimization";
export { NS_DATA };
export const NS_VCARD = "vcard-temp";

export type Role = "moderator" | "participant" | "visitor" | "none";
export type Affiliation = "owner" | "admin" | "member" | "outcast" | "none";

export const ROLES: readonly Role[] = ["moderator", "participant", "visitor", "none"];
export const AFFILIATIONS: readonly Affiliation[] = ["owner", "admin", "member", "outcast", "none"];

/** The room settings an owner controls (XEP-0045 §10.2). */
export interface RoomConfig {
	name: string;
	description: string;
	persistent: boolean;
	public: boolean;
	members_only: boolean;
	moderated: boolean;
	/** Non-empty: password-protected (§7.2.6). */
	password: string;
	max_occupants: number;
	whois: "anyone" | "moderators";
	change_subject: boolean;
	allow_invites: boolean;
	allow_pm: "anyone" | "participants" | "moderators" | "none";
	history_length: number;
	/** Messages sent on entering when the client does not say (muc#maxhistoryfetch). */
	max_history_fetch: number;
	/** XEP-0313 archive of the room's messages (muc#roomconfig_enablearchiving). */
	archive: boolean;
	/** §7.12: users with a reserved nickname must enter under it (parley#roomconfig_enforcenick). */
	enforce_nicks: boolean;
	/** The language of discussion, an RFC 5646 tag or "" (muc#roomconfig_lang, §15.5.3). */
	lang: string;
}

/** Service limits the form is checked against. */
export interface FormLimits {
	maxOccupants: number;
	maxHistory: number;
	maxText: number;
}

const bool = (b: boolean) => (b ? "1" : "0");

/** XEP-0045 §10.2 (Example 163): the configuration form an owner fills in. */
export function configForm(c: RoomConfig, limits: FormLimits): Element {
	return x(
		"x",
		{ xmlns: NS_DATA, type: "form" },
		x("title", null, "Room configuration"),
		field("FORM_TYPE", "hidden", "", NS_ROOMCONFIG),
		field("muc#roomconfig_roomname", "text-single", "Name", c.name),
		field("muc#roomconfig_roomdesc", "text-single", "Description", c.description),
		field("muc#roomconfig_persistentroom", "boolean", "Persistent", bool(c.persistent)),
		field("muc#roomconfig_publicroom", "boolean", "Listed in the directory", bool(c.public)),
		field("muc#roomconfig_membersonly", "boolean", "Members only", bool(c.members_only)),
		field("muc#roomconfig_moderatedroom", "boolean", "Moderated", bool(c.moderated)),
		field(
			"muc#roomconfig_passwordprotectedroom",
			"boolean",
			"Password required to enter",
			bool(c.password !== ""),
		),
		field("muc#roomconfig_roomsecret", "text-private", "Password", c.password),
		field(
			"muc#roomconfig_maxusers",
			"text-single",
			`Maximum occupants (1-${limits.maxOccupants})`,
			String(c.max_occupants),
		),
		field("muc#roomconfig_whois", "list-single", "Who may discover real JIDs", c.whois, [
			["moderators", "Moderators only"],
			["anyone", "Anyone"],
		]),
		field(
			"muc#roomconfig_changesubject",
			"boolean",
			"Participants may change the subject",
			bool(c.change_subject),
		),
		field(
			"muc#roomconfig_allowinvites",
			"boolean",
			"Occupants may invite others",
			bool(c.allow_invites),
		),
		field("muc#roomconfig_allowpm", "list-single", "Who may send private messages", c.allow_pm, [
			["anyone", "Anyone"],
			["participants", "Participants and moderators"],
			["moderators", "Moderators only"],
			["none", "Nobody"],
		]),
		field(
			"muc#roomconfig_historylength",
			"text-single",
			`Messages kept for new occupants (0-${limits.maxHistory})`,
			String(c.history_length),
		),
		field(
			"muc#maxhistoryfetch",
			"text-single",
			"Messages sent on entering by default",
			String(c.max_history_fetch),
		),
		field(
			"muc#roomconfig_enablearchiving",
			"boolean",
			"Archive messages (XEP-0313 Message Archive Management)",
			bool(c.archive),
		),
		field("muc#roomconfig_lang", "text-single", "Language of discussion", c.lang),
		field(
			"parley#roomconfig_enforcenick",
			"boolean",
			"Users with a registered nickname must use it",
			bool(c.enforce_nicks),
		),
	);
}

/** A submitted form's bounds: the room configuration form has some twenty fields. */
export const MAX_FORM_FIELDS = 100;
/** Values of one field (a jid-multi of admins is the longest a client sends). */
export const MAX_FORM_VALUES = 100;
/** Characters of all the values of a form together. */
export const MAX_FORM_CHARS = 16_384;

/**
 * A submitted form (muc#roomconfig, muc#request) with more fields, values or text than any
 * client sends is refused before it is read: RFC 6120 §8.3.3.13 not-acceptable ("does not meet
 * criteria defined by the recipient"), as XEP-0045 §10.2 answers any configuration the room
 * cannot accept. The stanza size limit bounds the work; this bounds what is kept and relayed.
 */
export function checkFormSize(form: Element, what: string): void {
	const fields = form.getChildren("field");
	if (fields.length > MAX_FORM_FIELDS)
		throw new StanzaError(
			"not-acceptable",
			`${what}: ${fields.length} fields, at most ${MAX_FORM_FIELDS}`,
		);
	let chars = 0;
	for (const f of fields) {
		const values = f.getChildren("value");
		if (values.length > MAX_FORM_VALUES)
			throw new StanzaError(
				"not-acceptable",
				`${what}: ${values.length} values in ${f.attrs.var ?? "a field"}, at most ${MAX_FORM_VALUES}`,
			);
		for (const v of values) chars += v.text().length;
		if (chars > MAX_FORM_CHARS)
			throw new StanzaError("not-acceptable", `${what}: more than ${MAX_FORM_CHARS} characters`);
	}
}

/** Characters of a `<reason/>` (kick, ban, moderation, invitation, decline, destroy). */
export const MAX_REASON_CHARS = 1024;

/**
 * The text of `el`'s `<reason/>`, if any. A longer one than any person writes is refused with
 * not-acceptable (RFC 6120 §8.3.3.13): it would be relayed to every occupant or to an invitee
 * (a spam vector) and kept in the affiliation list or the archive's tombstone.
 */
export function reasonOf(el: Element): string | undefined {
	const reason = el.getChildText("reason");
	if (reason !== undefined && reason.length > MAX_REASON_CHARS)
		throw new StanzaError(
			"not-acceptable",
			`the reason is longer than ${MAX_REASON_CHARS} characters`,
		);
	return reason;
}

function parseBool(v: string, name: string): boolean {
	// XEP-0004 §3.3: boolean values are 0/1/false/true.
	if (v === "1" || v === "true") return true;
	if (v === "0" || v === "false") return false;
	throw new StanzaError("not-acceptable", `${name}: not a boolean`);
}

function parseInteger(v: string, name: string, min: number, max: number): number {
	const n = Number(v.trim());
	if (!Number.isInteger(n) || n < min || n > max)
		throw new StanzaError("not-acceptable", `${name}: expected an integer from ${min} to ${max}`);
	return n;
}

/**
 * Applies a submitted muc#roomconfig form to `current` and returns the new configuration.
 * XEP-0045 §10.2: a value the service cannot accept is `not-acceptable`; fields the form
 * leaves out keep their value.
 */
export function applyConfigForm(
	current: RoomConfig,
	form: Element,
	limits: FormLimits,
): RoomConfig {
	checkFormSize(form, "muc#roomconfig");
	const values = formValues(form);
	const formType = values.get("FORM_TYPE")?.[0];
	if (formType !== undefined && formType !== NS_ROOMCONFIG)
		throw new StanzaError("not-acceptable", `FORM_TYPE must be ${NS_ROOMCONFIG}`);
	const next: RoomConfig = { ...current };
	let passwordProtected: boolean | undefined;
	for (const [name, vals] of values) {
		const v = vals[0] ?? "";
		switch (name) {
			case "FORM_TYPE":
				break;
			case "muc#roomconfig_roomname":
				if (v.length > limits.maxText) throw new StanzaError("not-acceptable", "name too long");
				next.name = v;
				break;
			case "muc#roomconfig_roomdesc":
				if (v.length > limits.maxText)
					throw new StanzaError("not-acceptable", "description too long");
				next.description = v;
				break;
			case "muc#roomconfig_persistentroom":
				next.persistent = parseBool(v, name);
				break;
			case "muc#roomconfig_publicroom":
				next.public = parseBool(v, name);
				break;
			case "muc#roomconfig_membersonly":
				next.members_only = parseBool(v, name);
				break;
			case "muc#roomconfig_moderatedroom":
				next.moderated = parseBool(v, name);
				break;
			case "muc#roomconfig_passwordprotectedroom":
				passwordProtected = parseBool(v, name);
				break;
			case "muc#roomconfig_roomsecret":
				if (v.length > limits.maxText) throw new StanzaError("not-acceptable", "password too long");
				next.password = v;
				break;
			case "muc#roomconfig_maxusers":
				// "none" is XEP-0045's "no limit": the service's own limit then.
				next.max_occupants =
					v === "none" || v === ""
						? limits.maxOccupants
						: parseInteger(v, name, 1, limits.maxOccupants);
				break;
			case "muc#roomconfig_whois":
				if (v !== "anyone" && v !== "moderators")
					throw new StanzaError("not-acceptable", `${name}: anyone or moderators`);
				next.whois = v;
				break;
			case "muc#roomconfig_changesubject":
				next.change_subject = parseBool(v, name);
				break;
			case "muc#roomconfig_allowinvites":
				next.allow_invites = parseBool(v, name);
				break;
			case "muc#roomconfig_allowpm":
				if (v !== "anyone" && v !== "participants" && v !== "moderators" && v !== "none")
					throw new StanzaError(
						"not-acceptable",
						`${name}: anyone, participants, moderators or none`,
					);
				next.allow_pm = v;
				break;
			case "muc#roomconfig_historylength":
				next.history_length = parseInteger(v, name, 0, limits.maxHistory);
				break;
			case "muc#maxhistoryfetch":
				next.max_history_fetch = parseInteger(v, name, 0, limits.maxHistory);
				break;
			// Prosody's name since 0.11; its older one (mod_muc_log) is accepted as well.
			case "muc#roomconfig_enablearchiving":
			case "muc#roomconfig_enablelogging":
				next.archive = parseBool(v, name);
				break;
			case "muc#roomconfig_lang":
				// RFC 5646 language tags are short; a sanity bound, not a validator.
				if (v.length > 35) throw new StanzaError("not-acceptable", `${name}: not a language tag`);
				next.lang = v.trim();
				break;
			case "parley#roomconfig_enforcenick":
				next.enforce_nicks = parseBool(v, name);
				break;
			default:
				// XEP-0004 §3.2: fields the service does not know are ignored.
				break;
		}
	}
	// §10.2: password protection is off when asked so, or when the secret is empty.
	if (passwordProtected === false) next.password = "";
	else if (passwordProtected === true && next.password === "")
		throw new StanzaError("not-acceptable", "a password-protected room needs a roomsecret");
	return next;
}

/** What the muc#roominfo form says besides the configuration. */
export interface RoomInfo {
	occupants: number;
	subject: string;
	/** Bare JIDs to contact about the room (§15.5.4: normally its owners). */
	contacts: string[];
	/** XEP-0486: SHA-1 (hex) of the room's avatar, if it has one. */
	avatarHash: string | null;
	/** §15.5.4 muc#roominfo_logs: the URL of the room's web logs, if there are any. */
	logsUrl: string | null;
}

/**
 * §15.5.4 muc#roominfo_logs: the service's `logs_url` template for a room, or null. Only rooms
 * that archive have logs, and only rooms anyone may enter (public, open, no password) get a
 * public web page for them (as Prosody's mod_http_muc_log shows only public rooms).
 */
export function logsUrl(
	template: string,
	service: string,
	room: string,
	c: RoomConfig,
): string | null {
	if (!template || !c.archive || !c.public || c.members_only || c.password !== "") return null;
	return template
		.replaceAll("{room}", encodeURIComponent(room))
		.replaceAll("{service}", encodeURIComponent(service));
}

/**
 * XEP-0045 §6.4 (Example 10) and §15.5.4: extended room information (XEP-0128), with the
 * XEP-0486 avatar hash.
 */
export function roomInfoForm(c: RoomConfig, info: RoomInfo): Element {
	return x(
		"x",
		{ xmlns: NS_DATA, type: "result" },
		field("FORM_TYPE", "hidden", "", NS_ROOMINFO),
		field("muc#roominfo_description", "text-single", "Description", c.description),
		field("muc#roominfo_occupants", "text-single", "Number of occupants", String(info.occupants)),
		field("muc#roominfo_subject", "text-single", "Subject", info.subject),
		// §15.5.4: whether occupants may change the subject (Prosody and ejabberd also send
		// the older muc#roominfo_changesubject).
		field(
			"muc#roominfo_subjectmod",
			"boolean",
			"Occupants may change the subject",
			bool(c.change_subject),
		),
		c.lang !== "" && field("muc#roominfo_lang", "text-single", "Language of discussion", c.lang),
		info.contacts.length > 0 &&
			field("muc#roominfo_contactjid", "jid-multi", "Contact addresses", info.contacts),
		info.logsUrl !== null &&
			field("muc#roominfo_logs", "text-single", "URL for archived discussion logs", info.logsUrl),
		info.avatarHash !== null &&
			field("muc#roominfo_avatarhash", "text-multi", "Avatar hash", info.avatarHash),
		field(
			"muc#roominfo_changesubject",
			"boolean",
			"Occupants may change the subject",
			bool(c.change_subject),
		),
		field("muc#roomconfig_roomname", "text-single", "Name", c.name),
		field("muc#maxhistoryfetch", "text-single", "Maximum history", String(c.max_history_fetch)),
	);
}

/** XEP-0045 §6.4: the muc_* features that describe a room's type (§4.2). */
export function roomFeatures(c: RoomConfig): string[] {
	return [
		NS_MUC,
		c.persistent ? "muc_persistent" : "muc_temporary",
		c.members_only ? "muc_membersonly" : "muc_open",
		c.public ? "muc_public" : "muc_hidden",
		c.whois === "anyone" ? "muc_nonanonymous" : "muc_semianonymous",
		c.moderated ? "muc_moderated" : "muc_unmoderated",
		c.password ? "muc_passwordprotected" : "muc_unsecured",
		// XEP-0313 §6.1 / XEP-0359 §6: a room that archives says so.
		...(c.archive ? [NS_MAM, NS_MAM_EXTENDED, NS_SID] : []),
	];
}
