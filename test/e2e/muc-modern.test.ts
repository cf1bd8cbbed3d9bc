/**
 * The group chat modern clients expect (issue 19), end to end over real sockets: XEP-0421
 * occupant ids, XEP-0425 moderation with XEP-0424 retraction and tombstones in the room's
 * XEP-0313 archive, XEP-0045 history and subject (§7.2.13-§7.2.16). slixmpp (its xep_0045,
 * xep_0421 and xep_0425 plugins, the :0 forms) and raw XML (the :1 forms).
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join as pathJoin } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import type { Element } from "../../src/xml/element.ts";
import {
	codes,
	configure,
	connect,
	enter,
	iq,
	isSelf,
	MUC,
	MUC_OWNER,
	MUC_USER,
	nextId,
	type User,
} from "../helpers/muc.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";

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

/** Every XEP-0421 occupant id a stanza carries, at its top level. */
const ids = (el: Element) => el.getChildren("occupant-id", OCC).map((o) => o.attrs.id);

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

const MOD0 = "urn:xmpp:message-moderate:0";
const MOD1 = "urn:xmpp:message-moderate:1";
const RET0 = "urn:xmpp:message-retract:0";
const RET1 = "urn:xmpp:message-retract:1";
const SID = "urn:xmpp:sid:0";
const STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const condition = (el: Element) => el.getChild("error")?.getChildByNs(STANZAS)?.name;
const stanzaIdOf = (el: Element, by: string) =>
	el.getChildren("stanza-id", SID).find((s) => s.attrs.by === by)?.attrs.id;

describe("XEP-0425 moderation and XEP-0424 retraction (the :1 forms, raw XML)", () => {
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

	test("XEP-0425 §3, XEP-0424 §3: moderate:0, moderate:1 and retract:1 on the service and on rooms that archive", async () => {
		const a = await user("alice");
		await room(a, `feat@${SERVICE}`, "alice", { "muc#roomconfig_enablearchiving": "1" });
		for (const to of [SERVICE, `feat@${SERVICE}`]) {
			const info = await iq(a, "get", to, `<query xmlns='${DISCO_INFO}'/>`);
			const features = (info.getChild("query", DISCO_INFO)?.getChildren("feature") ?? []).map(
				(f) => f.attrs.var,
			);
			for (const f of [MOD0, MOD1, RET1]) assert.ok(features.includes(f), `${to} ${f}`);
		}
	});

	test("XEP-0425 §4-§5: a moderator retracts a message; everyone gets the announcement with the moderator's occupant-id and reason; the archive and the history keep a tombstone", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const c = await user("carol");
		const jid = `moderated@${SERVICE}`;
		const own = await room(a, jid, "alice", { "muc#roomconfig_enablearchiving": "1" });
		const aliceId = ids(own)[0];
		await enter(b, `${jid}/bob`);
		await enter(c, `${jid}/carol`);
		const spam = await say(b, jid, "<body>buy now</body>");
		const spamId = stanzaIdOf(spam, jid);
		assert.ok(spamId, spam.toString());
		// bob is a participant: not a moderator (§4: forbidden).
		const denied = await iq(
			b,
			"set",
			jid,
			`<moderate xmlns='${MOD1}' id='${spamId}'><retract xmlns='${RET1}'/></moderate>`,
		);
		assert.equal(condition(denied), "forbidden", denied.toString());
		// An id the room never gave: item-not-found.
		const unknown = await iq(
			a,
			"set",
			jid,
			`<moderate xmlns='${MOD1}' id='nope'><retract xmlns='${RET1}'/></moderate>`,
		);
		assert.equal(condition(unknown), "item-not-found", unknown.toString());
		const mark = c.r.mark();
		const ok = await iq(
			a,
			"set",
			jid,
			`<moderate xmlns='${MOD1}' id='${spamId}'><retract xmlns='${RET1}'/><reason>spam</reason></moderate>`,
		);
		assert.equal(ok.attrs.type, "result", ok.toString());
		const ann = await waitMessage(
			c,
			mark,
			(el) => el.getChild("retract", RET1) !== undefined,
			"announcement",
		);
		assert.equal(ann.attrs.from, jid);
		const r = ann.getChild("retract", RET1) as Element;
		assert.equal(r.attrs.id, spamId);
		assert.equal(r.getChildText("reason"), "spam");
		const moderated = r.getChild("moderated", MOD1) as Element;
		assert.equal(moderated.attrs.by, `${jid}/alice`);
		assert.deepEqual(ids(moderated), [aliceId]);
		// The 0.2 form rides along (slixmpp and older clients read that one).
		const legacy = ann.getChild("apply-to", "urn:xmpp:fasten:0");
		assert.equal(legacy?.attrs.id, spamId);
		assert.ok(legacy?.getChild("moderated", MOD0)?.getChild("retract", RET0));
		// A device of carol's that was away: the archive has the tombstone where the message
		// was, and the announcement after it.
		const later = await user("carol", "phone");
		const all = await archive(later, jid);
		const stone = all.find((m) => stanzaIdOf(m, jid) === spamId) as Element;
		assert.ok(stone, all.map(String).join("\n"));
		assert.equal(stone.getChild("body"), undefined, stone.toString());
		const retracted = stone.getChild("retracted", RET1) as Element;
		assert.ok(retracted?.attrs.stamp, stone.toString());
		assert.equal(retracted.getChild("moderated", MOD1)?.attrs.by, `${jid}/alice`);
		assert.equal(retracted.getChildText("reason"), "spam");
		assert.ok(stone.getChild("moderated", MOD0)?.getChild("retracted", RET0), stone.toString());
		assert.equal(all.indexOf(stone), 0, "in its place");
		assert.ok(all.slice(1).some((m) => m.getChild("retract", RET1)?.attrs.id === spamId));
		// A newcomer's history (§7.2.14) has the tombstone, not the spam.
		const d = await user("dave");
		const { mark: dm } = await enter(d, `${jid}/dave`);
		await d.r.wait((el) => el.getChild("subject") !== undefined, dm, "subject");
		const history = d.r.since(dm).filter((el) => el.is("message"));
		assert.ok(!history.some((m) => m.getChildText("body") === "buy now"), history.join("\n"));
		assert.ok(history.some((m) => m.getChild("retracted", RET1)));
	});

	test("XEP-0045 §7.2.12: entering an archived room says so (170); §10.2.1 switching archiving is announced (170, 171)", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const jid = `logged@${SERVICE}`;
		await room(a, jid, "alice");
		let mb = b.r.mark();
		const plain = await enter(b, `${jid}/bob`);
		assert.ok(!codes(plain.self).includes(170), plain.self.toString());
		mb = b.r.mark();
		assert.equal(
			(await configure(a, jid, { "muc#roomconfig_enablearchiving": "1" })).attrs.type,
			"result",
		);
		const on = await waitMessage(
			b,
			mb,
			(el) => el.attrs.from === jid && codes(el).length > 0,
			"170",
		);
		assert.ok(codes(on).includes(170), on.toString());
		const c = await user("carol");
		const logged = await enter(c, `${jid}/carol`);
		assert.ok(codes(logged.self).includes(170), logged.self.toString());
		mb = b.r.mark();
		assert.equal(
			(await configure(a, jid, { "muc#roomconfig_enablearchiving": "0" })).attrs.type,
			"result",
		);
		const off = await waitMessage(
			b,
			mb,
			(el) => el.attrs.from === jid && codes(el).length > 0,
			"171",
		);
		assert.ok(codes(off).includes(171), off.toString());
	});

	test("XEP-0424 §4: an occupant retracts its own message, never another's; forged moderation marks are stripped", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const c = await user("carol");
		const jid = `retract@${SERVICE}`;
		await room(a, jid, "alice", { "muc#roomconfig_enablearchiving": "1" });
		await enter(b, `${jid}/bob`);
		await enter(c, `${jid}/carol`);
		const oops = await say(b, jid, "<body>oops</body>");
		const oopsId = stanzaIdOf(oops, jid) as string;
		const retraction = `<retract xmlns='${RET1}' id='${oopsId}'/><fallback xmlns='urn:xmpp:fallback:0' for='${RET1}'/><body>retracted</body>`;
		// carol may not retract bob's message.
		const err = await say(c, jid, retraction);
		assert.equal(err.attrs.type, "error", err.toString());
		assert.equal(condition(err), "forbidden");
		// carol's own message with a forged <moderated/>: the mark goes.
		const forged = await say(
			c,
			jid,
			`<body>hi</body><moderated xmlns='${MOD0}' by='${jid}/alice'/><retracted xmlns='${RET1}' stamp='2020-01-01T00:00:00Z'/>`,
		);
		assert.equal(forged.getChild("moderated", MOD0), undefined, forged.toString());
		assert.equal(forged.getChild("retracted", RET1), undefined, forged.toString());
		// bob retracts his own: alice gets the retraction, the archive the tombstone.
		const mark = a.r.mark();
		const echo = await say(b, jid, retraction);
		assert.equal(echo.attrs.type, "groupchat", echo.toString());
		const got = await waitMessage(
			a,
			mark,
			(el) => el.getChild("retract", RET1) !== undefined,
			"retraction",
		);
		assert.equal(got.getChild("retract", RET1)?.attrs.id, oopsId);
		const all = await archive(a, jid);
		const stone = all.find((m) => stanzaIdOf(m, jid) === oopsId) as Element;
		assert.equal(stone.getChild("body"), undefined, stone.toString());
		assert.ok(stone.getChild("retracted", RET1), stone.toString());
		assert.equal(stone.getChild("retracted", RET1)?.getChild("moderated", MOD1), undefined);
	});
});

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";
const hasSlixmpp = spawnSync(PYTHON, ["-c", "import slixmpp"], { stdio: "ignore" }).status === 0;

