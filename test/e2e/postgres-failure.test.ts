/**
 * Issue 4, failure: PostgreSQL stopped and started under load. Calls reject while it is down
 * (never a crash, never a hang past the connect timeout), nothing acknowledged is lost, and the
 * pool reconnects by itself once the database is back.
 *
 * The shared PostgreSQL on 5432 is not touched: the test runs a private cluster (initdb + pg_ctl)
 * in a temporary directory on a free port, and skips when the binaries are missing.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { PostgresBackend } from "../../src/storage/postgres.ts";
import { type PgCluster, pgClusterSkip, startPgCluster } from "../helpers/pg-cluster.ts";

// A timeout: a broken pool hangs rather than fails, and a hung test would stall the whole run.
describe("PostgreSQL stopped and restarted under load (issue 4)", {
	skip: pgClusterSkip,
	timeout: 60_000,
}, () => {
	let pg: PgCluster | undefined;

	before(async () => {
		pg = await startPgCluster("parley-pgfail-");
	});

	after(() => {
		pg?.destroy();
	});

	test("calls reject while down, nothing acknowledged is lost, the pool reconnects", async () => {
		const errors: Error[] = [];
		const cluster = pg as PgCluster;
		const b = new PostgresBackend({
			url: cluster.url,
			connectTimeoutMs: 1000,
			queryTimeoutMs: 5000,
			poolSize: 4,
			onError: (e) => errors.push(e),
		});
		try {
			const a = b.archive("a.example", "offline");
			const kv = b.keyval("a.example", "roster");
			await kv.set("alice", "before");
			// Several pooled connections, idle when the database goes away: their 'error' events
			// must be handled, or the process would die of an uncaught error.
			await Promise.all(Array.from({ length: 4 }, () => kv.get("alice")));

			// Load: writes keep coming while the database stops and starts again.
			const acked: string[] = [];
			const failed: unknown[] = [];
			let n = 0;
			let running = true;
			const writer = async () => {
				while (running) {
					const id = `m${n++}`;
					try {
						await a.append("alice", { id, value: id });
						acked.push(id);
					} catch (e) {
						failed.push(e);
						await new Promise((r) => setTimeout(r, 20));
					}
				}
			};
			const writers = Array.from({ length: 8 }, writer);
			await new Promise((r) => setTimeout(r, 200));
			cluster.stop();

			// Down: reads and writes reject with an error; the process is still here.
			await assert.rejects(kv.get("alice"));
			await assert.rejects(kv.set("alice", "during"));
			const failedWhileDown = failed.length;

			cluster.start();
			// Back: the pool opens new connections by itself.
			let back = false;
			for (let i = 0; i < 100 && !back; i++) {
				back = await kv.get("alice").then(
					(v) => v === "before",
					() => false,
				);
				if (!back) await new Promise((r) => setTimeout(r, 100));
			}
			assert.ok(back, "storage works again once PostgreSQL is back");
			const ackedBeforeStop = acked.length;
			await new Promise((r) => setTimeout(r, 200));
			running = false;
			await Promise.all(writers);

			assert.ok(failedWhileDown > 0, "writes failed while the database was down");
			assert.ok(errors.length > 0, "idle connections reported their loss through onError");
			assert.ok(acked.length > ackedBeforeStop, "writes succeed again after the restart");
			// Every acknowledged write is stored.
			const stored = new Set((await a.query("alice")).items.map((i) => i.id));
			const lost = acked.filter((id) => !stored.has(id));
			assert.deepEqual(lost, [], "no acknowledged write is lost");
			await kv.set("alice", "after");
			assert.equal(await kv.get("alice"), "after");
		} finally {
			await b.close();
		}
	});
});
