import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { DatabaseSync } from "node:sqlite";
import { after, test } from "node:test";
import { pathToFileURL } from "node:url";
import { storageContract } from "./contract/index.ts";
import { createStorage } from "./index.ts";
import { MemoryBackend } from "./memory.ts";
import { SQLITE_MIGRATIONS, SQLITE_SCHEMA_VERSION, SqliteBackend } from "./sqlite.ts";

const dir = mkdtempSync(join(tmpdir(), "parley-sqlite-test-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const freshPath = (): string => join(dir, `${randomUUID()}.sqlite`);
const SQLITE_MODULE = pathToFileURL(join(import.meta.dirname, "sqlite.ts")).href;

storageContract("sqlite (file)", () => new SqliteBackend(freshPath()));
storageContract("sqlite (:memory:)", () => new SqliteBackend(":memory:"));

/** Runs an ES module snippet in a child Node process (the one running the tests: Node 24). */
function child(code: string): ReturnType<typeof spawn> {
	return spawn(process.execPath, ["--input-type=module", "--no-warnings", "-e", code], {
		stdio: ["ignore", "pipe", "inherit"],
	});
}

function exited(p: ReturnType<typeof spawn>): Promise<number | null> {
	return new Promise((resolve, reject) => {
		p.on("error", reject);
		p.on("exit", (code) => resolve(code));
	});
}

test("sqlite: the database is created with WAL, the current schema version, and reopens with its data", async () => {
	const path = freshPath();
	const b1 = new SqliteBackend(path);
	await b1.keyval("a.example", "roster").set("alice", { items: ["bob@a.example"] });
	await b1.map("a.example", "blocklist").set("alice", "spam@x", true);
	const id = await b1.archive("a.example", "mam").append("alice", { value: "hi", when: 5 });
	await b1.close();

	const raw = new DatabaseSync(path);
	assert.equal(raw.prepare("PRAGMA user_version").get()?.user_version, SQLITE_SCHEMA_VERSION);
	assert.equal(raw.prepare("PRAGMA journal_mode").get()?.journal_mode, "wal");
	raw.close();

	const b2 = new SqliteBackend(path);
	try {
		assert.deepEqual(await b2.keyval("a.example", "roster").get("alice"), {
			items: ["bob@a.example"],
		});
		assert.equal(await b2.map("a.example", "blocklist").get("alice", "spam@x"), true);
		assert.deepEqual(await b2.archive("a.example", "mam").query("alice"), {
			items: [{ id, when: 5, with: "", value: "hi" }],
			complete: true,
		});
		// ordering continues after a reopen
		await b2.archive("a.example", "mam").append("alice", { id: "second", value: "x", when: 5 });
		const ids = (await b2.archive("a.example", "mam").query("alice")).items.map((i) => i.id);
		assert.deepEqual(ids, [id, "second"]);
	} finally {
		await b2.close();
	}
});

test("sqlite: close() commits writes still queued", async () => {
	const path = freshPath();
	const b1 = new SqliteBackend(path);
	const w1 = b1.keyval("h", "s").set("u", "queued");
	const w2 = b1.archive("h", "mam").append("u", { id: "q", value: 1 });
	await b1.close();
	await Promise.all([w1, w2]);
	await assert.rejects(b1.keyval("h", "s").set("u", "late"), { code: "closed" });
	const b2 = new SqliteBackend(path);
	try {
		assert.equal(await b2.keyval("h", "s").get("u"), "queued");
		assert.equal(await b2.archive("h", "mam").count("u"), 1);
	} finally {
		await b2.close();
	}
});

test("sqlite: two handles on one file see each other's writes", async () => {
	const path = freshPath();
	const a = new SqliteBackend(path);
	const b = new SqliteBackend(path);
	try {
		await a.keyval("h", "s").set("u", 1);
		assert.equal(await b.keyval("h", "s").get("u"), 1);
		await b.keyval("h", "s").set("u", 2);
		assert.equal(await a.keyval("h", "s").get("u"), 2);
		for (let i = 0; i < 20; i++) {
			await (i % 2 ? a : b).archive("h", "mam").append("u", { id: `x${i}`, value: i, when: i });
		}
		const fromA = await a.archive("h", "mam").query("u", { after: "x4", limit: 3 });
		assert.deepEqual(
			fromA.items.map((i) => i.value),
			[5, 6, 7],
		);
		await assert.rejects(b.archive("h", "mam").append("u", { id: "x3", value: 0 }), {
			code: "conflict",
		});
		await a.deleteUser("h", "u");
		assert.equal(await b.keyval("h", "s").get("u"), undefined);
		assert.equal(await b.archive("h", "mam").count("u"), 0);
	} finally {
		await a.close();
		await b.close();
	}
});

test("sqlite: another process writes to the same file concurrently", async () => {
	const path = freshPath();
	const mine = new SqliteBackend(path);
	try {
		const p = child(`
			import { SqliteBackend } from ${JSON.stringify(SQLITE_MODULE)};
			const b = new SqliteBackend(${JSON.stringify(path)});
			const a = b.archive("h", "mam");
			for (let i = 0; i < 200; i++) {
				await a.append("u", { id: "child" + i, value: i });
				await b.keyval("h", "users").set("child" + i, i);
			}
			await b.close();
		`);
		const done = exited(p);
		const a = mine.archive("h", "mam");
		for (let i = 0; i < 200; i++) {
			await a.append("u", { id: `parent${i}`, value: i });
			await mine.keyval("h", "users").set(`parent${i}`, i);
			// let the other process's writes interleave with ours
			await new Promise((r) => setImmediate(r));
		}
		assert.equal(await done, 0);
		assert.equal(await a.count("u"), 400);
		assert.equal((await mine.keyval("h", "users").users()).length, 400);
	} finally {
		await mine.close();
	}
});

test("sqlite: acknowledged writes survive kill -9 of the writing process", async () => {
	const path = freshPath();
	const p = child(`
		import { SqliteBackend } from ${JSON.stringify(SQLITE_MODULE)};
		const b = new SqliteBackend(${JSON.stringify(path)});
		for (let i = 0; ; i++) {
			await b.archive("h", "mam").append("u", { id: "m" + i, value: { i } });
			process.stdout.write("m" + i + "\\n");
		}
	`);
	const done = exited(p);
	const acked: string[] = [];
	assert.ok(p.stdout);
	for await (const line of createInterface({ input: p.stdout })) {
		acked.push(line);
		if (acked.length === 100) p.kill("SIGKILL");
	}
	await done;
	assert.ok(acked.length >= 100);
	const b = new SqliteBackend(path);
	try {
		const stored = new Set((await b.archive("h", "mam").query("u")).items.map((i) => i.id));
		for (const id of acked) assert.ok(stored.has(id), `acknowledged ${id} is stored`);
	} finally {
		await b.close();
	}
});

test("sqlite: a database with a newer schema version is refused and left untouched", () => {
	const path = freshPath();
	const raw = new DatabaseSync(path);
	raw.exec(`PRAGMA user_version = ${SQLITE_SCHEMA_VERSION + 1}`);
	raw.close();
	assert.throws(
		() => new SqliteBackend(path),
		new RegExp(`schema version ${SQLITE_SCHEMA_VERSION + 1} is newer than this Parley supports`),
	);
	const check = new DatabaseSync(path);
	assert.equal(check.prepare("PRAGMA user_version").get()?.user_version, SQLITE_SCHEMA_VERSION + 1);
	assert.equal(check.prepare("PRAGMA journal_mode").get()?.journal_mode, "delete");
	check.close();
});

/**
 * keyval and map must be rowid tables (schema version 2), the archive with its integer keys
 * (version 3) and nothing else beside.
 */
function assertRowidTables(path: string): void {
	const db = new DatabaseSync(path);
	try {
		assert.equal(db.prepare("PRAGMA user_version").get()?.user_version, SQLITE_SCHEMA_VERSION);
		const tables = db
			.prepare("SELECT name, wr FROM pragma_table_list WHERE schema = 'main' ORDER BY name")
			.all()
			.filter((r) => !String(r.name).startsWith("sqlite_"));
		assert.deepEqual(
			tables.map((r) => [r.name, r.wr]),
			[
				["archive", 0],
				["archive_owner", 0],
				["archive_store", 0],
				["keyval", 0],
				["map", 0],
			],
		);
	} finally {
		db.close();
	}
}

test("sqlite: a version 1 file (WITHOUT ROWID keyval and map) becomes rowid tables, data kept", async () => {
	const path = freshPath();
	const raw = new DatabaseSync(path);
	raw.exec(SQLITE_MIGRATIONS[0] as string);
	raw.exec("PRAGMA user_version = 1");
	const roster = {
		ver: 7,
		items: Object.fromEntries(
			Array.from({ length: 300 }, (_, i) => [`c${i}@b.example`, { subscription: "both" }]),
		),
	};
	const kv = raw.prepare("INSERT INTO keyval (host, store, user, value) VALUES (?, ?, ?, ?)");
	kv.run("a.example", "roster", "alice", JSON.stringify(roster)); // several overflow pages
	kv.run("a.example", "roster", "bob", JSON.stringify({ ver: 1 }));
	kv.run("b.example", "roster", "alice", JSON.stringify("other host"));
	const map = raw.prepare("INSERT INTO map (host, store, user, key, value) VALUES (?, ?, ?, ?, ?)");
	map.run("a.example", "blocklist", "alice", "spam@x", "true");
	map.run("a.example", "blocklist", "alice", "eggs@x", JSON.stringify({ n: 1 }));
	raw.close();

	const b = new SqliteBackend(path);
	try {
		const r = b.keyval("a.example", "roster");
		assert.deepEqual(await r.get("alice"), roster);
		assert.deepEqual(await r.getPath("alice", ["items", "c299@b.example"]), {
			subscription: "both",
		});
		assert.deepEqual(await r.users(), ["alice", "bob"]);
		assert.equal(await b.keyval("b.example", "roster").get("alice"), "other host");
		const m = b.map("a.example", "blocklist");
		assert.deepEqual(
			[...(await m.getAll("alice"))],
			[
				["eggs@x", { n: 1 }],
				["spam@x", true],
			],
		);
		// The primary key is still unique: writes replace, deletes remove.
		await r.set("bob", { ver: 2 });
		assert.deepEqual(await r.get("bob"), { ver: 2 });
		await r.set("bob", undefined);
		assert.deepEqual(await r.users(), ["alice"]);
		await m.set("alice", "spam@x", false);
		assert.equal(await m.get("alice", "spam@x"), false);
		assert.equal((await m.getAll("alice")).size, 2);
	} finally {
		await b.close();
	}
	assertRowidTables(path);
	// A new file gets the same tables.
	const fresh = freshPath();
	await new SqliteBackend(fresh).close();
	assertRowidTables(fresh);
});

test("sqlite: a version 2 archive (text keys) moves to integer keys with its ids, order and owners", async () => {
	const path = freshPath();
	const raw = new DatabaseSync(path);
	raw.exec(SQLITE_MIGRATIONS[0] as string);
	raw.exec(SQLITE_MIGRATIONS[1] as string);
	raw.exec("PRAGMA user_version = 2");
	const ins = raw.prepare(
		"INSERT INTO archive (host, store, user, id, ts, peer, value) VALUES (?, ?, ?, ?, ?, ?, ?)",
	);
	// Two rows with the same time: their insertion order (seq) must survive.
	ins.run("a.example", "mam", "alice", "id-3", 3000, "bob@a.example", JSON.stringify({ n: 3 }));
	ins.run("a.example", "mam", "alice", "id-1", 1000, "bob@a.example", JSON.stringify({ n: 1 }));
	ins.run("a.example", "mam", "alice", "id-2a", 2000, "carol@a.example", JSON.stringify({ n: 2 }));
	ins.run("a.example", "mam", "alice", "id-2b", 2000, "bob@a.example", JSON.stringify({ n: 4 }));
	ins.run("a.example", "mam", "bob", "id-b", 1500, "alice@a.example", JSON.stringify({ n: 5 }));
	ins.run("a.example", "muc", "alice", "id-1", 1000, "", JSON.stringify({ n: 6 }));
	ins.run("b.example", "mam", "alice", "id-1", 1000, "", JSON.stringify({ n: 7 }));
	raw.close();

	const b = new SqliteBackend(path);
	try {
		const a = b.archive("a.example", "mam");
		const page = await a.query("alice");
		assert.deepEqual(
			page.items.map((i) => [i.id, i.when, i.with, i.value]),
			[
				["id-1", 1000, "bob@a.example", { n: 1 }],
				["id-2a", 2000, "carol@a.example", { n: 2 }],
				["id-2b", 2000, "bob@a.example", { n: 4 }],
				["id-3", 3000, "bob@a.example", { n: 3 }],
			],
		);
		const before = await a.query("alice", { before: "id-2b", limit: 1 });
		assert.deepEqual(
			before.items.map((i) => i.id),
			["id-2a"],
		);
		assert.equal(before.complete, false);
		assert.deepEqual(
			(await a.query("alice", { with: "bob@a.example", after: "id-1" })).items.map((i) => i.id),
			["id-2b", "id-3"],
		);
		assert.deepEqual(
			(await a.query("alice", { ids: ["id-3", "id-b"] })).items.map((i) => i.id),
			["id-3"],
		);
		await assert.rejects(a.query("alice", { after: "id-b" }), { code: "item-not-found" });
		assert.equal(await a.count("bob"), 1);
		assert.deepEqual((await b.archive("a.example", "muc").query("alice")).items[0]?.value, {
			n: 6,
		});
		assert.deepEqual((await b.archive("b.example", "mam").query("alice")).items[0]?.value, {
			n: 7,
		});
		// Ids stay unique per store; a new message goes after the old ones.
		await assert.rejects(a.append("bob", { id: "id-3", value: 0 }), { code: "conflict" });
		await a.append("alice", { id: "id-4", when: 3000, value: { n: 8 } });
		assert.deepEqual(
			(await a.query("alice", { reverse: true, limit: 1 })).items.map((i) => i.id),
			["id-4"],
		);
		// deleteUser removes alice's archives on a.example only, and she can start again.
		await b.deleteUser("a.example", "alice");
		assert.equal(await a.count("alice"), 0);
		assert.equal(await b.archive("a.example", "muc").count("alice"), 0);
		assert.equal(await b.archive("b.example", "mam").count("alice"), 1);
		assert.equal(await a.count("bob"), 1);
		await a.append("alice", { id: "id-1", value: 9 });
		assert.deepEqual(
			(await a.query("alice")).items.map((i) => i.value),
			[9],
		);
	} finally {
		await b.close();
	}
	assertRowidTables(path);
});

test("sqlite: a lazy archive append waits for company, yet an awaited write or a read commits it", async () => {
	const path = freshPath();
	const b = new SqliteBackend(path);
	/** The archive rows another connection sees: what is committed. */
	const committed = () => {
		const db = new DatabaseSync(path, { readOnly: true });
		try {
			return Number(db.prepare("SELECT count(*) AS n FROM archive").get()?.n);
		} finally {
			db.close();
		}
	};
	try {
		const a = b.archive("h.example", "mam");
		const first = a.append("alice", { value: 1 }, { lazy: true });
		// A plain write is committed at setImmediate (this turn's check phase); a lazy one is not,
		// its timer can only fire in a later turn.
		await new Promise((r) => setImmediate(r));
		assert.equal(committed(), 0);
		await first; // ... but it is committed by itself in the end
		assert.equal(committed(), 1);
		const second = a.append("alice", { value: 2 }, { lazy: true });
		await b.keyval("h.example", "offline").set("alice", "awaited");
		assert.equal(committed(), 2, "an awaited write commits the lazy ones queued before it");
		await second;
		a.append("alice", { value: 3 }, { lazy: true });
		assert.deepEqual(
			(await a.query("alice")).items.map((i) => i.value),
			[1, 2, 3],
		);
		assert.equal(committed(), 3, "a read commits them first");
	} finally {
		await b.close();
	}
});

test("sqlite: a value appended twice is stored as it was at each append", async () => {
	const b = new SqliteBackend(freshPath());
	try {
		const a = b.archive<{ xml: string }>("a.example", "mam");
		// One frozen value for two archives (what mam appends), then an unfrozen one changed
		// between its two appends: each row holds the value as it was when appended.
		const shared = Object.freeze({ xml: "<message/>" });
		await a.append("alice", { value: shared });
		await a.append("bob", { value: shared });
		const changing = { xml: "first" };
		const first = a.append("alice", { value: changing });
		changing.xml = "second";
		await Promise.all([first, a.append("bob", { value: changing })]);
		const values = async (user: string) => (await a.query(user)).items.map((i) => i.value.xml);
		assert.deepEqual(await values("alice"), ["<message/>", "first"]);
		assert.deepEqual(await values("bob"), ["<message/>", "second"]);
	} finally {
		await b.close();
	}
});

test("createStorage: sqlite under a data dir it creates; memory", async () => {
	const dataDir = join(dir, randomUUID(), "nested");
	const s = createStorage({ backend: "sqlite", path: "db/../parley.sqlite" }, dataDir);
	try {
		assert.equal(s.kind, "sqlite");
		assert.ok(s instanceof SqliteBackend);
		assert.equal(s.path, join(dataDir, "parley.sqlite"));
		await s.keyval("h", "s").set("u", 1);
		assert.ok(existsSync(join(dataDir, "parley.sqlite")));
	} finally {
		await s.close();
	}
	const m = createStorage({ backend: "memory", path: "ignored" }, join(dir, "unused"));
	assert.ok(m instanceof MemoryBackend);
	assert.equal(existsSync(join(dir, "unused")), false);
	await m.close();
});
