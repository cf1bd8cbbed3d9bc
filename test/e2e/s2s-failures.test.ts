/**
 * Federation when the other side fails (issue 12): a peer that closes during set-up, one that
 * never answers dialback, a full queue, and a flood from one peer while everyone else is
 * served. Fake peers are plain sockets on loopback; every waiting stanza must come back to its
 * sender as an error with its payload (RFC 6120 §8.3), never be dropped silently.
 */
import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { xml } from "@xmpp/client";
import { parseDocument } from "../../src/xml/parser.ts";
import { freePort } from "../helpers/pg-cluster.ts";
import { RawClient } from "../helpers/raw.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect, type XmppConnection } from "../helpers/xmpp-client.ts";

const STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const HEADER = (id: string) =>
	`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' id='${id}' version='1.0'>`;

/** A fake remote server: `onConnect` decides what it does with each connection. */
async function fakePeer(
	onConnect: (socket: net.Socket) => void,
): Promise<{ port: number; close(): void }> {
	const sockets = new Set<net.Socket>();
	const server = net.createServer((s) => {
		sockets.add(s);
		s.on("error", () => {});
		s.on("close", () => sockets.delete(s));
		onConnect(s);
	});
	await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
	return {
		port: (server.address() as net.AddressInfo).port,
		close() {
			for (const s of sockets) s.destroy();
			server.close();
		},
	};
}

describe("a peer that fails", () => {
	let a: TestServer;
	const peers: { close(): void }[] = [];
	let alice: XmppConnection;

	before(async () => {
		// Closes the connection right after its stream header.
		const closer = await fakePeer((s) =>
			s.once("data", () => {
				s.write(HEADER("c1"));
				s.destroy();
			}),
		);
		// Offers dialback without TLS, then never answers it.
		const silent = await fakePeer((s) =>
			s.once("data", () =>
				s.write(
					`${HEADER("s1")}<stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>`,
				),
			),
		);
		peers.push(closer, silent);
		a = await startTestServer({
			config: {
				hosts: { "a.example": {} },
				listeners: { s2s: { enabled: true, address: "127.0.0.1", port: 0 } },
				s2s: {
					routes: {
						"closer.example": `127.0.0.1:${closer.port}`,
						"silent.example": `127.0.0.1:${silent.port}`,
					},
					// The fake peers speak no TLS; a short set-up limit keeps the test short.
					require_encryption: false,
					connect_timeout: 1,
					queue_size: 2,
				},
			},
			users: [["alice@a.example", "alice-pw"]],
		});
		alice = await connect(`xmpp://127.0.0.1:${a.port}`, "alice", "alice-pw", {
			domain: "a.example",
			resource: "r",
		});
	});
	after(async () => {
		await alice?.xmpp.stop();
		await a?.stop();
		for (const p of peers) p.close();
	});

	const bounce = (id: string) =>
		waitFor(
			() =>
				alice.stanzas.find((s) => s.is("message") && s.attrs.id === id && s.attrs.type === "error"),
			`the bounce of ${id}`,
		);
	const send = (to: string, id: string) =>
		alice.xmpp.send(xml("message", { to, type: "chat", id }, xml("body", {}, `payload ${id}`)));

	test("the peer closes during set-up: remote-server-not-found, payload kept (RFC 6120 §8.3.3.16)", async () => {
		await send("x@closer.example", "c1");
		const err = await bounce("c1");
		assert.ok(err.getChild("error")?.getChild("remote-server-not-found", STANZAS));
		assert.equal(err.getChildText("body"), "payload c1");
	});

	test("the peer never answers dialback: remote-server-timeout after s2s.connect_timeout (§8.3.3.17)", async () => {
		await send("x@silent.example", "t1");
		const err = await bounce("t1");
		assert.ok(err.getChild("error")?.getChild("remote-server-timeout", STANZAS));
		assert.equal(err.getChildText("body"), "payload t1");
	});

	test("past s2s.queue_size waiting stanzas, the next bounces at once with resource-constraint (§8.3.3.18)", async () => {
		for (const id of ["q1", "q2", "q3"]) await send("x@silent.example", id);
		const third = await bounce("q3");
		assert.ok(third.getChild("error")?.getChild("resource-constraint", STANZAS));
		// The two that waited come back too when the set-up gives up: nothing is dropped.
		for (const id of ["q1", "q2"]) {
			const err = await bounce(id);
			assert.ok(err.getChild("error")?.getChild("remote-server-timeout", STANZAS));
		}
	});
});

