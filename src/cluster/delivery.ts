/**
 * Delivery between the nodes of a cluster (issue 16, "no acknowledged stanza lost between
 * nodes"): what one node hands another (stanzas for its sessions, session closes, stanzas for
 * the components it runs) goes into the receiving node's Redis stream, so it outlives the
 * receiving node and blips of anyone's Redis connection.
 *
 * - Sending. Everything one event-loop turn produces for a node is one entry of that node's
 *   stream `<prefix>:stream:<node>` (XADD, `MAXLEN ~ stream_maxlen`): fields `o` (the sending
 *   process: node name and a random incarnation tag), `n` (a sequence number per sending
 *   process, over all its entries) and `d` (the records, separated by U+0001, which XML 1.0
 *   does not allow). One connection sends them in order, and a stream keeps the order of its
 *   entries, so a session gets one sender's stanzas in order (RFC 6120 §10.1).
 * - Receiving. The owner reads its stream in the consumer group `parley` (XREADGROUP, blocking),
 *   hands the records to the link (a local session's `send()`, or routing), and only then XACKs
 *   and XDELs the entry: at least once. An entry read again (a reply lost in a Redis blip: the
 *   node reads its pending entries first after each reconnection) is dropped by its `(o, n)`,
 *   which never goes backwards for one sending process.
 * - Death. When the leader declares a node dead (its `alive` key expired), one script renames
 *   that node's stream to `<prefix>:orphan:<node>:<time>` (unless the node came back meanwhile)
 *   and lists it in `<prefix>:orphans`. The leader claims the orphan's pending entries
 *   (XAUTOCLAIM) and its unread ones (XREADGROUP), has the link route each stanza again as the
 *   cluster now is (the recipient's other resource or offline storage, RFC 6121 §8.5.2 and
 *   §8.5.3.2.1), XACKs, and deletes the orphan. A leader that dies half way leaves the orphan
 *   listed; the next one goes on. A node that leaves in order orphans its own stream the same
 *   way.
 * - A paused node (SIGSTOP) that was declared dead and resumes must not deliver what the leader
 *   re-routed. A node delivers before XACK only while its last heartbeat, sent less than
 *   `node_timeout` minus a margin ago, still holds its `alive` key (so the leader cannot have
 *   renamed its stream); otherwise it XACKs each entry first and delivers only those the XACK
 *   found (an orphaned stream is no longer under its name, so the XACK finds nothing).
 * - Requests (`ask`/`answer`, a BOSH body for the node that holds its session) stay on Redis
 *   pub/sub, channel `<prefix>:node:<node>`: they have their own timeout, and PUBLISH says at
 *   once when no node of that name listens.
 */
import type { Config } from "../core/config/schema.ts";
import type { Logger } from "../core/log.ts";
import type { ClusterKeys } from "./keys.ts";
import { type ConnectOptions, openRedis, type RedisClient } from "./redis.ts";

/** Separates the fields of a request record; U+0000 cannot occur in XML or in a JID. */
const SEP = "\u0000";
/** Separates the records of one entry or message; U+0001 cannot occur in XML 1.0 either. */
export const REC = "\u0001";
/** The consumer group every node stream has; each node reads its own stream as consumer `node`. */
const GROUP = "parley";
/** Entries per read. */
const COUNT = 200;
/** How long one blocking read waits (ms); the loop then notices a stop or a reconnection. */
const BLOCK_MS = 1000;

/**
 * Renames a dead node's stream to an orphan the leader drains, unless the node is alive again
 * (its heartbeat came back between the leader's check and now). KEYS: stream, alive key,
 * orphan key, orphan set. Entries are deleted once acknowledged, so an empty stream holds
 * nothing to route: it is deleted. Returns 2 when the stream was orphaned, 1 when there was none (or
 * an empty one, deleted), 0 when the node is alive. With one Redis.
 */
