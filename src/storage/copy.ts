/**
 * `parley storage copy --from X --to Y`: copies every store of every host from one backend to
 * another (e.g. a live SQLite deployment to PostgreSQL).
 *
 * The StorageBackend interface opens stores by name and cannot list them, so reading is done per
 * backend: SQLite through its file (read-only, beside a running server thanks to WAL), PostgreSQL
 * through {@link PostgresBackend.dump}. Writing goes through the ordinary interface, so any
 * backend can be the target. Archive items keep their id, time and peer and are appended in their
 * original order, so ties stay in order. Copying again is harmless: values are overwritten and
 * archive items already present (same id) are skipped.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { StorageError } from "./memory.ts";
import { type DumpRecord, PostgresBackend } from "./postgres.ts";
import { SqliteBackend } from "./sqlite.ts";
import type { Json, StorageBackend } from "./types.ts";

/** Writes kept in flight at once: enough for the backends' group commit to pay off. */
const WINDOW = 256;

/** Every record of a backend; throws for backends that cannot be listed (memory). */
export async function* dumpBackend(b: StorageBackend): AsyncGenerator<DumpRecord> {
	if (b instanceof PostgresBackend) {
		yield* b.dump();
		return;
	}
	if (b instanceof SqliteBackend) {
		yield* dumpSqlite(b.path);
		return;
	}
	throw new Error(`cannot read every store of a ${b.kind} backend`);
}

/** Reads the SQLite file directly (read-only); the layout is sqlite.ts's current schema (the backend opened it, so migrated it). */
export function* dumpSqlite(path: string): Generator<DumpRecord> {
	if (path !== ":memory:" && !existsSync(path)) return;
	const db = new DatabaseSync(path, { readOnly: true });
	try {
		type R = Record<string, string | number>;
		const rows = (sql: string) => db.prepare(sql).iterate() as Iterable<R>;
		/** The columns every table has: the host, store and user a row belongs to. */
		const owner = (r: R) => ({
			host: String(r.host),
			store: String(r.store),
			user: String(r.user),
		});
		const json = (v: R[string] | undefined) => JSON.parse(String(v)) as Json;
		for (const r of rows("SELECT host, store, user, value FROM keyval ORDER BY host, store, user"))
			yield { kind: "keyval", ...owner(r), value: json(r.value) };
		for (const r of rows(
			"SELECT host, store, user, key, value FROM map ORDER BY host, store, user, key",
		))
			yield { kind: "map", ...owner(r), key: String(r.key), value: json(r.value) };
		for (const r of rows(
			"SELECT s.host, s.store, o.user, a.id, a.ts, a.peer, a.value FROM archive a " +
				"JOIN archive_owner o ON o.oid = a.oid JOIN archive_store s ON s.sid = a.sid " +
				"ORDER BY a.seq",
		))
			yield {
				kind: "archive",
				...owner(r),
				item: { id: String(r.id), when: Number(r.ts), with: String(r.peer), value: json(r.value) },
			};
	} finally {
		db.close();
	}
}

export interface CopyStats {
	keyval: number;
	map: number;
	archive: number;
	/** Archive items already in the target (same id), left alone. */
	skipped: number;
}

/** Writes one record to `to`; resolves to whether it was written (false: already there). */
export async function restoreRecord(to: StorageBackend, r: DumpRecord): Promise<boolean> {
	switch (r.kind) {
		case "keyval":
			await to.keyval(r.host, r.store).set(r.user, r.value);
			return true;
		case "map":
			await to.map(r.host, r.store).set(r.user, r.key, r.value);
			return true;
		case "archive":
			try {
				await to.archive(r.host, r.store).append(r.user, r.item);
				return true;
			} catch (e) {
				if (e instanceof StorageError && e.code === "conflict") return false;
				throw e;
			}
	}
}

/** Copies everything in `from` into `to`. Neither is closed. */
export async function copyStorage(
	from: StorageBackend,
	to: StorageBackend,
	onProgress?: (s: CopyStats) => void,
): Promise<CopyStats> {
	const stats: CopyStats = { keyval: 0, map: 0, archive: 0, skipped: 0 };
	let inFlight: Promise<void>[] = [];
	for await (const r of dumpBackend(from)) {
		// Issued without waiting, in order: the target commits them in that order, in groups.
		inFlight.push(
			restoreRecord(to, r).then((written) => {
				if (written) stats[r.kind]++;
				else stats.skipped++;
			}),
		);
		if (inFlight.length >= WINDOW) {
			await Promise.all(inFlight);
			inFlight = [];
			onProgress?.(stats);
		}
	}
	await Promise.all(inFlight);
	onProgress?.(stats);
	return stats;
}

/**
 * Opens a backend named on the command line: `sqlite:<file>` (relative to `dataDir`) or a
 * `postgres://` / `postgresql://` URL, optionally with `?schema=<name>` (default "public").
 */
export function openBackendSpec(spec: string, dataDir: string): StorageBackend {
	if (spec.startsWith("sqlite:")) {
		const path = spec.slice("sqlite:".length);
		if (!path) throw new Error("sqlite: needs a file name, e.g. sqlite:parley.sqlite");
		return new SqliteBackend(resolve(dataDir, path));
	}
	if (/^postgres(ql)?:\/\//.test(spec)) {
		const url = new URL(spec);
		const schema = url.searchParams.get("schema") ?? "public";
		url.searchParams.delete("schema");
		return new PostgresBackend({ url: url.toString(), schema });
	}
	throw new Error(`unknown storage "${spec}": use sqlite:<file> or a postgres:// URL`);
}
