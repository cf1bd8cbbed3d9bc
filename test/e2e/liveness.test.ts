/**
 * Connections that die silently (issue 21): a client whose network vanishes (no FIN, no RST:
 * test/helpers/vanishing-relay.ts) is found out by the server's XEP-0199 pings within
 * `sessions.idle_ping` + `sessions.ping_timeout`; its contacts see it go unavailable (RFC 6121
 * §4.5.2); the messages written to it meanwhile, which it never confirmed, are in offline
 * storage (XEP-0160) at its next login. A client that answers is left alone, and what it
 * confirmed is not stored twice. The intervals are shortened for the test; the waits below are
 * safety nets, not timing assertions.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { xml } from "@xmpp/client";
import { BoshClient } from "../helpers/bosh.ts";
import type { RawClient } from "../helpers/raw.ts";
import { answerPings, online } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { startVanishingRelay, type VanishingRelay } from "../helpers/vanishing-relay.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect } from "../helpers/xmpp-client.ts";
import { befriend } from "../helpers/xmpp-user.ts";

const USERS = ["alice", "bob", "carol", "dave"];

describe("dead connections (issue 21)", () => {
	let t: TestServer;
	const relays: VanishingRelay[] = [];
	const clients: RawClient[] = [];

	before(async () => {
		t = await startTestServer({
			config: {
				auth: { require_encryption: false, allow_plain_without_tls: true },
				// Resumption off: a vanished session ends here (test/e2e/sm.test.ts has it on).
				sessions: { idle_ping: 1, ping_timeout: 1, hibernation: 0 },
				http: { bosh: { inactivity: 2 } },
			},
			users: USERS.map((u) => [`${u}@localhost`, `pw-${u}`] as [string, string]),
		});
		for (const u of ["alice", "carol"]) await befriend(t.server, `${u}@localhost`, "bob@localhost");
	});
	after(async () => {
		for (const c of clients) c.end();
		for (const r of relays) await r.close();
		await t.stop();
	});

	const sessionOf = (user: string, resource: string) =>
		t.server.hosts.get("localhost")?.sessions.get(user)?.get(resource);
	/** Issue 21: the event is "counted in metrics" (docs/architecture.md "Metrics"). */
	const deadPeers = async () => {
		const { body } = await t.server.metricsText();
		return Number(/^parley_dead_peers_total\{stream="c2s"\} (\d+)$/m.exec(body)?.[1]);
	};

	test("over TCP: a vanished client is dropped, its contact sees it unavailable, messages sent meanwhile wait offline", async () => {
		const relay = await startVanishingRelay(t.port);
		relays.push(relay);
		const alice = await online(relay.port, "alice", "phone");
		const bob = await online(t.port, "bob", "desk");
		answerPings(bob);
		clients.push(alice, bob);
		const dead = await deadPeers();
		relay.vanish();
		const mark = bob.received.length;
		for (let i = 1; i <= 3; i++)
			bob.send(
				`<message to='alice@localhost/phone' type='chat' id='lost${i}'><body>while away ${i}</body></message>`,
			);
		// RFC 6121 §4.5.2: the session ended; bob (subscribed to alice) is told.
		await bob.waitFor(
			/<presence(?=[^>]*from="alice@localhost\/phone")(?=[^>]*type="unavailable")/,
			mark,
			20_000,
		);
		assert.equal(sessionOf("alice", "phone"), undefined, "the server dropped the session");
		assert.equal(await deadPeers(), dead + 1);
		// XEP-0160: at the next login, the messages the dead connection never confirmed.
		const again = await online(t.port, "alice", "phone2");
		answerPings(again);
		clients.push(again);
		await again.waitFor(/while away 3/, 0, 20_000);
		for (let i = 1; i <= 3; i++) assert.match(again.received, new RegExp(`while away ${i}`));
		assert.match(again.received, /<delay xmlns="urn:xmpp:delay"/, "with their delay stamps");
		// Gone before the next test: a resource online would get that test's messages at once.
		again.close();
		await waitFor(() => !sessionOf("alice", "phone2"), "alice's logout");
	});

	test("over WebSocket: a vanished client is dropped and what was sent to it waits offline", async () => {
		const relay = await startVanishingRelay(t.httpPort);
		relays.push(relay);
		const alice = await connect(
			`ws://127.0.0.1:${relay.port}/xmpp-websocket`,
			"alice",
			"pw-alice",
			{
				resource: "tab",
			},
		);
		await alice.xmpp.send(xml("presence"));
		const bob = await online(t.port, "bob", "ws-desk");
		answerPings(bob);
		clients.push(bob);
		await waitFor(() => sessionOf("alice", "tab")?.available, "alice available");
		const dead = await deadPeers();
		relay.vanish();
		bob.send(
			"<message to='alice@localhost/tab' type='chat' id='ws1'><body>to the tab</body></message>",
		);
		await waitFor(
			() => !sessionOf("alice", "tab"),
			"alice's WebSocket session to be dropped",
			20_000,
		);
		assert.equal(await deadPeers(), dead + 1);
		// The client library would try to reconnect through the dead relay: it is stopped here.
		(alice.xmpp as unknown as { reconnect?: { stop(): void } }).reconnect?.stop();
		alice.xmpp.on("error", () => {});
		(alice.xmpp as unknown as { socket?: { destroy?(): void } }).socket?.destroy?.();
		const again = await online(t.port, "alice", "after-ws");
		answerPings(again);
		clients.push(again);
		await again.waitFor(/to the tab/, 0, 20_000);
		again.close();
		await waitFor(() => !sessionOf("alice", "after-ws"), "alice's logout");
	});

	test("over BOSH: a vanished client is dropped and what was sent to it waits offline", async () => {
		const alice = new BoshClient(`http://127.0.0.1:${t.httpPort}/http-bind`);
		await alice.login("alice", "pw-alice", "bosh");
		alice.send("<presence xmlns='jabber:client'/>");
		alice.startPolling();
		const bob = await online(t.port, "bob", "bosh-desk");
		answerPings(bob);
		clients.push(bob);
		await waitFor(() => sessionOf("alice", "bosh")?.available, "alice available");
		const dead = await deadPeers();
		alice.vanish();
		bob.send(
			"<message to='alice@localhost/bosh' type='chat' id='b1'><body>to the browser</body></message>",
		);
		await waitFor(() => !sessionOf("alice", "bosh"), "alice's BOSH session to be dropped", 20_000);
		assert.equal(await deadPeers(), dead + 1);
		const again = await online(t.port, "alice", "after-bosh");
		answerPings(again);
		clients.push(again);
		await again.waitFor(/to the browser/, 0, 20_000);
		again.close();
		await waitFor(() => !sessionOf("alice", "after-bosh"), "alice's logout");
	});

	test("a client that answers the pings stays, and what it confirmed is not stored offline", async () => {
		const carol = await online(t.port, "carol", "live");
		answerPings(carol);
		const bob = await online(t.port, "bob", "desk2");
		answerPings(bob);
		clients.push(carol, bob);
		bob.send(
			"<message to='carol@localhost/live' type='chat' id='kept1'><body>hello carol</body></message>",
		);
		await carol.waitFor(/hello carol/, 0);
		// Several ping rounds (idle_ping 1 s), each answered.
		const pings = () => (carol.received.match(/urn:xmpp:ping/g) ?? []).length;
		await waitFor(() => pings() >= 3, "three pings from the server", 20_000);
		assert.ok(sessionOf("carol", "live"), "carol's session is still there");
		carol.close();
		await waitFor(() => !sessionOf("carol", "live"), "carol's logout");
		const stored = await t.server.hosts.get("localhost")?.archive("offline").count("carol");
		assert.equal(stored, 0, "nothing of what carol confirmed went to offline storage");
	});

	test("a client that never answers is dropped even while it is sent messages", async () => {
		const dave = await online(t.port, "dave", "mute");
		const bob = await online(t.port, "bob", "desk3");
		answerPings(bob);
		clients.push(dave, bob);
		for (let i = 1; i <= 2; i++)
			bob.send(
				`<message to='dave@localhost/mute' type='chat' id='u${i}'><body>unconfirmed ${i}</body></message>`,
			);
		await dave.waitFor(/unconfirmed 2/, 0);
		// dave's raw client reads everything but answers no ping (an IQ it must answer, RFC 6120 §8.2.3).
		await dave.waitFor(/connection-timeout/, 0, 20_000); // RFC 6120 §4.9.3.4
		assert.match(dave.received, /urn:xmpp:ping/, "it was asked first");
		await waitFor(() => !sessionOf("dave", "mute"), "dave's session to end");
		// It read them, but never confirmed it: they are kept for its next login as well
		// (docs/architecture.md "Dead connections": a client that answers no ping gets them twice).
		const offline = t.server.hosts.get("localhost")?.archive("offline");
		await waitFor(async () => (await offline?.count("dave")) === 2, "the two messages offline");
	});
});
