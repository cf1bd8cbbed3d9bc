/**
 * Issue 15, restore: the checksum is verified before anything is touched, and a restore killed
 * with SIGKILL at any of its steps leaves the old data and configuration or the new ones, never
 * a mix, once the next start (recoverRestore, which `parley serve` runs first) has looked at it.
 * Also: the backup directory may not be inside what a restore replaces, and the factory reset's
 * two steps.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
	existsSync,
	mkdirSync,
	mkdtempSync,
	readdirSync,
	readFileSync,
	rmSync,
	writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import pg from "pg";
import {
	BackupManager,
	CONFIG_TEMPLATE,
	RESET_TOKEN_TTL_MS,
	recoverRestore,
} from "../../src/admin/backup/manager.ts";
import { erasePostgres } from "../../src/admin/backup/postgres.ts";
import { CommandError } from "../../src/core/commands.ts";
import { loadConfigFile } from "../../src/core/config/load.ts";
import { POSTGRES_SCHEMA_VERSION } from "../../src/storage/migrations/postgres.ts";
import { PostgresBackend } from "../../src/storage/postgres.ts";
import { SqliteBackend } from "../../src/storage/sqlite.ts";
import { postgresSkip, TEST_PG_URL } from "../helpers/services.ts";

const CHILD = fileURLToPath(new URL("../helpers/restore-child.ts", import.meta.url));
const dirs: string[] = [];
after(() => {
	for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function configText(name: string, extra = ""): string {
	return `[server]\ndata_dir = "./data"\nname = "${name}"\n[hosts."example.org"]\n[storage]\nbackend = "sqlite"\n${extra}`;
}

/** A directory with parley.toml (server.name `name`) and a database holding `users`. */
async function instance(name: string, users: string[]): Promise<string> {
	const dir = mkdtempSync(join(tmpdir(), "parley-backup-"));
	dirs.push(dir);
	await setState(dir, name, users);
	return dir;
}

async function setState(dir: string, name: string, users: string[]): Promise<void> {
	writeFileSync(join(dir, "parley.toml"), configText(name));
	rmSync(join(dir, "data"), { recursive: true, force: true });
	const config = loadConfigFile(join(dir, "parley.toml"));
	mkdirSync(config.server.data_dir);
	const db = new SqliteBackend(join(config.server.data_dir, "parley.sqlite"));
	for (const u of users) await db.keyval("example.org", "accounts").set(u, { marker: name });
	await db.close();
	// A file beside the database, as uploads are: it must follow the database, never mix.
	writeFileSync(join(config.server.data_dir, "marker.txt"), name);
}

/** What a start would find: the configuration's name, the accounts, the marker file. */
async function state(dir: string): Promise<{ name: string; users: string[]; marker: string }> {
	const config = loadConfigFile(join(dir, "parley.toml"));
	const db = new SqliteBackend(join(config.server.data_dir, "parley.sqlite"));
	const users = await db.keyval("example.org", "accounts").users();
	await db.close();
	const marker = readFileSync(join(config.server.data_dir, "marker.txt"), "utf8");
	return { name: config.server.name, users, marker };
}

function manager(dir: string): BackupManager {
	const configPath = join(dir, "parley.toml");
	return new BackupManager({ config: loadConfigFile(configPath), configPath });
}

function runChild(dir: string, id: string, step: string): Promise<NodeJS.Signals | number> {
	return new Promise((resolve, reject) => {
		const child = spawn(process.execPath, [CHILD, join(dir, "parley.toml"), id, step], {
			stdio: ["ignore", "ignore", "inherit"],
		});
		child.on("error", reject);
		child.on("exit", (code, signal) => resolve(signal ?? (code as number)));
	});
}

const OLD = { name: "Old", users: ["olduser"], marker: "Old" };
const NEW = { name: "New", users: ["newuser1", "newuser2"], marker: "New" };

describe("restore: kill -9 at each step leaves the old data or the new, never a mix", () => {
	// Before the journal is written the restore has not happened; from then on it has.
	const steps: [string, typeof OLD][] = [
		["verified", OLD],
		["unpacked", OLD],
		["synced", OLD],
		["committed", NEW],
		["old-moved", NEW],
		["data-swapped", NEW],
		["config-swapped", NEW],
		["old-removed", NEW],
	];
	for (const [step, expected] of steps) {
		test(`killed at "${step}": ${expected.name.toLowerCase()} data and configuration`, async () => {
			const dir = await instance("New", NEW.users);
			const { id } = await manager(dir).create();
			await setState(dir, "Old", OLD.users);

			assert.equal(await runChild(dir, id, step), "SIGKILL");
			// What the next start does first (parley serve, parley backup).
			await recoverRestore(loadConfigFile(join(dir, "parley.toml")), join(dir, "parley.toml"));
			assert.deepEqual(await state(dir), expected);
			// Nothing left beside the data: no staging, no journal, no old copy, no new config.
			assert.deepEqual(readdirSync(dir).sort(), ["backups", "data", "parley.toml"]);
		});
	}

	test("a restore that is not killed brings the new data and configuration", async () => {
		const dir = await instance("New", NEW.users);
		const { id } = await manager(dir).create();
		await setState(dir, "Old", OLD.users);
		assert.equal(await runChild(dir, id, "no such step"), 3);
		assert.deepEqual(await state(dir), NEW);
		assert.deepEqual(readdirSync(dir).sort(), ["backups", "data", "parley.toml"]);
	});
});

