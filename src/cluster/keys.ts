/**
 * The names of the cluster's Redis keys and channels, in one place (docs/architecture.md
 * "Redis Cluster"). With one Redis (`cluster.redis`) they are what they always were, so a
 * deployment upgraded node by node keeps its state. With a Redis Cluster
 * (`cluster.redis_cluster`) the keys one script or transaction touches together carry the same
 * hash tag (`{...}`, https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/
 * "Hash tags"), so that they share a hash slot:
 *
 * - `{<p>}:nodes`, `{<p>}:alive:<node>`, `{<p>}:beats`, `{<p>}:orphans` and the `{<p>}:registry`
 *   and `{<p>}:owners` channels: membership, one slot (the heartbeat's MULTI, the MGET of the
 *   `alive` keys);
 * - `<p>:stream:{<node>}`, `<p>:orphan:{<node>}:<time>`, `<p>:n:{<node>}` and the channel
 *   `<p>:node:{<node>}`: a node's stream and what follows it (RENAME keeps the slot), so the
 *   streams spread over the shards with the nodes;
 * - `<p>:s:{<bare>}` and the channel `<p>:j:{<bare>}`: a bare JID's hash and its changes
 *   (the registry's scripts SPUBLISH from the hash's shard);
 * - `<p>:h:{<host>}`, `<p>:u:{<host>}`, `<p>:rooms:{<host>}`: a host's sets and counters;
 * - `<p>:room:{<unit>@<host>}`: a lease, one slot each (renewed in groups per slot).
 *
 * The two layouts never meet: one Redis and a Redis Cluster are different servers, and every
 * node of a cluster must point at the same one.
 */

export interface ClusterKeys {
	readonly prefix: string;
	/** Keys are hash-tagged for a Redis Cluster; channels are sharded (SPUBLISH/SSUBSCRIBE). */
	readonly clustered: boolean;
	// membership (one slot)
	readonly nodes: string;
	alive(node: string): string;
	readonly beats: string;
	readonly orphans: string;
	/** Channel: the replicated registry's changes and module notices (every node). */
	readonly registry: string;
	/** Channel: lease changes (ownership.ts). */
	readonly owners: string;
	// one node's
	stream(node: string): string;
	orphan(node: string, time: number): string;
	/** Channel: requests to one node and their answers (delivery.ts `ask`). */
	nodeChannel(node: string): string;
	// sharded registry
	jidHash(bare: string): string;
	jidChannel(bare: string): string;
	/** The bare JID of a {@link jidChannel}, or null when `channel` is not one. */
	jidOfChannel(channel: string): string | null;
	nodeSet(node: string): string;
	hostSet(host: string): string;
	hostUsers(host: string): string;
	// component units (ownership.ts)
	lease(host: string, unit: string): string;
	rooms(host: string): string;
	/**
	 * Splits `keys` into groups that one script may touch together (the same slot), at most
	 * `max` keys each; with one Redis, slices of `max` in order.
	 */
	groups(keys: string[], max: number): string[][];
}

/**
 * `{x}`: a hash tag on `x`. A JID's localpart may hold braces, which would end the tag early
 * (or empty it, and then Redis hashes the whole key, so a hash and its channel part slots): such
 * a name gets a tag without braces followed by the name itself, still one name per JID.
 */
export function tag(x: string): string {
	if (!/[{}]/.test(x)) return `{${x}}`;
	return `{${x.replace(/[{}]/g, "_")}}${x}`;
}

function untag(t: string): string {
	const close = t.indexOf("}");
	if (!t.startsWith("{") || close < 0) return t;
	return close === t.length - 1 ? t.slice(1, -1) : t.slice(close + 1);
}

