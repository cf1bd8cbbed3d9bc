/**
 * Slow clients over the web transports (issue 5, "slow clients: bounded memory, other sessions
 * unaffected"): a WebSocket client that stops reading and a BOSH client that stops polling are
 * dropped once too much is queued for them, long before any timeout would, while the sender
 * keeps being served. (TCP has the same test in stream.test.ts.)
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { BoshClient } from "../helpers/bosh.ts";
import type { RawClient } from "../helpers/raw.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

let t: TestServer;
let sender: RawClient;

before(async () => {
	t = await startTestServer({
		config: {
			auth: { require_encryption: false, allow_plain_without_tls: true },
			// Long enough that only the queue bound can end the sessions within the test.
			http: { bosh: { inactivity: 300, max_wait: 60 }, websocket: { ping_interval: 300 } },
		},
		users: [
			["alice@localhost", "pw-alice"],
			["bob@localhost", "pw-bob"],
		],
	});
	sender = await login(t.port, "bob", "pw-bob", { resource: "flood" });
});
after(async () => {
	sender.end();
	await t.stop();
});

const online = (resource: string) =>
	t.server.hosts.get("localhost")?.sessions.get("alice")?.has(resource) ?? false;

/** Sends `count` messages of `size` bytes to alice's resource, pinging every `pace` to pace. */
async function flood(resource: string, count: number, size: number, pace = 50): Promise<void> {
	const body = "y".repeat(size);
	for (let i = 0; i < count && online(resource); i++) {
		sender.send(
			`<message to='alice@localhost/${resource}' id='s${i}'><body>${body}</body></message>`,
		);
		if (i % pace === pace - 1) {
			const mark = sender.received.length;
			sender.send(`<iq type='get' id='pace${i}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
			await sender.waitFor(new RegExp(`id="pace${i}"`), mark, 30_000);
		}
	}
}

async function waitGone(resource: string): Promise<void> {
	for (let i = 0; i < 400 && online(resource); i++) await new Promise((r) => setTimeout(r, 25));
	assert.equal(online(resource), false, `alice/${resource} was dropped`);
}

async function senderStillServed(): Promise<void> {
	const mark = sender.received.length;
	sender.send("<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
	await sender.waitFor(/id="alive"/, mark);
}

test("a WebSocket client that stops reading is dropped (RFC 7395 transport, bounded buffer)", async () => {
	const ws = new WebSocket(`wss://localhost:${t.httpsPort}/xmpp-websocket`, ["xmpp"]);
	const messages: string[] = [];
	ws.on("message", (d) => messages.push(d.toString()));
	ws.on("error", () => {});
	await new Promise((resolve, reject) => {
		ws.once("open", resolve);
		ws.once("error", reject);
	});
	const until = async (re: RegExp) => {
		for (let i = 0; i < 400 && !messages.some((m) => re.test(m)); i++)
			await new Promise((r) => setTimeout(r, 25));
		assert.ok(
			messages.some((m) => re.test(m)),
			`${re} in ${messages.join("\n")}`,
		);
	};
	const open = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>";
	ws.send(open);
	await until(/<mechanisms/);
	ws.send(
		`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from("\0alice\0pw-alice").toString("base64")}</auth>`,
	);
	await until(/<success/);
	messages.length = 0;
	ws.send(open);
	await until(/<bind/);
	ws.send(
		"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>ws</resource></bind></iq>",
	);
	await until(/<jid>/);
	// Stop reading: the kernel buffers fill, then the server's send buffer would grow forever.
	(ws as unknown as { _socket: { pause(): void } })._socket.pause();
	await flood("ws", 200, 200_000);
	await waitGone("ws");
	await senderStillServed();
	ws.terminate();
});

test("a BOSH client that stops polling is dropped once its queue is full (XEP-0124, bounded queue)", async () => {
	const alice = new BoshClient(`https://localhost:${t.httpsPort}/http-bind`);
	await alice.login("alice", "pw-alice", "bosh");
	// No polling from here on: everything for alice is queued on the server.
	await flood("bosh", 10_050, 10, 1000);
	await waitGone("bosh");
	await senderStillServed();
});

test("see-other-uri: a moved WebSocket endpoint redirects clients (RFC 7395 §3.6.1)", async () => {
	const moved = await startTestServer({
		config: { http: { websocket: { see_other_uri: "wss://xmpp.example.org/ws" } } },
	});
	try {
		const ws = new WebSocket(`wss://localhost:${moved.httpsPort}/xmpp-websocket`, ["xmpp"]);
		const messages: string[] = [];
		ws.on("message", (d) => messages.push(d.toString()));
		ws.on("error", () => {});
		await new Promise((resolve) => ws.once("open", resolve));
		const closed = new Promise<number>((resolve) => ws.once("close", (code) => resolve(code)));
		ws.send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>");
		assert.equal(await closed, 1000);
		assert.deepEqual(messages, [
			'<close xmlns="urn:ietf:params:xml:ns:xmpp-framing" see-other-uri="wss://xmpp.example.org/ws"/>',
		]);
	} finally {
		await moved.stop();
	}
});
