/**
 * Client State Indication (XEP-0352) end to end: an inactive client gets presence updates and
 * chat states later (the latest presence per contact only), important traffic at once and after
 * what was held, and everything held when it becomes active. Also what it saves, counted.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { C2SStream } from "../../src/c2s/stream.ts";
import type { RawClient } from "../helpers/raw.ts";
import { answerPings, online } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { befriend } from "../helpers/xmpp-user.ts";

const CSI = "urn:xmpp:csi:0";
const CONTACTS = ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"];

/** A round trip: what the server sent before the answer has arrived. */
async function sync(c: RawClient, id: string): Promise<void> {
	const mark = c.received.length;
	c.send(`<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
	await c.waitFor(new RegExp(`id="${id}"`), mark);
}

const presencesIn = (text: string) => (text.match(/<presence\b/g) ?? []).length;

describe("XEP-0352 Client State Indication", () => {
	let t: TestServer;
	const clients: RawClient[] = [];

	before(async () => {
		t = await startTestServer({
			config: { auth: { require_encryption: false, allow_plain_without_tls: true } },
			users: ["phone", ...CONTACTS].map((u) => [`${u}@localhost`, `pw-${u}`] as [string, string]),
		});
		for (const c of CONTACTS) await befriend(t.server, "phone@localhost", `${c}@localhost`);
	});
	after(async () => {
		for (const c of clients) c.end();
		await t.stop();
	});

	test("§3-§5: presence and chat states wait while inactive, the latest presence per contact only; a message goes out at once, after them; <active/> sends the rest", async () => {
		const contacts: RawClient[] = [];
		for (const c of CONTACTS) {
			const rc = await online(t.port, c, "r");
			answerPings(rc);
			contacts.push(rc);
		}
		clients.push(...contacts);
		const phone = await online(t.port, "phone", "p");
		answerPings(phone);
		clients.push(phone);
		assert.match(phone.received, /<csi xmlns="urn:xmpp:csi:0"\/>/, "advertised (§3)");
		await sync(phone, "s0");
		phone.send(`<inactive xmlns='${CSI}'/>`);
		let mark = phone.received.length;
		// Every contact changes its status ten times.
		for (let round = 0; round < 10; round++)
			for (const rc of contacts) rc.send(`<presence><status>round ${round}</status></presence>`);
		for (const [i, rc] of contacts.entries()) await sync(rc, `c${i}`);
		// A chat state (held) and then an IQ (not held) from c0.
		contacts[0]?.send(
			"<message to='phone@localhost/p' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
		);
		await sync(contacts[0] as RawClient, "c0b");
		// No round trip on the phone here: an IQ result is important and would release it all.
		const session = t.server.hosts.get("localhost")?.sessions.get("phone")?.get("p") as C2SStream;
		assert.deepEqual(
			session.csiHeld,
			{ held: 11, saved: 90 },
			"10 presences (90 replaced) and a chat state",
		);
		const whileInactive = phone.received.slice(mark);
		assert.equal(
			presencesIn(whileInactive),
			0,
			`no presence reached the inactive client: ${whileInactive.slice(0, 600)}`,
		);
		assert.doesNotMatch(whileInactive, /composing/, "nor a chat state");
		// A message with a body goes out at once, after what was held (order kept).
		mark = phone.received.length;
		contacts[1]?.send(
			"<message to='phone@localhost/p' type='chat' id='urgent'><body>wake up</body></message>",
		);
		const text = await phone.waitFor(/wake up/, mark);
		assert.equal(presencesIn(text), 10, "the latest presence of each contact, once");
		for (const c of CONTACTS)
			assert.match(text, new RegExp(`from="${c}@localhost/r"[^>]*>\\s*<status>round 9</status>`));
		assert.ok(text.indexOf("composing") < text.indexOf("wake up"), "held stanzas first");
		// More presence while inactive, then <active/>: it is all there.
		mark = phone.received.length;
		for (const rc of contacts) rc.send("<presence><show>away</show></presence>");
		for (const [i, rc] of contacts.entries()) await sync(rc, `d${i}`);
		phone.send(`<active xmlns='${CSI}'/>`);
		await sync(phone, "s2");
		assert.equal(presencesIn(phone.received.slice(mark)), 10);
		// What it saved: 110 presence stanzas were sent to the phone, 20 written (issue 14:
		// "measure what it saves").
	});
});
