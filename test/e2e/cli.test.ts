/**
 * The `parley` command as an operator runs it: a child process (`bin/parley.js` on this Node),
 * a temp directory with a parley.toml and SQLite data. Exit codes are the ones src/cli/main.ts
 * promises: 0 ok · 1 failure · 2 usage · 3 config · 4 not found · 5 exists · 6 check failed.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { generate } from "selfsigned";
import { z } from "zod";
import { JEMALLOC_PATHS } from "../../src/cli/allocator.ts";
import { parseConfig } from "../../src/core/config/load.ts";
import { configSchema } from "../../src/core/config/schema.ts";
import { builtinModules } from "../../src/modules/index.ts";
import { generateSelfSigned } from "../../src/tls/certs.ts";
import { redisSkip, TEST_REDIS_URL } from "../helpers/services.ts";
import { serverCert, testCa } from "../helpers/test-ca.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

const BIN = fileURLToPath(new URL("../../bin/parley.js", import.meta.url));

const EXIT = { OK: 0, USAGE: 2, CONFIG: 3, NOT_FOUND: 4, EXISTS: 5, CHECK_FAILED: 6 };

interface RunResult {
	code: number | null;
	stdout: string;
	stderr: string;
}

const temps: string[] = [];
after(() => {
	for (const d of temps) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
	const d = mkdtempSync(join(tmpdir(), "parley-cli-"));
	temps.push(d);
	return d;
}

/** Runs `parley ARGS` to completion; `input` is written to its standard input. */
function run(
	args: string[],
	opts: { cwd?: string; input?: string; env?: Record<string, string> } = {},
): Promise<RunResult> {
	return new Promise((resolve, reject) => {
		const child = spawn(process.execPath, [BIN, ...args], {
			cwd: opts.cwd,
			env: { ...process.env, PARLEY_CONFIG: "", ...opts.env },
			stdio: ["pipe", "pipe", "pipe"],
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
		child.stdin.end(opts.input ?? "");
	});
}

/** Runs `fn` over `items`, at most `width` at a time (each run is a Node process). */
async function inPool<T, R>(items: T[], width: number, fn: (item: T) => Promise<R>): Promise<R[]> {
	const out: R[] = new Array(items.length);
	let next = 0;
	const worker = async () => {
		while (next < items.length) {
			const i = next++;
			out[i] = await fn(items[i] as T);
		}
	};
	await Promise.all(Array.from({ length: width }, worker));
	return out;
}

interface ProjectOptions {
	level?: string;
	/** log.format ("auto" when absent: JSON on the test's pipe). */
	format?: string;
	c2sPort?: number;
	/** Ports of other listeners by name (0, the system's pick, when absent). */
	ports?: Record<string, number>;
	/** Turns the s2s listener (off by default) on, on this port. */
	s2sPort?: number;
	tls?: string;
	/** More TOML tables, appended. */
	extra?: string;
}

/** Every listener the schema knows, by name, with its defaults (c2s, c2s_direct_tls, http...). */
const DEFAULT_LISTENERS = configSchema.parse({}).listeners;

/** A temp directory with a parley.toml: SQLite under ./data, loopback listeners, two hosts. */
function project(opts: ProjectOptions = {}): { dir: string; config: string } {
	const dir = tempDir();
	const config = join(dir, "parley.toml");
	// Every listener on loopback and a port the system picks, so that tests run side by side.
	const listeners = Object.keys(DEFAULT_LISTENERS)
		.map((name) => {
			const port =
				opts.ports?.[name] ??
				(name === "c2s" ? opts.c2sPort : name === "s2s" ? opts.s2sPort : undefined);
			// Federation (on by default) only where a test asks for it.
			const on =
				name === "s2s"
					? opts.s2sPort !== undefined
						? "enabled = true\n"
						: "enabled = false\n"
					: "";
			return `[listeners.${name}]\n${on}address = "127.0.0.1"\nport = ${port ?? 0}\n`;
		})
		.join("\n");
	writeFileSync(
		config,
		`# written by test/e2e/cli.test.ts
[server]
data_dir = "data"

[log]
level = "${opts.level ?? "info"}"
format = "${opts.format ?? "auto"}"

[storage]
backend = "sqlite"

[auth]
# Plain TCP and PLAIN for the raw test client; the defaults require TLS.
require_encryption = false
allow_plain_without_tls = true

${listeners}${opts.tls ?? ""}${opts.extra ?? ""}
[hosts.localhost]

[hosts."other.example"]
`,
	);
	return { dir, config };
}

type LogLine = Record<string, unknown> & { level?: string; msg?: string };

/** `parley serve` as a child process whose JSON log lines are collected as they come. */
class Serve {
	readonly child: ChildProcess;
	readonly lines: LogLine[] = [];
	/** Lines of stdout that are not JSON (there should be none). */
	readonly other: string[] = [];
	stderr = "";
	readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
	closed = false;
	#buffer = "";
	#waiters: (() => void)[] = [];

	constructor(args: string[], cwd?: string, env: NodeJS.ProcessEnv = {}) {
		this.child = spawn(process.execPath, [BIN, "serve", ...args], {
			cwd,
			env: { ...process.env, PARLEY_CONFIG: "", ...env },
			stdio: ["ignore", "pipe", "pipe"],
		});
		this.child.stdout?.setEncoding("utf8").on("data", (d: string) => this.#data(d));
		this.child.stderr?.setEncoding("utf8").on("data", (d: string) => {
			this.stderr += d;
		});
		this.exited = new Promise((resolve) => {
			// "close", not "exit": by then everything the child wrote has been read.
			this.child.on("close", (code, signal) => {
				this.closed = true;
				resolve({ code, signal });
				this.#wake();
			});
		});
	}

	#data(d: string): void {
		this.#buffer += d;
		let nl = this.#buffer.indexOf("\n");
		while (nl >= 0) {
			const line = this.#buffer.slice(0, nl);
			this.#buffer = this.#buffer.slice(nl + 1);
			try {
				this.lines.push(JSON.parse(line) as LogLine);
			} catch {
				this.other.push(line);
			}
			nl = this.#buffer.indexOf("\n");
		}
		this.#wake();
	}

	#wake(): void {
		for (const w of this.#waiters.splice(0)) w();
	}

	/** Waits for a log line matching `pred` (30 s safety net for a loaded machine, not a timing assertion). */
	async waitLog(pred: (l: LogLine) => boolean, what: string): Promise<LogLine> {
		const deadline = Date.now() + 30_000;
		for (;;) {
			const found = this.lines.find(pred);
			if (found) return found;
			if (this.closed || Date.now() > deadline)
				throw new Error(
					`no log line "${what}" (exit ${this.child.exitCode} ${this.child.signalCode}); stdout: ${JSON.stringify(this.lines)} ${this.other.join("\n")} stderr: ${this.stderr}`,
				);
			await new Promise<void>((resolve) => {
				const t = setTimeout(resolve, 100);
				this.#waiters.push(() => {
					clearTimeout(t);
					resolve();
				});
			});
		}
	}

	running(): Promise<LogLine> {
		return this.waitLog((l) => l.msg === "Parley is running", "Parley is running");
	}

	/** Waits for a file to appear (the pid file is written just after the "running" line). */
	async file(path: string): Promise<void> {
		const deadline = Date.now() + 30_000;
		while (!existsSync(path)) {
			if (this.closed || Date.now() > deadline)
				throw new Error(`no ${path}; stdout: ${JSON.stringify(this.lines)} stderr: ${this.stderr}`);
			await new Promise((r) => setTimeout(r, 20));
		}
	}

	/** The port the c2s listener bound (the config says 0). */
	async c2sPort(): Promise<number> {
		const l = await this.waitLog((x) => x.msg === "listening" && x.listener === "c2s", "listening");
		return l.port as number;
	}

	/** Ends the process if a test failed before it did (only this child, by its own handle). */
	kill(): void {
		if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
	}
}

