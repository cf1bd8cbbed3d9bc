/**
 * The cluster link: how one Parley node shares its sessions with the other nodes and hands
 * them stanzas, through Redis (DESIGN.md "Cluster": an existing engine, no home-made protocol).
 *
 * - Session registry. Every node keeps a full replica of the cluster's bound sessions: its own
 *   in `host.sessions` as always, the others' as {@link RemoteSession}s in the same maps. A node
 *   publishes each change of one of its sessions (bound, presence, priority, roster interest,
 *   module flags, closed) on `<prefix>:registry`. A node that starts (or lost messages while
 *   its Redis connection was down) says `hello` there, and every node answers with its whole
 *   `state`, which replaces its replicas. Entries carry a per-node sequence number; a replica
 *   keeps the newest. Nothing but the node list and the heartbeats is stored in Redis: the
 *   registry is what the nodes hold.
 * - Delivery ({@link Delivery}, src/cluster/delivery.ts). A stanza for a remote session goes
 *   into its node's Redis stream `<prefix>:stream:<node>`, read and acknowledged by that node:
 *   at least once, de-duplicated, in order per sender (RFC 6120 §10.1); the leader re-routes
 *   what a dead node's stream still holds.
 * - Liveness. A node refreshes `<prefix>:alive:<node>` (expires after `node_timeout`) every
 *   `heartbeat` and checks the others'. A node that stopped refreshing is dead: every node drops
 *   its sessions, and the leader (the live node that joined first) ends them as if their
 *   streams had closed (unavailable presence to contacts, RFC 6121 §4.5.2; last activity) and
 *   removes it from the node list. Messages to those users then go to offline storage, and so
 *   do those still in the dead node's stream.
 * - Module caches (the blocking lists) are told of changes made on other nodes by
 *   `cluster/<topic>` events on the host's bus ({@link ClusterLink.notify}).
 * - Requests. A node asks another to answer something only that one can ({@link ClusterLink.ask}:
 *   a BOSH body for a session it holds) on that node's pub/sub channel `<prefix>:node:<node>`;
 *   the answer comes back on the asking node's channel.
 */
import { hostname } from "node:os";
import type { Config } from "../core/config/schema.ts";
import type {
	ClusterHook,
	ClusterNotice,
	ClusterStatus,
	Core,
	Host,
	RemoteShownChange,
	Session,
} from "../core/contracts.ts";
import type { Logger } from "../core/log.ts";
import type { Element } from "../xml/element.ts";
import { parseDocument } from "../xml/parser.ts";
import type { StreamErrorCondition } from "../xmpp/errors.ts";
import { ClusterCounters } from "./counters.ts";
import { Delivery } from "./delivery.ts";
import type { ClusterKeys } from "./keys.ts";
import { Ownership } from "./ownership.ts";
import { describeRedis, keysFor, openRedis, type RedisClient, watchMasters } from "./redis.ts";
import { ShardedRegistry, type ShardMessage } from "./registry.ts";
import { type RemoteLink, RemoteSession, type SessionEntry } from "./remote-session.ts";
import { type Beat, readClusterStatus } from "./status.ts";

/** Separates the fields of a node-channel message; U+0000 cannot occur in XML or in a JID. */
const SEP = "\u0000";
/**
 * After a Redis Cluster's masters change, how long they must stay the same before the node
 * resynchronises (ioredis is still moving the sharded subscriptions meanwhile), and the least
 * time between two such resyncs.
 */
const SETTLE_MS = 2000;
const RESYNC_GAP_MS = 10_000;

type RegistryMessage =
	| { op: "put"; entry: SessionEntry }
	/** A node that starts (or lost messages) asks every other node for its state. */
	| { op: "hello"; node: string }
	/** All of a node's sessions: its replicas elsewhere are replaced by these. */
	| { op: "state"; node: string; entries: SessionEntry[] }
	| { op: "del"; node: string; id: string; seq: number; seen?: Record<string, number> }
	| { op: "notify"; node: string; host: string; topic: string; data: string };

/** `cluster/<topic>` event data on a host's bus. */

export function defaultNodeName(): string {
	const tag = Math.random().toString(36).slice(2, 8);
	return `${hostname().replace(/[^A-Za-z0-9_.-]/g, "-")}-${process.pid}-${tag}`;
}

