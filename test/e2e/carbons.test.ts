/**
 * Message Carbons (XEP-0280, urn:xmpp:carbons:2) with the private and no-copy hints
 * (XEP-0280 §9, XEP-0334 §4.4): raw sockets for the exact wrapped copies, and xmpp.js for the
 * everyday path.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type XmlElement, xml } from "@xmpp/client";
import type { RawClient } from "../helpers/raw.ts";
import { message, online as rawOnline, sync as rawSync } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { connect } from "../helpers/xmpp-client.ts";

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
			["dave@example.net", "pw-dave"],
		],
	});
});
after(() => t.stop());

async function online(
	user: string,
	resource: string,
	opts: { host?: string; carbons?: boolean } = {},
): Promise<RawClient> {
	const c = await rawOnline(t.port, user, resource, { host: opts.host });
	if (opts.carbons) {
		const mark = c.received.length;
		c.send("<iq type='set' id='enable'><enable xmlns='urn:xmpp:carbons:2'/></iq>");
		const r = await c.waitFor(/<iq[^>]*id="enable"[^>]*\/>/, mark);
		// XEP-0280 §4: the server acknowledges with a result.
		assert.match(r, /type="result"/);
	}
	return c;
}

/** A carbon copy (`received` or `sent`) wrapping the message with this id. */
async function carbon(c: RawClient, kind: string, id: string, mark: number): Promise<string> {
	const re = new RegExp(
		`<message[^>]*><${kind} xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client"[^>]*id="${id}"[\\s\\S]*?</message></forwarded></${kind}></message>`,
	);
	const text = await c.waitFor(re, mark);
	return (re.exec(text) as RegExpExecArray)[0];
}

/**
 * A marker round trip (helpers/raw-stanzas.ts `sync`) with a headline marker: headlines are not
 * eligible for carbons (XEP-0280 §6), so the marker adds no copies of its own.
 */
const sync = (from: RawClient, to: RawClient, toJid: string, mark: number) =>
	rawSync(from, to, toJid, mark, "headline");

test("the server advertises urn:xmpp:carbons:2 (XEP-0280 §3)", async () => {
	const c = await online("alice", "disco");
	const mark = c.received.length;
	c.send(
		"<iq type='get' to='localhost' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
	);
	const r = await c.waitFor(/<iq[^>]*id="d"[\s\S]*?<\/iq>/, mark);
	assert.match(r, /<feature var="urn:xmpp:carbons:2"\/>/);
	c.end();
});

test("received and sent carbons reach the other enabled resource, wrapped (XEP-0280 §7, §8)", async () => {
	const phone = await online("alice", "phone", { carbons: true });
	const laptop = await online("alice", "laptop", { carbons: true });
	const plain = await online("alice", "plain");
	const bob = await online("bob", "b");
	const lm = laptop.received.length;
	const pm = phone.received.length;
	const plainMark = plain.received.length;

	// §7: a message to alice/phone is copied to alice/laptop, from alice's bare JID.
	bob.send("<message to='alice@localhost/phone' type='chat' id='r1'><body>hi</body></message>");
	await message(phone, "r1", pm);
	const r = await carbon(laptop, "received", "r1", lm);
	assert.match(r, /^<message[^>]*from="alice@localhost"/);
	assert.match(r, /^<message[^>]*to="alice@localhost\/laptop"/);
	assert.match(r, /^<message[^>]*type="chat"/, "§7: same type");
	assert.match(r, /<message xmlns="jabber:client"[^>]*from="bob@localhost\/b"/);

	// §8: what alice/phone sends is copied to alice/laptop, not back to alice/phone.
	phone.send("<message to='bob@localhost/b' type='chat' id='s1'><body>hello</body></message>");
	const s = await carbon(laptop, "sent", "s1", lm);
	assert.match(s, /^<message[^>]*from="alice@localhost"[^>]*>/);
	assert.match(s, /<message xmlns="jabber:client"[^>]*to="bob@localhost\/b"/);
	const phoneText = await sync(bob, phone, "alice@localhost/phone", pm);
	assert.doesNotMatch(phoneText, /<sent xmlns="urn:xmpp:carbons:2">/, "§8: not to the sender");
	// A resource that did not enable carbons gets no copies (§4).
	const plainText = await sync(bob, plain, "alice@localhost/plain", plainMark);
	assert.doesNotMatch(plainText, /urn:xmpp:carbons:2/);
	for (const c of [phone, laptop, plain, bob]) c.end();
});

