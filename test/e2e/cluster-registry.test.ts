/**
 * What the sharded session registry (`cluster.registry = "sharded"`, issue 16) does beyond the
 * cluster's behaviour (test/e2e/cluster-sharded.test.ts runs that): a node holds its own
 * sessions and only the other nodes' sessions it looked up; its cache is bounded and an evicted
 * JID is looked up again; Redis holds every entry, and a stopped node leaves none behind. Two
 * nodes in this process, the local Redis under a private prefix.
 */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { Redis } from "ioredis";
import type { ClusterLink } from "../../src/cluster/link.ts";
import type { ShardedRegistry } from "../../src/cluster/registry.ts";
import { RemoteSession, type SessionEntry } from "../../src/cluster/remote-session.ts";
import type { RawClient } from "../helpers/raw.ts";
import { message, online } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { redisSkip, TEST_REDIS_URL } from "../helpers/services.ts";
import { waitFor } from "../helpers/wait.ts";

const PREFIX = `parley-test-reg-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const USERS = ["alice", "bob", "carol", "dave", "erin"];

const config = (node: string) => ({
	auth: { require_encryption: false, allow_plain_without_tls: true },
	cluster: {
		enabled: true,
		redis: TEST_REDIS_URL,
		prefix: PREFIX,
		node,
		heartbeat: 0.5,
		node_timeout: 3,
		registry: "sharded" as const,
		// Two other nodes' JIDs at most (its own users' are kept besides).
		registry_cache: 2,
	},
});

let a: TestServer;
let b: TestServer;
let redis: Redis;
const clients: RawClient[] = [];

async function on(port: number, user: string, resource: string): Promise<RawClient> {
	const c = await online(port, user, resource);
	clients.push(c);
	return c;
}

/** The other nodes' sessions `t` holds, as full JIDs. */
function held(t: TestServer): string[] {
	const out: string[] = [];
	for (const resources of t.server.hosts.get("localhost")?.sessions.values() ?? [])
		for (const s of resources.values()) if (s instanceof RemoteSession) out.push(s.jid.toString());
	return out.sort();
}

/** Waits until the registry in Redis has `user`'s entries for exactly these resources. */
async function written(user: string, resources: string[]): Promise<void> {
	const want = resources.slice().sort().join(",");
	let got = "";
	await waitFor(async () => {
		got = Object.keys(await redis.hgetall(`${PREFIX}:s:${user}@localhost`))
			.sort()
			.join(",");
		return got === want;
	}, `${user}'s entries ${want}`).catch((err: Error) => {
		throw new Error(`${err.message}; there are: ${got}`);
	});
}

