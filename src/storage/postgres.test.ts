import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import pg from "pg";
import { postgresSkip, TEST_PG_URL } from "../../test/helpers/services.ts";
import { storageContract } from "./contract/index.ts";
import { PostgresBackend } from "./postgres.ts";

// One schema per backend made, under a prefix unique to this run, all dropped at the end.
const prefix = `parley_test_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
const schemas: string[] = [];

storageContract(
	"postgres",
	async () => {
		const schema = `${prefix}_${schemas.length}`;
		schemas.push(schema);
		const b = new PostgresBackend({ url: TEST_PG_URL, schema, poolSize: 4 });
		await b.open();
		return b;
	},
	postgresSkip,
);

after(async () => {
	if (schemas.length === 0) return;
	const c = new pg.Client({ connectionString: TEST_PG_URL });
	await c.connect();
	try {
		for (const s of schemas) await c.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
	} finally {
		await c.end();
	}
});

describe("postgres specifics", { skip: postgresSkip }, () => {
	const fresh = async () => {
		const schema = `${prefix}_${schemas.length}`;
		schemas.push(schema);
		const b = new PostgresBackend({ url: TEST_PG_URL, schema, poolSize: 2 });
		await b.open();
		return b;
	};

	test("a write failing with a data error fails alone, the rest of its batch commits", async () => {
		const b = await fresh();
		try {
			const kv = b.keyval("a.example", "s");
			// PostgreSQL text cannot hold NUL: this write fails inside the batch transaction.
			const writes = [kv.set("ok1", 1), kv.set("bad\u0000", 2), kv.set("ok2", 3)];
			const settled = await Promise.allSettled(writes);
			assert.deepEqual(
				settled.map((s) => s.status),
				["fulfilled", "rejected", "fulfilled"],
			);
			assert.deepEqual(await kv.users(), ["ok1", "ok2"]);
		} finally {
			await b.close();
		}
	});

	test("appends issued together are one batch; duplicates within it conflict", async () => {
		const b = await fresh();
		try {
			const a = b.archive("a.example", "mam");
			const settled = await Promise.allSettled([
				a.append("u", { id: "x", value: 1, when: 5 }),
				a.append("u", { id: "x", value: 2, when: 5 }),
				a.append("v", { id: "y", value: 3, when: 5 }),
			]);
			assert.deepEqual(
				settled.map((s) => s.status),
				["fulfilled", "rejected", "fulfilled"],
			);
			assert.deepEqual(
				(await a.query("u")).items.map((i) => i.value),
				[1],
			);
		} finally {
			await b.close();
		}
	});

	test("an unreachable server makes calls reject, not crash", async () => {
		// Port 1 on loopback: connection refused at once.
		const b = new PostgresBackend({
			url: "postgres://postgres@127.0.0.1:1/test",
			connectTimeoutMs: 500,
		});
		try {
			await assert.rejects(b.keyval("a.example", "s").get("u"));
			await assert.rejects(b.keyval("a.example", "s").set("u", 1));
			await assert.rejects(b.archive("a.example", "s").append("u", { value: 1 }));
		} finally {
			await b.close();
		}
	});
});
