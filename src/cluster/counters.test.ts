/**
 * The cluster-wide counters (counters.ts, issue 16) against the local Redis, under a private
 * prefix: the running total `#` stays the sum of the node and unit fields through adds,
 * refusals, releases, a dead node's release and a rewrite; a hash written without `#` is summed
 * once; spent buckets count within their window; an emptied counter's key goes.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Redis } from "ioredis";
import { redisSkip, TEST_REDIS_URL } from "../../test/helpers/services.ts";
import { createSilentLogger } from "../core/log.ts";
import { ClusterCounters } from "./counters.ts";

const PREFIX = `parley-counters-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

describe("cluster-wide counters", { skip: redisSkip }, () => {
	const redis = new Redis(TEST_REDIS_URL, { lazyConnect: true });
	const a = new ClusterCounters({
		pub: redis,
		prefix: PREFIX,
		node: "a",
		log: createSilentLogger(),
	});
	const b = new ClusterCounters({
		pub: redis,
		prefix: PREFIX,
		node: "b",
		log: createSilentLogger(),
	});

	/** The sum of the node and unit fields, checked against `#` (absent when 0). */
	async function summed(name: string): Promise<number> {
		const all = await redis.hgetall(a.key(name));
		let sum = 0;
		for (const [f, v] of Object.entries(all)) if (f !== "#" && !f.startsWith("@")) sum += Number(v);
		assert.equal(all["#"], sum > 0 ? String(sum) : undefined, `# of ${JSON.stringify(all)}`);
		return sum;
	}

	before(() => redis.connect());
	after(async () => {
		const keys = await redis.keys(`${PREFIX}:*`);
		if (keys.length) await redis.del(...keys);
		redis.disconnect();
	});

	test("the running total follows units, shares, refusals, a dead node and a rewrite", async () => {
		const n = "rooms";
		assert.equal(await a.tryAdd(n, 1, 0, { unit: "r1" }), true);
		assert.equal(await b.tryAdd(n, 1, 0, { unit: "r1" }), true, "a unit counted twice counts once");
		assert.equal(await b.tryAdd(n, 1, 0, { unit: "r2" }), true);
		assert.equal(await a.tryAdd(n, 2, 5), true);
		assert.equal(await b.tryAdd(n, 1, 5), true);
		assert.equal(await summed(n), 5);
		assert.deepEqual(await a.tryAdd(n, 1, 5), { total: 5, spent: [] }, "refused at the max");
		assert.equal(await a.total(n), 5);
		await a.release(n, 1);
		await b.release(n, 1, { unit: "r1" });
		assert.equal(await summed(n), 3);
		assert.equal(await b.tryAdd(n, 2, 5), true);
		await a.releaseNode("b"); // the leader, for a dead b: its share (2) goes, its unit stays
		assert.equal(await summed(n), 2);
		assert.equal(await a.total(n), 2);
		await b.releaseNode("a"); // a declared dead (b leading), then back
		assert.equal(await summed(n), 1);
		await a.rewrite();
		assert.equal(await summed(n), 2, "a's share written again, not added");
		await a.rewrite();
		assert.equal(await summed(n), 2);
		await a.release(n, 1);
		await a.release(n, 1, { unit: "r2" });
		assert.equal(await redis.exists(a.key(n)), 0, "an emptied counter goes");
		assert.equal(await a.total(n), 0);
	});

	test("a counter written without `#` is summed once", async () => {
		const n = "old";
		await redis.hset(a.key(n), "=r1", "1", "=r2", "1", "b", "2");
		assert.equal(await a.total(n), 4);
		assert.equal(await redis.hget(a.key(n), "#"), "4");
		assert.deepEqual(await a.tryAdd(n, 1, 4), { total: 4, spent: [] });
		assert.equal(await a.tryAdd(n, 1, 5), true);
		assert.equal(await summed(n), 5);
	});

	test("spent buckets count within their window beside the shares", async () => {
		const n = "bytes";
		const window = { ms: 60_000, bucketMs: 1_000 };
		await a.spend(n, 30, window);
		assert.equal(await b.tryAdd(n, 50, 100, { window }), true);
		const r = await a.tryAdd(n, 30, 100, { window });
		assert.notEqual(r, true);
		if (r === true) return;
		assert.equal(r.total, 80);
		assert.deepEqual(
			r.spent.map((s) => s.amount),
			[30],
		);
		assert.equal(await summed(n), 50, "spending is not in `#`");
		// A bucket past its window is dropped by the next check.
		await redis.hset(a.key(n), `@${Math.floor((Date.now() - 120_000) / 1_000)}`, "1000");
		assert.equal(await a.total(n, window), 80);
		await b.release(n, 50, { window });
		assert.equal(await a.total(n, window), 30);
		assert.equal(await summed(n), 0);
	});
});
