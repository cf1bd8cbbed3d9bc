/**
 * XMPP over WebSocket (RFC 7395): a real client (xmpp.js) logs in and chats, and raw WebSocket
 * connections (the `ws` library) send what broken or hostile clients would.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { xml } from "@xmpp/client";
import WebSocket from "ws";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect } from "../helpers/xmpp-client.ts";

const FRAMING = "urn:ietf:params:xml:ns:xmpp-framing";
const OPEN = `<open xmlns='${FRAMING}' to='localhost' version='1.0'/>`;

/** A raw WebSocket that records every message and how the connection ended. */
class RawWs {
	readonly ws: WebSocket;
	readonly messages: string[] = [];
	closeCode: number | null = null;
	#waiters: (() => void)[] = [];

	private constructor(ws: WebSocket) {
		this.ws = ws;
		ws.on("message", (data) => {
			this.messages.push(String(data));
			this.#wake();
		});
		ws.on("close", (code) => {
			this.closeCode = code;
			this.#wake();
		});
		ws.on("error", () => {});
	}

	#wake(): void {
		for (const w of this.#waiters.splice(0)) w();
	}

	static open(
		url: string,
		protocols: string[] = ["xmpp"],
		headers: Record<string, string> = {},
	): Promise<RawWs> {
		return new Promise((resolve, reject) => {
			const ws = new WebSocket(url, protocols, { headers });
			ws.once("open", () => resolve(new RawWs(ws)));
			ws.once("unexpected-response", (_req, res) =>
				reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })),
			);
			ws.once("error", reject);
		});
	}

	send(s: string | Buffer, binary = false): void {
		this.ws.send(s, { binary });
	}

	/** Waits for a message matching `pattern` at index >= `from` (safety timeout only). */
	async waitFor(pattern: RegExp | string, from = 0, ms = 10_000): Promise<string> {
		const deadline = Date.now() + ms;
		for (;;) {
			const m = this.messages
				.slice(from)
				.find((s) => (typeof pattern === "string" ? s.includes(pattern) : pattern.test(s)));
			if (m !== undefined) return m;
			if (this.closeCode !== null)
				throw new Error(
					`closed (${this.closeCode}) before ${pattern}: ${this.messages.join("\n")}`,
				);
			if (Date.now() > deadline) throw new Error(`no ${pattern}: ${this.messages.join("\n")}`);
			await this.#sleep(deadline);
		}
	}

	async waitClosed(ms = 10_000): Promise<number> {
		const deadline = Date.now() + ms;
		while (this.closeCode === null) {
			if (Date.now() > deadline) throw new Error(`still open: ${this.messages.join("\n")}`);
			await this.#sleep(deadline);
		}
		return this.closeCode;
	}

	#sleep(deadline: number): Promise<void> {
		return new Promise((resolve) => {
			const t = setTimeout(resolve, Math.max(1, Math.min(100, deadline - Date.now())));
			this.#waiters.push(() => {
				clearTimeout(t);
				resolve();
			});
		});
	}
}

