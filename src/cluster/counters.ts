/**
 * Cluster-wide counters for limits that must hold across nodes (issue 16): guests per address
 * (`anonymous.max_sessions_per_ip`), uploads per address (`ip_max_uploads`, `ip_daily_quota`),
 * rooms of a MUC service (`max_rooms`, `max_rooms_per_user`). A node's share must not outlive
 * it, so each counter is a hash with one field per node holding something:
 *
 * - `<p>:c:<name>`   a hash per counter: `<node>` -> what that node holds (released with the
 *                    node: the leader HDELs a dead node's field), `=<unit>` -> a unit that belongs
 *                    to no node (a persistent room, kept when its node dies; set, not added, so
 *                    counting it twice counts it once), `@<bucket>` -> what was spent
 *                    in that time bucket (bytes uploaded), kept for the counter's window and
 *                    then dropped by the next check;
 * - `<p>:cn:<node>`  a set per node of the counters where it holds something, for the leader
 *                    to find them when the node dies (and the node itself when it stops).
 *
 * - `#` in each counter: the sum of its node and unit fields, kept by every script that writes
 *                    one (absent at 0), so that a check reads it instead of summing a MUC
 *                    service's persistent rooms; spent buckets are summed by each check.
 *
 * The total is `#` plus the spent buckets in the window. A check-and-add is one script on the counter's one key
 * (atomic, and a single key, so that a Redis Cluster can place it anywhere); the node's set is
 * written by separate commands on the same connection, in order: SADD before this node's first
 * unit, SREM after its last (the node knows its own share, so it never needs to ask). After a
 * lost connection or being declared dead, a node writes its shares again ({@link rewrite}).
 * Keys are built by {@link ClusterCounters.key} and {@link ClusterCounters.nodeKey} only.
 */
import type { Redis } from "ioredis";
import type { ClusterCounterApi } from "../core/contracts.ts";
import type { Logger } from "../core/log.ts";

// Shared by the scripts below: `#` holds the sum of the node and unit fields (the running total,
// so that a check needs no walk over a MUC service's persistent rooms), absent when 0. Absent
// with such fields (a hash written before `#` existed), it is summed once and written.
const TOTAL = `
local function base(key)
  local t = redis.call('HGET', key, '#')
  if t then return tonumber(t) end
  local all = redis.call('HGETALL', key)
  local s = 0
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 1) ~= '@' then s = s + tonumber(all[i + 1]) end
  end
  if s > 0 then redis.call('HSET', key, '#', s) end
  return s
end
local function keep(key, t)
  if t > 0 then redis.call('HSET', key, '#', t) else redis.call('HDEL', key, '#') end
end
`;

// KEYS: the counter. ARGV: field, by, max (0: none), now (ms), window (ms, 0: none), bucket (ms),
// unit ("1": the field is a unit's, set to `by` if absent and removed by a negative `by`).
// Spent fields older than the window go first; an add (by > 0) with a max is refused when the
// total would pass it. Returns {1} or, refused, {0, total, bucket1, spent1, bucket2, ...} (the
// spent buckets, for a Retry-After); max -1 only reads (that answer, nothing added). A field
// back at 0 goes, as does the hash when empty. The total is `#` plus the spent buckets, which
// are walked only with a window (a counter with spending is always given its window, and has
// no unit fields): O(1) in the number of units, O(buckets + nodes) with a window.
export const ADD_SCRIPT = `${TOTAL}
local f = ARGV[1]
local by = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local bucket = tonumber(ARGV[6])
if ARGV[7] == '1' and by > 0 and redis.call('HEXISTS', KEYS[1], f) == 1 then
  return {1}
end
local t = base(KEYS[1])
local total = t
local spent = {}
if window > 0 then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local g = all[i]
    if string.sub(g, 1, 1) == '@' then
      local b = tonumber(string.sub(g, 2))
      local v = tonumber(all[i + 1])
      if (b + 1) * bucket + window <= now then
        redis.call('HDEL', KEYS[1], g)
      else
        if v > 0 then
          spent[#spent + 1] = b
          spent[#spent + 1] = v
        end
        total = total + v
      end
    end
  end
end
if max < 0 or (by > 0 and max > 0 and total + by > max) then
  local out = {0, total}
  for i = 1, #spent do out[#out + 1] = spent[i] end
  return out
end
local counted = string.sub(f, 1, 1) ~= '@'
if ARGV[7] == '1' then
  local old = tonumber(redis.call('HGET', KEYS[1], f) or '0')
  if by < 0 then redis.call('HDEL', KEYS[1], f); by = 0 else redis.call('HSET', KEYS[1], f, by) end
  keep(KEYS[1], t + by - old)
elseif by ~= 0 then
  local n = redis.call('HINCRBY', KEYS[1], f, by)
  if n <= 0 then redis.call('HDEL', KEYS[1], f) end
  if counted then
    if n > 0 then keep(KEYS[1], t + by) else keep(KEYS[1], t + by - n) end
  end
end
if window > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], window + bucket)
end
return {1}`;

