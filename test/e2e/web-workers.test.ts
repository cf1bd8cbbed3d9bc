/**
 * Web transports on every worker (issue 16): `parley serve --workers 2` opens the HTTP listener
 * in both workers (SO_REUSEPORT), so WebSocket clients (RFC 7395) land on both and chat; a BOSH
 * request (XEP-0124) that lands on the worker not holding its session is handed to the one
 * that does, by the node named in the sid, over the cluster link; likewise between two nodes,
 * as behind a round-robin balancer.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { xml } from "@xmpp/client";
import { Redis } from "ioredis";
import { BoshClient } from "../helpers/bosh.ts";
import { testCluster } from "../helpers/cluster-node.ts";
import { TEST_CLUSTER_REGISTRY } from "../helpers/cluster-registry.ts";
import { freePort } from "../helpers/pg-cluster.ts";
import { startTestServer } from "../helpers/server.ts";
import { redisSkip, TEST_REDIS_URL } from "../helpers/services.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect, type XmppConnection } from "../helpers/xmpp-client.ts";

const BIN = new URL("../../bin/parley.js", import.meta.url).pathname;
const run = (args: string[]) => promisify(execFile)(process.execPath, args);

/** The pids of the processes that logged a line with this message. */
function pidsOf(out: string, msg: string): Set<number> {
	return new Set(
		out
			.split("\n")
			.filter((l) => l.includes(`"msg":"${msg}"`))
			.map((l) => (JSON.parse(l) as { pid: number }).pid),
	);
}

test("server.workers: WebSocket on both workers, BOSH requests reach the worker holding their session", {
	skip: redisSkip,
	timeout: 120_000,
}, async () => {
	const dir = mkdtempSync(join(tmpdir(), "parley-webworkers-"));
	const prefix = `parley-test-web-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
	const c2s = await freePort();
	const httpPort = await freePort();
	const toml = join(dir, "parley.toml");
	const lines = [
		"[server]",
		`data_dir = ${JSON.stringify(dir)}`,
		"[auth]",
		"require_encryption = false",
		"allow_plain_without_tls = true",
		"[listeners.c2s]",
		'address = "127.0.0.1"',
		`port = ${c2s}`,
		"[listeners.c2s_direct_tls]",
		"enabled = false",
		"[listeners.http]",
		'address = "127.0.0.1"',
		`port = ${httpPort}`,
		"[listeners.https]",
		"enabled = false",
		"[listeners.s2s]",
		"enabled = false",
		"[log]",
		'level = "debug"',
		'format = "json"',
		"[cluster]",
		`prefix = ${JSON.stringify(prefix)}`,
		// The default registry, or PARLEY_TEST_CLUSTER_REGISTRY=sharded's (issue 16).
		`registry = "${TEST_CLUSTER_REGISTRY}"`,
	];
	writeFileSync(toml, `${lines.join("\n")}\n`);
	for (const u of ["alice", "bob"])
		await run([BIN, "user", "add", `${u}@localhost`, "--config", toml, "--password", `pw-${u}`]);
	const pidfile = join(dir, "parley.pid");
	const child = spawn(
		process.execPath,
		[BIN, "serve", "--workers", "2", "--config", toml, "--pidfile", pidfile],
		{ stdio: ["ignore", "pipe", "pipe"] },
	);
	let out = "";
	child.stdout?.on("data", (d) => {
		out += d;
	});
	child.stderr?.on("data", (d) => {
		out += d;
	});
	const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
	const ws: XmppConnection[] = [];
	const bosh: BoshClient[] = [];
	try {
		await waitFor(() => existsSync(pidfile), "the pidfile (all workers running)", 30_000).catch(
			(err: Error) => {
				throw new Error(`${err.message}; output: ${out}`);
			},
		);
		// Both workers listen on the HTTP port.
		const listening = out
			.split("\n")
			.filter((l) => l.includes('"msg":"listening"') && l.includes('"listener":"http"'));
		assert.equal(new Set(listening.map((l) => JSON.parse(l).pid)).size, 2, out);

		// WebSocket: each connection lands on a worker by the kernel's hash of its address; with
		// 12 connections both workers serve some (all on one: p = 2^-11).
		const url = `ws://127.0.0.1:${httpPort}/xmpp-websocket`;
		for (let i = 0; i < 12; i++) {
			const user = i % 2 ? "bob" : "alice";
			ws.push(await connect(url, user, `pw-${user}`, { resource: `w${i}` }));
		}
		assert.equal(pidsOf(out, "authenticated").size, 2, out);
		// Every client to every other of the first four: across workers and within one.
		for (let i = 0; i < 4; i++)
			for (let j = 0; j < 4; j++) {
				if (i === j) continue;
				const to = ws[j] as XmppConnection;
				const id = `w${i}-${j}`;
				await (ws[i] as XmppConnection).xmpp.send(
					xml("message", { to: to.jid, id, type: "chat" }, xml("body", {}, "hi")),
				);
				await waitFor(
					() => to.stanzas.some((s) => s.attrs.id === id),
					`message ${id} over WebSocket`,
				);
			}

		// BOSH: every request on a connection of its own, so the kernel spreads a session's
		// requests over both workers; 12 sessions are created on both too (all on one: p = 2^-11).
		for (let i = 0; i < 12; i++) {
			const c = new BoshClient(`http://127.0.0.1:${httpPort}/http-bind`);
			c.freshConnections = true;
			const user = i % 2 ? "bob" : "alice";
			await c.login(user, `pw-${user}`, `b${i}`);
			c.startPolling();
			bosh.push(c);
		}
		const nodes = new Set(
			bosh.map((c) => Buffer.from(c.sid.split(".")[0] as string, "base64url").toString()),
		);
		assert.equal(nodes.size, 2, `sessions on both workers: ${[...nodes]}`);
		for (let i = 0; i < bosh.length; i++) {
			const b = bosh[i] as BoshClient;
			const w = ws[i] as XmppConnection;
			const user = i % 2 ? "bob" : "alice";
			// BOSH to WebSocket.
			b.send(
				`<message xmlns='jabber:client' to='${w.jid}' id='b2w${i}' type='chat'><body>x</body></message>`,
			);
			await waitFor(
				() => w.stanzas.some((s) => s.attrs.id === `b2w${i}`),
				`message b2w${i} from BOSH`,
			);
			// WebSocket to BOSH: the push rides on the held request, wherever it landed.
			await w.xmpp.send(
				xml(
					"message",
					{ to: `${user}@localhost/b${i}`, id: `w2b${i}`, type: "chat" },
					xml("body", {}, "y"),
				),
			);
			await b.waitFor((el) => el.attrs.id === `w2b${i}`, `message w2b${i} over BOSH`);
		}
		// Some requests did land on the other worker and were handed over.
		assert.ok(out.includes("BOSH body handed to its session's node"), out.slice(-5000));
		// A sid naming a node that is not there: no node got the body, item-not-found at once
		// (XEP-0124 §17.2) rather than a wait for an answer that cannot come.
		const stray = new BoshClient(`http://127.0.0.1:${httpPort}/http-bind`);
		stray.sid = `${Buffer.from("no-such-node").toString("base64url")}.x`;
		const lost = await stray.request();
		assert.equal(lost.attrs.type, "terminate");
		assert.equal(lost.attrs.condition, "item-not-found");
		for (const b of bosh) {
			const end = await b.terminate();
			assert.equal(end.attrs.type, "terminate");
		}
		for (const c of ws) await c.xmpp.stop();
		child.kill("SIGTERM");
		assert.equal(await exited, 0);
	} finally {
		child.kill("SIGKILL");
		rmSync(dir, { recursive: true, force: true });
	}
});