describe("slixmpp's xep_0045, xep_0421, xep_0424 and xep_0425 (the :0 forms)", {
	skip: hasSlixmpp ? false : "python3-slixmpp is not installed (apt-get install python3-slixmpp)",
}, () => {
	test("XEP-0421 §4 ids, XEP-0425 §4 moderation (forbidden for a participant) and XEP-0424 §4 self-retraction as slixmpp does them", async () => {
		const t = await startTestServer({
			config: { components: { [SERVICE]: { type: "muc" as const } } },
			users: usersOf(["alice", "bob"]),
		});
		try {
			const r = await run(
				PYTHON,
				["test/clients/slixmpp_moderation.py", "localhost", String(t.port), SERVICE],
				{ encoding: "utf8", timeout: 60_000 },
			).catch((e: { stdout?: string; stderr?: string }) => e);
			const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
			assert.deepEqual(
				JSON.parse(line || "{}"),
				{
					ids_agree: true,
					ids_differ: true,
					participant_moderates: "forbidden",
					moderated: {
						id: true,
						by: `slixmod@${SERVICE}/alice`,
						reason: "spam",
						occupant_id: true,
					},
					retracted: { id: true, from: "bob", occupant_id: true },
				},
				`${line}\n${r.stderr ?? ""}`,
			);
		} finally {
			await t.stop();
		}
	});
});

