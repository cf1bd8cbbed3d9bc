/** The storage contract for map stores: JSON values per user and key. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Json } from "../types.ts";
import type { WithBackend } from "./support.ts";

export function mapContract(withBackend: WithBackend): void {
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
}
