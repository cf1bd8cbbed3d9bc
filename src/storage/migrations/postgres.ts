/**
 * Versioned schema for the PostgreSQL backend.
 *
 * - Every table lives in one schema (default `public`); names carry a `parley_` prefix so a
 *   shared database stays readable. `parley_schema` records each applied version.
 * - Migrations only ever add (tables, columns, indexes); none drops data. Entry i brings the
 *   database from version i to version i + 1.
 * - Applying takes a transaction-level advisory lock first, so two servers starting at once do
 *   not both migrate: the second waits, then finds nothing to do.
 * - A database at a version higher than {@link POSTGRES_SCHEMA_VERSION} was written by a newer
 *   Parley: it is refused with an Error, never touched.
 */
import type { ClientBase } from "pg";

export interface Migration {
	description: string;
	/** The SQL, given the quoted schema name. */
	sql: (schema: string) => string;
}

export const POSTGRES_MIGRATIONS: readonly Migration[] = [
	{
		description: "keyval, map and archive tables",
		sql: (s) => `
		CREATE TABLE ${s}.parley_keyval (
			host TEXT NOT NULL,
			store TEXT NOT NULL,
			username TEXT NOT NULL,
			value TEXT NOT NULL,
			PRIMARY KEY (host, store, username)
		);
		CREATE INDEX parley_keyval_user ON ${s}.parley_keyval (host, username);
		CREATE TABLE ${s}.parley_map (
			host TEXT NOT NULL,
			store TEXT NOT NULL,
			username TEXT NOT NULL,
			key TEXT NOT NULL,
			value TEXT NOT NULL,
			PRIMARY KEY (host, username, store, key)
		);
		CREATE TABLE ${s}.parley_archive (
			seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			host TEXT NOT NULL,
			store TEXT NOT NULL,
			username TEXT NOT NULL,
			id TEXT NOT NULL,
			ts BIGINT NOT NULL,
			peer TEXT NOT NULL,
			value TEXT NOT NULL
		);
		CREATE UNIQUE INDEX parley_archive_id ON ${s}.parley_archive (host, store, id);
		-- (host, username) first: serves queries (host, store, username equal) and deleteUser.
		CREATE INDEX parley_archive_ts ON ${s}.parley_archive (host, username, store, ts, seq);
		CREATE INDEX parley_archive_peer ON ${s}.parley_archive (host, username, store, peer, ts, seq);
		`,
	},
];

/** The schema version this code writes and understands. */
export const POSTGRES_SCHEMA_VERSION = POSTGRES_MIGRATIONS.length;

export interface MigrationPlan {
	backend: string;
	/** The version found in the database (0: empty). */
	current: number;
	/** The version this code brings it to. */
	target: number;
	/** The migrations to run (or run), in order. */
	pending: { version: number; description: string }[];
	/** False on a dry run. */
	applied: boolean;
}

function plan(current: number, applied: boolean): MigrationPlan {
	return {
		backend: "postgres",
		current,
		target: POSTGRES_SCHEMA_VERSION,
		pending: POSTGRES_MIGRATIONS.slice(current).map((m, i) => ({
			version: current + i + 1,
			description: m.description,
		})),
		// Nothing to apply (another process got there first) counts as not applied here.
		applied: applied && current < POSTGRES_SCHEMA_VERSION,
	};
}

/** Validates a schema name and returns it quoted for SQL. */
export function quoteSchema(schema: string): string {
	// Kept to plain identifiers: the name ends up in SQL text and in error messages.
	if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) {
		throw new Error(`invalid PostgreSQL schema name ${JSON.stringify(schema)}`);
	}
	return `"${schema}"`;
}

async function currentVersion(client: ClientBase, schema: string): Promise<number> {
	const exists = await client.query<{ t: string | null }>("SELECT to_regclass($1) AS t", [
		`${quoteSchema(schema)}.parley_schema`,
	]);
	if (exists.rows[0]?.t == null) return 0;
	const r = await client.query<{ v: number | null }>(
		`SELECT max(version) AS v FROM ${quoteSchema(schema)}.parley_schema`,
	);
	return Number(r.rows[0]?.v ?? 0);
}

function tooNew(schema: string, version: number): Error {
	return new Error(
		`PostgreSQL schema "${schema}" is at version ${version}, newer than this Parley supports ` +
			`(${POSTGRES_SCHEMA_VERSION}); upgrade Parley or use another schema`,
	);
}

/**
 * Brings `schema` to {@link POSTGRES_SCHEMA_VERSION}, or on a dry run only reports what would
 * run. Throws when the database is newer than the code. `client` must not be in a transaction.
 */
export async function migratePostgres(
	client: ClientBase,
	schema: string,
	opts: { dryRun?: boolean } = {},
): Promise<MigrationPlan> {
	const before = await currentVersion(client, schema);
	if (before > POSTGRES_SCHEMA_VERSION) throw tooNew(schema, before);
	if (opts.dryRun || before === POSTGRES_SCHEMA_VERSION) return plan(before, false);

	// A session lock taken before BEGIN: the transaction then starts after the other migrator's
	// COMMIT and sees its tables (a lock taken inside it could leave a stale catalog snapshot).
	const lockKey = `parley_schema:${schema}`;
	await client.query("SELECT pg_advisory_lock(hashtext($1))", [lockKey]);
	try {
		return await migrateLocked(client, schema);
	} finally {
		await client.query("SELECT pg_advisory_unlock(hashtext($1))", [lockKey]).catch(() => {});
	}
}

async function migrateLocked(client: ClientBase, schema: string): Promise<MigrationPlan> {
	const q = quoteSchema(schema);
	await client.query("BEGIN");
	try {
		// Read again under the lock: another process may have migrated meanwhile.
		const version = await currentVersion(client, schema);
		if (version > POSTGRES_SCHEMA_VERSION) throw tooNew(schema, version);
		await client.query(`CREATE SCHEMA IF NOT EXISTS ${q}`);
		await client.query(
			`CREATE TABLE IF NOT EXISTS ${q}.parley_schema (
				version INTEGER PRIMARY KEY,
				description TEXT NOT NULL,
				applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
			)`,
		);
		for (let v = version; v < POSTGRES_SCHEMA_VERSION; v++) {
			const m = POSTGRES_MIGRATIONS[v] as Migration;
			await client.query(m.sql(q));
			await client.query(`INSERT INTO ${q}.parley_schema (version, description) VALUES ($1, $2)`, [
				v + 1,
				m.description,
			]);
		}
		await client.query("COMMIT");
		return plan(version, true);
	} catch (e) {
		await client.query("ROLLBACK").catch(() => {});
		throw e;
	}
}