describe("restore: checks before anything changes", () => {
	test("a damaged archive is refused before anything is touched", async () => {
		const dir = await instance("New", NEW.users);
		const info = await manager(dir).create();
		await setState(dir, "Old", OLD.users);
		const bytes = readFileSync(info.archive.file);
		const at = Math.floor(bytes.length / 2);
		bytes[at] = (bytes[at] ?? 0) ^ 0xff;
		writeFileSync(info.archive.file, bytes);
		await assert.rejects(manager(dir).restore(info.id), (err: unknown) => {
			assert.ok(err instanceof CommandError);
			assert.equal(err.code, "invalid_argument");
			assert.match(err.message, /damaged.*SHA-256/);
			return true;
		});
		assert.deepEqual(await state(dir), OLD);
		assert.deepEqual(readdirSync(dir).sort(), ["backups", "data", "parley.toml"]);
	});

	test("one restore at a time: another live process's lock refuses it and keeps its staging", async () => {
		const dir = await instance("New", NEW.users);
		const { id } = await manager(dir).create();
		await setState(dir, "Old", OLD.users);
		const other = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], {
			stdio: "ignore",
		});
		try {
			writeFileSync(join(dir, "data.restore-lock"), `${other.pid}\n`);
			mkdirSync(join(dir, "data.restore"));
			await assert.rejects(manager(dir).restore(id), (err: unknown) => {
				assert.ok(err instanceof CommandError);
				assert.equal(err.code, "conflict");
				assert.match(err.message, new RegExp(`process ${other.pid}`));
				return true;
			});
			await assert.rejects(manager(dir).create(), /a restore or a factory reset is under way/);
			const config = loadConfigFile(join(dir, "parley.toml"));
			assert.equal(await recoverRestore(config, join(dir, "parley.toml")), "busy");
			assert.ok(existsSync(join(dir, "data.restore")), "its staging is left alone");
		} finally {
			other.kill("SIGKILL");
			await new Promise((r) => other.once("exit", r));
		}
		// Its holder gone, the lock is stale: the restore goes ahead.
		await manager(dir).restore(id);
		assert.deepEqual(await state(dir), NEW);
		assert.deepEqual(readdirSync(dir).sort(), ["backups", "data", "parley.toml"]);
	});

	test("a backup directory inside data_dir is refused: by the loader, and by the manager", async () => {
		const dir = await instance("New", NEW.users);
		const file = join(dir, "parley.toml");
		writeFileSync(file, configText("New", '[backup]\ndir = "./data/b"\n'));
		assert.throws(
			() => loadConfigFile(file),
			/parley\.toml:\d+: backup\.dir .* is inside server\.data_dir .*, which a restore replaces/,
		);
		writeFileSync(file, configText("New", '[backup]\ndir = "."\n'));
		assert.throws(() => loadConfigFile(file), /server\.data_dir .* is inside backup\.dir/);
		// A configuration built in code (tests, defaults) is checked where backups are made.
		writeFileSync(file, configText("New"));
		const config = loadConfigFile(file);
		const inside = { ...config, backup: { dir: join(config.server.data_dir, "b") } };
		await assert.rejects(
			new BackupManager({ config: inside, configPath: file }).create(),
			/backup\.dir .* is inside server\.data_dir/,
		);
		assert.equal(existsSync(join(dir, "data", "b")), false);
	});

	test("list, get and delete", async () => {
		const dir = await instance("New", NEW.users);
		const m = manager(dir);
		const a = await m.create();
		const b = await m.create();
		assert.deepEqual(
			(await m.list()).map((x) => x.id),
			[a.id, b.id].sort(),
		);
		assert.equal((await m.get(a.id)).archive.sha256, a.archive.sha256);
		assert.equal(a.config, true);
		assert.deepEqual(
			a.backends.map((x) => [x.backend, x.file]),
			[["sqlite", "data/parley.sqlite"]],
		);
		await m.delete(a.id);
		assert.deepEqual(
			(await m.list()).map((x) => x.id),
			[b.id],
		);
		await assert.rejects(m.get(a.id), /no backup/);
		await assert.rejects(m.get("../parley"), /no backup/);
	});
});