describe("XEP-0045 §7.2.14-§7.2.16 history length and subject", () => {
	let t: TestServer;
	const open: User[] = [];
	const user = async (name: string, resource = "r") => {
		const u = await connect(t, name, resource);
		open.push(u);
		return u;
	};
	before(async () => {
		t = await startTestServer({
			config: {
				...baseConfig,
				// A service-wide cap below the rooms' default length (20).
				components: { [SERVICE]: { type: "muc" as const, max_history: 3 } },
			},
			users: usersOf(USERS),
		});
	});
	after(async () => {
		for (const u of open) u.c.end();
		await t?.stop();
	});

	/** Enters, and returns the history messages and the subject message after them. */
	const join = async (u: User, occupant: string, history = "") => {
		const { mark } = await enter(u, occupant, `<x xmlns='${MUC}'>${history}</x>`);
		const subject = await u.r.wait(
			(el) => el.is("message") && el.getChild("subject") !== undefined,
			mark,
			"subject",
		);
		const got = u.r.since(mark);
		const msgs = got.slice(0, got.indexOf(subject)).filter((el) => el.is("message"));
		return { msgs: msgs.map((m) => m.getChildText("body")), subject };
	};

	test("§7.2.14: the service cap bounds the default and the owner's muc#roomconfig_historylength; §7.2.16 the subject comes last with a <delay/> from the room", async () => {
		const a = await user("alice");
		const jid = `capped@${SERVICE}`;
		await room(a, jid, "alice");
		const set = Date.now();
		await say(a, jid, "<subject>Topic</subject>");
		for (let i = 1; i <= 5; i++) await say(a, jid, `<body>m${i}</body>`);
		const b = await user("bob");
		// Asking for more than the room keeps gets what it keeps: the cap, 3.
		let h = await join(b, `${jid}/bob`, "<history maxstanzas='10'/>");
		assert.deepEqual(h.msgs, ["m3", "m4", "m5"]);
		assert.equal(h.subject.getChildText("subject"), "Topic");
		assert.equal(h.subject.attrs.from, `${jid}/alice`);
		const delay = h.subject.getChild("delay", "urn:xmpp:delay");
		assert.equal(delay?.attrs.from, jid, h.subject.toString());
		assert.ok(Math.abs(Date.parse(delay?.attrs.stamp ?? "") - set) < 60_000, delay?.toString());
		// The owner may not go above the cap (§10.2: not-acceptable)...
		const over = await configure(a, jid, { "muc#roomconfig_historylength": "4" });
		assert.equal(over.attrs.type, "error", over.toString());
		assert.equal(
			over.getChild("error")?.getChildByNs("urn:ietf:params:xml:ns:xmpp-stanzas")?.name,
			"not-acceptable",
		);
		// ...and a shorter history takes effect at once.
		const ok = await configure(a, jid, { "muc#roomconfig_historylength": "1" });
		assert.equal(ok.attrs.type, "result", ok.toString());
		const c = await user("carol");
		h = await join(c, `${jid}/carol`);
		assert.deepEqual(h.msgs, ["m5"]);
		// §7.2.16: no subject set: an empty one, without a delay.
		const d = await user("dave");
		await room(d, `plain@${SERVICE}`, "dave");
		const e = await user("bob", "second");
		h = await join(e, `plain@${SERVICE}/bob`);
		assert.equal(h.subject.getChildText("subject"), "");
		assert.equal(h.subject.getChild("delay", "urn:xmpp:delay"), undefined);
	});
});

const REGISTER = "jabber:iq:register";
const MUC_ADMIN = "http://jabber.org/protocol/muc#admin";

