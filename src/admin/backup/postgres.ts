/**
 * PostgreSQL in a backup: Parley's tables (`parley_*` in the configured schema) exported in one
 * REPEATABLE READ, READ ONLY transaction (one snapshot of all of them while the server keeps
 * writing), one NDJSON file per table with each row as `to_jsonb(row)`, read through a cursor
 * so a large archive is never held in memory at once.
 *
 * A restore loads them in one transaction: the schema is created or migrated first, then every
 * table is truncated and refilled (`jsonb_populate_recordset`, `OVERRIDING SYSTEM VALUE` for the
 * archive's identity column, whose sequence is then set past the largest value). A crash before
 * the COMMIT leaves the old rows; the restore's journal makes the next start run it again.
 */

import { once } from "node:events";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import pg from "pg";
import { CommandError } from "../../core/commands.ts";
import {
	migratePostgres,
	POSTGRES_SCHEMA_VERSION,
	quoteSchema,
} from "../../storage/migrations/postgres.ts";

export interface PostgresTarget {
	url: string;
	schema: string;
}

const BATCH = 1000;

function client(t: PostgresTarget): pg.Client {
	return new pg.Client({ connectionString: t.url, application_name: "parley-backup" });
}

/** Parley's tables in the schema (the schema table included). */
async function tables(c: pg.Client, schema: string): Promise<string[]> {
	const r = await c.query<{ t: string }>(
		"SELECT table_name AS t FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE' AND table_name LIKE 'parley\\_%' ORDER BY 1",
		[schema],
	);
	return r.rows.map((row) => row.t);
}

/** Writes `<dir>/<table>.ndjson` for every table; returns the schema version and the row count. */
export async function exportPostgres(
	t: PostgresTarget,
	dir: string,
): Promise<{ schemaVersion: number; rows: number }> {
	const q = quoteSchema(t.schema);
	const c = client(t);
	await c.connect();
	let rows = 0;
	try {
		await c.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
		await mkdir(dir, { recursive: true });
		let schemaVersion = 0;
		for (const table of await tables(c, t.schema)) {
			const out = createWriteStream(join(dir, `${table}.ndjson`));
			await c.query(
				`DECLARE parley_backup NO SCROLL CURSOR FOR SELECT to_jsonb(t) AS r FROM ${q}."${table}" t`,
			);
			for (;;) {
				const r = await c.query<{ r: unknown }>(`FETCH ${BATCH} FROM parley_backup`);
				for (const row of r.rows) {
					if (!out.write(`${JSON.stringify(row.r)}\n`)) await once(out, "drain");
					if (table === "parley_schema")
						schemaVersion = Math.max(schemaVersion, Number((row.r as { version: number }).version));
				}
				rows += r.rows.length;
				if (r.rows.length < BATCH) break;
			}
			await c.query("CLOSE parley_backup");
			out.end();
			await once(out, "close");
		}
		await c.query("COMMIT");
		return { schemaVersion, rows };
	} finally {
		await c.end().catch(() => {});
	}
}

/** Refuses a backup of another schema version than this Parley's (before the commit point). */
export function checkPostgresVersion(version: number | undefined, name: string): void {
	if (version !== POSTGRES_SCHEMA_VERSION)
		throw new CommandError(
			"invalid_argument",
			`the backup's PostgreSQL data of backend "${name}" is at schema version ${version}, this Parley's is ${POSTGRES_SCHEMA_VERSION}: restore it with the Parley that made it`,
		);
}

/** Replaces the rows of Parley's tables with those of `<dir>/*.ndjson`, in one transaction. */
export async function importPostgres(t: PostgresTarget, dir: string): Promise<void> {
	const q = quoteSchema(t.schema);
	const c = client(t);
	await c.connect();
	try {
		await migratePostgres(c, t.schema);
		const files = (await readdir(dir)).filter((f) => f.endsWith(".ndjson"));
		const present = await tables(c, t.schema);
		await c.query("BEGIN");
		try {
			const data = present.filter((table) => table !== "parley_schema");
			if (data.length > 0) await c.query(`TRUNCATE ${data.map((x) => `${q}."${x}"`).join(", ")}`);
			for (const file of files) {
				const table = file.slice(0, -".ndjson".length);
				if (table === "parley_schema" || !present.includes(table)) continue;
				const insert = `INSERT INTO ${q}."${table}" OVERRIDING SYSTEM VALUE SELECT * FROM jsonb_populate_recordset(NULL::${q}."${table}", $1::jsonb)`;
				let batch: string[] = [];
				const lines = createInterface({ input: createReadStream(join(dir, file)) });
				for await (const line of lines) {
					if (line === "") continue;
					batch.push(line);
					if (batch.length === BATCH) {
						await c.query(insert, [`[${batch.join(",")}]`]);
						batch = [];
					}
				}
				if (batch.length > 0) await c.query(insert, [`[${batch.join(",")}]`]);
				// Identity columns continue after the restored values.
				const ids = await c.query<{ col: string }>(
					"SELECT column_name AS col FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 AND is_identity = 'YES'",
					[t.schema, table],
				);
				for (const { col } of ids.rows)
					await c.query(
						`SELECT setval(pg_get_serial_sequence($1, $2), coalesce((SELECT max("${col}") FROM ${q}."${table}"), 0) + 1, false)`,
						[`${q}."${table}"`, col],
					);
			}
			await c.query("COMMIT");
		} catch (err) {
			await c.query("ROLLBACK").catch(() => {});
			throw err;
		}
	} finally {
		await c.end().catch(() => {});
	}
}

/** Empties Parley's tables (the schema table stays), in one transaction. */
export async function erasePostgres(t: PostgresTarget): Promise<void> {
	const q = quoteSchema(t.schema);
	const c = client(t);
	await c.connect();
	try {
		const data = (await tables(c, t.schema)).filter((table) => table !== "parley_schema");
		if (data.length > 0) await c.query(`TRUNCATE ${data.map((x) => `${q}."${x}"`).join(", ")}`);
	} finally {
		await c.end().catch(() => {});
	}
}
