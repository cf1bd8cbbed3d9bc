/**
 * A Parley server instance: the core. It owns the hosts, components, router, open streams,
 * storage, certificates and limiters, so an instance can be created, started, stopped and
 * created again in one process (tests do it all the time, the admin API will for restarts).
 * Nothing is kept at module level.
 *
 * The core knows no transport, module or cluster engine by name: the composition root
 * (src/app/server.ts) hands it its parts (`ServerParts`), and they see the core through the
 * interfaces of contracts.ts.
 */
import { randomBytes } from "node:crypto";
import { AccountManager } from "../auth/accounts.ts";
import { addressMatcher } from "../security/addresses.ts";
import { AuthFailureTracker, ConnectionLimiter } from "../security/limits.ts";
import type { StorageBackend } from "../storage/types.ts";
import { type CertificateStore, loadCertificates, ReplaceableCertificates } from "../tls/certs.ts";
import { JIDCache } from "../xmpp/jid.ts";
import { resolveDataPath } from "./config/load.ts";
import {
	ANONYMOUS_MODULE,
	COMPONENT_MODULES,
	type ComponentConfig,
	type Config,
} from "./config/schema.ts";
import type {
	AnyAdminCommand,
	ClusterHook,
	Connection,
	Core,
	Host,
	HostAddedEvent,
	Listener,
	MetricsRecorder,
	RemoteDomains,
} from "./contracts.ts";
import { VirtualHost } from "./host.ts";
import { createLogger, type Logger } from "./log.ts";
import { type MetricsText, NO_METRICS, ServerMetrics } from "./metrics.ts";
import type { ModuleDefinition } from "./modules/define.ts";
import { ModuleError, ModuleManager, moduleOptions } from "./modules/manager.ts";
import { QuietGc } from "./quiet-gc.ts";
import { CERTIFICATES_KEY, enabledNames, hostModules, planReload, sameValue } from "./reload.ts";
import { Router } from "./router.ts";

/** What the composition root plugs into a server. */
export interface ServerParts {
	/** The modules hosts and components can load, by name; a later one of a name wins. */
	modules: readonly ModuleDefinition<never>[];
	/** Opens the configured storage (the composition root knows the backends). */
	openStorage(config: Config): StorageBackend;
	/** The listeners to open, once hosts and components are up. */
	listeners?(core: Core): Listener[];
	/** The link to the other nodes, when `[cluster]` is enabled. */
	cluster?(core: Core): ClusterHook;
	/** Federation (server-to-server), when its listener is enabled. */
	remote?(core: Core): RemoteDomains;
	/** The admin operations (src/core/commands.ts) the surfaces offer. */
	commands?: readonly AnyAdminCommand[];
}

/**
 * What `reload` did: the configuration keys (dotted paths) applied in place, and those that
 * changed but only take effect after a restart of the XMPP service.
 */
export interface ReloadReport {
	applied: string[];
	restartNeeded: string[];
}

export interface ServerOptions {
	log?: Logger;
	/** Use this storage instead of the configured one (tests). */
	storage?: StorageBackend;
}

/** How long stopping waits for stanzas already being handled. */
const SHUTDOWN_DRAIN_MS = 5000;

type ServerState = "created" | "starting" | "running" | "stopping" | "stopped";

export class Server implements Core {
	#config: Config;
	readonly log: Logger;
	readonly hosts = new Map<string, Host>();
	/** Component domains (`[components."x"]`): reached by the router, no client logs in. */
	readonly components = new Map<string, Host>();
	readonly router: Router;
	readonly jids = new JIDCache(10_000);
	readonly streams: Set<Connection> = new CountedStreams(this);
	/** A full collection once a storm of connections is over (quiet-gc.ts). */
	readonly quietGc = new QuietGc({ intervalMs: 5_000, minEnded: 500, maxOpenedWhileQuiet: 10 });
	readonly connectionLimiter: ConnectionLimiter;
	readonly unauthenticatedLimiter: ConnectionLimiter;
	readonly authFailures: AuthFailureTracker;
	readonly listeners: Listener[] = [];
	/** This server's own metrics registry (metrics.ts); null when `metrics.enabled` is false. */
	readonly #metrics: ServerMetrics | null;
	/** What the parts count through: the registry, or calls that do nothing. */
	readonly metrics: MetricsRecorder;
	readonly #parts: ServerParts;
	readonly #registry: Map<string, ModuleDefinition<unknown>>;
	#storage: StorageBackend | null;
	#certificates: ReplaceableCertificates | null = null;
	#state: ServerState = "created";
	#sweeper: NodeJS.Timeout | null = null;
	/** The reload under way: the next one waits for it. */
	#reloading: Promise<unknown> = Promise.resolve();
	/** Components that serve their subdomains too: `local()` looks for parents only if any. */
	#withSubdomains = 0;
	/** The link to the other nodes when `[cluster]` is enabled (DESIGN.md "Cluster"). */
	cluster: ClusterHook | null = null;
	/** Federation when `[listeners.s2s]` is enabled (src/s2s/). */
	remote: RemoteDomains | null = null;

