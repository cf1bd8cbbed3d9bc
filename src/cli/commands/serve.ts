/**
 * `parley serve`: run the server in the foreground, alone or as the primary of several workers
 * (src/cluster/workers.ts), until SIGTERM or SIGINT.
 */
import { unlinkSync, writeFileSync } from "node:fs";
import type { Command } from "commander";
import { openedListeners } from "../../core/config/listeners.ts";
import type { Config } from "../../core/config/schema.ts";
import type { Logger } from "../../core/log.ts";
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
	let { config, source } = loadConfigFrom(opts.config);
	// A restore a crash interrupted is finished (or thrown away) before the data is opened
	// (src/admin/backup/manager.ts); a finished one may have brought its configuration file.
	const { recoverRestore } = await import("../../admin/backup/manager.ts");
	const recovered = await recoverRestore(config, source.path);
	if (recovered === "busy")
		throw new CliError(
			"a restore or a factory reset is under way on this data: start when it is over",
			EXIT.FAILURE,
		);
	if (recovered === "completed") ({ config, source } = loadConfigFrom(opts.config));
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
		await portsFree(config);
		if (count > 1) return servePrimary(config, describeSource(source), count, opts.pidfile);
	}
	const server = buildServer(config);
	if (!workers.isWorker()) server.log.info(`configuration: ${describeSource(source)}`);
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
		throw startFailure(config, server.log, err);
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
