/** What the command files share: exit codes, CliError, opening the configuration and the storage. */
import { createInterface } from "node:readline";
import {
	ConfigError,
	defaultConfig,
	loadConfigFile,
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

export function loadConfig(path: string | undefined): Config {
	try {
		return path ? loadConfigFile(path) : defaultConfig();
	} catch (err) {
		if (err instanceof ConfigError) throw new CliError(err.message, EXIT.CONFIG);
		throw err;
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
