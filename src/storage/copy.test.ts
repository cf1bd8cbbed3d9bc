import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import pg from "pg";
import { postgresSkip, TEST_PG_URL } from "../../test/helpers/services.ts";
import { copyStorage, dumpBackend, openBackendSpec } from "./copy.ts";
import { MemoryBackend } from "./memory.ts";
import type { DumpRecord } from "./postgres.ts";
import type { StorageBackend } from "./types.ts";

const PG_URL = TEST_PG_URL;
const schema = `parley_test_copy_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
const dir = mkdtempSync(join(tmpdir(), "parley-copy-"));

after(async () => {
	rmSync(dir, { recursive: true, force: true });
	if (postgresSkip) return;
	const c = new pg.Client({ connectionString: PG_URL });
	await c.connect();
	await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
	await c.end();
});

async function fill(b: StorageBackend): Promise<void> {
	for (const host of ["a.example", "b.example"]) {
		await b.keyval(host, "accounts").set("alice", { scram: { "SHA-256": { salt: "c2FsdA==" } } });
		await b.keyval(host, "vcard").set("bob", "<vCard xmlns='vcard-temp'><FN>Bob 🎉</FN></vCard>");
		await b.map(host, "private").set("alice", "storage:bookmarks", "<storage/>");
		await b.map(host, "private").set("alice", "roster:delimiter", "::");
		// Ties on time: their order must survive the copy.
		for (let i = 0; i < 30; i++) {
			await b.archive(host, "mam").append("alice", {
				id: `${host}-m${i}`,
				when: 1_700_000_000_000 + Math.floor(i / 3),
				with: i % 2 ? "bob@a.example" : "",
				value: { body: `message ${i}`, i },
			});
		}
	}
}

async function all(b: StorageBackend): Promise<DumpRecord[]> {
	const out: DumpRecord[] = [];
	for await (const r of dumpBackend(b)) out.push(r);
	return out;
}

test("storage copy: sqlite -> postgres -> memory gives the same data back, twice is harmless", {
	skip: postgresSkip,
}, async () => {
	const sqlite = openBackendSpec("sqlite:src.sqlite", dir);
	const pgb = openBackendSpec(`${PG_URL}?schema=${schema}`, dir);
	const mem = new MemoryBackend();
	try {
		await fill(sqlite);
		const stats = await copyStorage(sqlite, pgb);
		assert.deepEqual(stats, { keyval: 4, map: 4, archive: 60, skipped: 0 });
		assert.deepEqual(await all(pgb), await all(sqlite));

		const again = await copyStorage(sqlite, pgb);
		assert.equal(again.skipped, 60);
		assert.deepEqual(await all(pgb), await all(sqlite));

		await copyStorage(pgb, mem);
		for (const host of ["a.example", "b.example"]) {
			const want = await sqlite
				.archive(host, "mam")
				.query("alice", { limit: 7, after: `${host}-m4` });
			assert.deepEqual(
				await mem.archive(host, "mam").query("alice", { limit: 7, after: `${host}-m4` }),
				want,
			);
			assert.deepEqual(
				await pgb.archive(host, "mam").query("alice", { limit: 7, after: `${host}-m4` }),
				want,
			);
			assert.deepEqual(
				await mem.map(host, "private").getAll("alice"),
				await sqlite.map(host, "private").getAll("alice"),
			);
			assert.deepEqual(
				await mem.keyval(host, "vcard").get("bob"),
				await sqlite.keyval(host, "vcard").get("bob"),
			);
		}
		await assert.rejects(copyStorage(mem, sqlite), /cannot read every store of a memory backend/);
	} finally {
		await Promise.all([sqlite.close(), pgb.close(), mem.close()]);
	}
});

test("openBackendSpec refuses unknown specs", () => {
	assert.throws(() => openBackendSpec("mysql://x", dir), /unknown storage/);
	assert.throws(() => openBackendSpec("sqlite:", dir), /needs a file name/);
});
