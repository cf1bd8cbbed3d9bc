/**
 * Multi-User Chat (XEP-0045) end to end: a real server with a MUC component
 * (`[components."conference.localhost"] type = "muc"`), real sockets, stanzas parsed with the
 * server's parser. Also XEP-0410 self-ping and XEP-0249 direct invitations. Each test names
 * the section it checks.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join as pathJoin } from "node:path";
import { after, before, describe, test } from "node:test";
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
import { RawClient as Raw } from "../helpers/raw.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { StanzaReader } from "../helpers/stanza-reader.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect as xmppConnect } from "../helpers/xmpp-client.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

const MUC_ADMIN = "http://jabber.org/protocol/muc#admin";
const DISCO_INFO = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS = "http://jabber.org/protocol/disco#items";
const STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const SERVICE = "conference.localhost";

const USERS = ["alice", "bob", "carol", "dave", "eve", "frank"];
const baseConfig = {
	auth: { require_encryption: false, allow_plain_without_tls: true },
	components: { [SERVICE]: { type: "muc" as const, admins: ["frank@localhost"] } },
};

const item = (el: Element) => el.getChild("x", MUC_USER)?.getChild("item");
const condition = (el: Element) => el.getChild("error")?.getChildByNs(STANZAS)?.name;

/** Initial presence (RFC 6121 §4.2): messages to the bare JID reach available resources only. */
async function available(u: User): Promise<void> {
	const m = u.r.mark();
	u.c.send("<presence/>");
	await u.r.wait((el) => el.is("presence") && el.attrs.from === u.jid, m, "own presence");
}

/** A round trip through the server: whatever was sent to `u` before it is in by then. */
async function settle(u: User): Promise<void> {
	await iq(u, "get", SERVICE, "<ping xmlns='urn:xmpp:ping'/>");
}

/** Creates an instant room (§10.1.2) owned by `u`, entered as `nick`. */
async function instantRoom(u: User, room: string, nick: string): Promise<void> {
	const { self } = await enter(u, `${room}/${nick}`);
	assert.deepEqual(codes(self).sort(), [110, 201], self.toString());
	const r = await iq(
		u,
		"set",
		room,
		`<query xmlns='${MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query>`,
	);
	assert.equal(r.attrs.type, "result", r.toString());
}

function groupchat(u: User, room: string, body: string, id = nextId()): string {
	u.c.send(`<message to='${room}' type='groupchat' id='${id}'><body>${body}</body></message>`);
	return id;
}

const waitMessage = (u: User, mark: number, pred: (el: Element) => boolean, what: string) =>
	u.r.wait((el) => el.is("message") && pred(el), mark, what);

