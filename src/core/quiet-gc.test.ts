import assert from "node:assert/strict";
import { test } from "node:test";
import { QuietGc } from "./quiet-gc.ts";

test("collects once many streams ended and few opened since the last look, not while busy", () => {
	const q = new QuietGc({ intervalMs: 60_000, minEnded: 3, maxOpenedWhileQuiet: 1 });
	q.ended();
	q.ended();
	q.check();
	assert.equal(q.runs, 0, "too few ended");
	q.ended();
	for (let i = 0; i < 5; i++) q.opened();
	q.check();
	assert.equal(q.runs, 0, "still busy: streams keep opening");
	q.check();
	assert.equal(q.runs, 1, "quiet now, with 3 ended");
	q.check();
	assert.equal(q.runs, 1, "nothing ended since");
});
