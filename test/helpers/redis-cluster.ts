/**
 * A private Redis Cluster for tests (docs/scaling.md "Redis Cluster"): `redis-server
 * --cluster-enabled yes` on consecutive loopback ports, in a temporary directory, joined by
 * `redis-cli --cluster create`. Ports 7101-7106 unless PARLEY_TEST_REDIS_CLUSTER_PORT gives the
 * first one (two checkouts running this test at once need two ranges). Tests skip with
 * `redisClusterSkip` when redis-server or redis-cli is missing.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { waitFor } from "./wait.ts";

export const REDIS_CLUSTER_BASE_PORT = Number(process.env.PARLEY_TEST_REDIS_CLUSTER_PORT ?? 7101);

/** The `skip` option for a suite that needs a private Redis Cluster: a reason, or false. */
export const redisClusterSkip: string | false = (() => {
	for (const tool of ["redis-server", "redis-cli"]) {
		const r = spawnSync(tool, ["--version"], { stdio: "ignore" });
		if (r.error || r.status !== 0) return `${tool} not found: no private Redis Cluster`;
	}
	// Sharded pub/sub (SSUBSCRIBE) needs Redis 7.
	const v = spawnSync("redis-server", ["--version"]).stdout?.toString() ?? "";
	const major = Number(/v=(\d+)/.exec(v)?.[1] ?? 0);
	if (major < 7) return `redis-server ${major} is older than 7 (sharded pub/sub)`;
	return false;
})();

const cli = promisify(execFile);

export interface RedisCluster {
	/** `host:port` of every master (seed nodes for `cluster.redis_cluster`). */
	seeds: string[];
	ports: number[];
	dir: string;
	/** `redis-cli -p <port> <args>` on one of the nodes. */
	cli(port: number, ...args: string[]): Promise<string>;
	/** The port of the master that serves `key`'s slot now, as a live node sees it. */
	masterOf(key: string): Promise<number>;
	/** SIGKILL of one node (a replica takes a master's place after `cluster-node-timeout`). */
	kill(port: number): Promise<void>;
	/** Stops every node (SIGKILL: nothing to save) and removes the directory. */
	stop(): Promise<void>;
}

function answers(port: number): Promise<boolean> {
	return new Promise((resolve) => {
		const s = connect({ host: "127.0.0.1", port }, () => {
			s.destroy();
			resolve(true);
		});
		s.on("error", () => resolve(false));
	});
}

/** `masters` masters (and `replicas` replicas each) on ports from the base port on. */
export async function startRedisCluster(
	opts: { masters?: number; replicas?: number } = {},
): Promise<RedisCluster> {
	const masters = opts.masters ?? 3;
	const replicas = opts.replicas ?? 0;
	const ports = Array.from(
		{ length: masters * (1 + replicas) },
		(_, i) => REDIS_CLUSTER_BASE_PORT + i,
	);
	for (const port of ports)
		if (await answers(port))
			throw new Error(
				`port ${port} is in use: stop what listens there or set PARLEY_TEST_REDIS_CLUSTER_PORT`,
			);
	const dir = mkdtempSync(join(tmpdir(), "parley-redis-cluster-"));
	const children: ChildProcess[] = [];
	const byPort = new Map<number, ChildProcess>();
	const killed = new Set<number>();
	const run = (port: number, ...args: string[]) =>
		cli("redis-cli", ["-p", String(port), ...args]).then((r) => r.stdout);
	const cluster: RedisCluster = {
		seeds: ports.slice(0, masters).map((p) => `127.0.0.1:${p}`),
		ports,
		dir,
		cli: run,
		masterOf: async (key) => {
			const live = ports.find((p) => !killed.has(p)) as number;
			const slot = Number((await run(live, "cluster", "keyslot", key)).trim());
			// CLUSTER NODES: id addr@bus flags master ping pong epoch state slots...
			for (const line of (await run(live, "cluster", "nodes")).split("\n")) {
				const f = line.trim().split(" ");
				if (!f[2]?.includes("master") || f[2].includes("fail")) continue;
				for (const range of f.slice(8)) {
					const [lo, hi = lo] = range.split("-").map(Number) as [number, number?];
					if (slot >= lo && slot <= (hi as number))
						return Number(f[1]?.split("@")[0]?.split(":")[1]);
				}
			}
			throw new Error(`no master serves slot ${slot}`);
		},
		kill: async (port) => {
			const c = byPort.get(port);
			killed.add(port);
			if (!c || c.exitCode !== null || c.signalCode !== null) return;
			await new Promise<void>((resolve) => {
				c.once("exit", () => resolve());
				c.kill("SIGKILL");
			});
		},
		stop: async () => {
			await Promise.all(
				children.map(
					(c) =>
						new Promise<void>((resolve) => {
							if (c.exitCode !== null || c.signalCode !== null) return resolve();
							c.once("exit", () => resolve());
							c.kill("SIGKILL");
						}),
				),
			);
			rmSync(dir, { recursive: true, force: true });
		},
	};
	try {
		for (const port of ports) {
			const d = join(dir, String(port));
			mkdirSync(d);
			const child = spawn(
				"redis-server",
				[
					"--port",
					String(port),
					"--bind",
					"127.0.0.1",
					"--cluster-enabled",
					"yes",
					"--cluster-config-file",
					join(d, "nodes.conf"),
					"--cluster-node-timeout",
					"2000",
					"--save",
					"",
					"--appendonly",
					"no",
					"--dir",
					d,
					"--logfile",
					join(d, "log"),
				],
				{ stdio: "ignore" },
			);
			children.push(child);
			byPort.set(port, child);
		}
		for (const port of ports)
			await waitFor(
				async () => (await run(port, "ping").catch(() => "")).trim() === "PONG",
				`redis ${port}`,
			);
		await cli("redis-cli", [
			"--cluster",
			"create",
			...ports.map((p) => `127.0.0.1:${p}`),
			"--cluster-replicas",
			String(replicas),
			"--cluster-yes",
		]);
		// Every node must see every slot served before a client's first CLUSTER SLOTS.
		for (const port of ports)
			await waitFor(
				async () => /cluster_state:ok/.test(await run(port, "cluster", "info")),
				`redis ${port} to see the cluster`,
				20_000,
			);
		// A replica that never finished its first sync refuses to take its master's place (its data
		// is too old to be trusted): a failover test needs every link up first.
		for (const port of ports) {
			const role = async () => await run(port, "info", "replication");
			if (!/role:slave/.test(await role())) continue;
			await waitFor(
				async () => /master_link_status:up/.test(await role()),
				`replica ${port} to sync with its master`,
				20_000,
			);
		}
	} catch (err) {
		await cluster.stop();
		throw err;
	}
	return cluster;
}
