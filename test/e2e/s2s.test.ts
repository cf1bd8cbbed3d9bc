/**
 * Federation between two Parley servers on loopback (issue 12): real s2s streams with STARTTLS
 * and Server Dialback (XEP-0220), reached through static routes (`[s2s] routes`), with real
 * clients (xmpp.js) on each side, and raw sockets for a peer that misbehaves.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, createHmac } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { xml } from "@xmpp/client";
import { freePort } from "../helpers/pg-cluster.ts";
import { RawClient } from "../helpers/raw.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect, type XmppConnection } from "../helpers/xmpp-client.ts";

const BIN = fileURLToPath(new URL("../../bin/parley.js", import.meta.url));

let a: TestServer;
let b: TestServer;
let c: TestServer;
let aS2s: number;
let bS2s: number;
let cTls: number;
let closedPort: number;

function federated(domain: string, port: number, routes: Record<string, string>) {
	return {
		hosts: { [domain]: {} },
		listeners: { s2s: { enabled: true, address: "127.0.0.1", port } },
		s2s: { routes },
	};
}

before(async () => {
	[aS2s, bS2s, cTls, closedPort] = await Promise.all([
		freePort(),
		freePort(),
		freePort(),
		freePort(),
	]);
	a = await startTestServer({
		config: federated("a.example", aS2s, {
			"b.example": `127.0.0.1:${bS2s}`,
			"c.example": `tls:127.0.0.1:${cTls}`,
			"nowhere.example": `127.0.0.1:${closedPort}`,
		}),
		users: [["alice@a.example", "alice-pw"]],
	});
	b = await startTestServer({
		config: federated("b.example", bS2s, { "a.example": `127.0.0.1:${aS2s}` }),
		users: [["bob@b.example", "bob-pw"]],
	});
	// c.example listens for servers on XEP-0368 direct TLS only.
	c = await startTestServer({
		config: {
			hosts: { "c.example": {} },
			listeners: { s2s_direct_tls: { enabled: true, address: "127.0.0.1", port: cTls } },
			s2s: { routes: { "a.example": `127.0.0.1:${aS2s}` } },
		},
		users: [["carol@c.example", "carol-pw"]],
	});
});
after(async () => {
	await a?.stop();
	await b?.stop();
	await c?.stop();
});

async function login(t: TestServer, user: string, domain: string): Promise<XmppConnection> {
	return connect(`xmpp://127.0.0.1:${t.port}`, user, `${user}-pw`, { domain, resource: "r" });
}

describe("Parley to Parley", () => {
	test("a chat message crosses both ways, unknown payload intact (RFC 6120 §10.4, seed 003)", async () => {
		const alice = await login(a, "alice", "a.example");
		const bob = await login(b, "bob", "b.example");
		try {
			await alice.xmpp.send(xml("presence"));
			await bob.xmpp.send(xml("presence"));
			await alice.xmpp.send(
				xml(
					"message",
					{ to: "bob@b.example/r", type: "chat", id: "s1" },
					xml("body", {}, "hello from a <&>"),
					xml("x", { xmlns: "urn:example:unknown" }, xml("y", {}, "kept")),
				),
			);
			const m = await waitFor(
				() => bob.stanzas.find((s) => s.is("message") && s.attrs.id === "s1"),
				"bob to get the message",
			);
			// The receiving server takes `from` as the authenticated peer stamped it (RFC 6120 §8.1.2.2).
			assert.equal(m.attrs.from, "alice@a.example/r");
			assert.equal(m.getChildText("body"), "hello from a <&>");
			assert.equal(m.getChild("x", "urn:example:unknown")?.getChildText("y"), "kept");
			// jabber:server on the wire is jabber:client again for the client (RFC 6120 §4.8.3).
			assert.equal(m.getChild("body")?.attrs.xmlns, undefined);

			await bob.xmpp.send(
				xml("message", { to: "alice@a.example", type: "chat", id: "s2" }, xml("body", {}, "hi a")),
			);
			const reply = await waitFor(
				() => alice.stanzas.find((s) => s.is("message") && s.attrs.id === "s2"),
				"alice to get the reply",
			);
			assert.equal(reply.attrs.from, "bob@b.example/r");

			// Counted in a's metrics (docs/architecture.md "Metrics"): one message out, one in, on
			// a's outgoing stream and b's (a's incoming one).
			const { body } = await a.server.metricsText();
			const sample = (key: string) =>
				Number(new RegExp(`^${key.replace(/[{}]/g, "\\$&")} (\\S+)$`, "m").exec(body)?.[1]);
			assert.equal(sample('parley_stanzas_sent_total{stream="s2s",kind="message"}'), 1);
			assert.equal(sample('parley_stanzas_received_total{stream="s2s",kind="message"}'), 1);
			assert.ok(sample('parley_s2s_streams{direction="outgoing"}') >= 1);
			assert.ok(sample('parley_s2s_streams{direction="incoming"}') >= 1);
		} finally {
			await alice.xmpp.stop();
			await bob.xmpp.stop();
		}
	});

	test("`parley s2s` lists the open streams with direction, domains, authentication and TLS", async () => {
		const file = join(a.dataDir, "parley.toml");
		writeFileSync(file, `[server]\ndata_dir = ${JSON.stringify(a.dataDir)}\n`);
		const run = async (...args: string[]) =>
			(await promisify(execFile)(process.execPath, [BIN, "s2s", "--config", file, ...args])).stdout;
		// The status file follows the streams within a fifth of a second.
		const text = await waitFor(async () => {
			const out = await run();
			return /outgoing +a\.example -> b\.example +ready/.test(out) ? out : undefined;
		}, "a.example's stream to b.example in the list");
		assert.match(text, /outgoing +a\.example -> b\.example +ready +dialback +TLSv1\.3/);
		// b.example's stream to a.example carries its answers (RFC 6120 §2.5: streams are one-way).
		assert.match(text, /incoming +a\.example <- b\.example +ready +dialback +TLSv1\.3/);
		const json = JSON.parse(await run("--json")) as { direction: string; remote: string[] }[];
		assert.ok(json.some((s) => s.direction === "outgoing" && s.remote[0] === "b.example"));
	});

	test("an IQ to the remote server comes back with its result (XEP-0199 over s2s)", async () => {
		const alice = await login(a, "alice", "a.example");
		try {
			const result = await alice.xmpp.iqCaller.request(
				xml(
					"iq",
					{ type: "get", to: "b.example", id: "p1" },
					xml("ping", { xmlns: "urn:xmpp:ping" }),
				),
			);
			assert.equal(result.attrs.type, "result");
			assert.equal(result.attrs.from, "b.example");
		} finally {
			await alice.xmpp.stop();
		}
	});

	test("a subscription across servers: both see each other's presence (RFC 6121 §3, §4)", async () => {
		const alice = await login(a, "alice", "a.example");
		const bob = await login(b, "bob", "b.example");
		try {
			await alice.xmpp.send(xml("presence"));
			await bob.xmpp.send(xml("presence"));
			await alice.xmpp.send(xml("presence", { to: "bob@b.example", type: "subscribe" }));
			await waitFor(
				() =>
					bob.stanzas.find(
						(s) =>
							s.is("presence") &&
							s.attrs.type === "subscribe" &&
							s.attrs.from === "alice@a.example",
					),
				"bob to get the subscription request",
			);
			await bob.xmpp.send(xml("presence", { to: "alice@a.example", type: "subscribed" }));
			await waitFor(
				() =>
					alice.stanzas.find(
						(s) =>
							s.is("presence") && s.attrs.from === "bob@b.example/r" && s.attrs.type === undefined,
					),
				"alice to see bob available",
			);
		} finally {
			await alice.xmpp.stop();
			await bob.xmpp.stop();
		}
	});

	test("logging in again, the user's server probes the remote contact, who answers (RFC 6121 §4.3)", async () => {
		// After the subscription above, alice is subscribed to bob (on b.example).
		const bob = await login(b, "bob", "b.example");
		try {
			await bob.xmpp.send(xml("presence", {}, xml("status", {}, "here")));
			const alice = await login(a, "alice", "a.example");
			try {
				await alice.xmpp.send(xml("presence"));
				const p = await waitFor(
					() =>
						alice.stanzas.find(
							(s) =>
								s.is("presence") &&
								s.attrs.from === "bob@b.example/r" &&
								s.attrs.type === undefined,
						),
					"bob's presence in answer to the probe",
				);
				assert.equal(p.getChildText("status"), "here");
			} finally {
				await alice.xmpp.stop();
			}
		} finally {
			await bob.xmpp.stop();
		}
	});

	test("to a server that listens on direct TLS only (XEP-0368, route tls:host:port)", async () => {
		const alice = await login(a, "alice", "a.example");
		const carol = await login(c, "carol", "c.example");
		try {
			await carol.xmpp.send(xml("presence"));
			await alice.xmpp.send(
				xml("message", { to: "carol@c.example", type: "chat", id: "t1" }, xml("body", {}, "tls")),
			);
			const m = await waitFor(
				() => carol.stanzas.find((s) => s.is("message") && s.attrs.id === "t1"),
				"carol to get the message",
			);
			assert.equal(m.attrs.from, "alice@a.example/r");
		} finally {
			await alice.xmpp.stop();
			await carol.xmpp.stop();
		}
	});

	test("a domain that cannot be reached: the message comes back remote-server-not-found with its payload (RFC 6120 §8.3.3.16)", async () => {
		const alice = await login(a, "alice", "a.example");
		try {
			await alice.xmpp.send(
				xml(
					"message",
					{ to: "x@nowhere.example", type: "chat", id: "n1" },
					xml("body", {}, "lost?"),
				),
			);
			const err = await waitFor(
				() => alice.stanzas.find((s) => s.is("message") && s.attrs.id === "n1"),
				"the bounce",
			);
			assert.equal(err.attrs.type, "error");
			assert.equal(err.attrs.from, "x@nowhere.example");
			assert.equal(err.getChildText("body"), "lost?");
			assert.ok(
				err
					.getChild("error")
					?.getChild("remote-server-not-found", "urn:ietf:params:xml:ns:xmpp-stanzas"),
			);
		} finally {
			await alice.xmpp.stop();
		}
	});
});

describe("a peer that misbehaves", () => {
	const header = (from: string, to: string) =>
		`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='${from}' to='${to}' version='1.0'>`;

	/** Opens an s2s stream to B as a.example and upgrades it with STARTTLS. */
	async function tlsStream(): Promise<{ c: RawClient; id: string }> {
		const c = await RawClient.connect(bS2s);
		c.send(header("a.example", "b.example"));
		await c.waitFor(/<starttls[^>]*>/);
		c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
		await c.waitFor(/<proceed/);
		await c.startTls("b.example");
		c.received = "";
		c.send(header("a.example", "b.example"));
		const opened = await c.waitFor(/<stream:stream[^>]*>/);
		const id = /id='([^']+)'/.exec(opened)?.[1] ?? /id="([^"]+)"/.exec(opened)?.[1] ?? "";
		await c.waitFor(/<\/stream:features>/);
		return { c, id };
	}

	test("stanzas before authentication end the stream with not-authorized (RFC 6120 §4.9.3.12)", async () => {
		const { c } = await tlsStream();
		c.send("<message from='mallory@a.example' to='bob@b.example'><body>x</body></message>");
		await c.waitFor(/<not-authorized/);
		await c.waitClosed();
	});

	test("dialback without TLS is refused when TLS is required (RFC 6120 §5.3.1)", async () => {
		const c = await RawClient.connect(bS2s);
		c.send(header("a.example", "b.example"));
		await c.waitFor(/<\/stream:features>/);
		assert.doesNotMatch(c.received, /urn:xmpp:features:dialback/);
		c.send("<db:result from='a.example' to='b.example'>00</db:result>");
		await c.waitFor(/<policy-violation/);
		await c.waitClosed();
	});

	test("a wrong dialback key is refused; a right one lets the peer speak only for its domain (XEP-0220 §2.1, RFC 6120 §4.9.3.9)", async () => {
		const { c, id } = await tlsStream();
		c.send("<db:result from='a.example' to='b.example'>0123456789abcdef</db:result>");
		await c.waitFor(/<db:result[^>]*type=.invalid/);
		// The key a.example's server would give for this stream (XEP-0185 §3): its host secret,
		// which the authoritative server (A) checks when B asks.
		const secret = a.server.hosts.get("a.example")?.secret ?? Buffer.alloc(0);
		const key = createHmac("sha256", createHash("sha256").update(secret).digest("hex"))
			.update(`b.example a.example ${id}`)
			.digest("hex");
		c.received = "";
		c.send(`<db:result from='a.example' to='b.example'>${key}</db:result>`);
		await c.waitFor(/<db:result[^>]*type=.valid/);
		c.send(
			"<message from='mallory@evil.example' to='bob@b.example' type='chat'><body>spoof</body></message>",
		);
		await c.waitFor(/<invalid-from/);
		await c.waitClosed();
	});

	test("a peer that ends its stream with a stream error gets the stream closed, not an error back (RFC 6120 §4.9.1.1, §4.4)", async () => {
		const { c } = await tlsStream();
		c.received = "";
		// What Prosody and ejabberd send on every stream when they shut down.
		c.send(
			"<stream:error><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>",
		);
		await c.waitClosed();
		assert.doesNotMatch(c.received, /<stream:error/);
		assert.match(c.received, /<\/stream:stream>/);
	});

	test("a stream to a domain not served here gets host-unknown (RFC 6120 §4.9.3.6)", async () => {
		const c = await RawClient.connect(bS2s);
		c.send(header("a.example", "elsewhere.example"));
		await c.waitFor(/<host-unknown/);
		await c.waitClosed();
	});
});
