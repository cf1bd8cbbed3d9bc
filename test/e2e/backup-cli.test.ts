/**
 * Issue 15, the operator's commands: `parley backup create|list|restore|delete`,
 * `parley factory-reset` (a token, then `--confirm`), and `parley serve` finishing a restore
 * that was killed after its commit point before it opens the data.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { CONFIG_TEMPLATE } from "../../src/admin/backup/manager.ts";

const BIN = fileURLToPath(new URL("../../bin/parley.js", import.meta.url));
const CHILD = fileURLToPath(new URL("../helpers/restore-child.ts", import.meta.url));
const EXIT = { OK: 0, FAILURE: 1, NOT_FOUND: 4 };

const dirs: string[] = [];
after(() => {
	for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function project(name = "Parley"): string {
	const dir = mkdtempSync(join(tmpdir(), "parley-backup-cli-"));
	dirs.push(dir);
	const listeners = ["c2s", "c2s_direct_tls", "http", "https", "component", "s2s", "admin"]
		.map(
			(l) =>
				`[listeners.${l}]\n${l === "s2s" ? "enabled = false\n" : ""}address = "127.0.0.1"\nport = 0\n`,
		)
		.join("");
	writeFileSync(
		join(dir, "parley.toml"),
		`[server]\ndata_dir = "data"\nname = "${name}"\n[log]\nformat = "json"\n[hosts.localhost]\n[storage]\nbackend = "sqlite"\n${listeners}`,
	);
	return dir;
}

interface Result {
	code: number | null;
	signal: NodeJS.Signals | null;
	stdout: string;
	stderr: string;
}

/** Runs `parley ARGS --config DIR/parley.toml` (or a script given as `script`). */
function run(dir: string, args: string[], script = BIN): Promise<Result> {
	const argv = script === BIN ? [...args, "--config", join(dir, "parley.toml")] : args;
	return new Promise((resolve, reject) => {
		const child = spawn(process.execPath, [script, ...argv], {
			cwd: dir,
			env: { ...process.env, PARLEY_CONFIG: "" },
			stdio: ["ignore", "pipe", "pipe"],
		});
		let stdout = "";
		let stderr = "";
		child.stdout.setEncoding("utf8").on("data", (d: string) => {
			stdout += d;
		});
		child.stderr.setEncoding("utf8").on("data", (d: string) => {
			stderr += d;
		});
		child.on("error", reject);
		child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
	});
}

async function ok(dir: string, args: string[]): Promise<string> {
	const r = await run(dir, args);
	assert.equal(r.code, EXIT.OK, `parley ${args.join(" ")}: ${r.stderr}`);
	return r.stdout;
}

async function users(dir: string): Promise<string[]> {
	return (await ok(dir, ["user", "list"])).split("\n").filter(Boolean).sort();
}

describe("parley backup and parley factory-reset", { timeout: 120_000 }, () => {
	test("create, list, restore, delete", async () => {
		const dir = project();
		await ok(dir, ["user", "add", "alice@localhost", "--password", "a"]);
		const id = (await ok(dir, ["backup", "create"])).trim();
		assert.match(id, /^parley-\d{8}T\d{6}Z-[0-9a-f]{6}$/);
		assert.match(
			await ok(dir, ["backup", "list"]),
			new RegExp(`^${id} .* sha256:[0-9a-f]{64}\\n$`),
		);
		const listed = JSON.parse(await ok(dir, ["backup", "list", "--json"])) as { id: string }[];
		assert.deepEqual(
			listed.map((b) => b.id),
			[id],
		);

		await ok(dir, ["user", "add", "bob@localhost", "--password", "b"]);
		assert.deepEqual(await users(dir), ["alice@localhost", "bob@localhost"]);
		assert.equal((await ok(dir, ["backup", "restore", id])).trim(), `restored ${id}`);
		assert.deepEqual(await users(dir), ["alice@localhost"]);

		await ok(dir, ["backup", "delete", id]);
		assert.equal(await ok(dir, ["backup", "list"]), "");
		const gone = await run(dir, ["backup", "restore", id]);
		assert.equal(gone.code, EXIT.NOT_FOUND, gone.stderr);
		assert.match(gone.stderr, /no backup/);
	});

	test("factory-reset: a token first, then --confirm erases data and config", async () => {
		const dir = project();
		await ok(dir, ["user", "add", "alice@localhost", "--password", "a"]);
		const first = await run(dir, ["factory-reset"]);
		assert.equal(first.code, EXIT.OK, first.stderr);
		const token = first.stdout.trim();
		assert.match(first.stderr, /parley factory-reset --confirm /);
		assert.deepEqual(await users(dir), ["alice@localhost"], "nothing erased by the request");

		const wrong = await run(dir, ["factory-reset", "--confirm", `${token}x`]);
		assert.equal(wrong.code, EXIT.FAILURE);
		assert.match(wrong.stderr, /wrong factory reset token/);
		assert.ok(existsSync(join(dir, "data", "parley.sqlite")));

		assert.match(await ok(dir, ["factory-reset", "--confirm", token]), /needs a configuration/);
		assert.equal(existsSync(join(dir, "data")), false);
		assert.equal(readFileSync(join(dir, "parley.toml"), "utf8"), CONFIG_TEMPLATE);
	});

	test("parley serve finishes a restore killed after its commit point, then serves the new data", async () => {
		const dir = project("Before");
		await ok(dir, ["user", "add", "new@localhost", "--password", "n"]);
		const id = (await ok(dir, ["backup", "create"])).trim();
		await ok(dir, ["user", "del", "new@localhost"]);
		await ok(dir, ["user", "add", "old@localhost", "--password", "o"]);

		const killed = await run(dir, [join(dir, "parley.toml"), id, "old-moved"], CHILD);
		assert.equal(killed.signal, "SIGKILL");
		// Half swapped: the data directory is aside, the new one still staged.
		assert.equal(existsSync(join(dir, "data")), false);

		const serve = spawn(process.execPath, [BIN, "serve", "--config", join(dir, "parley.toml")], {
			cwd: dir,
			env: { ...process.env, PARLEY_CONFIG: "" },
			stdio: ["ignore", "pipe", "inherit"],
		});
		try {
			let out = "";
			await new Promise<void>((resolve, reject) => {
				serve.stdout.setEncoding("utf8").on("data", (d: string) => {
					out += d;
					if (out.includes('"msg":"Parley is running"')) resolve();
				});
				serve.on("close", (code) => reject(new Error(`serve exited ${code}: ${out}`)));
			});
			assert.deepEqual(await users(dir), ["new@localhost"]);
		} finally {
			serve.kill("SIGTERM");
		}
		assert.equal(existsSync(join(dir, "data.restore")), false);
		assert.equal(existsSync(join(dir, "data.restore-journal")), false);
	});
});
