/** The storage contract for keyval stores: one JSON value per user. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { WithBackend } from "./support.ts";

export function keyvalContract(withBackend: WithBackend): void {
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
}