test("[cluster]: a BOSH session created on one node is served through another node's listener (round-robin balancer)", {
	skip: redisSkip,
	timeout: 60_000,
}, async () => {
	const prefix = `parley-test-web-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
	const node = (name: string) =>
		({
			auth: { require_encryption: false, allow_plain_without_tls: true },
			cluster: testCluster(prefix, name),
		}) as never;
	const a = await startTestServer({
		storage: "sqlite",
		config: node("node-a"),
		users: [
			["alice@localhost", "alice-pw"],
			["bob@localhost", "bob-pw"],
		],
	});
	const b = await startTestServer({
		storage: "sqlite",
		dataDir: a.dataDir,
		config: node("node-b"),
	});
	let bob: XmppConnection | null = null;
	try {
		// The session is created where its first request lands: node A.
		const onA = new BoshClient(`http://127.0.0.1:${a.httpPort}/http-bind`);
		await onA.create();
		assert.equal(Buffer.from(onA.sid.split(".")[0] as string, "base64url").toString(), "node-a");
		// Every later request goes to node B, which holds no session of that sid.
		const viaB = new BoshClient(`http://127.0.0.1:${b.httpPort}/http-bind`, onA.rid);
		viaB.sid = onA.sid;
		const auth = Buffer.from("\0alice\0alice-pw").toString("base64");
		const ok = await viaB.request(
			{},
			`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${auth}</auth>`,
		);
		assert.ok(ok.getChild("success"), ok.toString());
		await viaB.request({ "xmpp:restart": "true", "xmlns:xmpp": "urn:xmpp:xbosh" });
		const bound = await viaB.request(
			{},
			"<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bosh</resource></bind></iq>",
		);
		assert.equal(
			bound.getChild("iq")?.getChild("bind")?.getChildText("jid"),
			"alice@localhost/bosh",
		);
		viaB.startPolling();
		bob = await connect(`ws://127.0.0.1:${b.httpPort}/xmpp-websocket`, "bob", "bob-pw", {
			resource: "ws",
		});
		// To the BOSH client: pushed on a request held by node A but sent to node B.
		await bob.xmpp.send(
			xml(
				"message",
				{ to: "alice@localhost/bosh", id: "to-bosh", type: "chat" },
				xml("body", {}, "hi"),
			),
		);
		await viaB.waitFor((el) => el.attrs.id === "to-bosh", "the message over BOSH via node B");
		viaB.send(
			"<message xmlns='jabber:client' to='bob@localhost/ws' id='from-bosh' type='chat'><body>yo</body></message>",
		);
		const got = bob;
		await waitFor(
			() => got.stanzas.some((s) => s.attrs.id === "from-bosh"),
			"the message from BOSH",
		);
		const end = await viaB.terminate();
		assert.equal(end.attrs.type, "terminate");
	} finally {
		await bob?.xmpp.stop().catch(() => {});
		await b.stop();
		await a.stop();
		const r = new Redis(TEST_REDIS_URL);
		const keys = await r.keys(`${prefix}:*`);
		if (keys.length) await r.del(...keys);
		await r.quit();
	}
});
