/** The storage contract for archive stores: timestamped items per user, queried in pages. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ArchiveQuery, ArchiveStore } from "../types.ts";
import { T, type WithBackend } from "./support.ts";

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

export function archiveContract(withBackend: WithBackend): void {
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
				assert.deepEqual(await ids(a, "alice", { with: "even@x" }), ["m0", "m2", "m4", "m6", "m8"]);
				assert.deepEqual(await ids(a, "alice", { with: "nobody@x" }), []);
				assert.deepEqual(await ids(a, "alice", { start: T + 7000 }), ["m7", "m8", "m9"]);
				assert.deepEqual(await ids(a, "alice", { end: T + 2000 }), ["m0", "m1", "m2"]);
				assert.deepEqual(await ids(a, "alice", { start: T + 3000, end: T + 6000 }), [
					"m3",
					"m4",
					"m5",
					"m6",
				]);
				assert.deepEqual(await ids(a, "alice", { with: "odd@x", start: T + 3000, end: T + 6000 }), [
					"m3",
					"m5",
				]);
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
				// reverse: false with a lone before walks forwards: the oldest items before it
				assert.deepEqual(await ids(a, "alice", { before: "m4", reverse: false, limit: 2 }), [
					"m0",
					"m1",
				]);
				assert.equal(
					(await a.query("alice", { before: "m4", reverse: false, limit: 2 })).complete,
					false,
				);
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
				assert.equal(await a.count("alice", { with: "even@x", start: T + 1000, end: T + 4000 }), 2);
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
		test(
			"query and count by ids: only those items, in archive order, with the other filters",
			withBackend(async (b) => {
				const a = b.archive("a.example", "mam");
				await fill(a, "alice", 8);
				await a.append("bob", { id: "b1", value: "bob's" });
				assert.deepEqual(await ids(a, "alice", { ids: ["m5", "m1", "b1", "nope"] }), ["m1", "m5"]);
				assert.deepEqual(await ids(a, "alice", { ids: ["m5", "m2"], with: "odd@x" }), ["m5"]);
				assert.deepEqual(await ids(a, "alice", { ids: [] }), []);
				const page = await a.query("alice", { ids: ["m1", "m3", "m5"], limit: 2 });
				assert.deepEqual(
					page.items.map((i) => i.id),
					["m1", "m3"],
				);
				assert.equal(page.complete, false);
				assert.equal(await a.count("alice", { ids: ["m1", "m3", "b1"] }), 2);
			}),
		);

		test(
			"count with after/before: strictly after / before the anchor, with the filters",
			withBackend(async (b) => {
				const a = b.archive("a.example", "mam");
				await fill(a, "alice", 10);
				assert.equal(await a.count("alice", { before: "m4" }), 4);
				assert.equal(await a.count("alice", { after: "m4" }), 5);
				assert.equal(await a.count("alice", { after: "m2", before: "m7" }), 4);
				assert.equal(await a.count("alice", { before: "m4", with: "odd@x" }), 2);
				assert.equal(await a.count("alice", { before: "m0" }), 0);
				await assert.rejects(a.count("alice", { before: "nope" }), { code: "item-not-found" });
			}),
		);
	});
}
