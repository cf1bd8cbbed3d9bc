/**
 * Metrics of one server instance, in the Prometheus text format (prom-client), for `GET /metrics`
 * (docs/architecture.md "Metrics" lists every series and its labels).
 *
 * Each server has its own `Registry`: nothing goes to prom-client's global default registry, so
 * two servers in one process count apart. prom-client's `collectDefaultMetrics` is not used:
 * it starts an event loop delay histogram and a GC observer that nothing can stop, so every
 * server created in a process (tests make hundreds, a restart makes one more) would leave two
 * behind. The process figures it would give (memory, CPU, event loop lag) are read here at
 * scrape time instead, under the same names, and the lag monitor stops with the server.
 *
 * Counting must cost next to nothing on the hot path (docs/performance.md "Metrics"): the parts
 * call {@link MetricsRecorder} methods that add one to an array slot; what is a gauge (sessions
 * by transport, hibernating sessions, s2s streams) is counted at scrape time from where it lives.
 * Storage latency is kept in plain bucket arrays too and shown through a small histogram of
 * our own ({@link StorageLatency}): prom-client's `Histogram.observe` cost 270 ns a call, the
 * array 7 ns (bench/metrics.ts).
 */
import { type ELDHistogram, monitorEventLoopDelay, performance } from "node:perf_hooks";
import { Counter, Gauge, type Metric, Registry } from "prom-client";
import type {
	ArchiveStore,
	Json,
	KeyValStore,
	MapStore,
	StorageBackend,
} from "../storage/types.ts";
import {
	type ClientTransportKind,
	type Core,
	HIBERNATING,
	type MetricsRecorder,
	type StreamKind,
} from "./contracts.ts";

/** The Prometheus text exposition of a server's metrics. */
export interface MetricsText {
	contentType: string;
	body: string;
}

const STREAMS: readonly StreamKind[] = ["c2s", "s2s", "component"];
const KINDS = ["message", "presence", "iq"] as const;
const TRANSPORTS: readonly ClientTransportKind[] = ["tcp", "websocket", "bosh"];

/** Index of a stanza kind, or -1 (the three stanza names of RFC 6120 §8). */
function kindIndex(name: string): number {
	switch (name) {
		case "message":
			return 0;
		case "presence":
			return 1;
		case "iq":
			return 2;
		default:
			return -1;
	}
}

function streamIndex(stream: StreamKind): number {
	return stream === "c2s" ? 0 : stream === "s2s" ? 1 : 2;
}

/** Storage latency buckets, in seconds: 50 µs (an in-memory read) to 2.5 s (a stuck database). */
const STORAGE_BUCKETS = [
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
];

/** A recorder that counts nothing (`metrics.enabled = false`). */
export const NO_METRICS: MetricsRecorder = {
	stanzaIn() {},
	stanzaOut() {},
	auth() {},
	deadPeer() {},
	refused() {},
	componentStream() {},
};

/**
 * The metrics of one server. `core` is read at scrape time (its hosts' sessions, its s2s
 * streams, its connection limiter).
 */
export class ServerMetrics implements MetricsRecorder {
	readonly registry = new Registry();
	/** Stanzas by stream × direction (in, out) × kind: [stream * 6 + dir * 3 + kind]. */
	readonly #stanzas = new Float64Array(STREAMS.length * 2 * KINDS.length);
	readonly #deadPeers = new Float64Array(STREAMS.length);
	/** "mechanism\0ok" -> count; mechanisms are the ones we offer, so the set stays small. */
	readonly #auth = new Map<string, number>();
	/** Refusals by the configuration key of the limit (a fixed, small set). */
	readonly #refused = new Map<string, number>();
	#componentStreams = 0;
	readonly #storage = new StorageLatency();
	#lag: ELDHistogram | null = null;
	/** The timed view of the storage backend last asked for (`timeStorage`). */
	#timed: { raw: StorageBackend; timed: StorageBackend } | null = null;

