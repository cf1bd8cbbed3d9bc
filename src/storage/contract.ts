/**
 * The storage contract as node:test tests. Every backend's test file calls
 * `storageContract(name, make)`; `make` must return a fresh, empty backend each time.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ArchiveItem, ArchiveQuery, ArchiveStore, Json, StorageBackend } from "./types.ts";

const T = 1_700_000_000_000;

async function ids(a: ArchiveStore, user = "alice", q: ArchiveQuery = {}): Promise<string[]> {
	return (await a.query(user, q)).items.map((i) => i.id);
}

/** Appends items with ids m0..m(n-1), one second apart, alternating two peers. */
async function fill(a: ArchiveStore, user: string, n: number): Promise<string[]> {
	const out: string[] = [];
	for (let i = 0; i < n; i++) {
		out.push(
			await a.append(user, {
				id: `m${i}`,
				when: T + i * 1000,
				with: i % 2 === 0 ? "even@x" : "odd@x",
				value: { n: i },
			}),
		);
	}
	return out;
}

const VALUES: Json[] = [
	null,
	true,
	false,
	0,
	-1.5,
	Number.MAX_SAFE_INTEGER,
	"",
	"plain",
	"unicode: héllo wörld 日本語 🎉👩‍👩‍👧 \u0000 \u2028 \"quotes\" 'single' \\ back",
	[],
	{},
	[1, "two", [3, [4, { five: 5 }]], null],
	{
		nested: {
			deeper: { deepest: [true, false, null, { "key with spaces / and 'quotes'": "ok" }] },
		},
		"": "empty key",
		"🔑": "emoji key",
	},
	"x".repeat(1_000_000),
];

