/**
 * Blocking Command (XEP-0191 v1.3): list, block, unblock, unblock-all, pushes to interested
 * resources, and the effects on stanzas in both directions, over raw sockets.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { RawClient } from "../helpers/raw.ts";
import { iq, message, online as rawOnline, sync } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

let t: TestServer;

before(async () => {
	t = await startTestServer({
		config: {
			auth: { require_encryption: false, allow_plain_without_tls: true },
			hosts: { localhost: {}, "example.net": {} },
		},
		users: [
			["alice@localhost", "pw-alice"],
			["bob@localhost", "pw-bob"],
			["carol@localhost", "pw-carol"],
			["eve@localhost", "pw-eve"],
			["dave@example.net", "pw-dave"],
			["fay@localhost", "pw-fay"],
			["gus@localhost", "pw-gus"],
			["romeo@localhost", "pw-romeo"],
			["juliet@localhost", "pw-juliet"],
			["nurse@localhost", "pw-nurse"],
		],
	});
});
after(() => t.stop());

const online = (user: string, resource: string, host = "localhost"): Promise<RawClient> =>
	rawOnline(t.port, user, resource, { host });

const block = (id: string, ...jids: string[]) =>
	`<iq type='set' id='${id}'><block xmlns='urn:xmpp:blocking'>${jids.map((j) => `<item jid='${j}'/>`).join("")}</block></iq>`;
const unblock = (id: string, ...jids: string[]) =>
	`<iq type='set' id='${id}'><unblock xmlns='urn:xmpp:blocking'>${jids.map((j) => `<item jid='${j}'/>`).join("")}</unblock></iq>`;
const list = (id: string) =>
	`<iq type='get' id='${id}'><blocklist xmlns='urn:xmpp:blocking'/></iq>`;

test("the server advertises urn:xmpp:blocking (XEP-0191 §3.1)", async () => {
	const c = await online("carol", "disco");
	const r = await iq(
		c,
		"d",
		"<iq type='get' to='localhost' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
	);
	assert.match(r, /<feature var="urn:xmpp:blocking"\/>/);
	c.end();
});

test("block, list, pushes to interested resources, unblock, unblock all (XEP-0191 §3.2-§3.5)", async () => {
	const a1 = await online("alice", "one");
	const a2 = await online("alice", "two");
	const a3 = await online("alice", "three"); // never asks for the list
	// §3.2: empty list.
	assert.match(await iq(a1, "l0", list("l0")), /<blocklist xmlns="urn:xmpp:blocking"\/>/);
	await iq(a2, "l0b", list("l0b"));
	const m2 = a2.received.length;
	const m3 = a3.received.length;
	// §3.3: block answers with a result and pushes to every resource that asked for the list.
	const r = await iq(a1, "b1", block("b1", "eve@localhost", "Spam.Example"));
	assert.match(r, /type="result"/);
	const push = await a2.waitFor(/<iq[^>]*type="set"[\s\S]*?<\/iq>/, m2);
	assert.match(
		push,
		/<block xmlns="urn:xmpp:blocking"><item jid="eve@localhost"\/><item jid="spam.example"\/><\/block>/,
	);
	assert.match(push, /to="alice@localhost\/two"/);
	const l = await iq(a1, "l1", list("l1"));
	assert.match(l, /<item jid="eve@localhost"\/>/);
	assert.match(l, /<item jid="spam.example"\/>/, "stored normalised");
	// §3.4: unblock one, pushed.
	const m2b = a2.received.length;
	assert.match(await iq(a1, "u1", unblock("u1", "eve@localhost")), /type="result"/);
	const push2 = await a2.waitFor(/<unblock[\s\S]*?<\/unblock>/, m2b);
	assert.match(push2, /<unblock xmlns="urn:xmpp:blocking"><item jid="eve@localhost"\/><\/unblock>/);
	assert.doesNotMatch(await iq(a1, "l2", list("l2")), /eve@localhost/);
	// §3.5: an empty <unblock/> clears the list and pushes an empty unblock.
	const m2c = a2.received.length;
	assert.match(await iq(a1, "u2", unblock("u2")), /type="result"/);
	await a2.waitFor(/<unblock xmlns="urn:xmpp:blocking"\/>/, m2c);
	assert.match(await iq(a1, "l3", list("l3")), /<blocklist xmlns="urn:xmpp:blocking"\/>/);
	// The resource that never asked for the list got no pushes.
	assert.doesNotMatch(a3.received.slice(m3), /urn:xmpp:blocking/);
	for (const c of [a1, a2, a3]) c.end();
});

test("bad block requests: bad-request without items, jid-malformed for a bad JID (XEP-0191 §3.3, RFC 6120 §8.3.3)", async () => {
	const c = await online("carol", "bad");
	const e1 = await iq(c, "x1", "<iq type='set' id='x1'><block xmlns='urn:xmpp:blocking'/></iq>");
	assert.match(e1, /<bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
	const e2 = await iq(c, "x2", block("x2", "a@b@c"));
	assert.match(e2, /<jid-malformed xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
	assert.match(
		await iq(c, "x3", list("x3")),
		/<blocklist xmlns="urn:xmpp:blocking"\/>/,
		"nothing stored",
	);
	c.end();
});

test("effects of a block in both directions (XEP-0191 §3.3)", async () => {
	const alice = await online("alice", "eff");
	const bob = await online("bob", "eff");
	const carol = await online("carol", "eff");
	const bm = bob.received.length;
	await iq(alice, "b", block("b", "bob@localhost"));
	// §3.3: unavailable presence goes to the contact "only if the contact is allowed to receive
	// presence notifications from the user": bob is not subscribed to alice, so he learns
	// nothing of her resources (the subscribed case is the next test).
	assert.doesNotMatch(
		await sync(carol, bob, "bob@localhost/eff", bm),
		/<presence[^>]*from="alice@localhost/,
	);

	const am = alice.received.length;
	const bm2 = bob.received.length;
	// Inbound message: not delivered, service-unavailable to the sender.
	bob.send("<message to='alice@localhost/eff' type='chat' id='in1'><body>x</body></message>");
	const e1 = await message(bob, "in1", bm2);
	assert.match(e1, /type="error"/);
	assert.match(e1, /<service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
	// Inbound IQ get: service-unavailable.
	const e2 = await iq(
		bob,
		"in2",
		"<iq type='get' to='alice@localhost/eff' id='in2'><ping xmlns='urn:xmpp:ping'/></iq>",
	);
	assert.match(e2, /<service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
	// Inbound presence: dropped without an error.
	const bm3 = bob.received.length;
	bob.send("<presence to='alice@localhost/eff' id='in3'/>");
	const aliceText = await sync(carol, alice, "alice@localhost/eff", am);
	assert.doesNotMatch(aliceText, /id="in1"|id="in2"|id="in3"|from="bob@localhost/);
	const bobText = await sync(carol, bob, "bob@localhost/eff", bm3);
	assert.doesNotMatch(bobText, /id="in3"/, "no error for presence");

	// Outbound: not-acceptable with <blocked/>, not routed.
	const out = alice.received.length;
	alice.send("<message to='bob@localhost' type='chat' id='out1'><body>x</body></message>");
	const e3 = await message(alice, "out1", out);
	assert.match(
		e3,
		/<error type="cancel"><not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/><blocked xmlns="urn:xmpp:blocking:errors"\/><\/error>/,
	);
	const e4 = await iq(
		alice,
		"out2",
		"<iq type='get' to='bob@localhost/eff' id='out2'><ping xmlns='urn:xmpp:ping'/></iq>",
	);
	assert.match(e4, /<not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
	const bobText2 = await sync(carol, bob, "bob@localhost/eff", bm3);
	assert.doesNotMatch(bobText2, /id="out1"|id="out2"/);

	// The block lasts across sessions; unblocking lets messages through again (§3.4).
	alice.end();
	const again = await online("alice", "again");
	assert.match(await iq(again, "l", list("l")), /<item jid="bob@localhost"\/>/);
	await iq(again, "u", unblock("u", "bob@localhost"));
	const am2 = again.received.length;
	bob.send("<message to='alice@localhost/again' type='chat' id='back'><body>x</body></message>");
	await message(again, "back", am2);
	for (const c of [again, bob, carol]) c.end();
});

/** A mutual subscription (RFC 6121 §3.1) between two online raw clients. */
async function befriend(a: RawClient, aJid: string, b: RawClient, bJid: string): Promise<void> {
	for (const [from, to, fromJid, toJid] of [
		[a, b, aJid, bJid],
		[b, a, bJid, aJid],
	] as const) {
		const mark = to.received.length;
		from.send(`<presence type='subscribe' to='${toJid}'/>`);
		await to.waitFor(
			new RegExp(`type="subscribe"[^>]*from="${fromJid}"|from="${fromJid}"[^>]*type="subscribe"`),
			mark,
		);
		const mark2 = from.received.length;
		to.send(`<presence type='subscribed' to='${fromJid}'/>`);
		await from.waitFor(/type="subscribed"/, mark2);
	}
}