describe("--help and usage errors", () => {
	test("--help on the program and on every subcommand exits 0 and prints usage", async () => {
		const commands = [
			[],
			["serve"],
			["check"],
			["user"],
			["user", "add"],
			["user", "del"],
			["user", "passwd"],
			["user", "list"],
			["user", "import"],
		];
		const results = await inPool(commands, 3, (c) => run([...c, "--help"]));
		commands.forEach((c, i) => {
			const r = results[i] as RunResult;
			assert.equal(r.code, EXIT.OK, `parley ${c.join(" ")} --help: ${r.stderr}`);
			assert.match(r.stdout, new RegExp(`^Usage: parley ${c.join(" ")}`.trimEnd()), c.join(" "));
		});
		assert.match(results[1]?.stdout ?? "", /--pidfile <file>/);
		assert.match(results[4]?.stdout ?? "", /--password-stdin/);
	});

	test("an unknown command, an unknown option or a missing argument exits 2", async () => {
		const bad = [["frobnicate"], ["user", "frobnicate"], ["serve", "--bogus"], ["user", "add"]];
		const results = await inPool(bad, 3, (c) => run(c));
		bad.forEach((c, i) => {
			const r = results[i] as RunResult;
			assert.equal(r.code, EXIT.USAGE, `parley ${c.join(" ")}: ${r.stderr}`);
			assert.match(r.stderr, /error: /);
		});
	});
});