describe("WebSocket with TLS (wss://)", () => {
	let t: TestServer;
	let wss: string;
	before(async () => {
		t = await startTestServer({
			users: [
				["alice@localhost", "alice-secret"],
				["bob@localhost", "bob-secret"],
			],
		});
		wss = `wss://localhost:${t.httpsPort}/xmpp-websocket`;
	});
	after(() => t.stop());

	test("xmpp.js clients log in (SCRAM-SHA-1, PLAIN) and chat over wss:// (RFC 7395)", async () => {
		const alice = await connect(wss, "alice", "alice-secret", {
			mechanism: "SCRAM-SHA-1",
			resource: "browser",
		});
		const bob = await connect(wss, "bob", "bob-secret", { mechanism: "PLAIN", resource: "tab" });
		try {
			assert.equal(alice.xmpp.jid?.toString(), "alice@localhost/browser");
			assert.equal(bob.xmpp.jid?.toString(), "bob@localhost/tab");
			// Over TLS PLAIN is offered; no channel binding over WebSocket, so no -PLUS.
			assert.deepEqual(alice.mechanisms, ["SCRAM-SHA-1", "PLAIN"]);
			await alice.xmpp.send(xml("presence"));
			await bob.xmpp.send(xml("presence"));
			await alice.xmpp.send(
				xml(
					"message",
					{ to: "bob@localhost/tab", type: "chat", id: "w1" },
					xml("body", {}, "Hi <3"),
				),
			);
			const m = await waitFor(
				() => bob.stanzas.find((s) => s.is("message") && s.attrs.id === "w1"),
				"bob to receive w1",
			);
			// RFC 6120 §8.1.2.1: the server stamps the sender's full JID.
			assert.equal(m.attrs.from, "alice@localhost/browser");
			assert.equal(m.getChildText("body"), "Hi <3");
		} finally {
			await alice.xmpp.stop();
			await bob.xmpp.stop();
		}
	});

	test("<open/> is answered with <open/> and namespaced, one-per-message features (RFC 7395 §3.3)", async () => {
		const c = await RawWs.open(wss);
		try {
			// RFC 7395 §3.1: the server agrees on the xmpp subprotocol.
			assert.equal(c.ws.protocol, "xmpp");
			c.send(OPEN);
			const open = await c.waitFor("<open");
			// RFC 7395 §3.3.2: from, id, version in the framing namespace, self-closing.
			assert.match(open, new RegExp(`^<open xmlns="${FRAMING}"[^>]* from="localhost"[^>]*/>$`));
			assert.match(open, / id="[^"]+"/);
			assert.match(open, / version="1.0"/);
			const features = await c.waitFor("features");
			// RFC 7395 §3.3.3: every message is a complete document with its namespaces declared.
			assert.match(
				features,
				/^<stream:features xmlns:stream="http:\/\/etherx.jabber.org\/streams">/,
			);
			assert.match(features, /<\/stream:features>$/);
		} finally {
			c.ws.terminate();
		}
	});

	test("a client <close/> is answered with <close/> and the server closes the socket (RFC 7395 §3.6)", async () => {
		const c = await RawWs.open(wss);
		c.send(OPEN);
		await c.waitFor("features");
		const mark = c.messages.length;
		c.send(`<close xmlns='${FRAMING}'/>`);
		assert.equal(await c.waitFor("<close", mark), `<close xmlns="${FRAMING}"/>`);
		assert.equal(await c.waitClosed(), 1000);
	});

	test("a handshake without the xmpp subprotocol is refused (RFC 7395 §3.1)", async () => {
		await assert.rejects(RawWs.open(wss, ["chat"]), (err: { status?: number }) => {
			assert.equal(err.status, 400);
			return true;
		});
		await assert.rejects(RawWs.open(wss, []), (err: { status?: number }) => err.status === 400);
	});

	test("restricted XML gets restricted-xml, then <close/> (RFC 6120 §11.1, RFC 7395 §3.6)", async () => {
		const c = await RawWs.open(wss);
		c.send(OPEN);
		await c.waitFor("features");
		c.send("<!DOCTYPE x [<!ENTITY a 'b'>]><message xmlns='jabber:client'/>");
		const err = await c.waitFor("stream:error");
		assert.match(err, /<restricted-xml xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/);
		assert.match(err, /^<stream:error xmlns:stream="http:\/\/etherx.jabber.org\/streams">/);
		await c.waitFor("<close");
		await c.waitClosed();
	});

	test("malformed XML gets not-well-formed (RFC 6120 §4.9.3.13)", async () => {
		const c = await RawWs.open(wss);
		c.send(OPEN);
		await c.waitFor("features");
		c.send("<message xmlns='jabber:client'><body>unclosed</message>");
		assert.match(await c.waitFor("stream:error"), /<not-well-formed /);
		await c.waitClosed();
	});

	test("a stanza before <open/> is bad-format (RFC 7395 §3.4)", async () => {
		const c = await RawWs.open(wss);
		c.send("<message xmlns='jabber:client' to='bob@localhost'/>");
		assert.match(await c.waitFor("stream:error"), /<bad-format /);
		await c.waitClosed();
	});

	test("a binary frame is bad-format (RFC 7395 §3.2: text frames only)", async () => {
		const c = await RawWs.open(wss);
		c.send(OPEN);
		await c.waitFor("features");
		c.send(Buffer.from("<presence xmlns='jabber:client'/>"), true);
		assert.match(await c.waitFor("stream:error"), /<bad-format /);
		await c.waitClosed();
	});

	test("a message over the pre-auth limit gets policy-violation (RFC 6120 §4.9.3.18)", async () => {
		const c = await RawWs.open(wss);
		c.send(OPEN);
		await c.waitFor("features");
		c.send(`<message xmlns='jabber:client'><body>${"x".repeat(20_000)}</body></message>`);
		assert.match(await c.waitFor("stream:error"), /<policy-violation /);
		await c.waitClosed();
	});

	test("a frame over the stanza limit is refused by the WebSocket layer (RFC 6455 §7.4.1 1009)", async () => {
		const c = await RawWs.open(wss);
		c.send(OPEN);
		await c.waitFor("features");
		c.send(`<message xmlns='jabber:client'><body>${"x".repeat(300_000)}</body></message>`);
		assert.equal(await c.waitClosed(), 1009);
	});

	test("stanzas before authentication end the stream with not-authorized (RFC 6120 §6.4.1)", async () => {
		const c = await RawWs.open(wss);
		c.send(OPEN);
		await c.waitFor("features");
		c.send("<message xmlns='jabber:client' to='bob@localhost'><body>spam</body></message>");
		assert.match(await c.waitFor("stream:error"), /<not-authorized /);
		await c.waitClosed();
	});

	test("an unknown host gets host-unknown (RFC 6120 §4.9.3.6)", async () => {
		const c = await RawWs.open(wss);
		c.send(`<open xmlns='${FRAMING}' to='elsewhere.example' version='1.0'/>`);
		assert.match(await c.waitFor("stream:error"), /<host-unknown /);
		await c.waitClosed();
	});

	test("a bad client does not disturb another session", async () => {
		const bob = await connect(wss, "bob", "bob-secret", { resource: "steady" });
		try {
			const bad = await RawWs.open(wss);
			bad.send("<<<not xml");
			await bad.waitClosed();
			const pong = await bob.xmpp.iqCaller.request(
				xml("iq", { type: "get", to: "localhost" }, xml("ping", { xmlns: "urn:xmpp:ping" })),
			);
			// XEP-0199 §4.2: the other session is still served.
			assert.equal(pong.attrs.type, "result");
		} finally {
			await bob.xmpp.stop();
		}
	});
});

