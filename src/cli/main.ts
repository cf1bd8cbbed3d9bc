/**
 * The `parley` command. Exit codes scripts can rely on (also in the README):
 *   0 success · 1 runtime failure · 2 usage error · 3 invalid configuration
 *   4 account not found · 5 account already exists · 6 check failed
 */

import { unlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import { Command, CommanderError } from "commander";
import pkg from "../../package.json" with { type: "json" };
import { AccountError, AccountManager } from "../auth/accounts.ts";
import {
	ConfigError,
	defaultConfig,
	loadConfigFile,
	resolveDataPath,
} from "../core/config/load.ts";
import type { Config } from "../core/config/schema.ts";
import { createStorage } from "../storage/index.ts";
import type { StorageBackend } from "../storage/types.ts";
import { JIDError, parseJID } from "../xmpp/jid.ts";

export const EXIT = {
	OK: 0,
	FAILURE: 1,
	USAGE: 2,
	CONFIG: 3,
	NOT_FOUND: 4,
	EXISTS: 5,
	CHECK_FAILED: 6,
} as const;

class CliError extends Error {
	readonly exitCode: number;
	constructor(message: string, exitCode: number) {
		super(message);
		this.exitCode = exitCode;
	}
}

function loadConfig(path: string | undefined): Config {
	try {
		return path ? loadConfigFile(path) : defaultConfig();
	} catch (err) {
		if (err instanceof ConfigError) throw new CliError(err.message, EXIT.CONFIG);
		throw err;
	}
}

/** Opens the accounts of the host a JID belongs to, on the configured storage. */
function openAccounts(
	config: Config,
	storage: StorageBackend,
	jidText: string,
): { accounts: AccountManager; user: string } {
	let jid: ReturnType<typeof parseJID>;
	try {
		jid = parseJID(jidText);
	} catch (err) {
		if (err instanceof JIDError) throw new CliError(`"${jidText}" is not a valid JID`, EXIT.USAGE);
		throw err;
	}
	if (!jid.local || jid.resource)
		throw new CliError(`"${jidText}" must be a bare JID like user@host`, EXIT.USAGE);
	if (!config.hosts[jid.domain])
		throw new CliError(`${jid.domain} is not a host in the configuration`, EXIT.USAGE);
	return {
		accounts: new AccountManager(storage, jid.domain, config.auth.scram_iterations),
		user: jid.local,
	};
}

async function withStorage<T>(
	config: Config,
	fn: (storage: StorageBackend) => Promise<T>,
): Promise<T> {
	const storage = createStorage(config.storage, resolveDataPath(config, "."));
	try {
		return await fn(storage);
	} finally {
		await storage.close();
	}
}

function accountError(err: unknown): never {
	if (err instanceof AccountError) {
		const code =
			err.code === "exists" ? EXIT.EXISTS : err.code === "not-found" ? EXIT.NOT_FOUND : EXIT.USAGE;
		throw new CliError(err.message, code);
	}
	throw err;
}

async function readStdinLines(): Promise<string[]> {
	const lines: string[] = [];
	const rl = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
	for await (const line of rl) lines.push(line);
	return lines;
}

/** Asks for a password twice on a terminal without echoing it. */
async function promptPassword(): Promise<string> {
	if (!process.stdin.isTTY) {
		const [first] = await readStdinLines();
		if (!first) throw new CliError("no password given on standard input", EXIT.USAGE);
		return first;
	}
	const ask = (q: string) =>
		new Promise<string>((resolve) => {
			const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
			const out = rl as unknown as { _writeToOutput: (s: string) => void };
			rl.question(q, (answer) => {
				rl.close();
				process.stderr.write("\n");
				resolve(answer);
			});
			// Echo nothing while the password is typed.
			out._writeToOutput = () => {};
		});
	const a = await ask("Password: ");
	const b = await ask("Again: ");
	if (a !== b) throw new CliError("the passwords do not match", EXIT.USAGE);
	return a;
}

async function resolvePassword(opts: {
	password?: string;
	passwordStdin?: boolean;
}): Promise<string> {
	if (opts.password !== undefined) return opts.password;
	if (opts.passwordStdin) {
		const [first] = await readStdinLines();
		if (first === undefined) throw new CliError("no password on standard input", EXIT.USAGE);
		return first;
	}
	return promptPassword();
}

async function serve(opts: { config?: string; pidfile?: string; workers?: string }): Promise<void> {
	const config = loadConfig(opts.config);
	// Loaded here, not at the top: the user commands start faster without the whole server.
	const { createServer: buildServer } = await import("../app/server.ts");
	const workers = await import("../cluster/workers.ts");
	if (workers.isWorker()) {
		workers.workerConfig(config);
		// The primary writes the pidfile; a worker inherits the option with the command line.
		delete opts.pidfile;
	} else {
		const count = workers.workerCount(parseWorkers(opts.workers) ?? config.server.workers);
		if (count > 1) return servePrimary(config, count, opts.pidfile);
	}
	const server = buildServer(config);
	// Signal handlers go in before start(): a SIGTERM that arrives while the server starts (or
	// right after its "running" line) must still stop it cleanly rather than kill it.
	let stopSignal: string | null = null;
	let wake: (() => void) | null = null;
	const onSignal = (signal: string) => {
		stopSignal ??= signal;
		wake?.();
	};
	const onTerm = () => onSignal("SIGTERM");
	const onInt = () => onSignal("SIGINT");
	process.on("SIGTERM", onTerm);
	process.on("SIGINT", onInt);
	try {
		await server.start();
	} catch (err) {
		process.off("SIGTERM", onTerm);
		process.off("SIGINT", onInt);
		server.log.fatal({ err }, "Parley could not start");
		throw new CliError(`could not start: ${(err as Error).message}`, EXIT.FAILURE);
	}
	if (opts.pidfile) writeFileSync(opts.pidfile, `${process.pid}\n`);
	if (workers.isWorker()) process.send?.({ parley: "running" });
	if (stopSignal === null)
		await new Promise<void>((resolve) => {
			wake = resolve;
		});
	server.log.info({ signal: stopSignal }, "stopping");
	// A second signal while stopping gets Node's default: the process ends at once. Not in a
	// worker: the primary passes the signal on, and a service manager may also signal the whole
	// process group (systemd's KillMode=control-group), so a worker sees it twice.
	if (!workers.isWorker()) {
		process.off("SIGTERM", onTerm);
		process.off("SIGINT", onInt);
	}
	await server.stop().catch((err: unknown) => {
		server.log.error({ err }, "error while stopping");
	});
	if (opts.pidfile) {
		try {
			unlinkSync(opts.pidfile);
		} catch {}
	}
	// A worker's channel to the primary would keep it alive.
	if (workers.isWorker()) process.disconnect?.();
}

function parseWorkers(value: string | undefined): Config["server"]["workers"] | undefined {
	if (value === undefined) return undefined;
	if (value === "auto") return "auto";
	const n = Number(value);
	if (!Number.isInteger(n) || n < 1 || n > 256)
		throw new CliError(
			`--workers: expected "auto" or an integer 1-256, got ${JSON.stringify(value)}`,
			EXIT.USAGE,
		);
	return n;
}

/** `server.workers` > 1: prepare once, then fork the workers (src/cluster/workers.ts). */
async function servePrimary(config: Config, count: number, pidfile?: string): Promise<void> {
	if (config.storage.backend === "memory")
		throw new CliError(
			"storage.backend: several workers need shared storage (sqlite or postgres), not memory",
			EXIT.CONFIG,
		);
	const { createServer: buildServer } = await import("../app/server.ts");
	const { runPrimary } = await import("../cluster/workers.ts");
	const server = buildServer(config);
	try {
		await server.prepare();
	} catch (err) {
		server.log.fatal({ err }, "Parley could not start");
		throw new CliError(`could not start: ${(err as Error).message}`, EXIT.FAILURE);
	}
	try {
		await runPrimary({
			workers: count,
			config,
			log: server.log,
			onRunning: () => {
				if (pidfile) writeFileSync(pidfile, `${process.pid}\n`);
			},
		});
	} catch (err) {
		server.log.fatal({ err }, "Parley stopped");
		throw new CliError((err as Error).message, EXIT.FAILURE);
	} finally {
		if (pidfile) {
			try {
				unlinkSync(pidfile);
			} catch {}
		}
	}
}

/** Why the cluster's Redis cannot be used (a PING), or undefined when it answers. */
async function redisProblem(url: string): Promise<string | undefined> {
	const { Redis } = await import("ioredis");
	const r = new Redis(url, {
		lazyConnect: true,
		connectTimeout: 3000,
		maxRetriesPerRequest: 0,
		retryStrategy: () => null,
	});
	// The socket's own error (ECONNREFUSED, ENOTFOUND, NOAUTH...) says more than the rejection.
	let cause = "";
	r.on("error", (err: Error) => {
		cause ||= err.message;
	});
	try {
		await r.connect();
		await r.ping();
		return undefined;
	} catch (err) {
		return `not reachable (${cause || (err as Error).message})`;
	} finally {
		r.disconnect();
	}
}

async function portFree(address: string, port: number): Promise<boolean> {
	return new Promise((resolve) => {
		const s = createServer();
		s.once("error", () => resolve(false));
		s.listen({ host: address, port }, () => s.close(() => resolve(true)));
	});
}

async function check(opts: { config?: string }): Promise<void> {
	const config = loadConfig(opts.config);
	const problems: string[] = [];
	console.log(`configuration: ${opts.config ?? "(built-in defaults)"}: ok`);
	const hosts = Object.entries(config.hosts)
		.filter(([, h]) => h.enabled)
		.map(([n]) => n);
	console.log(`hosts: ${hosts.join(", ")}`);
	const { loadCertificates } = await import("../tls/certs.ts");
	const { createLogger } = await import("../core/log.ts");
	const defaultFiles =
		config.tls.cert && config.tls.key ? { cert: config.tls.cert, key: config.tls.key } : undefined;
	// A check changes nothing: hosts that would get a generated certificate are only reported.
	const withFiles = hosts.filter((h) => config.hosts[h]?.tls || defaultFiles);
	for (const h of hosts.filter((h) => !withFiles.includes(h))) {
		if (config.tls.self_signed)
			console.log(`certificate for ${h}: self-signed, generated under the data directory at start`);
		else problems.push(`certificates: ${h} has no certificate and tls.self_signed is false`);
	}
	try {
		const certs = await loadCertificates({
			hosts: withFiles,
			perHost: Object.fromEntries(withFiles.map((h) => [h, config.hosts[h]?.tls])),
			defaultFiles,
			selfSigned: false,
			dataDir: resolveDataPath(config, "."),
			log: createLogger({ level: "warn", format: "pretty", destination: 2 }),
		});
		for (const c of certs.describe())
			console.log(
				`certificate for ${c.host}: ${c.source} ${c.path} (${c.subject}, valid until ${c.notAfter})`,
			);
	} catch (err) {
		problems.push(`certificates: ${(err as Error).message}`);
	}
	for (const [name, l] of Object.entries(config.listeners)) {
		if (!l.enabled) continue;
		const free = await portFree(l.address, l.port);
		console.log(
			`listener ${name} on [${l.address}]:${l.port}: ${free ? "port free" : "PORT IN USE"}`,
		);
		if (!free) problems.push(`listeners.${name}: port ${l.port} on ${l.address} is in use`);
	}
	const workers = await import("../cluster/workers.ts");
	if (config.cluster.enabled || workers.workerCount(config.server.workers) > 1) {
		const problem = await redisProblem(config.cluster.redis);
		console.log(`cluster: Redis at ${config.cluster.redis}: ${problem ?? "reachable"}`);
		if (problem) problems.push(`cluster.redis: ${problem}`);
	}
	if (problems.length) throw new CliError(problems.join("\n"), EXIT.CHECK_FAILED);
	console.log("all checks passed");
}

/** Storage errors (database down, schema too new, bad spec) as a one-line failure. */
function storageFailure(err: unknown): never {
	if (err instanceof CliError) throw err;
	throw new CliError((err as Error).message, EXIT.FAILURE);
}

/** Issue 4: `storage migrate`, `storage copy`, `export`, `import`. */
function addStorageCommands(program: Command): void {
	const storage = program.command("storage").description("storage schema and moving data");
	storage
		.command("migrate")
		.description("bring the database schema to this version (the server also does it on start)")
		.option("-c, --config <file>", "TOML configuration file")
		.option("--dry-run", "only show what would be done")
		.action(async (opts: { config?: string; dryRun?: boolean }) => {
			const config = loadConfig(opts.config);
			const { describePlan, migrateStorage } = await import("../storage/migrations/index.ts");
			const plan = await migrateStorage(config.storage, resolveDataPath(config, "."), {
				dryRun: opts.dryRun === true,
			}).catch(storageFailure);
			console.log(describePlan(plan));
		});
	storage
		.command("copy")
		.description(
			"copy every store of every host: --from/--to sqlite:<file> or postgres://…[?schema=s]",
		)
		.option("-c, --config <file>", "TOML configuration file (for data_dir)")
		.requiredOption("--from <storage>", "source, e.g. sqlite:parley.sqlite")
		.requiredOption("--to <storage>", "target, e.g. postgres://parley@127.0.0.1/parley")
		.action(async (opts: { config?: string; from: string; to: string }) => {
			const config = loadConfig(opts.config);
			const { copyStorage, openBackendSpec } = await import("../storage/copy.ts");
			const dataDir = resolveDataPath(config, ".");
			let from: StorageBackend | undefined;
			let to: StorageBackend | undefined;
			try {
				from = openBackendSpec(opts.from, dataDir);
				to = openBackendSpec(opts.to, dataDir);
				const s = await copyStorage(from, to);
				console.log(
					`copied ${s.keyval} keyval values, ${s.map} map entries, ${s.archive} archive items` +
						(s.skipped ? ` (${s.skipped} archive items already there)` : ""),
				);
			} catch (err) {
				storageFailure(err);
			} finally {
				await from?.close();
				await to?.close();
			}
		});
	program
		.command("export [host]")
		.description(
			"write a host's data (every host's without one) as XEP-0227 XML to standard output",
		)
		.option("-c, --config <file>", "TOML configuration file")
		.action(async (host: string | undefined, opts: { config?: string }) => {
			const config = loadConfig(opts.config);
			if (host && !config.hosts[host])
				throw new CliError(`${host} is not a host in the configuration`, EXIT.USAGE);
			const { exportPie } = await import("../storage/xep0227.ts");
			await withStorage(config, async (storage) => {
				const xml = await exportPie(storage, host ? [host] : Object.keys(config.hosts), {
					warn: (m) => console.error(`parley: warning: ${m}`),
				}).catch(storageFailure);
				process.stdout.write(xml);
			});
		});
	program
		.command("import <file>")
		.description('load a XEP-0227 XML file ("-": standard input) into the configured hosts')
		.option("-c, --config <file>", "TOML configuration file")
		.action(async (file: string, opts: { config?: string }) => {
			const config = loadConfig(opts.config);
			const { readFileSync } = await import("node:fs");
			const xml = file === "-" ? (await readStdinLines()).join("\n") : readFileSync(file, "utf8");
			const { importPie } = await import("../storage/xep0227.ts");
			await withStorage(config, async (storage) => {
				const stats = await importPie(storage, xml, {
					hosts: Object.keys(config.hosts),
					iterations: config.auth.scram_iterations,
					warn: (m) => console.error(`parley: warning: ${m}`),
				}).catch(storageFailure);
				console.log(`imported ${stats.users} users`);
				if (stats.skipped.length)
					throw new CliError(`not imported: ${stats.skipped.join(", ")}`, EXIT.FAILURE);
			});
		});
}

/**
 * `user add` and `user passwd`: `<jid>` and a password (from an option, standard input or the
 * prompt), then `change` on that account; prints the line `change` resolves to.
 */
function passwordCommand(
	command: Command,
	passwordHelp: string,
	change: (accounts: AccountManager, user: string, password: string) => Promise<string>,
): Command {
	return command
		.option("-c, --config <file>", "TOML configuration file")
		.option("-p, --password <password>", passwordHelp)
		.option("--password-stdin", "read the password from the first line of standard input")
		.action(
			async (
				jid: string,
				opts: { config?: string; password?: string; passwordStdin?: boolean },
			) => {
				const config = loadConfig(opts.config);
				const password = await resolvePassword(opts);
				await withStorage(config, async (storage) => {
					const { accounts, user: name } = openAccounts(config, storage, jid);
					console.log(await change(accounts, name, password).catch(accountError));
				});
			},
		);
}

export function buildProgram(): Command {
	const program = new Command("parley")
		.description("Parley, an XMPP server")
		.version(pkg.version)
		.exitOverride()
		.showHelpAfterError();

	program
		.command("serve")
		.description("run the server in the foreground until SIGTERM or SIGINT")
		.option("-c, --config <file>", "TOML configuration file (built-in defaults when absent)")
		.option("--pidfile <file>", "write the server's process id to this file")
		.option(
			"--workers <n>",
			'processes serving clients: a number or "auto" (one per core); overrides server.workers',
		)
		.action(serve);

	program
		.command("check")
		.description("check the configuration, the certificates and that the ports are free")
		.option("-c, --config <file>", "TOML configuration file")
		.action(check);

	const user = program.command("user").description("manage accounts (works while the server runs)");
	passwordCommand(
		user
			.command("add <jid>")
			.description("create an account; asks for the password unless one is given"),
		"the password (visible in the process list: prefer the prompt)",
		async (accounts, name, password) =>
			`created ${await accounts.create(name, password)}@${accounts.host}`,
	);
	user
		.command("import [file]")
		.description('create many accounts from lines "JID PASSWORD" (a file, or standard input)')
		.option("-c, --config <file>", "TOML configuration file")
		.option("--skip-existing", "skip accounts that already exist instead of failing")
		.action(async (file: string | undefined, opts: { config?: string; skipExisting?: boolean }) => {
			const config = loadConfig(opts.config);
			const { readFileSync } = await import("node:fs");
			const lines =
				file && file !== "-" ? readFileSync(file, "utf8").split(/\r?\n/) : await readStdinLines();
			const entries = lines
				.map((l, i) => ({ line: i + 1, text: l.trim() }))
				.filter((e) => e.text && !e.text.startsWith("#"));
			let created = 0;
			let skipped = 0;
			await withStorage(config, async (storage) => {
				// PBKDF2 runs on the thread pool: a few in flight keep every core busy.
				const width = 8;
				let next = 0;
				const errors: string[] = [];
				const worker = async () => {
					while (next < entries.length) {
						const e = entries[next++] as { line: number; text: string };
						const space = e.text.search(/\s/);
						if (space < 0) {
							errors.push(`line ${e.line}: expected "JID PASSWORD"`);
							continue;
						}
						const jid = e.text.slice(0, space);
						const password = e.text.slice(space).trim();
						try {
							const { accounts, user: name } = openAccounts(config, storage, jid);
							await accounts.create(name, password);
							created++;
						} catch (err) {
							if (err instanceof AccountError && err.code === "exists" && opts.skipExisting)
								skipped++;
							else errors.push(`line ${e.line}: ${(err as Error).message}`);
						}
					}
				};
				await Promise.all(Array.from({ length: width }, worker));
				console.log(`created ${created} accounts${skipped ? `, skipped ${skipped} existing` : ""}`);
				if (errors.length) throw new CliError(errors.join("\n"), EXIT.FAILURE);
			});
		});
	user
		.command("del <jid>")
		.description("delete an account and all its data")
		.option("-c, --config <file>", "TOML configuration file")
		.action(async (jid: string, opts: { config?: string }) => {
			const config = loadConfig(opts.config);
			await withStorage(config, async (storage) => {
				const { accounts, user: name } = openAccounts(config, storage, jid);
				await accounts.delete(name).catch(accountError);
				console.log(`deleted ${name}@${accounts.host}`);
			});
		});
	passwordCommand(
		user.command("passwd <jid>").description("set an account's password"),
		"the new password",
		async (accounts, name, password) => {
			await accounts.setPassword(name, password);
			return `password changed for ${name}@${accounts.host}`;
		},
	);
	user
		.command("list [host]")
		.description("list the accounts of one host, or of every host")
		.option("-c, --config <file>", "TOML configuration file")
		.action(async (host: string | undefined, opts: { config?: string }) => {
			const config = loadConfig(opts.config);
			const hosts = host ? [host] : Object.keys(config.hosts);
			if (host && !config.hosts[host])
				throw new CliError(`${host} is not a host in the configuration`, EXIT.USAGE);
			await withStorage(config, async (storage) => {
				for (const h of hosts) {
					const accounts = new AccountManager(storage, h, config.auth.scram_iterations);
					for (const u of await accounts.list()) console.log(`${u}@${h}`);
				}
			});
		});
	addStorageCommands(program);
	return program;
}

export async function main(argv: string[]): Promise<number> {
	const program = buildProgram();
	try {
		await program.parseAsync(argv, { from: "user" });
		return EXIT.OK;
	} catch (err) {
		if (err instanceof CommanderError) {
			// --help and --version end through here with exit code 0.
			return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
		}
		if (err instanceof CliError) {
			console.error(`parley: ${err.message}`);
			return err.exitCode;
		}
		console.error(`parley: ${(err as Error).stack ?? err}`);
		return EXIT.FAILURE;
	}
}