describe("factory reset: a token, then the erase", () => {
	// The journal is written before anything is erased: from any later step the reset completes.
	for (const step of ["committed", "postgres-erased", "data-aside", "config-reset"]) {
		test(`killed at "${step}": the next start finishes the reset`, async () => {
			const dir = await instance("Old", OLD.users);
			assert.equal(await runChild(dir, "factory-reset", step), "SIGKILL");
			await recoverRestore(loadConfigFile(join(dir, "parley.toml")), join(dir, "parley.toml"));
			assert.equal(existsSync(join(dir, "data")), false);
			assert.equal(readFileSync(join(dir, "parley.toml"), "utf8"), CONFIG_TEMPLATE);
			assert.deepEqual(readdirSync(dir).sort(), ["parley.toml"]);
		});
	}

	test("a wrong or expired token erases nothing; the right one erases data and config", async () => {
		const dir = await instance("Old", OLD.users);
		const m = manager(dir);
		await assert.rejects(m.confirmReset("nothing requested"), /no factory reset was requested/);
		const { token } = await m.requestReset();
		await assert.rejects(m.confirmReset(`${token}x`), /wrong factory reset token/);
		await assert.rejects(m.confirmReset(token, Date.now() + RESET_TOKEN_TTL_MS + 1), /expired/);
		assert.deepEqual(await state(dir), OLD);

		const second = await m.requestReset();
		assert.deepEqual(await m.confirmReset(second.token), { configurationNeeded: true });
		assert.equal(existsSync(join(dir, "data")), false);
		assert.equal(readFileSync(join(dir, "parley.toml"), "utf8"), CONFIG_TEMPLATE);
		// The template loads (every key at its default): the supervisor says what is missing.
		loadConfigFile(join(dir, "parley.toml"));
		// A token is good once.
		await assert.rejects(m.confirmReset(second.token), /no factory reset was requested/);
	});
});

describe("PostgreSQL: one snapshot in the backup, one transaction in the restore", {
	skip: postgresSkip,
}, () => {
	const schema = `parley_backup_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
	const storage = `[storage]\nbackend = "postgres"\nurl = "${TEST_PG_URL}"\nschema = "${schema}"\n`;
	after(async () => {
		const c = new pg.Client({ connectionString: TEST_PG_URL });
		await c.connect();
		await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
		await c.end();
	});

	async function setPgState(dir: string, name: string, users: string[]): Promise<void> {
		writeFileSync(
			join(dir, "parley.toml"),
			`[server]\ndata_dir = "./data"\nname = "${name}"\n[hosts."example.org"]\n${storage}`,
		);
		rmSync(join(dir, "data"), { recursive: true, force: true });
		mkdirSync(join(dir, "data"));
		writeFileSync(join(dir, "data", "marker.txt"), name);
		const db = new PostgresBackend({ url: TEST_PG_URL, schema });
		await db.open();
		await erasePostgres({ url: TEST_PG_URL, schema });
		for (const u of users) {
			await db.keyval("example.org", "accounts").set(u, { marker: name });
			await db.archive("example.org", "offline").append(u, { value: { xml: name } });
		}
		await db.close();
	}

	async function pgState(dir: string) {
		const config = loadConfigFile(join(dir, "parley.toml"));
		const db = new PostgresBackend({ url: TEST_PG_URL, schema });
		const users = await db.keyval("example.org", "accounts").users();
		const offline = await db.archive("example.org", "offline").count(users[0] ?? "");
		// The archive's identity column goes on after the restored rows (no duplicate key).
		await db.archive("example.org", "offline").append("probe", { value: { xml: "x" } });
		await db.archive("example.org", "offline").delete("probe");
		await db.close();
		const marker = readFileSync(join(config.server.data_dir, "marker.txt"), "utf8");
		return { name: config.server.name, users, offline, marker };
	}

	const PG_OLD = { name: "Old", users: ["olduser"], offline: 1, marker: "Old" };
	const PG_NEW = { name: "New", users: ["newuser1", "newuser2"], offline: 1, marker: "New" };
	const steps: [string, typeof PG_OLD][] = [
		["synced", PG_OLD],
		["committed", PG_NEW],
		["postgres-loaded", PG_NEW],
		["data-swapped", PG_NEW],
		["no such step", PG_NEW],
	];
	for (const [step, expected] of steps) {
		test(`killed at "${step}": ${expected.name.toLowerCase()} rows, files and configuration`, async () => {
			const dir = mkdtempSync(join(tmpdir(), "parley-backup-"));
			dirs.push(dir);
			await setPgState(dir, "New", PG_NEW.users);
			const info = await manager(dir).create();
			assert.deepEqual(
				info.backends.map((b) => [b.backend, b.file, b.schemaVersion]),
				[["postgres", "postgres/default", POSTGRES_SCHEMA_VERSION]],
			);
			await setPgState(dir, "Old", PG_OLD.users);

			const end = await runChild(dir, info.id, step);
			assert.equal(end, step === "no such step" ? 3 : "SIGKILL");
			await recoverRestore(loadConfigFile(join(dir, "parley.toml")), join(dir, "parley.toml"));
			assert.deepEqual(await pgState(dir), expected);
			assert.deepEqual(readdirSync(dir).sort(), ["backups", "data", "parley.toml"]);
		});
	}

	test("a factory reset empties Parley's tables", async () => {
		const dir = mkdtempSync(join(tmpdir(), "parley-backup-"));
		dirs.push(dir);
		await setPgState(dir, "Old", PG_OLD.users);
		const m = manager(dir);
		await m.confirmReset((await m.requestReset()).token);
		const db = new PostgresBackend({ url: TEST_PG_URL, schema });
		assert.deepEqual(await db.keyval("example.org", "accounts").users(), []);
		await db.close();
	});
});
