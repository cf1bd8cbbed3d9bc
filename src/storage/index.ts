/**
 * Storage entry point: builds the configured backend. See types.ts for the contract and
 * memory.ts for the archive semantics every backend shares.
 */
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { MemoryBackend } from "./memory.ts";
import { PostgresBackend } from "./postgres.ts";
import { SqliteBackend } from "./sqlite.ts";
import type { StorageBackend } from "./types.ts";

export { MemoryBackend, StorageError, type StorageErrorCode } from "./memory.ts";
export { PostgresBackend, type PostgresOptions } from "./postgres.ts";
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

export interface StorageConfig {
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
 * Opens the configured backend. For SQLite, `dataDir` is created when missing and the database
 * file is created (with its schema) when missing; a file from a newer Parley throws. For
 * PostgreSQL, the schema is created or migrated on first use, and a newer one makes calls reject.
 */
export function createStorage(cfg: StorageConfig, dataDir: string): StorageBackend {
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
