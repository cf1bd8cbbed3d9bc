/**
 * Message delivery rules (RFC 6121 §8.5) and offline messages (XEP-0160, XEP-0203 delay,
 * XEP-0334 hints), over raw sockets so that the exact stanzas and errors are checked, plus one
 * pass with a real client library (xmpp.js) and a SQLite restart for durability.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { type XmlElement, xml } from "@xmpp/client";
import { message, online, sync } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect } from "../helpers/xmpp-client.ts";

const PLAIN_TCP = { auth: { require_encryption: false, allow_plain_without_tls: true } };
const USERS = ["alice", "bob", "carol", "dan", "erin", "frank", "gina", "hal"];

describe("message delivery (RFC 6121 §8.5) and offline storage (XEP-0160)", () => {
	let t: TestServer;
	const stored = (user: string, host = "localhost") =>
		t.server.hosts.get(host)?.archive("offline").count(user) ?? Promise.resolve(-1);

	before(async () => {
		t = await startTestServer({
			config: {
				...PLAIN_TCP,
				hosts: {
					localhost: { module_options: { offline: { max_messages: 3 } } },
					"example.net": {},
				},
			},
			users: [
				...USERS.map((u): [string, string] => [`${u}@localhost`, `pw-${u}`]),
				["dave@example.net", "pw-dave"],
			],
		});
	});
	after(() => t.stop());

	test("chat to a bare JID goes to the highest non-negative priority only (RFC 6121 §8.5.2.1.1)", async () => {
		const high = await online(t.port, "bob", "high", { priority: 5 });
		const low = await online(t.port, "bob", "low", { priority: 1 });
		const alice = await online(t.port, "alice", "a");
		const markHigh = high.received.length;
		const markLow = low.received.length;
		alice.send("<message to='bob@localhost' type='chat' id='p1'><body>hi</body></message>");
		const m = await message(high, "p1", markHigh);
		assert.match(m, /from="alice@localhost\/a"/);
		const lowText = await sync(alice, low, "bob@localhost/low", markLow);
		assert.doesNotMatch(lowText, /id="p1"/, "the lower-priority resource does not get it");
		// §8.5.2.1.1 headline: every non-negative resource.
		alice.send("<message to='bob@localhost' type='headline' id='h1'><body>news</body></message>");
		await message(high, "h1", markHigh);
		await message(low, "h1", markLow);
		// Closed as clients do: an abrupt end would leave p1 unconfirmed, and stored offline
		// again for bob's next login (src/net/liveness.ts), which the next test counts.
		for (const c of [high, low, alice]) c.close();
	});

	test("groupchat to a bare JID is refused with service-unavailable (RFC 6121 §8.5.2.1.1)", async () => {
		const bob = await online(t.port, "bob", "gc");
		const alice = await online(t.port, "alice", "gc");
		const mark = alice.received.length;
		const bobMark = bob.received.length;
		alice.send("<message to='bob@localhost' type='groupchat' id='g1'><body>x</body></message>");
		const e = await message(alice, "g1", mark);
		assert.match(e, /type="error"/);
		assert.match(e, /<service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
		assert.doesNotMatch(await sync(alice, bob, "bob@localhost/gc", bobMark), /id="g1"/);
		bob.end();
		alice.end();
	});

	test("a full JID: delivered even at negative priority (§8.5.3.1); unknown resource by type (§8.5.3.2.1)", async () => {
		const neg = await online(t.port, "bob", "neg", { priority: -1 });
		const alice = await online(t.port, "alice", "fj");
		const mark = alice.received.length;
		const negMark = neg.received.length;
		alice.send("<message to='bob@localhost/neg' type='chat' id='f1'><body>x</body></message>");
		await message(neg, "f1", negMark);
		// §8.5.3.2.1: normal to a resource that is not there -> service-unavailable.
		alice.send("<message to='bob@localhost/gone' id='f2'><body>x</body></message>");
		const e = await message(alice, "f2", mark);
		assert.match(e, /<service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
		// §8.5.3.2.1: headline and error to a resource that is not there are silently ignored.
		alice.send("<message to='bob@localhost/gone' type='headline' id='f3'><body>x</body></message>");
		alice.send("<message to='bob@localhost/gone' type='error' id='f4'><body>x</body></message>");
		const after = await sync(alice, alice, "alice@localhost/fj", mark);
		assert.doesNotMatch(after, /id="f3"|id="f4"/);
		// Negative priority only: a chat to the bare JID is not delivered (§8.5.2.1.1) but stored.
		alice.send("<message to='bob@localhost' type='chat' id='f5'><body>x</body></message>");
		await waitFor(async () => (await stored("bob")) === 1, "f5 stored");
		assert.doesNotMatch(await sync(alice, neg, "bob@localhost/neg", negMark), /id="f5"/);
		neg.end();
		// A resource with a non-negative priority gets it (XEP-0160 §4 step 5).
		const pos = await online(t.port, "bob", "pos");
		await message(pos, "f5", 0);
		pos.end();
		alice.end();
	});

	test("offline messages: stored, then delivered oldest first with a delay stamp (XEP-0160 §4, XEP-0203 §3)", async () => {
		const alice = await online(t.port, "alice", "off");
		alice.send("<message to='carol@localhost' type='chat' id='o1'><body>one</body></message>");
		alice.send("<message to='carol@localhost' id='o2'><body>two</body></message>");
		// §8.5.3.2.1: chat to a resource that is not there is treated as to the bare JID.
		alice.send(
			"<message to='carol@localhost/old' type='chat' id='o3'><body>three</body></message>",
		);
		await waitFor(async () => (await stored("carol")) === 3, "3 stored");
		const carol = await online(t.port, "carol", "new");
		const text = await carol.waitFor(/id="o3"[\s\S]*?<\/message>/);
		const ids = [...text.matchAll(/<message[^>]*id="(o\d)"/g)].map((m) => m[1]);
		assert.deepEqual(ids, ["o1", "o2", "o3"], "oldest first");
		const m1 = await message(carol, "o1", 0);
		assert.match(m1, /from="alice@localhost\/off"/);
		assert.match(m1, /<body>one<\/body>/);
		// XEP-0203 §3: delay from the server, stamp in UTC (XEP-0082).
		assert.match(
			m1,
			/<delay xmlns="urn:xmpp:delay" from="localhost" stamp="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\/>/,
		);
		// Delivered messages are deleted (XEP-0160 §4).
		await waitFor(async () => (await stored("carol")) === 0, "store emptied");
		carol.end();
		// A later login gets nothing again.
		const again = await online(t.port, "carol", "again");
		const mark = again.received.length;
		const alice2 = await online(t.port, "alice", "off2");
		assert.doesNotMatch(await sync(alice2, again, "carol@localhost/again", mark), /id="o1"/);
		again.end();
		alice.end();
		alice2.end();
	});

	test("beyond max_messages the sender gets service-unavailable (XEP-0160 §4 step 3)", async () => {
		const alice = await online(t.port, "alice", "lim");
		const mark = alice.received.length;
		for (let i = 1; i <= 4; i++)
			alice.send(`<message to='dan@localhost' type='chat' id='l${i}'><body>${i}</body></message>`);
		const e = await message(alice, "l4", mark);
		assert.match(e, /type="error"/);
		assert.match(e, /<service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
		assert.equal(await stored("dan"), 3);
		assert.doesNotMatch(alice.received.slice(mark), /id="l[123]"/, "the first three were accepted");
		alice.end();
	});

	test("what is not stored: hints, chat states, headlines, errors, unknown accounts (XEP-0334 §4, RFC 6121 §8.5)", async () => {
		const alice = await online(t.port, "alice", "hint");
		const mark = alice.received.length;
		// XEP-0334 §4.3 no-store: not stored, so RFC 6121 §8.5.2.2.1 service-unavailable.
		alice.send(
			"<message to='erin@localhost' type='chat' id='n1'><body>x</body><no-store xmlns='urn:xmpp:hints'/></message>",
		);
		const e1 = await message(alice, "n1", mark);
		assert.match(e1, /<service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
		// A standalone chat state has no body (XEP-0085 §5.6: not stored).
		alice.send(
			"<message to='erin@localhost' type='chat' id='n2'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
		);
		await message(alice, "n2", mark);
		// XEP-0334 §4.4 store: stored even without a body.
		alice.send(
			"<message to='erin@localhost' type='chat' id='n3'><store xmlns='urn:xmpp:hints'/><received xmlns='urn:xmpp:receipts' id='x'/></message>",
		);
		// RFC 6121 §8.5.2.2.1: headline and error are silently ignored.
		alice.send("<message to='erin@localhost' type='headline' id='n4'><body>x</body></message>");
		alice.send("<message to='erin@localhost' type='error' id='n5'><body>x</body></message>");
		// RFC 6121 §8.5.1: an account that does not exist -> service-unavailable, nothing stored.
		alice.send("<message to='nobody@localhost' type='chat' id='n6'><body>x</body></message>");
		const e6 = await message(alice, "n6", mark);
		assert.match(e6, /<service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
		await waitFor(async () => (await stored("erin")) === 1, "n3 stored");
		assert.equal(await stored("nobody"), 0);
		const rest = await sync(alice, alice, "alice@localhost/hint", mark);
		assert.doesNotMatch(rest, /id="n[45]"/, "no error for headline or error");
		const erin = await online(t.port, "erin", "e");
		const m3 = await message(erin, "n3", 0);
		assert.match(m3, /<received xmlns="urn:xmpp:receipts" id="x"\/>/);
		erin.end();
		alice.end();
	});

	test("across hosts: a message to an offline user of another local host is stored there (XEP-0160 §4)", async () => {
		const alice = await online(t.port, "alice", "x");
		alice.send("<message to='dave@example.net' type='chat' id='x1'><body>hi</body></message>");
		await waitFor(async () => (await stored("dave", "example.net")) === 1, "stored on example.net");
		const dave = await online(t.port, "dave", "d", { host: "example.net" });
		const m = await message(dave, "x1", 0);
		assert.match(m, /<delay xmlns="urn:xmpp:delay" from="example.net" stamp="/);
		dave.end();
		alice.end();
	});

	test("with a real client library: offline messages arrive after login (XEP-0160 §4)", async () => {
		const alice = await online(t.port, "alice", "lib");
		alice.send(
			"<message to='frank@localhost' type='chat' id='c1'><body>while you were out</body></message>",
		);
		await waitFor(async () => (await stored("frank")) === 1, "stored");
		const { xmpp: frank, stanzas } = await connect(
			`xmpp://127.0.0.1:${t.port}`,
			"frank",
			"pw-frank",
			{ mechanism: "SCRAM-SHA-1" },
		);
		try {
			await frank.send(xml("presence"));
			let m: XmlElement | undefined;
			for (let i = 0; i < 500 && !m; i++) {
				m = stanzas.find((s) => s.is("message") && s.attrs.id === "c1");
				if (!m) await new Promise((r) => setTimeout(r, 10));
			}
			assert.ok(m, "frank gets the stored message");
			assert.equal(m.getChildText("body"), "while you were out");
			assert.equal(m.getChild("delay", "urn:xmpp:delay")?.attrs.from, "localhost");
		} finally {
			await frank.stop();
			alice.end();
		}
	});
});

test("offline messages survive a restart with SQLite (XEP-0160, durable before accepted)", async () => {
	const dataDir = mkdtempSync(join(tmpdir(), "parley-offline-"));
	try {
		const first = await startTestServer({
			storage: "sqlite",
			dataDir,
			config: PLAIN_TCP,
			users: [
				["alice@localhost", "pw-alice"],
				["bob@localhost", "pw-bob"],
			],
		});
		const alice = await online(first.port, "alice", "a");
		alice.send("<message to='bob@localhost' type='chat' id='d1'><body>kept</body></message>");
		const count = () => first.server.hosts.get("localhost")?.archive("offline").count("bob");
		await waitFor(async () => (await count()) === 1, "stored");
		alice.end();
		await first.stop();

		const second = await startTestServer({ storage: "sqlite", dataDir, config: PLAIN_TCP });
		try {
			const bob = await online(second.port, "bob", "b");
			const m = await message(bob, "d1", 0);
			assert.match(m, /<body>kept<\/body>/);
			assert.match(m, /<delay xmlns="urn:xmpp:delay" from="localhost"/);
			bob.end();
		} finally {
			await second.stop();
		}
	} finally {
		rmSync(dataDir, { recursive: true, force: true });
	}
});
