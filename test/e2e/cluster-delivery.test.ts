/**
 * Delivery between cluster nodes (issue 16, "no acknowledged stanza lost between nodes";
 * src/cluster/delivery.ts): node A runs in this process (the leader: it joins first), the
 * receiving node is a `parley serve` child on the same SQLite file and the local Redis, so it can
 * be killed with SIGKILL or paused with SIGSTOP. A third node B in this process has its Redis
 * connections cut, and gets an entry twice; two more nodes run on a private Redis (AOF) that is
 * restarted under load.
 *
 * "Acknowledged" here is XEP-0198's: the sender enables stream management, and a message
 * counts once its node's `<a h/>` covers it (§4: the server handled it, here routed into the
 * receiving node's stream). Every acknowledged message must reach the recipient: live before
 * the kill, or from offline storage at the next login (XEP-0160), after the leader re-routed
 * what the dead node's stream still held.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Redis } from "ioredis";
import pg from "pg";
import type { ClusterLink } from "../../src/cluster/link.ts";
import { spawnChildNode, testCluster } from "../helpers/cluster-node.ts";
import { freePort } from "../helpers/pg-cluster.ts";
import type { RawClient } from "../helpers/raw.ts";
import { online } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { postgresSkip, redisSkip, TEST_PG_URL, TEST_REDIS_URL } from "../helpers/services.ts";
import { waitFor } from "../helpers/wait.ts";

const TAG = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const PREFIX = `parley-test-dl-${TAG}`;
/** Node names unique to this run: other runs may share the Redis. */
const NODE_A = `dl-a-${TAG}`;
const NODE_B = `dl-b-${TAG}`;

const clusterConfig = (node: string) => ({
	auth: { require_encryption: false, allow_plain_without_tls: true },
	cluster: testCluster(PREFIX, node),
});

let a: TestServer;
let b: TestServer;
const clients: RawClient[] = [];
const children: ChildProcess[] = [];

async function on(port: number, user: string, resource: string): Promise<RawClient> {
	const c = await online(port, user, resource);
	clients.push(c);
	return c;
}

/**
 * Waits until `node` knows of exactly `count` sessions on other nodes. The sharded registry
 * (PARLEY_TEST_CLUSTER_REGISTRY=sharded) knows of those it looked up: the test's two users are,
 * at each try.
 */
async function replicas(node: TestServer, count: number): Promise<void> {
	await waitFor(
		async () => {
			const link = node.server.cluster as ClusterLink | null;
			await link?.resolveAll(["alice@localhost", "bob@localhost"]);
			return link?.remoteSessions === count;
		},
		`${count} remote sessions`,
		20_000,
	);
}

/**
 * A `parley serve` child on A's storage and cluster (or `leader`'s, on PostgreSQL), plain TCP on
 * its own port.
 */
async function startChild(
	node: string,
	on: { leader: TestServer; prefix: string; postgres?: { url: string; schema: string } } = {
		leader: a,
		prefix: PREFIX,
	},
): Promise<{ child: ChildProcess; port: number }> {
	const port = await freePort();
	const { child, output } = spawnChildNode({
		dataDir: on.leader.dataDir,
		port,
		prefix: on.prefix,
		node,
		...(on.postgres ? { postgres: on.postgres } : {}),
	});
	children.push(child);
	await waitFor(
		async () => {
			try {
				const c = await online(port, "probe", "p");
				c.end();
				return true;
			} catch {
				return undefined;
			}
		},
		`node ${node} to serve`,
		30_000,
	).catch((err: Error) => {
		throw new Error(`${err.message}; it said: ${output()}`);
	});
	await replicas(on.leader, 0);
	return { child, port };
}

/** The ids of the messages `c` received whose id starts with `prefix`, in order. */
function ids(c: RawClient, prefix: string): string[] {
	return [...c.received.matchAll(new RegExp(`<message[^>]*id="(${prefix}\\d+)"`, "g"))].map(
		(m) => m[1] as string,
	);
}