export class ClusterLink implements ClusterHook, RemoteLink {
	readonly node: string;
	readonly #server: Core;
	readonly #cfg: Config["cluster"];
	readonly #log: Logger;
	/** Key and channel names (src/cluster/keys.ts: hash-tagged on a Redis Cluster). */
	readonly #keys: ClusterKeys;
	readonly #delivery: Delivery;
	#pub: RedisClient | null = null;
	#sub: RedisClient | null = null;
	/** The sharded registry (`cluster.registry = "sharded"`, src/cluster/registry.ts); null: replicated. */
	#shard: ShardedRegistry | null = null;
	/** Limits that hold across the nodes (src/cluster/counters.ts); set once started. */
	#counters: ClusterCounters | null = null;
	/**
	 * Per node, increasing, and across restarts of a node under the same name (it starts from
	 * the clock, in thousandths of a millisecond): other nodes compare it with what they have
	 * applied (`#applied`).
	 */
	#seq = Date.now() * 1000;
	/**
	 * Per other node, the highest `seq` of its registry changes applied here, in the order its
	 * node made them (the registry channel, or the JIDs' channels, which one connection
	 * publishes in order; not what a sharded lookup read from a hash). A session of that node
	 * published with a `seq` at most this is one this node knew.
	 */
	readonly #applied = new Map<string, number>();
	/** For each local session available now: the `seq` of the entry that first said so. */
	readonly #availableSeq = new Map<string, number>();
	/** Local sessions available when last published. */
	readonly #wasAvailable = new WeakSet<Session>();
	/** What `#applied` held when a local session went unavailable (its next entry carries it). */
	readonly #leftSeen = new WeakMap<Session, Record<string, number>>();
	/**
	 * What `#applied` held when a local session that stays available first changed this tick
	 * (a new presence, RFC 6121 §4.4.2, broadcast to the sessions this node knows right after):
	 * its next entry carries it.
	 */
	readonly #changedSeen = new WeakMap<Session, Record<string, number>>();
	/** Local sessions whose state changed since the last publication. */
	readonly #dirty = new Set<Session>();
	/** Replicas of other nodes' sessions, by session id. */
	readonly #remote = new Map<string, RemoteSession>();
	/** Stanzas from other nodes being routed here (an ended session's message to offline storage). */
	readonly #routing = new Set<Promise<unknown>>();
	#timer: NodeJS.Timeout | null = null;
	/** The resync after a Redis Cluster failover, waiting for the masters to settle. */
	#settle: NodeJS.Timeout | null = null;
	#topologyResyncAt = 0;
	#leader = false;
	#leaderNode = "";
	#stopping = false;
	#ticking = false;
	#ready = false;
	/** Leases of the components' units spread over the nodes: MUC rooms (ownership.ts). */
	readonly owners: Ownership;

