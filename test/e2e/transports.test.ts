/**
 * A web session is a session like any other (issue 5): one chat scenario, run with real client
 * code over TCP (xmpp.js, direct TLS), WebSocket (xmpp.js, wss://) and BOSH (the fetch client),
 * and across transports.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { BoshClient } from "../helpers/bosh.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect } from "../helpers/xmpp-client.ts";

type Transport = "tcp" | "websocket" | "bosh";

/** What the scenario needs from a received stanza; xmpp.js and our Element both fit. */
interface Received {
	name: string;
	attrs: Record<string, string>;
	getChildText(name: string): string | null | undefined;
	getChild(name: string, ns?: string): unknown;
}

interface Chatter {
	jid: string;
	/** Writes one complete stanza (with xmlns='jabber:client'). */
	send(stanza: string): void;
	waitFor(pred: (s: Received) => boolean, what: string): Promise<Received>;
	stop(): Promise<void>;
}

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

async function xmppJs(service: string, user: string, password: string, resource: string) {
	const { xmpp, jid, stanzas } = await connect(service, user, password, { resource });
	const write = (xmpp as unknown as { write(s: string): Promise<void> }).write.bind(xmpp);
	return {
		jid,
		send: (s: string) => void write(s),
		waitFor: (pred: (s: Received) => boolean, what: string) =>
			waitFor(
				() => stanzas.find((s) => pred(s as unknown as Received)) as Received | undefined,
				what,
			),
		stop: () => xmpp.stop(),
	} satisfies Chatter;
}

async function login(
	transport: Transport,
	user: string,
	password: string,
	resource: string,
): Promise<Chatter> {
	if (transport === "tcp")
		return xmppJs(`xmpps://localhost:${t.tlsPort}`, user, password, resource);
	if (transport === "websocket")
		return xmppJs(`wss://localhost:${t.httpsPort}/xmpp-websocket`, user, password, resource);
	const bosh = new BoshClient(`https://localhost:${t.httpsPort}/http-bind`);
	const jid = await bosh.login(user, password, resource);
	bosh.startPolling();
	return {
		jid,
		send: (s) => bosh.send(s),
		waitFor: (pred, what) => bosh.waitFor((el) => pred(el), what),
		stop: async () => {
			await bosh.terminate();
		},
	};
}

/** The scenario: presence, messages to full and bare JIDs with an extension, a ping, directed presence. */
async function chat(alice: Chatter, bob: Chatter): Promise<void> {
	alice.send("<presence xmlns='jabber:client'/>");
	bob.send("<presence xmlns='jabber:client'/>");
	alice.send(
		`<message xmlns='jabber:client' to='${bob.jid}' type='chat' id='t1'><body>Hi Bob &lt;3 &amp; café</body><greet xmlns='http://example.com/greet'><type>wave</type></greet></message>`,
	);
	const m1 = await bob.waitFor((s) => s.name === "message" && s.attrs.id === "t1", "t1");
	// RFC 6120 §8.1.2.1: the server stamps the sender's full JID; §10.5.4 delivery to a full JID.
	assert.equal(m1.attrs.from, alice.jid);
	assert.equal(m1.getChildText("body"), "Hi Bob <3 & café");
	// Unknown extensions pass through untouched (RFC 6120 §8.4).
	assert.ok(m1.getChild("greet", "http://example.com/greet"), "extension kept");

	// RFC 6121 §8.5.2.1.1: a message to the bare JID goes to the available resource.
	bob.send(
		"<message xmlns='jabber:client' to='alice@localhost' type='chat' id='t2'><body>Hello Alice</body></message>",
	);
	const m2 = await alice.waitFor((s) => s.name === "message" && s.attrs.id === "t2", "t2");
	assert.equal(m2.attrs.from, bob.jid);
	assert.equal(m2.getChildText("body"), "Hello Alice");

	// XEP-0199 §4.2: the server answers a ping whatever the transport.
	alice.send(
		"<iq xmlns='jabber:client' type='get' to='localhost' id='t3'><ping xmlns='urn:xmpp:ping'/></iq>",
	);
	const pong = await alice.waitFor((s) => s.name === "iq" && s.attrs.id === "t3", "pong");
	assert.equal(pong.attrs.type, "result");

	// RFC 6121 §4.6: directed presence reaches the full JID.
	bob.send(
		`<presence xmlns='jabber:client' to='${alice.jid}' id='t4'><status>here</status></presence>`,
	);
	const p = await alice.waitFor((s) => s.name === "presence" && s.attrs.id === "t4", "presence");
	assert.equal(p.attrs.from, bob.jid);
	assert.equal(p.getChildText("status"), "here");
}

const pairs: [Transport, Transport][] = [
	["tcp", "tcp"],
	["websocket", "websocket"],
	["bosh", "bosh"],
	["websocket", "bosh"],
	["bosh", "tcp"],
	["tcp", "websocket"],
];

for (const [a, b] of pairs) {
	test(`the chat scenario: alice over ${a}, bob over ${b}`, async () => {
		const alice = await login(a, "alice", "alice-secret", `a-${a}`);
		const bob = await login(b, "bob", "bob-secret", `b-${b}`);
		try {
			await chat(alice, bob);
		} finally {
			await alice.stop();
			await bob.stop();
		}
	});
}

test("a closed web session is gone from the host like a TCP one", async () => {
	const host = t.server.hosts.get("localhost");
	for (const transport of ["websocket", "bosh"] as const) {
		const c = await login(transport, "alice", "alice-secret", `gone-${transport}`);
		assert.ok(host?.sessions.get("alice")?.get(`gone-${transport}`), "bound");
		await c.stop();
		// session/closed fired and the resource was removed (RFC 6120 §7.1 resource lifetime).
		await waitFor(
			() => (host?.sessions.get("alice")?.get(`gone-${transport}`) ? undefined : true),
			"the resource to go away",
		);
	}
});
