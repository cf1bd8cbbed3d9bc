import assert from "node:assert/strict";
import { test } from "node:test";
import { RateLimiter } from "./rate.ts";

test("a burst, then one token per 1/rate seconds; keys are independent", () => {
	const r = new RateLimiter({ rate: 2, burst: 3 });
	const t = 1_000_000;
	assert.deepEqual(
		[1, 2, 3, 4].map(() => r.take("a", t)),
		[true, true, true, false],
	);
	assert.equal(r.take("b", t), true, "another key has its own bucket");
	assert.equal(r.take("a", t + 499), false, "not yet half a second");
	assert.equal(r.take("a", t + 500), true, "rate 2/s: one token after 500 ms");
	assert.equal(r.take("a", t + 500), false);
});

test("sweep forgets full buckets; maxKeys drops the oldest key", () => {
	const r = new RateLimiter({ rate: 1, burst: 2, maxKeys: 2 });
	r.take("a", 0);
	r.take("b", 0);
	r.take("c", 0);
	assert.equal(r.size, 2);
	r.sweep(10_000);
	assert.equal(r.size, 0);
});