	constructor(config: Config, parts: ServerParts, opts: ServerOptions = {}) {
		this.#config = config;
		this.#parts = parts;
		this.log = opts.log ?? createLogger({ level: config.log.level, format: config.log.format });
		this.router = new Router(this);
		this.#storage = opts.storage ?? null;
		const exempt = config.limits.exempt_ips;
		this.connectionLimiter = new ConnectionLimiter(config.limits.connections_per_ip, exempt);
		this.unauthenticatedLimiter = new ConnectionLimiter(
			config.limits.unauthenticated_per_ip,
			exempt,
		);
		this.authFailures = new AuthFailureTracker(config.limits.sasl_failures_per_ip);
		this.#metrics = config.metrics.enabled ? new ServerMetrics(this) : null;
		this.metrics = this.#metrics ?? NO_METRICS;
		this.#registry = new Map<string, ModuleDefinition<unknown>>();
		for (const m of parts.modules) this.#registry.set(m.name, m as ModuleDefinition<unknown>);
	}

	/** The configuration in force: replaced as a whole by `reload`, never edited in place. */
	get config(): Config {
		return this.#config;
	}

	get commands(): readonly AnyAdminCommand[] {
		return this.#parts.commands ?? [];
	}

	get state(): ServerState {
		return this.#state;
	}