	constructor(server: Core) {
		this.#server = server;
		this.#cfg = server.config.cluster;
		this.node = this.#cfg.node || defaultNodeName();
		this.#log = server.log.child({ node: this.node });
		this.#keys = keysFor(this.#cfg);
		this.#delivery = new Delivery({
			redis: this.#cfg,
			keys: this.#keys,
			node: this.node,
			nodeTimeoutMs: this.#cfg.node_timeout * 1000,
			heartbeatMs: this.#cfg.heartbeat * 1000,
			maxlen: this.#cfg.stream_maxlen,
			log: this.#log,
			receive: (record) => this.#fromNode(record),
			reroute: (record) => this.#reroute(record),
			gone: (node, record) =>
				this.#track(
					this.#reroute(record, node).catch((err: unknown) => {
						this.#log.warn({ err }, "cluster: a stanza could not be routed again");
					}),
				),
			settled: async () => {
				while (this.#routing.size) await Promise.allSettled([...this.#routing]);
			},
		});
		this.owners = new Ownership(this.node, this.#cfg, this.#log);
	}

	/** Whether this node currently ends the sessions of dead nodes. */
	get leader(): boolean {
		return this.#leader;
	}

	/** The live node that joined first: it ends dead nodes' sessions, runs leader components. */
	get leaderNode(): string {
		return this.#leaderNode || this.node;
	}

	/** Sessions of other nodes this node knows of. */
	get remoteSessions(): number {
		return this.#remote.size;
	}

	get counters(): ClusterCounters | null {
		return this.#counters;
	}

	/** The sharded registry, when `cluster.registry = "sharded"` (tests and benches read it). */
	get shard(): ShardedRegistry | null {
		return this.#shard;
	}

	resolve(host: Host, user: string): Promise<void> | undefined {
		return this.#shard?.resolve(host, user);
	}

	resolveAll(bareJids: Iterable<string>): Promise<void> | undefined {
		return this.#shard?.resolveAll(bareJids);
	}

	onlineCounts(host: Host): Promise<{ sessions: number; users: number }> | undefined {
		return this.#shard?.counts(host.name);
	}

	onlineJids(host: Host): Promise<string[]> | undefined {
		return this.#shard?.jids(host.name);
	}

	registryStats(): { remoteSessions: number; cachedJids: number; lookups: number } {
		return {
			remoteSessions: this.#remote.size,
			cachedJids: this.#shard?.cached ?? 0,
			lookups: this.#shard?.counters.misses ?? 0,
		};
	}

	async start(): Promise<void> {
		const options = {
			connectTimeout: 5000,
			// Commands wait for a reconnection rather than fail at once; a stanza for another node
			// that cannot be published within this is logged and lost.
			maxRetriesPerRequest: 3,
			retryStrategy: (times: number) => (this.#stopping ? null : Math.min(times * 200, 2000)),
		};
		// Named, so that an operator sees in CLIENT LIST which node holds a connection.
		const pub = openRedis(this.#cfg, { ...options, name: `${this.node}:pub` });
		const sub = openRedis(this.#cfg, { ...options, name: `${this.node}:sub`, sharded: true });
		this.#pub = pub;
		this.#sub = sub;
		// The socket's own error (ECONNREFUSED, NOAUTH, ...) says more than a failed connect().
		let firstError = "";
		for (const [name, r] of [
			["publisher", pub],
			["subscriber", sub],
		] as const)
			r.on("error", (err: Error) => {
				firstError ||= err.message;
				if (!this.#stopping && this.#ready)
					this.#log.warn({ err: err.message }, `cluster ${name}: Redis error`);
			});
		try {
			await Promise.all([pub.connect(), sub.connect()]);
		} catch (err) {
			this.#stopping = true;
			pub.disconnect();
			sub.disconnect();
			const why = firstError || (err as Error).message;
			throw new Error(`cluster: cannot reach Redis at ${describeRedis(this.#cfg)}: ${why}`);
		}
		if (this.#cfg.registry === "sharded")
			this.#shard = new ShardedRegistry({
				pub,
				sub,
				keys: this.#keys,
				node: this.node,
				log: this.#log,
				cacheMax: this.#cfg.registry_cache,
				sink: {
					apply: (m: ShardMessage, loaded?: boolean) => this.#apply(m, loaded),
					forget: (host, user) => {
						for (const r of host.sessions.get(user)?.values() ?? [])
							if (r instanceof RemoteSession) this.#drop(r);
					},
					host: (name) => this.#server.hosts.get(name),
				},
			});
		this.#counters = new ClusterCounters({
			pub,
			prefix: this.#cfg.prefix,
			node: this.node,
			log: this.#log,
		});
		await this.owners.start();
		// On a Redis Cluster every channel is a sharded one (docs/architecture.md "Redis Cluster").
		const onMessage = (channel: string, message: string) => this.#onMessage(channel, message);
		if (this.#keys.clustered) {
			sub.on("smessage", onMessage);
			await sub.ssubscribe(this.#keys.registry);
		} else {
			sub.on("message", onMessage);
			await sub.subscribe(this.#keys.registry);
		}
		await this.#join();
		await this.#delivery.start().catch((err: Error) => {
			this.#stopping = true;
			pub.disconnect();
			sub.disconnect();
			throw new Error(`cluster: cannot reach Redis at ${describeRedis(this.#cfg)}: ${err.message}`);
		});
		// After a lost connection ioredis resubscribes by itself; what was published meanwhile is
		// gone, so the node republishes its sessions and reloads the others'.
		sub.on("ready", () => {
			if (this.#ready && !this.#stopping) void this.#resync("Redis connection restored");
		});
		// On a Redis Cluster a shard's failover moves the sharded subscriptions to its new master
		// (ioredis re-subscribes) without the client reconnecting, so this does not fire, and what
		// was published on that shard meanwhile is lost. The node resynchronises once the masters
		// have changed and then stayed the same for a while (docs/scaling.md "Redis Cluster").
		// Not on ioredis's `subscribersReady`: it fires at each of its retries while the dead
		// master is still listed, and a resync's SSUBSCRIBEs fed those retries (a storm of resyncs
		// in a test); the set of masters changes once per failover, whatever the retries.
		watchMasters(pub, () => this.#mastersChanged());
		this.#ready = true;
		this.#timer = setInterval(() => void this.#tick(), this.#cfg.heartbeat * 1000);
		this.#timer.unref();
		this.#log.info(
			{ redis: describeRedis(this.#cfg), prefix: this.#cfg.prefix },
			"joined the cluster",
		);
	}

	/**
	 * Registers the node and asks the others for their sessions (they answer with `state` on
	 * the registry channel, which this node already listens to).
	 */
	async #join(): Promise<void> {
		const pub = this.#pub as RedisClient;
		const sentAt = performance.now();
		const [, [, was]] = (await pub
			.multi()
			.zadd(this.#keys.nodes, "NX", String(Date.now()), this.node)
			.set(this.#keys.alive(this.node), "1", "PX", this.#cfg.node_timeout * 1000, "GET")
			.exec()) as [unknown, [null, string | null]];
		this.#delivery.alive(sentAt, was === null);
		// The sharded registry is in Redis: nobody needs to be told this node's state.
		if (!this.#shard) await this.#publish(pub, JSON.stringify([{ op: "hello", node: this.node }]));
		await this.#tick();
		await this.#checkRegistryModes().catch(() => {});
	}

	/**
	 * Nodes with different `cluster.registry` do not see each other's sessions (a replicated node
	 * never looks up; a sharded one never reads the replicas' channel): said loudly at join. A
	 * live node whose heartbeat names no registry (an older version) is not judged.
	 */
	async #checkRegistryModes(): Promise<void> {
		const beats = await (this.#pub as RedisClient).hgetall(this.#keys.beats);
		const fresh = Date.now() - this.#cfg.node_timeout * 1000;
		const other: string[] = [];
		for (const [node, json] of Object.entries(beats)) {
			if (node === this.node) continue;
			const beat = JSON.parse(json) as Partial<Beat>;
			const mode = beat.registry;
			if ((beat.at ?? 0) >= fresh && mode && mode !== this.#cfg.registry)
				other.push(`${node} (${mode})`);
		}
		if (other.length)
			this.#log.error(
				{ registry: this.#cfg.registry, others: other },
				"cluster: nodes with another cluster.registry are live; they and this node do not see each other's sessions (set the same registry on every node)",
			);
	}

	/** Sessions bound on this node (its streams, not the replicas). */
	#localSessions(): number {
		let all = 0;
		for (const host of this.#server.hosts.values())
			for (const resources of host.sessions.values()) all += resources.size;
		return all - this.#remote.size;
	}

	/** The nodes of the registry in Redis, as `parley cluster status` shows them. */
	async status(): Promise<ClusterStatus> {
		const pub = this.#pub;
		if (!pub) throw new Error("cluster: not joined");
		if (pub.status !== "ready") throw new Error("cluster: Redis is not reachable");
		return readClusterStatus(pub, this.#keys);
	}

	/**
	 * The Redis Cluster's masters changed (a failover): one resync, {@link SETTLE_MS} after the
	 * last change and at least {@link RESYNC_GAP_MS} after the previous one, never from inside
	 * ioredis's own retries.
	 */
	#mastersChanged(): void {
		if (this.#stopping) return;
		if (this.#settle) clearTimeout(this.#settle);
		const wait = Math.max(SETTLE_MS, this.#topologyResyncAt + RESYNC_GAP_MS - Date.now());
		this.#settle = setTimeout(() => {
			this.#settle = null;
			if (this.#stopping) return;
			this.#topologyResyncAt = Date.now();
			void this.#resync("the Redis Cluster's masters changed (a failover)");
		}, wait);
		this.#settle.unref();
	}

	async #resync(why: string): Promise<void> {
		this.#log.warn({ why }, "cluster: resynchronising the session registry");
		if (this.#shard)
			await this.#shard
				.resync(this.#localEntries())
				.catch((err: unknown) => this.#log.error({ err }, "cluster: resync failed"));
		else this.#queueState();
		// The counters' shares of this node, gone with Redis's data or removed by the leader.
		await this.#counters
			?.rewrite()
			.catch((err: unknown) => this.#log.error({ err }, "cluster: counters not rewritten"));
		await this.#join().catch((err: unknown) => this.#log.error({ err }, "cluster: resync failed"));
	}

	async stop(): Promise<void> {
		if (this.#stopping) return;
		this.#stopping = true;
		if (this.#timer) clearInterval(this.#timer);
		this.#timer = null;
		if (this.#settle) clearTimeout(this.#settle);
		this.#settle = null;
		this.owners.leaving();
		this.#writeOut();
		await this.owners.stop();
		const pub = this.#pub;
		await this.#delivery.stop();
		if (pub && pub.status === "ready") {
			// The sessions still bound end with the server, after the link: their entries go now.
			const shard = this.#shard;
			if (shard)
				await shard
					.entriesOf(this.node)
					.then((entries) => shard.removeNode(this.node, entries))
					.catch((err: unknown) => this.#log.warn({ err }, "cluster: leaving the registry failed"));
			// What this node held in the cluster's counters (guests, uploads, rooms) goes with it.
			await this.#counters
				?.releaseNode(this.node)
				.catch((err: unknown) => this.#log.warn({ err }, "cluster: counters not released"));
			await pub
				.multi()
				.del(this.#keys.alive(this.node))
				.zrem(this.#keys.nodes, this.node)
				.hdel(this.#keys.beats, this.node)
				.exec()
				.catch((err: unknown) => this.#log.warn({ err }, "cluster: leaving failed"));
		}
		// Forget the replicas without ending them: their nodes still serve them.
		for (const r of this.#remote.values()) this.#unlink(r);
		this.#remote.clear();
		await Promise.all([pub?.quit().catch(() => {}), this.#sub?.quit().catch(() => {})]);
		this.#pub = null;
		this.#sub = null;
	}

	// --- local sessions -> registry ---

	/** A local session was bound or changed state; published with this tick's batch. */
	sessionChanged(session: Session): void {
		if (this.#stopping || !session.jid) return;
		// Going unavailable (RFC 6121 §4.5.2): the presence module sends unavailable to the
		// sessions it knows right after this, synchronously; what this node knows is noted now.
		// A change while available (a new presence, §4.4.2): the same, noted at the first
		// change of the tick (what this node knew before the broadcast, or less).
		if (session.available) {
			if (!this.#wasAvailable.has(session)) this.#wasAvailable.add(session);
			else if (!this.#changedSeen.has(session)) this.#changedSeen.set(session, this.#appliedNow());
			this.#leftSeen.delete(session);
		} else if (this.#wasAvailable.delete(session)) this.#leftSeen.set(session, this.#appliedNow());
		this.#shard?.pin(session.host, session.jid.local, session.id);
		this.#dirty.add(session);
		this.#queueOut();
	}

	sessionClosed(session: Session): void {
		this.#dirty.delete(session);
		this.#availableSeq.delete(session.id);
		if (!this.#pub || !session.jid) return;
		const seq = ++this.#seq;
		// Called before `session/closed`, whose presence handler sends unavailable to the sessions
		// this node knows (RFC 6121 §4.5.2): the removal says which those were.
		const seen = session.available ? this.#appliedNow() : undefined;
		if (this.#shard) {
			const jid = session.jid;
			this.#shard.unpin(session.host, jid.local, session.id);
			this.#shard.remove(jid.bareString, jid.resource, session.id, seq, seen);
			this.#queueOut();
			return;
		}
		const m: RegistryMessage = { op: "del", node: this.node, id: session.id, seq };
		if (seen) m.seen = seen;
		this.#outRegistry.push(JSON.stringify(m));
		this.#queueOut();
	}

	#appliedNow(): Record<string, number> {
		return Object.fromEntries(this.#applied);
	}

	#noteApplied(node: string, seq: number): void {
		if (seq > (this.#applied.get(node) ?? Number.NEGATIVE_INFINITY)) this.#applied.set(node, seq);
	}

	/**
	 * Whether another node that sent unavailable presence after applying `seen` of this node's
	 * changes knew `local` available then (and so sent it the presence too). Unknown: false.
	 */
	#knew(seen: Record<string, number> | undefined): (local: Session) => boolean {
		const mark = seen?.[this.node];
		return (local) => {
			const at = this.#availableSeq.get(local.id);
			return mark !== undefined && at !== undefined && at <= mark;
		};
	}

	/** Tell the other nodes that something a module keeps in memory changed (`cluster/<topic>`). */
	notify(host: Host, topic: string, data: string): void {
		const m: RegistryMessage = { op: "notify", node: this.node, host: host.name, topic, data };
		this.#outRegistry.push(JSON.stringify(m));
		this.#queueOut();
	}

	/** Publishes all of this node's sessions with the next batch (for a node that said hello). */
	#queueState(): void {
		const m: RegistryMessage = { op: "state", node: this.node, entries: this.#localEntries() };
		this.#outRegistry.push(JSON.stringify(m));
		this.#queueOut();
	}

	#localEntries(): SessionEntry[] {
		const entries: SessionEntry[] = [];
		for (const host of this.#server.hosts.values())
			for (const resources of host.sessions.values())
				for (const s of resources.values()) {
					if (s instanceof RemoteSession) continue;
					const entry = this.#entryOf(s);
					if (entry) entries.push(entry);
				}
		return entries;
	}

	#entryOf(s: Session): SessionEntry | null {
		const jid = s.jid;
		if (!jid) return null;
		const data: Record<string, string | number | boolean> = {};
		for (const [k, v] of s.data)
			if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") data[k] = v;
		return {
			node: this.node,
			seq: ++this.#seq,
			id: s.id,
			host: s.host.name,
			jid: jid.toString(),
			addr: s.remoteAddress,
			secure: s.secure,
			available: s.available,
			priority: s.priority,
			presence: s.presence ? s.presence.toString("jabber:client") : "",
			interested: s.interested,
			data,
		};
	}

	// --- stanzas to remote sessions (RemoteLink) ---

	forward(session: RemoteSession, stanza: Element): void {
		this.#toNode(
			session.node,
			`s${SEP}${session.host.name}${SEP}${session.jid.toString()}${SEP}${stanza.toString("jabber:client")}`,
		);
	}

	closeRemote(session: RemoteSession, condition?: StreamErrorCondition, text?: string): void {
		this.#toNode(
			session.node,
			`c${SEP}${session.host.name}${SEP}${session.jid.toString()}${SEP}${condition ?? ""}${SEP}${text ?? ""}`,
		);
	}

	/** Have another node route a stanza (e.g. to a component it owns). */
	routeOn(node: string, stanza: Element): void {
		this.#toNode(node, `r${SEP}${stanza.toString("jabber:client")}`);
	}

	// --- requests to one node (a BOSH body for the node that holds its session) ---

	answer(kind: string, handler: (payload: Buffer) => Promise<Buffer>): void {
		this.#delivery.answer(kind, handler);
	}

	ask(node: string, kind: string, payload: Buffer, timeoutMs: number): Promise<Buffer | null> {
		if (this.#stopping) return Promise.resolve(null);
		return this.#delivery.ask(node, kind, payload, timeoutMs);
	}

	settled(): Promise<void> | undefined {
		return this.#delivery.stored();
	}

	#toNode(node: string, message: string): void {
		if (this.#pub) this.#delivery.send(node, message);
	}

	// --- one batch per tick ---
	//
	// Everything a tick produces goes out together when the tick's I/O is done: one PUBLISH of
	// the registry changes (a JSON array), and one stream entry per node with stanzas for it
	// (src/cluster/delivery.ts). Under load that is a few Redis commands for many sessions and
	// stanzas instead of one each (the client library's cost per command dominated the login
	// profile of a two-worker cluster). Registry changes and stanzas travel on different
	// connections: a stanza from a session another node does not know of yet is delivered all
	// the same (the receiving node needs only its own session, the recipient).

	#outRegistry: string[] = [];
	#outQueued = false;

	#queueOut(): void {
		if (this.#outQueued) return;
		this.#outQueued = true;
		setImmediate(() => this.#writeOut());
	}

	#writeOut(): void {
		this.#outQueued = false;
		const pub = this.#pub;
		for (const session of this.#dirty) {
			const entry = this.#entryOf(session);
			if (!entry) continue;
			if (!entry.available) {
				this.#availableSeq.delete(session.id);
				const seen = this.#leftSeen.get(session);
				if (seen) entry.seen = seen;
				this.#leftSeen.delete(session);
			} else if (!this.#availableSeq.has(session.id)) this.#availableSeq.set(session.id, entry.seq);
			else {
				// Available before this entry too: other nodes compare its presence with theirs.
				const seen = this.#changedSeen.get(session);
				if (seen) entry.seen = seen;
			}
			this.#changedSeen.delete(session);
			if (this.#shard) this.#shard.put(entry);
			else this.#outRegistry.push(`{"op":"put","entry":${JSON.stringify(entry)}}`);
		}
		this.#dirty.clear();
		// The sharded registry writes its tick of changes in one pipeline (src/cluster/registry.ts).
		if (pub) void this.#shard?.flush();
		const registry = this.#outRegistry;
		this.#outRegistry = [];
		if (!pub) return;
		const lost = (err: unknown) =>
			this.#log.warn({ err }, "cluster: a batch for the other nodes was lost");
		if (registry.length) this.#publish(pub, `[${registry.join(",")}]`).catch(lost);
	}

	/** On the registry channel: PUBLISH with one Redis, SPUBLISH on a Redis Cluster. */
	#publish(pub: RedisClient, message: string): Promise<number> {
		return this.#keys.clustered
			? (pub.spublish(this.#keys.registry, message) as Promise<number>)
			: pub.publish(this.#keys.registry, message);
	}

	// --- incoming ---

	#onMessage(channel: string, message: string): void {
		try {
			if (this.#shard?.onMessage(channel, message)) return;
			if (channel === this.#keys.registry)
				for (const m of JSON.parse(message) as RegistryMessage[]) this.#apply(m);
		} catch (err) {
			this.#log.error({ err, channel }, "cluster: a message from another node failed");
		}
	}

	#apply(m: RegistryMessage | ShardMessage, loaded = false): void {
		if (m.op === "put") {
			this.#put(m.entry, loaded);
			return;
		}
		if (m.node === this.node) return;
		if (m.op === "hello") {
			if (!this.#shard) this.#queueState();
			return;
		}
		if (m.op === "state") {
			// All its node's sessions, in channel order like its changes: #put notes the seqs.
			const ids = new Set(m.entries.map((e) => e.id));
			for (const r of [...this.#remote.values()])
				if (r.node === m.node && !ids.has(r.id)) this.#closed(r);
			for (const e of m.entries) this.#put(e);
			return;
		}
		if (m.op === "del") {
			this.#noteApplied(m.node, m.seq);
			const r = this.#remote.get(m.id);
			if (r && r.seq < m.seq) this.#closed(r, m.seen);
			return;
		}
		const host = this.#server.hosts.get(m.host);
		if (!host) return;
		const notice: ClusterNotice = { topic: m.topic, data: m.data, node: m.node };
		host.events.fire(`cluster/${m.topic}`, notice).catch((err: unknown) => {
			this.#log.error({ err, topic: m.topic }, "cluster: notice handler failed");
		});
	}

	/** `loaded`: read from a sharded hash, not a change received in its node's order. */
	#put(e: SessionEntry, loaded = false): void {
		if (e.node === this.node) return;
		if (!loaded) this.#noteApplied(e.node, e.seq);
		const host = this.#server.hosts.get(e.host);
		if (!host) return;
		let r = this.#remote.get(e.id);
		if (r && r.seq >= e.seq) return;
		const was = r?.available ?? false;
		if (!r) {
			const jid = this.#server.jids.parse(e.jid);
			r = new RemoteSession(e, host, jid, this);
			this.#remote.set(e.id, r);
			let resources = host.sessions.get(jid.local);
			if (!resources) {
				resources = new Map();
				host.sessions.set(jid.local, resources);
			}
			const there = resources.get(jid.resource);
			// A local session keeps its place (this node decides for its own streams); a replica
			// of a replaced remote session gives way to the newer one.
			if (!there || there instanceof RemoteSession) resources.set(jid.resource, r);
		}
		r.seq = e.seq;
		r.remoteAddress = e.addr;
		r.secure = e.secure;
		r.available = e.available;
		r.priority = e.priority;
		r.interested = e.interested;
		// Most entries of an available session repeat its presence (a priority or flag change):
		// parsed only when the text changed.
		const changed = e.presence !== r.presenceText;
		if (changed) {
			r.presence = e.presence ? this.#parse(e.presence) : null;
			r.presenceText = e.presence;
		}
		r.data.clear();
		for (const [k, v] of Object.entries(e.data)) r.data.set(k, v);
		if (was && !r.available) this.#shownChanged("session/remote-unavailable", r, e.seen);
		else if (was && r.presence && changed) this.#shownChanged("session/remote-presence", r, e.seen);
	}

	/**
	 * A replica that was available went unavailable or ended (`session/remote-unavailable`, RFC
	 * 6121 §4.5.2), or is still available with a new presence (`session/remote-presence`,
	 * §4.4.2): the presence module tells the local sessions this node showed it to and its node
	 * did not know of.
	 */
	#shownChanged(
		topic: "session/remote-unavailable" | "session/remote-presence",
		r: RemoteSession,
		seen: Record<string, number> | undefined,
	): void {
		const data: RemoteShownChange = { session: r, knew: this.#knew(seen) };
		r.host.events.fire(topic, data).catch((err: unknown) => {
			this.#log.error({ err }, `${topic} handler failed`);
		});
	}

	/**
	 * Another node's session ended. Its node ran `session/closed` (presence, last activity, ...);
	 * here `session/remote-closed` tells what runs on this node only: the leader's MUC rooms,
	 * which an occupant that entered before its initial presence leaves by no unavailable
	 * presence (it is no directed-presence recipient, RFC 6121 §4.6.2).
	 */
	#closed(r: RemoteSession, seen?: Record<string, number>): void {
		this.#drop(r);
		if (r.available) this.#shownChanged("session/remote-unavailable", r, seen);
		r.host.events.fire("session/remote-closed", { session: r }).catch((err: unknown) => {
			this.#log.error({ err }, "session/remote-closed handler failed");
		});
	}

	#drop(r: RemoteSession): void {
		this.#remote.delete(r.id);
		this.#unlink(r);
	}

	#unlink(r: RemoteSession): void {
		const resources = r.host.sessions.get(r.jid.local);
		if (resources?.get(r.jid.resource) === r) {
			resources.delete(r.jid.resource);
			if (resources.size === 0) r.host.sessions.delete(r.jid.local);
		}
	}

	/** Keeps `p` (a routing under way) until it settles, for {@link Delivery.stop} to wait. */
	#track(p: Promise<unknown>): void {
		this.#routing.add(p);
		void p.finally(() => this.#routing.delete(p));
	}

	#fromNode(message: string): void {
		const kind = message[0];
		if (kind === "r") {
			this.#track(
				this.#server.router.route(this.#parse(message.slice(2))).catch((err: unknown) => {
					this.#log.warn({ err }, "cluster: a stanza from another node could not be routed");
				}),
			);
			return;
		}
		const a = message.indexOf(SEP, 2);
		const b = message.indexOf(SEP, a + 1);
		const host = this.#server.hosts.get(message.slice(2, a));
		if (!host || a < 0 || b < 0) return;
		const jid = this.#server.jids.parse(message.slice(a + 1, b));
		const target = host.sessions.get(jid.local)?.get(jid.resource);
		const local = target && !(target instanceof RemoteSession) ? target : null;
		if (kind === "c") {
			const c = message.indexOf(SEP, b + 1);
			const condition = message.slice(b + 1, c) as StreamErrorCondition | "";
			local?.close(condition || undefined, message.slice(c + 1) || undefined);
			return;
		}
		const stanza = this.#parse(message.slice(b + 1));
		if (local) {
			local.send(stanza);
			return;
		}
		// The session ended before the stanza arrived: route it again as this node sees the
		// account now (a chat message falls back to another resource or offline storage, RFC 6121
		// §8.5.3.2.1). Not when another node claims that resource: no ping-pong between replicas.
		if (!target && stanza.name === "message" && stanza.attrs.from && stanza.attrs.to)
			this.#track(
				this.#server.router.route(stanza).catch((err: unknown) => {
					this.#log.debug({ err }, "cluster: a stanza for an ended session could not be routed");
				}),
			);
	}

	/**
	 * A record of a dead node's stream, claimed by this leader: its sessions are ended, so a
	 * message is routed again as the cluster now is (another resource, or offline storage: RFC
	 * 6121 §8.5.2, §8.5.3.2.1); a stanza for a component is routed to it; what else was for the
	 * ended sessions (presence, IQs, closes) is dropped, as for a session that ended. `gone`:
	 * the record was for that node, which has no stream any more (it left, or was declared
	 * dead); one still addressed to a replica of that node is dropped rather than sent there
	 * again.
	 */
	async #reroute(record: string, gone?: string): Promise<void> {
		const kind = record[0];
		if (kind === "r") {
			await this.#server.router.route(this.#parse(record.slice(2)));
			return;
		}
		if (kind !== "s") return;
		const a = record.indexOf(SEP, 2);
		const b = record.indexOf(SEP, a + 1);
		if (a < 0 || b < 0) return;
		const stanza = this.#parse(record.slice(b + 1));
		if (gone) {
			const jid = this.#server.jids.parse(record.slice(a + 1, b));
			const target = this.#server.hosts
				.get(record.slice(2, a))
				?.sessions.get(jid.local)
				?.get(jid.resource);
			if (target instanceof RemoteSession && target.node === gone) return;
		}
		if (stanza.name === "message" && stanza.attrs.from && stanza.attrs.to)
			await this.#server.router.route(stanza);
	}

	#parse(xml: string): Element {
		const limits = this.#server.config.limits;
		const root = parseDocument(`<w xmlns="jabber:client">${xml}</w>`, {
			maxStanzaBytes: limits.stanza_size * 2 + 4096,
			maxDepth: limits.max_depth + 1,
		});
		return root.elements()[0] as Element;
	}

	// --- liveness ---

	async #tick(): Promise<void> {
		const pub = this.#pub;
		if (!pub || this.#stopping || this.#ticking || pub.status !== "ready") return;
		this.#ticking = true;
		try {
			const ttl = this.#cfg.node_timeout * 1000;
			const sentAt = performance.now();
			const [[, added], [, was], [, nodes]] = (await pub
				.multi()
				.zadd(this.#keys.nodes, "NX", String(Date.now()), this.node)
				.set(this.#keys.alive(this.node), "1", "PX", ttl, "GET")
				.zrange(this.#keys.nodes, "0", "-1")
				.hset(
					this.#keys.beats,
					this.node,
					JSON.stringify({
						at: Date.now(),
						sessions: this.#localSessions(),
						heartbeat: this.#cfg.heartbeat,
						registry: this.#cfg.registry,
					}),
				)
				.exec()) as [[null, number], [null, string | null], [null, string[]], [null, number]];
			// `was` null: this node's `alive` key had expired, so the leader may be taking its stream.
			this.#delivery.alive(sentAt, was === null);
			if (added === 1 && this.#ready) {
				// Another node declared this one dead (a pause longer than node_timeout) and removed
				// its registry: publish every local session again.
				void this.#resync("this node had been declared dead");
				return;
			}
			// Nodes this one still holds replicas of count too: the leader may already have removed
			// a dead node from the set before this node noticed.
			const others = [
				...new Set([...nodes, ...[...this.#remote.values()].map((r) => r.node)]),
			].filter((n) => n !== this.node);
			const alive = others.length ? await pub.mget(others.map((n) => this.#keys.alive(n))) : [];
			const dead = new Set(others.filter((_, i) => alive[i] === null));
			// The leader is the live node that joined first (`nodes` is ordered by joining time):
			// a node joining does not take the components over from a running one.
			const leader = nodes.find((n) => !dead.has(n)) ?? this.node;
			const wasLeader = this.#leader;
			this.#leaderNode = leader;
			this.#leader = leader === this.node;
			// Components placed on the leader (PubSub, external ones) move with it: a node that takes
			// over loads their state from storage afresh. MUC rooms move one by one (ownership.ts).
			if (this.#leader && !wasLeader && this.#ready) await this.#server.restartComponents();
			for (const n of dead) await this.#nodeDied(n);
			if (this.#leader) await this.#delivery.drainOrphans();
			this.#shard?.sweep();
			await this.owners.renew();
		} catch (err) {
			this.#log.warn({ err }, "cluster: heartbeat failed");
		} finally {
			this.#ticking = false;
		}
	}

	async #nodeDied(node: string): Promise<void> {
		this.owners.forgetNode(node);
		const gone = [...this.#remote.values()].filter((r) => r.node === node);
		if (!this.#leader) {
			// The rooms this node owns (MUC, issue 16) lose the dead node's occupants.
			for (const r of gone) this.#closed(r);
			return;
		}
		for (const r of gone) this.#drop(r);
		// First, so that the node, should it only have been paused, delivers nothing more from it.
		await this.#delivery.nodeDied(node);
		this.#log.warn(
			{ dead: node, sessions: gone.length },
			"cluster: a node stopped; ending its sessions",
		);
		if (this.#shard) {
			// The dead node's entries are in Redis, not here: read them, end them as its replicas,
			// then remove them (their removal reaches the nodes that cache those JIDs).
			const entries = await this.#shard.entriesOf(node);
			await this.#shard.resolveAll(entries.map((e) => e.jid.slice(0, e.jid.indexOf("/"))));
			for (const e of entries) {
				const r = this.#remote.get(e.id);
				if (r && !gone.includes(r)) {
					this.#drop(r);
					gone.push(r);
				}
			}
			await this.#shard.removeNode(node, entries);
		}
		// Its shares of the cluster's counters (guests per address, uploads, temporary rooms).
		await this.#counters?.releaseNode(node);
		await (this.#pub as RedisClient)
			.multi()
			.zrem(this.#keys.nodes, node)
			.hdel(this.#keys.beats, node)
			.exec();
		for (const r of gone)
			await r.host.events.fire("session/closed", { session: r }).catch((err: unknown) => {
				this.#log.error({ err }, "session/closed handler failed");
			});
		// Its sessions ended, what its stream held is routed again: to offline storage, or to
		// another resource.
		await this.#delivery.drainOrphans();
	}
}