describe("XEP-0045 Multi-User Chat", () => {
	let t: TestServer;
	const open: User[] = [];
	const user = async (name: string, resource = "r") => {
		const u = await connect(t, name, resource);
		open.push(u);
		return u;
	};

	before(async () => {
		t = await startTestServer({
			config: baseConfig,
			users: USERS.map((u) => [`${u}@localhost`, `${u}-pw`] as [string, string]),
		});
	});
	after(async () => {
		for (const u of open) u.c.end();
		await t?.stop();
	});

	// --- components and discovery (§6) ---

	test("XEP-0030 §4.1: the parent host's disco#items lists the MUC service", async () => {
		const a = await user("alice");
		const r = await iq(a, "get", "localhost", `<query xmlns='${DISCO_ITEMS}'/>`);
		const items = r.getChild("query", DISCO_ITEMS)?.getChildren("item") ?? [];
		assert.ok(
			items.some((i) => i.attrs.jid === SERVICE),
			r.toString(),
		);
	});

	test("RFC 6120 §4.9.3.6: clients cannot log in to a component domain (host-unknown)", async () => {
		const c = await Raw.connect(t.port);
		try {
			c.open(SERVICE);
			await c.waitFor("host-unknown");
			await c.waitClosed();
		} finally {
			c.end();
		}
	});

	test("§6.1, §6.2: the service is a conference/text entity with the muc feature", async () => {
		const a = await user("alice");
		const r = await iq(a, "get", SERVICE, `<query xmlns='${DISCO_INFO}'/>`);
		const q = r.getChild("query", DISCO_INFO) as Element;
		const id = q.getChild("identity") as Element;
		assert.equal(id.attrs.category, "conference");
		assert.equal(id.attrs.type, "text");
		const features = q.getChildren("feature").map((f) => f.attrs.var);
		assert.ok(features.includes(MUC), features.join());
	});

	test("§6.3: disco#items lists public rooms only; §6.4 room features follow its configuration", async () => {
		const a = await user("alice");
		await instantRoom(a, `listed@${SERVICE}`, "a");
		await instantRoom(a, `hidden@${SERVICE}`, "a");
		const c = await configure(a, `hidden@${SERVICE}`, {
			"muc#roomconfig_publicroom": "0",
			"muc#roomconfig_membersonly": "1",
			"muc#roomconfig_moderatedroom": "1",
			"muc#roomconfig_whois": "anyone",
			"muc#roomconfig_persistentroom": "1",
			"muc#roomconfig_passwordprotectedroom": "1",
			"muc#roomconfig_roomsecret": "s3cret",
			"muc#roomconfig_roomname": "The Hidden Room",
		});
		assert.equal(c.attrs.type, "result", c.toString());
		const items = await iq(a, "get", SERVICE, `<query xmlns='${DISCO_ITEMS}'/>`);
		const jids = (items.getChild("query", DISCO_ITEMS)?.getChildren("item") ?? []).map(
			(i) => i.attrs.jid,
		);
		assert.ok(jids.includes(`listed@${SERVICE}`), jids.join());
		assert.ok(!jids.includes(`hidden@${SERVICE}`), jids.join());

		const info = async (room: string) => {
			const r = await iq(a, "get", room, `<query xmlns='${DISCO_INFO}'/>`);
			const q = r.getChild("query", DISCO_INFO) as Element;
			return { q, features: q.getChildren("feature").map((f) => f.attrs.var) };
		};
		const open = await info(`listed@${SERVICE}`);
		for (const f of [
			MUC,
			"muc_temporary",
			"muc_open",
			"muc_public",
			"muc_semianonymous",
			"muc_unmoderated",
			"muc_unsecured",
		])
			assert.ok(open.features.includes(f), `${f} in ${open.features.join()}`);
		const hidden = await info(`hidden@${SERVICE}`);
		for (const f of [
			"muc_persistent",
			"muc_membersonly",
			"muc_hidden",
			"muc_nonanonymous",
			"muc_moderated",
			"muc_passwordprotected",
		])
			assert.ok(hidden.features.includes(f), `${f} in ${hidden.features.join()}`);
		assert.equal(hidden.q.getChild("identity")?.attrs.name, "The Hidden Room");
		// §6.4 Example 10: muc#roominfo.
		const form = hidden.q.getChild("x", "jabber:x:data") as Element;
		const occupants = form
			.getChildren("field")
			.find((f) => f.attrs.var === "muc#roominfo_occupants");
		assert.equal(occupants?.getChildText("value"), "1");
		// §6.4: a room that does not exist.
		const none = await iq(a, "get", `nosuchroom@${SERVICE}`, `<query xmlns='${DISCO_INFO}'/>`);
		assert.equal(condition(none), "item-not-found");
	});

	// --- entering (§7.2) ---

	test("§7.2.1, §10.1.1: the groupchat 1.0 protocol (no <x/>) creates an unlocked instant room", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const { self } = await enter(a, `gc10@${SERVICE}/alice`, "");
		assert.deepEqual(codes(self).sort(), [110, 201]);
		// §5.1.2, §10.1.1: the creator is the owner and a moderator.
		assert.equal(item(self)?.attrs.affiliation, "owner");
		assert.equal(item(self)?.attrs.role, "moderator");
		const entered = await enter(b, `gc10@${SERVICE}/bob`);
		assert.deepEqual(codes(entered.self), [110]);
	});

	test("§10.1.3, §7.2.11: a reserved room is locked (201) until configured; others get item-not-found", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const room = `reserved@${SERVICE}`;
		const { self } = await enter(a, `${room}/owner`);
		assert.deepEqual(codes(self).sort(), [110, 201]);
		const refused = await enter(b, `${room}/bob`);
		assert.equal(refused.self.attrs.type, "error");
		assert.equal(condition(refused.self), "item-not-found");
		// §10.1.3: the owner asks for the form...
		const form = await iq(a, "get", room, `<query xmlns='${MUC_OWNER}'/>`);
		const x = form.getChild("query", MUC_OWNER)?.getChild("x", "jabber:x:data") as Element;
		assert.equal(x.attrs.type, "form");
		const vars = x.getChildren("field").map((f) => f.attrs.var);
		for (const v of [
			"muc#roomconfig_roomname",
			"muc#roomconfig_roomdesc",
			"muc#roomconfig_persistentroom",
			"muc#roomconfig_publicroom",
			"muc#roomconfig_membersonly",
			"muc#roomconfig_moderatedroom",
			"muc#roomconfig_passwordprotectedroom",
			"muc#roomconfig_roomsecret",
			"muc#roomconfig_maxusers",
			"muc#roomconfig_whois",
			"muc#roomconfig_changesubject",
			"muc#roomconfig_allowinvites",
			"muc#roomconfig_allowpm",
			"muc#roomconfig_historylength",
			"muc#maxhistoryfetch",
		])
			assert.ok(vars.includes(v), v);
		// ...and submits it: the room opens.
		const set = await configure(a, room, { "muc#roomconfig_roomname": "Reserved" });
		assert.equal(set.attrs.type, "result", set.toString());
		const entered = await enter(b, `${room}/bob`);
		assert.deepEqual(codes(entered.self), [110]);
		// A room the owner configured is no longer locked: 104 was not sent to bob before he came.
	});

	test("§10.1.3: cancelling the initial configuration destroys the room", async () => {
		const a = await user("alice");
		const room = `cancelled@${SERVICE}`;
		await enter(a, `${room}/a`);
		const mark = a.r.mark();
		const r = await iq(
			a,
			"set",
			room,
			`<query xmlns='${MUC_OWNER}'><x xmlns='jabber:x:data' type='cancel'/></query>`,
		);
		assert.equal(r.attrs.type, "result");
		await a.r.wait(
			(el) => el.is("presence") && el.attrs.type === "unavailable" && el.attrs.from === `${room}/a`,
			mark,
			"unavailable presence of the destroyed room",
		);
		const none = await iq(a, "get", room, `<query xmlns='${DISCO_INFO}'/>`);
		assert.equal(condition(none), "item-not-found");
	});

	test("§7.2.3: occupants' presences come first, then the self-presence; §7.2.5 real JIDs only to moderators", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const c = await user("carol");
		const room = `order@${SERVICE}`;
		await instantRoom(a, room, "alice");
		await enter(b, `${room}/bob`);
		const markA = a.r.mark();
		const { before, self } = await enter(c, `${room}/carol`);
		const froms = before.filter((el) => el.is("presence")).map((el) => el.attrs.from);
		assert.deepEqual(froms.sort(), [`${room}/alice`, `${room}/bob`]);
		// Semi-anonymous (the default): carol, a participant, does not see real JIDs...
		for (const p of before.filter((el) => el.is("presence")))
			assert.equal(item(p)?.attrs.jid, undefined, p.toString());
		// ...but sees her own (§7.2.3 self-presence), and no 100 (not non-anonymous).
		assert.equal(item(self)?.attrs.jid, c.jid);
		assert.deepEqual(codes(self), [110]);
		// alice, a moderator, sees carol's real JID.
		const seen = await a.r.wait(
			(el) => el.is("presence") && el.attrs.from === `${room}/carol`,
			markA,
			"carol's presence at alice",
		);
		assert.equal(item(seen)?.attrs.jid, c.jid);
		assert.equal(item(seen)?.attrs.role, "participant");
		assert.equal(item(seen)?.attrs.affiliation, "none");
	});

	test("§7.2.4: a non-anonymous room says so with 100 and shows real JIDs to everyone", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const room = `nonanon@${SERVICE}`;
		await instantRoom(a, room, "alice");
		await configure(a, room, { "muc#roomconfig_whois": "anyone" });
		const { self, before } = await enter(b, `${room}/bob`);
		assert.deepEqual(codes(self).sort(), [100, 110]);
		const alice = before.find((el) => el.attrs.from === `${room}/alice`) as Element;
		assert.equal(item(alice)?.attrs.jid, a.jid);
	});

	test("§7.2.9: a nickname in use by someone else is a conflict", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const room = `conflict@${SERVICE}`;
		await instantRoom(a, room, "nick");
		const { self } = await enter(b, `${room}/nick`);
		assert.equal(self.attrs.type, "error");
		assert.equal(condition(self), "conflict");
	});

	test("Prosody's multi-session nicks: two resources of one user share a nickname", async () => {
		const a1 = await user("alice", "one");
		const a2 = await user("alice", "two");
		const b = await user("bob");
		const room = `multi@${SERVICE}`;
		await instantRoom(a1, room, "alice");
		await enter(b, `${room}/bob`);
		const { self } = await enter(a2, `${room}/alice`);
		assert.deepEqual(codes(self), [110]);
		// §7.4: both sessions get the room's messages.
		const m1 = a1.r.mark();
		const m2 = a2.r.mark();
		const id = groupchat(b, room, "to both");
		for (const [u, m] of [
			[a1, m1],
			[a2, m2],
		] as const)
			await waitMessage(u, m, (el) => el.attrs.id === id, "message on each session");
		// One session leaving does not take the nickname out of the room.
		const markB = b.r.mark();
		a2.c.send(`<presence to='${room}/alice' type='unavailable'/>`);
		await a2.r.wait(
			(el) => el.is("presence") && el.attrs.type === "unavailable" && isSelf(el),
			0,
			"alice/two's own exit",
		);
		await settle(b);
		assert.ok(
			!b.r
				.since(markB)
				.some((el) => el.attrs.from === `${room}/alice` && el.attrs.type === "unavailable"),
		);
	});

	test("status codes on every self-presence of a user joined from two resources: 201, 100, 110, 303 (§7.2.3, §7.2.4, §7.6, §7.7, §10.1.1, §10.9)", async () => {
		const a1 = await user("alice", "one");
		const a2 = await user("alice", "two");
		const b = await user("bob");
		const room = `codes@${SERVICE}`;
		const both = [a1, a2] as const;
		const fromAlice = (nick: string, type?: string) => (el: Element) =>
			el.is("presence") && el.attrs.from === `${room}/${nick}` && el.attrs.type === type;
		// §10.1.1: the creator's self-presence has 201 and 110 (instantRoom checks it).
		await instantRoom(a1, room, "alice");
		await configure(a1, room, { "muc#roomconfig_whois": "anyone" });
		// §7.2.4: the second session enters a non-anonymous room: 100 and 110, no 201.
		let m1 = a1.r.mark();
		const second = await enter(a2, `${room}/alice`);
		assert.deepEqual(codes(second.self), [100, 110], second.self.toString());
		assert.equal(item(second.self)?.attrs.jid, a2.jid);
		// The first session learns that its occupant's presence changed: self-presence, 110.
		const told = await a1.r.wait(fromAlice("alice"), m1, "alice/two's entry at alice/one");
		assert.deepEqual(codes(told), [110]);
		// bob's entry: 100 and 110 for him, his presence without 110 on both of alice's sessions.
		const marks = both.map((u) => u.r.mark());
		const bob = await enter(b, `${room}/bob`);
		assert.deepEqual(codes(bob.self), [100, 110]);
		for (const [i, u] of both.entries()) {
			const p = await u.r.wait(
				(el) => el.is("presence") && el.attrs.from === `${room}/bob`,
				marks[i] as number,
				"bob at alice",
			);
			assert.deepEqual(codes(p), []);
		}
		// §7.7: a presence change from one session reaches both with 110.
		const m2 = both.map((u) => u.r.mark());
		a2.c.send(`<presence to='${room}/alice'><show>away</show></presence>`);
		for (const [i, u] of both.entries()) {
			const p = await u.r.wait(
				(el) => fromAlice("alice")(el) && el.getChildText("show") === "away",
				m2[i] as number,
				"away, to self",
			);
			assert.deepEqual(codes(p), [110]);
		}
		// §7.6: a nick change moves both sessions: 303 with 110, then the new nick with 110.
		const m3 = both.map((u) => u.r.mark());
		a1.c.send(`<presence to='${room}/alicia'/>`);
		for (const [i, u] of both.entries()) {
			const old = await u.r.wait(fromAlice("alice", "unavailable"), m3[i] as number, "303");
			assert.deepEqual(codes(old), [110, 303]);
			const now = await u.r.wait(fromAlice("alicia"), m3[i] as number, "new nick");
			assert.deepEqual(codes(now), [110]);
		}
		// §10.9: destroying the room tells each session, with 110.
		const m4 = both.map((u) => u.r.mark());
		m1 = b.r.mark();
		await iq(a1, "set", room, `<query xmlns='${MUC_OWNER}'><destroy/></query>`);
		for (const [i, u] of both.entries()) {
			const p = await u.r.wait(fromAlice("alicia", "unavailable"), m4[i] as number, "destroy");
			assert.deepEqual(codes(p), [110]);
			assert.ok(p.getChild("x", MUC_USER)?.getChild("destroy"));
		}
		const pb = await b.r.wait(
			(el) => el.attrs.from === `${room}/bob` && el.attrs.type === "unavailable",
			m1,
			"destroy at bob",
		);
		assert.deepEqual(codes(pb), [110]);
		// §10.9: "only one presence stanza of type unavailable to each occupant": bob did not
		// get alicia's.
		await settle(b);
		assert.ok(!b.r.since(m1).some(fromAlice("alicia", "unavailable")));
	});

	test("§7.2.7 members-only (registration-required), §7.2.8 banned (forbidden), §7.2.6 password (not-authorized), §7.2.10 full (service-unavailable)", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const c = await user("carol");
		const members = `membersonly@${SERVICE}`;
		await instantRoom(a, members, "alice");
		await configure(a, members, { "muc#roomconfig_membersonly": "1" });
		let r = await enter(b, `${members}/bob`);
		assert.equal(condition(r.self), "registration-required");
		assert.equal(r.self.getChild("error")?.attrs.type, "auth");

		const banned = `banned@${SERVICE}`;
		await instantRoom(a, banned, "alice");
		const ban = await iq(
			a,
			"set",
			banned,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='outcast' jid='bob@localhost'/></query>`,
		);
		assert.equal(ban.attrs.type, "result", ban.toString());
		r = await enter(b, `${banned}/bob`);
		assert.equal(condition(r.self), "forbidden");

		const secret = `secret@${SERVICE}`;
		await instantRoom(a, secret, "alice");
		await configure(a, secret, {
			"muc#roomconfig_passwordprotectedroom": "1",
			"muc#roomconfig_roomsecret": "pw",
		});
		r = await enter(b, `${secret}/bob`);
		assert.equal(condition(r.self), "not-authorized");
		r = await enter(b, `${secret}/bob`, `<x xmlns='${MUC}'><password>wrong</password></x>`);
		assert.equal(condition(r.self), "not-authorized");
		r = await enter(b, `${secret}/bob`, `<x xmlns='${MUC}'><password>pw</password></x>`);
		assert.deepEqual(codes(r.self), [110]);

		const full = `full@${SERVICE}`;
		await instantRoom(a, full, "alice");
		await configure(a, full, { "muc#roomconfig_maxusers": "2" });
		r = await enter(b, `${full}/bob`);
		assert.deepEqual(codes(r.self), [110]);
		r = await enter(c, `${full}/carol`);
		assert.equal(condition(r.self), "service-unavailable");
	});

	test("§7.2.14, §7.2.15: history with delays from the room's JID and every limit; §7.2.16 subject after it", async () => {
		const a = await user("alice");
		const room = `history@${SERVICE}`;
		await instantRoom(a, room, "alice");
		const m = a.r.mark();
		a.c.send(`<message to='${room}' type='groupchat'><subject>The topic</subject></message>`);
		await waitMessage(a, m, (el) => el.getChild("subject") !== undefined, "subject reflection");
		const ids: string[] = [];
		for (let i = 1; i <= 5; i++) ids.push(groupchat(a, room, `message ${i}`));
		await waitMessage(a, m, (el) => el.attrs.id === ids[4], "the last message");

		const history = async (u: User, nick: string, h: string) => {
			const { mark } = await enter(u, `${room}/${nick}`, `<x xmlns='${MUC}'>${h}</x>`);
			const subject = await u.r.wait(
				(el) => el.is("message") && el.getChild("subject") !== undefined,
				mark,
				"subject",
			);
			const got = u.r.since(mark);
			const msgs = got.slice(0, got.indexOf(subject)).filter((el) => el.is("message"));
			u.c.send(`<presence to='${room}/${nick}' type='unavailable'/>`);
			await u.r.wait((el) => el.attrs.type === "unavailable" && isSelf(el), mark, "exit");
			return { msgs, subject };
		};
		const b = await user("bob");
		// No <history/>: the room's default (20) covers all five.
		let h = await history(b, "b1", "");
		assert.deepEqual(
			h.msgs.map((el) => el.getChildText("body")),
			["message 1", "message 2", "message 3", "message 4", "message 5"],
		);
		const delay = h.msgs[0]?.getChild("delay", "urn:xmpp:delay");
		assert.equal(delay?.attrs.from, room);
		assert.match(delay?.attrs.stamp ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
		assert.equal(h.msgs[0]?.attrs.from, `${room}/alice`);
		// §7.2.16: the subject comes after the history, from the occupant who set it.
		assert.equal(h.subject.getChildText("subject"), "The topic");
		assert.equal(h.subject.attrs.from, `${room}/alice`);

		h = await history(b, "b2", "<history maxstanzas='2'/>");
		assert.deepEqual(
			h.msgs.map((el) => el.getChildText("body")),
			["message 4", "message 5"],
		);
		// maxchars counts whole stanzas: room for one stanza, not two.
		const one = Math.floor((h.msgs[1]?.toString().length ?? 0) * 1.5);
		h = await history(b, "b3", "<history maxchars='0'/>");
		assert.deepEqual(h.msgs, []);
		h = await history(b, "b4", `<history maxchars='${one}'/>`);
		assert.deepEqual(
			h.msgs.map((el) => el.getChildText("body")),
			["message 5"],
		);
		const future = new Date(Date.now() + 3_600_000).toISOString();
		h = await history(b, "b5", `<history since='${future}'/>`);
		assert.deepEqual(h.msgs, []);
		const past = new Date(Date.now() - 3_600_000).toISOString();
		h = await history(b, "b6", `<history since='${past}' maxstanzas='3'/>`);
		assert.equal(h.msgs.length, 3);
		h = await history(b, "b7", "<history seconds='3600'/>");
		assert.equal(h.msgs.length, 5);
	});

	test("§7.2.16: a room without a subject sends an empty one", async () => {
		const a = await user("alice");
		const room = `nosubject@${SERVICE}`;
		const { mark } = await enter(a, `${room}/alice`, "");
		const s = await a.r.wait((el) => el.getChild("subject") !== undefined, mark, "subject");
		assert.equal(s.getChildText("subject"), "");
		assert.equal(s.getChild("body"), undefined);
	});

	// --- messages (§7.4, §7.5, §8.1) ---

	test("§7.4: groupchat messages go to every occupant, the sender's reflection keeps its id", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const c = await user("carol");
		const room = `talk@${SERVICE}`;
		await instantRoom(a, room, "alice");
		await enter(b, `${room}/bob`);
		await enter(c, `${room}/carol`);
		const marks = [a, b, c].map((u) => u.r.mark());
		const id = groupchat(b, room, "hello room");
		for (const [i, u] of [a, b, c].entries()) {
			const m = await waitMessage(u, marks[i] as number, (el) => el.attrs.id === id, "message");
			assert.equal(m.attrs.from, `${room}/bob`);
			assert.equal(m.attrs.type, "groupchat");
			assert.equal(m.attrs.to, u.jid);
			assert.equal(m.getChildText("body"), "hello room");
		}
		// §7.4: not an occupant -> not-acceptable.
		const d = await user("dave");
		const markD = d.r.mark();
		const id2 = groupchat(d, room, "let me in");
		const err = await waitMessage(d, markD, (el) => el.attrs.id === id2, "error");
		assert.equal(condition(err), "not-acceptable");
	});

	test("§7.4, §5.1.1: visitors in a moderated room cannot speak (forbidden); §8.3 voice granted, §8.4 revoked", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const room = `moderated@${SERVICE}`;
		await instantRoom(a, room, "alice");
		await configure(a, room, { "muc#roomconfig_moderatedroom": "1" });
		const { self } = await enter(b, `${room}/bob`);
		assert.equal(item(self)?.attrs.role, "visitor");
		let mark = b.r.mark();
		let id = groupchat(b, room, "may I?");
		let err = await waitMessage(b, mark, (el) => el.attrs.id === id, "error");
		assert.equal(condition(err), "forbidden");
		// §8.3: a moderator grants voice; everyone sees the new role.
		mark = b.r.mark();
		const grant = await iq(
			a,
			"set",
			room,
			`<query xmlns='${MUC_ADMIN}'><item nick='bob' role='participant'/></query>`,
		);
		assert.equal(grant.attrs.type, "result", grant.toString());
		const p = await b.r.wait(
			(el) => el.is("presence") && isSelf(el) && item(el)?.attrs.role === "participant",
			mark,
			"bob's new role",
		);
		assert.ok(p);
		mark = b.r.mark();
		id = groupchat(b, room, "now I can");
		await waitMessage(
			b,
			mark,
			(el) => el.attrs.id === id && el.attrs.type === "groupchat",
			"reflection",
		);
		// §8.4: and revokes it.
		const revoke = await iq(
			a,
			"set",
			room,
			`<query xmlns='${MUC_ADMIN}'><item nick='bob' role='visitor'/></query>`,
		);
		assert.equal(revoke.attrs.type, "result");
		mark = b.r.mark();
		id = groupchat(b, room, "again?");
		err = await waitMessage(b, mark, (el) => el.attrs.id === id, "error");
		assert.equal(condition(err), "forbidden");
	});

	test("§8.1: moderators change the subject; participants only when the room allows it; too long is refused", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const room = `subject@${SERVICE}`;
		await instantRoom(a, room, "alice");
		await enter(b, `${room}/bob`);
		let mark = b.r.mark();
		b.c.send(`<message to='${room}' type='groupchat' id='s1'><subject>mine</subject></message>`);
		let err = await waitMessage(b, mark, (el) => el.attrs.id === "s1", "error");
		assert.equal(condition(err), "forbidden");
		await configure(a, room, { "muc#roomconfig_changesubject": "1" });
		mark = b.r.mark();
		const markA = a.r.mark();
		b.c.send(`<message to='${room}' type='groupchat' id='s2'><subject>ours</subject></message>`);
		const s = await waitMessage(a, markA, (el) => el.attrs.id === "s2", "subject at alice");
		assert.equal(s.attrs.from, `${room}/bob`);
		assert.equal(s.getChildText("subject"), "ours");
		mark = b.r.mark();
		b.c.send(
			`<message to='${room}' type='groupchat' id='s3'><subject>${"x".repeat(2000)}</subject></message>`,
		);
		err = await waitMessage(b, mark, (el) => el.attrs.id === "s3", "error");
		assert.equal(condition(err), "not-acceptable");
	});

	test("§7.5: private messages between occupants, marked with muc#user; errors for the rest", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const room = `pm@${SERVICE}`;
		await instantRoom(a, room, "alice");
		await enter(b, `${room}/bob`);
		let mark = b.r.mark();
		a.c.send(`<message to='${room}/bob' type='chat' id='pm1'><body>psst</body></message>`);
		const pm = await waitMessage(b, mark, (el) => el.attrs.id === "pm1", "private message");
		assert.equal(pm.attrs.from, `${room}/alice`);
		assert.equal(pm.attrs.type, "chat");
		assert.ok(pm.getChild("x", MUC_USER));
		mark = a.r.mark();
		a.c.send(`<message to='${room}/bob' type='groupchat' id='pm2'><body>no</body></message>`);
		let err = await waitMessage(a, mark, (el) => el.attrs.id === "pm2", "error");
		assert.equal(condition(err), "bad-request");
		a.c.send(`<message to='${room}/nobody' type='chat' id='pm3'><body>?</body></message>`);
		err = await waitMessage(a, mark, (el) => el.attrs.id === "pm3", "error");
		assert.equal(condition(err), "item-not-found");
		const d = await user("dave");
		mark = d.r.mark();
		d.c.send(`<message to='${room}/bob' type='chat' id='pm4'><body>hi</body></message>`);
		err = await waitMessage(d, mark, (el) => el.attrs.id === "pm4", "error");
		assert.equal(condition(err), "not-acceptable");
		// muc#roomconfig_allowpm = none.
		await configure(a, room, { "muc#roomconfig_allowpm": "none" });
		mark = b.r.mark();
		b.c.send(`<message to='${room}/alice' type='chat' id='pm5'><body>hi</body></message>`);
		err = await waitMessage(b, mark, (el) => el.attrs.id === "pm5", "error");
		assert.equal(condition(err), "forbidden");
	});

	test("§7.5 (Prosody): an IQ to an occupant reaches its real JID and the answer comes back", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const room = `iqpass@${SERVICE}`;
		await instantRoom(a, room, "alice");
		await enter(b, `${room}/bob`);
		const mark = b.r.mark();
		const done = iq(a, "get", `${room}/bob`, "<query xmlns='jabber:iq:version'/>");
		const got = await b.r.wait(
			(el) => el.is("iq") && el.attrs.type === "get",
			mark,
			"forwarded IQ at bob",
		);
		assert.equal(got.attrs.from, `${room}/alice`);
		b.c.send(
			`<iq type='result' id='${got.attrs.id}' to='${got.attrs.from}'><query xmlns='jabber:iq:version'><name>bobclient</name></query></iq>`,
		);
		const answer = await done;
		assert.equal(answer.attrs.type, "result");
		assert.equal(answer.attrs.from, `${room}/bob`);
		assert.equal(answer.getChild("query", "jabber:iq:version")?.getChildText("name"), "bobclient");
	});

	// --- nick change, presence, exit (§7.6, §7.7, §7.14) ---

	test("§7.6 nick change (303), §7.7 presence change, §7.14 exit (110 unavailable)", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const room = `changes@${SERVICE}`;
		await instantRoom(a, room, "alice");
		await enter(b, `${room}/bob`);
		let markA = a.r.mark();
		let markB = b.r.mark();
		b.c.send(`<presence to='${room}/robert'/>`);
		const gone = await a.r.wait(
			(el) => el.attrs.from === `${room}/bob` && el.attrs.type === "unavailable",
			markA,
			"303 at alice",
		);
		assert.deepEqual(codes(gone), [303]);
		assert.equal(item(gone)?.attrs.nick, "robert");
		await a.r.wait(
			(el) => el.attrs.from === `${room}/robert` && el.attrs.type === undefined,
			markA,
			"robert's presence",
		);
		const selfGone = await b.r.wait(
			(el) => el.attrs.from === `${room}/bob` && el.attrs.type === "unavailable",
			markB,
			"303 at bob",
		);
		assert.deepEqual(codes(selfGone).sort(), [110, 303]);
		// §7.6: taking a nick in use is a conflict.
		markB = b.r.mark();
		b.c.send(`<presence to='${room}/alice'/>`);
		const conflict = await b.r.wait(
			(el) => el.is("presence") && el.attrs.type === "error",
			markB,
			"conflict",
		);
		assert.equal(condition(conflict), "conflict");
		// §7.7: a status change is broadcast.
		markA = a.r.mark();
		b.c.send(`<presence to='${room}/robert'><show>away</show><status>lunch</status></presence>`);
		const away = await a.r.wait(
			(el) => el.attrs.from === `${room}/robert` && el.getChildText("show") === "away",
			markA,
			"away",
		);
		assert.equal(away.getChildText("status"), "lunch");
		// §7.14: exit.
		markA = a.r.mark();
		markB = b.r.mark();
		b.c.send(`<presence to='${room}/robert' type='unavailable'><status>bye</status></presence>`);
		const exit = await b.r.wait(
			(el) => el.attrs.type === "unavailable" && isSelf(el),
			markB,
			"self exit",
		);
		assert.equal(item(exit)?.attrs.role, "none");
		const seen = await a.r.wait(
			(el) => el.attrs.from === `${room}/robert` && el.attrs.type === "unavailable",
			markA,
			"exit at alice",
		);
		assert.equal(seen.getChildText("status"), "bye");
		assert.deepEqual(codes(seen), []);
	});

	test("§7.14: a client that disconnects leaves its rooms (no ghosts), with or without initial presence", async () => {
		const a = await user("alice");
		const room = `ghosts@${SERVICE}`;
		await instantRoom(a, room, "alice");
		for (const [name, isAvailable] of [
			["bob", false],
			["carol", true],
		] as const) {
			const u = await connect(t, name, "ghost");
			if (isAvailable) await available(u);
			await enter(u, `${room}/${name}`);
			const mark = a.r.mark();
			u.c.end();
			await a.r.wait(
				(el) => el.attrs.from === `${room}/${name}` && el.attrs.type === "unavailable",
				mark,
				`${name} leaves when the connection ends`,
			);
		}
		// The nicknames are free again.
		const b = await user("bob");
		const { self } = await enter(b, `${room}/bob`);
		assert.deepEqual(codes(self), [110]);
	});

	// --- moderation (§8, §9) ---

	test("§8.2 kick (307) and its permissions", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const c = await user("carol");
		const room = `kick@${SERVICE}`;
		await instantRoom(a, room, "alice");
		await enter(b, `${room}/bob`);
		await enter(c, `${room}/carol`);
		// §8.2: a participant cannot kick.
		const no = await iq(
			b,
			"set",
			room,
			`<query xmlns='${MUC_ADMIN}'><item nick='carol' role='none'/></query>`,
		);
		assert.equal(condition(no), "forbidden");
		const markB = b.r.mark();
		const markC = c.r.mark();
		const kick = await iq(
			a,
			"set",
			room,
			`<query xmlns='${MUC_ADMIN}'><item nick='carol' role='none'><reason>spam</reason></item></query>`,
		);
		assert.equal(kick.attrs.type, "result", kick.toString());
		const selfKick = await c.r.wait(
			(el) => el.attrs.type === "unavailable" && isSelf(el),
			markC,
			"carol kicked",
		);
		assert.deepEqual(codes(selfKick).sort(), [110, 307]);
		assert.equal(item(selfKick)?.getChildText("reason"), "spam");
		assert.equal(item(selfKick)?.getChild("actor")?.attrs.nick, "alice");
		const seen = await b.r.wait(
			(el) => el.attrs.from === `${room}/carol` && el.attrs.type === "unavailable",
			markB,
			"kick seen by bob",
		);
		assert.deepEqual(codes(seen), [307]);
		// §8.2: the owner cannot be kicked (not-allowed), not even by an admin.
		await iq(
			a,
			"set",
			room,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='admin' jid='bob@localhost'/></query>`,
		);
		const notAllowed = await iq(
			b,
			"set",
			room,
			`<query xmlns='${MUC_ADMIN}'><item nick='alice' role='none'/></query>`,
		);
		assert.equal(condition(notAllowed), "not-allowed");
	});

	test("§9.1 ban (301), §9.3/§9.5 member list, §9.4 revoked membership of a members-only room (321), 322 on becoming members-only", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const c = await user("carol");
		const d = await user("dave");
		const room = `ban@${SERVICE}`;
		await instantRoom(a, room, "alice");
		await enter(b, `${room}/bob`);
		await enter(c, `${room}/carol`);
		await enter(d, `${room}/dave`);
		// §9.1: ban by JID.
		let mark = b.r.mark();
		const ban = await iq(
			a,
			"set",
			room,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='outcast' jid='bob@localhost'><reason>bye</reason></item></query>`,
		);
		assert.equal(ban.attrs.type, "result");
		const banned = await b.r.wait(
			(el) => el.attrs.type === "unavailable" && isSelf(el),
			mark,
			"ban",
		);
		assert.deepEqual(codes(banned).sort(), [110, 301]);
		assert.equal(item(banned)?.attrs.affiliation, "outcast");
		// §9.2: the ban list.
		const list = await iq(
			a,
			"get",
			room,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='outcast'/></query>`,
		);
		const outcasts = list.getChild("query", MUC_ADMIN)?.getChildren("item") ?? [];
		assert.deepEqual(
			outcasts.map((i) => i.attrs.jid),
			["bob@localhost"],
		);
		// Not for participants.
		const denied = await iq(
			c,
			"get",
			room,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='outcast'/></query>`,
		);
		assert.equal(condition(denied), "forbidden");
		// §9.3: membership, broadcast as a presence with the new affiliation.
		mark = d.r.mark();
		await iq(
			a,
			"set",
			room,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='member' jid='carol@localhost'/></query>`,
		);
		const member = await d.r.wait(
			(el) => el.attrs.from === `${room}/carol` && item(el)?.attrs.affiliation === "member",
			mark,
			"carol is a member",
		);
		assert.ok(member);
		const members = await iq(
			a,
			"get",
			room,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='member'/></query>`,
		);
		assert.deepEqual(
			(members.getChild("query", MUC_ADMIN)?.getChildren("item") ?? []).map((i) => i.attrs.jid),
			["carol@localhost"],
		);
		// 322: the room becomes members-only; dave (no affiliation) is removed, carol stays.
		mark = d.r.mark();
		const markC = c.r.mark();
		await configure(a, room, { "muc#roomconfig_membersonly": "1" });
		const removed = await d.r.wait(
			(el) => el.attrs.type === "unavailable" && isSelf(el),
			mark,
			"dave removed",
		);
		assert.deepEqual(codes(removed).sort(), [110, 322]);
		// §10.2.1: the others learn that the configuration changed (104).
		const notice = await waitMessage(c, markC, (el) => codes(el).includes(104), "104");
		assert.equal(notice.attrs.from, room);
		// §9.4: carol loses membership of the members-only room: 321.
		const m2 = c.r.mark();
		await iq(
			a,
			"set",
			room,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='none' jid='carol@localhost'/></query>`,
		);
		const out = await c.r.wait((el) => el.attrs.type === "unavailable" && isSelf(el), m2, "321");
		assert.deepEqual(codes(out).sort(), [110, 321]);
	});

	test("§5.2.3, §10.3-§10.8: admins cannot touch owners or admins; owners can; the last owner stays", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const room = `owners@${SERVICE}`;
		await instantRoom(a, room, "alice");
		const admin = await iq(
			a,
			"set",
			room,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='admin' jid='bob@localhost'/></query>`,
		);
		assert.equal(admin.attrs.type, "result");
		// bob (admin) cannot make someone an owner or demote alice.
		let r = await iq(
			b,
			"set",
			room,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='owner' jid='carol@localhost'/></query>`,
		);
		assert.equal(condition(r), "not-allowed");
		r = await iq(
			b,
			"set",
			room,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='member' jid='alice@localhost'/></query>`,
		);
		assert.equal(condition(r), "not-allowed");
		// But he manages members.
		r = await iq(
			b,
			"set",
			room,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='member' jid='carol@localhost'/></query>`,
		);
		assert.equal(r.attrs.type, "result");
		// And admins cannot configure (§10.2: owners only).
		r = await iq(b, "get", room, `<query xmlns='${MUC_OWNER}'/>`);
		assert.equal(condition(r), "forbidden");
		// The only owner cannot step down (§10.5: conflict).
		r = await iq(
			a,
			"set",
			room,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='admin' jid='alice@localhost'/></query>`,
		);
		assert.equal(condition(r), "conflict");
		// §10.3: a second owner, then the first may step down.
		r = await iq(
			a,
			"set",
			room,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='owner' jid='bob@localhost'/></query>`,
		);
		assert.equal(r.attrs.type, "result");
		const owners = await iq(
			b,
			"get",
			room,
			`<query xmlns='${MUC_ADMIN}'><item affiliation='owner'/></query>`,
		);
		assert.deepEqual(
			(owners.getChild("query", MUC_ADMIN)?.getChildren("item") ?? [])
				.map((i) => i.attrs.jid)
				.sort(),
			["alice@localhost", "bob@localhost"],
		);
		// Service admins (the component's `admins`) are owners of every room.
		const f = await user("frank");
		r = await iq(f, "get", room, `<query xmlns='${MUC_OWNER}'/>`);
		assert.equal(r.attrs.type, "result", r.toString());
	});

	// --- owner (§10) ---

	test("§10.2.1: configuration changes are announced (104, 172, 173)", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const room = `notices@${SERVICE}`;
		await instantRoom(a, room, "alice");
		await enter(b, `${room}/bob`);
		let mark = b.r.mark();
		await configure(a, room, { "muc#roomconfig_roomname": "New name" });
		let n = await waitMessage(b, mark, (el) => el.attrs.from === room, "104");
		assert.deepEqual(codes(n), [104]);
		mark = b.r.mark();
		await configure(a, room, { "muc#roomconfig_whois": "anyone" });
		n = await waitMessage(b, mark, (el) => el.attrs.from === room, "172");
		assert.deepEqual(codes(n), [172]);
		mark = b.r.mark();
		await configure(a, room, { "muc#roomconfig_whois": "moderators" });
		n = await waitMessage(b, mark, (el) => el.attrs.from === room, "173");
		assert.deepEqual(codes(n), [173]);
		// §10.2: a bad value is not-acceptable.
		const bad = await configure(a, room, { "muc#roomconfig_maxusers": "lots" });
		assert.equal(condition(bad), "not-acceptable");
	});

	test("§10.9: destroying a room tells every occupant, with the alternate venue", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const room = `doomed@${SERVICE}`;
		await instantRoom(a, room, "alice");
		await enter(b, `${room}/bob`);
		const denied = await iq(b, "set", room, `<query xmlns='${MUC_OWNER}'><destroy/></query>`);
		assert.equal(condition(denied), "forbidden");
		const mark = b.r.mark();
		const r = await iq(
			a,
			"set",
			room,
			`<query xmlns='${MUC_OWNER}'><destroy jid='other@${SERVICE}'><reason>moving</reason></destroy></query>`,
		);
		assert.equal(r.attrs.type, "result");
		const p = await b.r.wait(
			(el) => el.attrs.from === `${room}/bob` && el.attrs.type === "unavailable",
			mark,
			"destroy",
		);
		const destroy = p.getChild("x", MUC_USER)?.getChild("destroy");
		// It is self-presence: 110 (§16.6, context "any room presence"), as on any exit (§7.14).
		assert.deepEqual(codes(p), [110]);
		assert.equal(destroy?.attrs.jid, `other@${SERVICE}`);
		assert.equal(destroy?.getChildText("reason"), "moving");
		const gone = await iq(a, "get", room, `<query xmlns='${DISCO_INFO}'/>`);
		assert.equal(condition(gone), "item-not-found");
	});

	// --- invitations (§7.8) ---

	test("§7.8.2 mediated invitation and decline; XEP-0249 direct invitation routes as a message", async () => {
		const a = await user("alice");
		const b = await user("bob");
		await available(b);
		const room = `invite@${SERVICE}`;
		await instantRoom(a, room, "alice");
		await configure(a, room, {
			"muc#roomconfig_membersonly": "1",
			"muc#roomconfig_passwordprotectedroom": "1",
			"muc#roomconfig_roomsecret": "pw",
		});
		let mark = b.r.mark();
		a.c.send(
			`<message to='${room}'><x xmlns='${MUC_USER}'><invite to='bob@localhost'><reason>join us</reason></invite></x></message>`,
		);
		const inv = await waitMessage(b, mark, (el) => el.attrs.from === room, "invitation");
		const invite = inv.getChild("x", MUC_USER)?.getChild("invite");
		assert.equal(invite?.attrs.from, a.jid);
		assert.equal(invite?.getChildText("reason"), "join us");
		assert.equal(inv.getChild("x", MUC_USER)?.getChildText("password"), "pw");
		// An admin's invitation to a members-only room makes the invitee a member.
		const { self } = await enter(b, `${room}/bob`, `<x xmlns='${MUC}'><password>pw</password></x>`);
		assert.equal(item(self)?.attrs.affiliation, "member");
		// Decline.
		const c = await user("carol");
		await available(c);
		await available(a);
		const markA = a.r.mark();
		c.c.send(
			`<message to='${room}'><x xmlns='${MUC_USER}'><decline to='alice@localhost'><reason>busy</reason></decline></x></message>`,
		);
		const dec = await waitMessage(a, markA, (el) => el.attrs.from === room, "decline");
		assert.equal(dec.getChild("x", MUC_USER)?.getChild("decline")?.attrs.from, "carol@localhost");
		// Occupants without the right cannot invite (allowinvites off, not a moderator).
		mark = b.r.mark();
		b.c.send(
			`<message to='${room}' id='inv2'><x xmlns='${MUC_USER}'><invite to='carol@localhost'/></x></message>`,
		);
		const err = await waitMessage(b, mark, (el) => el.attrs.id === "inv2", "error");
		assert.equal(condition(err), "forbidden");
		// XEP-0249: a direct invitation is a message from user to user.
		const markC = c.r.mark();
		a.c.send(
			`<message to='carol@localhost' id='direct'><x xmlns='jabber:x:conference' jid='${room}' password='pw' reason='hi'/></message>`,
		);
		const direct = await waitMessage(
			c,
			markC,
			(el) => el.attrs.id === "direct",
			"direct invitation",
		);
		assert.equal(direct.getChild("x", "jabber:x:conference")?.attrs.jid, room);
		assert.equal(direct.attrs.from, a.jid);
	});

	// --- XEP-0410 ---

	test("XEP-0410 §3: a self-ping is answered by the room: result if joined, not-acceptable if not", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const room = `selfping@${SERVICE}`;
		await instantRoom(a, room, "alice");
		let r = await iq(a, "get", `${room}/alice`, "<ping xmlns='urn:xmpp:ping'/>");
		assert.equal(r.attrs.type, "result", r.toString());
		assert.equal(r.attrs.from, `${room}/alice`);
		r = await iq(b, "get", `${room}/alice`, "<ping xmlns='urn:xmpp:ping'/>");
		assert.equal(condition(r), "not-acceptable");
		r = await iq(b, "get", `${room}/bob`, "<ping xmlns='urn:xmpp:ping'/>");
		assert.equal(condition(r), "not-acceptable");
		// A ping to another occupant is that occupant's business: it is passed to its client.
		await enter(b, `${room}/bob`);
		const mark = a.r.mark();
		b.c.send(
			`<iq type='get' id='other-ping' to='${room}/alice'><ping xmlns='urn:xmpp:ping'/></iq>`,
		);
		const passed = await a.r.wait(
			(el) => el.is("iq") && el.attrs.type === "get" && el.attrs.from === `${room}/bob`,
			mark,
			"the ping passed to alice",
		);
		assert.ok(passed.getChild("ping", "urn:xmpp:ping"));
		// XEP-0410 §4: the room advertises the optimisation.
		const info = await iq(a, "get", room, `<query xmlns='${DISCO_INFO}'/>`);
		assert.ok(
			info
				.getChild("query", DISCO_INFO)
				?.getChildren("feature")
				.some((f) => f.attrs.var === "http://jabber.org/protocol/muc#self-ping-optimization"),
		);
	});

	test("@xmpp/client: two xmpp.js clients enter a room and talk (§7.2, §7.4)", async () => {
		const room = `xmppjs@${SERVICE}`;
		const alice = await xmppConnect(`xmpp://127.0.0.1:${t.port}`, "alice", "alice-pw", {
			resource: "js",
		});
		const bob = await xmppConnect(`xmpps://localhost:${t.tlsPort}`, "bob", "bob-pw", {
			resource: "js",
		});
		try {
			const { xml } = await import("@xmpp/client");
			const selfPresence = (stanzas: typeof alice.stanzas, nick: string) =>
				stanzas.find(
					(s) =>
						s.is("presence") &&
						s.attrs.from === `${room}/${nick}` &&
						// Status codes are sorted; 110 comes first unless 100 is there (not here).
						s.getChild("x", MUC_USER)?.getChild("status")?.attrs.code === "110",
				);
			await alice.xmpp.send(xml("presence", { to: `${room}/alice` }));
			await waitFor(() => selfPresence(alice.stanzas, "alice"), "alice in the room");
			await bob.xmpp.send(xml("presence", { to: `${room}/bob` }, xml("x", { xmlns: MUC })));
			await waitFor(() => selfPresence(bob.stanzas, "bob"), "bob in the room");
			await bob.xmpp.send(
				xml("message", { to: room, type: "groupchat", id: "js1" }, xml("body", {}, "from xmpp.js")),
			);
			for (const c of [alice, bob]) {
				const m = await waitFor(
					() => c.stanzas.find((s) => s.is("message") && s.attrs.id === "js1"),
					"the groupchat message",
				);
				assert.equal(m.attrs.from, `${room}/bob`);
				assert.equal(m.getChildText("body"), "from xmpp.js");
			}
		} finally {
			await alice.xmpp.stop();
			await bob.xmpp.stop();
		}
	});

	// --- bad input ---

	test("bad input: no nickname or only spaces (jid-malformed), a long nickname (not-acceptable), an empty resource (jid-malformed)", async () => {
		const a = await user("alice");
		let mark = a.r.mark();
		a.c.send(`<presence to='badnick@${SERVICE}'><x xmlns='${MUC}'/></presence>`);
		let err = await a.r.wait((el) => el.attrs.type === "error", mark, "no nick");
		assert.equal(condition(err), "jid-malformed");
		mark = a.r.mark();
		a.c.send(`<presence to='badnick@${SERVICE}/   '><x xmlns='${MUC}'/></presence>`);
		err = await a.r.wait((el) => el.attrs.type === "error", mark, "spaces");
		assert.equal(condition(err), "jid-malformed");
		mark = a.r.mark();
		a.c.send(`<presence to='badnick@${SERVICE}/${"n".repeat(65)}'><x xmlns='${MUC}'/></presence>`);
		err = await a.r.wait((el) => el.attrs.type === "error", mark, "long nick");
		assert.equal(condition(err), "not-acceptable");
		mark = a.r.mark();
		a.c.send(`<presence to='badnick@${SERVICE}/'><x xmlns='${MUC}'/></presence>`);
		err = await a.r.wait((el) => el.attrs.type === "error", mark, "empty resource");
		assert.equal(condition(err), "jid-malformed");
		// None of these created the room.
		const r = await iq(a, "get", `badnick@${SERVICE}`, `<query xmlns='${DISCO_INFO}'/>`);
		assert.equal(condition(r), "item-not-found");
	});

	test("RFC 6120 §10.4/§8.3.3.16 and RFC 6121 §8.5.2.1.1: groupchat where there is no MUC", async () => {
		const a = await user("alice");
		let mark = a.r.mark();
		a.c.send("<message to='room@nomuc.example' type='groupchat' id='r1'><body>x</body></message>");
		let err = await waitMessage(a, mark, (el) => el.attrs.id === "r1", "error");
		assert.equal(condition(err), "remote-server-not-found");
		mark = a.r.mark();
		a.c.send("<message to='bob@localhost' type='groupchat' id='r2'><body>x</body></message>");
		err = await waitMessage(a, mark, (el) => el.attrs.id === "r2", "error");
		assert.equal(condition(err), "service-unavailable");
		// A message to a room that does not exist (§7.2.12 nonexistent room).
		mark = a.r.mark();
		a.c.send(`<message to='nowhere@${SERVICE}' type='groupchat' id='r3'><body>x</body></message>`);
		err = await waitMessage(a, mark, (el) => el.attrs.id === "r3", "error");
		assert.equal(condition(err), "item-not-found");
	});
});