/** Enables XEP-0198 on `c` and waits for `<enabled/>`. */
async function enableSm(c: RawClient): Promise<void> {
	const mark = c.received.length;
	c.send("<enable xmlns='urn:xmpp:sm:3'/>");
	await c.waitFor(/<enabled[^>]*xmlns="urn:xmpp:sm:3"/, mark);
}

/** XEP-0198 §4: asks for an ack and waits until the server's `<a h/>` covers `n` stanzas. */
async function acked(c: RawClient, n: number): Promise<void> {
	const mark = c.received.length;
	c.send("<r xmlns='urn:xmpp:sm:3'/>");
	await c.waitFor(new RegExp(`<a[^>]*h="${n}"`), mark, 20_000);
}

/**
 * Until the leader has taken `node`'s stream (renamed it to an orphan: the node is paused or
 * dead, nothing recreates it) and re-routed every orphan (src/cluster/delivery.ts).
 */
async function orphansDrained(r: Redis, node: string, prefix = PREFIX): Promise<void> {
	await waitFor(
		async () =>
			(await r.exists(`${prefix}:stream:${node}`, `${prefix}:orphans`)) === 0 ? true : undefined,
		"the dead node's stream re-routed",
		20_000,
	).catch(async (err: Error) => {
		const stream = await r.xlen(`${prefix}:stream:${node}`);
		const orphans = await r.smembers(`${prefix}:orphans`);
		const nodes = await r.zrange(`${prefix}:nodes`, "0", "-1");
		throw new Error(
			`${err.message}: its stream holds ${stream}; orphans: ${orphans.join(" ") || "none"}; nodes: ${nodes.join(" ")}`,
		);
	});
}

