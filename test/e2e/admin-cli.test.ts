/**
 * Issue 15 as an operator meets it: `parley serve` (a child process) under the Supervisor with
 * its admin API, the first admin from `PARLEY_ADMIN_JID`, `parley admin <words>` against it
 * (commands generated from the registry, exit codes mapped from the API's answers), `parley
 * admin token`, and SIGHUP reloading a good, a bad and a fixed file.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { baseToml } from "../helpers/admin.ts";
import { waitFor } from "../helpers/wait.ts";

const BIN = fileURLToPath(new URL("../../bin/parley.js", import.meta.url));

let dir: string;
let config: string;
let serve: ChildProcess;
const lines: Record<string, unknown>[] = [];
let adminPort = 0;

function run(args: string[], env: Record<string, string> = {}) {
	return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
		// The test's API is on a port the system picked: named with --api-url (a real one is found
		// in [listeners.admin]).
		const url = args[1] === "token" ? [] : ["--api-url", `http://127.0.0.1:${adminPort}`];
		const child = spawn(process.execPath, [BIN, ...args, "--config", config, ...url], {
			cwd: dir,
			env: { ...process.env, PARLEY_CONFIG: "", PARLEY_ADMIN_TOKEN: "", ...env },
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
		child.on("close", (code) => resolve({ code, stdout, stderr }));
	});
}

async function status(): Promise<Record<string, unknown>> {
	const res = await fetch(`http://127.0.0.1:${adminPort}/status`);
	return (await res.json()) as Record<string, unknown>;
}

before(async () => {
	dir = mkdtempSync(join(tmpdir(), "parley-admin-cli-"));
	config = join(dir, "parley.toml");
	writeFileSync(config, baseToml(dir));
	serve = spawn(process.execPath, [BIN, "serve", "--config", config], {
		cwd: dir,
		env: {
			...process.env,
			PARLEY_CONFIG: "",
			PARLEY_ADMIN_JID: "boss@localhost",
			PARLEY_ADMIN_PASSWORD: "boss-secret",
		},
		stdio: ["ignore", "pipe", "pipe"],
	});
	let buffer = "";
	serve.stdout?.setEncoding("utf8").on("data", (d: string) => {
		buffer += d;
		let nl = buffer.indexOf("\n");
		while (nl >= 0) {
			const line = buffer.slice(0, nl);
			buffer = buffer.slice(nl + 1);
			try {
				lines.push(JSON.parse(line));
			} catch {}
			nl = buffer.indexOf("\n");
		}
	});
	const listening = await waitFor(
		() => lines.find((l) => l.msg === "listening" && l.listener === "admin"),
		"the admin API's listening line",
		30_000,
	);
	adminPort = listening.port as number;
	// On loopback the admin API opens before the XMPP server starts.
	await waitFor(
		() => lines.some((l) => l.msg === "Parley is running"),
		"Parley is running",
		30_000,
	);
});

after(async () => {
	if (serve && serve.exitCode === null && serve.signalCode === null) serve.kill("SIGKILL");
	rmSync(dir, { recursive: true, force: true });
});

test("parley admin <words>: commands of the registry against the running server, exit codes from the API", async () => {
	const list = await run(["admin", "user", "list"]);
	assert.equal(list.code, 0, list.stderr);
	assert.deepEqual(JSON.parse(list.stdout), {
		users: [{ jid: "boss@localhost", role: "admin" }],
	});
	const add = await run(["admin", "user", "add", "--jid", "carol@localhost", "--password", "pw"]);
	assert.equal(add.code, 0, add.stderr);
	assert.deepEqual(JSON.parse(add.stdout), { jid: "carol@localhost", role: "user" });
	const again = await run(["admin", "user", "add", "--jid", "carol@localhost", "--password", "pw"]);
	assert.equal(again.code, 5, "exists");
	assert.match(again.stderr, /409 conflict/);
	const gone = await run(["admin", "user", "remove", "--jid", "nobody@localhost"]);
	assert.equal(gone.code, 4, "not found");
	const role = await run(["admin", "user", "role", "--jid", "carol@localhost", "--role", "admin"]);
	assert.equal(role.code, 0, role.stderr);
	const usage = await run(["admin", "user", "add", "--jid", "x@localhost"]);
	assert.equal(usage.code, 2, "a required flag missing is a usage error");
	const audit = lines.filter((l) => l.audit === true);
	assert.ok(audit.some((l) => l.action === "user.add" && l.actor === "cli" && l.status === 201));
});

test("parley admin token JID: a token for an admin account that the API takes; refused for a non-admin", async () => {
	const issued = await run(["admin", "token", "boss@localhost"]);
	assert.equal(issued.code, 0, issued.stderr);
	const token = issued.stdout.trim();
	assert.match(token, /^parley_/);
	const res = await fetch(`http://127.0.0.1:${adminPort}/sessions`, {
		headers: { authorization: `Bearer ${token}` },
	});
	assert.equal(res.status, 200);
	// The one-call operator tokens of the CLI were revoked after each call.
	const tokens = (await (
		await fetch(`http://127.0.0.1:${adminPort}/auth/tokens`, {
			headers: { authorization: `Bearer ${token}` },
		})
	).json()) as { tokens: { jid: string }[] };
	assert.deepEqual(
		tokens.tokens.map((t) => t.jid),
		["boss@localhost"],
	);
	const viaEnv = await run(["admin", "session", "list"], { PARLEY_ADMIN_TOKEN: token });
	assert.equal(viaEnv.code, 0, viaEnv.stderr);
	assert.ok(lines.some((l) => l.audit === true && l.actor === "boss@localhost"));
	await run(["admin", "user", "add", "--jid", "dan@localhost", "--password", "pw"]);
	const refused = await run(["admin", "token", "dan@localhost"]);
	assert.equal(refused.code, 1);
	assert.match(refused.stderr, /not an admin/);
});

test("SIGHUP reloads: good (a host added), bad (running_misconfigured with file and line), fixed (running)", async () => {
	writeFileSync(config, `${baseToml(dir)}[hosts."second.example"]\n`);
	serve.kill("SIGHUP");
	await waitFor(
		async () => ((await status()).hosts as string[]).includes("second.example"),
		"the new host",
	);
	assert.equal((await status()).state, "running");

	writeFileSync(config, `${baseToml(dir)}[limits]\nstanza_size = "x"\n`);
	serve.kill("SIGHUP");
	const bad = await waitFor(async () => {
		const s = await status();
		return s.state === "running_misconfigured" && s;
	}, "running_misconfigured");
	const [problem] = bad.configErrors as { file: string; line: number; key: string }[];
	assert.equal(problem?.file, config);
	assert.equal(problem?.key, "limits.stanza_size");
	assert.equal(problem?.line, baseToml(dir).split("\n").length + 1);
	// `parley admin status` works with the file broken (it reads only what it needs of it).
	const st = await run(["admin", "status"]);
	assert.equal(st.code, 0, st.stderr);
	assert.equal(JSON.parse(st.stdout).state, "running_misconfigured");
	// Restart is not served while the file is broken: 503 naming the state.
	const restart = await run(["admin", "restart"]);
	assert.equal(restart.code, 1);
	assert.match(restart.stderr, /503 running_misconfigured/);

	writeFileSync(config, baseToml(dir));
	const reload = await run(["admin", "reload"]);
	assert.equal(reload.code, 0, reload.stderr);
	assert.equal(JSON.parse(reload.stdout).state, "running");
	assert.ok(!((await status()).hosts as string[]).includes("second.example"));
	// Each reload is in the audit log, the signal's as the API's.
	assert.deepEqual(
		lines
			.filter((l) => l.audit === true && l.action === "lifecycle.reload")
			.map((l) => `${l.actor} ${l.status}`),
		["SIGHUP 200", "SIGHUP 422", "cli 200"],
	);
});

test("SIGTERM stops it: exit 0, the states stopping then stopped in the log", async () => {
	const exited = new Promise<number | null>((resolve) =>
		serve.on("close", (code) => resolve(code)),
	);
	serve.kill("SIGTERM");
	assert.equal(await exited, 0);
	const states = lines.filter((l) => l.msg === "admin state").map((l) => l.admin_state);
	assert.deepEqual(states.slice(-2), ["stopping", "stopped"]);
	assert.equal(states[0], "starting");
	assert.ok(!JSON.stringify(lines).includes("boss-secret"), "no password in the log");
});