describe("XEP-0045 §7.10 registration and §7.12 reserved nicknames", () => {
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

	const registerNick = (u: User, jid: string, nick: string | null) =>
		iq(
			u,
			"set",
			jid,
			`<query xmlns='${REGISTER}'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field>${nick === null ? "" : `<field var='muc#register_roomnick'><value>${nick}</value></field>`}</x></query>`,
		);
	const reserved = async (u: User, jid: string) => {
		const r = await iq(u, "get", jid, `<query xmlns='${DISCO_INFO}' node='x-roomuser-item'/>`);
		assert.equal(r.attrs.type, "result", r.toString());
		return r.getChild("query", DISCO_INFO)?.getChild("identity")?.attrs.name;
	};
	const errorOf = (el: Element) =>
		el.getChild("error")?.getChildByNs("urn:ietf:params:xml:ns:xmpp-stanzas")?.name;

	test("§7.10: the form, registration (a member with the nickname), §7.12 discovery, a conflict for another JID, <remove/>", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const c = await user("carol");
		const jid = `reg@${SERVICE}`;
		await room(a, jid, "alice");
		const info = await iq(a, "get", jid, `<query xmlns='${DISCO_INFO}'/>`);
		assert.ok(
			info
				.getChild("query", DISCO_INFO)
				?.getChildren("feature")
				.some((f) => f.attrs.var === REGISTER),
		);
		// §7.10 (Example 69): the form with muc#register_roomnick.
		const form = await iq(b, "get", jid, `<query xmlns='${REGISTER}'/>`);
		const fields = (
			form.getChild("query", REGISTER)?.getChild("x", "jabber:x:data")?.getChildren("field") ?? []
		).map((f) => f.attrs.var);
		assert.ok(fields.includes("muc#register_roomnick"), form.toString());
		assert.equal(await reserved(b, jid), undefined);
		// A form without the nickname: not-acceptable (Example 72).
		assert.equal(errorOf(await registerNick(b, jid, null)), "not-acceptable");
		const ok = await registerNick(b, jid, "bobby");
		assert.equal(ok.attrs.type, "result", ok.toString());
		const again = await iq(b, "get", jid, `<query xmlns='${REGISTER}'/>`);
		const q = again.getChild("query", REGISTER) as Element;
		assert.ok(q.getChild("registered"), again.toString());
		assert.equal(q.getChildText("username"), "bobby");
		// §7.12: discovered; §9.5: bob is a member with that nickname.
		assert.equal(await reserved(b, jid), "bobby");
		const members = await iq(
			a,
			"get",
			jid,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='member'/></query>`,
		);
		const bob = members
			.getChild("query", MUC_ADMIN)
			?.getChildren("item")
			.find((i) => i.attrs.jid === "bob@localhost");
		assert.equal(bob?.attrs.nick, "bobby", members.toString());
		// Another JID: conflict, registering or entering (§7.2.9).
		assert.equal(errorOf(await registerNick(c, jid, "bobby")), "conflict");
		const { self } = await enter(c, `${jid}/bobby`);
		assert.equal(self.attrs.type, "error");
		assert.equal(errorOf(self), "conflict");
		// <remove/>: registration cancelled, the nickname free again.
		const removed = await iq(b, "set", jid, `<query xmlns='${REGISTER}'><remove/></query>`);
		assert.equal(removed.attrs.type, "result", removed.toString());
		assert.equal(await reserved(b, jid), undefined);
		assert.equal((await registerNick(c, jid, "bobby")).attrs.type, "result");
	});

	test("§7.12 enforced per room: a registered user enters and stays under its nickname; §7.10 members-only rooms register members only", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const d = await user("dave");
		const jid = `strict@${SERVICE}`;
		await room(a, jid, "alice", { "parley#roomconfig_enforcenick": "1" });
		assert.equal((await registerNick(b, jid, "bobby")).attrs.type, "result");
		let r = await enter(b, `${jid}/bob`);
		assert.equal(errorOf(r.self), "not-acceptable", r.self.toString());
		r = await enter(b, `${jid}/bobby`);
		assert.equal(r.self.attrs.type, undefined, r.self.toString());
		// §7.6: no nickname change away from it.
		const mark = b.r.mark();
		b.c.send(`<presence to='${jid}/other'/>`);
		const err = await b.r.wait((el) => el.attrs.type === "error", mark, "nick change refused");
		assert.equal(errorOf(err), "not-acceptable");
		// Members-only: dave, unaffiliated, may not register.
		const closed = `closed@${SERVICE}`;
		await room(a, closed, "alice", { "muc#roomconfig_membersonly": "1" });
		assert.equal(errorOf(await registerNick(d, closed, "dave")), "registration-required");
	});
});

const REQUEST = "http://jabber.org/protocol/muc#request";

describe("XEP-0045 §7.13 voice requests and §8.6 approval", () => {
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

	const request = `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>${REQUEST}</value></field><field var='muc#role' type='list-single'><value>participant</value></field></x>`;
	const approval = (nick: string, allow: boolean) =>
		`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>${REQUEST}</value></field><field var='muc#role'><value>participant</value></field><field var='muc#roomnick'><value>${nick}</value></field><field var='muc#request_allow'><value>${allow}</value></field></x>`;
	const fieldValue = (form: Element, v: string) =>
		form
			.getChildren("field")
			.find((f) => f.attrs.var === v)
			?.getChildText("value");
	const errorOf = (el: Element) =>
		el.getChild("error")?.getChildByNs("urn:ietf:params:xml:ns:xmpp-stanzas")?.name;

	test("§7.13: a visitor's request reaches every moderator, at most once a minute; §8.6 a moderator grants voice, a visitor cannot", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const c = await user("carol");
		const d = await user("dave");
		const jid = `voice@${SERVICE}`;
		await room(a, jid, "alice", { "muc#roomconfig_moderatedroom": "1" });
		const admin = await iq(
			a,
			"set",
			jid,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='admin' jid='dave@localhost'/></query>`,
		);
		assert.equal(admin.attrs.type, "result", admin.toString());
		await enter(d, `${jid}/dave`);
		const { self } = await enter(b, `${jid}/bob`);
		assert.equal(self.getChild("x", MUC_USER)?.getChild("item")?.attrs.role, "visitor");
		await enter(c, `${jid}/carol`);
		const [ma, md, mb] = [a.r.mark(), d.r.mark(), b.r.mark()];
		b.c.send(`<message to='${jid}' id='ask1'>${request}</message>`);
		const forms: Element[] = [];
		for (const [u, m] of [
			[a, ma],
			[d, md],
		] as const) {
			const msg = await waitMessage(
				u,
				m,
				(el) => el.getChild("x", "jabber:x:data") !== undefined,
				"approval form",
			);
			assert.equal(msg.attrs.from, jid);
			forms.push(msg.getChild("x", "jabber:x:data") as Element);
		}
		for (const f of forms) {
			assert.equal(f.attrs.type, "form");
			assert.equal(fieldValue(f, "FORM_TYPE"), REQUEST);
			assert.equal(fieldValue(f, "muc#roomnick"), "bob");
			assert.equal(fieldValue(f, "muc#jid"), "bob@localhost/r");
			assert.equal(fieldValue(f, "muc#request_allow"), "false");
		}
		// Again at once: the rate limit.
		b.c.send(`<message to='${jid}' id='ask2'>${request}</message>`);
		const limited = await b.r.wait((el) => el.attrs.id === "ask2", mb, "rate limited");
		assert.equal(errorOf(limited), "resource-constraint", limited.toString());
		// carol, a visitor, may not approve.
		const mc = c.r.mark();
		c.c.send(`<message to='${jid}' id='self-approve'>${approval("carol", true)}</message>`);
		const denied = await c.r.wait((el) => el.attrs.id === "self-approve", mc, "denied");
		assert.equal(errorOf(denied), "forbidden");
		// alice approves: bob's new role is broadcast (§8.3) and he speaks.
		const mb2 = b.r.mark();
		a.c.send(`<message to='${jid}'>${approval("bob", true)}</message>`);
		const voiced = await b.r.wait(
			(el) =>
				el.is("presence") &&
				isSelf(el) &&
				el.getChild("x", MUC_USER)?.getChild("item")?.attrs.role === "participant",
			mb2,
			"voice granted",
		);
		assert.equal(
			voiced.getChild("x", MUC_USER)?.getChild("item")?.getChild("actor")?.attrs.nick,
			"alice",
		);
		const echo = await say(b, jid, "<body>thanks</body>");
		assert.equal(echo.attrs.type, "groupchat", echo.toString());
	});

	test("§7.13 flood: 50 requests at once reach the moderators once, the rest get resource-constraint; another room is not affected", async () => {
		const a = await user("alice", "flood");
		const b = await user("bob", "flood");
		const one = `voiceflood1@${SERVICE}`;
		const two = `voiceflood2@${SERVICE}`;
		await room(a, one, "alice", { "muc#roomconfig_moderatedroom": "1" });
		await room(a, two, "alice", { "muc#roomconfig_moderatedroom": "1" });
		await enter(b, `${one}/bob`);
		await enter(b, `${two}/bob`);
		const [ma, mb] = [a.r.mark(), b.r.mark()];
		for (let i = 0; i < 50; i++) b.c.send(`<message to='${one}' id='fl${i}'>${request}</message>`);
		await b.r.wait((el) => el.attrs.id === "fl49", mb, "the last answer");
		const refused = b.r
			.since(mb)
			.filter(
				(el) => el.is("message") && el.attrs.id?.startsWith("fl") && el.attrs.type === "error",
			);
		assert.equal(refused.length, 49);
		assert.ok(refused.every((el) => errorOf(el) === "resource-constraint"));
		// The other room takes bob's request: its form comes after every form of the first.
		b.c.send(`<message to='${two}' id='other'>${request}</message>`);
		await waitMessage(
			a,
			ma,
			(el) => el.attrs.from === two && el.getChild("x", "jabber:x:data") !== undefined,
			"the other room's approval form",
		);
		const forms = a.r
			.since(ma)
			.filter((el) => el.is("message") && el.getChild("x", "jabber:x:data") !== undefined);
		assert.deepEqual(
			forms.map((el) => el.attrs.from),
			[one, two],
		);
	});
});