describe("delivery between cluster nodes on Redis Streams", { skip: redisSkip }, () => {
	let redis: Redis;

	before(async () => {
		a = await startTestServer({
			storage: "sqlite",
			config: clusterConfig(NODE_A),
			users: ["alice", "bob", "probe"].map((u) => [`${u}@localhost`, `pw-${u}`]),
		});
		redis = new Redis(TEST_REDIS_URL);
	});

	after(async () => {
		for (const c of clients) c.end();
		for (const c of children) c.kill("SIGKILL");
		await b?.stop();
		await a?.stop();
		const keys = await redis.keys(`${PREFIX}:*`);
		if (keys.length) await redis.del(...keys);
		await redis.quit();
	});

	test("kill -9 of the receiving node during a burst: every message acknowledged to the sender (XEP-0198 <a/>) reaches the recipient, live or from offline storage (XEP-0160)", async () => {
		const node = `dl-c-${TAG}`;
		const { child, port } = await startChild(node);
		const bob = await on(port, "bob", "c");
		const alice = await on(a.port, "alice", "a");
		await enableSm(alice);
		await replicas(a, 1);
		const total = 300;
		const send = (i: number) =>
			alice.send(
				`<message to='bob@localhost/c' id='k${i}' type='chat'><body>burst ${i}</body></message>`,
			);
		let i = 0;
		// A first part while the node lives; it is killed once the recipient has some of it.
		for (; i < 100; i++) send(i);
		await bob.waitFor(/id="k20"/);
		child.kill("SIGKILL");
		// The rest goes out before the leader notices (node_timeout 3 s): into the dead node's stream.
		for (; i < total; i++) send(i);
		await acked(alice, total);
		await replicas(a, 0);
		await orphansDrained(redis, node);
		const live = new Set(ids(bob, "k"));
		assert.ok(live.size < total, "the kill came before the end of the burst");
		const back = await on(a.port, "bob", "back");
		const missing = () => {
			const got = new Set([...live, ...ids(back, "k")]);
			return Array.from({ length: total }, (_, j) => `k${j}`).filter((id) => !got.has(id));
		};
		await waitFor(() => (missing().length === 0 ? true : undefined), "every message", 20_000).catch(
			() => {
				throw new Error(`lost: ${missing().join(" ")} (${live.size} live before the kill)`);
			},
		);
		// RFC 6120 §10.1: the re-routed ones keep their order.
		const offline = ids(back, "k").map((id) => Number(id.slice(1)));
		assert.deepEqual(
			offline,
			[...offline].sort((x, y) => x - y),
		);
		back.end();
		alice.end();
		await replicas(a, 0);
	});

	// On PostgreSQL, not the SQLite file of the other tests: a process stopped while it commits
	// keeps SQLite's write lock, and every other node's writes fail with "database is locked"
	// after the busy timeout (10 s each), so the leader's re-routing to offline storage stalled
	// (seen in about one run in four here when the node was stopped right after a login).
	test("a node paused (SIGSTOP) and declared dead rejoins without duplicates: what waited for it went to offline storage, once", {
		skip: postgresSkip,
	}, async () => {
		const prefix = `${PREFIX}-p`;
		const postgres = { url: TEST_PG_URL, schema: `parley_dl_${TAG.replace(/-/g, "_")}` };
		const leader = await startTestServer({
			storage: "sqlite",
			config: {
				...clusterConfig(`${NODE_A}-p`),
				cluster: { ...clusterConfig(`${NODE_A}-p`).cluster, prefix },
				storage: { backend: "postgres" as const, ...postgres },
			},
			users: ["alice", "bob", "probe"].map((u) => [`${u}@localhost`, `pw-${u}`]),
		});
		const node = `dl-p-${TAG}`;
		let child: ChildProcess | null = null;
		try {
			const started = await startChild(node, { leader, prefix, postgres });
			child = started.child;
			const bob = await on(started.port, "bob", "p");
			const alice = await on(leader.port, "alice", "a2");
			await replicas(leader, 1);
			child.kill("SIGSTOP");
			try {
				for (let j = 0; j < 20; j++)
					alice.send(
						`<message to='bob@localhost/p' id='s${j}' type='chat'><body>paused ${j}</body></message>`,
					);
				// The leader declares the node dead, ends its session and re-routes its stream.
				await replicas(leader, 0);
				await orphansDrained(redis, node, prefix);
			} finally {
				child.kill("SIGCONT");
			}
			// The node notices it was declared dead and publishes its session again.
			await replicas(leader, 1);
			const mark = bob.received.length;
			alice.send(
				"<message to='bob@localhost/p' id='after1' type='chat'><body>after</body></message>",
			);
			await bob.waitFor(/id="after1"/, mark);
			// Whatever the paused node had read before the pause, it delivers nothing the leader
			// took: each message reaches bob once, from offline storage (XEP-0160, with its XEP-0203
			// stamp), either on the rejoined session (the leader's `cluster/offline` notice makes
			// that node flush the store) or on a new login.
			const other = await on(leader.port, "bob", "other");
			const all = () => [...ids(bob, "s"), ...ids(other, "s")];
			await waitFor(() => (all().length >= 20 ? true : undefined), "20 messages");
			const mark2 = other.received.length;
			alice.send(
				"<message to='bob@localhost/other' id='after2' type='chat'><body>x</body></message>",
			);
			await other.waitFor(/id="after2"/, mark2);
			assert.deepEqual(
				all().sort((x, y) => Number(x.slice(1)) - Number(y.slice(1))),
				Array.from({ length: 20 }, (_, j) => `s${j}`),
				`on the rejoined node: ${bob.received.match(/<message[^>]*id="s\d+"[\s\S]*?<\/message>/g)?.join("\n")}`,
			);
			for (const m of bob.received.match(/<message[^>]*id="s\d+"[\s\S]*?<\/message>/g) ?? [])
				assert.match(
					m,
					/urn:xmpp:delay/,
					"from offline storage, not from the paused node's stream",
				);
			for (const c of [bob, other, alice]) c.end();
		} finally {
			// Nothing of this test outlives it, failed or not: not the node, not its cluster.
			child?.kill("SIGKILL");
			await leader.stop();
			const keys = await redis.keys(`${prefix}:*`);
			if (keys.length) await redis.del(...keys);
			const c = new pg.Client({ connectionString: TEST_PG_URL });
			await c.connect();
			await c.query(`DROP SCHEMA IF EXISTS "${postgres.schema}" CASCADE`);
			await c.end();
		}
	});

	test("a blip of the nodes' Redis connections: every message arrives once, in order (RFC 6120 §10.1)", async () => {
		b = await startTestServer({
			storage: "sqlite",
			dataDir: a.dataDir,
			config: clusterConfig(NODE_B),
		});
		const bob = await on(b.port, "bob", "b");
		const alice = await on(a.port, "alice", "a3");
		await replicas(a, 1);
		const total = 200;
		for (let j = 0; j < total; j++) {
			alice.send(
				`<message to='bob@localhost/b' id='r${j}' type='chat'><body>blip ${j}</body></message>`,
			);
			if (j === 100) {
				// Cut the sender's and the receiver's delivery connections; ioredis reconnects.
				await bob.waitFor(/id="r10"/);
				const list = (await redis.call("CLIENT", "LIST")) as string;
				const victims = list
					.split("\n")
					.filter((l) => new RegExp(` name=(${NODE_A}:out|${NODE_B}:in) `).test(l))
					.map((l) => /id=(\d+)/.exec(l)?.[1] as string);
				assert.equal(victims.length, 2, list);
				for (const id of victims) await redis.call("CLIENT", "KILL", "ID", id);
			}
		}
		await waitFor(() => (ids(bob, "r").length >= total ? true : undefined), "every message");
		// Nothing more comes after a marker sent last.
		const mark = bob.received.length;
		alice.send("<message to='bob@localhost/b' id='end1' type='chat'><body>end</body></message>");
		await bob.waitFor(/id="end1"/, mark);
		assert.deepEqual(
			ids(bob, "r"),
			Array.from({ length: total }, (_, j) => `r${j}`),
		);
		bob.end();
		alice.end();
	});

	test("an entry delivered again (same sending process and sequence) is dropped: the stanza reaches the session once", async () => {
		// Node B from the blip test; entries written as a sending node writes them (delivery.ts).
		const bob = await on(b.port, "bob", "dd");
		const stream = `${PREFIX}:stream:${NODE_B}`;
		const record = (id: string) =>
			`s\u0000localhost\u0000bob@localhost/dd\u0000<message to="bob@localhost/dd" from="alice@localhost/x" id="${id}" type="chat"><body>dup</body></message>`;
		const origin = `test-origin/${TAG}`;
		await redis.xadd(stream, "NOMKSTREAM", "*", "o", origin, "n", 1, "d", record("d1"));
		await redis.xadd(stream, "NOMKSTREAM", "*", "o", origin, "n", 1, "d", record("d1"));
		await redis.xadd(stream, "NOMKSTREAM", "*", "o", origin, "n", 2, "d", record("d2"));
		await bob.waitFor(/id="d2"/);
		assert.deepEqual(ids(bob, "d"), ["d1", "d2"]);
		bob.end();
	});

	test("a Redis restart under load (appendonly yes): what was sent before and during it arrives once, in order; the nodes resume", async () => {
		// A private Redis with AOF, fsync on every write, so that a restart keeps every entry.
		const dir = mkdtempSync(join(tmpdir(), "parley-dl-redis-"));
		const port = await freePort();
		const startRedis = () => {
			const r = spawn(
				"redis-server",
				["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", ""].concat([
					"--appendonly",
					"yes",
					"--appendfsync",
					"always",
					"--loglevel",
					"warning",
				]),
				{ stdio: "ignore" },
			);
			children.push(r);
			return r;
		};
		startRedis();
		const url = `redis://127.0.0.1:${port}`;
		const ping = new Redis(url, { lazyConnect: true, retryStrategy: () => 100 });
		ping.on("error", () => {}); // refused while Redis restarts: expected
		await waitFor(
			async () => ((await ping.ping().catch(() => "")) === "PONG" ? true : undefined),
			"the private Redis",
		);
		const config = (node: string) => ({
			...clusterConfig(node),
			cluster: { ...clusterConfig(node).cluster, redis: url },
		});
		const p = await startTestServer({
			storage: "sqlite",
			dataDir: a.dataDir,
			config: config(`${NODE_A}-r`),
		});
		const q = await startTestServer({
			storage: "sqlite",
			dataDir: a.dataDir,
			config: config(`${NODE_B}-r`),
		});
		try {
			const bob = await on(q.port, "bob", "rq");
			const alice = await on(p.port, "alice", "rp");
			await replicas(p, 1);
			const total = 200;
			const send = (j: number) =>
				alice.send(
					`<message to='bob@localhost/rq' id='x${j}' type='chat'><body>restart ${j}</body></message>`,
				);
			for (let j = 0; j < 100; j++) send(j);
			await bob.waitFor(/id="x5"/);
			// SHUTDOWN writes the AOF; the nodes' connections drop and ioredis retries.
			await ping.call("SHUTDOWN").catch(() => {});
			for (let j = 100; j < 150; j++) send(j);
			startRedis();
			for (let j = 150; j < total; j++) send(j);
			await waitFor(
				() => (ids(bob, "x").length >= total ? true : undefined),
				"every message",
				30_000,
			);
			const mark = bob.received.length;
			alice.send("<message to='bob@localhost/rq' id='xend' type='chat'><body>end</body></message>");
			await bob.waitFor(/id="xend"/, mark, 20_000);
			assert.deepEqual(
				ids(bob, "x"),
				Array.from({ length: total }, (_, j) => `x${j}`),
			);
			bob.end();
			alice.end();
		} finally {
			await q.stop();
			await p.stop();
			await ping.call("SHUTDOWN", "NOSAVE").catch(() => {});
			ping.disconnect();
			rmSync(dir, { recursive: true, force: true });
		}
	});
	test("XEP-0198 §4 across nodes: the sender's node answers <r/> only once Redis holds what it routed to another node, so a kill -9 right after the <a/> loses nothing", async () => {
		const node = `dl-s-${TAG}`;
		const { child, port } = await startChild(node);
		const bob = await on(a.port, "bob", "s");
		const alice = await on(port, "alice", "s");
		await enableSm(alice);
		// The child knows bob's session once a first message reaches him through it.
		alice.send("<message to='bob@localhost/s' id='w0' type='chat'><body>first</body></message>");
		await bob.waitFor(/id="w0"/);
		await acked(alice, 1);
		// Redis takes no writes for a while (CLIENT PAUSE … WRITE, Redis 6.2+): the next
		// message's XADD waits in Redis, and a node killed meanwhile takes it with it.
		await redis.call("CLIENT", "PAUSE", "1500", "WRITE");
		try {
			alice.send(
				"<message to='bob@localhost/s' id='w1' type='chat'><body>acknowledged</body></message>",
			);
			await acked(alice, 2);
			child.kill("SIGKILL");
			// Until Redis has seen the node's connection close (CLIENT LIST is served while writes are
			// paused): a client that is gone has its waiting commands dropped, not run at UNPAUSE.
			await waitFor(
				async () =>
					((await redis.call("CLIENT", "LIST")) as string).includes(`name=${node}:out`)
						? undefined
						: true,
				"the killed node's Redis connections closed",
				10_000,
			);
		} finally {
			await redis.call("CLIENT", "UNPAUSE");
		}
		await bob.waitFor(/id="w1"/, 0, 20_000);
		// bob's resource must not outlive this test: later ones count on his sessions elsewhere.
		bob.end();
		await replicas(a, 0);
		await orphansDrained(redis, node);
	});
});