	constructor(core: Core) {
		const registers = [this.registry];
		const stanzas = this.#stanzas;
		new Counter({
			name: "parley_stanzas_received_total",
			help: "Stanzas read from client (c2s), server (s2s) and component streams, by kind.",
			labelNames: ["stream", "kind"],
			registers,
			collect() {
				this.reset();
				for (let s = 0; s < STREAMS.length; s++)
					for (let k = 0; k < KINDS.length; k++)
						this.inc({ stream: STREAMS[s], kind: KINDS[k] }, stanzas[s * 6 + k] ?? 0);
			},
		});
		new Counter({
			name: "parley_stanzas_sent_total",
			help: "Stanzas written to client (c2s), server (s2s) and component streams, by kind.",
			labelNames: ["stream", "kind"],
			registers,
			collect() {
				this.reset();
				for (let s = 0; s < STREAMS.length; s++)
					for (let k = 0; k < KINDS.length; k++)
						this.inc({ stream: STREAMS[s], kind: KINDS[k] }, stanzas[s * 6 + 3 + k] ?? 0);
			},
		});
		const auth = this.#auth;
		new Counter({
			name: "parley_auth_total",
			help: 'Client SASL exchanges (RFC 6120 §6, XEP-0388) by mechanism ("" when none was chosen) and result.',
			labelNames: ["mechanism", "result"],
			registers,
			collect() {
				this.reset();
				for (const [key, n] of auth) {
					const [mechanism = "", ok] = key.split("\0");
					this.inc({ mechanism, result: ok === "1" ? "success" : "failure" }, n);
				}
			},
		});
		const dead = this.#deadPeers;
		new Counter({
			name: "parley_dead_peers_total",
			help: "Connections dropped because the peer stopped answering liveness checks (XEP-0199, XEP-0198 <r/>).",
			labelNames: ["stream"],
			registers,
			collect() {
				this.reset();
				for (let s = 0; s < STREAMS.length; s++) this.inc({ stream: STREAMS[s] }, dead[s] ?? 0);
			},
		});
		const refused = this.#refused;
		new Counter({
			name: "parley_connections_refused_total",
			help: "Connections, logins and streams refused by a limit, by its configuration key.",
			labelNames: ["limit"],
			registers,
			collect() {
				this.reset();
				this.inc({ limit: "limits.connections_per_ip" }, core.connectionLimiter.refused);
				this.inc({ limit: "limits.unauthenticated_per_ip" }, core.unauthenticatedLimiter.refused);
				for (const [limit, n] of refused) this.inc({ limit }, n);
			},
		});
		new Gauge({
			name: "parley_sessions",
			help: "Bound client sessions on this node by transport (hibernating ones included).",
			labelNames: ["transport"],
			registers,
			collect() {
				const n = { tcp: 0, websocket: 0, bosh: 0 };
				for (const host of core.hosts.values())
					for (const resources of host.sessions.values())
						for (const s of resources.values()) if (s.transport) n[s.transport]++;
				for (const t of TRANSPORTS) this.set({ transport: t }, n[t]);
			},
		});
		new Gauge({
			name: "parley_sessions_hibernating",
			help: "XEP-0198 sessions whose connection broke, waiting to be resumed.",
			registers,
			collect() {
				let n = 0;
				for (const host of core.hosts.values())
					for (const resources of host.sessions.values())
						for (const s of resources.values())
							if (s.transport && s.data.get(HIBERNATING) === true) n++;
				this.set(n);
			},
		});
		new Gauge({
			name: "parley_s2s_streams",
			help: "Open server-to-server streams (RFC 6120), by direction.",
			labelNames: ["direction"],
			registers,
			collect() {
				const c = core.remote?.streamCounts?.() ?? { incoming: 0, outgoing: 0 };
				this.set({ direction: "incoming" }, c.incoming);
				this.set({ direction: "outgoing" }, c.outgoing);
			},
		});
		const self = this;
		new Gauge({
			name: "parley_component_streams",
			help: "Authenticated external component streams (XEP-0114).",
			registers,
			collect() {
				this.set(self.#componentStreams);
			},
		});
		new Gauge({
			name: "parley_cluster_owned_rooms",
			help: "Component units (MUC rooms) whose lease this cluster node holds (issue 16).",
			registers,
			collect() {
				this.set(core.cluster?.owners?.owned ?? 0);
			},
		});
		const registry = () =>
			core.cluster?.registryStats?.() ?? { remoteSessions: 0, cachedJids: 0, lookups: 0 };
		new Gauge({
			name: "parley_cluster_remote_sessions",
			help: "Other cluster nodes' sessions this node holds: replicas, or those it looked up with the sharded registry (issue 16).",
			registers,
			collect() {
				this.set(registry().remoteSessions);
			},
		});
		new Gauge({
			name: "parley_cluster_registry_cached_jids",
			help: "Bare JIDs the sharded session registry keeps cached on this node, its own users' included (issue 16).",
			registers,
			collect() {
				this.set(registry().cachedJids);
			},
		});
		new Counter({
			name: "parley_cluster_registry_lookups_total",
			help: "Bare JIDs the sharded session registry looked up in Redis (cache misses, issue 16).",
			registers,
			collect() {
				this.reset();
				this.inc(registry().lookups);
			},
		});
		new Counter({
			name: "parley_spam_total",
			help: "Spam defence (issue 19) per host: reports kept, dropped and forwarded, stanzas refused by a block list or a quarantine, strangers' messages held or bounced, room messages and joins over the rate limits.",
			labelNames: ["host", "event"],
			registers,
			// The spam module's counters, asked of each host on its bus (`spam/counters`); a host
			// without the module answers nothing and has no series.
			async collect() {
				this.reset();
				for (const host of core.hosts.values()) {
					const q: { counters?: Record<string, number> } = {};
					await host.events.fire("spam/counters", q);
					for (const [event, n] of Object.entries(q.counters ?? {}))
						this.inc({ host: host.name, event: snakeCase(event) }, n);
				}
			},
		});
		// prom-client renders any object with a name and a get() (Registry.getMetricsAsString);
		// its types only know its own classes.
		this.registry.registerMetric(this.#storage as unknown as Metric);
		this.#processMetrics(registers);
	}

	/** Memory, CPU and event loop lag of the process (the names prom-client's defaults use). */
	#processMetrics(registers: Registry[]): void {
		new Gauge({
			name: "process_resident_memory_bytes",
			help: "Resident memory size in bytes.",
			registers,
			collect() {
				this.set(process.memoryUsage.rss());
			},
		});
		new Gauge({
			name: "nodejs_heap_size_used_bytes",
			help: "V8 heap in use, in bytes.",
			registers,
			collect() {
				const m = process.memoryUsage();
				this.set(m.heapUsed);
				heapTotal.set(m.heapTotal);
				external.set(m.external);
			},
		});
		const heapTotal = new Gauge({
			name: "nodejs_heap_size_total_bytes",
			help: "V8 heap allocated, in bytes.",
			registers,
		});
		const external = new Gauge({
			name: "nodejs_external_memory_bytes",
			help: "Memory of C++ objects bound to JavaScript objects (buffers), in bytes.",
			registers,
		});
		new Counter({
			name: "process_cpu_seconds_total",
			help: "User and system CPU time spent, in seconds.",
			registers,
			collect() {
				const u = process.cpuUsage();
				this.reset();
				this.inc((u.user + u.system) / 1e6);
			},
		});
		const self = this;
		const gauges: [string, string, (h: ELDHistogram) => number][] = [
			[
				"nodejs_eventloop_lag_mean_seconds",
				"Mean event loop delay since the last scrape.",
				(h) => h.mean,
			],
			[
				"nodejs_eventloop_lag_p50_seconds",
				"Median event loop delay since the last scrape.",
				(h) => h.percentile(50),
			],
			[
				"nodejs_eventloop_lag_p99_seconds",
				"99th percentile of the event loop delay since the last scrape.",
				(h) => h.percentile(99),
			],
			[
				"nodejs_eventloop_lag_max_seconds",
				"Longest event loop delay since the last scrape.",
				(h) => h.max,
			],
		];
		const last = gauges.length - 1;
		gauges.forEach(([name, help, read], i) => {
			new Gauge({
				name,
				help,
				registers,
				collect() {
					const h = self.#lag;
					// A histogram with no sample yet reports NaN for the mean.
					const v = h && h.count > 0 ? read(h) / 1e9 : 0;
					this.set(Number.isFinite(v) ? v : 0);
					// Each scrape sees the delays since the previous one.
					if (i === last) h?.reset();
				},
			});
		});
	}

	/** Starts what runs in the background (the event loop delay monitor). */
	start(): void {
		if (this.#lag) return;
		this.#lag = monitorEventLoopDelay({ resolution: 20 });
		this.#lag.enable();
	}

	stop(): void {
		this.#lag?.disable();
		this.#lag = null;
	}

	/** In a cluster every series carries the node's name (`cluster.node`). */
	setNode(node: string): void {
		this.registry.setDefaultLabels({ node });
	}

	async text(): Promise<MetricsText> {
		return { contentType: this.registry.contentType, body: await this.registry.metrics() };
	}

	// --- MetricsRecorder ---

	stanzaIn(stream: StreamKind, name: string): void {
		const k = kindIndex(name);
		if (k >= 0) (this.#stanzas[streamIndex(stream) * 6 + k] as number)++;
	}

	stanzaOut(stream: StreamKind, name: string): void {
		const k = kindIndex(name);
		if (k >= 0) (this.#stanzas[streamIndex(stream) * 6 + 3 + k] as number)++;
	}

	auth(mechanism: string, ok: boolean): void {
		const key = ok ? `${mechanism}\x001` : `${mechanism}\x000`;
		this.#auth.set(key, (this.#auth.get(key) ?? 0) + 1);
	}

	refused(limit: string): void {
		this.#refused.set(limit, (this.#refused.get(limit) ?? 0) + 1);
	}

	deadPeer(stream: StreamKind): void {
		(this.#deadPeers[streamIndex(stream)] as number)++;
	}

	componentStream(delta: 1 | -1): void {
		this.#componentStreams += delta;
	}

	// --- storage latency ---

	/** Observes `seconds` for one storage operation. */
	observeStorage(operation: string, seconds: number): void {
		this.#storage.observe(operation, seconds);
	}

	/**
	 * The backend seen through a view that times each operation (the same view for the same
	 * backend, so hosts can ask for it on every store access).
	 */
	timeStorage(raw: StorageBackend): StorageBackend {
		if (this.#timed?.raw !== raw) this.#timed = { raw, timed: new TimedBackend(raw, this) };
		return this.#timed.timed;
	}
}

/**
 * `parley_storage_operation_seconds`: a Prometheus histogram per operation, counted in one array
 * per operation (a slot per bucket, then the sum and the count) and shaped the way prom-client's
 * own `Histogram.get()` is when scraped.
 */
class StorageLatency {
	readonly name = "parley_storage_operation_seconds";
	readonly help = "Time storage operations take, by operation (keyval_get, archive_append, ...).";
	readonly type = "histogram";
	readonly aggregator = "sum";
	readonly #ops = new Map<string, Float64Array>();

	observe(operation: string, seconds: number): void {
		let a = this.#ops.get(operation);
		if (!a) {
			// The buckets, +Inf, then the sum and the count.
			a = new Float64Array(STORAGE_BUCKETS.length + 3);
			this.#ops.set(operation, a);
		}
		let k = 0;
		while (k < STORAGE_BUCKETS.length && seconds > (STORAGE_BUCKETS[k] as number)) k++;
		(a[k] as number)++;
		(a[STORAGE_BUCKETS.length + 1] as number) += seconds;
		(a[STORAGE_BUCKETS.length + 2] as number)++;
	}

	get() {
		const values: { labels: Record<string, string | number>; value: number; metricName: string }[] =
			[];
		const n = STORAGE_BUCKETS.length;
		for (const [operation, a] of this.#ops) {
			let cumulative = 0;
			for (let k = 0; k <= n; k++) {
				cumulative += a[k] ?? 0;
				const le = k < n ? (STORAGE_BUCKETS[k] as number) : "+Inf";
				values.push({
					labels: { le, operation },
					value: cumulative,
					metricName: `${this.name}_bucket`,
				});
			}
			values.push({ labels: { operation }, value: a[n + 1] ?? 0, metricName: `${this.name}_sum` });
			values.push({
				labels: { operation },
				value: a[n + 2] ?? 0,
				metricName: `${this.name}_count`,
			});
		}
		return {
			name: this.name,
			help: this.help,
			type: this.type,
			values,
			aggregator: this.aggregator,
		};
	}
}

/**
 * Runs one storage operation and observes its latency, whether it resolves or rejects (the clock
 * starts before the call: a backend may do its work synchronously, node:sqlite does).
 */
function timed<T>(m: ServerMetrics, operation: string, op: () => Promise<T>): Promise<T> {
	const start = performance.now();
	const p = op();
	const done = () => m.observeStorage(operation, (performance.now() - start) / 1000);
	p.then(done, done);
	return p;
}

/** A storage backend whose every operation is timed into `parley_storage_operation_seconds`. */
class TimedBackend implements StorageBackend {
	readonly #raw: StorageBackend;
	readonly #m: ServerMetrics;
	/** Views by host, then store name and kind: built once, kept as long as the server. */
	readonly #stores = new Map<string, Map<string, unknown>>();

	constructor(raw: StorageBackend, m: ServerMetrics) {
		this.#raw = raw;
		this.#m = m;
	}

	get kind(): string {
		return this.#raw.kind;
	}

	#view<S>(host: string, key: string, make: () => S): S {
		let byHost = this.#stores.get(host);
		if (!byHost) {
			byHost = new Map();
			this.#stores.set(host, byHost);
		}
		let view = byHost.get(key) as S | undefined;
		if (!view) {
			view = make();
			byHost.set(key, view);
		}
		return view;
	}

	keyval<T extends Json = Json>(host: string, store: string): KeyValStore<T> {
		return this.#view(host, `k${store}`, () => {
			const s = this.#raw.keyval<T>(host, store);
			const m = this.#m;
			return {
				get: (user) => timed(m, "keyval_get", () => s.get(user)),
				getPath: (user, path) => timed(m, "keyval_get_path", () => s.getPath(user, path)),
				set: (user, value) => timed(m, "keyval_set", () => s.set(user, value)),
				users: () => timed(m, "keyval_users", () => s.users()),
			} satisfies KeyValStore<T>;
		});
	}

	map<T extends Json = Json>(host: string, store: string): MapStore<T> {
		return this.#view(host, `m${store}`, () => {
			const s = this.#raw.map<T>(host, store);
			const m = this.#m;
			return {
				get: (user, key) => timed(m, "map_get", () => s.get(user, key)),
				set: (user, key, value) => timed(m, "map_set", () => s.set(user, key, value)),
				getAll: (user) => timed(m, "map_get_all", () => s.getAll(user)),
				deleteAll: (user) => timed(m, "map_delete_all", () => s.deleteAll(user)),
			} satisfies MapStore<T>;
		});
	}

	archive<T extends Json = Json>(host: string, store: string): ArchiveStore<T> {
		return this.#view(host, `a${store}`, () => {
			const s = this.#raw.archive<T>(host, store);
			const m = this.#m;
			return {
				// opts too: without `lazy`, SQLite committed the mam module's appends at every turn
				// of the event loop instead of holding them for a larger group (docs/performance.md).
				append: (user, item, opts) => timed(m, "archive_append", () => s.append(user, item, opts)),
				query: (user, q) => timed(m, "archive_query", () => s.query(user, q)),
				count: (user, q) => timed(m, "archive_count", () => s.count(user, q)),
				delete: (user, q) => timed(m, "archive_delete", () => s.delete(user, q)),
			} satisfies ArchiveStore<T>;
		});
	}

	deleteUser(host: string, user: string): Promise<void> {
		return timed(this.#m, "delete_user", () => this.#raw.deleteUser(host, user));
	}

	settle(): Promise<void> {
		return this.#raw.settle();
	}

	close(): Promise<void> {
		return this.#raw.close();
	}
}

/** `reportsDropped` -> `reports_dropped`: label values in Prometheus' own style. */
function snakeCase(name: string): string {
	return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
