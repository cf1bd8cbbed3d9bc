/**
 * The Supervisor (issue 15) owns the process's XMPP server — one `Server` at a time — and the
 * admin state (states.ts). Every change of state is a transition the state table allows; every
 * lifecycle operation (start, reload, restart, and what later parts run through
 * `runOperation`: backups, restores, factory resets) takes the one lifecycle slot, so a second
 * one is refused with `LifecycleConflict` naming the one that runs (409 in the API). A failed
 * operation leaves a named state (`start_failed`, `running_misconfigured`,
 * `configuration_needed`) with its error in `status()`, never a half state.
 *
 * It does not import the composition root: the CLI hands it `createServer` as a factory and
 * `loadConfig` (defaults, file, `PARLEY_*`), so tests can give it theirs.
 */
import { ConfigError } from "../core/config/load.ts";
import type { Config } from "../core/config/schema.ts";
import type { Logger } from "../core/log.ts";
import type { ReloadReport, Server } from "../core/server.ts";
import { STATE_SPECS, type StateName } from "./states.ts";

export interface SupervisorOptions {
	/** Builds a server for a configuration (the composition root's `createServer`). */
	createServer(config: Config): Server;
	/** Reads the configuration again; throws ConfigError when it does not validate. */
	loadConfig(): Config;
	log: Logger;
	/**
	 * Run after each successful start (first admin from the environment, ...). A failure is
	 * logged and does not stop the server.
	 */
	afterStart?(server: Server): Promise<void>;
}

/** A configuration problem as `/status` shows it: `parley.toml:12: limits.x: expected ...`. */
export interface ConfigProblem {
	file?: string;
	line?: number;
	key?: string;
	message: string;
}

export interface LastError {
	/** The operation that failed: `start`, `reload`, `restart`, `backup`... */
	operation: string;
	message: string;
	at: string;
}

export interface SupervisorStatus {
	state: StateName;
	/** ISO time of the last transition. */
	since: string;
	serving: boolean;
	/** The lifecycle operation under way, if any. */
	operation: string | null;
	error: LastError | null;
	/** Why the file on disk does not validate (`running_misconfigured`, `configuration_needed`). */
	configErrors: ConfigProblem[];
	/** Keys changed by the last reload that take effect only after a restart. */
	restartNeeded: string[];
	hosts: string[];
	sessions: number;
}

/** A lifecycle operation refused because another one runs (HTTP 409). */
export class LifecycleConflict extends Error {
	readonly running: string;
	constructor(running: string, wanted: string) {
		super(`cannot ${wanted}: ${running} is under way`);
		this.name = "LifecycleConflict";
		this.running = running;
	}
}

/** A lifecycle operation the current state does not allow (HTTP 503 with the state). */
export class StateRefusal extends Error {
	readonly state: StateName;
	constructor(state: StateName, wanted: string) {
		super(`cannot ${wanted} while ${state}`);
		this.name = "StateRefusal";
		this.state = state;
	}
}

/** What `runOperation`'s function may do with the server (a restore stops and starts it). */
export interface OperationContext {
	/** The server, or null once `stopServer` stopped it. */
	readonly server: Server | null;
	/** Stops the XMPP service (sessions get `system-shutdown`). */
	stopServer(): Promise<void>;
	/** Starts a new server on the configuration read again; throws when it does not start. */
	startServer(): Promise<void>;
	/** Progress for whoever watches (a backup's Server-Sent Events). */
	readonly log: Logger;
}

export class Supervisor {
	readonly log: Logger;
	readonly #opts: SupervisorOptions;
	#state: StateName = "stopped";
	#since = new Date();
	#server: Server | null = null;
	#operation: string | null = null;
	#error: LastError | null = null;
	#cause: unknown = null;
	#configErrors: ConfigProblem[] = [];
	#restartNeeded: string[] = [];
	/** Told after every transition (the audit log, tests). */
	readonly #listeners = new Set<(state: StateName, from: StateName) => void>();
	readonly #progressListeners = new Set<(progress: unknown) => void>();
	#started = false;
	/** Not started yet: `stopped` may go to `starting` once. */
	#fresh = true;

	constructor(opts: SupervisorOptions) {
		this.#opts = opts;
		this.log = opts.log;
	}

	get state(): StateName {
		return this.#state;
	}

	/** The server in force, when one runs (or is being started). */
	get server(): Server | null {
		return this.#server;
	}

	/** The running lifecycle operation, if any. */
	get operation(): string | null {
		return this.#operation;
	}

	onTransition(fn: (state: StateName, from: StateName) => void): () => void {
		this.#listeners.add(fn);
		return () => this.#listeners.delete(fn);
	}

	/**
	 * Progress of the lifecycle operation under way (a backup's or a restore's phases and bytes),
	 * for the admin API's Server-Sent Events. One operation runs at a time, so whoever listens
	 * while it runs hears that one.
	 */
	onProgress(fn: (progress: unknown) => void): () => void {
		this.#progressListeners.add(fn);
		return () => this.#progressListeners.delete(fn);
	}

