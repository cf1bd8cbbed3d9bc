/**
 * `server.workers` > 1: one machine's cores as a local cluster. A Node process runs JavaScript
 * on one core, so `parley serve` forks one process per worker with Node's `cluster` module.
 * Each worker opens the client ports itself with SO_REUSEPORT (src/c2s/tcp.ts), so the kernel
 * spreads connections over them; they share each other's sessions through the cluster link
 * (./link.ts) and Redis, exactly like
 * nodes on different machines; each has its own open-file limit. The primary serves nothing:
 * it prepares what must be done once, forks, restarts a worker that dies, and stops them all on
 * SIGTERM or SIGINT.
 */
import cluster, { type Worker } from "node:cluster";
import { availableParallelism, hostname } from "node:os";
import type { Config } from "../core/config/schema.ts";
import type { Logger } from "../core/log.ts";

/** Environment variable carrying a worker's node name. */
const NODE_ENV = "PARLEY_CLUSTER_NODE";

export function workerCount(setting: Config["server"]["workers"]): number {
	return setting === "auto" ? availableParallelism() : setting;
}

export function isWorker(): boolean {
	return cluster.isWorker;
}

/**
 * A worker's configuration: a cluster node named after the primary, and the component port only
 * in the first worker, because components run on the leader, the node that joined first. Every
 * worker opens the HTTP listeners (BOSH, WebSocket): a BOSH request that lands on a worker
 * other than the one holding its session is handed over by sid (src/bosh/manager.ts).
 */
export function workerConfig(config: Config): Config {
	const node = process.env[NODE_ENV];
	config.cluster.enabled = true;
	if (node) config.cluster.node = node;
	if (Number(process.env.PARLEY_WORKER_SLOT) !== 1) {
		// XEP-0114 components run on the leader, the first worker while it lives.
		config.listeners.component.enabled = false;
	}
	return config;
}

/** Crashes tolerated within a minute before the primary gives up. */
const MAX_CRASHES_PER_MINUTE = 5;

/**
 * Runs the primary until a signal stops it. Resolves once every worker has exited; rejects if
 * workers keep crashing.
 */
export async function runPrimary(opts: {
	workers: number;
	config: Config;
	log: Logger;
	/** Called once every worker listens. */
	onRunning?: () => void;
}): Promise<void> {
	const { workers, log } = opts;
	const base =
		opts.config.cluster.node || `${hostname().replace(/[^A-Za-z0-9_.-]/g, "-")}-${process.pid}`;
	let stopping = false;
	let failed: Error | null = null;
	const crashes: number[] = [];
	const slots = new Map<Worker, number>();
	let generation = 0;

	const fork = (slot: number): Worker => {
		generation++;
		const w = cluster.fork({
			[NODE_ENV]: `${base}-w${slot}-${generation}`,
			PARLEY_WORKER_SLOT: String(slot),
		});
		slots.set(w, slot);
		return w;
	};

	let resolveDone: () => void = () => {};
	const done = new Promise<void>((resolve) => {
		resolveDone = resolve;
	});
	const stopAll = (signal: NodeJS.Signals) => {
		stopping = true;
		for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal);
		if (Object.keys(cluster.workers ?? {}).length === 0) resolveDone();
	};

	cluster.on("exit", (w, code, signal) => {
		const slot = slots.get(w) ?? 0;
		slots.delete(w);
		if (stopping) {
			if (Object.keys(cluster.workers ?? {}).length === 0) resolveDone();
			return;
		}
		log.error({ worker: slot, code, signal }, "a worker died; starting another");
		const now = Date.now();
		crashes.push(now);
		while (crashes.length && (crashes[0] as number) < now - 60_000) crashes.shift();
		if (crashes.length > MAX_CRASHES_PER_MINUTE) {
			failed = new Error(`workers crashed ${crashes.length} times within a minute`);
			stopAll("SIGTERM");
			return;
		}
		fork(slot);
	});

	const onTerm = () => stopAll("SIGTERM");
	const onInt = () => stopAll("SIGINT");
	process.on("SIGTERM", onTerm);
	process.on("SIGINT", onInt);

	// A worker says so once its server runs (src/cli/commands/serve.ts).
	let running = 0;
	cluster.on("message", (_w, message: unknown) => {
		if ((message as { parley?: string } | null)?.parley !== "running") return;
		if (++running === workers) {
			log.info({ workers }, "Parley is running with one process per worker");
			opts.onRunning?.();
		}
	});

	// For the sockets a worker shares through the primary (port 0, and HTTP in the first worker):
	// the worker accepts itself, rather than the primary accepting every connection and passing
	// it over IPC, which cost the primary about 0.7 ms of CPU per login (800 logins, /proc of the
	// primary before and after, 2026-11-25).
	cluster.schedulingPolicy = cluster.SCHED_NONE;
	for (let slot = 1; slot <= workers; slot++) fork(slot);
	await done;
	process.off("SIGTERM", onTerm);
	process.off("SIGINT", onInt);
	if (failed) throw failed;
}
