/**
 * Strangers policy (issue 19) over real sockets: per user allow / hold / bounce for messages,
 * XEP-0249 direct invitations and XEP-0045 §7.8.2 mediated invitations from JIDs not in the
 * roster; held ones listed, released and discarded through the strangers.* commands.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
	strangersDiscard,
	strangersHeld,
	strangersPolicy,
	strangersRelease,
} from "../../src/admin/commands/strangers.ts";
import type { Element } from "../../src/xml/element.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";
import { befriend, connectUser, errorOf, iq, type User } from "../helpers/xmpp-user.ts";

const MUC = "conference.localhost";
const MUC_USER = "http://jabber.org/protocol/muc#user";
let t: TestServer;

before(async () => {
	t = await startTestServer({
		config: {
			auth: { require_encryption: false, allow_plain_without_tls: true },
			components: { [MUC]: { type: "muc" as const } },
		},
		users: ["alice", "bob", "carol", "dave", "eve"].map(
			(u) => [`${u}@localhost`, `${u}-pw`] as [string, string],
		),
	});
	await befriend(t.server, "alice@localhost", "dave@localhost");
	await befriend(t.server, "bob@localhost", "dave@localhost");
});
after(() => t.stop());

async function online(user: string): Promise<User> {
	const u = await connectUser(t.port, user, "r");
	const m = u.r.mark();
	u.c.send("<presence/>");
	await u.r.wait((el) => el.is("presence") && el.attrs.from === u.jid, m, "own presence");
	return u;
}
const as = (actor: string) => ({ core: t.server, actor });
const nextMessage = (
	u: User,
	mark: number,
	what: string,
	pred: (el: Element) => boolean = () => true,
) => u.r.wait((el) => el.is("message") && pred(el), mark, what);
const chat = (from: User, to: string, id: string, body: string) =>
	from.c.send(`<message to='${to}' type='chat' id='${id}'><body>${body}</body></message>`);

async function enter(u: User, occupant: string): Promise<void> {
	const m = u.r.mark();
	u.c.send(`<presence to='${occupant}'><x xmlns='http://jabber.org/protocol/muc'/></presence>`);
	await u.r.wait((el) => el.is("presence") && el.attrs.from === occupant, m, "self presence");
}

test("the default (allow) delivers a stranger's message", async () => {
	const [carol, eve] = [await online("carol"), await online("eve")];
	const m = carol.r.mark();
	chat(eve, "carol@localhost", "a1", "hello stranger");
	assert.equal(
		(await nextMessage(carol, m, "eve's message")).getChildText("body"),
		"hello stranger",
	);
	for (const u of [carol, eve]) u.c.end();
});

test("hold: a stranger's message and mediated invitation wait for review; release delivers, discard drops", async () => {
	const [alice, dave, eve] = [await online("alice"), await online("dave"), await online("eve")];
	assert.deepEqual(
		await strangersPolicy.run(as("alice@localhost"), { jid: "alice@localhost", policy: "hold" }),
		{
			jid: "alice@localhost",
			policy: "hold",
			own: true,
		},
	);
	const m = alice.r.mark();
	chat(eve, "alice@localhost", "h1", "buy now");
	// XEP-0045 §7.8.2: eve invites alice through a room; the room relays it, naming eve.
	await enter(eve, `bait@${MUC}/eve`);
	await iq(
		eve,
		"set",
		`bait@${MUC}`,
		"<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query>",
	);
	eve.c.send(
		`<message to='bait@${MUC}'><x xmlns='${MUC_USER}'><invite to='alice@localhost'/></x></message>`,
	);
	// A contact's message after them arrives first: nothing of eve's was delivered.
	chat(dave, "alice@localhost", "h2", "from a friend");
	const first = await nextMessage(
		alice,
		m,
		"dave's message",
		(el) =>
			el.attrs.id === "h2" ||
			el.attrs.from?.startsWith("eve") === true ||
			el.attrs.from?.startsWith("bait") === true,
	);
	assert.equal(first.attrs.id, "h2", first.toString());
	const held = await waitFor(async () => {
		const l = await strangersHeld.run(as("alice@localhost"), { jid: "alice@localhost" });
		return l.length === 2 ? l : undefined;
	}, "two held");
	const msg = held.find((h) => h.body === "buy now");
	const inv = held.find((h) => h.invite !== undefined);
	assert.equal(msg?.from, "eve@localhost");
	assert.equal(inv?.from, "eve@localhost", "the inviter, not the room");
	assert.equal(inv?.invite, `bait@${MUC}`);
	// Release: delivered now, from eve.
	const m2 = alice.r.mark();
	await strangersRelease.run(as("alice@localhost"), { jid: "alice@localhost", id: msg?.id ?? "" });
	const released = await nextMessage(alice, m2, "released");
	assert.equal(released.getChildText("body"), "buy now");
	assert.equal(released.attrs.from, "eve@localhost/r");
	// Discard: gone; a second time not_found.
	await strangersDiscard.run(as("alice@localhost"), { jid: "alice@localhost", id: inv?.id ?? "" });
	assert.deepEqual(await strangersHeld.run(as("alice@localhost"), { jid: "alice@localhost" }), []);
	await assert.rejects(
		strangersDiscard.run(as("alice@localhost"), { jid: "alice@localhost", id: inv?.id ?? "" }),
		{ code: "not_found" },
	);
	// Another user may not look at alice's; the CLI (an admin) may.
	await assert.rejects(strangersHeld.run(as("bob@localhost"), { jid: "alice@localhost" }), {
		code: "forbidden",
	});
	assert.deepEqual(await strangersHeld.run(as("cli"), { jid: "alice@localhost" }), []);
	await strangersPolicy.run(as("alice@localhost"), { jid: "alice@localhost", policy: "default" });
	for (const u of [alice, dave, eve]) u.c.end();
});

test("bounce: messages and XEP-0249 direct invitations from strangers get policy-violation; contacts and rooms the user is in pass", async () => {
	const [bob, dave, eve] = [await online("bob"), await online("dave"), await online("eve")];
	await strangersPolicy.run(as("cli"), { jid: "bob@localhost", policy: "bounce" });
	const e1 = eve.r.mark();
	chat(eve, "bob@localhost", "b1", "buy now");
	const bounced = await nextMessage(eve, e1, "bounce", (el) => el.attrs.id === "b1");
	assert.equal(errorOf(bounced).condition, "policy-violation");
	const e2 = eve.r.mark();
	eve.c.send(
		`<message to='bob@localhost' id='b2'><x xmlns='jabber:x:conference' jid='bait@${MUC}'/></message>`,
	);
	assert.equal(
		errorOf(await nextMessage(eve, e2, "invite bounce", (el) => el.attrs.id === "b2")).condition,
		"policy-violation",
	);
	// A contact passes.
	const m = bob.r.mark();
	chat(dave, "bob@localhost", "b3", "hi bob");
	assert.equal((await nextMessage(bob, m, "dave")).attrs.id, "b3");
	// A private message in a room bob is in (directed presence, RFC 6121 §4.6) passes.
	await enter(eve, `hall@${MUC}/eve`);
	await iq(
		eve,
		"set",
		`hall@${MUC}`,
		"<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query>",
	);
	await enter(bob, `hall@${MUC}/bob`);
	const m2 = bob.r.mark();
	chat(eve, `hall@${MUC}/bob`, "b4", "psst");
	assert.equal(
		(await nextMessage(bob, m2, "room PM", (el) => el.attrs.id === "b4")).getChildText("body"),
		"psst",
	);
	for (const u of [bob, dave, eve]) u.c.end();
});
