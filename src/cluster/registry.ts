/**
 * The sharded session registry (`cluster.registry = "sharded"`, issue 16, docs/scaling.md):
 * where the sessions of the cluster are is kept in Redis, and a node holds in memory only its
 * own sessions and the other nodes' sessions of the bare JIDs it looked up (its cache), so
 * its memory grows with its own sessions, not with the cluster's.
 *
 * - Redis layout, under the cluster's prefix:
 *   `<p>:s:<bare>`  a hash per bare JID: resource -> the session's entry (JSON {@link SessionEntry});
 *   `<p>:n:<node>`  a set per node of the full JIDs it wrote, so that the leader finds a dead
 *                   node's entries and removes them;
 *   `<p>:j:<bare>`  a pub/sub channel per bare JID: each change of the hash is published there
 *                   (the entry itself, or its removal), to the nodes that cache that JID only.
 *   `<p>:h:<host>`  a set per host of the full JIDs in its hashes (SCARD: its sessions, for
 *                   `anonymous.max_sessions`; SMEMBERS: who gets an XEP-0133 announcement);
 *   `<p>:u:<host>`  a counter per host of its bare JIDs with a session (online users).
 *   A change is one Lua script (hash, node set, host set and counter, publication at once, so
 *   that a reader never sees one without the other); a tick's changes go in one pipeline.
 * - On a Redis Cluster (`cluster.redis_cluster`, src/cluster/keys.ts) those keys are in different
 *   slots, and a script may touch one slot only. The script keeps what must be atomic, the
 *   JID's hash and its channel (`<p>:s:{<bare>}`, SPUBLISH on `<p>:j:{<bare>}`, one slot): a
 *   cache never misses a change nor sees one the hash does not hold. The node set, host set and
 *   counter are separate commands, in this order: the node set gains the member before each write
 *   of the entry and loses it after it is removed (so a node that dies between the two leaves at
 *   worst a member without an entry, which `entriesOf` skips, never an entry the leader cannot
 *   find); the host set and counter follow the script's answer (new field, first field, last
 *   field gone). A node that dies between the script and those leaves the host's counts off by
 *   one (nothing corrects it while the host has sessions); they are counts for limits and
 *   announcements, not routing. A tick's changes are sent in one turn (ioredis's auto-pipelining: one write per
 *   shard).
 * - Lookups. Before the router (or a module) reads `host.sessions` for a user that may be
 *   connected elsewhere, {@link ShardedRegistry.resolve} makes sure the user's bare JID is
 *   cached: a hit is synchronous (a Map lookup); a miss SUBSCRIBEs to the JID's channel, then
 *   reads the hash (HGETALL), then applies what the channel brought meanwhile, in order (every
 *   entry carries its node's sequence number: a replica keeps the newest).
 * - The cache. A bare JID with a local session is pinned (kept while it has one: the account's
 *   other resources must be known for RFC 6121 §4.2.2 broadcasts, carbons, roster pushes and
 *   resource conflicts); others are kept until the cache holds more than `registry_cache` of
 *   them, then the least recently used go (UNSUBSCRIBE).
 * - Resource conflicts across nodes (RFC 6120 §7.7.2.2). A newly bound session overwrites the
 *   field; an update or a removal by a node applies only while the field still holds that
 *   node's session, so a replaced session never overwrites or removes its successor's entry.
 *
 * Why per-JID channels rather than Redis client-side caching (CLIENT TRACKING): a tracking
 * invalidation names the key only, so every caching node reads the hash again (one more round
 * trip per change and per caching node, the entry's bytes all the same), where the channel
 * carries the new entry; Redis keeps one tracking table for all its clients, bounded by
 * `tracking-table-max-keys` (1 000 000 here, `redis-cli config get`), beyond which it
 * invalidates keys on its own, fewer than a large cluster's JIDs; and ioredis 6 drops RESP3
 * `invalidate` pushes, so only the REDIRECT form (invalidations as messages on a subscriber
 * connection) would work. NATS JetStream KV (a watch per key) would add a second engine
 * beside the Redis the cluster already needs. Argued, not measured side by side.
 */
import type { Redis } from "ioredis";
import type { Host } from "../core/contracts.ts";
import type { Logger } from "../core/log.ts";
import type { ClusterKeys } from "./keys.ts";
import type { SessionEntry } from "./remote-session.ts";

