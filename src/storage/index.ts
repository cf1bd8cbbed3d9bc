/**
 * Storage entry point: builds the configured backend. See types.ts for the contract and
 * memory.ts for the archive semantics every backend shares.
 */
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { MemoryBackend } from "./memory.ts";
import { PostgresBackend } from "./postgres.ts";
import { DEFAULT_BACKEND, type HostRoute, RoutingBackend } from "./routing.ts";
import { SqliteBackend } from "./sqlite.ts";
import type { StorageBackend } from "./types.ts";

export { MemoryBackend, StorageError, type StorageErrorCode } from "./memory.ts";
export { PostgresBackend, type PostgresOptions } from "./postgres.ts";
export { DEFAULT_BACKEND, type HostRoute, RoutingBackend, type StorageRoutes } from "./routing.ts";
export { SQLITE_SCHEMA_VERSION, SqliteBackend } from "./sqlite.ts";
export type {
	ArchiveItem,
	ArchivePage,
	ArchiveQuery,
	ArchiveStore,
	Json,
	KeyValStore,
	MapStore,
	StorageBackend,
} from "./types.ts";

/** One backend: the [storage] table itself, or one [storage.backends.<name>]. */
export interface BackendConfig {
	backend: "sqlite" | "memory" | "postgres";
	/** SQLite file, relative to `dataDir` (an absolute path is used as is). */
	path: string;
	/** PostgreSQL: connection URL (required), schema, pool size, connect timeout in seconds. */
	url?: string | undefined;
	schema?: string;
	pool_size?: number;
	connect_timeout?: number;
}

/**
 * The [storage] table: the default backend, and optionally further named backends with routes
 * that send some stores, or some hosts, to them (see routing.ts for the rule).
 */
export interface StorageConfig extends BackendConfig {
	backends?: Record<string, BackendConfig>;
	stores?: Record<string, string>;
	hosts?: Record<string, { default?: string | undefined; stores?: Record<string, string> }>;
	/**
	 * Hosts whose stores all live in one memory backend of this process, whatever the routes
	 * say, except their `server_secrets` (kept where the default backend is, so that every node
	 * and every restart signs with the same host secret). Anonymous hosts: nothing a guest leaves
	 * survives a restart or a crash.
	 */
	memory_hosts?: string[];
}

/** The name the memory backend of `memory_hosts` has in the routes (not a valid config name). */
export const MEMORY_HOSTS_BACKEND = "(memory hosts)";

/**
 * Opens the configured backend. For SQLite, `dataDir` is created when missing and the database
 * file is created (with its schema) when missing; a file from a newer Parley throws. For
 * PostgreSQL, the schema is created or migrated on first use, and a newer one makes calls reject.
 *
 * When routes send stores or hosts to named backends, the result is a {@link RoutingBackend}
 * over the default backend and every named backend a route uses (backends no route names are
 * not opened; two names with identical settings share one instance). A route naming an unknown
 * backend throws (the config schema reports it first, naming the key).
 */
export function createStorage(cfg: StorageConfig, dataDir: string): StorageBackend {
	const used = new Set<string>();
	for (const name of Object.values(cfg.stores ?? {})) used.add(name);
	for (const h of Object.values(cfg.hosts ?? {})) {
		if (h.default !== undefined) used.add(h.default);
		for (const name of Object.values(h.stores ?? {})) used.add(name);
	}
	used.delete(DEFAULT_BACKEND);
	const memoryHosts = cfg.memory_hosts ?? [];
	if (used.size === 0 && memoryHosts.length === 0) return openBackend(cfg, dataDir);

	const byName = new Map<string, BackendConfig>([[DEFAULT_BACKEND, cfg]]);
	const hosts: Record<string, HostRoute> = { ...cfg.hosts };
	if (memoryHosts.length) {
		byName.set(MEMORY_HOSTS_BACKEND, { backend: "memory", path: "" });
		for (const h of memoryHosts) {
			hosts[h] = {
				default: MEMORY_HOSTS_BACKEND,
				stores: { server_secrets: DEFAULT_BACKEND },
				exclusive: true,
			};
		}
	}
	for (const name of used) {
		const b = cfg.backends?.[name];
		if (b === undefined) throw new Error(`no storage backend named ${JSON.stringify(name)}`);
		byName.set(name, b);
	}
	const opened = new Map<string, StorageBackend>();
	const backends = new Map<string, StorageBackend>();
	try {
		for (const [name, b] of byName) {
			const key = identity(b, dataDir);
			let backend = opened.get(key);
			if (backend === undefined) {
				backend = openBackend(b, dataDir);
				opened.set(key, backend);
			}
			backends.set(name, backend);
		}
		return new RoutingBackend(backends, {
			...(cfg.stores !== undefined && { stores: cfg.stores }),
			hosts,
		});
	} catch (e) {
		for (const b of opened.values()) void b.close().catch(() => {});
		throw e;
	}
}

/** What makes two backend settings the same database (memory backends are never shared). */
function identity(b: BackendConfig, dataDir: string): string {
	switch (b.backend) {
		case "memory":
			return `memory:${Math.random()}`;
		case "sqlite":
			return `sqlite:${b.path === ":memory:" ? `:memory:${Math.random()}` : resolve(dataDir, b.path)}`;
		case "postgres":
			return JSON.stringify(["postgres", b.url, b.schema, b.pool_size, b.connect_timeout]);
	}
}

function openBackend(cfg: BackendConfig, dataDir: string): StorageBackend {
	switch (cfg.backend) {
		case "memory":
			return new MemoryBackend();
		case "sqlite": {
			mkdirSync(dataDir, { recursive: true });
			return new SqliteBackend(cfg.path === ":memory:" ? cfg.path : resolve(dataDir, cfg.path));
		}
		case "postgres": {
			if (!cfg.url) throw new Error('storage.url is required when storage.backend is "postgres"');
			// The schema is created or migrated on first use (PostgresBackend.open).
			return new PostgresBackend({
				url: cfg.url,
				...(cfg.schema !== undefined && { schema: cfg.schema }),
				...(cfg.pool_size !== undefined && { poolSize: cfg.pool_size }),
				...(cfg.connect_timeout !== undefined && { connectTimeoutMs: cfg.connect_timeout * 1000 }),
			});
		}
	}
}
