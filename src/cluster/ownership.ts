/**
 * Components split over the nodes of a cluster (issue 16): each unit of a component whose
 * placement is {@link OwnedUnits} (a MUC room) is owned by one node at a time, through a lease in
 * Redis, and every node passes the unit's stanzas to its owner.
 *
 * - Lease: `<prefix>:room:<unit>@<component>` holds the owning node's name and expires after
 *   `node_timeout`. A node claims an unowned unit when a stanza for it arrives (SET if absent, in
 *   one script with the read, so two nodes racing agree), then loads its state from shared
 *   storage. The owner renews its leases with each heartbeat; a unit it does not need any more
 *   (a temporary room that emptied) is released, a lease it finds held by another node (it was
 *   paused past the lease and that node took the unit) drops the unit's state here, and one it
 *   finds gone (Redis restarted empty) it takes again, keeping its rooms.
 * - A node that dies stops renewing: its units' leases expire within `node_timeout`, as its
 *   sessions end, and the next stanza for one of them makes a live node claim it. A node that
 *   stops cleanly releases its leases at once.
 * - Lookup: a node caches other nodes' ownership for at most one heartbeat. A node that claims
 *   or releases units says so on `<prefix>:owners` (after the lease changed), and the others drop
 *   those units from their caches, so a room that moves is not looked for where it was; a node
 *   declared dead is dropped from the caches too. A stanza another node passed on is looked up
 *   afresh, so two stale caches cannot bounce a stanza back and forth.
 * - Directory: `<prefix>:rooms:<component>` (a hash, unit -> entry the component writes) lists
 *   units of every node, such as the public rooms of a MUC service's disco#items (XEP-0045 §6.3).
 *
 * It has two Redis connections of its own, commands and the `owners` channel (the link's are
 * busy with the registry and stanzas).
 *
 * On a Redis Cluster (src/cluster/keys.ts) each lease is in its own slot: the renewal and release
 * scripts run once per slot group of leases, the directory reads the leases one GET each (sent
 * together per shard), and `owners` is a sharded channel.
 */
import type { Config } from "../core/config/schema.ts";
import type { ComponentOwners, Host, OwnedUnits } from "../core/contracts.ts";
import type { Logger } from "../core/log.ts";
import type { ClusterKeys } from "./keys.ts";
import { keysFor, openRedis, type RedisClient } from "./redis.ts";

/** Returns the owner of KEYS[1], first making it ARGV[1] for ARGV[2] ms if it has none. */
const CLAIM = `local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]`;

/**
 * Renews each of KEYS owned by ARGV[1] for ARGV[2] ms (1), takes again one that nobody holds (1:
 * Redis restarted empty, or this node was paused and nobody claimed it meanwhile), and leaves one
 * another node holds (0: lost).
 */
const RENEW = `local out = {}
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v == ARGV[1] then
    redis.call('PEXPIRE', k, ARGV[2])
    out[i] = 1
  elseif not v then
    redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out`;

/** Deletes each of KEYS that ARGV[1] owns. */
const RELEASE = `for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end
end
return 0`;

/** Keys per renewal script call: a node with many rooms renews them in slices. */
const SLICE = 500;

interface Owned {
	host: Host;
	unit: string;
}

export class Ownership implements ComponentOwners {
	readonly #node: string;
	readonly #cfg: Config["cluster"];
	readonly #keys: ClusterKeys;
	readonly #leaseMs: number;
	readonly #cacheMs: number;
	readonly #log: Logger;
	#redis: RedisClient | null = null;
	#sub: RedisClient | null = null;
	readonly #channel: string;
	#stopping = false;
	/** Units this node holds the lease of, by lease key. */
	readonly #owned = new Map<string, Owned>();
	/** Other nodes' units as last read: lease key -> owner and until when it is believed. */
	readonly #cache = new Map<string, { node: string; until: number }>();

	constructor(node: string, cfg: Config["cluster"], log: Logger) {
		this.#node = node;
		this.#cfg = cfg;
		this.#keys = keysFor(cfg);
		this.#leaseMs = Math.round(cfg.node_timeout * 1000);
		this.#cacheMs = Math.round(cfg.heartbeat * 1000);
		this.#log = log;
		this.#channel = this.#keys.owners;
	}

	/** Units this node owns now. */
	get owned(): number {
		return this.#owned.size;
	}

