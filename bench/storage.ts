/**
 * Storage figures per backend (issue 4): archive inserts per second with many writes in flight
 * (what group commit gives a busy server) and one at a time (one client waiting on each), keyval
 * write latency, and archive query latency (a MAM page of 50 after an id). No gating: it prints a
 * table. Run: npx node bench/storage.ts [--n 5000], or within `npm run bench -- storage`.
 *
 * PostgreSQL: PARLEY_BENCH_PG (default postgres://postgres@127.0.0.1:5432/test), in a throwaway
 * schema dropped at the end; skipped when unreachable.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import pg from "pg";
import { MemoryBackend } from "../src/storage/memory.ts";
import { PostgresBackend } from "../src/storage/postgres.ts";
import { SqliteBackend } from "../src/storage/sqlite.ts";
import type { StorageBackend } from "../src/storage/types.ts";

const arg = process.argv.indexOf("--n");
const N = arg > 0 ? Number(process.argv[arg + 1]) : 5000;
const SEQ = Math.min(N, 1000);
const QUERIES = 500;
const PG_URL = process.env.PARLEY_BENCH_PG ?? "postgres://postgres@127.0.0.1:5432/test";
const VALUE = {
	xml: "<message xmlns='jabber:client' to='bob@a.example' type='chat'><body>hello there</body></message>",
};

function pct(sorted: number[], p: number): number {
	return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0;
}

async function run(b: StorageBackend) {
	const a = b.archive("bench.example", "mam");
	// Many in flight: windows of 256 writes, like many sessions storing at once.
	let t = performance.now();
	for (let i = 0; i < N; i += 256) {
		const batch = [];
		for (let j = i; j < Math.min(N, i + 256); j++) {
			batch.push(a.append(`u${j % 10}`, { value: VALUE, with: `p${j % 7}@x` }));
		}
		await Promise.all(batch);
	}
	const pipelined = N / ((performance.now() - t) / 1000);

	t = performance.now();
	for (let i = 0; i < SEQ; i++) await a.append("seq", { value: VALUE });
	const sequential = SEQ / ((performance.now() - t) / 1000);

	const kv = b.keyval("bench.example", "roster");
	const setLat: number[] = [];
	for (let i = 0; i < QUERIES; i++) {
		const s = performance.now();
		await kv.set(`u${i % 50}`, { i, items: { "a@x": { subscription: "both" } } });
		setLat.push(performance.now() - s);
	}

	const ids = (await a.query("u1", { limit: 400 })).items.map((i) => i.id);
	const qLat: number[] = [];
	for (let i = 0; i < QUERIES; i++) {
		const after = ids[i % ids.length] as string;
		const s = performance.now();
		await a.query("u1", { after, limit: 50 });
		qLat.push(performance.now() - s);
	}
	setLat.sort((x, y) => x - y);
	qLat.sort((x, y) => x - y);
	return {
		"append/s (256 in flight)": Math.round(pipelined),
		"append/s (one at a time)": Math.round(sequential),
		"kv set p50 ms": pct(setLat, 50).toFixed(3),
		"kv set p99 ms": pct(setLat, 99).toFixed(3),
		"query 50 p50 ms": pct(qLat, 50).toFixed(3),
		"query 50 p99 ms": pct(qLat, 99).toFixed(3),
	};
}

const dir = mkdtempSync(join(tmpdir(), "parley-bench-"));
const schema = `parley_bench_${process.pid}`;
const rows: Record<string, Record<string, string | number>> = {};
try {
	rows.memory = await run(new MemoryBackend());
	const sqlite = new SqliteBackend(join(dir, "bench.sqlite"));
	try {
		rows.sqlite = await run(sqlite);
	} finally {
		await sqlite.close();
	}
	const pgb = new PostgresBackend({ url: PG_URL, schema, connectTimeoutMs: 2000 });
	try {
		await pgb.open();
		rows.postgres = await run(pgb);
	} catch (e) {
		console.error(`postgres skipped: ${(e as Error).message}`);
	} finally {
		await pgb.close();
	}
} finally {
	rmSync(dir, { recursive: true, force: true });
	const c = new pg.Client({ connectionString: PG_URL });
	c.on("error", () => {});
	await c
		.connect()
		.then(() => c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`))
		.catch(() => {})
		.finally(() => c.end().catch(() => {}));
}
console.log(
	`storage bench: ${N} pipelined appends, ${SEQ} sequential, ${QUERIES} kv sets and queries`,
);
if (process.argv.includes("--ipc") && process.send) {
	// Run from bench/run.ts (`npm run bench -- storage`): rows over IPC, exit when told, so that
	// the parent can read this process's CPU time first.
	process.send(rows);
	process.once("message", () => process.exit(0));
} else console.table(rows);
