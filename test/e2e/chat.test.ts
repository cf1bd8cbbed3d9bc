/**
 * The core promise of issue 2: two real XMPP clients (xmpp.js) log in over STARTTLS and over
 * direct TLS and chat through Parley.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type XmlElement, xml } from "@xmpp/client";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect } from "../helpers/xmpp-client.ts";

let t: TestServer;

before(async () => {
	t = await startTestServer({
		users: [
			["alice@localhost", "alice-secret"],
			["bob@localhost", "bob-secret"],
		],
	});
});
after(() => t.stop());

test("two clients chat over STARTTLS (SCRAM-SHA-1) and direct TLS (PLAIN)", async () => {
	const alice = await connect(`xmpp://127.0.0.1:${t.port}`, "alice", "alice-secret", {
		mechanism: "SCRAM-SHA-1",
		resource: "laptop",
	});
	const bob = await connect(`xmpps://localhost:${t.tlsPort}`, "bob", "bob-secret", {
		mechanism: "PLAIN",
		resource: "phone",
	});
	try {
		assert.equal(alice.xmpp.jid?.toString(), "alice@localhost/laptop");
		assert.equal(bob.xmpp.jid?.toString(), "bob@localhost/phone");
		// xmpp.js only reports the mechanisms it implements, out of those offered.
		assert.deepEqual(alice.mechanisms, ["SCRAM-SHA-1", "PLAIN"]);

		await alice.xmpp.send(xml("presence"));
		await bob.xmpp.send(xml("presence"));

		// To a full JID (RFC 6120 §10.5.4), with an unknown extension kept intact (seed 003).
		await alice.xmpp.send(
			xml(
				"message",
				{ to: "bob@localhost/phone", type: "chat", id: "m1" },
				xml("body", {}, "Hi Bob <3 & café"),
				xml("greet", { xmlns: "http://example.com/greetprotocol" }, xml("type", {}, "wave")),
			),
		);
		const m1 = await waitFor(
			() => bob.stanzas.find((s) => s.is("message") && s.attrs.id === "m1"),
			"bob to receive m1",
		);
		// RFC 6120 §8.1.2.1: the server stamps the sender's full JID.
		assert.equal(m1.attrs.from, "alice@localhost/laptop");
		assert.equal(m1.getChildText("body"), "Hi Bob <3 & café");
		assert.equal(
			m1.getChild("greet", "http://example.com/greetprotocol")?.getChildText("type"),
			"wave",
		);

		// To a bare JID (RFC 6121 §8.5.2.1.1): delivered to the available resource.
		await bob.xmpp.send(
			xml(
				"message",
				{ to: "alice@localhost", type: "chat", id: "m2" },
				xml("body", {}, "Hello Alice"),
			),
		);
		const m2 = await waitFor(
			() => alice.stanzas.find((s) => s.is("message") && s.attrs.id === "m2"),
			"alice to receive m2",
		);
		assert.equal(m2.attrs.from, "bob@localhost/phone");
		assert.equal(m2.getChildText("body"), "Hello Alice");
	} finally {
		await alice.xmpp.stop();
		await bob.xmpp.stop();
	}
});

test("a wrong password is refused with not-authorized", async () => {
	await assert.rejects(
		connect(`xmpp://127.0.0.1:${t.port}`, "alice", "wrong", { mechanism: "SCRAM-SHA-1" }),
		(err: Error & { condition?: string }) => {
			// RFC 6120 §6.5.10 not-authorized.
			assert.equal(err.condition, "not-authorized");
			return true;
		},
	);
});

test("the server answers disco#info and ping", async () => {
	const alice = await connect(`xmpp://127.0.0.1:${t.port}`, "alice", "alice-secret");
	try {
		const info = await alice.xmpp.iqCaller.get(
			xml("query", { xmlns: "http://jabber.org/protocol/disco#info" }),
			"localhost",
		);
		const features = info.children
			.filter((c): c is XmlElement => typeof c !== "string" && c.name === "feature")
			.map((f) => f.attrs.var);
		// XEP-0030 §3.1: the server lists the features of its loaded modules.
		for (const f of [
			"http://jabber.org/protocol/disco#info",
			"urn:xmpp:ping",
			"jabber:iq:version",
			"urn:xmpp:time",
		])
			assert.ok(features.includes(f), `disco#info lists ${f}`);
		// XEP-0199 §4.2: a ping to the server gets an empty result.
		const pong = await alice.xmpp.iqCaller.request(
			xml("iq", { type: "get", to: "localhost" }, xml("ping", { xmlns: "urn:xmpp:ping" })),
		);
		assert.equal(pong.attrs.type, "result");
	} finally {
		await alice.xmpp.stop();
	}
});
