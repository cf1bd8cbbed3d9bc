import assert from "node:assert/strict";
import { test } from "node:test";
import { x } from "../../xml/element.ts";
import { PreparedStanza } from "../../xml/prepared.ts";
import { entryChars, type HistoryEntry, parseHistoryRequest, selectHistory } from "./history.ts";

const entries: HistoryEntry[] = [1, 2, 3, 4, 5].map((i) => {
	const stanza = new PreparedStanza(
		x("message", { from: "r@m/n", type: "groupchat" }, x("body", null, `m${i}`)),
	);
	return { stanza, when: i * 1000, chars: entryChars(stanza) };
});
const bodies = (es: HistoryEntry[]) =>
	es.map((e) => (e.stanza.children[0] as { text(): string }).text());

test("XEP-0045 §7.2.15: without limits the room's default number of messages", () => {
	assert.deepEqual(bodies(selectHistory(entries, {}, 3, 10_000, 10)), ["m3", "m4", "m5"]);
	assert.deepEqual(bodies(selectHistory(entries, {}, 20, 10_000, 10)), [
		"m1",
		"m2",
		"m3",
		"m4",
		"m5",
	]);
});

test("§7.2.15: maxstanzas, maxchars, seconds and since all apply at once", () => {
	assert.deepEqual(bodies(selectHistory(entries, { maxstanzas: 2 }, 20, 10_000, 10)), ["m4", "m5"]);
	assert.deepEqual(selectHistory(entries, { maxstanzas: 0 }, 20, 10_000, 10), []);
	assert.deepEqual(selectHistory(entries, { maxchars: 0 }, 20, 10_000, 10), []);
	const one = (entries[4] as HistoryEntry).chars + 10;
	assert.deepEqual(bodies(selectHistory(entries, { maxchars: one }, 20, 10_000, 10)), ["m5"]);
	assert.deepEqual(bodies(selectHistory(entries, { maxchars: one * 2 }, 20, 10_000, 10)), [
		"m4",
		"m5",
	]);
	// seconds: only what is newer than now - seconds.
	assert.deepEqual(bodies(selectHistory(entries, { seconds: 2 }, 20, 6_000, 10)), ["m4", "m5"]);
	assert.deepEqual(bodies(selectHistory(entries, { since: 3_000 }, 20, 10_000, 10)), [
		"m3",
		"m4",
		"m5",
	]);
	assert.deepEqual(
		bodies(selectHistory(entries, { since: 1_000, maxstanzas: 1 }, 20, 10_000, 10)),
		["m5"],
	);
});

test("§7.2.15: the <history/> attributes; nonsense values are ignored", () => {
	assert.deepEqual(parseHistoryRequest(undefined), {});
	assert.deepEqual(
		parseHistoryRequest(
			x("history", {
				maxchars: "100",
				maxstanzas: "5",
				seconds: "60",
				since: "1970-01-01T00:00:10Z",
			}),
		),
		{ maxchars: 100, maxstanzas: 5, seconds: 60, since: 10_000 },
	);
	assert.deepEqual(
		parseHistoryRequest(x("history", { maxstanzas: "-1", maxchars: "x", since: "soon" })),
		{},
	);
});
