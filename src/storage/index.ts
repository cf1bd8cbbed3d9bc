/**
 * Storage entry point: builds the configured backend. See types.ts for the contract and
 * memory.ts for the archive semantics every backend shares.
 */
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { MemoryBackend } from "./memory.ts";
import { SqliteBackend } from "./sqlite.ts";
import type { StorageBackend } from "./types.ts";

export { MemoryBackend, StorageError, type StorageErrorCode } from "./memory.ts";
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
	backend: "sqlite" | "memory";
	/** SQLite file, relative to `dataDir` (an absolute path is used as is). */
	path: string;
}

/**
 * Opens the configured backend. For SQLite, `dataDir` is created when missing and the database
 * file is created (with its schema) when missing; a file from a newer Parley throws.
 */
export function createStorage(cfg: StorageConfig, dataDir: string): StorageBackend {
	switch (cfg.backend) {
		case "memory":
			return new MemoryBackend();
		case "sqlite": {
			mkdirSync(dataDir, { recursive: true });
			return new SqliteBackend(cfg.path === ":memory:" ? cfg.path : resolve(dataDir, cfg.path));
		}
	}
}
