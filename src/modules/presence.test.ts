/** Unit tests of presence helpers (RFC 6121 §4.7.2.3). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { x } from "../xml/element.ts";
import { presencePriority } from "./presence.ts";

test("RFC 6121 §4.7.2.3: priority is an integer in -128..127, 0 when absent or invalid", () => {
	const p = (v?: string) =>
		presencePriority(x("presence", null, v === undefined ? undefined : x("priority", null, v)));
	assert.equal(p(), 0);
	assert.equal(p("5"), 5);
	assert.equal(p(" -1 "), -1);
	assert.equal(p("300"), 127);
	assert.equal(p("-300"), -128);
	assert.equal(p("high"), 0);
});