/** What travels on a bare JID's channel: the same shape as the replicated registry's messages. */
export type ShardMessage =
	| { op: "put"; entry: SessionEntry }
	| { op: "del"; node: string; id: string; seq: number; seen?: Record<string, number> };

/** What the registry needs from the link: the replicas it keeps in `host.sessions`. */
export interface ShardSink {
	/**
	 * Apply a change of another node's session to the cached replicas. `loaded`: read from the
	 * hash, not received on the channel (it says nothing of the order of the node's changes).
	 */
	apply(m: ShardMessage, loaded?: boolean): void;
	/** Drop the replicas of `user` (evicted from the cache), firing nothing. */
	forget(host: Host, user: string): void;
	host(name: string): Host | undefined;
}

interface Cached {
	host: Host;
	user: string;
	/** Ids of this node's own sessions of the JID: pinned while there is one. */
	local: Set<string>;
	/** Recency for eviction (a counter, not a clock). */
	used: number;
	/** Set while the first read is under way; the channel's messages wait in `buffer`. */
	loading: Promise<void> | null;
	buffer: ShardMessage[] | null;
}

// Whose session a field holds is found by its `"id":"<uuid>"` (JSON.stringify escapes every quote
// inside a string, so that text occurs only as the id's key and value): an update took 9 µs of
// Redis time this way, 32 µs decoding the entry with cjson (20 000 pipelined EVALSHAs, INFO
// commandstats before and after; a new entry 13–15 µs either way). The host set and counter
// added 1–2.6 µs to a new entry (docs/architecture.md "Sharded registry").
// KEYS: hash, node set, host set, host's user counter. ARGV: resource, id, entry, new ("1"/"0"),
// channel, member.
// An update (not new) applies while the field is empty or holds the same session. The channel
// gets {"op":"put","entry":<entry>}, made here so that the entry crosses the network once. A
// field that was empty joins the host's set; a hash that was empty counts one more user.
export const PUT_SCRIPT = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[4] ~= '1' and cur and not string.find(cur, '"id":"' .. ARGV[2] .. '"', 1, true) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if not cur then
  redis.call('SADD', KEYS[3], ARGV[6])
  if redis.call('HLEN', KEYS[1]) == 1 then redis.call('INCR', KEYS[4]) end
end
redis.call('SADD', KEYS[2], ARGV[6])
redis.call('PUBLISH', ARGV[5], '{"op":"put","entry":' .. ARGV[3] .. '}')
return 1`;

// KEYS: hash, node set, host set, host's user counter. ARGV: resource, id, channel, message,
// member. A counter back at 0 goes, as an empty set does: a cluster that stopped leaves no key.
export const DEL_SCRIPT = `
redis.call('SREM', KEYS[2], ARGV[5])
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.find(cur, '"id":"' .. ARGV[2] .. '"', 1, true) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[5])
  if redis.call('HLEN', KEYS[1]) == 0 and redis.call('DECR', KEYS[4]) <= 0 then
    redis.call('DEL', KEYS[4])
  end
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1`;

// Redis Cluster (see the header): the hash and its channel only. KEYS: hash. ARGV: resource,
// id, entry, new, channel. Returns 0: refused (as PUT_SCRIPT), 1: an existing field updated,
// 2: a new field, 3: a new field, the hash's first.
export const PUT_SLOT_SCRIPT = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[4] ~= '1' and cur and not string.find(cur, '"id":"' .. ARGV[2] .. '"', 1, true) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SPUBLISH', ARGV[5], '{"op":"put","entry":' .. ARGV[3] .. '}')
if cur then return 1 end
if redis.call('HLEN', KEYS[1]) == 1 then return 3 end
return 2`;

// Redis Cluster. KEYS: hash. ARGV: resource, id, channel, message. Returns 0: not this
// session's field, 1: removed, 2: removed, the hash's last.
export const DEL_SLOT_SCRIPT = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local out = 0
if cur and string.find(cur, '"id":"' .. ARGV[2] .. '"', 1, true) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  out = 1
  if redis.call('HLEN', KEYS[1]) == 0 then out = 2 end