describe("XEP-0045 room creation policy and limits", () => {
	test("room_creation = local: users of other hosts get not-allowed; max_rooms_per_user: policy-violation", async () => {
		const t = await startTestServer({
			config: {
				auth: baseConfig.auth,
				hosts: { localhost: {}, "other.example": {} },
				components: {
					[SERVICE]: { type: "muc", room_creation: "local", max_rooms_per_user: 1 },
				},
			},
			users: [
				["alice@localhost", "alice-pw"],
				["olga@other.example", "olga-pw"],
			],
		});
		const users: User[] = [];
		try {
			const a = await connect(t, "alice");
			users.push(a);
			const oc = await login(t.port, "olga", "olga-pw", {
				host: "other.example",
				resource: "r",
				mechanism: "PLAIN",
			});
			const o: User = { c: oc, r: new StanzaReader(oc), jid: "olga@other.example/r" };
			users.push(o);
			let r = await enter(o, `olgas@${SERVICE}/olga`);
			assert.equal(condition(r.self), "not-allowed");
			r = await enter(a, `first@${SERVICE}/alice`);
			assert.deepEqual(codes(r.self).sort(), [110, 201]);
			r = await enter(a, `second@${SERVICE}/alice`);
			assert.equal(condition(r.self), "policy-violation");
			// Existing rooms stay open to everyone.
			r = await enter(o, `first@${SERVICE}/olga`);
			assert.equal(condition(r.self), "item-not-found"); // still locked (§7.2.11)
		} finally {
			for (const u of users) u.c.end();
			await t.stop();
		}
	});

	test("room_creation = admins: only the component's admins create rooms", async () => {
		const t = await startTestServer({
			config: {
				auth: baseConfig.auth,
				components: {
					[SERVICE]: { type: "muc", room_creation: "admins", admins: ["frank@localhost"] },
				},
			},
			users: [
				["alice@localhost", "alice-pw"],
				["frank@localhost", "frank-pw"],
			],
		});
		const users: User[] = [];
		try {
			const a = await connect(t, "alice");
			const f = await connect(t, "frank");
			users.push(a, f);
			let r = await enter(a, `r@${SERVICE}/alice`);
			assert.equal(condition(r.self), "not-allowed");
			r = await enter(f, `r@${SERVICE}/frank`, "");
			assert.deepEqual(codes(r.self).sort(), [110, 201]);
			r = await enter(a, `r@${SERVICE}/alice`);
			assert.deepEqual(codes(r.self), [110]);
		} finally {
			for (const u of users) u.c.end();
			await t.stop();
		}
	});
});

