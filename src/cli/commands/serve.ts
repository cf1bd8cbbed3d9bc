/**
 * `parley serve`: run the server in the foreground, alone or as the primary of several workers
 * (src/cluster/workers.ts), until SIGTERM or SIGINT.
 */
import { unlinkSync, writeFileSync } from "node:fs";
import type { Command } from "commander";
import { openedListeners } from "../../core/config/listeners.ts";
import { type ConfigSource, loadConfigSource } from "../../core/config/load.ts";
import type { Config } from "../../core/config/schema.ts";
import { createLogger, type Logger } from "../../core/log.ts";
import type { Server } from "../../core/server.ts";
import { CliError, CONFIG_HELP, describeSource, EXIT, loadConfigFrom } from "../common.ts";
import { listenerProblemLine, listenProblem, probeListeners } from "../ports.ts";

export function addServeCommand(program: Command): void {
	program
		.command("serve")
		.description("run the server in the foreground until SIGTERM or SIGINT")
		.option("-c, --config <file>", CONFIG_HELP)
		.option("--pidfile <file>", "write the server's process id to this file")
		.option(
			"--workers <n>",
			'processes serving clients: a number or "auto" (one per core); overrides server.workers',
		)
		.action(serve);
}

async function serve(opts: { config?: string; pidfile?: string; workers?: string }): Promise<void> {
	// Defaults, the file, then PARLEY_* variables: what every reload reads too.
	let { config, source } = loadConfigFrom(opts.config, process.env);
	// A restore a crash interrupted is finished (or thrown away) before the data is opened
	// (src/admin/backup/manager.ts); a finished one may have brought its configuration file.
	const { recoverRestore } = await import("../../admin/backup/manager.ts");
	const recovered = await recoverRestore(config, source.path);
	if (recovered === "busy")
		throw new CliError(
			"a restore or a factory reset is under way on this data: start when it is over",
			EXIT.FAILURE,
		);
	if (recovered === "completed") ({ config, source } = loadConfigFrom(opts.config, process.env));
	// Loaded here, not at the top: the user commands start faster without the whole server.
	const { createServer: buildServer } = await import("../../app/server.ts");
	const workers = await import("../../cluster/workers.ts");
	if (workers.isWorker()) {
		workers.workerConfig(config);
		// The primary writes the pidfile; a worker inherits the option with the command line.
		delete opts.pidfile;
	} else {
		const count = workers.workerCount(parseWorkers(opts.workers) ?? config.server.workers);
		// Before anything is opened or written (storage, the self-signed certificate): a port in
		// use is one line naming the key to change, and leaves nothing behind. Not in a worker:
		// the primary tested them, and the other workers already hold them (SO_REUSEPORT).
		// Several workers open no admin API (it runs under the Supervisor of one process).
		await portsFree(count > 1 ? withoutAdminListener(config) : config);
		if (count > 1) return servePrimary(config, describeSource(source), count, opts.pidfile);
	}
	if (workers.isWorker()) return serveWorker(buildServer(config));
	return serveSupervised(config, source, buildServer, opts.pidfile);
}

/**
 * One process: the XMPP server runs under the Supervisor (src/admin/), with the admin API on
 * `[listeners.admin]`; SIGHUP reloads the configuration, SIGTERM and SIGINT stop.
 */
async function serveSupervised(
	config: Config,
	source: ConfigSource,
	buildServer: (config: Config, opts: { log: Logger }) => Server,
	pidfile: string | undefined,
): Promise<void> {
	const { Supervisor } = await import("../../admin/supervisor.ts");
	const { AdminApi } = await import("../../admin/api.ts");
	const { adminCommands } = await import("../../admin/commands/index.ts");
	const { adminFromEnvironment } = await import("../../admin/accounts.ts");
	const { Audit } = await import("../../admin/audit.ts");
	const { supervisedBackupCommands } = await import("../../admin/supervised-backups.ts");
	const log = createLogger({ level: config.log.level, format: config.log.format });
	log.info(`configuration: ${describeSource(source)}`);
	let first = true;
	const supervisor = new Supervisor({
		log,
		// The first start uses the configuration already read (and checked for its ports).
		loadConfig: () => {
			if (first) {
				first = false;
				return config;
			}
			return loadConfigSource(source);
		},
		createServer: (cfg) => buildServer(cfg, { log }),
		afterStart: async (server) => {
			await adminFromEnvironment(server, process.env);
		},
	});
	const stop = stopSignals();
	const api = config.listeners.admin.enabled
		? new AdminApi(supervisor, {
				address: config.listeners.admin.address,
				port: config.listeners.admin.port,
				// Backups, restores and factory resets run in the Supervisor's states.
				commands: [...adminCommands, ...supervisedBackupCommands(supervisor, () => source.path)],
			})
		: null;
	/** Opens the admin API; a port that cannot be opened is the one line `serve` words it in. */
	const openApi = async (): Promise<void> => {
		try {
			await api?.listen();
		} catch (err) {
			stop.release();
			await api?.close().catch(() => undefined);
			await supervisor.stop();
			const e = err as NodeJS.ErrnoException;
			if (e.syscall === "listen") {
				const l = openedListeners(config).find((x) => x.name === "admin");
				if (l) throw new CliError(listenerProblemLine(l, listenProblem(e)), EXIT.FAILURE);
			}
			throw new CliError(`could not start: ${e.message}`, EXIT.FAILURE);
		}
	};
	// On loopback the API opens first, so `starting` is seen; HTTPS needs the certificates the
	// XMPP server loads, so off loopback it opens once the server runs.
	if (api && !api.tls) await openApi();
	await supervisor.start();
	if (supervisor.state !== "running") {
		stop.release();
		await api?.close().catch(() => undefined);
		throw startFailure(config, log, supervisor.lastCause);
	}
	if (api?.tls) await openApi();
	// SIGHUP: read the configuration again and apply it (issue 15); the result is in the log.
	const audit = api?.audit ?? new Audit(log);
	const onHup = () => {
		supervisor.reload().then(
			(report) => {
				log.info({ ...report, admin_state: supervisor.state }, "reloaded");
				audit.action({ actor: "SIGHUP", action: "lifecycle.reload", status: 200 });
			},
			(err: unknown) => {
				log.error({ err: (err as Error).message, admin_state: supervisor.state }, "reload failed");
				// The status the API would have answered: 422 for a file that does not validate.
				const name = (err as Error).name;
				const status = name === "ConfigError" ? 422 : name === "LifecycleConflict" ? 409 : 500;
				audit.action({ actor: "SIGHUP", action: "lifecycle.reload", status });
			},
		);
	};
	process.on("SIGHUP", onHup);
	if (pidfile) writeFileSync(pidfile, `${process.pid}\n`);
	const signal = await stop.wait();
	log.info({ signal }, "stopping");
	// A second signal while stopping gets Node's default: the process ends at once.
	stop.release();
	process.off("SIGHUP", onHup);
	await api?.close().catch(() => undefined);
	await supervisor.stop();
	if (pidfile) {
		try {
			unlinkSync(pidfile);
		} catch {}
	}
}

