/**
 * Dead federation links (issue 21): an outgoing s2s stream whose peer vanishes (no FIN, no
 * RST, nothing read) is found by a XEP-0199 ping that is never answered, and the messages
 * written to it since the last answered ping go again on a new stream instead of being lost
 * (src/s2s/outgoing.ts, src/net/liveness.ts). The vanishing is real: a TCP relay between the
 * two servers stops moving bytes (test/helpers/vanishing-relay.ts).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { xml } from "@xmpp/client";
import { freePort } from "../helpers/pg-cluster.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { startVanishingRelay, type VanishingRelay } from "../helpers/vanishing-relay.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect, type XmppConnection } from "../helpers/xmpp-client.ts";

let a: TestServer;
let b: TestServer;
let relay: VanishingRelay;

before(async () => {
	const [aS2s, bS2s] = await Promise.all([freePort(), freePort()]);
	b = await startTestServer({
		config: {
			hosts: { "b.example": {} },
			listeners: { s2s: { enabled: true, address: "127.0.0.1", port: bS2s } },
			s2s: { routes: { "a.example": `127.0.0.1:${aS2s}` } },
		},
		users: [["bob@b.example", "bob-pw"]],
	});
	// a.example reaches b.example only through the relay; b answers a directly.
	relay = await startVanishingRelay(bS2s);
	a = await startTestServer({
		config: {
			hosts: { "a.example": {} },
			listeners: { s2s: { enabled: true, address: "127.0.0.1", port: aS2s } },
			s2s: { routes: { "b.example": `127.0.0.1:${relay.port}` }, idle_ping: 1, ping_timeout: 1 },
		},
		users: [["alice@a.example", "alice-pw"]],
	});
});
after(async () => {
	await a?.stop();
	await b?.stop();
	await relay?.close();
});

function chat(from: XmppConnection, to: string, id: string) {
	return from.xmpp.send(xml("message", { to, type: "chat", id }, xml("body", {}, id)));
}

test("messages written to a vanished s2s stream are sent again on a new one, once each (issue 21)", async () => {
	const alice = await connect(`xmpp://127.0.0.1:${a.port}`, "alice", "alice-pw", {
		domain: "a.example",
		resource: "r",
	});
	const bob = await connect(`xmpp://127.0.0.1:${b.port}`, "bob", "bob-pw", {
		domain: "b.example",
		resource: "r",
	});
	try {
		await bob.xmpp.send(xml("presence"));
		const got = (id: string) =>
			bob.stanzas.filter((s) => s.is("message") && s.attrs.id === id).length;
		await chat(alice, "bob@b.example/r", "before");
		await waitFor(() => got("before") === 1, "the first message over the relay");

		relay.vanish();
		await chat(alice, "bob@b.example/r", "lost-1");
		await chat(alice, "bob@b.example/r", "lost-2");
		// The ping after them is never answered: the stream is dropped and both go again on a new
		// stream through the relay (new connections still pass; only the old one vanished).
		await waitFor(() => got("lost-1") === 1 && got("lost-2") === 1, "the retried messages", 15_000);
		await chat(alice, "bob@b.example/r", "after");
		await waitFor(() => got("after") === 1, "a message on the new stream");
		assert.equal(got("lost-1"), 1);
		assert.equal(got("lost-2"), 1);
		// At least once, not exactly once: "before" went before the vanishing, but if no ping had
		// confirmed it yet, it is sent again too and bob has it twice (without stream management on
		// s2s, nothing tells a message read from one lost with the connection).
		assert.ok(got("before") >= 1);
	} finally {
		await alice.xmpp.stop();
		await bob.xmpp.stop();
	}
});

test("a peer that ends its stream itself (system-shutdown) read what it got: nothing is sent again or bounced (RFC 6120 §4.4)", async () => {
	const [cS2s, dS2s] = await Promise.all([freePort(), freePort()]);
	const d = await startTestServer({
		config: {
			hosts: { "d.example": {} },
			listeners: { s2s: { enabled: true, address: "127.0.0.1", port: dS2s } },
			s2s: { routes: { "c.example": `127.0.0.1:${cS2s}` } },
		},
		users: [["dan@d.example", "dan-pw"]],
	});
	const c = await startTestServer({
		config: {
			hosts: { "c.example": {} },
			listeners: { s2s: { enabled: true, address: "127.0.0.1", port: cS2s } },
			// No ping answers the message before d stops: it counts as unconfirmed.
			s2s: { routes: { "d.example": `127.0.0.1:${dS2s}` }, idle_ping: 60 },
		},
		users: [["carl@c.example", "carl-pw"]],
	});
	const carl = await connect(`xmpp://127.0.0.1:${c.port}`, "carl", "carl-pw", {
		domain: "c.example",
		resource: "r",
	});
	try {
		const dan = await connect(`xmpp://127.0.0.1:${d.port}`, "dan", "dan-pw", {
			domain: "d.example",
			resource: "r",
		});
		await dan.xmpp.send(xml("presence"));
		await chat(carl, "dan@d.example/r", "read");
		await waitFor(
			() => dan.stanzas.find((s) => s.is("message") && s.attrs.id === "read"),
			"dan to get the message",
		);
		await dan.xmpp.stop();
		// d stops: its incoming stream from c ends with system-shutdown (RFC 6120 §4.9.3.22).
		await d.stop();
		// The next message finds d gone and comes back; a copy of "read" sent again would have
		// come back before it, on the same new stream.
		await chat(carl, "dan@d.example/r", "after");
		await waitFor(
			() => carl.stanzas.find((s) => s.attrs.id === "after" && s.attrs.type === "error"),
			"the message sent after d stopped to come back",
			15_000,
		);
		assert.deepEqual(
			carl.stanzas.filter((s) => s.attrs.type === "error").map((s) => s.attrs.id),
			["after"],
		);
	} finally {
		await carl.xmpp.stop();
		await c.stop();
		await d.stop();
	}
});
