/**
 * `parley cluster status`: the nodes of the cluster (issue 16 "Operations"), read from the
 * registry in Redis that the nodes keep (src/cluster/status.ts): node, since, last heartbeat,
 * sessions, leader, health. Exits non-zero when Redis cannot be reached, so a monitoring probe
 * can call it. The same answer is the `cluster.status` admin command (GET /cluster).
 */
import type { Command } from "commander";
import { describeRedis, keysFor, openRedis } from "../../cluster/redis.ts";
import { readClusterStatus } from "../../cluster/status.ts";
import { CliError, CONFIG_HELP, EXIT, loadConfig } from "../common.ts";

const ago = (ms: number) => (ms < 0 ? "never" : `${(ms / 1000).toFixed(1)}s ago`);

export function addClusterCommands(program: Command): void {
	const cluster = program.command("cluster").description("the nodes of a cluster ([cluster])");
	cluster
		.command("status")
		.description("list the cluster's nodes: since, last heartbeat, sessions, leader, health")
		.option("-c, --config <file>", CONFIG_HELP)
		.option("--json", "print them as JSON")
		.action(async (opts: { config?: string; json?: boolean }) => {
			const config = loadConfig(opts.config);
			const { prefix } = config.cluster;
			const url = describeRedis(config.cluster);
			let firstError = "";
			const redis = openRedis(config.cluster, {
				connectTimeout: 3000,
				maxRetriesPerRequest: 0,
				retryStrategy: () => null,
				name: "parley-cli",
			});
			redis.on("error", (err: Error) => {
				firstError ||= err.message;
			});
			let status: Awaited<ReturnType<typeof readClusterStatus>>;
			try {
				await redis.connect();
				status = await readClusterStatus(redis, keysFor(config.cluster));
			} catch (err) {
				throw new CliError(
					`cannot reach the cluster's Redis at ${url}: ${firstError || (err as Error).message}`,
					EXIT.FAILURE,
				);
			} finally {
				redis.disconnect();
			}
			if (opts.json) {
				console.log(JSON.stringify(status));
				return;
			}
			if (!config.cluster.enabled)
				console.log("note: [cluster] enabled = false in this configuration");
			if (status.nodes.length === 0) {
				console.log(`no node in cluster "${prefix}"`);
				return;
			}
			console.log(`cluster "${prefix}": ${status.nodes.length} node(s)`);
			for (const n of status.nodes)
				console.log(
					`${n.node}  ${n.health.padEnd(5)}${n.leader ? "  leader" : ""}  sessions ${n.sessions}  since ${n.since ? new Date(n.since).toISOString() : "?"}  heartbeat ${ago(n.heartbeat_age)}`,
				);
		});
}