export function storageContract(
	name: string,
	make: () => Promise<StorageBackend> | StorageBackend,
): void {
	/** Runs `fn` against a fresh backend and closes it afterwards. */
	const withBackend = (fn: (b: StorageBackend) => Promise<void>) => async () => {
		const b = await make();
		try {
			await fn(b);
		} finally {
			await b.close();
		}
	};

	describe(`storage contract: ${name}`, () => {
		describe("keyval", () => {
			test(
				"get, set, overwrite, delete",
				withBackend(async (b) => {
					const kv = b.keyval("a.example", "roster");
					assert.equal(await kv.get("alice"), undefined);
					await kv.set("alice", { v: 1 });
					assert.deepEqual(await kv.get("alice"), { v: 1 });
					await kv.set("alice", { v: 2 });
					assert.deepEqual(await kv.get("alice"), { v: 2 });
					await kv.set("alice", null);
					assert.equal(await kv.get("alice"), null, "null is a value, not a deletion");
					await kv.set("alice", undefined);
					assert.equal(await kv.get("alice"), undefined);
					await kv.set("nobody", undefined); // deleting a missing value is fine
					assert.deepEqual(await kv.users(), []);
				}),
			);

			test(
				"getPath reads one member of a value, by object member names",
				withBackend(async (b) => {
					const kv = b.keyval("a.example", "roster");
					assert.equal(await kv.getPath("alice", ["items"]), undefined, "no value");
					const odd = ['q"uote', "back\\slash", "a.b", "[0]", "$", "", "ü\n\u0001", "😀"];
					await kv.set("alice", {
						ver: 3,
						items: {
							"bob@b.example": { subscription: "both", groups: ["g"] },
							...Object.fromEntries(odd.map((k, i) => [k, i])),
						},
						nul: null,
						str: "text",
						list: [10, { x: 1 }],
						obj: { 0: "zero" },
					});
					assert.deepEqual(await kv.getPath("alice", ["items", "bob@b.example"]), {
						subscription: "both",
						groups: ["g"],
					});
					assert.equal(await kv.getPath("alice", ["ver"]), 3);
					assert.equal(await kv.getPath("alice", ["str"]), "text");
					assert.equal(await kv.getPath("alice", ["nul"]), null, "a stored null is a value");
					assert.deepEqual(await kv.getPath("alice", ["list"]), [10, { x: 1 }]);
					assert.equal(await kv.getPath("alice", ["obj", "0"]), "zero");
					// Any member name is taken literally, whatever JSON path syntax it resembles.
					for (const [i, k] of odd.entries()) {
						assert.equal(await kv.getPath("alice", ["items", k]), i, JSON.stringify(k));
					}
					const missing = [
						["items", "carol@b.example"],
						["nothing"],
						["str", "0"], // into a string
						["list", "0"], // arrays are not indexed
						["nul", "x"],
						["items", "bob@b.example", "subscription", "x"],
					];
					for (const p of missing) {
						assert.equal(await kv.getPath("alice", p), undefined, JSON.stringify(p));
					}
					assert.deepEqual(await kv.getPath("alice", []), await kv.get("alice"));
					assert.equal(await kv.getPath("bob", ["items"]), undefined, "other user");
					assert.equal(await b.keyval("b.example", "roster").getPath("alice", ["ver"]), undefined);
					// What comes back is a copy: changing it does not change the stored value.
					const item = (await kv.getPath("alice", ["items", "bob@b.example"])) as {
						groups: string[];
					};
					item.groups.push("changed");
					assert.deepEqual(await kv.getPath("alice", ["items", "bob@b.example", "groups"]), ["g"]);
					await kv.set("alice", { items: {} });
					assert.equal(await kv.getPath("alice", ["items", "bob@b.example"]), undefined);
					// A lone surrogate is valid in JavaScript strings (and so in stored JSON), not in
					// every database's JSON type.
					await kv.set("carol", { items: { "lone\ud800": 1, other: { n: 2 } } });
					assert.equal(await kv.getPath("carol", ["items", "lone\ud800"]), 1);
					assert.deepEqual(await kv.getPath("carol", ["items", "other"]), { n: 2 });
					assert.equal(await kv.getPath("carol", ["items", "none"]), undefined);
				}),
			);

			test(
				"users() lists users with a value, sorted",
				withBackend(async (b) => {
					const kv = b.keyval("a.example", "vcard");
					for (const u of ["zed", "alice", "Bob", "", "ålice", "carol"]) await kv.set(u, u);
					await kv.set("carol", undefined);
					assert.deepEqual(await kv.users(), ["", "Bob", "alice", "zed", "ålice"]);
					// the same store on another host and another store on this host are separate
					assert.deepEqual(await b.keyval("b.example", "vcard").users(), []);
					assert.deepEqual(await b.keyval("a.example", "roster").users(), []);
				}),
			);

			test(
				"hosts and stores are isolated",
				withBackend(async (b) => {
					await b.keyval("a.example", "s").set("u", "a/s");
					await b.keyval("b.example", "s").set("u", "b/s");
					await b.keyval("a.example", "t").set("u", "a/t");
					await b.map("a.example", "s").set("u", "k", "map");
					assert.equal(await b.keyval("a.example", "s").get("u"), "a/s");
					assert.equal(await b.keyval("b.example", "s").get("u"), "b/s");
					assert.equal(await b.keyval("a.example", "t").get("u"), "a/t");
					assert.equal(await b.keyval("b.example", "t").get("u"), undefined);
					await b.keyval("a.example", "s").set("u", undefined);
					assert.equal(await b.keyval("b.example", "s").get("u"), "b/s");
					assert.equal(await b.keyval("a.example", "t").get("u"), "a/t");
					assert.equal(await b.map("a.example", "s").get("u", "k"), "map");
				}),
			);

			test(
				"store handles are views: two handles on one store see the same data",
				withBackend(async (b) => {
					await b.keyval("a.example", "s").set("u", 1);
					assert.equal(await b.keyval("a.example", "s").get("u"), 1);
				}),
			);
		});

		describe("map", () => {
			test(
				"get, set, overwrite, delete a key",
				withBackend(async (b) => {
					const m = b.map("a.example", "pubsub");
					assert.equal(await m.get("alice", "k"), undefined);
					await m.set("alice", "k", [1, 2]);
					await m.set("alice", "k2", "v2");
					assert.deepEqual(await m.get("alice", "k"), [1, 2]);
					await m.set("alice", "k", { replaced: true });
					assert.deepEqual(await m.get("alice", "k"), { replaced: true });
					await m.set("alice", "k", undefined);
					assert.equal(await m.get("alice", "k"), undefined);
					assert.equal(await m.get("alice", "k2"), "v2");
					await m.set("alice", "missing", undefined);
				}),
			);

			test(
				"getAll returns the user's keys, sorted; deleteAll clears only that user",
				withBackend(async (b) => {
					const m = b.map("a.example", "blocklist");
					assert.deepEqual(await m.getAll("alice"), new Map());
					await m.set("alice", "zz@x", true);
					await m.set("alice", "aa@x", { n: 1 });
					await m.set("alice", "mm@x", null);
					await m.set("bob", "bb@x", 2);
					await b.map("b.example", "blocklist").set("alice", "other@x", 3);
					await b.map("a.example", "other").set("alice", "other@x", 4);
					const all = await m.getAll("alice");
					assert.deepEqual([...all.keys()], ["aa@x", "mm@x", "zz@x"]);
					assert.deepEqual(
						all,
						new Map<string, Json>([
							["aa@x", { n: 1 }],
							["mm@x", null],
							["zz@x", true],
						]),
					);
					await m.deleteAll("alice");
					assert.deepEqual(await m.getAll("alice"), new Map());
					assert.equal(await m.get("alice", "aa@x"), undefined);
					assert.deepEqual(await m.getAll("bob"), new Map([["bb@x", 2]]));
					assert.equal(await b.map("b.example", "blocklist").get("alice", "other@x"), 3);
					assert.equal(await b.map("a.example", "other").get("alice", "other@x"), 4);
					await m.deleteAll("nobody");
				}),
			);
		});

		describe("archive", () => {
			test(
				"append: generated ids are unique and URL-safe, given ids are kept",
				withBackend(async (b) => {
					const a = b.archive("a.example", "mam");
					const got = new Set<string>();
					for (let i = 0; i < 200; i++) {
						const id = await a.append("alice", { value: i });
						assert.match(id, /^[A-Za-z0-9_-]+$/);
						got.add(id);
					}
					assert.equal(got.size, 200);
					assert.equal(await a.append("alice", { id: "given-1", value: "x" }), "given-1");
					const page = await a.query("alice", { after: "given-1" });
					assert.deepEqual(page, { items: [], complete: true });
				}),
			);

			test(
				"append: defaults are with '' and when = now",
				withBackend(async (b) => {
					const a = b.archive("a.example", "mam");
					const t0 = Date.now();
					const id = await a.append("alice", { value: "v" });
					const t1 = Date.now();
					const [item, ...rest] = (await a.query("alice")).items;
					assert.equal(rest.length, 0);
					assert.ok(item);
					assert.equal(item.id, id);
					assert.equal(item.with, "");
					assert.ok(item.when >= t0 && item.when <= t1, `when ${item.when} in [${t0}, ${t1}]`);
				}),
			);

			test(
				"append: a duplicate id in the same store is refused with code conflict",
				withBackend(async (b) => {
					const a = b.archive("a.example", "mam");
					await a.append("alice", { id: "dup", value: 1 });
					await assert.rejects(a.append("alice", { id: "dup", value: 2 }), { code: "conflict" });
					await assert.rejects(a.append("bob", { id: "dup", value: 3 }), { code: "conflict" });
					// other stores and hosts have their own ids
					await b.archive("a.example", "offline").append("alice", { id: "dup", value: 4 });
					await b.archive("b.example", "mam").append("alice", { id: "dup", value: 5 });
					const items = (await a.query("alice")).items;
					assert.deepEqual(
						items.map((i) => i.value),
						[1],
					);
					assert.equal(await a.count("bob"), 0);
				}),
			);

			test(
				"query returns items in chronological order, ties in insertion order",
				withBackend(async (b) => {
					const a = b.archive("a.example", "mam");
					await a.append("alice", { id: "late", when: T + 5000, value: 1 });
					await a.append("alice", { id: "early", when: T + 1000, value: 2 });
					await a.append("alice", { id: "tie1", when: T + 3000, value: 3 });
					await a.append("alice", { id: "tie2", when: T + 3000, value: 4 });
					await a.append("alice", { id: "tie3", when: T + 3000, value: 5 });
					await a.append("alice", { id: "last", when: T + 5000, value: 6 });
					const expected = ["early", "tie1", "tie2", "tie3", "late", "last"];
					assert.deepEqual(await ids(a), expected);
					assert.deepEqual(await ids(a, "alice", { reverse: true }), expected);
					// paging through ties is stable
					assert.deepEqual(await ids(a, "alice", { after: "tie1", limit: 2 }), ["tie2", "tie3"]);
					assert.deepEqual(await ids(a, "alice", { before: "tie3", limit: 2 }), ["tie1", "tie2"]);
					assert.deepEqual(await ids(a, "alice", { after: "late" }), ["last"]);
					const [first] = (await a.query("alice", { limit: 1 })).items;
					assert.deepEqual(first, { id: "early", when: T + 1000, with: "", value: 2 });
				}),
			);

			test(
				"query filters by with and by inclusive time range",
				withBackend(async (b) => {
					const a = b.archive("a.example", "mam");
					await fill(a, "alice", 10);
					assert.deepEqual(await ids(a, "alice", { with: "even@x" }), [
						"m0",
						"m2",
						"m4",
						"m6",
						"m8",
					]);
					assert.deepEqual(await ids(a, "alice", { with: "nobody@x" }), []);
					assert.deepEqual(await ids(a, "alice", { start: T + 7000 }), ["m7", "m8", "m9"]);
					assert.deepEqual(await ids(a, "alice", { end: T + 2000 }), ["m0", "m1", "m2"]);
					assert.deepEqual(await ids(a, "alice", { start: T + 3000, end: T + 6000 }), [
						"m3",
						"m4",
						"m5",
						"m6",
					]);
					assert.deepEqual(
						await ids(a, "alice", { with: "odd@x", start: T + 3000, end: T + 6000 }),
						["m3", "m5"],
					);
					assert.deepEqual(await ids(a, "alice", { start: T + 6000, end: T + 5000 }), []);
				}),
			);

			test(
				"limit and complete",
				withBackend(async (b) => {
					const a = b.archive("a.example", "mam");
					await fill(a, "alice", 5);
					assert.deepEqual(await a.query("alice", { limit: 2 }).then((p) => p.complete), false);
					assert.deepEqual(await ids(a, "alice", { limit: 2 }), ["m0", "m1"]);
					assert.equal((await a.query("alice", { limit: 5 })).complete, true);
					assert.equal((await a.query("alice", { limit: 6 })).complete, true);
					assert.equal((await a.query("alice")).complete, true);
					assert.equal((await a.query("alice", { reverse: true })).complete, true);
					const zero = await a.query("alice", { limit: 0 });
					assert.deepEqual(zero, { items: [], complete: false });
					assert.deepEqual(await a.query("nobody", { limit: 0 }), { items: [], complete: true });
					assert.deepEqual(await a.query("nobody", { limit: 3 }), { items: [], complete: true });
					await assert.rejects(a.query("alice", { limit: -1 }), RangeError);
					await assert.rejects(a.query("alice", { limit: 1.5 }), RangeError);
				}),
			);

			test(
				"paging forwards with after until complete",
				withBackend(async (b) => {
					const a = b.archive("a.example", "mam");
					const all = await fill(a, "alice", 10);
					for (const limit of [1, 3, 5, 10]) {
						const seen: string[] = [];
						let after: string | undefined;
						let pages = 0;
						for (;;) {
							const page = await a.query("alice", { limit, ...(after ? { after } : {}) });
							pages++;
							assert.ok(page.items.length <= limit);
							seen.push(...page.items.map((i) => i.id));
							if (page.complete) break;
							assert.equal(page.items.length, limit);
							after = page.items.at(-1)?.id;
							assert.ok(pages < 20, "paging does not end");
						}
						assert.deepEqual(seen, all, `limit ${limit}`);
						assert.equal(pages, Math.ceil(10 / limit), `limit ${limit}: no empty last page`);
					}
				}),
			);

			test(
				"paging backwards (reverse, then before) until complete; pages are chronological",
				withBackend(async (b) => {
					const a = b.archive("a.example", "mam");
					const all = await fill(a, "alice", 10);
					const first = await a.query("alice", { reverse: true, limit: 3 });
					assert.deepEqual(
						first.items.map((i) => i.id),
						["m7", "m8", "m9"],
					);
					assert.equal(first.complete, false);
					const pages: string[][] = [first.items.map((i) => i.id)];
					let before = first.items[0]?.id;
					while (before !== undefined) {
						const page = await a.query("alice", { before, limit: 3 });
						pages.push(page.items.map((i) => i.id));
						if (page.complete) break;
						before = page.items[0]?.id;
						assert.ok(pages.length < 20, "paging does not end");
					}
					assert.deepEqual(pages, [
						["m7", "m8", "m9"],
						["m4", "m5", "m6"],
						["m1", "m2", "m3"],
						["m0"],
					]);
					assert.deepEqual(pages.reverse().flat(), all);
					// reverse: true with before is the same walk
					assert.deepEqual(await ids(a, "alice", { before: "m4", reverse: true, limit: 2 }), [
						"m2",
						"m3",
					]);
				}),
			);

			test(
				"after and before together bound a range; reverse picks its newest end",
				withBackend(async (b) => {
					const a = b.archive("a.example", "mam");
					await fill(a, "alice", 10);
					assert.deepEqual(await ids(a, "alice", { after: "m2", before: "m7" }), [
						"m3",
						"m4",
						"m5",
						"m6",
					]);
					const fwd = await a.query("alice", { after: "m2", before: "m7", limit: 2 });
					assert.deepEqual(
						fwd.items.map((i) => i.id),
						["m3", "m4"],
					);
					assert.equal(fwd.complete, false);
					const back = await a.query("alice", {
						after: "m2",
						before: "m7",
						limit: 2,
						reverse: true,
					});
					assert.deepEqual(
						back.items.map((i) => i.id),
						["m5", "m6"],
					);
					assert.equal(back.complete, false);
					const all = await a.query("alice", { after: "m2", before: "m7", limit: 4 });
					assert.equal(all.complete, true);
					assert.deepEqual(await ids(a, "alice", { after: "m2", reverse: true, limit: 3 }), [
						"m7",
						"m8",
						"m9",
					]);
					assert.deepEqual(await ids(a, "alice", { after: "m9" }), []);
					assert.deepEqual(await ids(a, "alice", { before: "m0" }), []);
				}),
			);

			test(
				"paging combines with filters",
				withBackend(async (b) => {
					const a = b.archive("a.example", "mam");
					await fill(a, "alice", 10);
					const p1 = await a.query("alice", { with: "odd@x", limit: 2 });
					assert.deepEqual(
						p1.items.map((i) => i.id),
						["m1", "m3"],
					);
					assert.equal(p1.complete, false);
					const p2 = await a.query("alice", { with: "odd@x", limit: 2, after: "m3" });
					assert.deepEqual(
						p2.items.map((i) => i.id),
						["m5", "m7"],
					);
					const p3 = await a.query("alice", { with: "odd@x", limit: 2, after: "m7" });
					assert.deepEqual(p3, {
						items: [{ id: "m9", when: T + 9000, with: "odd@x", value: { n: 9 } }],
						complete: true,
					});
					// the anchor need not match the filter
					assert.deepEqual(await ids(a, "alice", { with: "even@x", after: "m3", limit: 2 }), [
						"m4",
						"m6",
					]);
					assert.deepEqual(
						await ids(a, "alice", { start: T + 2000, end: T + 8000, before: "m6", limit: 2 }),
						["m4", "m5"],
					);
					const last = await a.query("alice", { start: T + 2000, before: "m4", limit: 2 });
					assert.deepEqual(
						last.items.map((i) => i.id),
						["m2", "m3"],
					);
					assert.equal(last.complete, true);
				}),
			);

			test(
				"unknown after/before ids reject with code item-not-found",
				withBackend(async (b) => {
					const a = b.archive("a.example", "mam");
					await fill(a, "alice", 3);
					await a.append("bob", { id: "bobs", value: 1 });
					await b.archive("a.example", "other").append("alice", { id: "elsewhere", value: 1 });
					for (const id of ["nope", "bobs", "elsewhere"]) {
						await assert.rejects(a.query("alice", { after: id }), { code: "item-not-found" });
						await assert.rejects(a.query("alice", { before: id }), { code: "item-not-found" });
						await assert.rejects(a.query("alice", { after: "m0", before: id, limit: 1 }), {
							code: "item-not-found",
						});
					}
					await a.delete("alice", { ids: ["m1"] });
					await assert.rejects(a.query("alice", { after: "m1" }), { code: "item-not-found" });
				}),
			);

			test(
				"count",
				withBackend(async (b) => {
					const a = b.archive("a.example", "mam");
					assert.equal(await a.count("alice"), 0);
					await fill(a, "alice", 10);
					await fill(b.archive("b.example", "mam"), "alice", 4);
					await a.append("bob", { value: 1 });
					assert.equal(await a.count("alice"), 10);
					assert.equal(await a.count("alice", {}), 10);
					assert.equal(await a.count("alice", { with: "odd@x" }), 5);
					assert.equal(await a.count("alice", { start: T + 8000 }), 2);
					assert.equal(await a.count("alice", { end: T + 8000 }), 9);
					assert.equal(
						await a.count("alice", { with: "even@x", start: T + 1000, end: T + 4000 }),
						2,
					);
					assert.equal(await a.count("bob"), 1);
				}),
			);

			test(
				"delete by with, by time, by ids, everything",
				withBackend(async (b) => {
					const a = b.archive("a.example", "mam");
					await fill(a, "alice", 10);
					await a.append("bob", { id: "b1", value: 1 });
					assert.equal(await a.delete("alice", { with: "even@x", start: T + 4000 }), 3); // m4 m6 m8
					assert.deepEqual(await ids(a), ["m0", "m1", "m2", "m3", "m5", "m7", "m9"]);
					assert.equal(await a.delete("alice", { end: T + 1000 }), 2); // m0 m1
					assert.deepEqual(await ids(a), ["m2", "m3", "m5", "m7", "m9"]);
					assert.equal(await a.delete("alice", { ids: ["m3", "m9", "nope", "b1"] }), 2);
					assert.deepEqual(await ids(a), ["m2", "m5", "m7"]);
					assert.equal(await a.delete("alice", { ids: [] }), 0);
					assert.equal(await a.delete("alice", { ids: ["m2", "m5"], with: "odd@x" }), 1);
					assert.deepEqual(await ids(a), ["m2", "m7"]);
					assert.equal(await a.delete("alice"), 2);
					assert.deepEqual(await a.query("alice"), { items: [], complete: true });
					assert.equal(await a.delete("alice"), 0);
					assert.deepEqual(await ids(a, "bob"), ["b1"]);
					// a deleted id can be used again
					await a.append("alice", { id: "m3", value: "again" });
					assert.deepEqual(await ids(a), ["m3"]);
				}),
			);

			test(
				"users and hosts are isolated",
				withBackend(async (b) => {
					const a = b.archive("a.example", "mam");
					await a.append("alice", { id: "a1", value: "alice's" });
					await a.append("bob", { id: "b1", value: "bob's" });
					await b.archive("b.example", "mam").append("alice", { id: "x1", value: "other host" });
					assert.deepEqual(await ids(a, "alice"), ["a1"]);
					assert.deepEqual(await ids(a, "bob"), ["b1"]);
					assert.deepEqual(await ids(b.archive("b.example", "mam"), "alice"), ["x1"]);
					assert.deepEqual(await ids(b.archive("a.example", "offline"), "alice"), []);
					assert.equal(await a.delete("alice"), 1);
					assert.deepEqual(await ids(a, "bob"), ["b1"]);
					assert.deepEqual(await ids(b.archive("b.example", "mam"), "alice"), ["x1"]);
				}),
			);
		});

		test(
			"deleteUser removes the user's data in every store of that host only",
			withBackend(async (b) => {
				for (const host of ["a.example", "b.example"]) {
					for (const user of ["alice", "bob"]) {
						for (const store of ["s1", "s2"]) {
							await b.keyval(host, store).set(user, `${host}/${store}/${user}`);
							await b.map(host, store).set(user, "k", `${host}/${store}/${user}`);
							await b.archive(host, store).append(user, {
								id: `${store}-${user}`,
								value: `${host}/${store}/${user}`,
							});
						}
					}
				}
				await b.deleteUser("a.example", "alice");
				for (const store of ["s1", "s2"]) {
					assert.equal(await b.keyval("a.example", store).get("alice"), undefined);
					assert.deepEqual(await b.keyval("a.example", store).users(), ["bob"]);
					assert.deepEqual(await b.map("a.example", store).getAll("alice"), new Map());
					assert.equal(await b.archive("a.example", store).count("alice"), 0);
					assert.equal(await b.keyval("a.example", store).get("bob"), `a.example/${store}/bob`);
					assert.equal(await b.map("a.example", store).get("bob", "k"), `a.example/${store}/bob`);
					assert.equal(await b.archive("a.example", store).count("bob"), 1);
					assert.deepEqual(await b.keyval("b.example", store).users(), ["alice", "bob"]);
					assert.equal(
						await b.map("b.example", store).get("alice", "k"),
						`b.example/${store}/alice`,
					);
					assert.equal(await b.archive("b.example", store).count("alice"), 1);
				}
				// the user's archive ids are free again
				await b.archive("a.example", "s1").append("alice", { id: "s1-alice", value: "new" });
				await b.deleteUser("a.example", "nobody");
				await b.deleteUser("nowhere.example", "alice");
			}),
		);

		test(
			"values round-trip unchanged in every store kind",
			withBackend(async (b) => {
				const kv = b.keyval("a.example", "rt");
				const m = b.map("a.example", "rt");
				const a = b.archive("a.example", "rt");
				for (const [i, v] of VALUES.entries()) {
					await kv.set(`u${i}`, v);
					await m.set("u", `k${i}`, v);
					await a.append("u", { id: `i${i}`, when: T + i, value: v, with: "wïth 🎉@x" });
				}
				const all = await m.getAll("u");
				const items = (await a.query("u")).items;
				for (const [i, v] of VALUES.entries()) {
					assert.deepEqual(await kv.get(`u${i}`), v, `keyval value ${i}`);
					assert.deepEqual(await m.get("u", `k${i}`), v, `map value ${i}`);
					assert.deepEqual(all.get(`k${i}`), v, `map getAll value ${i}`);
					assert.deepEqual(
						items[i],
						{ id: `i${i}`, when: T + i, with: "wïth 🎉@x", value: v },
						`archive value ${i}`,
					);
				}
				// unicode in users, keys, stores and hosts
				await b.keyval("hôst.example", "störe").set("üser 🎉", 1);
				assert.deepEqual(await b.keyval("hôst.example", "störe").users(), ["üser 🎉"]);
				await b.map("hôst.example", "störe").set("üser", "kéy 🎉", 2);
				assert.deepEqual(
					await b.map("hôst.example", "störe").getAll("üser"),
					new Map([["kéy 🎉", 2]]),
				);
			}),
		);

		test(
			"concurrent writes: each settles on its own, and reads see earlier unawaited writes",
			withBackend(async (b) => {
				const a = b.archive("a.example", "mam");
				const kv = b.keyval("a.example", "s");
				await a.append("alice", { id: "taken", value: 0, when: T });
				const writes = [];
				for (let i = 0; i < 50; i++) {
					writes.push(a.append("alice", { id: `c${i}`, value: i, when: T + 1 + i }));
					if (i === 25) writes.push(a.append("alice", { id: "taken", value: "dup" }));
				}
				const settled = await Promise.allSettled(writes);
				const rejected = settled.flatMap((r) => (r.status === "rejected" ? [r.reason] : []));
				assert.equal(rejected.length, 1);
				assert.equal((rejected[0] as { code?: unknown }).code, "conflict");
				assert.equal(await a.count("alice"), 51);
				const values = (await a.query("alice")).items.map((i) => i.value);
				assert.deepEqual(values, [0, ...Array.from({ length: 50 }, (_, i) => i)]);

				// not awaited on purpose: the read must still see them
				const w1 = kv.set("u", "first");
				const w2 = b.map("a.example", "s").set("u", "k", "v");
				const w3 = a.append("bob", { id: "b1", value: 1 });
				assert.equal(await kv.get("u"), "first");
				assert.equal(await b.map("a.example", "s").get("u", "k"), "v");
				assert.deepEqual(await a.query("bob", { after: "b1" }), { items: [], complete: true });
				const w4 = kv.set("u", "second");
				const w5 = b.deleteUser("a.example", "bob");
				assert.equal(await kv.get("u"), "second");
				assert.equal(await a.count("bob"), 0);
				await Promise.all([w1, w2, w3, w4, w5]);
			}),
		);

		test(
			"stored values are copies: callers cannot mutate stored state",
			withBackend(async (b) => {
				const kv = b.keyval("a.example", "c");
				const m = b.map("a.example", "c");
				const a = b.archive("a.example", "c");
				const v = { list: [1, 2], inner: { x: 1 } };
				await kv.set("u", v);
				await m.set("u", "k", v);
				await a.append("u", { id: "i", value: v });
				v.list.push(3);
				v.inner.x = 2;
				const fresh = { list: [1, 2], inner: { x: 1 } };
				const got = (await kv.get("u")) as typeof v;
				assert.deepEqual(got, fresh);
				got.list.push(4);
				assert.deepEqual(await kv.get("u"), fresh);
				const mgot = (await m.get("u", "k")) as typeof v;
				assert.deepEqual(mgot, fresh);
				mgot.inner.x = 5;
				((await m.getAll("u")).get("k") as typeof v).inner.x = 6;
				assert.deepEqual(await m.get("u", "k"), fresh);
				const item = (await a.query("u")).items[0] as ArchiveItem<typeof v>;
				assert.deepEqual(item.value, fresh);
				item.value.list.length = 0;
				item.id = "changed";
				assert.deepEqual((await a.query("u")).items, [
					{ id: "i", when: item.when, with: "", value: fresh },
				]);
			}),
		);

		test("calls after close() reject with code closed", async () => {
			const b = await make();
			const kv = b.keyval("a.example", "s");
			await kv.set("u", 1);
			await b.close();
			await assert.rejects(kv.get("u"), { code: "closed" });
			await assert.rejects(b.map("a.example", "s").set("u", "k", 1), { code: "closed" });
			await assert.rejects(b.archive("a.example", "s").query("u"), { code: "closed" });
			await assert.rejects(b.deleteUser("a.example", "u"), { code: "closed" });
			await b.close(); // closing twice is harmless
		});
	});
}