describe("bad input: oversized muc#roomconfig and muc#request forms", () => {
	let t: TestServer;
	const open: User[] = [];
	before(async () => {
		t = await startTestServer({ config: baseConfig, users: usersOf(USERS) });
	});
	after(async () => {
		for (const u of open) u.c.end();
		await t?.stop();
	});
	const many = (n: number, value = "v") =>
		Array.from({ length: n }, (_, i) => `<field var='x-${i}'><value>${value}</value></field>`).join(
			"",
		);
	const submit = (type: string, inner: string) =>
		`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>${type}</value></field>${inner}</x>`;
	const ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig";

	test("RFC 6120 §8.3.3.13 / XEP-0045 §10.2, §7.13: thousands of fields, values or a huge value get not-acceptable; the room and other rooms go on", async () => {
		const a = await connect(t, "alice");
		const b = await connect(t, "bob");
		open.push(a, b);
		const jid = `bigforms@${SERVICE}`;
		const other = `otherroom@${SERVICE}`;
		await room(a, jid, "alice", { "muc#roomconfig_moderatedroom": "1" });
		await room(a, other, "alice");
		const owner = (body: string) =>
			iq(a, "set", jid, `<query xmlns='${MUC_OWNER}'>${body}</query>`);
		// §10.2: a form with 3000 fields (about 130 kB, under the stanza limit).
		const fields = await owner(submit(ROOMCONFIG, many(3000)));
		assert.equal(condition(fields), "not-acceptable", fields.toString().slice(0, 300));
		// One field with 1000 values.
		const values = await owner(
			submit(
				ROOMCONFIG,
				`<field var='muc#roomconfig_roomowners'>${"<value>x@localhost</value>".repeat(1000)}</field>`,
			),
		);
		assert.equal(condition(values), "not-acceptable", values.toString().slice(0, 300));
		// A value of 100 000 characters in a field the room does not even know.
		const huge = await owner(
			submit(ROOMCONFIG, `<field var='x-unknown'><value>${"a".repeat(100_000)}</value></field>`),
		);
		assert.equal(condition(huge), "not-acceptable", huge.toString().slice(0, 300));
		// The room took none of it and still accepts an ordinary form.
		const ok = await configure(a, jid, { "muc#roomconfig_roomname": "Still here" });
		assert.equal(ok.attrs.type, "result", ok.toString());

		// §7.13: bob, a visitor, sends a muc#request with 3000 fields: refused, no moderator sees it.
		await enter(b, `${jid}/bob`);
		const mb = b.r.mark();
		const ma = a.r.mark();
		b.c.send(`<message to='${jid}' id='big-ask'>${submit(REQUEST, many(3000))}</message>`);
		const refused = await b.r.wait((el) => el.attrs.id === "big-ask", mb, "refused request");
		assert.equal(condition(refused), "not-acceptable", refused.toString().slice(0, 300));
		// An ordinary request afterwards reaches alice (the big one was not counted as asked),
		// and it is the first form she gets.
		b.c.send(
			`<message to='${jid}' id='ask'>${submit(REQUEST, "<field var='muc#role'><value>participant</value></field>")}</message>`,
		);
		const form = await waitMessage(
			a,
			ma,
			(el) => el.getChild("x", "jabber:x:data") !== undefined,
			"approval form",
		);
		assert.equal(form.attrs.from, jid);
		assert.equal(
			a.r.since(ma).filter((el) => el.is("message") && el.getChild("x", "jabber:x:data")).length,
			1,
		);
		// The other room is unaffected.
		const echo = await say(a, other, "<body>fine</body>");
		assert.equal(echo.attrs.type, "groupchat", echo.toString());
	});

	test("RFC 6120 §8.3.3.13: reasons longer than 1024 characters (invitation, kick, moderation, destroy) are not-acceptable and nothing happens", async () => {
		const a = await connect(t, "alice", "why");
		const b = await connect(t, "bob", "why");
		const c = await connect(t, "carol", "why");
		open.push(a, b, c);
		// carol is available, so an invitation to her bare JID reaches her session.
		const mp = c.r.mark();
		c.c.send("<presence/>");
		await c.r.wait((el) => el.is("presence") && el.attrs.from === c.jid, mp, "carol's presence");
		const jid = `reasons@${SERVICE}`;
		await room(a, jid, "alice", { "muc#roomconfig_enablearchiving": "1" });
		await enter(b, `${jid}/bob`);
		const long = `<reason>${"r".repeat(5000)}</reason>`;
		// §7.8.2: an invitation whose reason is a page of spam is not relayed.
		const [ma, mc] = [a.r.mark(), c.r.mark()];
		a.c.send(
			`<message to='${jid}' id='inv-long'><x xmlns='${MUC_USER}'><invite to='carol@localhost'>${long}</invite></x></message>`,
		);
		const inv = await a.r.wait((el) => el.attrs.id === "inv-long", ma, "refused invitation");
		assert.equal(condition(inv), "not-acceptable", inv.toString().slice(0, 300));
		a.c.send(
			`<message to='${jid}' id='inv-ok'><x xmlns='${MUC_USER}'><invite to='carol@localhost'><reason>join us</reason></invite></x></message>`,
		);
		await waitMessage(
			c,
			mc,
			(el) => el.getChild("x", MUC_USER)?.getChild("invite") !== undefined,
			"invitation",
		);
		const invites = c.r.since(mc).filter((el) => el.getChild("x", MUC_USER)?.getChild("invite"));
		assert.equal(invites.length, 1);
		assert.equal(
			invites[0]?.getChild("x", MUC_USER)?.getChild("invite")?.getChildText("reason"),
			"join us",
		);
		// §8.2: a kick with such a reason; bob stays.
		const kick = await iq(
			a,
			"set",
			jid,
			`<query xmlns='${MUC_ADMIN}'><item nick='bob' role='none'>${long}</item></query>`,
		);
		assert.equal(condition(kick), "not-acceptable", kick.toString().slice(0, 300));
		const msg = await say(b, jid, "<body>still here</body>");
		assert.equal(msg.attrs.type, "groupchat", msg.toString());
		// XEP-0425 §4: a moderation with such a reason; the message stays in the archive.
		const sid = stanzaIdOf(msg, jid);
		const mod = await iq(
			a,
			"set",
			jid,
			`<moderate xmlns='${MOD1}' id='${sid}'><retract xmlns='${RET1}'/>${long}</moderate>`,
		);
		assert.equal(condition(mod), "not-acceptable", mod.toString().slice(0, 300));
		const kept = (await archive(a, jid)).find((m) => stanzaIdOf(m, jid) === sid);
		assert.equal(kept?.getChildText("body"), "still here");
		// §10.9: destroying with such a reason; the room goes on.
		const destroy = await iq(
			a,
			"set",
			jid,
			`<query xmlns='${MUC_OWNER}'><destroy>${long}</destroy></query>`,
		);
		assert.equal(condition(destroy), "not-acceptable", destroy.toString().slice(0, 300));
		const again = await say(b, jid, "<body>and here</body>");
		assert.equal(again.attrs.type, "groupchat", again.toString());
	});
});

