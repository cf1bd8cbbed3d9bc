/**
 * The group chat modern clients expect (issue 19), end to end over real sockets: XEP-0421
 * occupant ids, XEP-0425 moderation with XEP-0424 retraction and tombstones in the room's
 * XEP-0313 archive, XEP-0045 history and subject (§7.2.13-§7.2.16). slixmpp (its xep_0045,
 * xep_0421 and xep_0425 plugins, the :0 forms) and raw XML (the :1 forms).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join as pathJoin } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Element } from "../../src/xml/element.ts";
import type { RawClient } from "../helpers/raw.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { StanzaReader } from "../helpers/stanza-reader.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

const MUC = "http://jabber.org/protocol/muc";
const MUC_USER = "http://jabber.org/protocol/muc#user";
const MUC_OWNER = "http://jabber.org/protocol/muc#owner";
const DISCO_INFO = "http://jabber.org/protocol/disco#info";
const OCC = "urn:xmpp:occupant-id:0";
const MAM = "urn:xmpp:mam:2";
const SERVICE = "conference.localhost";

const USERS = ["alice", "bob", "carol", "dave"];
const baseConfig = {
	auth: { require_encryption: false, allow_plain_without_tls: true },
	components: { [SERVICE]: { type: "muc" as const } },
};
const usersOf = (names: string[]) =>
	names.map((u) => [`${u}@localhost`, `${u}-pw`] as [string, string]);

interface User {
	c: RawClient;
	r: StanzaReader;
	jid: string;
}

let seq = 0;
const nextId = () => `t${++seq}`;

async function connect(t: TestServer, user: string, resource = "r"): Promise<User> {
	const c = await login(t.port, user, `${user}-pw`, { resource, mechanism: "PLAIN" });
	return { c, r: new StanzaReader(c), jid: `${user}@localhost/${resource}` };
}

const codes = (el: Element) =>
	(el.getChild("x", MUC_USER)?.getChildren("status") ?? []).map((s) => Number(s.attrs.code));
const isSelf = (el: Element) => el.is("presence") && codes(el).includes(110);
/** Every XEP-0421 occupant id a stanza carries, at its top level. */
const ids = (el: Element) => el.getChildren("occupant-id", OCC).map((o) => o.attrs.id);

async function iq(u: User, type: "get" | "set", to: string, body: string): Promise<Element> {
	const id = nextId();
	const mark = u.r.mark();
	u.c.send(`<iq type='${type}' id='${id}' to='${to}'>${body}</iq>`);
	return u.r.wait((el) => el.is("iq") && el.attrs.id === id, mark, `answer to iq ${id}`);
}