test("stopping the server sends system-shutdown and <close/> (RFC 6120 §4.9.3.22, RFC 7395 §3.6)", async () => {
	const s = await startTestServer();
	const c = await RawWs.open(`wss://localhost:${s.httpsPort}/xmpp-websocket`);
	c.send(OPEN);
	await c.waitFor("features");
	await s.stop();
	assert.match(await c.waitFor("stream:error"), /<system-shutdown /);
	await c.waitFor("<close");
	await c.waitClosed();
});

test("a peer that stops answering pings is disconnected (RFC 6455 §5.5.2, RFC 7395 §3.7)", async () => {
	const s = await startTestServer({ config: { http: { websocket: { ping_interval: 0.1 } } } });
	try {
		const url = `wss://localhost:${s.httpsPort}/xmpp-websocket`;
		const answering = await RawWs.open(url);
		// ws answers pings by itself unless autoPong is off: this one plays dead.
		const silent = await new Promise<WebSocket>((resolve, reject) => {
			const ws = new WebSocket(url, ["xmpp"], { autoPong: false });
			ws.once("open", () => resolve(ws));
			ws.once("error", reject);
		});
		const closed = new Promise<void>((resolve) => silent.once("close", () => resolve()));
		let pings = 0;
		silent.on("ping", () => pings++);
		const timeout = new Promise<string>((r) => setTimeout(() => r("still open"), 10_000).unref());
		assert.equal(await Promise.race([closed.then(() => "closed"), timeout]), "closed");
		assert.ok(pings >= 1, "the server pinged first");
		// The one that answers stays connected meanwhile.
		assert.equal(answering.closeCode, null);
		answering.ws.terminate();
	} finally {
		await s.stop();
	}
});