	reportProgress(progress: unknown): void {
		for (const fn of this.#progressListeners) fn(progress);
	}

	status(): SupervisorStatus {
		const server = this.#server;
		let sessions = 0;
		if (server?.state === "running")
			for (const host of server.hosts.values())
				for (const resources of host.sessions.values()) sessions += resources.size;
		return {
			state: this.#state,
			since: this.#since.toISOString(),
			serving: STATE_SPECS[this.#state].serving,
			operation: this.#operation,
			error: this.#error,
			configErrors: this.#configErrors,
			restartNeeded: this.#restartNeeded,
			hosts: server?.state === "running" ? [...server.hosts.keys()] : [],
			sessions,
		};
	}

	/**
	 * The first start: `starting`, then `running`, or `start_failed` with the error, or
	 * `configuration_needed` when the configuration does not validate. Resolves either way;
	 * the state says how it went (`parley serve` exits on a failed first start).
	 */
	async start(): Promise<void> {
		if (this.#started) throw new Error("the supervisor was started already");
		this.#started = true;
		await this.#exclusive("start", async () => {
			this.#go("starting");
			await this.#startServer("start");
		});
	}

	/** The error of the last failed operation, if the state is a failed one. */
	get lastError(): LastError | null {
		return this.#error;
	}

	/**
	 * Reads the configuration again and applies it (issue 15 "Reload"): in place when a server
	 * runs (`Server.reload`); a configuration that does not validate changes nothing on the
	 * XMPP side and leaves `running_misconfigured` with the problems; from
	 * `configuration_needed` or `start_failed`, a valid one starts the server.
	 */
	reload(): Promise<ReloadReport> {
		const state = this.#state;
		if (
			!["running", "running_misconfigured", "configuration_needed", "start_failed"].includes(state)
		)
			return this.#refuse("reload");
		return this.#exclusive("reload", async () => {
			let next: Config;
			try {
				next = this.#opts.loadConfig();
			} catch (err) {
				if (!(err instanceof ConfigError)) throw err;
				this.#configErrors = configProblems(err);
				this.#fail("reload", err);
				if (this.#state === "running") this.#go("running_misconfigured");
				else if (this.#state === "start_failed") this.#go("configuration_needed");
				throw err;
			}
			this.#configErrors = [];
			const server = this.#server;
			if (server?.state === "running" && this.#state !== "start_failed") {
				try {
					const report = await server.reload(next);
					this.#restartNeeded = report.restartNeeded;
					this.log.level = next.log.level;
					this.#error = null;
					if (this.#state === "running_misconfigured") this.#go("running");
					return report;
				} catch (err) {
					// Certificates or module options refused: the server runs on as before.
					this.#fail("reload", err);
					throw err;
				}
			}
			// Nothing runs: start on the new configuration.
			this.#go("starting");
			await this.#startServer("reload", next);
			if (this.#state !== "running")
				throw new Error(this.#error?.message ?? "the server did not start");
			return { applied: [], restartNeeded: [] };
		});
	}

	/** A new Server instance in this process, on the configuration read again. */
	restart(): Promise<void> {
		if (this.#state !== "running" && this.#state !== "start_failed") return this.#refuse("restart");
		return this.#exclusive("restart", async () => {
			this.#go("restarting");
			await this.#stopServer();
			await this.#startServer("restart");
			if (this.#state !== "running")
				throw new Error(this.#error?.message ?? "the server did not start");
		});
	}

	/**
	 * Runs `fn` in `state` (`backing_up`, `restoring`, `factory_resetting`): the lifecycle slot
	 * is taken, the state serves only its routes meanwhile. Afterwards the state is the one it
	 * came from while a server runs; if `fn` stopped the server and none runs again, it is
	 * `start_failed` (or `configuration_needed` if the configuration does not validate). A
	 * failure is recorded as the last error and rethrown.
	 */
	runOperation<T>(
		state: "backing_up" | "restoring" | "factory_resetting",
		name: string,
		fn: (ctx: OperationContext) => Promise<T>,
	): Promise<T> {
		const from = this.#state;
		if (!STATE_SPECS[from].next.includes(state)) return this.#refuse(name);
		return this.#exclusive(name, async () => {
			this.#go(state);
			const self = this;
			const ctx: OperationContext = {
				get server() {
					return self.#server;
				},
				stopServer: () => this.#stopServer(),
				startServer: async () => {
					await this.#startServer(name, undefined, false);
					if (this.#server?.state !== "running")
						throw new Error(this.#error?.message ?? "the server did not start");
				},
				log: this.log,
			};
			try {
				const result = await fn(ctx);
				this.#settle(from);
				return result;
			} catch (err) {
				this.#fail(name, err);
				this.#settle(from);
				throw err;
			}
		});
	}

	/** Stops the XMPP service for good: `stopping`, then `stopped`. */
	async stop(): Promise<void> {
		if (this.#state === "stopped" || this.#state === "stopping") return;
		// Stopping wins over nothing: it waits for the operation under way.
		while (this.#running) await this.#running.catch(() => undefined);
		// Another stop may have run while this one waited.
		if (["stopped", "stopping"].includes(this.state)) return;
		this.#operation = "stop";
		this.#go("stopping");
		try {
			await this.#stopServer();
		} finally {
			this.#operation = null;
			this.#go("stopped");
		}
	}

	// -- inside --------------------------------------------------------------------------------

	#running: Promise<unknown> | null = null;

	/** Runs `fn` holding the lifecycle slot, or refuses at once if it is taken. */
	#exclusive<T>(name: string, fn: () => Promise<T>): Promise<T> {
		if (this.#operation !== null)
			return Promise.reject(new LifecycleConflict(this.#operation, name));
		this.#operation = name;
		const run: Promise<T> = Promise.resolve()
			.then(fn)
			.finally(() => {
				this.#operation = null;
				if (this.#running === run) this.#running = null;
			});
		this.#running = run;
		return run;
	}

	#refuse<T>(wanted: string): Promise<T> {
		if (this.#operation !== null)
			return Promise.reject(new LifecycleConflict(this.#operation, wanted));
		return Promise.reject(new StateRefusal(this.#state, wanted));
	}

	/** The one place the state changes; a move the table does not allow is a bug. */
	#go(to: StateName): void {
		const from = this.#state;
		if (from === to) return;
		// The one move not in the table: a new supervisor's first start.
		const first = this.#fresh && from === "stopped" && to === "starting";
		if (!first && !STATE_SPECS[from].next.includes(to))
			throw new Error(`no transition from ${from} to ${to}`);
		this.#fresh = false;
		this.#state = to;
		this.#since = new Date();
		this.log.info({ admin_state: to, from }, "admin state");
		for (const fn of this.#listeners) fn(to, from);
	}

	/** After an operation: back where it came from if a server runs, else a failed state. */
	#settle(from: StateName): void {
		const running = this.#server?.state === "running";
		if (running)
			this.#go(from === "configuration_needed" || from === "start_failed" ? "running" : from);
		else if (this.#configErrors.length > 0) this.#go("configuration_needed");
		else this.#go("start_failed");
	}

	/** The error object of the last failure (the CLI words a failed first start from it). */
	get lastCause(): unknown {
		return this.#cause;
	}

	#fail(operation: string, err: unknown): void {
		this.#cause = err;
		const message = err instanceof Error ? err.message : String(err);
		this.#error = { operation, message, at: new Date().toISOString() };
		this.log.error({ operation, err: message }, "admin operation failed");
	}

	/**
	 * Builds and starts a server on `config` (read again when not given). `settle`: move to
	 * `running`, `start_failed` or `configuration_needed` afterwards.
	 */
	async #startServer(operation: string, config?: Config, settle = true): Promise<void> {
		let cfg = config;
		if (cfg === undefined) {
			try {
				cfg = this.#opts.loadConfig();
				this.#configErrors = [];
			} catch (err) {
				if (!(err instanceof ConfigError)) throw err;
				this.#configErrors = configProblems(err);
				this.#fail(operation, err);
				if (settle) this.#go("configuration_needed");
				return;
			}
		}
		let server: Server;
		try {
			server = this.#opts.createServer(cfg);
			this.#server = server;
			await server.start();
		} catch (err) {
			this.#server = null;
			this.#fail(operation, err);
			if (settle) this.#go("start_failed");
			if (!settle) throw err;
			return;
		}
		this.#error = null;
		this.#restartNeeded = [];
		if (this.#opts.afterStart)
			await this.#opts.afterStart(server).catch((err: unknown) => {
				this.log.error({ err: (err as Error).message }, "after start");
			});
		if (settle) this.#go("running");
	}

	async #stopServer(): Promise<void> {
		const server = this.#server;
		this.#server = null;
		if (server)
			await server.stop().catch((err: unknown) => {
				this.log.error({ err }, "error while stopping");
			});
	}
}

/** `parley.toml:12: limits.x: expected ...` as its parts; the message whole when it has none. */
export function configProblems(err: ConfigError): ConfigProblem[] {
	return err.problems.map((line) => {
		const m = /^(.*?):(\d+)(?::\d+)?: (.*)$/.exec(line);
		if (!m) {
			const f = /^(.*?): (.*)$/.exec(line);
			return f ? { file: f[1], message: f[2] ?? line } : { message: line };
		}
		const message = m[3] ?? "";
		const key = /^([A-Za-z0-9_."*<>-]+): /.exec(message)?.[1];
		return {
			file: m[1],
			line: Number(m[2]),
			...(key === undefined ? {} : { key }),
			message,
		};
	});
}