describe("XEP-0045 §9, §10: affiliation changes of users not in the room", () => {
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

	const affiliate = (u: User, jid: string, who: string, aff: string) =>
		iq(
			u,
			"set",
			jid,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='${aff}' jid='${who}'/></query>`,
		);
	const isChange = (who: string) => (el: Element) =>
		el.is("message") && el.getChild("x", MUC_USER)?.getChild("item")?.attrs.jid === who;

	test("§9.3: a message from the room tells every occupant of a non-anonymous room, moderators only in a semi-anonymous one", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const d = await user("dave");
		const open1 = `nonanon@${SERVICE}`;
		await room(a, open1, "alice", { "muc#roomconfig_whois": "anyone" });
		await enter(b, `${open1}/bob`);
		let mb = b.r.mark();
		assert.equal((await affiliate(a, open1, "carol@localhost", "member")).attrs.type, "result");
		const seen = await b.r.wait(isChange("carol@localhost"), mb, "carol's membership");
		assert.equal(seen.attrs.from, open1);
		assert.equal(seen.getChild("x", MUC_USER)?.getChild("item")?.attrs.affiliation, "member");
		// Semi-anonymous: dave (admin, a moderator) is told; bob (participant) is not.
		const semi = `semianon@${SERVICE}`;
		await room(a, semi, "alice");
		assert.equal((await affiliate(a, semi, "dave@localhost", "admin")).attrs.type, "result");
		await enter(d, `${semi}/dave`);
		await enter(b, `${semi}/bob`);
		mb = b.r.mark();
		const md = d.r.mark();
		assert.equal((await affiliate(a, semi, "carol@localhost", "outcast")).attrs.type, "result");
		const banned = await d.r.wait(isChange("carol@localhost"), md, "carol's ban");
		assert.equal(banned.getChild("x", MUC_USER)?.getChild("item")?.attrs.affiliation, "outcast");
		// §7.8.2: an invitation that makes carol a member of a members-only room is told too.
		const closed = `invited@${SERVICE}`;
		await room(a, closed, "alice", {
			"muc#roomconfig_membersonly": "1",
			"muc#roomconfig_whois": "anyone",
		});
		assert.equal((await affiliate(a, closed, "dave@localhost", "member")).attrs.type, "result");
		await enter(d, `${closed}/dave`);
		const md2 = d.r.mark();
		a.c.send(
			`<message to='${closed}'><x xmlns='${MUC_USER}'><invite to='carol@localhost'/></x></message>`,
		);
		const invited = await d.r.wait(isChange("carol@localhost"), md2, "carol invited");
		assert.equal(invited.getChild("x", MUC_USER)?.getChild("item")?.attrs.affiliation, "member");
		// A round trip through the room after the change: anything for bob is in by then.
		await iq(b, "get", semi, `<query xmlns='${DISCO_INFO}'/>`);
		assert.ok(!b.r.since(mb).some(isChange("carol@localhost")), "bob is not told");
	});
});

describe("XEP-0045 §6.4/§15.5.4 muc#roominfo and XEP-0486 room avatars", () => {
	test("roominfo: description, occupants, lang, contactjid, subject, subjectmod, avatarhash; an owner's vCard with 104, kept across a restart", async () => {
		const dataDir = mkdtempSync(pathJoin(tmpdir(), "parley-roominfo-"));
		const jid = `info@${SERVICE}`;
		// A 1x1 PNG and its SHA-1.
		const png = Buffer.from(
			"89504e470d0a1a0a0000000d4948445200000001000000010806000000" +
				"1f15c4890000000d49444154789c63f8ffff3f0005fe02fea7d60d4800" +
				"00000049454e44ae426082",
			"hex",
		);
		const sha1 = (await import("node:crypto")).createHash("sha1").update(png).digest("hex");
		const infoOf = async (u: User) => {
			const r = await iq(u, "get", jid, `<query xmlns='${DISCO_INFO}'/>`);
			const form = r.getChild("query", DISCO_INFO)?.getChild("x", "jabber:x:data") as Element;
			const out: Record<string, string[]> = {};
			for (const f of form.getChildren("field"))
				out[f.attrs.var as string] = f.getChildren("value").map((v) => v.text());
			return out;
		};
		try {
			let t = await startTestServer({
				config: baseConfig,
				users: usersOf(["alice", "bob"]),
				storage: "sqlite",
				dataDir,
			});
			let a = await connect(t, "alice");
			const b = await connect(t, "bob");
			await room(a, jid, "alice", {
				"muc#roomconfig_persistentroom": "1",
				"muc#roomconfig_roomdesc": "A room about rooms",
				"muc#roomconfig_lang": "en",
				"muc#roomconfig_whois": "anyone",
				"muc#roomconfig_changesubject": "1",
			});
			await say(a, jid, "<subject>Rooms</subject>");
			await enter(b, `${jid}/bob`);
			let info = await infoOf(b);
			assert.deepEqual(info["muc#roominfo_description"], ["A room about rooms"]);
			assert.deepEqual(info["muc#roominfo_occupants"], ["2"]);
			assert.deepEqual(info["muc#roominfo_lang"], ["en"]);
			assert.deepEqual(info["muc#roominfo_contactjid"], ["alice@localhost"]);
			assert.deepEqual(info["muc#roominfo_subject"], ["Rooms"]);
			assert.deepEqual(info["muc#roominfo_subjectmod"], ["1"]);
			assert.equal(info["muc#roominfo_avatarhash"], undefined);
			// XEP-0486: bob (not an owner) may not set the vCard; alice may, and 104 follows.
			const vcard = `<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>${png.toString("base64")}</BINVAL></PHOTO></vCard>`;
			const denied = await iq(b, "set", jid, vcard);
			assert.equal(denied.attrs.type, "error", denied.toString());
			const mb = b.r.mark();
			assert.equal((await iq(a, "set", jid, vcard)).attrs.type, "result");
			const notice = await waitMessage(
				b,
				mb,
				(el) => el.attrs.from === jid && codes(el).includes(104),
				"104",
			);
			assert.ok(notice);
			info = await infoOf(b);
			assert.deepEqual(info["muc#roominfo_avatarhash"], [sha1]);
			const got = await iq(b, "get", jid, "<vCard xmlns='vcard-temp'/>");
			assert.equal(
				got.getChild("vCard", "vcard-temp")?.getChild("PHOTO")?.getChildText("BINVAL"),
				png.toString("base64"),
			);
			// Too large: not-acceptable.
			const big = await iq(
				a,
				"set",
				jid,
				`<vCard xmlns='vcard-temp'><DESC>${"x".repeat(200_000)}</DESC></vCard>`,
			);
			assert.equal(big.attrs.type, "error");
			a.c.end();
			b.c.end();
			await t.server.stop();
			t = await startTestServer({ config: baseConfig, storage: "sqlite", dataDir });
			try {
				a = await connect(t, "alice");
				info = await infoOf(a);
				assert.deepEqual(info["muc#roominfo_avatarhash"], [sha1]);
				assert.deepEqual(info["muc#roominfo_lang"], ["en"]);
				a.c.end();
			} finally {
				await t.server.stop();
			}
		} finally {
			rmSync(dataDir, { recursive: true, force: true });
		}
	});
});

describe("XEP-0045 §15.5.4 muc#roominfo_logs (logs_url)", () => {
	test("the logs_url template names public, open rooms that archive; none for others or without the option", async () => {
		const withLogs = await startTestServer({
			config: {
				...baseConfig,
				components: {
					[SERVICE]: { type: "muc" as const, logs_url: "https://logs.localhost/{service}/{room}/" },
				},
			},
			users: usersOf(["alice"]),
		});
		const without = await startTestServer({ config: baseConfig, users: usersOf(["alice"]) });
		const logsOf = async (u: User, jid: string) => {
			const r = await iq(u, "get", jid, `<query xmlns='${DISCO_INFO}'/>`);
			const form = r.getChild("query", DISCO_INFO)?.getChild("x", "jabber:x:data") as Element;
			return form
				.getChildren("field")
				.find((f) => f.attrs.var === "muc#roominfo_logs")
				?.getChildText("value");
		};
		const a = await connect(withLogs, "alice");
		const b = await connect(without, "alice");
		try {
			const archived = { "muc#roomconfig_enablearchiving": "1", "muc#roomconfig_publicroom": "1" };
			await room(a, `logged@${SERVICE}`, "alice", archived);
			assert.equal(
				await logsOf(a, `logged@${SERVICE}`),
				`https://logs.localhost/${SERVICE}/logged/`,
			);
			// Not archived, or members-only: no logs to point at.
			await room(a, `plain@${SERVICE}`, "alice", {
				"muc#roomconfig_enablearchiving": "0",
				"muc#roomconfig_publicroom": "1",
			});
			assert.equal(await logsOf(a, `plain@${SERVICE}`), undefined);
			await room(a, `closed@${SERVICE}`, "alice", {
				...archived,
				"muc#roomconfig_membersonly": "1",
			});
			assert.equal(await logsOf(a, `closed@${SERVICE}`), undefined);
			// The default (no web logs): none, even for an archived public room.
			await room(b, `logged@${SERVICE}`, "alice", archived);
			assert.equal(await logsOf(b, `logged@${SERVICE}`), undefined);
		} finally {
			a.c.end();
			b.c.end();
			await withLogs.stop();
			await without.stop();
		}
	});
});

