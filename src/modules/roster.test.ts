/** Unit tests of the roster module's pure parts (RFC 6121 §2.1.2). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { hasFrom, hasTo, itemElement } from "./roster.ts";

test("RFC 6121 §2.1.2: item element carries jid, name, subscription, ask, approved, groups", () => {
	const el = itemElement("bob@example.com", {
		name: "Bob",
		groups: ["Friends", "Work"],
		subscription: "none",
		ask: true,
		approved: true,
	});
	assert.equal(
		el.toString(),
		'<item jid="bob@example.com" name="Bob" subscription="none" ask="subscribe" approved="true"><group>Friends</group><group>Work</group></item>',
	);
});

test("RFC 6121 §2.5.2: a removed item is pushed with subscription='remove'", () => {
	assert.equal(itemElement("x@y", null).toString(), '<item jid="x@y" subscription="remove"/>');
});

test("RFC 6121 §2.1.2.5: from/both mean the contact sees the user; to/both the reverse", () => {
	assert.deepEqual(
		(["none", "to", "from", "both"] as const).map((s) => [hasFrom(s), hasTo(s)]),
		[
			[false, false],
			[false, true],
			[true, false],
			[true, true],
		],
	);
});