const ORPHAN_SCRIPT = `
if ARGV[1] == "1" and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if redis.call('XLEN', KEYS[1]) == 0 then
	redis.call('DEL', KEYS[1])
else
	redis.call('RENAME', KEYS[1], KEYS[3])
	redis.call('SADD', KEYS[4], KEYS[3])
	return 2
end
return 1`;

/**
 * The same on a Redis Cluster, where the stream and its orphan share the node's slot but the
 * `alive` key and the orphan set are in the membership slot (src/cluster/keys.ts). KEYS: stream,
 * orphan key. The caller checks `alive` just before (GET) and lists the orphan just before (SADD):
 * a node whose heartbeat comes back between the two is orphaned all the same, as if it had come
 * back a moment later, and handles that as any node declared dead (its reads acknowledge first,
 * so the leader routes each entry once); a leader that dies after the SADD leaves a listed
 * orphan that does not exist, which the next drain removes once it is old enough to be sure the
 * RENAME is not still on its way ({@link Delivery} `#drain`).
 */
const ORPHAN_SLOT_SCRIPT = `
if redis.call('XLEN', KEYS[1]) == 0 then
	redis.call('DEL', KEYS[1])
	return 1
end
redis.call('RENAME', KEYS[1], KEYS[2])
return 2`;

export interface DeliveryOptions {
	/** Where the cluster's Redis is (`cluster.redis` or `cluster.redis_cluster`). */
	redis: Pick<Config["cluster"], "redis" | "redis_cluster" | "prefix">;
	keys: ClusterKeys;
	node: string;
	/** `cluster.node_timeout`, ms. */
	nodeTimeoutMs: number;
	/** `cluster.heartbeat`, ms. */
	heartbeatMs: number;
	/** `cluster.stream_maxlen`: entries a node's stream keeps at most (XADD MAXLEN ~). */
	maxlen: number;
	log: Logger;
	/** A record another node sent this one: deliver it. */
	receive(record: string): void;
	/** A record of a dead node's stream, claimed by this (leader) node: route it again. */
	reroute(record: string): Promise<void>;
	/** A record for `node`, which has no stream (it left or was declared dead): route it again. */
	gone(node: string, record: string): void;
	/** Resolves once what `receive` and `gone` started routing (storage writes) has finished. */
	settled(): Promise<void>;
}

/** ioredis reply of XREADGROUP / XAUTOCLAIM entries: [id, [field, value, ...]]. */
type RawEntry = [string, string[] | null];

export class Delivery {
	readonly #o: DeliveryOptions;
	/** This process among all that ever used the node's name: its entries' `o`. */
	readonly #origin: string;
	#seq = 0;
	/** Highest `n` handled per sending process (`o`): redelivered entries are dropped. */
	readonly #seen = new Map<string, number>();
	readonly #keys: ClusterKeys;
	/** XADD, XACK, PUBLISH, the leader's claims. */
	#w: RedisClient | null = null;
	/** The blocking reads of this node's stream. */
	#r: RedisClient | null = null;
	/** Requests and answers (pub/sub). */
	#sub: RedisClient | null = null;
	#stopping = false;
	/** stop() began: no more reads; sending still works until #stopping. */
	#leaving = false;
	#loop: Promise<void> | null = null;
	/** Read the pending entries (ours, not acknowledged) before new ones: at start, after a blip. */
	#rereadPending = true;
	/** When this node last sent a heartbeat that Redis executed (ms, monotonic clock). */
	#beatSentAt = Number.NEGATIVE_INFINITY;
	/** When a heartbeat last found this node's `alive` key expired (ms, monotonic clock). */
	#lapsedAt = Number.NEGATIVE_INFINITY;
	readonly #out = new Map<string, string[]>();
	#outQueued = false;
	/** Entries being written (XADD sent, not yet stored, or waiting to be tried again). */
	readonly #writing = new Set<Promise<void>>();
	#draining = false;
	/** Handlers of other nodes' requests, by kind. */
	readonly #answerers = new Map<string, (payload: Buffer) => Promise<Buffer>>();
	/** This node's requests waiting for their answer, by request id. */
	readonly #asked = new Map<
		string,
		{ resolve: (b: Buffer | null) => void; timer: NodeJS.Timeout }
	>();
	#askSeq = 0;