	async start(): Promise<void> {
		const connect = async (name: string) => {
			const r = openRedis(this.#cfg, {
				connectTimeout: 5000,
				maxRetriesPerRequest: 3,
				name: `${this.#node}:${name}`,
				retryStrategy: (times: number) => (this.#stopping ? null : Math.min(times * 200, 2000)),
				sharded: name === "owners-sub",
			});
			r.on("error", (err: Error) => {
				if (!this.#stopping) this.#log.warn({ err: err.message }, "cluster owners: Redis error");
			});
			await r.connect();
			return r;
		};
		this.#redis = await connect("owners");
		const sub = await connect("owners-sub");
		this.#sub = sub;
		const onMessage = (_channel: string, message: string) => this.#changed(message);
		if (this.#keys.clustered) {
			sub.on("smessage", onMessage);
			await sub.ssubscribe(this.#channel);
		} else {
			sub.on("message", onMessage);
			await sub.subscribe(this.#channel);
		}
	}

	/** Another node claimed or released units (`keys`), or released all of its own (none). */
	#changed(message: string): void {
		try {
			const m = JSON.parse(message) as { node: string; keys?: string[] };
			if (m.node === this.#node) return;
			if (m.keys) for (const key of m.keys) this.#cache.delete(key);
			else this.forgetNode(m.node);
		} catch (err) {
			this.#log.warn({ err }, "cluster owners: a bad message on the owners channel");
		}
	}

	/** Tells the other nodes that these leases changed hands (all of this node's without keys). */
	#announce(keys?: string[]): void {
		const redis = this.#redis;
		if (redis?.status !== "ready") return;
		this.#publish(
			redis,
			JSON.stringify(keys ? { node: this.#node, keys } : { node: this.#node }),
		).catch((err: unknown) => this.#log.warn({ err }, "cluster owners: an announcement was lost"));
	}

	/** PUBLISH with one Redis, SPUBLISH on a Redis Cluster. */
	#publish(redis: RedisClient, message: string): Promise<unknown> {
		return this.#keys.clustered
			? redis.spublish(this.#channel, message)
			: redis.publish(this.#channel, message);
	}

	/**
	 * The node is leaving: each component that owns units here says goodbye (`OwnedUnits.leaving`)
	 * before the link sends its last batch and {@link stop} releases the leases.
	 */
	leaving(): void {
		const placements = new Set<OwnedUnits>();
		for (const { host } of this.#owned.values()) {
			const units = placementOf(host);
			if (units) placements.add(units);
		}
		for (const units of placements) {
			try {
				units.leaving?.();
			} catch (err) {
				this.#log.warn({ err }, "cluster owners: a component failed to say goodbye");
			}
		}
	}

	/** Releases every lease (another node takes the units over at their next stanza). */
	async stop(): Promise<void> {
		if (this.#stopping) return;
		this.#stopping = true;
		const redis = this.#redis;
		const keys = [...this.#owned.keys()];
		this.#owned.clear();
		this.#cache.clear();
		if (redis && redis.status === "ready") {
			for (const slice of this.#keys.groups(keys, SLICE)) {
				await redis
					.eval(RELEASE, slice.length, ...slice, this.#node)
					.catch((err: unknown) => this.#log.warn({ err }, "cluster owners: release failed"));
			}
			if (keys.length)
				await this.#publish(redis, JSON.stringify({ node: this.#node })).catch((err: unknown) =>
					this.#log.warn({ err }, "cluster owners: release not announced"),
				);
		}
		await Promise.all([redis?.quit().catch(() => {}), this.#sub?.quit().catch(() => {})]);
		this.#redis = null;
		this.#sub = null;
	}

	#leaseKey(host: Host, unit: string): string {
		return this.#keys.lease(host.name, unit);
	}

	#directoryKey(host: Host): string {
		return this.#keys.rooms(host.name);
	}

	#ready(): RedisClient {
		const redis = this.#redis;
		if (!redis || this.#stopping) throw new Error("cluster owners: not running");
		return redis;
	}

	async ownerOf(host: Host, unit: string, fresh: boolean): Promise<string> {
		const key = this.#leaseKey(host, unit);
		if (this.#owned.has(key)) return this.#node;
		const now = Date.now();
		const cached = this.#cache.get(key);
		if (!fresh && cached && cached.until > now) return cached.node;
		const owner = String(
			await this.#ready().eval(CLAIM, 1, key, this.#node, String(this.#leaseMs)),
		);
		if (owner === this.#node) {
			this.#cache.delete(key);
			if (!this.#owned.has(key)) {
				this.#owned.set(key, { host, unit });
				// Nodes that cached the previous owner look again.
				this.#announce([key]);
			}
		} else this.#cache.set(key, { node: owner, until: now + this.#cacheMs });
		return owner;
	}

	/** A node was declared dead: what this node believed it owned is looked up again. */
	forgetNode(node: string): void {
		for (const [key, c] of this.#cache) if (c.node === node) this.#cache.delete(key);
	}

	owns(host: Host, unit: string): boolean {
		return this.#owned.has(this.#leaseKey(host, unit));
	}

	async release(host: Host, unit: string): Promise<void> {
		const key = this.#leaseKey(host, unit);
		if (!this.#owned.delete(key)) return;
		await this.#ready().eval(RELEASE, 1, key, this.#node);
		this.#announce([key]);
	}

	async publish(host: Host, unit: string, entry: string | null): Promise<void> {
		const redis = this.#ready();
		if (entry === null) await redis.hdel(this.#directoryKey(host), unit);
		else await redis.hset(this.#directoryKey(host), unit, entry);
	}

	async has(host: Host, unit: string): Promise<boolean> {
		return (await this.#ready().hexists(this.#directoryKey(host), unit)) === 1;
	}

	/** Sets `unit`'s entry unless it has one (a node seeding the directory from storage). */
	async seed(host: Host, unit: string, entry: string): Promise<void> {
		await this.#ready().hsetnx(this.#directoryKey(host), unit, entry);
	}

	async directory(host: Host): Promise<Map<string, { entry: string; owned: boolean }>> {
		const redis = this.#ready();
		const all = await redis.hgetall(this.#directoryKey(host));
		const units = Object.keys(all);
		const leases = units.map((u) => this.#leaseKey(host, u));
		const owners = !units.length
			? []
			: this.#keys.clustered
				? await Promise.all(leases.map((k) => redis.get(k)))
				: await redis.mget(leases);
		const out = new Map<string, { entry: string; owned: boolean }>();
		units.forEach((u, i) => {
			out.set(u, { entry: all[u] as string, owned: owners[i] !== null });
		});
		return out;
	}

	/**
	 * With each heartbeat: leases of units this node still needs are renewed, the others
	 * released; a lease found lost drops the unit here (`OwnedUnits.lost`).
	 */
	async renew(): Promise<void> {
		const redis = this.#redis;
		if (!redis || this.#stopping || redis.status !== "ready") return;
		const now = Date.now();
		for (const [key, c] of this.#cache) if (c.until <= now) this.#cache.delete(key);
		const keep: string[] = [];
		const drop: string[] = [];
		for (const [key, { host, unit }] of this.#owned) {
			const units = placementOf(host);
			if (units?.holds(unit)) keep.push(key);
			else drop.push(key);
		}
		// On a Redis Cluster one group per slot holding leases: sent together (one write per shard).
		const released = drop.length
			? await Promise.all(
					this.#keys.groups(drop, SLICE).map(async (slice) => {
						await redis.eval(RELEASE, slice.length, ...slice, this.#node);
						return slice;
					}),
				)
			: [];
		for (const slice of released) {
			for (const key of slice) this.#forget(key);
			this.#announce(slice);
		}
		const renewals = await Promise.all(
			this.#keys
				.groups(keep, SLICE)
				.map(
					async (slice) =>
						[
							slice,
							(await redis.eval(
								RENEW,
								slice.length,
								...slice,
								this.#node,
								String(this.#leaseMs),
							)) as number[],
						] as const,
				),
		);
		for (const [slice, renewed] of renewals)
			slice.forEach((key, j) => {
				if (renewed[j] === 1) return;
				this.#log.warn({ lease: key }, "cluster owners: a lease was lost; its unit is dropped");
				this.#forget(key);
			});
		// What Redis may have lost (a restart) is written again: the components' directories.
		const placements = new Set<OwnedUnits>();
		for (const { host } of this.#owned.values()) {
			const units = placementOf(host);
			if (units?.refresh) placements.add(units);
		}
		for (const units of placements)
			await units.refresh?.().catch((err: unknown) => {
				this.#log.warn({ err }, "cluster owners: a directory could not be refreshed");
			});
	}

	#forget(key: string): void {
		const o = this.#owned.get(key);
		if (!o) return;
		this.#owned.delete(key);
		placementOf(o.host)?.lost(o.unit);
	}
}

function placementOf(host: Host): OwnedUnits | null {
	const p = host.placement;
	return p && typeof p === "object" ? p : null;
}