describe("destroyed rooms' tombstones (room_tombstone_time)", () => {
	test("§10.9: after its owner destroys a room, another user gets gone creating it; the former owner may; a restart keeps the tombstone", async () => {
		const dataDir = mkdtempSync(pathJoin(tmpdir(), "parley-tomb-"));
		const jid = `public@${SERVICE}`;
		try {
			let t = await startTestServer({
				config: baseConfig,
				users: usersOf(["alice", "bob"]),
				storage: "sqlite",
				dataDir,
			});
			let a = await connect(t, "alice");
			await room(a, jid, "alice", { "muc#roomconfig_persistentroom": "1" });
			const gone = await iq(
				a,
				"set",
				jid,
				`<query xmlns='${MUC_OWNER}'><destroy jid='new@${SERVICE}'><reason>moved</reason></destroy></query>`,
			);
			assert.equal(gone.attrs.type, "result", gone.toString());
			a.c.end();
			await t.server.stop();
			t = await startTestServer({ config: baseConfig, storage: "sqlite", dataDir });
			try {
				const b = await connect(t, "bob");
				const { self } = await enter(b, `${jid}/bob`);
				assert.equal(self.attrs.type, "error", self.toString());
				assert.equal(
					self.getChild("error")?.getChildByNs("urn:ietf:params:xml:ns:xmpp-stanzas")?.name,
					"gone",
				);
				assert.match(
					self.getChild("error")?.getChildText("text", "urn:ietf:params:xml:ns:xmpp-stanzas") ?? "",
					/moved/,
				);
				a = await connect(t, "alice");
				const again = await enter(a, `${jid}/alice`);
				assert.deepEqual(codes(again.self).sort(), [110, 201], again.self.toString());
				a.c.end();
				b.c.end();
			} finally {
				await t.server.stop();
			}
		} finally {
			rmSync(dataDir, { recursive: true, force: true });
		}
	});
});

