/**
 * Issue 16 "Operations": `parley cluster status` (a child process) and the `cluster.status`
 * admin command (GET /cluster) show the nodes of a real cluster over the local Redis: two nodes
 * in this process (one under the Supervisor with its admin API, one plain), one client bound on
 * the second. Both read the registry the nodes keep in Redis (src/cluster/status.ts). The CLI
 * exits non-zero when the cluster's Redis cannot be reached.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import type { ClusterStatus } from "../../src/core/contracts.ts";
import { type AdminHarness, startAdmin } from "../helpers/admin.ts";
import { testCluster } from "../helpers/cluster-node.ts";
import { freePort } from "../helpers/pg-cluster.ts";
import type { RawClient } from "../helpers/raw.ts";
import { online } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { redisSkip, TEST_REDIS_URL } from "../helpers/services.ts";
import { waitFor } from "../helpers/wait.ts";

const BIN = new URL("../../bin/parley.js", import.meta.url).pathname;
const PREFIX = `parley-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

/** Runs the CLI without blocking this process (the nodes run in it). */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
	try {
		const { stdout, stderr } = await promisify(execFile)(process.execPath, [BIN, ...args]);
		return { code: 0, stdout, stderr };
	} catch (err) {
		const e = err as { code: number; stdout: string; stderr: string };
		return { code: e.code, stdout: e.stdout, stderr: e.stderr };
	}
}

describe("parley cluster status and GET /cluster", { skip: redisSkip }, () => {
	let h: AdminHarness;
	let b: TestServer;
	let token: string;
	const clients: RawClient[] = [];

	before(async () => {
		h = await startAdmin({
			extra: `[cluster]\nenabled = true\nredis = ${JSON.stringify(TEST_REDIS_URL)}\nprefix = "${PREFIX}"\nnode = "node-a"\nheartbeat = 0.5\nnode_timeout = 3\n`,
		});
		b = await startTestServer({
			storage: "sqlite",
			config: {
				auth: { require_encryption: false, allow_plain_without_tls: true },
				cluster: testCluster(PREFIX, "node-b"),
			},
			users: [["bob@localhost", "pw-bob"]],
		});
		clients.push(await online(b.port, "bob", "phone"));
		const first = await h.request("PUT", "/init/first-account", {
			body: { jid: "root@localhost", password: "root-pw" },
		});
		assert.equal(first.status, 201, JSON.stringify(first.body));
		token = await h.token("root@localhost", "root-pw");
	});

	after(async () => {
		for (const c of clients) c.end();
		await b?.stop();
		await h?.close();
		const r = new Redis(TEST_REDIS_URL);
		const keys = await r.keys(`${PREFIX}:*`);
		if (keys.length) await r.del(...keys);
		await r.quit();
	});

	test("GET /cluster lists both nodes: the first to join leads, node-b holds bob's session", async () => {
		// Node-b's heartbeat after bob bound carries his session.
		const status = await waitFor(async () => {
			const r = await h.request("GET", "/cluster", { token });
			assert.equal(r.status, 200, JSON.stringify(r.body));
			const s = r.body as unknown as ClusterStatus;
			return s.nodes.find((n) => n.node === "node-b")?.sessions === 1 ? s : undefined;
		}, "node-b reports one session");
		assert.equal(status.prefix, PREFIX);
		assert.deepEqual(
			status.nodes.map((n) => [n.node, n.leader, n.health]),
			[
				["node-a", true, "alive"],
				["node-b", false, "alive"],
			],
		);
		const a = status.nodes[0];
		assert.equal(a?.sessions, 0);
		assert.ok((a?.since ?? 0) > 0 && (a?.last_heartbeat ?? 0) >= (a?.since ?? 0));
		// Without a token the cluster is not shown.
		assert.equal((await h.request("GET", "/cluster")).status, 401);
	});

	test("parley cluster status --json and as text, from another process", async () => {
		await waitFor(async () => {
			const r = await cli(["cluster", "status", "--json", "-c", h.config]);
			assert.equal(r.code, 0, r.stderr);
			const s = JSON.parse(r.stdout) as ClusterStatus;
			return s.nodes.find((n) => n.node === "node-b")?.sessions === 1;
		}, "the CLI sees node-b's session");
		const text = await cli(["cluster", "status", "-c", h.config]);
		assert.equal(text.code, 0, text.stderr);
		assert.match(text.stdout, /2 node\(s\)/);
		assert.match(text.stdout, /node-a {2}alive {2}leader {2}sessions 0/);
		assert.match(text.stdout, /node-b {2}alive {2}sessions 1/);
	});

	test("health by heartbeat age: late while its alive key lasts, dead once it expired", async () => {
		// Two nodes as a stalled and a vanished process leave them in the registry: joined
		// before node-a, last heartbeat 10 s ago (20 intervals of 0.5 s).
		const r = new Redis(TEST_REDIS_URL);
		try {
			const old = Date.now() - 10_000;
			await r
				.multi()
				.zadd(`${PREFIX}:nodes`, String(old - 5000), "stalled", String(old - 4000), "vanished")
				.set(`${PREFIX}:alive:stalled`, "1", "PX", 60_000)
				.hset(
					`${PREFIX}:beats`,
					"stalled",
					JSON.stringify({ at: old, sessions: 7, heartbeat: 0.5 }),
				)
				.hset(
					`${PREFIX}:beats`,
					"vanished",
					JSON.stringify({ at: old, sessions: 3, heartbeat: 0.5 }),
				)
				.exec();
			const out = await cli(["cluster", "status", "--json", "-c", h.config]);
			assert.equal(out.code, 0, out.stderr);
			const s = JSON.parse(out.stdout) as ClusterStatus;
			const row = (n: string) => s.nodes.find((x) => x.node === n);
			assert.equal(row("stalled")?.health, "late");
			assert.equal(row("stalled")?.sessions, 7);
			assert.ok((row("stalled")?.heartbeat_age ?? 0) >= 10_000);
			assert.equal(row("vanished")?.health, "dead");
			// The leader is the first node in joining order that is not dead: the late one.
			assert.deepEqual(
				s.nodes.filter((n) => n.leader).map((n) => n.node),
				["stalled"],
			);
		} finally {
			await r
				.multi()
				.zrem(`${PREFIX}:nodes`, "stalled", "vanished")
				.del(`${PREFIX}:alive:stalled`)
				.hdel(`${PREFIX}:beats`, "stalled", "vanished")
				.exec();
			await r.quit();
		}
	});

	test("a node that leaves disappears from the list", async () => {
		await b.stop();
		const r = await cli(["cluster", "status", "--json", "-c", h.config]);
		assert.equal(r.code, 0, r.stderr);
		const s = JSON.parse(r.stdout) as ClusterStatus;
		assert.deepEqual(
			s.nodes.map((n) => n.node),
			["node-a"],
		);
	});

	test("the CLI exits non-zero when the cluster's Redis cannot be reached", async () => {
		const dir = mkdtempSync(join(tmpdir(), "parley-cluster-cli-"));
		try {
			const port = await freePort();
			const file = join(dir, "parley.toml");
			writeFileSync(
				file,
				`[server]\ndata_dir = "${dir}"\n[cluster]\nenabled = true\nredis = "redis://127.0.0.1:${port}"\n`,
			);
			const r = await cli(["cluster", "status", "-c", file]);
			assert.equal(r.code, 1);
			assert.match(r.stderr, /cannot reach the cluster's Redis at redis:\/\/127\.0\.0\.1:\d+/);
		} finally {
			rmSync(dir, { recursive: true, force: true });
		}
	});
});