describe("the sharded session registry", { skip: redisSkip }, () => {
	before(async () => {
		redis = new Redis(TEST_REDIS_URL);
		a = await startTestServer({
			storage: "sqlite",
			config: config("node-a"),
			users: USERS.map((u) => [`${u}@localhost`, `pw-${u}`] as [string, string]),
		});
		b = await startTestServer({ storage: "sqlite", dataDir: a.dataDir, config: config("node-b") });
	});

	after(async () => {
		for (const c of clients) c.end();
		await b?.stop();
		await a?.stop();
		const keys = await redis.keys(`${PREFIX}:*`);
		if (keys.length) await redis.del(...keys);
		await redis.quit();
	});

	test("a node holds another node's sessions only once it routed to them (RFC 6120 §10.5.4 still holds)", async () => {
		const alice = await on(a.port, "alice", "a1");
		const bob = await on(b.port, "bob", "b1");
		await written("alice", ["a1"]);
		await written("bob", ["b1"]);
		// No roster between them: neither node looked the other's user up.
		assert.deepEqual(held(b), []);
		assert.deepEqual(held(a), []);
		const mark = alice.received.length;
		bob.send("<message to='alice@localhost/a1' id='r1' type='chat'><body>hi</body></message>");
		await message(alice, "r1", mark);
		assert.deepEqual(held(b), ["alice@localhost/a1"]);
		assert.deepEqual(held(a), [], "node A routed nothing to bob");
		// What an operator sees of it (GET /metrics, per node).
		const mb = (await b.server.metricsText()).body;
		assert.match(mb, /^parley_cluster_remote_sessions\{[^}]*\} 1$/m);
		assert.match(mb, /^parley_cluster_registry_cached_jids\{[^}]*\} 2$/m, "bob's and alice's");
		assert.match(mb, /^parley_cluster_registry_lookups_total\{[^}]*\} [1-9]/m);
		assert.match(
			(await a.server.metricsText()).body,
			/^parley_cluster_remote_sessions\{[^}]*\} 0$/m,
		);
		// A change of the cached session reaches the node that cached it (the JID's channel).
		alice.send("<presence><priority>7</priority></presence>");
		await waitFor(
			() => b.server.hosts.get("localhost")?.sessions.get("alice")?.get("a1")?.priority === 7,
			"node B to see alice's new priority",
		);
		alice.end();
		bob.end();
		await written("alice", []);
		await written("bob", []);
		await waitFor(() => held(b).length === 0, "node B to drop alice's ended session");
	});

	test("registry_cache: beyond it the least recently used JID is forgotten, and looked up again when needed", async () => {
		const others = await Promise.all(["carol", "dave", "erin"].map((u) => on(a.port, u, "x")));
		const bob = await on(b.port, "bob", "b2");
		for (const u of ["carol", "dave", "erin"]) await written(u, ["x"]);
		const link = b.server.cluster as ClusterLink;
		for (const [i, u] of ["carol", "dave", "erin"].entries()) {
			const c = others[i] as RawClient;
			const mark = c.received.length;
			bob.send(`<message to='${u}@localhost/x' id='c${i}' type='chat'><body>${i}</body></message>`);
			await message(c, `c${i}`, mark);
		}
		// The sweep runs with the heartbeat: bob (pinned: node B's own user) and two others stay.
		await waitFor(() => link.shard?.cached === 3, "node B's cache back to its bound");
		assert.deepEqual(held(b), ["dave@localhost/x", "erin@localhost/x"], "carol's JID went first");
		const carol = others[0] as RawClient;
		const mark = carol.received.length;
		bob.send("<message to='carol@localhost' id='c3' type='chat'><body>again</body></message>");
		await message(carol, "c3", mark);
		for (const c of [...others, bob]) c.end();
		for (const u of ["carol", "dave", "erin", "bob"]) await written(u, []);
	});

	test("RFC 6120 §7.7.2.2 across nodes: the replaced session's node can neither overwrite nor remove its successor's entry", async () => {
		const first = await on(a.port, "dave", "same");
		await written("dave", ["same"]);
		const key = `${PREFIX}:s:dave@localhost`;
		const old = JSON.parse((await redis.hget(key, "same")) as string) as SessionEntry;
		assert.equal(old.node, "node-a");
		const closed = new Promise<void>((r) => first.socket.once("close", () => r()));
		const second = await on(b.port, "dave", "same");
		await closed;
		const now = async () =>
			(JSON.parse((await redis.hget(key, "same")) as string) as SessionEntry).node;
		await waitFor(async () => (await now()) === "node-b", "node B's entry");
		// Node A writes late for its replaced session (a change that was in flight), then its removal.
		const shard = (a.server.cluster as ClusterLink).shard as ShardedRegistry;
		shard.put({ ...old, seq: old.seq + 100, priority: 99 }, true);
		shard.remove("dave@localhost", "same", old.id, old.seq + 101);
		await shard.flush();
		assert.equal(await now(), "node-b", "the successor's entry stays");
		assert.equal(await redis.sismember(`${PREFIX}:n:node-b`, "dave@localhost/same"), 1);
		second.end();
		await written("dave", []);
	});

	test("a node joining with the other registry mode says so in its log (a rolling upgrade across the default)", async () => {
		let log = "";
		const sink = new Writable({
			write(chunk, _enc, done) {
				log += String(chunk);
				done();
			},
		});
		const c = await startTestServer({
			storage: "sqlite",
			dataDir: a.dataDir,
			config: {
				...config("node-r"),
				cluster: { ...config("node-r").cluster, registry: "replicated" as const },
			},
			log: sink,
		});
		try {
			await waitFor(() => log.includes("another cluster.registry"), "the warning");
			const line = log.split("\n").find((l) => l.includes("another cluster.registry")) ?? "";
			const entry = JSON.parse(line) as { level: number; others: string[]; registry: string };
			assert.equal(entry.registry, "replicated");
			assert.deepEqual(entry.others.sort(), ["node-a (sharded)", "node-b (sharded)"]);
		} finally {
			await c.stop();
		}
	});

	test("a node that stops removes its entries from Redis, and the node that cached them drops them", async () => {
		const c = await startTestServer({
			storage: "sqlite",
			dataDir: a.dataDir,
			config: config("node-c"),
		});
		try {
			const erin = await on(c.port, "erin", "e1");
			const alice = await on(a.port, "alice", "a2");
			await written("erin", ["e1"]);
			const mark = erin.received.length;
			alice.send("<message to='erin@localhost/e1' id='s1' type='chat'><body>hi</body></message>");
			await message(erin, "s1", mark);
			assert.deepEqual(held(a), ["erin@localhost/e1"]);
			await c.stop();
			await written("erin", []);
			assert.equal(await redis.exists(`${PREFIX}:n:node-c`), 0, "node C's set is gone");
			await waitFor(() => held(a).length === 0, "node A to drop erin's session");
			alice.end();
			await written("alice", []);
		} finally {
			await c.stop();
		}
	});
});
