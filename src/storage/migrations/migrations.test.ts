import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, describe, test } from "node:test";
import pg from "pg";
import { postgresSkip, TEST_PG_URL } from "../../../test/helpers/services.ts";
import { PostgresBackend } from "../postgres.ts";
import { SQLITE_SCHEMA_VERSION, SqliteBackend } from "../sqlite.ts";
import { describePlan, migrateStorage, POSTGRES_SCHEMA_VERSION } from "./index.ts";

const PG_URL = TEST_PG_URL;
const prefix = `parley_test_mig_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
const schemas: string[] = [];
const newSchema = () => {
	const s = `${prefix}_${schemas.length}`;
	schemas.push(s);
	return s;
};

async function sql<R extends pg.QueryResultRow>(
	text: string,
	values: unknown[] = [],
): Promise<R[]> {
	const c = new pg.Client({ connectionString: PG_URL });
	await c.connect();
	try {
		return (await c.query<R>(text, values)).rows;
	} finally {
		await c.end();
	}
}

after(async () => {
	for (const s of schemas) await sql(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
});

describe("postgres migrations", { skip: postgresSkip }, () => {
	test("dry run reports and changes nothing; migrate applies once; data is kept", async () => {
		const schema = newSchema();
		const cfg = { backend: "postgres" as const, path: "", url: PG_URL, schema };
		const dry = await migrateStorage(cfg, ".", { dryRun: true });
		assert.equal(dry.current, 0);
		assert.equal(dry.applied, false);
		assert.equal(dry.pending.length, POSTGRES_SCHEMA_VERSION);
		assert.match(describePlan(dry), /would migrate schema from version 0/);
		const exists = await sql<{ n: number }>(
			"SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = $1",
			[schema],
		);
		assert.equal(exists[0]?.n, 0, "the dry run created nothing");

		const done = await migrateStorage(cfg, ".");
		assert.equal(done.applied, true);
		const b = new PostgresBackend({ url: PG_URL, schema });
		await b.keyval("h", "s").set("u", "kept");
		await b.close();
		const again = await migrateStorage(cfg, ".");
		assert.deepEqual(again.pending, []);
		assert.match(describePlan(again), /up to date/);
		const b2 = new PostgresBackend({ url: PG_URL, schema });
		assert.equal(await b2.keyval("h", "s").get("u"), "kept");
		await b2.close();
	});

	test("backends opening a new schema at once migrate it exactly once", async () => {
		const schema = newSchema();
		const backends = Array.from({ length: 4 }, () => new PostgresBackend({ url: PG_URL, schema }));
		await Promise.all(backends.map((b) => b.open()));
		await Promise.all(backends.map((b) => b.close()));
		const rows = await sql<{ version: number }>(`SELECT version FROM "${schema}".parley_schema`);
		assert.deepEqual(
			rows.map((r) => r.version),
			[1],
		);
	});

	test("a database newer than the code is refused, untouched", async () => {
		const schema = newSchema();
		const b = new PostgresBackend({ url: PG_URL, schema });
		await b.keyval("h", "s").set("u", 1);
		await b.close();
		await sql(
			`INSERT INTO "${schema}".parley_schema (version, description) VALUES ($1, 'future')`,
			[POSTGRES_SCHEMA_VERSION + 1],
		);
		const cfg = { backend: "postgres" as const, path: "", url: PG_URL, schema };
		await assert.rejects(migrateStorage(cfg, ".", { dryRun: true }), /newer than this Parley/);
		await assert.rejects(migrateStorage(cfg, "."), /newer than this Parley/);
		const newer = new PostgresBackend({ url: PG_URL, schema });
		await assert.rejects(newer.keyval("h", "s").get("u"), /newer than this Parley/);
		await assert.rejects(newer.keyval("h", "s").set("u", 2), /newer than this Parley/);
		await newer.close();
		const rows = await sql<{ value: string }>(`SELECT value FROM "${schema}".parley_keyval`);
		assert.deepEqual(rows, [{ value: "1" }]);
	});
});

describe("sqlite migrations", () => {
	const dir = mkdtempSync(join(tmpdir(), "parley-mig-"));
	after(() => rmSync(dir, { recursive: true, force: true }));

	test("dry run on a missing file creates nothing; migrate creates the schema", async () => {
		const cfg = { backend: "sqlite" as const, path: "new.sqlite" };
		const dry = await migrateStorage(cfg, dir, { dryRun: true });
		assert.deepEqual(
			{ current: dry.current, target: dry.target, applied: dry.applied },
			{ current: 0, target: SQLITE_SCHEMA_VERSION, applied: false },
		);
		assert.equal(existsSync(join(dir, "new.sqlite")), false);
		assert.equal((await migrateStorage(cfg, dir)).applied, true);
		const after = await migrateStorage(cfg, dir, { dryRun: true });
		assert.equal(after.current, SQLITE_SCHEMA_VERSION);
		assert.deepEqual(after.pending, []);
	});

	test("a file newer than the code is refused", async () => {
		const path = join(dir, "newer.sqlite");
		await new SqliteBackend(path).close();
		const db = new DatabaseSync(path);
		db.exec(`PRAGMA user_version = ${SQLITE_SCHEMA_VERSION + 1}`);
		db.close();
		await assert.rejects(
			migrateStorage({ backend: "sqlite", path }, dir, { dryRun: true }),
			/newer than this Parley/,
		);
	});
});