describe("WebSocket without TLS (ws://): secure-context rules", () => {
	let t: TestServer;
	let untrusted: TestServer;
	before(async () => {
		const config = { hosts: { localhost: { require_encryption: false } } };
		// Default trusted_proxies: loopback, which is where the test connects from.
		t = await startTestServer({ config });
		untrusted = await startTestServer({ config: { ...config, http: { trusted_proxies: [] } } });
	});
	after(async () => {
		await t.stop();
		await untrusted.stop();
	});

	async function mechanisms(port: number, headers: Record<string, string> = {}): Promise<string> {
		const c = await RawWs.open(`ws://127.0.0.1:${port}/xmpp-websocket`, ["xmpp"], headers);
		try {
			c.send(OPEN);
			return await c.waitFor("features");
		} finally {
			c.ws.terminate();
		}
	}

	test("PLAIN is not offered over plain ws:// (RFC 6120 §13.8, issue 5 secure context)", async () => {
		const f = await mechanisms(t.httpPort);
		assert.match(f, /SCRAM-SHA-1/);
		assert.doesNotMatch(f, /PLAIN/);
	});

	test("a trusted proxy's X-Forwarded-Proto: https makes the connection secure", async () => {
		assert.match(await mechanisms(t.httpPort, { "x-forwarded-proto": "https" }), /PLAIN/);
		// RFC 7239 Forwarded works the same way.
		assert.match(await mechanisms(t.httpPort, { forwarded: "for=192.0.2.1;proto=https" }), /PLAIN/);
	});

	test("an untrusted peer's X-Forwarded-Proto / Forwarded is ignored", async () => {
		assert.doesNotMatch(
			await mechanisms(untrusted.httpPort, { "x-forwarded-proto": "https" }),
			/PLAIN/,
		);
		assert.doesNotMatch(
			await mechanisms(untrusted.httpPort, { forwarded: "proto=https" }),
			/PLAIN/,
		);
	});

	test("with require_encryption, a plain ws:// stream is told so at once (RFC 6120 §5.3.1)", async () => {
		const strict = await startTestServer();
		try {
			const c = await RawWs.open(`ws://127.0.0.1:${strict.httpPort}/xmpp-websocket`);
			c.send(OPEN);
			assert.match(await c.waitFor("stream:error"), /<policy-violation /);
			await c.waitClosed();
		} finally {
			await strict.stop();
		}
	});

	test("origins outside http.cors_origins may not open a WebSocket", async () => {
		const s = await startTestServer({
			config: { http: { cors_origins: ["https://chat.example"] } },
		});
		try {
			const url = `ws://127.0.0.1:${s.httpPort}/xmpp-websocket`;
			await assert.rejects(
				RawWs.open(url, ["xmpp"], { origin: "https://evil.example" }),
				(err: { status?: number }) => err.status === 403,
			);
			const ok = await RawWs.open(url, ["xmpp"], { origin: "https://chat.example" });
			ok.ws.terminate();
		} finally {
			await s.stop();
		}
	});
});