let pings = 0;
/** A round trip to the server on `c`'s stream. */
const ping = (c: RawClient) => {
	const id = `ping${++pings}`;
	return iq(c, id, `<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
};

/** A `<presence>` from `from` (of `type`, or available) in `text`. */
function presenceIn(text: string, from: string, type?: string): boolean {
	const re = /<presence\b[^>]*>/g;
	for (const tag of text.match(re) ?? []) {
		if (!tag.includes(`from="${from}"`)) continue;
		const t = /\btype="([^"]*)"/.exec(tag)?.[1];
		if (t === type) return true;
	}
	return false;
}

test("presence on block and unblock between subscribed contacts (XEP-0191 §3.3, §3.4; Prosody's blocking.scs)", async () => {
	const r1 = await online("romeo", "r1");
	const r2 = await online("romeo", "r2");
	const juliet = await online("juliet", "j");
	const nurse = await online("nurse", "n");
	const carol = await online("carol", "bk");
	await befriend(r1, "romeo@localhost", juliet, "juliet@localhost");
	// romeo also sent directed presence to the nurse, who has no subscription (RFC 6121 §4.6).
	r1.send("<presence to='nurse@localhost'/>");
	await nurse.waitFor('from="romeo@localhost/r1"');
	await juliet.waitFor('from="romeo@localhost/r2"');
	await r2.waitFor('from="juliet@localhost/j"');

	const jm = juliet.received.length;
	const nm = nurse.received.length;
	const m1 = r1.received.length;
	const m2 = r2.received.length;
	await iq(r1, "b", block("b", "juliet@localhost", "nurse@localhost"));
	// romeo's stream handles its stanzas in order (RFC 6120 §10.1): once this answer is there,
	// everything the block caused has been written.
	await ping(r1);
	// §3.3: the contact allowed to see romeo's presence gets unavailable from each of his
	// available resources...
	const jText = await sync(carol, juliet, "juliet@localhost/j", jm);
	assert.ok(presenceIn(jText, "romeo@localhost/r1", "unavailable"), jText);
	assert.ok(presenceIn(jText, "romeo@localhost/r2", "unavailable"), jText);
	// ...and so does an entity romeo sent directed presence to (RFC 6121 §4.6.2), from that
	// resource only.
	const nText = await sync(carol, nurse, "nurse@localhost/n", nm);
	assert.ok(presenceIn(nText, "romeo@localhost/r1", "unavailable"), nText);
	assert.ok(!presenceIn(nText, "romeo@localhost/r2", "unavailable"), nText);
	// romeo's resources see juliet go unavailable: nothing from her reaches them any more, and
	// her last presence would otherwise stay on their rosters.
	for (const [c, m, jid] of [
		[r1, m1, "romeo@localhost/r1"],
		[r2, m2, "romeo@localhost/r2"],
	] as const) {
		const text = await sync(carol, c, jid, m);
		assert.ok(presenceIn(text, "juliet@localhost/j", "unavailable"), text);
	}
	// While blocked, juliet's presence changes do not reach romeo (§3.3, inbound presence).
	const m1b = r1.received.length;
	juliet.send("<presence><status>still here</status></presence>");
	await ping(juliet);
	assert.doesNotMatch(await sync(carol, r1, "romeo@localhost/r1", m1b), /still here/);

	// §3.4: on unblock, juliet gets romeo's current presence from each resource, and romeo's
	// resources get juliet's (a probe on romeo's behalf, RFC 6121 §4.3.2).
	const jm2 = juliet.received.length;
	const nm2 = nurse.received.length;
	const m1c = r1.received.length;
	const m2c = r2.received.length;
	await iq(r2, "u", unblock("u", "juliet@localhost"));
	await ping(r2);
	const jBack = await sync(carol, juliet, "juliet@localhost/j", jm2);
	assert.ok(presenceIn(jBack, "romeo@localhost/r1"), jBack);
	assert.ok(presenceIn(jBack, "romeo@localhost/r2"), jBack);
	for (const [c, m, jid] of [
		[r1, m1c, "romeo@localhost/r1"],
		[r2, m2c, "romeo@localhost/r2"],
	] as const) {
		const text = await sync(carol, c, jid, m);
		assert.ok(presenceIn(text, "juliet@localhost/j"), text);
		assert.match(text, /still here/);
	}
	// The nurse is still blocked: nothing for her.
	assert.doesNotMatch(
		await sync(carol, nurse, "nurse@localhost/n", nm2),
		/<presence[^>]*from="romeo@/,
	);
	await iq(r1, "u2", unblock("u2"));
	for (const c of [r1, r2, juliet, nurse, carol]) c.end();
});

test("JID matching: a domain item blocks its users, a full JID item only that resource (XEP-0191 §6)", async () => {
	const carol = await online("carol", "match");
	const dave = await online("dave", "d1", "example.net");
	const dave2 = await online("dave", "d2", "example.net");
	const bob = await online("bob", "m");
	await iq(carol, "b", block("b", "example.net", "bob@localhost/other"));
	const dm = dave.received.length;
	dave.send("<message to='carol@localhost/match' type='chat' id='dm'><body>x</body></message>");
	assert.match(await message(dave, "dm", dm), /<service-unavailable /, "across hosts too");
	// bob/m is not bob/other: delivered.
	const cm = carol.received.length;
	bob.send("<message to='carol@localhost/match' type='chat' id='bm'><body>x</body></message>");
	await message(carol, "bm", cm);
	// Outbound to a blocked domain's user.
	const out = carol.received.length;
	carol.send("<message to='dave@example.net/d2' type='chat' id='co'><body>x</body></message>");
	assert.match(await message(carol, "co", out), /<blocked xmlns="urn:xmpp:blocking:errors"\/>/);
	await iq(carol, "u", unblock("u"));
	for (const c of [carol, dave, dave2, bob]) c.end();
});

test("a probe is not answered across a block (XEP-0191 §3.5, RFC 6121 §4.3.2)", async () => {
	// fay and gus subscribe to each other (RFC 6121 §3.1), then fay blocks gus.
	const fay = await online("fay", "f");
	let gus = await online("gus", "g");
	for (const [from, to, toJid] of [
		[fay, gus, "gus@localhost"],
		[gus, fay, "fay@localhost"],
	] as const) {
		const mark = to.received.length;
		from.send(`<presence type='subscribe' to='${toJid}'/>`);
		await to.waitFor(/type="subscribe"/, mark);
		const fromJid = toJid === "gus@localhost" ? "fay@localhost" : "gus@localhost";
		const mark2 = from.received.length;
		to.send(`<presence type='subscribed' to='${fromJid}'/>`);
		await from.waitFor(/type="subscribed"/, mark2);
	}
	await iq(fay, "b1", block("b1", "gus@localhost"));
	gus.end();
	// gus comes back: his initial presence probes fay (§4.3.1), whose answer must not reach him.
	gus = await login(t.port, "gus", "pw-gus", { resource: "g2" });
	const mark = gus.received.length;
	gus.send("<presence/>");
	await iq(gus, "p1", "<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
	assert.doesNotMatch(gus.received.slice(mark), /<presence[^>]*from="fay@localhost/);
	fay.end();
	gus.end();
});
