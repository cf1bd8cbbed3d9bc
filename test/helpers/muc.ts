/**
 * Raw-socket steps for the Multi-User Chat tests (XEP-0045): log in, send an IQ and wait for its
 * answer, enter a room and wait for the self-presence (§7.2), submit a room configuration
 * (§10.2), read status codes. Shared by test/e2e/muc.test.ts and muc-modern.test.ts.
 */
import type { Element } from "../../src/xml/element.ts";
import type { RawClient } from "./raw.ts";
import type { TestServer } from "./server.ts";
import { StanzaReader } from "./stanza-reader.ts";
import { login } from "./xmpp-raw-login.ts";

export const MUC = "http://jabber.org/protocol/muc";
export const MUC_USER = "http://jabber.org/protocol/muc#user";
export const MUC_OWNER = "http://jabber.org/protocol/muc#owner";

export interface User {
	c: RawClient;
	r: StanzaReader;
	jid: string;
}

let seq = 0;
/** A stanza id unique in the test file. */
export const nextId = () => `t${++seq}`;

/** Logs `user` in (password `<user>-pw`, PLAIN) with a resource, reading what arrives. */
export async function connect(t: TestServer, user: string, resource = "r"): Promise<User> {
	const c = await login(t.port, user, `${user}-pw`, { resource, mechanism: "PLAIN" });
	return { c, r: new StanzaReader(c), jid: `${user}@localhost/${resource}` };
}

/** The muc#user status codes of a stanza. */
export const codes = (el: Element) =>
	(el.getChild("x", MUC_USER)?.getChildren("status") ?? []).map((s) => Number(s.attrs.code));
/** §7.2.2: the self-presence carries status 110. */
export const isSelf = (el: Element) => el.is("presence") && codes(el).includes(110);

/** Sends an IQ and waits for its answer. */
export async function iq(u: User, type: "get" | "set", to: string, body: string): Promise<Element> {
	const id = nextId();
	const mark = u.r.mark();
	u.c.send(`<iq type='${type}' id='${id}' to='${to}'>${body}</iq>`);
	return u.r.wait((el) => el.is("iq") && el.attrs.id === id, mark, `answer to iq ${id}`);
}

/**
 * Enters `room/nick` (§7.2) and waits for the self-presence (110) or an error presence.
 * Returns it and everything received from the room up to it.
 */
export async function enter(
	u: User,
	occupant: string,
	x = `<x xmlns='${MUC}'/>`,
	extra = "",
): Promise<{ self: Element; before: Element[]; mark: number }> {
	const mark = u.r.mark();
	u.c.send(`<presence to='${occupant}'>${x}${extra}</presence>`);
	const self = await u.r.wait(
		(el) =>
			el.is("presence") && el.attrs.from === occupant && (isSelf(el) || el.attrs.type === "error"),
		mark,
		`self-presence from ${occupant}`,
	);
	const all = u.r.since(mark);
	return { self, before: all.slice(0, all.indexOf(self)), mark };
}

/** §10.2: submits the muc#roomconfig form with `fields`. */
export async function configure(
	u: User,
	room: string,
	fields: Record<string, string>,
): Promise<Element> {
	const f = Object.entries(fields)
		.map(([k, v]) => `<field var='${k}'><value>${v}</value></field>`)
		.join("");
	return iq(
		u,
		"set",
		room,
		`<query xmlns='${MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>${f}</x></query>`,
	);
}
