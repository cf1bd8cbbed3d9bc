/**
 * What `parley cluster status` and the `cluster.status` admin command show: the nodes in the
 * cluster's registry in Redis (src/cluster/link.ts keeps it), read straight from Redis, so any
 * process that can reach the engine sees the same answer, a running node or the CLI.
 *
 * - `<prefix>:nodes`: sorted set of the nodes by joining time (the leader is the first live one).
 * - `<prefix>:alive:<node>`: refreshed every heartbeat, expires after `node_timeout`.
 * - `<prefix>:beats`: hash, node -> `{"at":ms,"sessions":n,"heartbeat":s}` written with each
 *   heartbeat (when, how many local sessions, at what interval).
 * With a Redis Cluster they carry the hash tag `{<prefix>}` (src/cluster/keys.ts).
 */
import type { Redis } from "ioredis";
import type { ClusterNodeStatus, ClusterStatus } from "../core/contracts.ts";
import { type ClusterKeys, clusterKeys } from "./keys.ts";

export interface Beat {
	at: number;
	sessions: number;
	/** The node's heartbeat interval in seconds. */
	heartbeat: number;
	/** Its `cluster.registry` (absent from older nodes). */
	registry?: string;
}

/** `layout`: a prefix (one Redis's key names) or the cluster's key names. */
export async function readClusterStatus(
	redis: Redis,
	layout: string | ClusterKeys,
	now = Date.now(),
): Promise<ClusterStatus> {
	const keys = typeof layout === "string" ? clusterKeys(layout, false) : layout;
	const prefix = keys.prefix;
	const flat = await redis.zrange(keys.nodes, "0", "-1", "WITHSCORES");
	const joined: [string, number][] = [];
	for (let i = 0; i < flat.length; i += 2) joined.push([flat[i] as string, Number(flat[i + 1])]);
	const beats = await redis.hgetall(keys.beats);
	// A node the leader already removed from the set but whose beat is still there is shown too
	// (dead), so that an operator sees it go.
	for (const node of Object.keys(beats))
		if (!joined.some(([n]) => n === node)) joined.push([node, 0]);
	const alive = joined.length ? await redis.mget(joined.map(([n]) => keys.alive(n))) : [];
	let leaderFound = false;
	const nodes: ClusterNodeStatus[] = joined.map(([node, since], i) => {
		let beat: Beat = { at: 0, sessions: 0, heartbeat: 2 };
		try {
			if (beats[node]) beat = { ...beat, ...(JSON.parse(beats[node]) as Partial<Beat>) };
		} catch {}
		const age = beat.at ? Math.max(0, now - beat.at) : Number.POSITIVE_INFINITY;
		const health: ClusterNodeStatus["health"] =
			alive[i] === null ? "dead" : age <= 2 * beat.heartbeat * 1000 ? "alive" : "late";
		// Same rule as the link's: the leader is the first node in joining order that is not dead.
		const leader = !leaderFound && health !== "dead";
		if (leader) leaderFound = true;
		return {
			node,
			since,
			last_heartbeat: beat.at,
			heartbeat_age: Number.isFinite(age) ? age : -1,
			sessions: beat.sessions,
			leader,
			health,
		};
	});
	return { prefix, nodes };
}