	constructor(options: DeliveryOptions) {
		this.#o = options;
		this.#origin = `${options.node}/${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
		this.#keys = options.keys;
	}

	async start(): Promise<void> {
		const node = this.#o.node;
		const options: Omit<ConnectOptions, "name"> = {
			connectTimeout: 5000,
			// Entries wait for Redis to come back rather than fail: they are the stanzas.
			maxRetriesPerRequest: null,
			retryStrategy: (times: number) =>
				this.#stopping || this.#leaving ? null : Math.min(times * 200, 2000),
		};
		const w = openRedis(this.#o.redis, { ...options, name: `${node}:out` });
		const r = openRedis(this.#o.redis, { ...options, name: `${node}:in` });
		const sub = openRedis(this.#o.redis, { ...options, name: `${node}:ask`, sharded: true });
		this.#w = w;
		this.#r = r;
		this.#sub = sub;
		for (const c of [w, r, sub])
			c.on("error", (err: Error) => {
				if (!this.#stopping)
					this.#o.log.debug({ err: err.message }, "cluster delivery: Redis error");
			});
		try {
			await Promise.all([w.connect(), r.connect(), sub.connect()]);
		} catch (err) {
			this.#stopping = true;
			for (const c of [w, r, sub]) c.disconnect();
			throw err;
		}
		// After a reconnection, the reply of a read may have been lost: those entries are pending
		// for this node; read them again (the ones already handled are dropped by their sequence).
		r.on("ready", () => {
			this.#rereadPending = true;
		});
		const onMessage = (_channel: string, message: string) => {
			for (const record of message.split(REC)) this.#onRequest(record);
		};
		// A node's channel is a sharded one on a Redis Cluster: only its shard carries it.
		if (this.#keys.clustered) {
			sub.on("smessage", onMessage);
			await sub.ssubscribe(this.#keys.nodeChannel(node));
		} else {
			sub.on("message", onMessage);
			await sub.subscribe(this.#keys.nodeChannel(node));
		}
		await this.#ensureGroup(this.#keys.stream(node));
		this.#loop = this.#read();
	}

	/**
	 * The link's heartbeat that refreshed this node's `alive` key was sent at `sentAt`
	 * (performance.now()). Until `node_timeout` after that, the leader cannot declare this node
	 * dead, so it may deliver entries before acknowledging them. `lapsed`: the key had expired
	 * before this heartbeat, so the leader may be taking this node's stream right now, whatever
	 * the heartbeats say; entries are acknowledged before delivery for two `node_timeout`s.
	 */
	alive(sentAt: number, lapsed: boolean): void {
		if (lapsed) this.#lapsedAt = performance.now();
		if (sentAt > this.#beatSentAt) this.#beatSentAt = sentAt;
	}

	/** Leaves the cluster: what is still in this node's stream goes to the leader to route. */
	async stop(): Promise<void> {
		if (this.#stopping || this.#leaving) return;
		this.#leaving = true;
		for (const [id, q] of this.#asked) {
			clearTimeout(q.timer);
			q.resolve(null);
			this.#asked.delete(id);
		}
		const w = this.#w;
		this.#r?.disconnect();
		await this.#loop?.catch(() => {});
		// What came for this node's sessions, which are closed by now, is routed again here (a
		// message to offline storage or another node), and the stream deleted. Should this fail,
		// the orphan stays listed for the leader.
		if (w && w.status === "ready")
			await this.#orphan(this.#o.node, false)
				.then((orphan) => (orphan ? this.#drain(orphan) : undefined))
				.catch((err: unknown) =>
					this.#o.log.warn({ err }, "cluster delivery: could not hand this node's stream over"),
				);
		// What was read before the loop ended and found its session closed (the server closes its
		// streams first) is on its way to offline storage: entries are XACKed once handed over, so
		// that write must finish before the server closes its storage, or an acknowledged message
		// is lost (XEP-0198 §4 <a/> promised it; seen in test/e2e/cluster-rolling.test.ts).
		await this.#o.settled();
		// Routing is asynchronous (storage): what it sends to other nodes goes out before leaving.
		await new Promise((resolve) => setTimeout(resolve, 50));
		this.#flush();
		this.#stopping = true;
		await Promise.all([w?.quit().catch(() => {}), this.#sub?.quit().catch(() => {})]);
		this.#w = null;
		this.#r = null;
		this.#sub = null;
	}

	// --- sending ---

	/** Queues a record for `node`; this turn's records for it go out as one stream entry. */
	send(node: string, record: string): void {
		if (this.#stopping || !this.#w) return;
		let out = this.#out.get(node);
		if (!out) {
			out = [];
			this.#out.set(node, out);
		}
		out.push(record);
		if (!this.#outQueued) {
			this.#outQueued = true;
			setImmediate(() => this.#flush());
		}
	}

	#flush(): void {
		this.#outQueued = false;
		const w = this.#w;
		if (!w || !this.#out.size) return;
		const lost = (err: unknown) =>
			this.#o.log.warn({ err }, "cluster delivery: an entry for another node was not stored");
		for (const [node, records] of this.#out) {
			const written = new Promise<void>((done) =>
				this.#xadd(w, node, records, ++this.#seq, 0, lost, done),
			);
			this.#writing.add(written);
			void written.then(() => this.#writing.delete(written));
		}
		this.#out.clear();
	}

	/**
	 * Resolves once every record handed to {@link send} so far is stored in its node's stream
	 * (or routed again here, or given up as lost), at once when nothing is on its way. A stream
	 * answers a client's XEP-0198 `<r/>` after this, so its `<a/>` covers stanzas routed to other
	 * nodes only once Redis holds them (§4: acknowledged means handled; a node killed right after
	 * the `<a/>` then loses nothing it acknowledged).
	 */
	stored(): Promise<void> | undefined {
		if (this.#out.size) this.#flush();
		if (!this.#writing.size) return undefined;
		return Promise.all(this.#writing).then(() => undefined);
	}

	/**
	 * NOMKSTREAM: a node creates its stream when it starts reading, and it is renamed away when
	 * the node leaves or is declared dead; an entry for a node that has none is not left in a
	 * stream nobody reads. It is tried again a few times (the node recreates its stream within a
	 * read's wait after Redis lost it), then handed to `gone`.
	 */
	#xadd(
		w: RedisClient,
		node: string,
		records: string[],
		n: number,
		tries: number,
		lost: (err: unknown) => void,
		done: () => void,
	): void {
		w.xadd(
			this.#keys.stream(node),
			"NOMKSTREAM",
			"MAXLEN",
			"~",
			this.#o.maxlen,
			"*",
			"o",
			this.#origin,
			"n",
			n,
			"d",
			records.join(REC),
		).then(
			(id) => {
				if (id !== null || this.#stopping) return done();
				if (tries < 3) {
					setTimeout(() => this.#xadd(w, node, records, n, tries + 1, lost, done), 500).unref();
					return;
				}
				this.#o.log.warn(
					{ node, records: records.length },
					"cluster delivery: no stream for that node; routing again here",
				);
				for (const record of records) this.#o.gone(node, record);
				done();
			},
			(err: unknown) => {
				lost(err);
				done();
			},
		);
	}

	// --- receiving ---

	async #ensureGroup(key: string): Promise<void> {
		await (this.#w as RedisClient)
			.xgroup("CREATE", key, GROUP, "0", "MKSTREAM")
			.catch((err: Error) => {
				if (!/BUSYGROUP/.test(err.message)) throw err;
			});
	}

	async #read(): Promise<void> {
		const key = this.#keys.stream(this.#o.node);
		const r = this.#r as RedisClient;
		while (!this.#stopping && !this.#leaving) {
			const pending = this.#rereadPending;
			try {
				const reply = (await (pending
					? r.xreadgroup("GROUP", GROUP, this.#o.node, "COUNT", COUNT, "STREAMS", key, "0")
					: r.xreadgroup(
							"GROUP",
							GROUP,
							this.#o.node,
							"COUNT",
							COUNT,
							"BLOCK",
							BLOCK_MS,
							"STREAMS",
							key,
							">",
						))) as [string, RawEntry[]][] | null;
				const entries = reply?.[0]?.[1] ?? [];
				if (pending && entries.length < COUNT) this.#rereadPending = false;
				if (entries.length) await this.#handle(key, entries);
			} catch (err) {
				if (this.#stopping || this.#leaving) break;
				// The stream was orphaned by the leader (this node was declared dead) or Redis lost
				// it: a fresh one, read from its start.
				if (/NOGROUP|UNBLOCKED|no longer exists/i.test((err as Error).message)) {
					this.#o.log.warn(
						{ err: (err as Error).message },
						"cluster delivery: this node's stream is gone; a new one",
					);
					await this.#ensureGroup(key).catch(() => {});
					this.#rereadPending = true;
				} else {
					this.#o.log.warn({ err }, "cluster delivery: reading this node's stream failed");
					// A read's reply may have been lost (on a Redis Cluster a shard's failover shows as
					// errors, not as this client's reconnection): its entries are pending for this node.
					this.#rereadPending = true;
					await new Promise((resolve) => setTimeout(resolve, 200));
				}
			}
		}
	}

	/** Whether the leader may have declared this node dead (see the header: a pause). */
	#mayBeDead(): boolean {
		const margin = Math.min(this.#o.heartbeatMs, this.#o.nodeTimeoutMs / 3);
		const now = performance.now();
		return (
			now - this.#beatSentAt > this.#o.nodeTimeoutMs - margin ||
			now - this.#lapsedAt < 2 * this.#o.nodeTimeoutMs
		);
	}

	async #handle(key: string, entries: RawEntry[]): Promise<void> {
		const w = this.#w as RedisClient;
		const ids = entries.map(([id]) => id);
		if (this.#mayBeDead()) {
			// Acknowledge first, one by one: an entry the leader took (the stream was renamed) is
			// not found, and not delivered here.
			const acks = await w.pipeline(ids.map((id) => ["xack", key, GROUP, id])).exec();
			const mine = new Set(ids.filter((_, i) => acks?.[i]?.[1] === 1));
			if (mine.size < ids.length)
				this.#o.log.warn(
					{ dropped: ids.length - mine.size },
					"cluster delivery: entries re-routed by the leader while this node was away",
				);
			for (const e of entries) if (mine.has(e[0])) this.#deliver(e, this.#o.receive);
			if (mine.size) await w.xdel(key, ...mine);
			return;
		}
		for (const e of entries) this.#deliver(e, this.#o.receive);
		// Acknowledged once handed over; not awaited, so the next read does not wait for it.
		w.multi()
			.xack(key, GROUP, ...ids)
			.xdel(key, ...ids)
			.exec()
			.catch((err: unknown) => this.#o.log.warn({ err }, "cluster delivery: XACK failed"));
	}

	/** Hands an entry's records over, unless its sending process's sequence says it was seen. */
	#deliver([, fields]: RawEntry, to: (record: string) => void, dedup = true): void {
		if (!fields) return; // deleted meanwhile (XAUTOCLAIM reports those as null)
		let origin = "";
		let n = 0;
		let data = "";
		for (let i = 0; i + 1 < fields.length; i += 2) {
			const f = fields[i];
			const v = fields[i + 1] as string;
			if (f === "o") origin = v;
			else if (f === "n") n = Number(v);
			else if (f === "d") data = v;
		}
		if (dedup) {
			const last = this.#seen.get(origin);
			if (last !== undefined && n <= last) return;
			this.#seen.delete(origin); // re-inserted last: the map is in order of use
			this.#seen.set(origin, n);
			if (this.#seen.size > 10_000) {
				const oldest = this.#seen.keys().next().value;
				if (oldest !== undefined) this.#seen.delete(oldest);
			}
		}
		for (const record of data.split(REC)) {
			try {
				to(record);
			} catch (err) {
				this.#o.log.error({ err }, "cluster delivery: a record from another node failed");
			}
		}
	}

	// --- dead nodes (leader) ---

	/**
	 * The leader declared `node` dead: its stream becomes an orphan, for {@link drainOrphans}
	 * (left alone if the node's heartbeat came back meanwhile).
	 */
	async nodeDied(node: string): Promise<void> {
		await this.#orphan(node, true);
	}

	async #orphan(node: string, checkAlive: boolean): Promise<string> {
		const w = this.#w as RedisClient;
		const k = this.#keys;
		const orphan = k.orphan(node, Date.now());
		if (!k.clustered) {
			const renamed = await w.eval(
				ORPHAN_SCRIPT,
				4,
				k.stream(node),
				k.alive(node),
				orphan,
				k.orphans,
				checkAlive ? "1" : "0",
			);
			return renamed === 2 ? orphan : "";
		}
		// Redis Cluster: three slots, three steps (ORPHAN_SLOT_SCRIPT says why this order).
		if (checkAlive && (await w.exists(k.alive(node)))) return "";
		await w.sadd(k.orphans, orphan);
		const renamed = await w.eval(ORPHAN_SLOT_SCRIPT, 2, k.stream(node), orphan);
		if (renamed === 2) return orphan;
		await w.srem(k.orphans, orphan);
		return "";
	}

	/**
	 * Routes again what orphaned streams hold that their node did not acknowledge: first the
	 * entries it had read (pending, claimed here), then those it never read, in stream order.
	 */
	async drainOrphans(): Promise<void> {
		const w = this.#w;
		if (!w || this.#draining || this.#stopping || w.status !== "ready") return;
		this.#draining = true;
		try {
			for (const orphan of await w.smembers(this.#keys.orphans)) await this.#drain(orphan);
		} catch (err) {
			this.#o.log.warn({ err }, "cluster delivery: re-routing a dead node's stream failed");
		} finally {
			this.#draining = false;
		}
	}

	async #drain(orphan: string): Promise<void> {
		const w = this.#w as RedisClient;
		let routed = 0;
		const exists = await w.exists(orphan);
		// Redis Cluster: listed before its RENAME (#orphan); a young one may be on its way still.
		const time = Number(orphan.slice(orphan.lastIndexOf(":") + 1));
		if (!exists && this.#keys.clustered && Date.now() - time < this.#o.nodeTimeoutMs) return;
		if (exists) {
			await this.#ensureGroup(orphan);
			let start = "0-0";
			do {
				const [next, entries] = (await w.xautoclaim(
					orphan,
					GROUP,
					this.#o.node,
					0,
					start,
					"COUNT",
					COUNT,
				)) as [string, RawEntry[]];
				routed += await this.#rerouteAll(orphan, entries);
				start = next;
			} while (start !== "0-0");
			for (;;) {
				const reply = (await w.xreadgroup(
					"GROUP",
					GROUP,
					this.#o.node,
					"COUNT",
					COUNT,
					"STREAMS",
					orphan,
					">",
				)) as [string, RawEntry[]][] | null;
				const entries = reply?.[0]?.[1] ?? [];
				if (!entries.length) break;
				routed += await this.#rerouteAll(orphan, entries);
			}
		}
		// One transaction with one Redis; on a Redis Cluster the orphan and the list are in two
		// slots: deleted first, so a leader that dies in between leaves a listed orphan that does
		// not exist, which the next drain removes.
		if (this.#keys.clustered) {
			await w.del(orphan);
			await w.srem(this.#keys.orphans, orphan);
		} else await w.multi().del(orphan).srem(this.#keys.orphans, orphan).exec();
		this.#o.log.warn(
			{ orphan, entries: routed },
			"cluster delivery: a node's stream was re-routed",
		);
	}

	async #rerouteAll(orphan: string, entries: RawEntry[]): Promise<number> {
		if (!entries.length) return 0;
		// No de-duplication: another node's entries, each claimed once (a leader that died half
		// way leaves them pending, and the next one routes them: at least once).
		for (const e of entries) {
			const records: string[] = [];
			this.#deliver(e, (record) => records.push(record), false);
			// One after the other, each routed (stored) before the next: the order holds, and the
			// orphan is gone only once all of it is where it goes.
			for (const record of records)
				await this.#o
					.reroute(record)
					.catch((err: unknown) =>
						this.#o.log.warn(
							{ err },
							"cluster delivery: a dead node's stanza could not be routed again",
						),
					);
		}
		// Stopped meanwhile (the routing took long: storage timing out): the entries stay pending
		// in the orphan, which stays listed for the leader.
		const w = this.#w;
		if (!w) throw new Error("cluster delivery: stopped while re-routing a dead node's stream");
		await w.xack(orphan, GROUP, ...entries.map(([id]) => id));
		return entries.length;
	}

	// --- requests to one node (pub/sub) ---

	answer(kind: string, handler: (payload: Buffer) => Promise<Buffer>): void {
		this.#answerers.set(kind, handler);
	}

	/**
	 * Published at once: PUBLISH tells how many subscribers got it, so a request for a node that
	 * is gone is answered null at once, not after the timeout. Payloads travel as base64: a BOSH
	 * body is the client's bytes, which may hold U+0001.
	 */
	ask(node: string, kind: string, payload: Buffer, timeoutMs: number): Promise<Buffer | null> {
		const w = this.#w;
		if (!w || this.#stopping) return Promise.resolve(null);
		const id = `${++this.#askSeq}`;
		return new Promise((resolve) => {
			const done = (b: Buffer | null) => {
				if (!this.#asked.delete(id)) return;
				clearTimeout(timer);
				resolve(b);
			};
			const timer = setTimeout(() => done(null), timeoutMs);
			this.#asked.set(id, { resolve: done, timer });
			const record = `q${SEP}${id}${SEP}${this.#o.node}${SEP}${kind}${SEP}${payload.toString("base64")}`;
			this.#publish(w, node, record).then(
				(receivers) => {
					if (receivers === 0) done(null);
				},
				(err: unknown) => {
					this.#o.log.warn({ err, node }, "cluster: a request for another node was lost");
					done(null);
				},
			);
		});
	}

	/** PUBLISH with one Redis, SPUBLISH on a Redis Cluster (the receivers on its shard). */
	#publish(w: RedisClient, node: string, message: string): Promise<number> {
		const channel = this.#keys.nodeChannel(node);
		return this.#keys.clustered
			? (w.spublish(channel, message) as Promise<number>)
			: w.publish(channel, message);
	}

	#onRequest(message: string): void {
		if (message[0] === "a") {
			const [, id = "", data = ""] = message.split(SEP);
			this.#asked.get(id)?.resolve(Buffer.from(data, "base64"));
			return;
		}
		if (message[0] !== "q") return;
		const [, id = "", from = "", kind = "", data = ""] = message.split(SEP);
		const handler = this.#answerers.get(kind);
		if (!handler) return;
		handler(Buffer.from(data, "base64")).then(
			(answer) => {
				const a = `a${SEP}${id}${SEP}${answer.toString("base64")}`;
				const w = this.#w;
				if (!w) return;
				this.#publish(w, from, a).catch((err: unknown) => {
					this.#o.log.warn({ err }, "cluster: an answer for another node was lost");
				});
			},
			(err: unknown) =>
				this.#o.log.warn({ err, kind }, "cluster: a request from another node failed"),
		);
	}
}
