/**
 * Room-level limits (issue 19): message rate per unaffiliated occupant, join rate per domain,
 * and bans of a whole domain through the outcast list (XEP-0045 §9.1 extended to domain JIDs).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Element } from "../../src/xml/element.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { StanzaReader } from "../helpers/stanza-reader.ts";
import { login } from "../helpers/xmpp-raw-login.ts";
import { connectUser, errorOf, iq, type User } from "../helpers/xmpp-user.ts";

const MUC = "conference.localhost";
let t: TestServer;

before(async () => {
	t = await startTestServer({
		config: {
			auth: { require_encryption: false, allow_plain_without_tls: true },
			hosts: {
				localhost: {
					module_options: {
						spam: {
							muc_message_rate: 0.001,
							muc_message_burst: 3,
							muc_join_rate: 0.001,
							muc_join_burst: 2,
						},
					},
				},
				"remote.example": {},
				"other.example": {},
			},
			components: { [MUC]: { type: "muc" as const } },
		},
		users: [
			["owner@localhost", "owner-pw"],
			["member@localhost", "member-pw"],
			["talker@localhost", "talker-pw"],
			...["a", "b", "c"].map((u) => [`${u}@remote.example`, `${u}-pw`] as [string, string]),
			["d@other.example", "d-pw"],
		],
	});
});
after(() => t.stop());

async function user(name: string, domain = "localhost"): Promise<User> {
	if (domain === "localhost") return connectUser(t.port, name, "r");
	const c = await login(t.port, name, `${name}-pw`, {
		resource: "r",
		host: domain,
		mechanism: "PLAIN",
	});
	return { c, r: new StanzaReader(c), jid: `${name}@${domain}/r`, bare: `${name}@${domain}` };
}

async function enter(u: User, occupant: string): Promise<Element> {
	const m = u.r.mark();
	u.c.send(`<presence to='${occupant}'><x xmlns='http://jabber.org/protocol/muc'/></presence>`);
	return u.r.wait(
		(el) =>
			el.is("presence") &&
			el.attrs.from === occupant &&
			(el.attrs.type === "error" ||
				(el.getChild("x", "http://jabber.org/protocol/muc#user")?.getChildren("status") ?? []).some(
					(s) => s.attrs.code === "110",
				)),
		m,
		`presence from ${occupant}`,
	);
}

async function room(owner: User, name: string): Promise<string> {
	const jid = `${name}@${MUC}`;
	await enter(owner, `${jid}/owner`);
	const r = await iq(
		owner,
		"set",
		jid,
		"<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query>",
	);
	assert.equal(r.attrs.type, "result", r.toString());
	return jid;
}

const setAffiliation = (owner: User, jid: string, who: string, affiliation: string) =>
	iq(
		owner,
		"set",
		jid,
		`<query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='${affiliation}' jid='${who}'/></query>`,
	);

/** Sends a groupchat message; the error for it, or undefined once the room echoed it. */
async function say(u: User, jid: string, id: string): Promise<string | undefined> {
	const m = u.r.mark();
	u.c.send(`<message to='${jid}' type='groupchat' id='${id}'><body>${id}</body></message>`);
	const back = await u.r.wait((el) => el.is("message") && el.attrs.id === id, m, `echo of ${id}`);
	return back.attrs.type === "error"
		? `${errorOf(back).condition} ${back.getChild("error")?.attrs.type}`
		: undefined;
}

test("an unaffiliated occupant's messages are rate limited (policy-violation, wait); members are not", async () => {
	const owner = await user("owner");
	const jid = await room(owner, "chatty");
	const talker = await user("talker");
	const member = await user("member");
	assert.equal(
		(await setAffiliation(owner, jid, "member@localhost", "member")).attrs.type,
		"result",
	);
	await enter(talker, `${jid}/talker`);
	await enter(member, `${jid}/member`);
	const said = [];
	for (const i of [1, 2, 3, 4]) said.push(await say(talker, jid, `t${i}`));
	assert.deepEqual(said, [undefined, undefined, undefined, "policy-violation wait"]);
	for (const i of [1, 2, 3, 4, 5]) assert.equal(await say(member, jid, `m${i}`), undefined);
	for (const u of [owner, talker, member]) u.c.end();
});

test("joins from one domain are rate limited per room; another domain and another room are not", async () => {
	const owner = await user("owner");
	const jid = await room(owner, "popular");
	const other = await room(owner, "quiet");
	const [a, b, c] = [
		await user("a", "remote.example"),
		await user("b", "remote.example"),
		await user("c", "remote.example"),
	];
	const d = await user("d", "other.example");
	assert.notEqual((await enter(a, `${jid}/a`)).attrs.type, "error");
	assert.notEqual((await enter(b, `${jid}/b`)).attrs.type, "error");
	const third = await enter(c, `${jid}/c`);
	assert.equal(errorOf(third).condition, "policy-violation", third.toString());
	// An occupant's status change is no join: not limited.
	const ma = a.r.mark();
	a.c.send(`<presence to='${jid}/a'><show>away</show></presence>`);
	const away = await a.r.wait(
		(el) => el.is("presence") && el.attrs.from === `${jid}/a`,
		ma,
		"status",
	);
	assert.notEqual(away.attrs.type, "error", away.toString());
	assert.notEqual((await enter(d, `${jid}/d`)).attrs.type, "error", "another domain");
	assert.notEqual((await enter(c, `${other}/c`)).attrs.type, "error", "another room");
	for (const u of [owner, a, b, c, d]) u.c.end();
});

test("a domain on the outcast list is banned; a member from there is not (XEP-0045 §9.1)", async () => {
	const owner = await user("owner");
	const jid = await room(owner, "guarded");
	const ban = await setAffiliation(owner, jid, "other.example", "outcast");
	assert.equal(ban.attrs.type, "result", ban.toString());
	const d = await user("d", "other.example");
	const refused = await enter(d, `${jid}/d`);
	assert.equal(errorOf(refused).condition, "forbidden", refused.toString());
	assert.equal(
		(await setAffiliation(owner, jid, "d@other.example", "member")).attrs.type,
		"result",
	);
	assert.notEqual((await enter(d, `${jid}/d`)).attrs.type, "error");
	for (const u of [owner, d]) u.c.end();
});