describe("user commands", () => {
	test("add, duplicate, del, passwd, list, bad JIDs: output and exit codes", async () => {
		const { config } = project();
		const c = ["--config", config];
		let r = await run(["user", "add", "alice@localhost", "--password", "a1", ...c]);
		assert.equal(r.code, EXIT.OK, r.stderr);
		assert.equal(r.stdout.trim(), "created alice@localhost");
		r = await run(["user", "add", "bob@localhost", "--password-stdin", ...c], {
			input: "bob's password\nignored second line\n",
		});
		assert.equal(r.code, EXIT.OK, r.stderr);
		r = await run(["user", "add", "carol@other.example", "--password", "c1", ...c]);
		assert.equal(r.code, EXIT.OK, r.stderr);

		// Independent of each other: run them side by side.
		const cases: [string[], number, RegExp][] = [
			[["user", "add", "alice@localhost", "--password", "x"], EXIT.EXISTS, /already exists/],
			[["user", "del", "nobody@localhost"], EXIT.NOT_FOUND, /does not exist/],
			[["user", "passwd", "nobody@localhost", "--password", "x"], EXIT.NOT_FOUND, /not exist/],
			// RFC 7622 §3.3.1: a space is not allowed in a localpart.
			[["user", "add", "al ice@localhost", "--password", "x"], EXIT.USAGE, /not a valid JID/],
			[["user", "add", "alice@localhost/phone", "--password", "x"], EXIT.USAGE, /bare JID/],
			[["user", "add", "localhost", "--password", "x"], EXIT.USAGE, /bare JID/],
			[
				["user", "add", "dave@elsewhere.example", "--password", "x"],
				EXIT.USAGE,
				/elsewhere\.example is not a host in the configuration/,
			],
			[["user", "list", "elsewhere.example"], EXIT.USAGE, /not a host/],
		];
		const results = await inPool(cases, 3, ([args]) => run([...args, ...c]));
		cases.forEach(([args, code, message], i) => {
			const res = results[i] as RunResult;
			assert.equal(res.code, code, `parley ${args.join(" ")}: ${res.stderr}`);
			assert.match(res.stderr, message, args.join(" "));
		});

		const [listLocal, listAll] = await Promise.all([
			run(["user", "list", "localhost", ...c]),
			run(["user", "list", ...c]),
		]);
		assert.equal(listLocal?.code, EXIT.OK);
		assert.deepEqual(listLocal?.stdout.trim().split("\n").sort(), [
			"alice@localhost",
			"bob@localhost",
		]);
		assert.deepEqual(listAll?.stdout.trim().split("\n").sort(), [
			"alice@localhost",
			"bob@localhost",
			"carol@other.example",
		]);

		r = await run(["user", "del", "bob@localhost", ...c]);
		assert.equal(r.code, EXIT.OK, r.stderr);
		assert.equal(r.stdout.trim(), "deleted bob@localhost");
		r = await run(["user", "list", "localhost", ...c]);
		assert.equal(r.stdout.trim(), "alice@localhost");
	});

	test("an invalid configuration file exits 3 and names the key and its line", async () => {
		const dir = tempDir();
		const config = join(dir, "parley.toml");
		writeFileSync(
			config,
			'[server]\nname = "x"\ndata_dr = "data"\n\n[limits]\nstanza_size = "big"\n',
		);
		const r = await run(["user", "list", "--config", config]);
		assert.equal(r.code, EXIT.CONFIG, r.stderr);
		assert.match(
			r.stderr,
			/parley\.toml:3: unknown key "data_dr" in \[server\]; did you mean data_dir\?/,
		);
		assert.match(
			r.stderr,
			/parley\.toml:6: limits\.stanza_size: expected an integer >= 1024, got "big"/,
		);
	});

	test("a TOML syntax error exits 3 with one line: where the parser stopped and where the array began", async () => {
		const dir = tempDir();
		writeFileSync(
			join(dir, "parley.toml"),
			'[server]\nname = "x"\n\n[hosts.localhost]\nmodules = ["disco", "ping"\n\n[limits]\nstanza_size = 2000\n',
		);
		const r = await run(["check"], { cwd: dir });
		assert.equal(r.code, EXIT.CONFIG);
		assert.equal(
			r.stderr,
			'parley: parley.toml:7:1: TOML syntax error: expected comma or end of structure, in the array that begins at parley.toml:5:11 (is a "]" missing?)\n',
		);
	});

	test("user import of 2000 JID PASSWORD lines from stdin creates them all", async (t) => {
		const { config } = project();
		const n = 2000;
		const lines = Array.from(
			{ length: n },
			(_, i) => `user${i}@${i % 2 ? "localhost" : "other.example"} secret-${i}`,
		);
		const started = performance.now();
		const r = await run(["user", "import", "--config", config], {
			input: `# a comment line\n${lines.join("\n")}\n`,
		});
		const seconds = (performance.now() - started) / 1000;
		assert.equal(r.code, EXIT.OK, r.stderr);
		assert.equal(r.stdout.trim(), `created ${n} accounts`);
		t.diagnostic(
			`user import: ${n} accounts in ${seconds.toFixed(2)} s = ${Math.round((n / seconds) * 60)} accounts/minute (process start included)`,
		);
		const list = await run(["user", "list", "--config", config]);
		assert.equal(list.stdout.trim().split("\n").length, n);
		// Importing again fails on the first duplicate unless told to skip.
		const again = await run(["user", "import", "--config", config, "--skip-existing"], {
			input: `${lines[0]}\nnew@localhost pw\n`,
		});
		assert.equal(again.code, EXIT.OK, again.stderr);
		assert.equal(again.stdout.trim(), "created 1 accounts, skipped 1 existing");
	});
});

