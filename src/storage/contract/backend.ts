/**
 * The storage contract for what spans every store kind of a backend: deleting a user, value
 * round-trips, concurrent writes, copies, close().
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ArchiveItem, Json } from "../types.ts";
import { type MakeBackend, T, type WithBackend } from "./support.ts";

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

export function backendContract(withBackend: WithBackend, make: MakeBackend): void {
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
				assert.equal(await b.map("b.example", store).get("alice", "k"), `b.example/${store}/alice`);
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
}
