/**
 * Federation from a cluster (issue 12): each node keeps its own server-to-server streams
 * (docs/architecture.md, "Federation"). A user on node 2 writes to another server: node 2 opens
 * the stream itself, and the other server's dialback check, which reaches node 1 (where the
 * domain's route points), succeeds because the dialback secret is in the shared storage. The
 * answer comes in on node 1 and reaches the user on node 2 through the cluster.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Redis } from "ioredis";
import type { S2SManager } from "../../src/s2s/manager.ts";
import { testCluster } from "../helpers/cluster-node.ts";
import { freePort } from "../helpers/pg-cluster.ts";
import type { RawClient } from "../helpers/raw.ts";
import { message, online } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { redisSkip, TEST_REDIS_URL } from "../helpers/services.ts";
import { waitFor } from "../helpers/wait.ts";

const PREFIX = `parley-s2s-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const PLAIN = { require_encryption: false, allow_plain_without_tls: true };

let n1: TestServer;
let n2: TestServer;
let b: TestServer;
const clients: RawClient[] = [];

describe("federation from a cluster", { skip: redisSkip }, () => {
	before(async () => {
		const [p1, p2, pb] = await Promise.all([freePort(), freePort(), freePort()]);
		const node = (name: string, s2sPort: number) => ({
			auth: PLAIN,
			hosts: { "a.example": {} },
			cluster: testCluster(PREFIX, name),
			listeners: { s2s: { enabled: true, address: "127.0.0.1", port: s2sPort } },
			s2s: { routes: { "b.example": `127.0.0.1:${pb}` } },
		});
		n1 = await startTestServer({
			storage: "sqlite",
			config: node("node-1", p1),
			users: [["alice@a.example", "pw-alice"]],
		});
		n2 = await startTestServer({
			storage: "sqlite",
			dataDir: n1.dataDir,
			config: node("node-2", p2),
		});
		b = await startTestServer({
			config: {
				auth: PLAIN,
				hosts: { "b.example": {} },
				listeners: { s2s: { enabled: true, address: "127.0.0.1", port: pb } },
				// b.example knows a.example by one address: node 1's.
				s2s: { routes: { "a.example": `127.0.0.1:${p1}` } },
			},
			users: [["bob@b.example", "pw-bob"]],
		});
	});

	after(async () => {
		for (const c of clients) c.end();
		await b?.stop();
		await n2?.stop();
		await n1?.stop();
		const r = new Redis(TEST_REDIS_URL);
		const keys = await r.keys(`${PREFIX}:*`);
		if (keys.length) await r.del(...keys);
		await r.quit();
	});

	const outgoing = (t: TestServer) =>
		(t.server.remote as S2SManager)
			.streams()
			.filter((s) => s.direction === "outgoing" && s.state === "ready");

	test("a user on node 2 and a remote user: node 2's own stream out, node 1's in, the cluster between", async () => {
		const alice = await online(n2.port, "alice", "a2", { host: "a.example" });
		const bob = await online(b.port, "bob", "b1", { host: "b.example" });
		clients.push(alice, bob);
		const mark = bob.received.length;
		alice.send(
			"<message to='bob@b.example/b1' id='x1' type='chat'><body>from node 2</body></message>",
		);
		assert.match(await message(bob, "x1", mark), /from="alice@a.example\/a2"/);
		// The stream out is node 2's; node 1 made none.
		assert.deepEqual(
			outgoing(n2).map((s) => s.remote),
			[["b.example"]],
		);
		assert.deepEqual(outgoing(n1), []);

		// Back: b.example reaches node 1, whose router finds alice on node 2 (RFC 6121 §8.5.2).
		await waitFor(async () => {
			const host = n1.server.hosts.get("a.example");
			// With the sharded registry, node 1 knows of it once it looks it up.
			if (host) await n1.server.cluster?.resolve?.(host, "alice");
			return [...(host?.sessions.get("alice")?.values() ?? [])].length > 0;
		}, "node 1 to know of alice's session on node 2");
		const mark2 = alice.received.length;
		bob.send(
			"<message to='alice@a.example' id='x2' type='chat'><body>to the cluster</body></message>",
		);
		assert.match(await message(alice, "x2", mark2), /from="bob@b.example\/b1"/);
	});
});