describe("a peer that floods", () => {
	let a: TestServer;
	let b: TestServer;
	let bS2s: number;

	before(async () => {
		const [aS2s, bPort] = await Promise.all([freePort(), freePort()]);
		bS2s = bPort;
		a = await startTestServer({
			config: {
				hosts: { "a.example": {} },
				listeners: { s2s: { enabled: true, address: "127.0.0.1", port: aS2s } },
				s2s: { routes: { "b.example": `127.0.0.1:${bS2s}` } },
			},
		});
		b = await startTestServer({
			config: {
				hosts: { "b.example": {} },
				listeners: { s2s: { enabled: true, address: "127.0.0.1", port: bS2s } },
				s2s: { routes: { "a.example": `127.0.0.1:${aS2s}` }, max_streams_per_domain: 2 },
			},
			users: [
				["bob@b.example", "bob-pw"],
				["carl@b.example", "carl-pw"],
			],
		});
	});
	after(async () => {
		await a?.stop();
		await b?.stop();
	});

	/** A raw stream to B that authenticates as a.example with A's real dialback key (XEP-0185). */
	async function asA(): Promise<RawClient> {
		const header = `<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='a.example' to='b.example' version='1.0'>`;
		const c = await RawClient.connect(bS2s);
		c.send(header);
		await c.waitFor(/<\/stream:features>/);
		c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
		await c.waitFor(/<proceed/);
		await c.startTls("b.example");
		c.received = "";
		c.send(header);
		const opened = await c.waitFor(/<stream:stream[^>]*>/);
		const id = /id=["']([^"']+)["']/.exec(opened)?.[1] ?? "";
		await c.waitFor(/<\/stream:features>/);
		const secret = a.server.hosts.get("a.example")?.secret ?? Buffer.alloc(0);
		const key = createHmac("sha256", createHash("sha256").update(secret).digest("hex"))
			.update(`b.example a.example ${id}`)
			.digest("hex");
		c.send(`<db:result from='a.example' to='b.example'>${key}</db:result>`);
		await c.waitFor(/<db:result[^>]*(type=["']valid|<policy-violation)|<policy-violation/);
		return c;
	}

	test("5000 stanzas in one burst from one peer: the server reads it in step and serves the others (RFC 6120 §10.1)", async () => {
		const flood = await asA();
		assert.match(flood.received, /type=["']valid/);

		const bob = await connect(`xmpp://127.0.0.1:${b.port}`, "bob", "bob-pw", {
			domain: "b.example",
			resource: "r",
		});
		try {
			await bob.xmpp.send(xml("presence"));
			let burst = "";
			for (let i = 0; i < 5000; i++)
				burst += `<message from='mallory@a.example/x' to='bob@b.example/r' type='chat' id='f${i}'><body>${i}</body></message>`;
			flood.send(burst);
			// Meanwhile another user logs in and is answered.
			const carl = await connect(`xmpp://127.0.0.1:${b.port}`, "carl", "carl-pw", {
				domain: "b.example",
				resource: "r",
			});
			try {
				const pong = await carl.xmpp.iqCaller.request(
					xml("iq", { type: "get", to: "b.example" }, xml("ping", { xmlns: "urn:xmpp:ping" })),
				);
				assert.equal(pong.attrs.type, "result");
			} finally {
				await carl.xmpp.stop();
			}
			// And the burst arrives whole and in order (RFC 6120 §10.1).
			await waitFor(
				() => bob.stanzas.filter((s) => s.is("message")).length >= 5000,
				"all 5000 messages",
				60_000,
			);
			const ids = bob.stanzas.filter((s) => s.is("message")).map((s) => s.attrs.id);
			assert.deepEqual(
				ids.slice(0, 5000),
				Array.from({ length: 5000 }, (_, i) => `f${i}`),
			);
		} finally {
			await bob.xmpp.stop();
			// RFC 6120 §4.4: closing our stream makes the server close its own, and forget it.
			flood.send("</stream:stream>");
			await flood.waitClosed();
		}
	});

	test("s2s.max_streams_per_domain: one stream more from the same domain is closed (policy-violation)", async () => {
		// A's own stream to B is one (made here so the count does not depend on test order).
		const bob = await connect(`xmpp://127.0.0.1:${b.port}`, "bob", "bob-pw", {
			domain: "b.example",
			resource: "r",
		});
		try {
			await bob.xmpp.send(xml("presence"));
			const m = parseDocument(
				"<message xmlns='jabber:client' from='a@a.example' to='bob@b.example/r' id='legit'/>",
				{ maxStanzaBytes: 1000, maxDepth: 5 },
			);
			await a.server.router.route(m);
			await waitFor(
				() => bob.stanzas.find((s) => s.attrs.id === "legit"),
				"a.example's own stream to b.example",
			);
		} finally {
			await bob.xmpp.stop();
		}
		const second = await asA();
		try {
			assert.match(second.received, /type=["']valid/, "the second stream of a.example");
			const third = await asA();
			assert.match(third.received, /<policy-violation/, "the third (the limit is 2)");
			await third.waitClosed();
			// Counted under the limit's configuration key (docs/architecture.md "Metrics").
			assert.match(
				(await b.server.metricsText()).body,
				/^parley_connections_refused_total\{limit="s2s\.max_streams_per_domain"\} 1$/m,
			);
		} finally {
			second.send("</stream:stream>");
			await second.waitClosed();
		}
	});
});