	get storage(): StorageBackend {
		if (!this.#storage) throw new Error("storage is not open: start the server first");
		return this.#storage;
	}

	/**
	 * The storage as hosts and accounts use it: each operation timed for
	 * `parley_storage_operation_seconds` when metrics are on. `storage` stays the backend itself
	 * (backups and copies need to know what it is).
	 */
	get timedStorage(): StorageBackend {
		const raw = this.storage;
		return this.#metrics ? this.#metrics.timeStorage(raw) : raw;
	}

	/**
	 * This server's metrics in the Prometheus text format (version 0.0.4), for `GET /metrics`:
	 * its own counts only, even with other servers in the same process. With
	 * `metrics.enabled = false` the body is empty.
	 */
	async metricsText(): Promise<MetricsText> {
		if (!this.#metrics)
			return { contentType: "text/plain; version=0.0.4; charset=utf-8", body: "" };
		return this.#metrics.text();
	}

	get certificates(): ReplaceableCertificates {
		if (!this.#certificates) throw new Error("certificates are not loaded: start the server first");
		return this.#certificates;
	}

	/** The host used when a stream names none (only for the stream header of an error). */
	get defaultHost(): string {
		return this.hosts.keys().next().value ?? "localhost";
	}

	/** The port a listener is bound to, by kind ("c2s", "c2s_direct_tls", "http", "https"). */
	port(kind: string): number {
		const l = this.listeners.find((x) => x.kind === kind);
		if (!l) throw new Error(`no ${kind} listener`);
		return l.port;
	}

	async start(): Promise<void> {
		if (this.#state !== "created") throw new Error(`cannot start a server that is ${this.#state}`);
		this.#state = "starting";
		try {
			const cfg = this.config;
			this.#storage ??= this.#parts.openStorage(cfg);
			const hostNames = enabledNames(cfg.hosts);
			this.#certificates = new ReplaceableCertificates(
				await this.#loadCertificates(cfg, hostNames),
			);
			for (const name of hostNames) await this.addHost(name);
			for (const [name, c] of Object.entries(cfg.components))
				if (c.enabled) await this.addComponent(name);
			if (cfg.cluster.enabled) {
				if (!this.#parts.cluster)
					throw new Error("[cluster] is enabled but no cluster link is built in");
				this.cluster = this.#parts.cluster(this);
				// One scrape per node: every series says which (docs/architecture.md "Metrics").
				this.#metrics?.setNode(this.cluster.node);
				await this.cluster.start();
			}
			if (
				(cfg.listeners.s2s.enabled || cfg.listeners.s2s_direct_tls.enabled) &&
				this.#parts.remote
			) {
				this.remote = this.#parts.remote(this);
				await this.remote.start();
			}
			this.listeners.push(...(this.#parts.listeners?.(this) ?? []));
			for (const listener of this.listeners) {
				try {
					await listener.listen();
				} catch (err) {
					// Which listener could not open its port: the CLI names its configuration key.
					if (err instanceof Error) Object.assign(err, { listener: listener.kind });
					throw err;
				}
			}
			this.#sweeper = setInterval(() => this.authFailures.sweep(), 60_000);
			this.#sweeper.unref();
			this.quietGc.start();
			this.#metrics?.start();
			this.#state = "running";
			this.log.info({ hosts: hostNames }, "Parley is running");
		} catch (err) {
			await this.#shutdown();
			this.#state = "stopped";
			throw err;
		}
	}

	/** Activates a virtual host and loads its modules. */
	async addHost(name: string): Promise<Host> {
		const cfg = this.config.hosts[name];
		if (!cfg) throw new Error(`host ${name} is not configured`);
		const host = new VirtualHost(name, cfg, this);
		const anonymous = cfg.authentication === "anonymous";
		host.accounts = new AccountManager(
			this.timedStorage,
			name,
			this.config.auth.scram_iterations,
			// An anonymous host has no stored accounts: a guest exists while it has a session.
			{
				...(anonymous ? { live: (user: string) => host.sessions.has(user) } : {}),
				// However an account goes (in-band, the CLI's server API, an admin), modules that
				// cache per-account state hear of it.
				deleted: async (username) => {
					await host.events.fire("account/deleted", { host, username });
				},
			},
		);
		host.modules = new ModuleManager(host, this.#registry);
		host.secret = await this.#hostSecret(name);
		this.hosts.set(name, host);
		// An anonymous host's limits come with it, whatever its `modules` list says.
		for (const m of hostModules(cfg)) await host.modules.load(m);
		// Components added before it that name it as their parent (a reload) are listed now.
		for (const [cname, c] of this.components)
			if (c.component && parentOf(cname, c.component) === name)
				host.discoItems.set(cname, { jid: cname, name: c.component.name });
		return host;
	}

	/**
	 * Activates a component: a Host of kind "component" with its own bus, stores and modules
	 * (the module named by its type), listed in its parent host's disco#items (XEP-0030, as
	 * Prosody does for subdomains).
	 */
	async addComponent(name: string): Promise<Host> {
		const cfg = this.config.components[name];
		if (!cfg) throw new Error(`component ${name} is not configured`);
		const hostConfig = {
			enabled: true,
			modules: [COMPONENT_MODULES[cfg.type]],
			module_options: {},
			authentication: "accounts" as const,
			anonymous: {
				max_sessions: 0,
				max_sessions_per_ip: 0,
				allow_s2s: false,
				allow_local_users: true,
			},
		};
		const host = new VirtualHost(name, hostConfig, this, cfg);
		host.modules = new ModuleManager(host, this.#registry);
		// Kept in the shared storage: every node of a cluster signs and checks the same way
		// (XEP-0363 upload slots are HMACs of it).
		host.secret = await this.#hostSecret(name);
		this.components.set(name, host);
		if (cfg.type === "external" && cfg.subdomains) this.#withSubdomains++;
		this.hosts.get(parentOf(name, cfg))?.discoItems.set(name, { jid: name, name: cfg.name });
		for (const m of hostConfig.modules) await host.modules.load(m);
		return host;
	}

	/**
	 * Unloads and loads again every component's modules, so that they start from what storage
	 * holds: a cluster node that becomes the leader takes the components over this way. Those
	 * whose placement is not the leader (MUC rooms, upload) are left alone.
	 */
	async restartComponents(): Promise<void> {
		for (const c of this.components.values()) {
			// Components spread over the nodes keep serving what this node holds (issue 16).
			if (c.placement !== undefined && c.placement !== "leader") continue;
			await c.modules.unloadAll();
			for (const m of c.config.modules) await c.modules.load(m);
		}
	}

	/**
	 * Applies a new configuration to the running server without dropping a session of a host
	 * that stays: hosts and components are added and removed, modules loaded and unloaded (a
	 * module whose options changed is loaded again), certificates read again for new TLS
	 * handshakes, log level and limits changed in place. What cannot change in place (listeners,
	 * storage, cluster, ...) is listed as needing a restart, and the new configuration is the
	 * one in force afterwards. When its certificates or module options do not load, the reload
	 * rejects and nothing changes. Reloads run one at a time.
	 * The configuration must already be valid (load.ts validated it).
	 */
	reload(next: Config): Promise<ReloadReport> {
		// Checked when asked: a reload accepted before a stop runs before the stop goes on.
		if (this.#state !== "running")
			return Promise.reject(new Error(`cannot reload a server that is ${this.#state}`));
		const run = this.#reloading.then(() => this.#reload(next));
		this.#reloading = run.then(
			() => undefined,
			() => undefined,
		);
		return run;
	}

	async #reload(next: Config): Promise<ReloadReport> {
		const prev = this.#config;
		const report: ReloadReport = { applied: [], restartNeeded: [] };
		const plan = planReload(
			prev,
			next,
			this.listeners.some((l) => l.kind === "component"),
		);
		// What could fail is tried first, so that a bad file changes nothing: the certificates of
		// the hosts that run afterwards (in the file's order: the first one's is the default, as
		// at start), and the modules of added and changed hosts.
		const staying = new Set([...this.hosts.keys(), ...plan.addedHosts]);
		for (const h of plan.removedHosts) staying.delete(h);
		const order = Object.keys(next.hosts);
		const nextHosts = [...staying].sort((x, y) => rank(order, x) - rank(order, y));
		const certificates = await this.#loadCertificates(next, nextHosts);
		for (const name of [...plan.addedHosts, ...plan.changedHosts]) this.#checkModules(name, next);

		this.#config = next;
		for (const key of plan.simple) {
			if (key === "log.level") this.log.level = next.log.level;
			else if (key === "limits.connections_per_ip")
				this.connectionLimiter.max = next.limits.connections_per_ip;
			else if (key === "limits.unauthenticated_per_ip")
				this.unauthenticatedLimiter.max = next.limits.unauthenticated_per_ip;
			else if (key === "limits.exempt_ips") {
				const exempt = addressMatcher(next.limits.exempt_ips);
				this.connectionLimiter.exempt = exempt;
				this.unauthenticatedLimiter.exempt = exempt;
			} else if (key === "limits.sasl_failures_per_ip")
				this.authFailures.allowance = next.limits.sasl_failures_per_ip;
			else if (key === "server.name")
				// The name of each host's server/im identity (XEP-0030), set when the host was made.
				for (const h of this.hosts.values()) {
					const first = h.identities[0];
					if (h.kind === "host" && first?.category === "server")
						h.identities[0] = { ...first, name: next.server.name };
				}
			// Everything else in plan.simple is read where it is used (per stream, per session).
			report.applied.push(key);
		}
		report.restartNeeded.push(...plan.restartNeeded);

		const before = this.certificates.describe();
		this.certificates.replace(certificates);
		const after = certificates.describe();
		// A host's certificate replaced (new files, or a renewal in the same files); a host that
		// comes or goes brings or takes its own with it.
		const renewed = before.some((b) =>
			after.some((a) => a.host === b.host && a.fingerprint !== b.fingerprint),
		);

		for (const name of plan.removedComponents) await this.#removeComponent(name, "host-gone");
		for (const name of plan.removedHosts) await this.#removeHost(name);
		for (const name of plan.addedHosts) {
			if (this.hosts.has(name)) continue;
			const host = await this.addHost(name);
			for (const c of this.components.values())
				await c.events.fire<HostAddedEvent>("host/added", { host });
		}
		for (const name of plan.changedHosts) await this.#reconfigureHost(name, prev, next);
		for (const name of plan.changedComponents) {
			// Its service starts again from what storage holds: an external component reconnects.
			await this.#removeComponent(name);
			await this.addComponent(name);
		}
		for (const name of plan.addedComponents) await this.addComponent(name);
		report.applied.push(...plan.hostKeys);

		if (!sameValue(before, after)) for (const l of this.listeners) l.reloadCertificates?.();
		if (renewed) report.applied.push(CERTIFICATES_KEY);
		this.log.info(report, "configuration reloaded");
		return report;
	}

	/** Checks that every module a host of `next` names exists here and takes its options. */
	#checkModules(name: string, next: Config): void {
		const cfg = next.hosts[name];
		if (!cfg) return;
		for (const m of hostModules(cfg)) {
			const def = this.#registry.get(m);
			if (!def) throw new ModuleError(`hosts."${name}".modules: unknown module "${m}"`);
			moduleOptions(def, name, cfg.module_options[m]);
		}
	}

	/**
	 * A host that stays but whose table changed: its modules follow the new `modules` list, a
	 * module whose `module_options` changed is loaded again; its sessions stay.
	 */
	async #reconfigureHost(name: string, prev: Config, next: Config): Promise<void> {
		const host = this.hosts.get(name);
		const a = prev.hosts[name];
		const b = next.hosts[name];
		if (!(host instanceof VirtualHost) || !a || !b) return;
		host.config = b;
		const before = hostModules(a);
		const after = hostModules(b);
		for (const m of [...before].reverse()) if (!after.includes(m)) await host.modules.unload(m);
		for (const m of after) {
			const optionsChanged = !sameValue(a.module_options[m], b.module_options[m]);
			// The anonymous module reads the host's `anonymous` table.
			const anonymousChanged = m === ANONYMOUS_MODULE && !sameValue(a.anonymous, b.anonymous);
			if (before.includes(m) && (optionsChanged || anonymousChanged)) await host.modules.unload(m);
			await host.modules.load(m);
		}
	}

	/**
	 * Takes a host away from a running server: its streams end with `host-gone` (RFC 6120
	 * §4.9.3.6: "the value of the 'to' attribute ... no longer serviced"), then it leaves the
	 * router (a new stream for it gets `host-unknown`) and its modules are unloaded.
	 */
	async #removeHost(name: string): Promise<void> {
		const host = this.hosts.get(name);
		if (!host) return;
		// The host stays reachable while its sessions end, so that what they leave behind
		// (unavailable presence to contacts, MUC departures, offline storage) is done as usual.
		await this.#closeStreamsOf(name, "host-gone");
		this.hosts.delete(name);
		// A stream that named the host while the others were closing.
		await this.#closeStreamsOf(name, "host-gone");
		this.remote?.domainGone?.(name);
		await host.modules.unloadAll();
		this.log.info({ host: name }, "host removed");
	}

	async #removeComponent(name: string, condition?: "host-gone"): Promise<void> {
		const host = this.components.get(name);
		if (!host) return;
		if (condition) await this.#closeStreamsOf(name, condition);
		await host.modules.unloadAll();
		this.components.delete(name);
		if (condition) this.remote?.domainGone?.(name);
		const cfg = host.component;
		if (cfg?.type === "external" && cfg.subdomains) this.#withSubdomains--;
		for (const h of this.hosts.values())
			if (h.discoItems.get(name)?.jid === name) h.discoItems.delete(name);
		this.log.info({ component: name }, condition ? "component removed" : "component stopped");
	}

	/** Closes every open stream for `domain` and waits (bounded) for what they were handling. */
	async #closeStreamsOf(domain: string, condition: "host-gone"): Promise<void> {
		const streams = [...this.streams].filter((s) => s.domain === domain);
		for (const s of streams)
			s.close(condition, `${domain} is no longer served here (configuration reloaded)`);
		let timer: NodeJS.Timeout | undefined;
		await Promise.race([
			Promise.all(streams.map((s) => s.whenIdle())),
			new Promise<void>((resolve) => {
				timer = setTimeout(resolve, SHUTDOWN_DRAIN_MS);
			}),
		]);
		clearTimeout(timer);
	}

	/**
	 * The host or component serving `domain`, if it is one of ours: an exact match, else the
	 * nearest parent domain that is a component serving its subdomains (an external component
	 * with `subdomains = true`: a gateway that gives each remote network a domain of its own).
	 */
	local(domain: string): Host | undefined {
		const exact = this.hosts.get(domain) ?? this.components.get(domain);
		if (exact || this.#withSubdomains === 0) return exact;
		for (let i = domain.indexOf("."); i !== -1; i = domain.indexOf(".", i + 1)) {
			const parent = this.components.get(domain.slice(i + 1));
			const c = parent?.component;
			if (c?.type === "external" && c.subdomains) return parent;
		}
		return undefined;
	}

	/**
	 * What several processes starting at once must not each do their own way (the primary of
	 * `server.workers` runs it before forking): bring the storage schema up to date, create the
	 * hosts' secrets, generate missing self-signed certificates.
	 */
	async prepare(): Promise<void> {
		if (this.#state !== "created")
			throw new Error(`cannot prepare a server that is ${this.#state}`);
		const cfg = this.config;
		const storage = this.#storage ?? this.#parts.openStorage(cfg);
		this.#storage = storage;
		try {
			const hostNames = enabledNames(cfg.hosts);
			for (const name of hostNames) await this.#hostSecret(name);
			for (const [name, c] of Object.entries(cfg.components))
				if (c.enabled) await this.#hostSecret(name);
			await this.#loadCertificates(cfg, hostNames);
		} finally {
			await storage.close();
			this.#storage = null;
		}
	}

	#loadCertificates(cfg: Config, hostNames: string[]): Promise<CertificateStore> {
		return loadCertificates({
			hosts: hostNames,
			perHost: Object.fromEntries(hostNames.map((h) => [h, cfg.hosts[h]?.tls])),
			defaultFiles:
				cfg.tls.cert && cfg.tls.key ? { cert: cfg.tls.cert, key: cfg.tls.key } : undefined,
			selfSigned: cfg.tls.self_signed,
			dataDir: resolveDataPath(cfg, "."),
			log: this.log,
		});
	}

	/** A per-host (and per-component) random secret, created once and kept in storage so it survives restarts. */
	async #hostSecret(host: string): Promise<Buffer> {
		const store = this.storage.keyval<string>(host, "server_secrets");
		const existing = await store.get("");
		if (existing) return Buffer.from(existing, "base64");
		const secret = randomBytes(32);
		await store.set("", secret.toString("base64"));
		return secret;
	}

	/**
	 * Closes every stream with `system-shutdown` (RFC 6120 §4.9.3.22), stops the listeners,
	 * unloads modules and closes storage after its pending writes.
	 */
	async stop(): Promise<void> {
		if (this.#state === "stopped" || this.#state === "stopping") return;
		this.#state = "stopping";
		// A reload under way finishes first: it would otherwise add hosts to a server going down.
		await this.#reloading;
		await this.#shutdown();
		this.#state = "stopped";
		this.log.info("Parley stopped");
	}

	async #shutdown(): Promise<void> {
		if (this.#sweeper) clearInterval(this.#sweeper);
		this.quietGc.stop();
		this.#metrics?.stop();
		const open = [...this.streams];
		for (const stream of open) stream.close("system-shutdown", "the server is stopping");
		// A stanza already being handled finishes before storage closes, so what it acknowledges
		// (or stores, like an offline message) is kept. Bounded: a stuck handler cannot block exit.
		let timer: NodeJS.Timeout | undefined;
		await Promise.race([
			Promise.all(open.map((s) => s.whenIdle())),
			new Promise<void>((resolve) => {
				timer = setTimeout(resolve, SHUTDOWN_DRAIN_MS);
			}),
		]);
		clearTimeout(timer);
		await this.remote?.stop();
		this.remote = null;
		await Promise.all(this.listeners.map((l) => l.close()));
		this.listeners.length = 0;
		await this.cluster?.stop();
		this.cluster = null;
		for (const c of this.components.values()) await c.modules?.unloadAll();
		this.components.clear();
		this.#withSubdomains = 0;
		for (const host of this.hosts.values()) await host.modules?.unloadAll();
		this.hosts.clear();
		await this.#storage?.close();
		this.#storage = null;
	}
}

export { changedKeys } from "./reload.ts";

/** The host whose disco#items lists a component: `parent_host`, else its domain minus a label. */
function parentOf(name: string, cfg: ComponentConfig): string {
	return cfg.parent_host ?? name.slice(name.indexOf(".") + 1);
}

/** Position in the file's order; names it does not hold go last. */
function rank(order: string[], name: string): number {
	const i = order.indexOf(name);
	return i < 0 ? order.length : i;
}

/**
 * The open streams, counting arrivals and departures for the quiet collector. A stream added
 * while the server stops (accepted after `stop()` closed the others, before the listeners
 * closed) is closed with `system-shutdown` (RFC 6120 §4.9.3.22) too.
 */
class CountedStreams extends Set<Connection> {
	readonly #server: Server;
	constructor(server: Server) {
		super();
		this.#server = server;
	}
	override add(stream: Connection): this {
		if (!this.has(stream)) this.#server.quietGc.opened();
		super.add(stream);
		const state = this.#server.state;
		if (state === "stopping" || state === "stopped") {
			// Closed after the caller's turn: transports add the stream in their constructor and
			// register its close callback (which deletes it from here) just after.
			queueMicrotask(() => stream.close("system-shutdown", "the server is stopping"));
		}
		return this;
	}
	override delete(stream: Connection): boolean {
		const gone = super.delete(stream);
		if (gone) this.#server.quietGc.ended();
		return gone;
	}
}