// KEYS: a counter. ARGV: a node, its share (> 0: set; 0: removed). For rewrite() and
// releaseNode(): one key per script, as the counters are on several shards of a Redis Cluster.
export const SET_SCRIPT = `${TOTAL}
local t = base(KEYS[1])
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local n = tonumber(ARGV[2])
if n > 0 then redis.call('HSET', KEYS[1], ARGV[1], n) else redis.call('HDEL', KEYS[1], ARGV[1]) end
keep(KEYS[1], t + n - old)
return 1`;

type Scripted = Redis & {
	parleyCount(key: string, ...args: string[]): Promise<number[]>;
	parleyShare(key: string, node: string, share: string): Promise<number>;
};

/** Options of a counter with spending over a rolling window (the uploads' bytes per day). */
export interface Window {
	/** How long what is spent counts (ms). */
	ms: number;
	/** Spending is summed per bucket of this length (ms): Retry-After is that precise. */
	bucketMs: number;
}

/** A refused add: the total it found, and what was spent when (oldest first). */
export interface Refusal {
	total: number;
	spent: { at: number; amount: number }[];
}

export class ClusterCounters implements ClusterCounterApi {
	readonly #pub: Scripted;
	readonly #prefix: string;
	readonly #node: string;
	readonly #log: Logger;
	/** This node's share of each counter (what its field holds, or will once written). */
	readonly #mine = new Map<string, number>();
	/** Set once this node released its shares (stopping): what ends after that writes nothing. */
	#stopped = false;

	constructor(o: { pub: Redis; prefix: string; node: string; log: Logger }) {
		o.pub.defineCommand("parleyCount", { numberOfKeys: 1, lua: ADD_SCRIPT });
		o.pub.defineCommand("parleyShare", { numberOfKeys: 1, lua: SET_SCRIPT });
		this.#pub = o.pub as Scripted;
		this.#prefix = o.prefix;
		this.#node = o.node;
		this.#log = o.log;
	}

	key(name: string): string {
		return `${this.#prefix}:c:${name}`;
	}
	nodeKey(node: string): string {
		return `${this.#prefix}:cn:${node}`;
	}

	/** This node's share of `name` (for tests and checks). */
	mine(name: string): number {
		return this.#mine.get(name) ?? 0;
	}

	/**
	 * Adds `by` (> 0) to this node's share of `name` unless the total would pass `max` (0: no
	 * limit). `unit`: what is added is that unit's and no node's (field `=<unit>`): it survives
	 * this node, and adding it again changes nothing.
	 */
	async tryAdd(
		name: string,
		by: number,
		max: number,
		o: { unit?: string; window?: Window } = {},
	): Promise<true | Refusal> {
		if (this.#stopped) throw new Error("cluster: this node left the cluster");
		const shared = o.unit !== undefined;
		const field = shared ? `=${o.unit}` : this.#node;
		if (!shared) this.#grow(name, by);
		const res = await this.#run(name, field, by, max, o.window, false, shared).catch(
			(err: unknown) => {
				if (!shared) this.#shrink(name, by);
				throw err;
			},
		);
		if (res[0] === 1) return true;
		if (!shared) this.#shrink(name, by);
		const spent: Refusal["spent"] = [];
		const bucketMs = o.window?.bucketMs ?? 1;
		for (let i = 2; i + 1 < res.length; i += 2)
			spent.push({ at: Number(res[i]) * bucketMs, amount: Number(res[i + 1]) });
		spent.sort((a, b) => a.at - b.at);
		return { total: Number(res[1] ?? 0), spent };
	}

