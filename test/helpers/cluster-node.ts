import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { TEST_CLUSTER_REGISTRY } from "./cluster-registry.ts";
import { TEST_REDIS_URL } from "./services.ts";

const BIN = new URL("../../bin/parley.js", import.meta.url).pathname;

/**
 * The configuration of a `parley serve` child that joins a test cluster: plain TCP c2s on
 * `port` only (PLAIN allowed, no TLS, HTTP, s2s or admin listener, so nodes of several tests
 * never fight over a port), warnings only, the cluster under `prefix` on the test Redis
 * (`PARLEY_TEST_REDIS`) with short heartbeats, and the registry mode the in-process nodes use
 * (`PARLEY_TEST_CLUSTER_REGISTRY`, see test/helpers/server.ts). Storage is SQLite in `dataDir`
 * unless a PostgreSQL schema is given.
 */
export interface ChildNodeConfig {
	dataDir: string;
	port: number;
	prefix: string;
	/** `cluster.node`; absent: the process names itself (the workers of `--workers N` do). */
	node?: string;
	/** The lines of the [log] table; `level = "warn"` unless given. */
	log?: string[];
	/** `cluster.registry`; the in-process nodes' (PARLEY_TEST_CLUSTER_REGISTRY) by default. */
	registry?: "replicated" | "sharded";
	/** `cluster.redis_cluster`: seed nodes of a Redis Cluster instead of the test Redis. */
	redisCluster?: string[];
	/** PostgreSQL shared with the other nodes; SQLite in `dataDir` otherwise. */
	postgres?: { url: string; schema: string };
	/** Plain HTTP listener (BOSH, WebSocket, uploads) on this port; none when absent. */
	httpPort?: number;
	/** Further TOML lines (components, ...), after the cluster table. */
	extra?: string[];
}

/** TOML text for {@link ChildNodeConfig}. */
export function childNodeToml(c: ChildNodeConfig): string {
	const registry = c.registry ?? TEST_CLUSTER_REGISTRY;
	const lines = [
		"[server]",
		`data_dir = ${JSON.stringify(c.dataDir)}`,
		"[auth]",
		"require_encryption = false",
		"allow_plain_without_tls = true",
		...(c.postgres
			? [
					"[storage]",
					'backend = "postgres"',
					`url = ${JSON.stringify(c.postgres.url)}`,
					`schema = ${JSON.stringify(c.postgres.schema)}`,
				]
			: []),
		"[listeners.c2s]",
		'address = "127.0.0.1"',
		`port = ${c.port}`,
		"[listeners.c2s_direct_tls]",
		"enabled = false",
		"[listeners.http]",
		...(c.httpPort ? ['address = "127.0.0.1"', `port = ${c.httpPort}`] : ["enabled = false"]),
		"[listeners.https]",
		"enabled = false",
		"[listeners.s2s]",
		"enabled = false",
		"[listeners.admin]",
		"enabled = false",
		"[log]",
		...(c.log ?? ['level = "warn"']),
		"[cluster]",
		"enabled = true",
		c.redisCluster
			? `redis_cluster = ${JSON.stringify(c.redisCluster)}`
			: `redis = ${JSON.stringify(TEST_REDIS_URL)}`,
		`prefix = ${JSON.stringify(c.prefix)}`,
		...(c.node ? [`node = ${JSON.stringify(c.node)}`] : []),
		"heartbeat = 0.5",
		"node_timeout = 3",
		`registry = "${registry}"`,
		...(c.extra ?? []),
	];
	return `${lines.join("\n")}\n`;
}

/**
 * Writes {@link childNodeToml} to `<dataDir>/<node>.toml` (`parley.toml` without a node name)
 * and returns its path, for the CLI (`parley user add --config`) before the node starts.
 */
export function writeChildNodeToml(c: ChildNodeConfig): string {
	const toml = join(c.dataDir, `${c.node ?? "parley"}.toml`);
	writeFileSync(toml, childNodeToml(c));
	return toml;
}

/** How {@link spawnChildNode} starts the process. */
export interface SpawnOptions {
	/** Further arguments of `parley serve` (`--workers 2`, `--pidfile <file>`). */
	args?: string[];
	/** Collect what it writes on stdout too (the log at level info, in JSON, goes there). */
	stdout?: boolean;
	/** Called with every chunk it writes on stdout and stderr (a log file of the test's own). */
	tee?: (chunk: string) => void;
}

/** A node started by {@link spawnChildNode}. */
export interface ChildNode {
	child: ChildProcess;
	/** Its configuration file (`<dataDir>/<node>.toml`). */
	toml: string;
	/** Its exit code (null: killed by a signal). */
	exited: Promise<number | null>;
	/** What it wrote on stderr (and stdout, when collected) so far, for a failing test's message. */
	output(): string;
}

/**
 * Writes the node's configuration ({@link writeChildNodeToml}; the same file again on a
 * restart) and starts `parley serve` on it.
 */
export function spawnChildNode(c: ChildNodeConfig, o: SpawnOptions = {}): ChildNode {
	const toml = writeChildNodeToml(c);
	const child = spawn(process.execPath, [BIN, "serve", "--config", toml, ...(o.args ?? [])], {
		stdio: ["ignore", o.stdout || o.tee ? "pipe" : "ignore", "pipe"],
	});
	let out = "";
	const collect = (keep: boolean) => (d: Buffer) => {
		if (keep) out += d;
		o.tee?.(d.toString());
	};
	child.stdout?.on("data", collect(o.stdout === true));
	child.stderr?.on("data", collect(true));
	const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
	return { child, toml, exited, output: () => out };
}

/**
 * The `[cluster]` table of an in-process test node: the test Redis (`PARLEY_TEST_REDIS`) and
 * short heartbeats, so that a node killed in a test is declared dead within seconds.
 */
export function testCluster(prefix: string, node: string) {
	return {
		enabled: true,
		redis: TEST_REDIS_URL,
		prefix,
		node,
		heartbeat: 0.5,
		node_timeout: 3,
	};
}
