/**
 * Schema status and migration for the SQLite backend. The SQL itself lives in src/storage/sqlite.ts
 * (PRAGMA user_version, applied when a SqliteBackend opens the file); this module reports what a
 * migration would do without touching the file (dry run), and applies it by opening the backend.
 */
import { existsSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { SQLITE_SCHEMA_VERSION, SqliteBackend } from "../sqlite.ts";
import type { MigrationPlan } from "./postgres.ts";

/** What each SQLite schema version brought (entry i: version i + 1). */
const DESCRIPTIONS: readonly string[] = [
	"keyval, map and archive tables",
	"keyval and map as rowid tables (one lookup no longer reads its neighbours' large values)",
	"archive keyed by integer store and owner ids (smaller rows and indexes, cheaper appends)",
];

function version(path: string): number {
	if (path === ":memory:" || !existsSync(path)) return 0;
	// Read-only: a dry run must not create or change anything.
	const db = new DatabaseSync(path, { readOnly: true });
	try {
		const row = db.prepare("PRAGMA user_version").get() as { user_version?: number } | undefined;
		return Number(row?.user_version ?? 0);
	} finally {
		db.close();
	}
}

/** Brings the SQLite file at `path` to the current schema, or only reports on a dry run. */
export async function migrateSqlite(
	path: string,
	opts: { dryRun?: boolean } = {},
): Promise<MigrationPlan> {
	const current = version(path);
	if (current > SQLITE_SCHEMA_VERSION) {
		throw new Error(
			`${path}: database schema version ${current} is newer than this Parley supports ` +
				`(${SQLITE_SCHEMA_VERSION}); upgrade Parley or use another file`,
		);
	}
	const pending = [];
	for (let v = current; v < SQLITE_SCHEMA_VERSION; v++) {
		pending.push({ version: v + 1, description: DESCRIPTIONS[v] ?? `version ${v + 1}` });
	}
	const plan = { backend: "sqlite", current, target: SQLITE_SCHEMA_VERSION, pending };
	if (opts.dryRun || pending.length === 0) return { ...plan, applied: false };
	if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
	await new SqliteBackend(path).close(); // opening migrates (in one IMMEDIATE transaction)
	return { ...plan, applied: true };
}