test("private and no-copy messages are not copied; <private/> is removed on delivery (XEP-0280 §9, XEP-0334 §4.4)", async () => {
	const phone = await online("alice", "phone2", { carbons: true });
	const laptop = await online("alice", "laptop2", { carbons: true });
	const bob = await online("bob", "b2", { carbons: true });
	const bob2 = await online("bob", "b2-other", { carbons: true });
	const lm = laptop.received.length;
	const bm = bob.received.length;
	const b2m = bob2.received.length;
	phone.send(
		"<message to='bob@localhost/b2' type='chat' id='p1'><body>secret</body><private xmlns='urn:xmpp:carbons:2'/></message>",
	);
	const delivered = await message(bob, "p1", bm);
	assert.doesNotMatch(delivered, /<private/, "§9: the receiving server removes <private/>");
	phone.send(
		"<message to='bob@localhost/b2' type='chat' id='p2'><body>x</body><no-copy xmlns='urn:xmpp:hints'/></message>",
	);
	await message(bob, "p2", bm);
	const laptopText = await sync(bob, laptop, "alice@localhost/laptop2", lm);
	assert.doesNotMatch(laptopText, /id="p1"|id="p2"/, "no sent carbons");
	const bob2Text = await sync(phone, bob2, "bob@localhost/b2-other", b2m);
	assert.doesNotMatch(bob2Text, /id="p1"|id="p2"/, "no received carbons");
	for (const c of [phone, laptop, bob, bob2]) c.end();
});

test("only eligible messages are copied, and not to resources that got the original (XEP-0280 §6, §7)", async () => {
	const one = await online("alice", "eq1", { carbons: true });
	const two = await online("alice", "eq2", { carbons: true });
	const bob = await online("bob", "e");
	const m1 = one.received.length;
	const m2 = two.received.length;
	// Both resources have priority 0: a bare-JID chat goes to both (RFC 6121 §8.5.2.1.1), so
	// neither gets a carbon (§7 "that did not receive it").
	bob.send("<message to='alice@localhost' type='chat' id='e1'><body>both</body></message>");
	await message(one, "e1", m1);
	await message(two, "e1", m2);
	// §6: normal without a body and headlines are not eligible.
	bob.send("<message to='alice@localhost/eq1' id='e2'><x xmlns='urn:example:payload'/></message>");
	bob.send("<message to='alice@localhost/eq1' type='headline' id='e3'><body>h</body></message>");
	// §6: normal with a body is.
	bob.send("<message to='alice@localhost/eq1' id='e4'><body>n</body></message>");
	await carbon(two, "received", "e4", m2);
	const text = two.received.slice(m2);
	assert.equal(text.match(/id="e1"/g)?.length, 1, "only the original, no carbon of e1");
	assert.doesNotMatch(text, /id="e2"|id="e3"/);
	for (const c of [one, two, bob]) c.end();
});

test("disabling stops the copies (XEP-0280 §5)", async () => {
	const a = await online("alice", "d1", { carbons: true });
	const b = await online("alice", "d2", { carbons: true });
	const bob = await online("bob", "d");
	let mark = b.received.length;
	b.send("<iq type='set' id='off'><disable xmlns='urn:xmpp:carbons:2'/></iq>");
	assert.match(await b.waitFor(/<iq[^>]*id="off"[^>]*\/>/, mark), /type="result"/);
	mark = b.received.length;
	bob.send("<message to='alice@localhost/d1' type='chat' id='x1'><body>x</body></message>");
	await message(a, "x1", 0);
	assert.doesNotMatch(await sync(bob, b, "alice@localhost/d2", mark), /urn:xmpp:carbons:2/);
	for (const c of [a, b, bob]) c.end();
});

test("enabling carbons for another account is not allowed (XEP-0280 §4.1)", async () => {
	const bob = await online("bob", "n");
	const mark = bob.received.length;
	bob.send(
		"<iq type='set' id='other' to='alice@localhost'><enable xmlns='urn:xmpp:carbons:2'/></iq>",
	);
	const r = await bob.waitFor(/<iq[^>]*id="other"[\s\S]*?<\/iq>/, mark);
	assert.match(r, /<not-allowed xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
	bob.end();
});

test("across hosts, with xmpp.js: a message from example.net is carbon-copied on localhost (XEP-0280 §7)", async () => {
	const { xmpp: lib, stanzas } = await connect(`xmpp://127.0.0.1:${t.port}`, "alice", "pw-alice", {
		resource: "lib",
		mechanism: "SCRAM-SHA-1",
	});
	const other = await online("alice", "other");
	const dave = await online("dave", "d", { host: "example.net" });
	try {
		await lib.send(xml("presence"));
		const res = await lib.iqCaller.request(
			xml("iq", { type: "set" }, xml("enable", { xmlns: "urn:xmpp:carbons:2" })),
		);
		assert.equal(res.attrs.type, "result");
		dave.send("<message to='alice@localhost/other' type='chat' id='xh'><body>hey</body></message>");
		let copy: XmlElement | undefined;
		for (let i = 0; i < 500 && !copy; i++) {
			copy = stanzas.find((s) => s.is("message") && s.getChild("received", "urn:xmpp:carbons:2"));
			if (!copy) await new Promise((r) => setTimeout(r, 10));
		}
		assert.ok(copy, "the library client gets a received carbon");
		assert.equal(copy.attrs.from, "alice@localhost");
		const inner = copy
			.getChild("received", "urn:xmpp:carbons:2")
			?.getChild("forwarded", "urn:xmpp:forward:0")
			?.getChild("message");
		assert.equal(inner?.attrs.from, "dave@example.net/d");
		assert.equal(inner?.getChildText("body"), "hey");
	} finally {
		await lib.stop();
		other.end();
		dave.end();
	}
});
