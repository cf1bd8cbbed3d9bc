/**
 * The cluster (issue 16 "Operations"): the nodes in the registry in Redis, their sessions and
 * health, as `parley cluster status` prints them (src/cluster/status.ts reads it).
 */
import { z } from "zod";
import { CommandError, defineCommand } from "../../core/commands.ts";

export const clusterStatus = defineCommand({
	name: "cluster.status",
	description: "the cluster's nodes: since, last heartbeat, sessions, leader, health",
	args: z.object({}),
	role: "admin",
	http: { method: "GET", path: "/cluster" },
	async run(ctx) {
		const cluster = ctx.core.cluster;
		if (!cluster?.status)
			throw new CommandError("not_found", "this server is not in a cluster ([cluster] enabled)");
		try {
			return await cluster.status();
		} catch (err) {
			throw new CommandError("unavailable", (err as Error).message);
		}
	},
});
