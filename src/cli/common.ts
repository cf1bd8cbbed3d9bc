/** What the command files share: exit codes, CliError, opening the configuration and the storage. */
import { createInterface } from "node:readline";
import {
	ConfigError,
	type ConfigSource,
	defaultConfig,
	findConfigFile,
	loadConfigFile,
	loadConfigSource,
	resolveDataPath,
} from "../core/config/load.ts";
import { anonymousHosts, type Config } from "../core/config/schema.ts";
import { createStorage } from "../storage/index.ts";
import type { StorageBackend } from "../storage/types.ts";

/** Exit codes scripts can rely on (also in the README and at the top of main.ts). */
export const EXIT = {
	OK: 0,
	FAILURE: 1,
	USAGE: 2,
	CONFIG: 3,
	NOT_FOUND: 4,
	EXISTS: 5,
	CHECK_FAILED: 6,
} as const;

export class CliError extends Error {
	readonly exitCode: number;
	constructor(message: string, exitCode: number) {
		super(message);
		this.exitCode = exitCode;
	}
}

/** Every command's `--config` help: where the file is looked for without it. */
export const CONFIG_HELP =
	"TOML configuration file (default: $PARLEY_CONFIG, else ./parley.toml if there is one, else built-in defaults)";

/** The command's configuration, found by the one rule of `findConfigFile`. */
export function loadConfig(flag: string | undefined): Config {
	return loadConfigFrom(flag).config;
}

/** The configuration and where it came from (check and serve say it). */
export function loadConfigFrom(
	flag: string | undefined,
	env?: NodeJS.ProcessEnv,
): { config: Config; source: ConfigSource } {
	const source = findConfigFile(flag);
	try {
		if (env !== undefined) return { config: loadConfigSource(source, env), source };
		return { config: source.path ? loadConfigFile(source.path) : defaultConfig(), source };
	} catch (err) {
		if (err instanceof ConfigError) {
			// A file nobody named on the command line: say where its name came from.
			const unread = source.from === "PARLEY_CONFIG" && err.problems.length === 1;
			throw new CliError(
				unread ? `${err.message} (named by PARLEY_CONFIG)` : err.message,
				EXIT.CONFIG,
			);
		}
		throw err;
	}
}

/** `parley.toml (./parley.toml in the working directory)`, `(built-in defaults: ...)`. */
export function describeSource(source: ConfigSource): string {
	switch (source.from) {
		case "--config":
			return `${source.path}`;
		case "PARLEY_CONFIG":
			return `${source.path} (from PARLEY_CONFIG)`;
		case "./parley.toml":
			return "parley.toml (found in the working directory)";
		case "defaults":
			return "(built-in defaults: no --config, PARLEY_CONFIG or ./parley.toml)";
	}
}

export async function withStorage<T>(
	config: Config,
	fn: (storage: StorageBackend) => Promise<T>,
): Promise<T> {
	const storage = createStorage(
		{ ...config.storage, memory_hosts: anonymousHosts(config) },
		resolveDataPath(config, "."),
	);
	try {
		return await fn(storage);
	} finally {
		await storage.close();
	}
}

export async function readStdinLines(): Promise<string[]> {
	const lines: string[] = [];
	const rl = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
	for await (const line of rl) lines.push(line);
	return lines;
}

/** Storage errors (database down, schema too new, bad spec) as a one-line failure. */
export function storageFailure(err: unknown): never {
	if (err instanceof CliError) throw err;
	throw new CliError((err as Error).message, EXIT.FAILURE);
}
