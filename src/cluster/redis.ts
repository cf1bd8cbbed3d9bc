/**
 * The cluster's connections to its Redis: one server (`cluster.redis`, a URL) or a Redis Cluster
 * (`cluster.redis_cluster`, seed nodes; ioredis's `Cluster` client finds the others and follows
 * the slots as they move). Every part of the link opens its connections here, so one setting
 * decides for all of them (docs/configuration.md `[cluster]`, docs/architecture.md "Redis
 * Cluster").
 */
import { Cluster, Redis, type RedisOptions } from "ioredis";
import type { Config } from "../core/config/schema.ts";
import { type ClusterKeys, clusterKeys } from "./keys.ts";

/**
 * A connection to either. Both ioredis clients have the same commands; what differs (no
 * cross-slot MULTI, pipeline or script on a Cluster; sharded channels) the callers decide by
 * {@link ClusterKeys.clustered}. Typed as the single-server client, whose command signatures the
 * Cluster client shares (both are ioredis `Commander`s with the same generated command
 * interface); the union type would make TypeScript reject every overloaded command.
 */
export type RedisClient = Redis;

type ClusterSettings = Pick<Config["cluster"], "redis" | "redis_cluster" | "prefix">;

export interface Seed {
	host: string;
	port: number;
	username?: string;
	password?: string;
	tls: boolean;
}

/** A seed node: `host:port`, `[v6]:port`, or a `redis://` / `rediss://` URL (credentials, TLS). */
export function parseSeed(s: string): Seed {
	const u = new URL(/^rediss?:\/\//.test(s) ? s : `redis://${s}`);
	const seed: Seed = {
		host: u.hostname.replace(/^\[(.*)\]$/, "$1"),
		port: Number(u.port || 6379),
		tls: u.protocol === "rediss:",
	};
	if (u.username) seed.username = decodeURIComponent(u.username);
	if (u.password) seed.password = decodeURIComponent(u.password);
	return seed;
}

export function usesRedisCluster(cfg: ClusterSettings): boolean {
	return cfg.redis_cluster.length > 0;
}

/** The key layout for this configuration (src/cluster/keys.ts). */
export function keysFor(cfg: ClusterSettings): ClusterKeys {
	return clusterKeys(cfg.prefix, usesRedisCluster(cfg));
}

/** Where the cluster's Redis is, for logs and errors (no credentials). */
export function describeRedis(cfg: ClusterSettings): string {
	if (!usesRedisCluster(cfg)) return cfg.redis;
	return `Redis Cluster ${cfg.redis_cluster.map((s) => {
		const seed = parseSeed(s);
		return seed.host.includes(":") ? `[${seed.host}]:${seed.port}` : `${seed.host}:${seed.port}`;
	})}`;
}

export interface ConnectOptions {
	name: string;
	connectTimeout: number;
	/** null: commands wait for the connection to come back. */
	maxRetriesPerRequest: number | null;
	/** Delay before the next reconnection attempt, null: give up. */
	retryStrategy: (times: number) => number | null;
	/**
	 * Cluster only: this connection subscribes to sharded channels (SSUBSCRIBE), one connection
	 * per shard that owns one of them, re-subscribed when the slots move.
	 */
	sharded?: boolean;
}

/** A client, not connected yet (`lazyConnect`): the caller adds its error handler, then connects. */
export function openRedis(cfg: ClusterSettings, o: ConnectOptions): RedisClient {
	const common: RedisOptions = {
		connectTimeout: o.connectTimeout,
		maxRetriesPerRequest: o.maxRetriesPerRequest,
		connectionName: o.name,
	};
	if (!usesRedisCluster(cfg))
		return new Redis(cfg.redis, {
			...common,
			lazyConnect: true,
			retryStrategy: o.retryStrategy,
		});
	const seeds = cfg.redis_cluster.map(parseSeed);
	const first = seeds[0] as Seed;
	const redisOptions: RedisOptions = { ...common };
	if (first.username) redisOptions.username = first.username;
	if (first.password) redisOptions.password = first.password;
	if (first.tls) redisOptions.tls = {};
	const cluster = new Cluster(
		seeds.map(({ host, port }) => ({ host, port })),
		{
			lazyConnect: true,
			redisOptions,
			clusterRetryStrategy: (times) => o.retryStrategy(times),
			// Commands issued in one turn go to each shard as one write: what a pipeline did with one
			// Redis, for the commands whose keys are spread over the shards.
			enableAutoPipelining: true,
			shardedSubscribers: o.sharded === true,
		},
	);
	// See RedisClient: the same commands, typed as the single-server client's.
	return cluster as unknown as RedisClient;
}

/**
 * Redis Cluster only: calls `changed` when the set of masters ioredis routes to changes (a
 * failover promotes a replica; a master is added or removed), as seen after each of its slot
 * refreshes (`refresh`). Compared as a set, so the refreshes ioredis runs again and again while
 * a dead master is still listed (and any that a caller's own commands cause) call nothing until
 * the slots really name another master. Nothing on a single server.
 */
export function watchMasters(client: RedisClient, changed: () => void): void {
	if (!(client instanceof Cluster)) return;
	const cluster: Cluster = client;
	const masters = () =>
		cluster
			.nodes("master")
			.map((n) => `${n.options.host}:${n.options.port}`)
			.sort()
			.join(",");
	let known = masters();
	cluster.on("refresh", () => {
		const now = masters();
		if (now === known) return;
		known = now;
		changed();
	});
}