async function enter(
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

async function configure(u: User, room: string, fields: Record<string, string>): Promise<Element> {
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

/** Creates a room owned by `u` (entered as `nick`), configured with `fields`. */
async function room(
	u: User,
	jid: string,
	nick: string,
	fields: Record<string, string> = {},
): Promise<Element> {
	const { self } = await enter(u, `${jid}/${nick}`);
	assert.deepEqual(codes(self).sort(), [110, 201], self.toString());
	const r = await configure(u, jid, fields);
	assert.equal(r.attrs.type, "result", r.toString());
	return self;
}

const waitMessage = (u: User, mark: number, pred: (el: Element) => boolean, what: string) =>
	u.r.wait((el) => el.is("message") && pred(el), mark, what);

/** Sends a groupchat message and waits for its reflection (§7.4), which it returns. */
async function say(u: User, jid: string, inner: string, id = nextId()): Promise<Element> {
	const mark = u.r.mark();
	u.c.send(`<message to='${jid}' type='groupchat' id='${id}'>${inner}</message>`);
	return waitMessage(
		u,
		mark,
		(el) => el.attrs.id === id || el.attrs.type === "error",
		`echo ${id}`,
	);
}

/** XEP-0313 on the room: every archived message, oldest first. */
async function archive(u: User, jid: string): Promise<Element[]> {
	const qid = nextId();
	const mark = u.r.mark();
	const fin = await iq(u, "set", jid, `<query xmlns='${MAM}' queryid='${qid}'/>`);
	assert.equal(fin.attrs.type, "result", fin.toString());
	return u.r
		.since(mark)
		.filter((el) => el.getChild("result", MAM)?.attrs.queryid === qid)
		.map((el) => el.getChild("result", MAM)?.getChild("forwarded")?.getChild("message") as Element);
}

describe("XEP-0421 occupant identifiers", () => {
	let t: TestServer;
	const open: User[] = [];
	const user = async (name: string, resource = "r") => {
		const u = await connect(t, name, resource);
		open.push(u);
		return u;
	};
	before(async () => {
		t = await startTestServer({ config: baseConfig, users: usersOf(USERS) });
	});
	after(async () => {
		for (const u of open) u.c.end();
		await t?.stop();
	});

	test("§3: the service and every room advertise urn:xmpp:occupant-id:0", async () => {
		const a = await user("alice");
		await room(a, `disco@${SERVICE}`, "alice");
		for (const to of [SERVICE, `disco@${SERVICE}`]) {
			const info = await iq(a, "get", to, `<query xmlns='${DISCO_INFO}'/>`);
			const features = (info.getChild("query", DISCO_INFO)?.getChildren("feature") ?? []).map(
				(f) => f.attrs.var,
			);
			assert.ok(features.includes(OCC), `${to}: ${info.toString()}`);
		}
	});

	test("§4: one id per user on presence, groupchat and private messages; forged ones are all stripped; stable across rejoin", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const jid = `ids@${SERVICE}`;
		const own = await room(a, jid, "alice");
		const [aliceId] = ids(own);
		assert.ok(aliceId, own.toString());
		// bob enters with two forged occupant-ids in his presence: both go.
		const forged = `<occupant-id xmlns='${OCC}' id='forged1'/><occupant-id xmlns='${OCC}' id='${aliceId}'/>`;
		let mark = a.r.mark();
		const { self } = await enter(b, `${jid}/bob`, undefined, forged);
		const seen = await a.r.wait((el) => el.attrs.from === `${jid}/bob`, mark, "bob's presence");
		const bobId = ids(self)[0];
		assert.equal(ids(self).length, 1, self.toString());
		assert.deepEqual(ids(seen), [bobId], seen.toString());
		assert.notEqual(bobId, aliceId);
		assert.notEqual(bobId, "forged1");
		// A groupchat message with forged ids: alice and bob's reflection carry bob's only.
		mark = a.r.mark();
		const echo = await say(b, jid, `<body>hi</body>${forged}`);
		assert.deepEqual(ids(echo), [bobId], echo.toString());
		const got = await waitMessage(a, mark, (el) => el.getChildText("body") === "hi", "hi");
		assert.deepEqual(ids(got), [bobId], got.toString());
		// A private message (§7.5) likewise.
		mark = a.r.mark();
		b.c.send(`<message to='${jid}/alice' type='chat'><body>pm</body>${forged}</message>`);
		const pm = await waitMessage(a, mark, (el) => el.getChildText("body") === "pm", "pm");
		assert.deepEqual(ids(pm), [bobId], pm.toString());
		// bob leaves and comes back under another nickname, from another resource: same id.
		mark = b.r.mark();
		b.c.send(`<presence to='${jid}/bob' type='unavailable'/>`);
		await b.r.wait((el) => el.attrs.type === "unavailable" && isSelf(el), mark, "bob left");
		const b2 = await user("bob", "other");
		const again = await enter(b2, `${jid}/robert`);
		assert.deepEqual(ids(again.self), [bobId], again.self.toString());
		// Another room gives bob another id (not linkable across rooms).
		const c = await user("carol");
		await room(c, `other@${SERVICE}`, "carol");
		const elsewhere = await enter(b2, `other@${SERVICE}/bob`);
		assert.notEqual(ids(elsewhere.self)[0], bobId);
	});
});

describe("XEP-0421 occupant identifiers in storage", () => {
	test("§4: the id survives a restart (the key persists) and is in archive results", async () => {
		const dataDir = mkdtempSync(pathJoin(tmpdir(), "parley-occid-"));
		const jid = `kept@${SERVICE}`;
		try {
			let t = await startTestServer({
				config: baseConfig,
				users: usersOf(["alice", "bob"]),
				storage: "sqlite",
				dataDir,
			});
			let a = await connect(t, "alice");
			const own = await room(a, jid, "alice", {
				"muc#roomconfig_persistentroom": "1",
				"muc#roomconfig_enablearchiving": "1",
			});
			const before = ids(own)[0];
			const echo = await say(a, jid, "<body>kept</body>");
			assert.deepEqual(ids(echo), [before]);
			a.c.end();
			await t.server.stop();
			t = await startTestServer({ config: baseConfig, storage: "sqlite", dataDir });
			try {
				a = await connect(t, "alice");
				const { self } = await enter(a, `${jid}/alice`);
				assert.deepEqual(ids(self), [before], self.toString());
				const [archived] = await archive(a, jid);
				assert.deepEqual(ids(archived as Element), [before], archived?.toString());
				a.c.end();
			} finally {
				await t.server.stop();
			}
		} finally {
			rmSync(dataDir, { recursive: true, force: true });
		}
	});
});
