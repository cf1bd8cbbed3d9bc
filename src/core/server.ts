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
import { AuthFailureTracker, ConnectionLimiter } from "../security/limits.ts";
import type { StorageBackend } from "../storage/types.ts";
import { type CertificateStore, loadCertificates } from "../tls/certs.ts";
import { JIDCache } from "../xmpp/jid.ts";
import { resolveDataPath } from "./config/load.ts";
import { ANONYMOUS_MODULE, COMPONENT_MODULES, type Config } from "./config/schema.ts";
import type {
	AnyAdminCommand,
	ClusterHook,
	Connection,
	Core,
	Host,
	Listener,
	RemoteDomains,
} from "./contracts.ts";
import { VirtualHost } from "./host.ts";
import { createLogger, type Logger } from "./log.ts";
import type { ModuleDefinition } from "./modules/define.ts";
import { ModuleManager } from "./modules/manager.ts";
import { QuietGc } from "./quiet-gc.ts";
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
	readonly quietGc = new QuietGc({ intervalMs: 10_000, minEnded: 500, maxOpenedWhileQuiet: 20 });
	readonly connectionLimiter: ConnectionLimiter;
	readonly authFailures: AuthFailureTracker;
	readonly listeners: Listener[] = [];
	readonly #parts: ServerParts;
	readonly #registry: Map<string, ModuleDefinition<unknown>>;
	#storage: StorageBackend | null;
	#certificates: CertificateStore | null = null;
	#state: ServerState = "created";
	#sweeper: NodeJS.Timeout | null = null;
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
		this.connectionLimiter = new ConnectionLimiter(config.limits.connections_per_ip);
		this.authFailures = new AuthFailureTracker(config.limits.sasl_failures_per_ip);
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

	get certificates(): CertificateStore {
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
			const hostNames = Object.entries(cfg.hosts)
				.filter(([, h]) => h.enabled)
				.map(([name]) => name);
			this.#certificates = await this.#loadCertificates(hostNames);
			for (const name of hostNames) await this.addHost(name);
			for (const [name, c] of Object.entries(cfg.components))
				if (c.enabled) await this.addComponent(name);
			if (cfg.cluster.enabled) {
				if (!this.#parts.cluster)
					throw new Error("[cluster] is enabled but no cluster link is built in");
				this.cluster = this.#parts.cluster(this);
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
			this.storage,
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
		// Its limits come with the host, whatever its `modules` list says.
		const modules = anonymous ? [...new Set([...cfg.modules, ANONYMOUS_MODULE])] : cfg.modules;
		for (const m of modules) await host.modules.load(m);
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
		const parent = this.hosts.get(cfg.parent_host ?? name.slice(name.indexOf(".") + 1));
		parent?.discoItems.set(name, { jid: name, name: cfg.name });
		for (const m of hostConfig.modules) await host.modules.load(m);
		return host;
	}

	/**
	 * Unloads and loads again every component's modules, so that they start from what storage
	 * holds: a cluster node that becomes the leader takes the components over this way.
	 */
	async restartComponents(): Promise<void> {
		for (const c of this.components.values()) {
			await c.modules.unloadAll();
			for (const m of c.config.modules) await c.modules.load(m);
		}
	}

	/**
	 * Applies a new configuration to the running server without closing a stream: what can
	 * change in place is applied (log level, limits), what cannot is listed as needing a
	 * restart, and the new configuration is the one in force afterwards either way.
	 * The configuration must already be valid (load.ts validated it).
	 */
	async reload(next: Config): Promise<ReloadReport> {
		if (this.#state !== "running") throw new Error(`cannot reload a server that is ${this.#state}`);
		const prev = this.#config;
		const report: ReloadReport = { applied: [], restartNeeded: [] };
		for (const key of changedKeys(prev, next)) {
			if (key === "log.level") {
				this.log.level = next.log.level;
				report.applied.push(key);
			} else if (key === "limits.connections_per_ip") {
				this.connectionLimiter.max = next.limits.connections_per_ip;
				report.applied.push(key);
			} else if (key === "limits.sasl_failures_per_ip") {
				this.authFailures.allowance = next.limits.sasl_failures_per_ip;
				report.applied.push(key);
			} else if (key.startsWith("limits.") || key.startsWith("sessions.")) {
				// Read from the configuration where they are used (per stream, per session).
				report.applied.push(key);
			} else report.restartNeeded.push(key);
		}
		this.#config = next;
		this.log.info(report, "configuration reloaded");
		return report;
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
			const hostNames = Object.entries(cfg.hosts)
				.filter(([, h]) => h.enabled)
				.map(([name]) => name);
			for (const name of hostNames) await this.#hostSecret(name);
			for (const [name, c] of Object.entries(cfg.components))
				if (c.enabled) await this.#hostSecret(name);
			await this.#loadCertificates(hostNames);
		} finally {
			await storage.close();
			this.#storage = null;
		}
	}

	#loadCertificates(hostNames: string[]): Promise<CertificateStore> {
		const cfg = this.config;
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
		await this.#shutdown();
		this.#state = "stopped";
		this.log.info("Parley stopped");
	}

	async #shutdown(): Promise<void> {
		if (this.#sweeper) clearInterval(this.#sweeper);
		this.quietGc.stop();
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

/**
 * The dotted paths whose values differ between two configurations, down to the second level
 * (`limits.stanza_size`, `hosts.example.org`): the unit `reload` applies or defers.
 */
export function changedKeys(a: Config, b: Config): string[] {
	const out: string[] = [];
	const sections = new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof Config>;
	for (const section of sections) {
		const x = a[section] as unknown;
		const y = b[section] as unknown;
		if (JSON.stringify(x) === JSON.stringify(y)) continue;
		if (!isRecord(x) || !isRecord(y)) {
			out.push(section);
			continue;
		}
		for (const key of new Set([...Object.keys(x), ...Object.keys(y)]))
			if (JSON.stringify(x[key]) !== JSON.stringify(y[key])) out.push(`${section}.${key}`);
	}
	return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
	return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The open streams, counting arrivals and departures for the quiet collector. */
class CountedStreams extends Set<Connection> {
	readonly #server: Server;
	constructor(server: Server) {
		super();
		this.#server = server;
	}
	override add(stream: Connection): this {
		if (!this.has(stream)) this.#server.quietGc.opened();
		return super.add(stream);
	}
	override delete(stream: Connection): boolean {
		const gone = super.delete(stream);
		if (gone) this.#server.quietGc.ended();
		return gone;
	}
}
