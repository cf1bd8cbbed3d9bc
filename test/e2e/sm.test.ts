/**
 * Stream Management (XEP-0198, urn:xmpp:sm:3) end to end: enabling, counting both ways, ack
 * requests, resumption on a new connection after the old one broke without a word (a relay that
 * makes it vanish, test/helpers/vanishing-relay.ts), exactly-once redelivery of what the client
 * had not acknowledged, the newer connection winning over a half-dead one, `<failed/>`, and what
 * happens when nobody resumes (offline storage, unavailable presence). With raw clients (every
 * byte checked) and with xmpp.js, which enables stream management and resumes by itself.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { xml } from "@xmpp/client";
import type { C2SStream } from "../../src/c2s/stream.ts";
import type { RawClient } from "../helpers/raw.ts";
import { answerPings, online } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { startVanishingRelay, type VanishingRelay } from "../helpers/vanishing-relay.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect } from "../helpers/xmpp-client.ts";
import { login } from "../helpers/xmpp-raw-login.ts";
import { befriend } from "../helpers/xmpp-user.ts";

const SM = "urn:xmpp:sm:3";
const USERS = ["alice", "bob", "carol", "dave", "erin", "frank"];

/** Enables stream management (§3) and returns the `<enabled/>` tag's text. */
async function enable(c: RawClient, attrs = "resume='true'"): Promise<string> {
	const mark = c.received.length;
	c.send(`<enable xmlns='${SM}' ${attrs}/>`);
	const text = await c.waitFor(/<enabled\b[^>]*>|<failed\b[\s\S]*?<\/failed>/, mark);
	return (/<enabled\b[^>]*>|<failed\b[\s\S]*?<\/failed>/.exec(text) as RegExpExecArray)[0];
}

const attr = (tag: string, name: string) => new RegExp(`\\b${name}="([^"]*)"`).exec(tag)?.[1];

/** Bodies of the messages in `text`, in order. */
const bodies = (text: string) => [...text.matchAll(/<body>([^<]*)<\/body>/g)].map((m) => m[1]);

