import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { TEST_REDIS_URL } from "./services.ts";

const BIN = new URL("../../bin/parley.js", import.meta.url).pathname;

/**
 * The configuration of a `parley serve` child that joins a test cluster: plain TCP c2s on
 * `port` only (PLAIN allowed, no TLS, HTTP, s2s or admin listener, so nodes of several tests
 * never fight over a port), warnings only, the cluster under `prefix` with short heartbeats, and
 * the registry mode the in-process nodes use (`PARLEY_TEST_CLUSTER_REGISTRY`, see
 * test/helpers/server.ts). Storage is SQLite in `dataDir` unless a PostgreSQL schema is given.
 */
export interface ChildNodeConfig {
	dataDir: string;
	port: number;
	prefix: string;
	node: string;
	/** `cluster.registry`; the in-process nodes' (PARLEY_TEST_CLUSTER_REGISTRY) by default. */
	registry?: "replicated" | "sharded";
	/** `cluster.redis_cluster`: seed nodes of a Redis Cluster instead of the test Redis. */
	redisCluster?: string[];
	/** PostgreSQL shared with the other nodes; SQLite in `dataDir` otherwise. */
	postgres?: { url: string; schema: string };
	/** Further TOML lines (components, ...), after the cluster table. */
	extra?: string[];
}

/** TOML text for {@link ChildNodeConfig}. */
export function childNodeToml(c: ChildNodeConfig): string {
	const registry =
		c.registry ??
		(process.env.PARLEY_TEST_CLUSTER_REGISTRY === "sharded" ? "sharded" : "replicated");
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
		"enabled = false",
		"[listeners.https]",
		"enabled = false",
		"[listeners.s2s]",
		"enabled = false",
		"[listeners.admin]",
		"enabled = false",
		"[log]",
		'level = "warn"',
		"[cluster]",
		"enabled = true",
		c.redisCluster
			? `redis_cluster = ${JSON.stringify(c.redisCluster)}`
			: `redis = ${JSON.stringify(TEST_REDIS_URL)}`,
		`prefix = ${JSON.stringify(c.prefix)}`,
		`node = ${JSON.stringify(c.node)}`,
		"heartbeat = 0.5",
		"node_timeout = 3",
		`registry = "${registry}"`,
		...(c.extra ?? []),
	];
	return `${lines.join("\n")}\n`;
}

/** A node started by {@link spawnChildNode}. */
export interface ChildNode {
	child: ChildProcess;
	/** Its configuration file (`<dataDir>/<node>.toml`). */
	toml: string;
	/** What it wrote on stderr so far, for a failing test's message. */
	output(): string;
}

/** Writes {@link childNodeToml} to `<dataDir>/<node>.toml` and starts `parley serve` on it. */
export function spawnChildNode(c: ChildNodeConfig): ChildNode {
	const toml = join(c.dataDir, `${c.node}.toml`);
	writeFileSync(toml, childNodeToml(c));
	const child = spawn(process.execPath, [BIN, "serve", "--config", toml], {
		stdio: ["ignore", "ignore", "pipe"],
	});
	let stderr = "";
	child.stderr?.on("data", (d) => {
		stderr += d;
	});
	return { child, toml, output: () => stderr };
}