describe("serve", () => {
	test("user commands work while serve runs on the same SQLite data; the new account logs in (RFC 6120 §6)", async () => {
		const { dir, config } = project();
		const serve = new Serve(["--config", config], dir);
		try {
			await serve.running();
			const port = await serve.c2sPort();
			const add = await run([
				"user",
				"add",
				"erin@localhost",
				"--password",
				"first",
				"--config",
				config,
			]);
			assert.equal(add.code, EXIT.OK, add.stderr);
			const c = await login(port, "erin", "first", { mechanism: "SCRAM-SHA-256" });
			assert.match(c.received, /<jid>erin@localhost\//);
			c.end();

			const passwd = await run(
				["user", "passwd", "erin@localhost", "--password-stdin", "--config", config],
				{ input: "second\n" },
			);
			assert.equal(passwd.code, EXIT.OK, passwd.stderr);
			// RFC 6120 §6.5.10: the old password is refused, the new one works.
			await assert.rejects(login(port, "erin", "first"), /<not-authorized\/>/);
			(await login(port, "erin", "second")).end();
		} finally {
			serve.kill();
		}
	});

	for (const signal of ["SIGTERM", "SIGINT"] as const) {
		test(`--pidfile, then ${signal}: clients get system-shutdown, exit 0, pid file removed (RFC 6120 §4.9.3.22)`, async () => {
			const { dir, config } = project();
			const add = await run([
				"user",
				"add",
				"frank@localhost",
				"--password",
				"pw",
				"--config",
				config,
			]);
			assert.equal(add.code, EXIT.OK, add.stderr);
			const pidfile = join(dir, "parley.pid");
			const serve = new Serve(["--config", config, "--pidfile", pidfile], dir);
			try {
				await serve.running();
				await serve.file(pidfile);
				assert.equal(readFileSync(pidfile, "utf8").trim(), String(serve.child.pid));
				const c = await login(await serve.c2sPort(), "frank", "pw");
				const mark = c.received.length;
				serve.child.kill(signal);
				const tail = await c.waitFor("</stream:stream>", mark);
				assert.match(
					tail,
					/<stream:error><system-shutdown xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>[\s\S]*<\/stream:error><\/stream:stream>/,
				);
				await c.waitClosed();
				assert.deepEqual(await serve.exited, { code: 0, signal: null });
				assert.equal(existsSync(pidfile), false, "the pid file is removed");
				assert.ok(serve.lines.some((l) => l.msg === "stopping" && l.signal === signal));
				assert.ok(serve.lines.some((l) => l.msg === "Parley stopped"));
			} finally {
				serve.kill();
			}
		});
	}

	test("serve runs with jemalloc where it is installed, as the process it was started as; PARLEY_MALLOC=system keeps glibc's malloc (issue 21)", {
		skip:
			process.platform !== "linux" || !JEMALLOC_PATHS.some((p) => existsSync(p))
				? "needs Linux with jemalloc installed (Debian: libjemalloc2)"
				: false,
	}, async () => {
		for (const [malloc, jemalloc] of [
			[undefined, true],
			["system", false],
		] as const) {
			const { dir, config } = project();
			const serve = new Serve(["--config", config], dir, {
				PARLEY_MALLOC: malloc,
				LD_PRELOAD: undefined,
			});
			try {
				await serve.running();
				// The pid the starter knows is the server's (execve keeps it), and the
				// allocator is mapped in it.
				const maps = readFileSync(`/proc/${serve.child.pid}/maps`, "utf8");
				assert.equal(/libjemalloc/.test(maps), jemalloc, `PARLEY_MALLOC=${malloc}`);
			} finally {
				serve.kill();
			}
		}
	});

	test("logs are JSON lines with level and msg on a pipe; log.level = warn drops info lines", async () => {
		const info = project();
		const warn = project({ level: "warn" });
		const pidfile = join(warn.dir, "parley.pid");
		const a = new Serve(["--config", info.config], info.dir);
		const b = new Serve(["--config", warn.config, "--pidfile", pidfile], warn.dir);
		try {
			await a.running();
			// With info lines off there is no "running" line: the pid file says it has started.
			await b.file(pidfile);
			a.child.kill("SIGTERM");
			b.child.kill("SIGTERM");
			assert.equal((await a.exited).code, 0);
			assert.equal((await b.exited).code, 0);
			for (const s of [a, b]) {
				assert.deepEqual(s.other, [], "every stdout line is JSON");
				for (const l of s.lines) {
					assert.equal(typeof l.msg, "string");
					assert.equal(typeof l.time, "string");
					assert.match(String(l.level), /^(trace|debug|info|warn|error|fatal)$/);
				}
			}
			assert.ok(a.lines.some((l) => l.level === "info"));
			// Both generated a self-signed certificate: a warning, which log.level=warn keeps.
			assert.ok(b.lines.some((l) => l.level === "warn" && /self-signed/.test(String(l.msg))));
			assert.deepEqual(
				b.lines.filter((l) => l.level === "info" || l.level === "debug"),
				[],
				"no info lines at log.level = warn",
			);
		} finally {
			a.kill();
			b.kill();
		}
	});

	test("log.format = pretty (a terminal's default): one plain line per listener with its address", async () => {
		const { dir, config } = project({ format: "pretty" });
		const serve = new Serve(["--config", config], dir);
		try {
			const deadline = Date.now() + 30_000;
			while (
				!serve.other.some((l) => /INFO: Parley is running for localhost, other\.example$/.test(l))
			) {
				assert.ok(
					!serve.closed && Date.now() < deadline,
					`${serve.other.join("\n")}${serve.stderr}`,
				);
				await new Promise((r) => setTimeout(r, 50));
			}
			const listening = serve.other.filter((l) => /INFO: listening/.test(l));
			const expected = [
				["c2s", "clients, STARTTLS"],
				["c2s_direct_tls", "clients, direct TLS \\(XEP-0368\\)"],
				["http", "BOSH, WebSocket and discovery over plain HTTP"],
				["https", "BOSH, WebSocket and discovery over HTTPS"],
				["admin", "the admin API \\(JSON over HTTP, HTTPS off loopback\\)"],
			];
			assert.equal(listening.length, expected.length, listening.join("\n"));
			for (const [name, purpose] of expected)
				assert.ok(
					listening.some((l) =>
						new RegExp(
							`INFO: listening on 127\\.0\\.0\\.1:[1-9]\\d* \\(listeners\\.${name}: ${purpose}\\)$`,
						).test(l),
					),
					`${name}: ${listening.join("\n")}`,
				);
			// The fields are in the line: none follows on lines of its own.
			assert.ok(
				!serve.other.some((l) => /^\s+(listener|address|port|hosts):/.test(l)),
				serve.other.join("\n"),
			);
			serve.child.kill("SIGTERM");
			assert.equal((await serve.exited).code, 0);
		} finally {
			serve.kill();
		}
	});

	test("with no configuration file at all: defaults, self-signed certificate, data under ./data", async (t) => {
		// The built-in defaults listen on [::]:5222, [::]:5223 (and the other default listeners);
		// skip if this machine uses one of them.
		const defaultPorts = Object.values(DEFAULT_LISTENERS)
			.filter((l) => l.enabled)
			.map((l) => l.port);
		for (const port of defaultPorts) {
			const free = await new Promise<boolean>((resolve) => {
				const s = net.createServer();
				s.once("error", () => resolve(false));
				s.listen({ host: "::", port }, () => s.close(() => resolve(true)));
			});
			if (!free) {
				t.skip(`port ${port} on [::] is in use or IPv6 is unavailable on this machine`);
				return;
			}
		}
		const cwd = tempDir();
		const serve = new Serve([], cwd);
		try {
			const running = await serve.running();
			assert.deepEqual(running.hosts, ["localhost"]);
			const generated = await serve.waitLog(
				(l) => /^generated a self-signed certificate for localhost/.test(String(l.msg)),
				"generated a self-signed certificate",
			);
			assert.equal(generated.level, "warn");
			const ports = serve.lines.filter((l) => l.msg === "listening").map((l) => l.port);
			assert.ok(ports.includes(5222) && ports.includes(5223), `listening on ${ports.join(", ")}`);
			assert.ok(existsSync(join(cwd, "data", "parley.sqlite")), "./data/parley.sqlite");
			assert.ok(existsSync(join(cwd, "data", "certs", "self-signed.crt")), "./data/certs");
			serve.child.kill("SIGTERM");
			assert.deepEqual(await serve.exited, { code: 0, signal: null });
		} finally {
			serve.kill();
		}
	});
});

describe("serve: a port it cannot open", () => {
	/** A port held by this test process on 127.0.0.1, until `close`. */
	async function holdPort(): Promise<{ port: number; close: () => void }> {
		const busy = net.createServer();
		await new Promise<void>((resolve) => busy.listen({ host: "127.0.0.1", port: 0 }, resolve));
		return { port: (busy.address() as net.AddressInfo).port, close: () => busy.close() };
	}

	test("a port in use: one line naming the key, exit 1, no stack trace, nothing written", async () => {
		const busy = await holdPort();
		try {
			const { dir, config } = project({ c2sPort: busy.port });
			const r = await run(["serve", "--config", config], { cwd: dir });
			assert.equal(r.code, 1, r.stderr);
			assert.equal(
				r.stderr,
				`parley: listeners.c2s: port ${busy.port} on 127.0.0.1 is in use; stop the program using it or set another listeners.c2s.port\n`,
			);
			assert.equal(r.stdout, "", "no log record (a FATAL one with a stack trace before)");
			// Tested before storage opens and the self-signed certificate is written.
			assert.equal(existsSync(join(dir, "data")), false, "no data directory");
		} finally {
			busy.close();
		}
	});

	test("two listeners on one port: the second is named, exit 1", async () => {
		const busy = await holdPort();
		busy.close();
		const { dir, config } = project({ c2sPort: busy.port, ports: { https: busy.port } });
		const r = await run(["serve", "--config", config], { cwd: dir });
		assert.equal(r.code, 1, r.stderr);
		assert.equal(
			r.stderr,
			`parley: listeners.https: port ${busy.port} on 127.0.0.1 is also listeners.c2s's port; change listeners.https.port or listeners.https.address\n`,
		);
	});
});

describe("where the configuration is found: --config, PARLEY_CONFIG, ./parley.toml, defaults", () => {
	test("every command reads ./parley.toml without --config; check says which file", async () => {
		const { dir } = project();
		const [check, add] = await Promise.all([
			run(["check"], { cwd: dir }),
			run(["user", "add", "gina@other.example", "--password", "pw"], { cwd: dir }),
		]);
		assert.equal(check.code, EXIT.OK, check.stderr);
		assert.match(
			check.stdout,
			/^configuration: parley\.toml \(found in the working directory\): ok$/m,
		);
		assert.match(check.stdout, /^hosts: localhost, other\.example$/m);
		// other.example exists only in that file.
		assert.equal(add.code, EXIT.OK, add.stderr);
		const list = await run(["user", "list", "other.example"], { cwd: dir });
		assert.equal(list.stdout, "gina@other.example\n");
	});

	test("PARLEY_CONFIG names the file; --config wins over it; a missing one exits 3", async () => {
		const a = project();
		const elsewhere = tempDir();
		const r = await run(["check"], { cwd: elsewhere, env: { PARLEY_CONFIG: a.config } });
		assert.equal(r.code, EXIT.OK, r.stderr);
		assert.ok(
			r.stdout.startsWith(`configuration: ${a.config} (from PARLEY_CONFIG): ok\n`),
			r.stdout,
		);
		const b = project({ extra: '\n[hosts."third.example"]\n' });
		const flag = await run(["check", "--config", b.config], {
			cwd: elsewhere,
			env: { PARLEY_CONFIG: a.config },
		});
		assert.match(flag.stdout, /^hosts: .*third\.example/m);
		const missing = await run(["user", "list"], {
			cwd: elsewhere,
			env: { PARLEY_CONFIG: join(elsewhere, "nope.toml") },
		});
		assert.equal(missing.code, EXIT.CONFIG);
		assert.equal(
			missing.stderr,
			`parley: ${join(elsewhere, "nope.toml")}: cannot read the configuration file: no such file (ENOENT) (named by PARLEY_CONFIG)\n`,
		);
	});

	test("with none of them, the built-in defaults (localhost, ./data); --help says the rule", async () => {
		const cwd = tempDir();
		const r = await run(["user", "list", "localhost"], { cwd });
		assert.equal(r.code, EXIT.OK, r.stderr);
		assert.equal(r.stdout, "");
		assert.ok(existsSync(join(cwd, "data", "parley.sqlite")), "./data/parley.sqlite");
		const help = await run(["check", "--help"], { cwd });
		assert.match(help.stdout, /default: \$PARLEY_CONFIG, else\s+\.\/parley\.toml if there is one/);
	});
});

describe("check", () => {
	test("an existing self-signed certificate is reported as it is: subject and expiry", async () => {
		const { dir, config } = project();
		const before = await run(["check", "--config", config]);
		assert.match(
			before.stdout,
			/^certificate for localhost: self-signed, none yet: generated at start as \S+self-signed\.crt$/m,
		);
		await generateSelfSigned(["localhost", "other.example"], join(dir, "data", "certs"));
		const r = await run(["check", "--config", config]);
		assert.equal(r.code, EXIT.OK, r.stderr);
		const path = join(dir, "data", "certs", "self-signed.crt").replace(/[.\\/]/g, "\\$&");
		for (const host of ["localhost", "other\\.example"])
			assert.match(
				r.stdout,
				new RegExp(
					`^certificate for ${host}: self-signed ${path} \\(CN=localhost, valid until \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z\\)$`,
					"m",
				),
			);
		assert.doesNotMatch(r.stdout, /generated at start/);
	});

	test("a good configuration passes (exit 0)", async () => {
		const { config } = project();
		const r = await run(["check", "--config", config]);
		assert.equal(r.code, EXIT.OK, r.stderr);
		assert.match(r.stdout, /hosts: localhost, other\.example/);
		assert.match(r.stdout, /all checks passed/);
		assert.doesNotMatch(r.stdout, /federation/, "no federation section while s2s is off");
	});

	test("anonymous hosts are listed with their limits, one line each (issue 20)", async () => {
		const { config } = project({
			extra:
				'\n[hosts."guest.example"]\nauthentication = "anonymous"\nanonymous = { max_sessions = 50, max_sessions_per_ip = 0 }\n',
		});
		const r = await run(["check", "--config", config]);
		assert.equal(r.code, EXIT.OK, r.stderr);
		assert.match(
			r.stdout,
			/^anonymous host guest\.example: SASL ANONYMOUS only, data in memory, max 50 sessions \(unlimited per IP\), federation refused, no registration$/m,
		);
		assert.equal(r.stdout.match(/^anonymous host /gm)?.length, 1);
	});

	test("a port in use exits 6 and names the listener", async () => {
		const busy = net.createServer();
		await new Promise<void>((resolve) => busy.listen({ host: "127.0.0.1", port: 0 }, resolve));
		try {
			const port = (busy.address() as net.AddressInfo).port;
			const { config } = project({ c2sPort: port });
			const r = await run(["check", "--config", config]);
			assert.equal(r.code, EXIT.CHECK_FAILED, r.stderr);
			// The same line serve prints for the same problem.
			assert.ok(
				r.stderr.includes(
					`parley: listeners.c2s: port ${port} on 127.0.0.1 is in use; stop the program using it or set another listeners.c2s.port\n`,
				),
				r.stderr,
			);
		} finally {
			busy.close();
		}
	});

	test("the component port is checked only when an external component will open it", async () => {
		const without = project();
		const r = await run(["check", "--config", without.config]);
		assert.equal(r.code, EXIT.OK, r.stderr);
		assert.doesNotMatch(r.stdout, /listener component/);
		const withBot = project({
			extra: '\n[components."bot.localhost"]\ntype = "external"\nsecret = "s3cret-s3cret"\n',
		});
		const r2 = await run(["check", "--config", withBot.config]);
		assert.equal(r2.code, EXIT.OK, r2.stderr);
		assert.match(r2.stdout, /^listener component on \[127\.0\.0\.1\]:0: port free$/m);
	});

	test("a cluster's Redis is pinged: reachable passes, unreachable exits 6 and says why", {
		skip: redisSkip,
	}, async () => {
		const up = project({
			extra: `\n[cluster]\nenabled = true\nredis = ${JSON.stringify(TEST_REDIS_URL)}\n`,
		});
		const ok = await run(["check", "--config", up.config]);
		assert.equal(ok.code, EXIT.OK, ok.stderr);
		assert.ok(ok.stdout.includes(`cluster: Redis at ${TEST_REDIS_URL}: reachable`), ok.stdout);
		// Port 1 on loopback: nothing listens there.
		const down = project({ extra: '\n[cluster]\nenabled = true\nredis = "redis://127.0.0.1:1"\n' });
		const r = await run(["check", "--config", down.config]);
		assert.equal(r.code, EXIT.CHECK_FAILED, r.stderr);
		assert.match(r.stderr, /cluster\.redis: not reachable \(connect ECONNREFUSED 127\.0\.0\.1:1\)/);
	});

	test("a certificate path that does not exist exits 3 and names the key", async () => {
		const { config } = project({ tls: '\n[tls]\ncert = "missing.crt"\nkey = "missing.key"\n' });
		const r = await run(["check", "--config", config]);
		assert.equal(r.code, EXIT.CONFIG, r.stderr);
		assert.match(
			r.stderr,
			/parley\.toml:\d+: tls\.cert: cannot read "missing\.crt" .*no such file/,
		);
		assert.match(r.stderr, /tls\.key: cannot read "missing\.key"/);
	});
});

describe("check with federation on ([listeners.s2s])", () => {
	/** A port nothing listens on now (the system's pick, released). */
	async function freePort(): Promise<number> {
		const s = net.createServer();
		await new Promise<void>((resolve) => s.listen({ host: "127.0.0.1", port: 0 }, resolve));
		const port = (s.address() as net.AddressInfo).port;
		await new Promise((resolve) => s.close(resolve));
		return port;
	}

	test("a test-CA certificate and s2s.ca_file: valid for every host (exit 0)", async () => {
		const cert = await serverCert(["localhost", "other.example"]);
		const ca = await testCa();
		const { config } = project({
			s2sPort: 0,
			tls: `\n[tls]\ncert = "${cert.certPath}"\nkey = "${cert.keyPath}"\n`,
			extra: `\n[s2s]\nca_file = "${ca.certPath}"\n`,
		});
		const r = await run(["check", "--config", config]);
		assert.equal(r.code, EXIT.OK, r.stderr);
		for (const host of ["localhost", "other.example"])
			assert.ok(
				r.stdout.includes(
					`federation: ${host}: certificate ${cert.certPath}: valid for federation (chains to a trusted root, names ${host})`,
				),
				r.stdout,
			);
		assert.match(r.stdout, /all checks passed/);
	});

	test("the same certificate without s2s.ca_file: untrusted, a warning (exit 0)", async () => {
		const cert = await serverCert(["localhost", "other.example"]);
		const { config } = project({
			s2sPort: 0,
			tls: `\n[tls]\ncert = "${cert.certPath}"\nkey = "${cert.keyPath}"\n`,
		});
		const r = await run(["check", "--config", config]);
		assert.equal(r.code, EXIT.OK, r.stderr);
		assert.match(
			r.stdout,
			/federation: localhost: certificate \S+: warning: not issued by a trusted authority \(system roots and s2s\.ca_file\): peers will only accept dialback/,
		);
	});

	test("the self-signed default: a warning; no DNS records: the fallback line (exit 0)", async () => {
		const port = await freePort();
		const { config } = project({
			s2sPort: port,
			extra: '\n[components."rooms.other.example"]\ntype = "muc"\n',
		});
		const r = await run(["check", "--config", config]);
		assert.equal(r.code, EXIT.OK, r.stderr);
		assert.match(
			r.stdout,
			new RegExp(`^listener s2s on \\[127\\.0\\.0\\.1\\]:${port}: port free$`, "m"),
		);
		for (const host of ["localhost", "other.example"]) {
			const h = host.replace(".", "\\.");
			assert.match(
				r.stdout,
				new RegExp(
					`^federation: ${h}: certificate: warning: self-signed \\(generated at start\\): peers will only accept dialback, and those requiring certificates \\(Prosody's s2s_secure_auth, Parley's s2s\\.secure_auth\\) will refuse$`,
					"m",
				),
			);
			// This machine has no DNS for the test domains.
			assert.match(
				r.stdout,
				new RegExp(
					`^federation: ${h}: SRV: warning: no _xmpp-server\\._tcp\\.${h} or _xmpps-server\\._tcp\\.${h} records; peers fall back to ${h}:5269 \\(RFC 6120 §3\\.2\\.2\\): the s2s listener is on port ${port}, not 5269`,
					"m",
				),
			);
		}
		// A component is checked too, with its parent host's certificate.
		assert.match(
			r.stdout,
			/^federation: rooms\.other\.example: certificate \(other\.example's\): warning: self-signed/m,
		);
		assert.match(r.stdout, /^federation: rooms\.other\.example: SRV: warning: no _xmpp-server/m);
		assert.match(r.stdout, /^federation: localhost: address of localhost: warning: only loopback/m);
		assert.match(
			r.stdout,
			/^federation: other\.example: address of other\.example: warning: no address/m,
		);
		assert.match(r.stdout, /all checks passed/);
	});

	test("the s2s port in use exits 6 with the listener line", async () => {
		const busy = net.createServer();
		await new Promise<void>((resolve) => busy.listen({ host: "127.0.0.1", port: 0 }, resolve));
		try {
			const port = (busy.address() as net.AddressInfo).port;
			const { config } = project({ s2sPort: port });
			const r = await run(["check", "--config", config]);
			assert.equal(r.code, EXIT.CHECK_FAILED, r.stderr);
			assert.match(
				r.stdout,
				new RegExp(`listener s2s on \\[127\\.0\\.0\\.1\\]:${port}: PORT IN USE`),
			);
			assert.match(
				r.stderr,
				new RegExp(`listeners\\.s2s: port ${port} on 127\\.0\\.0\\.1 is in use`),
			);
		} finally {
			busy.close();
		}
	});

	test("an expired certificate exits 6 and names the file", async () => {
		const dir = tempDir();
		const day = 24 * 3600 * 1000;
		const pems = await generate([{ name: "commonName", value: "localhost" }], {
			keyType: "ec",
			curve: "P-256",
			algorithm: "sha256",
			notBeforeDate: new Date(Date.now() - 30 * day),
			notAfterDate: new Date(Date.now() - day),
			extensions: [
				{
					name: "subjectAltName",
					altNames: [
						{ type: 2, value: "localhost" },
						{ type: 2, value: "other.example" },
					],
				},
			],
		});
		writeFileSync(join(dir, "old.crt"), pems.cert);
		writeFileSync(join(dir, "old.key"), pems.private);
		const { config } = project({
			s2sPort: 0,
			tls: `\n[tls]\ncert = "${join(dir, "old.crt")}"\nkey = "${join(dir, "old.key")}"\n`,
		});
		const r = await run(["check", "--config", config]);
		assert.equal(r.code, EXIT.CHECK_FAILED, r.stderr);
		assert.match(r.stdout, /^federation: localhost: certificate \S+old\.crt: EXPIRED \(/m);
		assert.match(
			r.stderr,
			/federation\.localhost: certificate \S+old\.crt: certificate CN=localhost is expired or not yet valid/,
		);
	});
});

describe("docs/configuration.md", () => {
	const doc = readFileSync(
		fileURLToPath(new URL("../../docs/configuration.md", import.meta.url)),
		"utf8",
	);

	/** Every key path of the schema: `server.data_dir`, `listeners.c2s.port`, `hosts.*.tls`. */
	function keyPaths(schema: z.ZodType, prefix: string[]): string[][] {
		let s = schema;
		while (s instanceof z.ZodDefault || s instanceof z.ZodPrefault || s instanceof z.ZodOptional)
			s = s.unwrap() as z.ZodType;
		if (s instanceof z.ZodRecord) return keyPaths(s.valueType as z.ZodType, [...prefix, "*"]);
		// `[components.*]`: every type's table, each by its `type`.
		if (s instanceof z.ZodDiscriminatedUnion)
			return (s.options as z.ZodType[]).flatMap((o) => keyPaths(o, prefix));
		if (!(s instanceof z.ZodObject) || prefix.at(-1) === "tls") return [prefix];
		return Object.entries(s.shape as Record<string, z.ZodType>).flatMap(([k, v]) =>
			keyPaths(v, [...prefix, k]),
		);
	}

	test("names every configuration key of src/core/config/schema.ts", () => {
		const missing = keyPaths(configSchema, [])
			.filter((p) => !p.includes("module_options") || p.at(-1) === "module_options")
			// Documented by its last segment, in the table of its section.
			.filter((p) => !doc.includes(`\`${p.at(-1)}\``))
			.map((p) => p.join("."));
		assert.deepEqual(missing, []);
		for (const table of Object.keys(configSchema.shape))
			assert.ok(doc.includes(`### \`[${table === "hosts" ? 'hosts."<domain>"' : table}`), table);
	});

	test("lists every built-in module and each of its options", () => {
		for (const m of builtinModules()) {
			assert.ok(doc.includes(`| \`${m.name}\``), `module ${m.name}`);
			const options = m.options?.safeParse({});
			if (options?.success)
				for (const key of Object.keys(options.data as object))
					assert.ok(
						doc.includes(`\`${m.name}.${key}\``) || doc.includes(`.${key}\``),
						`${m.name}.${key}`,
					);
		}
	});

	test("the complete example is a valid configuration with valid module options", () => {
		const example = /```toml\n([\s\S]*?)```/.exec(doc)?.[1];
		assert.ok(example);
		const config = parseConfig(example, "example.toml", { baseDir: tmpdir() });
		const modules = new Map(builtinModules().map((m) => [m.name, m]));
		for (const [name, host] of Object.entries(config.hosts)) {
			for (const m of host.modules) assert.ok(modules.has(m), `${name}: unknown module ${m}`);
			for (const [m, options] of Object.entries(host.module_options)) {
				const parsed = modules.get(m)?.options?.safeParse(options);
				assert.ok(parsed?.success, `${name}: module_options.${m}`);
			}
		}
	});
});