describe("XEP-0198 Stream Management", () => {
	let t: TestServer;
	const relays: VanishingRelay[] = [];
	const clients: RawClient[] = [];

	before(async () => {
		t = await startTestServer({
			config: {
				auth: { require_encryption: false, allow_plain_without_tls: true },
				sessions: { idle_ping: 1, ping_timeout: 1 },
			},
			users: USERS.map((u) => [`${u}@localhost`, `pw-${u}`] as [string, string]),
		});
		for (const u of ["alice", "carol", "dave", "erin"])
			await befriend(t.server, `${u}@localhost`, "bob@localhost");
	});
	after(async () => {
		for (const c of clients) c.end();
		for (const r of relays) await r.close();
		await t.stop();
	});

	const sessionOf = (user: string, resource: string) =>
		t.server.hosts.get("localhost")?.sessions.get(user)?.get(resource);

	async function bob(resource: string): Promise<RawClient> {
		const c = await online(t.port, "bob", resource);
		answerPings(c);
		clients.push(c);
		return c;
	}

	test("§2, §3, §4: advertised after authentication; enabled with resumption; <r/> answered with the count of handled stanzas; the server asks after 5 unacknowledged", async () => {
		const c = await login(t.port, "frank", "pw-frank", { resource: "count", mechanism: "PLAIN" });
		clients.push(c);
		assert.match(c.received, /<sm xmlns="urn:xmpp:sm:3"\/>/);
		const enabled = await enable(c, "resume='true' max='120'");
		assert.match(enabled, /^<enabled\b/);
		assert.equal(attr(enabled, "resume"), "true");
		assert.equal(attr(enabled, "max"), "120");
		assert.ok((attr(enabled, "id") ?? "").length >= 22, "an unguessable id");
		// Three stanzas handled, then an ack request.
		for (let i = 0; i < 3; i++) c.send(`<presence/>`);
		let mark = c.received.length;
		c.send(`<r xmlns='${SM}'/>`);
		await c.waitFor(/<a xmlns="urn:xmpp:sm:3" h="3"\/>/, mark);
		// Five messages to frank: the server asks for an acknowledgement.
		const b = await bob("count");
		mark = c.received.length;
		for (let i = 1; i <= 5; i++)
			b.send(
				`<message to='frank@localhost/count' type='chat' id='c${i}'><body>m${i}</body></message>`,
			);
		await c.waitFor(/<r xmlns="urn:xmpp:sm:3"\/>/, mark);
		c.send(`<a xmlns='${SM}' h='${c.received.slice(mark).match(/<message\b/g)?.length ?? 0}'/>`);
		// Enabling twice is unexpected-request (§3).
		assert.match(await enable(c), /<failed[\s\S]*unexpected-request/);
		c.close();
	});

	test("§4: the result of a legacy session IQ (RFC 3921 §3) sent after <enable/> counts in h (Pidgin)", async () => {
		// libpurple 2.14 sends <enable/>, then the session IQ, then acknowledges every stanza it
		// got since <enabled/>, the session result included; counting it on one side only made
		// the server end the stream with "acknowledged more stanzas than were sent".
		const c = await login(t.port, "frank", "pw-frank", { resource: "legacy", mechanism: "PLAIN" });
		clients.push(c);
		assert.match(await enable(c, ""), /^<enabled\b/);
		let mark = c.received.length;
		c.send("<iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
		await c.waitFor(/<iq[^>]*id="sess"[^>]*>/, mark);
		mark = c.received.length;
		c.send(`<a xmlns='${SM}' h='1'/>`);
		c.send("<iq type='get' id='after'><ping xmlns='urn:xmpp:ping'/></iq>");
		const text = await c.waitFor(/<iq[^>]*id="after"[^>]*>|<stream:error>/, mark);
		assert.doesNotMatch(text, /<stream:error>/, "h=1 covers the session result");
		assert.match(text, /type="result"/);
		c.close();
	});

	test("§5: a vanished connection's session hibernates (contacts see nothing), is resumed on a new connection, and gets exactly what it had not acknowledged", async () => {
		const relay = await startVanishingRelay(t.port);
		relays.push(relay);
		const a = await online(relay.port, "alice", "phone");
		const enabled = await enable(a);
		const previd = attr(enabled, "id") as string;
		const b = await bob("desk");
		// Three messages arrive and are acknowledged (h counts stanzas sent since enable).
		for (let i = 1; i <= 3; i++)
			b.send(
				`<message to='alice@localhost/phone' type='chat' id='s${i}'><body>seen ${i}</body></message>`,
			);
		await a.waitFor(/seen 3/, 0);
		const seen = (
			a.received.slice(a.received.indexOf("<enabled")).match(/<(message|presence|iq)\b/g) ?? []
		).length;
		a.send(`<a xmlns='${SM}' h='${seen}'/>`);
		relay.vanish();
		const bMark = b.received.length;
		for (let i = 1; i <= 2; i++)
			b.send(
				`<message to='alice@localhost/phone' type='chat' id='w${i}'><body>while away ${i}</body></message>`,
			);
		// The server finds the connection dead (no <a/> to its <r/>) and keeps the session.
		await waitFor(
			() => (sessionOf("alice", "phone") as C2SStream | undefined)?.hibernating,
			"alice's session to hibernate",
			20_000,
		);
		// Resume on a new connection (§5), claiming the acknowledged count.
		const n = await login(t.port, "alice", "pw-alice", { mechanism: "PLAIN", bind: false });
		clients.push(n);
		const mark = n.received.length;
		n.send(`<resume xmlns='${SM}' previd='${previd}' h='${seen}'/>`);
		const text = await n.waitFor(/while away 2/, mark, 20_000);
		assert.match(text, new RegExp(`<resumed xmlns="urn:xmpp:sm:3" previd="${previd}" h="\\d+"/>`));
		assert.deepEqual(
			bodies(text),
			["while away 1", "while away 2"],
			"exactly what was missed, once",
		);
		assert.doesNotMatch(
			b.received.slice(bMark),
			/from="alice@localhost\/phone"[^>]*type="unavailable"|type="unavailable"[^>]*from="alice@localhost\/phone"/,
			"contacts saw nothing",
		);
		// The resumed session is the same: a new message reaches it.
		const m2 = n.received.length;
		b.send(
			"<message to='alice@localhost/phone' type='chat' id='after'><body>after resume</body></message>",
		);
		await n.waitFor(/after resume/, m2);
		// A client acknowledges what it got before it leaves (§4); what it does not is stored
		// offline again when the stream closes.
		const got = (
			n.received.slice(n.received.indexOf("<resumed")).match(/<(message|presence|iq)\b/g) ?? []
		).length;
		n.send(`<a xmlns='${SM}' h='${seen + got}'/>`);
		n.close();
	});

	test("§5: a newer connection resuming wins over the old one that still looks alive", async () => {
		const old = await online(t.port, "carol", "tab");
		const previd = attr(await enable(old), "id") as string;
		const n = await login(t.port, "carol", "pw-carol", { mechanism: "PLAIN", bind: false });
		clients.push(old, n);
		const mark = n.received.length;
		n.send(`<resume xmlns='${SM}' previd='${previd}' h='0'/>`);
		await n.waitFor(/<resumed\b/, mark);
		await old.waitFor(/<\/stream:stream>/, 0);
		const b = await bob("tab");
		const m2 = n.received.length;
		b.send(
			"<message to='carol@localhost/tab' type='chat' id='n1'><body>to the new one</body></message>",
		);
		await n.waitFor(/to the new one/, m2);
		n.close();
	});

	test("§5 <failed/>: an unknown or foreign id is item-not-found, and binding afresh still works", async () => {
		const a = await online(t.port, "dave", "own");
		const previd = attr(await enable(a), "id") as string;
		clients.push(a);
		// erin cannot resume dave's session.
		const e = await login(t.port, "erin", "pw-erin", { mechanism: "PLAIN", bind: false });
		clients.push(e);
		let mark = e.received.length;
		e.send(`<resume xmlns='${SM}' previd='${previd}' h='0'/>`);
		await e.waitFor(
			/<failed xmlns="urn:xmpp:sm:3"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/><\/failed>/,
			mark,
		);
		mark = e.received.length;
		e.send(`<resume xmlns='${SM}' previd='bm9uc2Vuc2Vub25zZW5zZTEyMw' h='0'/>`);
		await e.waitFor(/<failed[\s\S]*item-not-found/, mark);
		mark = e.received.length;
		e.send(
			"<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>fresh</resource></bind></iq>",
		);
		await e.waitFor(/erin@localhost\/fresh/, mark);
		assert.ok(sessionOf("dave", "own"), "dave's session untouched");
	});

	test("§4: a stream that closes with messages it never acknowledged leaves them in offline storage", async () => {
		const c = await online(t.port, "frank", "unacked");
		clients.push(c);
		await enable(c, "");
		const b = await bob("unacked");
		b.send(
			"<message to='frank@localhost/unacked' type='chat' id='u1'><body>never acknowledged</body></message>",
		);
		await c.waitFor(/never acknowledged/, 0);
		c.close(); // a clean close, but no <a/> for the message
		await waitFor(() => !sessionOf("frank", "unacked"), "frank's session to end");
		const again = await online(t.port, "frank", "later");
		answerPings(again);
		clients.push(again);
		await again.waitFor(/never acknowledged/, 0, 20_000);
		again.close();
	});

	test("§4: acknowledging more than was sent ends the stream (undefined-condition)", async () => {
		const c = await online(t.port, "frank", "liar");
		clients.push(c);
		await enable(c);
		const mark = c.received.length;
		c.send(`<a xmlns='${SM}' h='100'/>`);
		await c.waitFor(/<undefined-condition xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/, mark);
	});

	test("§5: nobody resumes in time: the session ends, contacts see it unavailable, unacknowledged messages wait offline", async () => {
		const relay = await startVanishingRelay(t.port);
		relays.push(relay);
		const e = await online(relay.port, "erin", "gone");
		await enable(e, "resume='true' max='1'");
		const b = await bob("watch");
		relay.vanish();
		const bMark = b.received.length;
		b.send(
			"<message to='erin@localhost/gone' type='chat' id='x1'><body>never acked</body></message>",
		);
		await b.waitFor(
			/<presence(?=[^>]*from="erin@localhost\/gone")(?=[^>]*type="unavailable")/,
			bMark,
			20_000,
		);
		const again = await online(t.port, "erin", "back");
		clients.push(again);
		answerPings(again);
		await again.waitFor(/never acked/, 0, 20_000);
		again.close();
	});

	test("xmpp.js enables stream management itself and resumes after its socket is cut: nothing lost, nothing twice", async () => {
		const x = await connect(`xmpp://localhost:${t.port}`, "alice", "pw-alice", { resource: "xjs" });
		await x.xmpp.send(xml("presence"));
		await waitFor(() => sessionOf("alice", "xjs")?.available, "alice available");
		const b = await bob("xjs");
		b.send("<message to='alice@localhost/xjs' type='chat' id='j1'><body>first</body></message>");
		await waitFor(() => x.stanzas.find((s) => s.is("message") && s.attrs.id === "j1"), "first");
		// Cut the TCP connection under xmpp.js (no closing tag); it reconnects and resumes.
		(x.xmpp.reconnect as unknown as { start(): void }).start();
		(x.xmpp as unknown as { socket: { socket: { destroy(): void } } }).socket.socket.destroy();
		b.send("<message to='alice@localhost/xjs' type='chat' id='j2'><body>second</body></message>");
		await waitFor(
			() => x.stanzas.find((s) => s.is("message") && s.attrs.id === "j2"),
			"second",
			20_000,
		);
		const ids = x.stanzas.filter((s) => s.is("message")).map((s) => s.attrs.id);
		assert.deepEqual(ids, ["j1", "j2"], "each once");
		await x.xmpp.stop();
	});
});