describe("XEP-0317 hats", () => {
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

	const HATS = "urn:xmpp:hats:0";
	const COMMANDS = "http://jabber.org/protocol/commands";
	const hatsOf = (el: Element) =>
		(el.getChild("hats", HATS)?.getChildren("hat") ?? []).map((h) => [h.attrs.uri, h.attrs.title]);
	const submit = (node: string, sessionid: string, fields: string) =>
		`<command xmlns='${COMMANDS}' node='${node}' sessionid='${sessionid}'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:hats:commands</value></field>${fields}</x></command>`;

	test("§3.1 hats in presence (a client's own stripped); §3.2/§3.3 don and doff by XEP-0050 commands, owners and admins only", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const c = await user("carol");
		const jid = `hats@${SERVICE}`;
		await room(a, jid, "alice");
		const info = await iq(a, "get", jid, `<query xmlns='${DISCO_INFO}'/>`);
		assert.ok(
			info
				.getChild("query", DISCO_INFO)
				?.getChildren("feature")
				.some((f) => f.attrs.var === HATS),
		);
		const items = await iq(
			a,
			"get",
			jid,
			`<query xmlns='http://jabber.org/protocol/disco#items' node='${COMMANDS}'/>`,
		);
		const nodes = items
			.getChild("query")
			?.getChildren("item")
			.map((i) => i.attrs.node);
		assert.deepEqual(nodes, ["urn:xmpp:hats:commands:don", "urn:xmpp:hats:commands:doff"]);
		// bob claims a hat himself: it goes.
		let ma = a.r.mark();
		await enter(
			b,
			`${jid}/bob`,
			undefined,
			`<hats xmlns='${HATS}'><hat uri='urn:x:boss' title='Boss'/></hats>`,
		);
		let seen = await a.r.wait(
			(el) => el.is("presence") && el.attrs.from === `${jid}/bob`,
			ma,
			"bob",
		);
		assert.deepEqual(hatsOf(seen), []);
		await enter(c, `${jid}/carol`);
		// First stage: the form.
		const first = await iq(
			a,
			"set",
			jid,
			`<command xmlns='${COMMANDS}' node='urn:xmpp:hats:commands:don' action='execute'/>`,
		);
		const cmd = first.getChild("command", COMMANDS) as Element;
		assert.equal(cmd.attrs.status, "executing", first.toString());
		const fields = cmd
			.getChild("x", "jabber:x:data")
			?.getChildren("field")
			.map((f) => f.attrs.var);
		assert.ok(fields?.includes("accountjid") && fields.includes("hat"), first.toString());
		// carol, a participant, may not.
		const denied = await iq(
			c,
			"set",
			jid,
			submit(
				"urn:xmpp:hats:commands:don",
				"s",
				"<field var='accountjid'><value>carol@localhost</value></field><field var='hat'><value>urn:x:boss</value></field>",
			),
		);
		assert.equal(denied.attrs.type, "error", denied.toString());
		ma = a.r.mark();
		const done = await iq(
			a,
			"set",
			jid,
			submit(
				"urn:xmpp:hats:commands:don",
				cmd.attrs.sessionid as string,
				"<field var='accountjid'><value>bob@localhost</value></field><field var='hat'><value>urn:x:teacher</value></field><field var='hats#title'><value>Teacher</value></field>",
			),
		);
		assert.equal(done.getChild("command", COMMANDS)?.attrs.status, "completed", done.toString());
		seen = await a.r.wait(
			(el) => el.is("presence") && el.attrs.from === `${jid}/bob`,
			ma,
			"bob's hat",
		);
		assert.deepEqual(hatsOf(seen), [["urn:x:teacher", "Teacher"]]);
		ma = a.r.mark();
		const off = await iq(
			a,
			"set",
			jid,
			submit(
				"urn:xmpp:hats:commands:doff",
				"s2",
				"<field var='accountjid'><value>bob@localhost</value></field><field var='hat'><value>urn:x:teacher</value></field>",
			),
		);
		assert.equal(off.getChild("command", COMMANDS)?.attrs.status, "completed", off.toString());
		seen = await a.r.wait(
			(el) => el.is("presence") && el.attrs.from === `${jid}/bob`,
			ma,
			"hat off",
		);
		assert.deepEqual(hatsOf(seen), []);
	});
});