end
redis.call('SPUBLISH', ARGV[3], ARGV[4])
return out`;

// KEYS: a counter. One user fewer; a counter back at 0 goes (as in DEL_SCRIPT).
export const DECR_SCRIPT = `
if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1]) end
return 0`;

type Scripted = Redis & {
	parleyPut(...args: string[]): Promise<number>;
	parleyDel(...args: string[]): Promise<number>;
	parleyPutSlot(...args: string[]): Promise<number>;
	parleyDelSlot(...args: string[]): Promise<number>;
	parleyDecr(key: string): Promise<number>;
};

type Write =
	| { op: "put"; entry: SessionEntry; isNew: boolean }
	| {
			op: "del";
			bare: string;
			resource: string;
			node: string;
			id: string;
			seq: number;
			seen?: Record<string, number> | undefined;
	  };

export class ShardedRegistry {
	readonly #pub: Scripted;
	readonly #sub: Redis;
	readonly #keys: ClusterKeys;
	readonly #node: string;
	readonly #log: Logger;
	readonly #sink: ShardSink;
	readonly #max: number;
	/** Cached bare JIDs (`user@host`). */
	readonly #cache = new Map<string, Cached>();
	/** Ids of this node's sessions already written once (a later write is an update). */
	readonly #written = new Set<string>();
	#writes: Write[] = [];
	#clock = 0;
	/**
	 * Lookups that missed the cache, entries written, and messages (and their bytes) received
	 * on the JIDs' channels: bench/cluster-registry.ts reads them.
	 */
	readonly counters = { misses: 0, writes: 0, received: 0, receivedBytes: 0 };

	constructor(o: {
		pub: Redis;
		sub: Redis;
		keys: ClusterKeys;
		node: string;
		log: Logger;
		sink: ShardSink;
		cacheMax: number;
	}) {
		o.pub.defineCommand("parleyPut", { numberOfKeys: 4, lua: PUT_SCRIPT });
		o.pub.defineCommand("parleyDel", { numberOfKeys: 4, lua: DEL_SCRIPT });
		o.pub.defineCommand("parleyPutSlot", { numberOfKeys: 1, lua: PUT_SLOT_SCRIPT });
		o.pub.defineCommand("parleyDelSlot", { numberOfKeys: 1, lua: DEL_SLOT_SCRIPT });
		o.pub.defineCommand("parleyDecr", { numberOfKeys: 1, lua: DECR_SCRIPT });
		this.#pub = o.pub as Scripted;
		this.#sub = o.sub;
		this.#keys = o.keys;
		this.#node = o.node;
		this.#log = o.log;
		this.#sink = o.sink;
		this.#max = o.cacheMax;
	}

	// Key names: src/cluster/keys.ts (hash-tagged on a Redis Cluster).
	#hash(bare: string): string {
		return this.#keys.jidHash(bare);
	}
	#set(node: string): string {
		return this.#keys.nodeSet(node);
	}
	#channel(bare: string): string {
		return this.#keys.jidChannel(bare);
	}
	/** The host's set of full JIDs and its online-users counter, for a bare or full JID. */
	#hostKeys(jid: string): [string, string] {
		const at = jid.indexOf("@");
		const slash = jid.indexOf("/", at);
		const host = jid.slice(at + 1, slash < 0 ? undefined : slash);
		return [this.#keys.hostSet(host), this.#keys.hostUsers(host)];
	}

	// --- the whole cluster's sessions of a host ---

	/**
	 * Sessions and online users (bare JIDs with a session) of `host` in the whole cluster. This
	 * node's writes still queued go first on the same connection, so they are counted.
	 */
	async counts(host: string): Promise<{ sessions: number; users: number }> {
		// On a Redis Cluster the host's set and counter follow each script's answer: wait for them.
		if (this.#keys.clustered) await this.flush();
		else void this.flush();
		const [setKey, usersKey] = this.#hostKeys(`@${host}`);
		const res = (await this.#pub.pipeline().scard(setKey).get(usersKey).exec()) ?? [];
		for (const [err] of res) if (err) throw err;
		return { sessions: Number(res[0]?.[1] ?? 0), users: Number(res[1]?.[1] ?? 0) };
	}

	/** Full JIDs of `host`'s sessions in the whole cluster (this node's queued writes first). */
	async jids(host: string): Promise<string[]> {
		if (this.#keys.clustered) await this.flush();
		else void this.flush();
		return this.#pub.smembers(this.#hostKeys(`@${host}`)[0]);
	}

	/** Bare JIDs cached (pinned included). */
	get cached(): number {
		return this.#cache.size;
	}

	// --- lookups ---

	resolve(host: Host, user: string): Promise<void> | undefined {
		const c = this.#cache.get(`${user}@${host.name}`);
		if (c) {
			c.used = ++this.#clock;
			return c.loading ?? undefined;
		}
		return this.#load([[host, user]]);
	}

	resolveAll(bareJids: Iterable<string>): Promise<void> | undefined {
		const missing: [Host, string][] = [];
		const waiting: Promise<void>[] = [];
		for (const bare of bareJids) {
			const at = bare.indexOf("@");
			if (at <= 0 || bare.includes("/")) continue;
			const host = this.#sink.host(bare.slice(at + 1));
			if (!host || host.kind === "component") continue;
			const c = this.#cache.get(bare);
			if (c) {
				c.used = ++this.#clock;
				if (c.loading) waiting.push(c.loading);
			} else missing.push([host, bare.slice(0, at)]);
		}
		if (missing.length) waiting.push(this.#load(missing));
		if (!waiting.length) return undefined;
		return Promise.all(waiting).then(() => {});
	}

	/** Subscribes to the JIDs' channels, then reads their hashes: nothing published after is missed. */
	#load(list: [Host, string][]): Promise<void> {
		const fresh: Cached[] = [];
		for (const [host, user] of list) {
			const bare = `${user}@${host.name}`;
			if (this.#cache.has(bare)) continue;
			const c: Cached = {
				host,
				user,
				local: new Set(),
				used: ++this.#clock,
				loading: null,
				buffer: [],
			};
			this.#cache.set(bare, c);
			fresh.push(c);
		}
		this.counters.misses += fresh.length;
		const loading = this.#read(fresh);
		for (const c of fresh) c.loading = loading;
		return loading;
	}

	async #read(fresh: Cached[]): Promise<void> {
		if (!fresh.length) return;
		const bares = fresh.map((c) => `${c.user}@${c.host.name}`);
		try {
			let results: [Error | null, Record<string, string>][];
			if (this.#keys.clustered) {
				// Sharded channels: one SSUBSCRIBE per JID (their slots differ), each to its shard.
				await Promise.all(bares.map((b) => this.#sub.ssubscribe(this.#channel(b))));
				results = await Promise.all(
					bares.map((b) =>
						this.#pub
							.hgetall(this.#hash(b))
							.then((all): [null, Record<string, string>] => [null, all]),
					),
				);
			} else {
				await this.#sub.subscribe(...bares.map((b) => this.#channel(b)));
				const p = this.#pub.pipeline();
				for (const b of bares) p.hgetall(this.#hash(b));
				results = ((await p.exec()) ?? []) as [Error | null, Record<string, string>][];
			}
			for (const [err, all] of results) {
				if (err) throw err;
				for (const v of Object.values(all))
					this.#sink.apply({ op: "put", entry: JSON.parse(v) as SessionEntry }, true);
			}
		} catch (err) {
			// Unknown is not cached: the next lookup tries again. Routing goes on with what is
			// known (the local sessions), as during a Redis outage in the replicated registry.
			this.#log.warn({ err: (err as Error).message }, "cluster: a registry lookup failed");
			for (const c of fresh) {
				if (c.local.size) continue;
				this.#cache.delete(`${c.user}@${c.host.name}`);
			}
		} finally {
			for (const c of fresh) {
				const buffered = c.buffer ?? [];
				c.buffer = null;
				c.loading = null;
				if (this.#cache.get(`${c.user}@${c.host.name}`) === c)
					for (const m of buffered) this.#sink.apply(m);
			}
		}
	}

	/** A message on a bare JID's channel; false when `channel` is not one. */
	onMessage(channel: string, message: string): boolean {
		const bare = this.#keys.jidOfChannel(channel);
		if (bare === null) return false;
		this.counters.received++;
		this.counters.receivedBytes += message.length;
		const c = this.#cache.get(bare);
		if (!c) return true; // evicted; the UNSUBSCRIBE is on its way
		const m = JSON.parse(message) as ShardMessage;
		if (c.buffer) c.buffer.push(m);
		else this.#sink.apply(m);
		return true;
	}

	// --- this node's sessions ---

	/** A local session of `user` is bound: its bare JID stays cached while it lasts. */
	pin(host: Host, user: string, id: string): void {
		const bare = `${user}@${host.name}`;
		if (!this.#cache.has(bare)) void this.#load([[host, user]]);
		this.#cache.get(bare)?.local.add(id);
	}

	unpin(host: Host, user: string, id: string): void {
		this.#cache.get(`${user}@${host.name}`)?.local.delete(id);
	}

	/** Writes a local session's entry with the tick's pipeline. `update`: never as a new binding. */
	put(entry: SessionEntry, update = false): void {
		const isNew = !update && !this.#written.has(entry.id);
		this.#written.add(entry.id);
		this.#writes.push({ op: "put", entry, isNew });
	}

	/** `seen`: see {@link ShardMessage} and SessionEntry.seen. */
	remove(
		bare: string,
		resource: string,
		id: string,
		seq: number,
		seen?: Record<string, number>,
	): void {
		this.#written.delete(id);
		this.#writes.push({ op: "del", bare, resource, node: this.#node, id, seq, seen });
	}

	/** Sends the writes queued this tick, in order, in one pipeline; resolves when they ran. */
	flush(): Promise<void> {
		const writes = this.#writes;
		if (!writes.length) return Promise.resolve();
		this.#writes = [];
		if (this.#keys.clustered) return this.#flushSlots(writes);
		const p = this.#pub.pipeline() as unknown as Scripted;
		for (const w of writes) this.#queue(p, w);
		this.counters.writes += writes.length;
		return (p as unknown as ReturnType<Redis["pipeline"]>).exec().then(
			(results) => {
				const failed = results?.find(([err]) => err);
				if (failed) this.#log.warn({ err: failed[0] }, "cluster: a registry write failed");
			},
			(err: unknown) => this.#log.warn({ err }, "cluster: registry writes were lost"),
		);
	}

	/**
	 * Redis Cluster (see the header): each write as commands on its keys' shards, issued in order
	 * (one connection per shard keeps the order of a key's commands).
	 */
	#flushSlots(writes: Write[]): Promise<void> {
		const r = this.#pub;
		const done: Promise<unknown>[] = [];
		for (const w of writes) {
			if (w.op === "put") {
				const e = w.entry;
				const slash = e.jid.indexOf("/");
				const bare = e.jid.slice(0, slash);
				const [hostSet, users] = this.#hostKeys(bare);
				// With every write, as PUT_SCRIPT does: a member a shard's failover lost (its replica is
				// asynchronous) comes back with the entry's next write.
				done.push(r.sadd(this.#set(e.node), e.jid));
				done.push(
					r
						.parleyPutSlot(
							this.#hash(bare),
							e.jid.slice(slash + 1),
							e.id,
							JSON.stringify(e),
							w.isNew ? "1" : "0",
							this.#channel(bare),
						)
						.then((res) =>
							Promise.all([res >= 2 ? r.sadd(hostSet, e.jid) : 0, res === 3 ? r.incr(users) : 0]),
						),
				);
				continue;
			}
			const full = `${w.bare}/${w.resource}`;
			const [hostSet, users] = this.#hostKeys(w.bare);
			const m: ShardMessage = { op: "del", node: w.node, id: w.id, seq: w.seq };
			done.push(
				r
					.parleyDelSlot(
						this.#hash(w.bare),
						w.resource,
						w.id,
						this.#channel(w.bare),
						JSON.stringify(m),
					)
					.then((res) =>
						Promise.all([
							res >= 1 ? r.srem(hostSet, full) : 0,
							res === 2 ? r.parleyDecr(users) : 0,
						]),
					),
			);
			done.push(r.srem(this.#set(w.node), full));
		}
		this.counters.writes += writes.length;
		return Promise.allSettled(done).then((results) => {
			const failed = results.find((x) => x.status === "rejected");
			if (failed) this.#log.warn({ err: failed.reason }, "cluster: a registry write failed");
		});
	}

	#queue(p: Scripted, w: Write): void {
		if (w.op === "put") {
			const e = w.entry;
			const slash = e.jid.indexOf("/");
			const bare = e.jid.slice(0, slash);
			const json = JSON.stringify(e);
			void p.parleyPut(
				this.#hash(bare),
				this.#set(e.node),
				...this.#hostKeys(bare),
				e.jid.slice(slash + 1),
				e.id,
				json,
				w.isNew ? "1" : "0",
				this.#channel(bare),
				e.jid,
			);
			return;
		}
		const m: ShardMessage = { op: "del", node: w.node, id: w.id, seq: w.seq };
		if (w.seen) m.seen = w.seen;
		void p.parleyDel(
			this.#hash(w.bare),
			this.#set(w.node),
			...this.#hostKeys(w.bare),
			w.resource,
			w.id,
			this.#channel(w.bare),
			JSON.stringify(m),
			`${w.bare}/${w.resource}`,
		);
	}

	// --- upkeep ---

	/** Evicts the least recently used JIDs beyond the cache's size (pinned ones do not count). */
	sweep(): void {
		let unpinned = 0;
		for (const c of this.#cache.values()) if (!c.local.size) unpinned++;
		const over = unpinned - this.#max;
		if (over <= 0) return;
		const idle = [...this.#cache.entries()]
			.filter(([, c]) => !c.local.size && !c.loading)
			.sort((x, y) => x[1].used - y[1].used)
			.slice(0, over);
		for (const [bare, c] of idle) {
			this.#cache.delete(bare);
			this.#sink.forget(c.host, c.user);
		}
		if (!idle.length) return;
		if (this.#keys.clustered)
			for (const [b] of idle) this.#sub.sunsubscribe(this.#channel(b)).catch(() => {});
		else this.#sub.unsubscribe(...idle.map(([b]) => this.#channel(b))).catch(() => {});
	}

	/**
	 * After a lost Redis connection: what was published meanwhile is gone. Unpinned JIDs are
	 * forgotten (looked up again when needed), pinned ones read again; every local session is
	 * written again as an update (`entries`), never over a session that replaced it.
	 */
	async resync(entries: SessionEntry[]): Promise<void> {
		const pinned: [Host, string][] = [];
		for (const [bare, c] of this.#cache) {
			this.#cache.delete(bare);
			this.#sink.forget(c.host, c.user);
			if (c.local.size) pinned.push([c.host, c.user]);
		}
		for (const e of entries) this.put(e, true);
		void this.flush();
		const locals = new Map<string, Set<string>>();
		for (const e of entries) {
			const bare = e.jid.slice(0, e.jid.indexOf("/"));
			const ids = locals.get(bare) ?? new Set<string>();
			locals.set(bare, ids);
			ids.add(e.id);
		}
		const loading = this.#load(pinned);
		for (const [bare, ids] of locals) for (const id of ids) this.#cache.get(bare)?.local.add(id);
		await loading;
	}

	/** The entries a dead node left in Redis (for the leader to end them). */
	async entriesOf(node: string): Promise<SessionEntry[]> {
		const members = await this.#pub.smembers(this.#set(node));
		if (!members.length) return [];
		const hget = (full: string): [string, string] => {
			const slash = full.indexOf("/");
			return [this.#hash(full.slice(0, slash)), full.slice(slash + 1)];
		};
		let replies: [Error | null, unknown][];
		if (this.#keys.clustered)
			// The JIDs' hashes are on every shard: one HGET each, sent together per shard.
			replies = await Promise.all(
				members.map((full) =>
					this.#pub.hget(...hget(full)).then(
						(v): [null, unknown] => [null, v],
						(err: Error): [Error, null] => [err, null],
					),
				),
			);
		else {
			const p = this.#pub.pipeline();
			for (const full of members) p.hget(...hget(full));
			replies = (await p.exec()) ?? [];
		}
		const out: SessionEntry[] = [];
		for (const [err, v] of replies) {
			if (err || typeof v !== "string") continue;
			const e = JSON.parse(v) as SessionEntry;
			if (e.node === node) out.push(e);
		}
		return out;
	}

	/** Removes a dead node's entries (published to the nodes that cache them) and its set. */
	async removeNode(node: string, entries: SessionEntry[]): Promise<void> {
		for (const e of entries) {
			const slash = e.jid.indexOf("/");
			this.#writes.push({
				op: "del",
				bare: e.jid.slice(0, slash),
				resource: e.jid.slice(slash + 1),
				node,
				id: e.id,
				seq: e.seq + 1,
			});
		}
		await this.flush();
		await this.#pub.del(this.#set(node));
	}
}
