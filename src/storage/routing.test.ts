import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { storageContract } from "./contract/index.ts";
import { createStorage, type StorageConfig } from "./index.ts";
import { MemoryBackend } from "./memory.ts";
import { RoutingBackend } from "./routing.ts";
import { SqliteBackend } from "./sqlite.ts";
import type { StorageBackend } from "./types.ts";

/** Memory by default; some of the contract's stores, and one host, in SQLite. */
function memoryAndSqlite(): RoutingBackend {
	return new RoutingBackend(
		new Map<string, StorageBackend>([
			["default", new MemoryBackend()],
			["sql", new SqliteBackend(":memory:")],
		]),
		{
			stores: { roster: "sql", mam: "sql", pubsub: "sql", s: "sql", rt: "sql" },
			hosts: { "hôst.example": { default: "sql" } },
		},
	);
}

storageContract("routing (memory + sqlite)", memoryAndSqlite);

/** A memory backend that records its deleteUser and close calls. */
function spy(): { backend: MemoryBackend; deleted: string[]; closed: number } {
	const backend = new MemoryBackend();
	const s = { backend, deleted: [] as string[], closed: 0 };
	const deleteUser = backend.deleteUser.bind(backend);
	const close = backend.close.bind(backend);
	Object.assign(backend, {
		deleteUser: (h: string, u: string) => {
			s.deleted.push(`${h} ${u}`);
			return deleteUser(h, u);
		},
		close: () => {
			s.closed++;
			return close();
		},
	});
	return s;
}

describe("routing specifics", () => {
	test("an exclusive host route ignores the global store routes (anonymous hosts stay in memory)", () => {
		const backends = new Map<string, StorageBackend>([
			["default", spy().backend],
			["pg", spy().backend],
			["mem", spy().backend],
		]);
		const r = new RoutingBackend(backends, {
			stores: { offline: "pg", roster: "pg" },
			hosts: {
				"guest.example": { default: "mem", stores: { server_secrets: "default" }, exclusive: true },
			},
		});
		assert.equal(r.routeOf("guest.example", "offline"), "mem");
		assert.equal(r.routeOf("guest.example", "roster"), "mem");
		assert.equal(r.routeOf("guest.example", "server_secrets"), "default");
		assert.equal(r.routeOf("example.org", "offline"), "pg");
	});

	test("each (host, store) goes to its backend: host store, global store, host default, default", async () => {
		const def = spy();
		const pg = spy();
		const cache = spy();
		const r = new RoutingBackend(
			new Map<string, StorageBackend>([
				["default", def.backend],
				["pg", pg.backend],
				["cache", cache.backend],
			]),
			{
				stores: { archive: "pg", offline: "cache" },
				hosts: { "b.example": { default: "pg", stores: { offline: "default" } } },
			},
		);
		assert.equal(r.routeOf("a.example", "roster"), "default");
		assert.equal(r.routeOf("a.example", "archive"), "pg");
		assert.equal(r.routeOf("a.example", "offline"), "cache");
		assert.equal(r.routeOf("b.example", "roster"), "pg");
		assert.equal(r.routeOf("b.example", "offline"), "default");
		// A store named like an Object.prototype member is an ordinary store name.
		assert.equal(r.routeOf("a.example", "constructor"), "default");

		await r.archive("a.example", "archive").append("alice", { id: "m1", value: 1 });
		await r.keyval("a.example", "roster").set("alice", { v: 1 });
		await r.archive("a.example", "offline").append("alice", { id: "o1", value: 2 });
		await r.map("b.example", "private").set("bob", "k", 3);
		// The data is where the route says, and only there.
		assert.equal((await pg.backend.archive("a.example", "archive").query("alice")).items.length, 1);
		assert.equal(
			(await def.backend.archive("a.example", "archive").query("alice")).items.length,
			0,
		);
		assert.deepEqual(await def.backend.keyval("a.example", "roster").get("alice"), { v: 1 });
		assert.equal(await cache.backend.archive("a.example", "offline").count("alice"), 1);
		assert.equal(await pg.backend.map("b.example", "private").get("bob", "k"), 3);
		assert.equal(await def.backend.map("b.example", "private").get("bob", "k"), undefined);
	});

	test("deleteUser reaches every backend, close closes every backend once", async () => {
		const def = spy();
		const other = spy();
		const r = new RoutingBackend(
			new Map<string, StorageBackend>([
				["default", def.backend],
				["other", other.backend],
				["alias", other.backend],
			]),
			{ stores: { vcard: "other" } },
		);
		await r.keyval("a.example", "roster").set("alice", 1);
		await r.keyval("a.example", "vcard").set("alice", 2);
		await r.deleteUser("a.example", "alice");
		assert.deepEqual(def.deleted, ["a.example alice"]);
		assert.deepEqual(other.deleted, ["a.example alice"]);
		assert.equal(await r.keyval("a.example", "roster").get("alice"), undefined);
		assert.equal(await r.keyval("a.example", "vcard").get("alice"), undefined);
		await r.close();
		assert.equal(def.closed, 1);
		assert.equal(other.closed, 1);
	});

	test("a route to a backend that does not exist is refused when the router is built", () => {
		const backends = new Map<string, StorageBackend>([["default", new MemoryBackend()]]);
		assert.throws(
			() => new RoutingBackend(backends, { stores: { offline: "cache" } }),
			/storage\.stores\.offline: no storage backend named "cache"/,
		);
		assert.throws(
			() => new RoutingBackend(backends, { hosts: { "a.example": { default: "pg" } } }),
			/storage\.hosts\.a\.example\.default: no storage backend named "pg"/,
		);
		assert.throws(() => new RoutingBackend(new Map()), /no storage backend named "default"/);
	});

	test("createStorage builds a router only when routes use named backends", async () => {
		const plain = createStorage({ backend: "memory", path: "" }, ".");
		assert.equal(plain.kind, "memory");
		await plain.close();

		const cfg: StorageConfig = {
			backend: "sqlite",
			path: ":memory:",
			backends: {
				cache: { backend: "memory", path: "" },
				unused: { backend: "postgres", path: "", url: "postgres://nobody@127.0.0.1:1/x" },
			},
			stores: { offline: "cache" },
		};
		const r = createStorage(cfg, ".");
		assert.ok(r instanceof RoutingBackend);
		assert.equal(r.backendFor("a.example", "offline").kind, "memory");
		assert.equal(r.backendFor("a.example", "roster").kind, "sqlite");
		// A backend that no route names is not opened.
		assert.deepEqual([...r.backends.keys()].sort(), ["cache", "default"]);
		await r.keyval("a.example", "roster").set("alice", 1);
		assert.equal(await r.keyval("a.example", "roster").get("alice"), 1);
		await r.close();

		assert.throws(
			() => createStorage({ backend: "memory", path: "", stores: { offline: "nope" } }, "."),
			/no storage backend named "nope"/,
		);
	});
});