export function clusterKeys(prefix: string, clustered: boolean): ClusterKeys {
	const p = prefix;
	if (!clustered) {
		const jid = `${p}:j:`;
		return {
			prefix,
			clustered,
			nodes: `${p}:nodes`,
			alive: (n) => `${p}:alive:${n}`,
			beats: `${p}:beats`,
			orphans: `${p}:orphans`,
			registry: `${p}:registry`,
			owners: `${p}:owners`,
			stream: (n) => `${p}:stream:${n}`,
			orphan: (n, time) => `${p}:orphan:${n}:${time}`,
			nodeChannel: (n) => `${p}:node:${n}`,
			jidHash: (bare) => `${p}:s:${bare}`,
			jidChannel: (bare) => `${jid}${bare}`,
			jidOfChannel: (c) => (c.startsWith(jid) ? c.slice(jid.length) : null),
			nodeSet: (n) => `${p}:n:${n}`,
			hostSet: (h) => `${p}:h:${h}`,
			hostUsers: (h) => `${p}:u:${h}`,
			lease: (h, unit) => `${p}:room:${unit}@${h}`,
			rooms: (h) => `${p}:rooms:${h}`,
			groups: (keys, max) => {
				const out: string[][] = [];
				for (let i = 0; i < keys.length; i += max) out.push(keys.slice(i, i + max));
				return out;
			},
		};
	}
	const m = `{${p}}`;
	const jid = `${p}:j:`;
	return {
		prefix,
		clustered,
		nodes: `${m}:nodes`,
		alive: (n) => `${m}:alive:${n}`,
		beats: `${m}:beats`,
		orphans: `${m}:orphans`,
		registry: `${m}:registry`,
		owners: `${m}:owners`,
		stream: (n) => `${p}:stream:${tag(n)}`,
		orphan: (n, time) => `${p}:orphan:${tag(n)}:${time}`,
		nodeChannel: (n) => `${p}:node:${tag(n)}`,
		jidHash: (bare) => `${p}:s:${tag(bare)}`,
		jidChannel: (bare) => `${jid}${tag(bare)}`,
		jidOfChannel: (c) => (c.startsWith(jid) ? untag(c.slice(jid.length)) : null),
		nodeSet: (n) => `${p}:n:${tag(n)}`,
		hostSet: (h) => `${p}:h:${tag(h)}`,
		hostUsers: (h) => `${p}:u:${tag(h)}`,
		lease: (h, unit) => `${p}:room:${tag(`${unit}@${h}`)}`,
		rooms: (h) => `${p}:rooms:${tag(h)}`,
		groups: (keys, max) => {
			const bySlot = new Map<number, string[][]>();
			const out: string[][] = [];
			for (const k of keys) {
				const slot = calculateSlot(k);
				let lists = bySlot.get(slot);
				if (!lists) {
					lists = [[]];
					bySlot.set(slot, lists);
				}
				let last = lists[lists.length - 1] as string[];
				if (last.length >= max) {
					last = [];
					lists.push(last);
				}
				if (!last.length) out.push(last);
				last.push(k);
			}
			return out;
		},
	};
}

/** CRC16-CCITT (XMODEM) table, the checksum of Redis Cluster's key slots. */
const CRC16 = (() => {
	const t = new Uint16Array(256);
	for (let i = 0; i < 256; i++) {
		let c = i << 8;
		for (let j = 0; j < 8; j++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
		t[i] = c;
	}
	return t;
})();

/**
 * The hash slot of a key (cluster-spec "Key distribution model": CRC16 of the key, or of its
 * hash tag when it has a non-empty one, modulo 16384); `redis-cli cluster keyslot` agrees
 * (src/cluster/keys.test.ts).
 */
export function calculateSlot(key: string): number {
	const b = Buffer.from(key);
	let start = 0;
	let end = b.length;
	const open = b.indexOf(0x7b); // {
	if (open >= 0) {
		const close = b.indexOf(0x7d, open + 1); // }
		if (close > open + 1) {
			start = open + 1;
			end = close;
		}
	}
	let crc = 0;
	for (let i = start; i < end; i++)
		crc = ((crc << 8) & 0xffff) ^ (CRC16[((crc >> 8) ^ (b[i] as number)) & 0xff] as number);
	return crc & 16383;
}