	/** Takes `by` (> 0) off this node's share of `name` (or removes `unit`). */
	async release(
		name: string,
		by: number,
		o: { unit?: string; window?: Window } = {},
	): Promise<void> {
		if (this.#stopped) return;
		if (o.unit !== undefined) await this.#run(name, `=${o.unit}`, -by, 0, o.window, false, true);
		else await this.#shrink(name, by, () => this.#run(name, this.#node, -by, 0, o.window));
	}

	/** Records `amount` spent now on `name` (kept for the window, whatever becomes of this node). */
	async spend(name: string, amount: number, window: Window): Promise<void> {
		if (amount <= 0 || this.#stopped) return;
		const field = `@${Math.floor(Date.now() / window.bucketMs)}`;
		await this.#run(name, field, amount, 0, window);
	}

	/** The total of `name` in the whole cluster (spending out of the window left out). */
	async total(name: string, window?: Window): Promise<number> {
		if (this.#stopped) throw new Error("cluster: this node left the cluster");
		const res = await this.#run(name, this.#node, 0, 0, window, true);
		return Number(res[1] ?? 0);
	}

	/**
	 * True once per cluster and Redis life for `mark` (SET NX of the key `<p>:c:<mark>`): who gets
	 * true counts what exists outside any node (the persistent rooms in storage). Redis losing its
	 * data loses the mark with the counters, so they are counted again.
	 */
	async once(mark: string): Promise<boolean> {
		return (await this.#pub.set(this.key(mark), "1", "NX")) === "OK";
	}

	/**
	 * After a lost connection or this node declared dead (its fields removed by the leader):
	 * writes every share of this node again (set, not added: what is there is this node's).
	 */
	async rewrite(): Promise<void> {
		if (!this.#mine.size) return;
		// Single commands and one script per counter, not a pipeline: on a Redis Cluster the keys
		// live on different shards (an ioredis pipeline must stay on one); sent at once, they
		// still share a round trip. The script keeps the counter's running total (`#`).
		await Promise.all([
			this.#pub.sadd(this.nodeKey(this.#node), ...this.#mine.keys()),
			...[...this.#mine].map(([name, n]) =>
				this.#pub.parleyShare(this.key(name), this.#node, String(n)),
			),
		]);
	}

	/** Removes what `node` held in every counter (the leader, for a dead node; a node, stopping). */
	async releaseNode(node: string): Promise<void> {
		if (node === this.#node) this.#stopped = true;
		const names = await this.#pub.smembers(this.nodeKey(node));
		// One script per counter, as in rewrite(): the counters' keys are on several shards of a
		// Redis Cluster. It takes the node's share off the running total (`#`) with its field.
		await Promise.all(names.map((name) => this.#pub.parleyShare(this.key(name), node, "0")));
		await this.#pub.del(this.nodeKey(node));
		if (node === this.#node) this.#mine.clear();
	}

	#grow(name: string, by: number): void {
		const n = this.#mine.get(name) ?? 0;
		this.#mine.set(name, n + by);
		if (n === 0) void this.#pub.sadd(this.nodeKey(this.#node), name).catch(() => {});
	}

	/**
	 * Shrinks the local share. `then` (the HINCRBY) is sent first and the SREM of a share back
	 * at 0 after it: one connection runs them in the order sent, and a later add's SADD after.
	 */
	#shrink(name: string, by: number, then?: () => Promise<unknown>): Promise<unknown> {
		const n = (this.#mine.get(name) ?? 0) - by;
		const write = then?.().catch((err: unknown) =>
			this.#log.warn({ err, counter: name }, "cluster: a counter was not released"),
		);
		if (n > 0) this.#mine.set(name, n);
		else {
			this.#mine.delete(name);
			void this.#pub.srem(this.nodeKey(this.#node), name).catch(() => {});
		}
		return write ?? Promise.resolve();
	}

	#run(
		name: string,
		field: string,
		by: number,
		max: number,
		window: Window | undefined,
		read = false,
		unit = false,
	): Promise<number[]> {
		// A read is an add of 0 that answers with the total: a refusal of an add of 1 with max 0.
		return this.#pub.parleyCount(
			this.key(name),
			field,
			read ? "1" : String(by),
			read ? "-1" : String(max),
			String(Date.now()),
			String(window?.ms ?? 0),
			String(window?.bucketMs ?? 1),
			unit ? "1" : "0",
		);
	}
}