describe("XEP-0045 persistent rooms", () => {
	test("§10.2 persistentroom: configuration, affiliations and subject survive a restart", async () => {
		const dataDir = mkdtempSync(pathJoin(tmpdir(), "parley-muc-"));
		const users = [
			["alice@localhost", "alice-pw"],
			["bob@localhost", "bob-pw"],
		] as [string, string][];
		const room = `keep@${SERVICE}`;
		try {
			let t = await startTestServer({ config: baseConfig, users, storage: "sqlite", dataDir });
			let a = await connect(t, "alice");
			await instantRoom(a, room, "alice");
			await configure(a, room, {
				"muc#roomconfig_persistentroom": "1",
				"muc#roomconfig_roomname": "Kept",
				"muc#roomconfig_membersonly": "1",
			});
			await iq(
				a,
				"set",
				room,
				`<query xmlns='${MUC_ADMIN}'><item affiliation='member' jid='bob@localhost'/></query>`,
			);
			const m = a.r.mark();
			a.c.send(
				`<message to='${room}' type='groupchat' id='subj'><subject>Kept topic</subject></message>`,
			);
			await waitMessage(a, m, (el) => el.attrs.id === "subj", "subject");
			await settle(a);
			a.c.end();
			await t.server.stop();

			// A second server on the same data directory (users are in the same SQLite file).
			t = await startTestServer({ config: baseConfig, storage: "sqlite", dataDir });
			try {
				const b = await connect(t, "bob");
				const info = await iq(b, "get", room, `<query xmlns='${DISCO_INFO}'/>`);
				const q = info.getChild("query", DISCO_INFO) as Element;
				assert.equal(q.getChild("identity")?.attrs.name, "Kept");
				const features = q.getChildren("feature").map((f) => f.attrs.var);
				assert.ok(features.includes("muc_persistent"));
				assert.ok(features.includes("muc_membersonly"));
				// bob is still a member of the members-only room, and the subject is kept.
				const { self, mark } = await enter(b, `${room}/bob`);
				assert.equal(item(self)?.attrs.affiliation, "member");
				const s = await b.r.wait((el) => el.getChild("subject") !== undefined, mark, "subject");
				assert.equal(s.getChildText("subject"), "Kept topic");
				a = await connect(t, "alice");
				const r = await iq(a, "get", room, `<query xmlns='${MUC_OWNER}'/>`);
				assert.equal(r.attrs.type, "result", "alice is still the owner");
				b.c.end();
				a.c.end();
			} finally {
				await t.server.stop();
			}
		} finally {
			rmSync(dataDir, { recursive: true, force: true });
		}
	});
});