/**
 * SIGTERM and SIGINT handlers, in before anything starts: a signal that arrives while the
 * server starts (or right after its "running" line) must still stop it cleanly.
 */
function stopSignals(): { wait(): Promise<string>; release(): void } {
	let stopSignal: string | null = null;
	let wake: (() => void) | null = null;
	const onTerm = () => {
		stopSignal ??= "SIGTERM";
		wake?.();
	};
	const onInt = () => {
		stopSignal ??= "SIGINT";
		wake?.();
	};
	process.on("SIGTERM", onTerm);
	process.on("SIGINT", onInt);
	return {
		async wait() {
			if (stopSignal === null)
				await new Promise<void>((resolve) => {
					wake = resolve;
				});
			return stopSignal ?? "SIGTERM";
		},
		release() {
			process.off("SIGTERM", onTerm);
			process.off("SIGINT", onInt);
		},
	};
}

/** A cluster worker: its own server, stopped when the primary passes a signal on. */
async function serveWorker(server: Server): Promise<void> {
	const stop = stopSignals();
	try {
		await server.start();
	} catch (err) {
		stop.release();
		throw startFailure(server.config, server.log, err);
	}
	process.send?.({ parley: "running" });
	const signal = await stop.wait();
	server.log.info({ signal }, "stopping");
	// Not released: the primary passes the signal on, and a service manager may also signal the
	// whole process group (systemd's KillMode=control-group), so a worker sees it twice.
	await server.stop().catch((err: unknown) => {
		server.log.error({ err }, "error while stopping");
	});
	// A worker's channel to the primary would keep it alive.
	process.disconnect?.();
}

function withoutAdminListener(config: Config): Config {
	return {
		...config,
		listeners: { ...config.listeners, admin: { ...config.listeners.admin, enabled: false } },
	};
}

/** Every listener's port can be opened, or a CliError with one line per one that cannot. */
async function portsFree(config: Config): Promise<void> {
	const problems = (await probeListeners(config)).flatMap((l) =>
		l.problem === undefined ? [] : [listenerProblemLine(l, l.problem)],
	);
	if (problems.length > 0) throw new CliError(problems.join("\n"), EXIT.FAILURE);
}

/**
 * A failed start as the one line `parley: ...` on stderr (main.ts prints it); the stack goes
 * to the log at debug level only. A port taken between the test and the listen (or one the
 * test could not see) is worded as the test words it.
 */
function startFailure(config: Config, log: Logger, err: unknown): CliError {
	log.debug({ err }, "Parley could not start");
	// Server.start() names the listener whose listen() failed.
	const e = err as NodeJS.ErrnoException & { listener?: unknown };
	if (e?.syscall === "listen" && typeof e.listener === "string") {
		const l = openedListeners(config).find((x) => x.name === e.listener);
		if (l) return new CliError(listenerProblemLine(l, listenProblem(e)), EXIT.FAILURE);
	}
	return new CliError(`could not start: ${(err as Error)?.message ?? String(err)}`, EXIT.FAILURE);
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
async function servePrimary(
	config: Config,
	source: string,
	count: number,
	pidfile?: string,
): Promise<void> {
	if (config.storage.backend === "memory")
		throw new CliError(
			"storage.backend: several workers need shared storage (sqlite or postgres), not memory",
			EXIT.CONFIG,
		);
	const { createServer: buildServer } = await import("../../app/server.ts");
	const { runPrimary } = await import("../../cluster/workers.ts");
	const server = buildServer(config);
	server.log.info(`configuration: ${source}`);
	try {
		await server.prepare();
	} catch (err) {
		throw startFailure(config, server.log, err);
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
