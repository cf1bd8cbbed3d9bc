/**
 * Loading `parley.toml`: TOML -> zod schema -> checks zod cannot make (host names, certificate
 * files), with error messages an operator can act on:
 *
 *     parley.toml:12: limits.stanza_size: expected an integer >= 1024, got "x"
 *     parley.toml:3: unknown key "data_dr" in [server]; did you mean data_dir?
 *     parley.toml:4:9: TOML syntax error: ...
 *     parley.toml:7:1: TOML syntax error: expected comma or end of structure, in the array that
 *       begins at parley.toml:5:11 (is a "]" missing?)
 *
 * Every problem in the file is reported at once (one line each, sorted by line), not only the
 * first one.
 *
 * Paths. Relative paths written in the file are relative to the directory of the file, not to
 * the working directory of the process (so `parley serve -c /etc/parley/parley.toml` means the
 * same thing from any directory). `parseConfig` / `loadConfigFile` therefore return a Config in
 * which `server.data_dir`, every `tls.cert` / `tls.key` path and `s2s.ca_file` are absolute. Other paths
 * (`storage.path`, ...) are relative to `server.data_dir`: use `resolveDataPath`.
 * `defaultConfig()` (no file) keeps `./data`, which `resolveDataPath` resolves against the
 * working directory.
 *
 * The parts: zod-issues.ts (messages for zod's issues), checks.ts (host names, certificate
 * files), toml-lines.ts (the line of a key), suggest.ts ("did you mean"), report.ts.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { parse as parseToml, TomlError } from "smol-toml";
import { checkBackupDir, checkHostNames, checkTlsFiles, fsReason } from "./checks.ts";
import type { Problem } from "./report.ts";
import { type Config, configSchema } from "./schema.ts";
import { indexKeyLines, openConstructAt } from "./toml-lines.ts";
import { describeIssue } from "./zod-issues.ts";

export type { Config } from "./schema.ts";

/** A configuration that cannot be used. `problems` holds one human-readable line per problem. */
export class ConfigError extends Error {
	readonly problems: string[];

	constructor(problems: string[]) {
		super(problems.length === 1 ? (problems[0] ?? "") : problems.join("\n"));
		this.name = "ConfigError";
		this.problems = problems;
	}
}

export interface ParseOptions {
	/** Directory that relative paths in the file are relative to; the file's directory by default. */
	baseDir?: string;
	/** Environment whose `PARLEY_<SECTION>__<KEY>` variables override the file (`envOverrides`). */
	env?: NodeJS.ProcessEnv;
}

/** One `PARLEY_A__B__C=value` variable: the key path it sets and the value. */
export interface EnvOverride {
	name: string;
	path: string[];
	value: unknown;
}

/**
 * The configuration keys the environment sets: `PARLEY_` then the key path in upper case with
 * `__` between its parts (`PARLEY_LOG__LEVEL=debug`, `PARLEY_LISTENERS__ADMIN__PORT=0`). The
 * value is read as a TOML value (`5290`, `true`, `["a", "b"]`), else as a string. Variables
 * without `__` (`PARLEY_CONFIG`, `PARLEY_ADMIN_JID`) are not configuration keys.
 */
export function envOverrides(env: NodeJS.ProcessEnv): EnvOverride[] {
	const out: EnvOverride[] = [];
	for (const [name, text] of Object.entries(env)) {
		const m = /^PARLEY_([A-Z0-9_]+)$/.exec(name);
		if (!m?.[1]?.includes("__") || text === undefined) continue;
		const path = m[1].toLowerCase().split("__");
		if (path.some((p) => p === "")) continue;
		let value: unknown = text;
		try {
			value = (parseToml(`v = ${text}`) as { v: unknown }).v;
		} catch {}
		out.push({ name, path, value });
	}
	return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** `raw` with the environment's keys set (tables created where missing). */
function withEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv | undefined) {
	if (env === undefined) return raw;
	for (const { path, value } of envOverrides(env)) {
		let table: Record<string, unknown> = raw;
		for (const part of path.slice(0, -1)) {
			const next = table[part];
			if (typeof next !== "object" || next === null || Array.isArray(next)) table[part] = {};
			table = table[part] as Record<string, unknown>;
		}
		table[path.at(-1) as string] = value;
	}
	return raw;
}

/**
 * TOML text -> validated Config. `fileName` is used in messages and, unless `opts.baseDir` is
 * given, its directory is where relative paths are resolved. Throws ConfigError.
 */
export function parseConfig(text: string, fileName: string, opts: ParseOptions = {}): Config {
	const baseDir = opts.baseDir ?? dirname(resolve(fileName));

	let raw: Record<string, unknown>;
	try {
		raw = parseToml(text) as Record<string, unknown>;
	} catch (err) {
		if (err instanceof TomlError) {
			const first = (err.message.split("\n")[0] ?? "").replace(/^Invalid TOML document:\s*/, "");
			// The parser notices an unclosed "[" only where the next statement starts, often at the
			// next table header: say where the array (or inline table) it was reading began.
			const open = openConstructAt(text, err.line, err.column);
			const within =
				open && open.line < err.line
					? `, in the ${open.kind} that begins at ${fileName}:${open.line}:${open.column} (is a "${open.kind === "array" ? "]" : "}"}" missing?)`
					: "";
			throw new ConfigError([
				`${fileName}:${err.line}:${err.column}: TOML syntax error: ${first}${within}`,
			]);
		}
		throw err;
	}

	raw = withEnv(raw, opts.env);
	const lines = indexKeyLines(text);
	const problems: Problem[] = [];
	const report = (path: readonly (string | number)[], message: string, lineOf = path): void => {
		problems.push({ line: lines.lookup(lineOf), message });
	};

	const result = configSchema.safeParse(raw);
	if (!result.success) {
		for (const issue of result.error.issues) describeIssue(issue, raw, report);
	}
	checkHostNames(raw, report);
	checkTlsFiles(raw, baseDir, report);
	// Only a backup.dir the file sets: the default (./backups beside the file) may fall inside a
	// data_dir that holds the file itself, which is fine until a backup is asked for (refused then).
	if (result.success && (raw.backup as { dir?: unknown } | undefined)?.dir !== undefined)
		checkBackupDir(result.data, baseDir, report);

	if (problems.length > 0 || !result.success) {
		// Stable sort: problems on the same line keep their order; problems without a line go last.
		problems.sort(
			(a, b) => (a.line ?? Number.MAX_SAFE_INTEGER) - (b.line ?? Number.MAX_SAFE_INTEGER),
		);
		throw new ConfigError(
			problems.map((p) => `${fileName}${p.line === undefined ? "" : `:${p.line}`}: ${p.message}`),
		);
	}
	return absolutePaths(result.data, baseDir);
}

/** Reads and parses a configuration file. A missing or unreadable file is a ConfigError naming it. */
export function loadConfigFile(path: string, opts: Pick<ParseOptions, "env"> = {}): Config {
	let text: string;
	try {
		text = readFileSync(path, "utf8");
	} catch (err) {
		throw new ConfigError([`${path}: cannot read the configuration file: ${fsReason(err)}`]);
	}
	return parseConfig(text, path, opts);
}

/**
 * What `parley serve` and every reload read: the defaults, then the file (if any), then the
 * `PARLEY_*` variables of `env` (`envOverrides`). Throws ConfigError.
 */
export function loadConfigSource(
	source: ConfigSource,
	env: NodeJS.ProcessEnv = process.env,
): Config {
	if (source.path) return loadConfigFile(source.path, { env });
	if (envOverrides(env).length === 0) return defaultConfig();
	// No file: the variables alone, checked as a file's keys would be.
	return parseConfig("", "(environment)", { env, baseDir: process.cwd() });
}

/** Where a command's configuration file came from (`findConfigFile`). */
export interface ConfigSource {
	/** The file, or undefined for the built-in defaults. */
	path?: string;
	/** How it was found, for messages: "--config", "PARLEY_CONFIG", "./parley.toml", "defaults". */
	from: "--config" | "PARLEY_CONFIG" | "./parley.toml" | "defaults";
}

/**
 * The one rule every `parley` command follows to find its configuration: `--config FILE` if
 * given, else the file `PARLEY_CONFIG` names (if set and not empty), else `parley.toml` in the
 * working directory if there is one, else none (every key at its default). A file named by the
 * first two must exist; the third is only looked for.
 */
export function findConfigFile(
	flag: string | undefined,
	env: NodeJS.ProcessEnv = process.env,
	cwd: string = process.cwd(),
): ConfigSource {
	if (flag !== undefined) return { path: flag, from: "--config" };
	const fromEnv = env.PARLEY_CONFIG;
	if (fromEnv) return { path: fromEnv, from: "PARLEY_CONFIG" };
	const local = join(cwd, "parley.toml");
	// Named as the operator sees it: "parley.toml:3: ..." in the working directory.
	if (existsSync(local)) return { path: relative(process.cwd(), local), from: "./parley.toml" };
	return { from: "defaults" };
}

/** The configuration used when there is no file: every default. */
export function defaultConfig(): Config {
	return configSchema.parse({});
}

/**
 * A path under the data directory. `p` relative -> relative to `server.data_dir`; `data_dir`
 * relative (only possible for `defaultConfig()` or a Config built by hand) -> relative to
 * `baseDir`, the working directory by default. Absolute paths are returned as they are.
 */
export function resolveDataPath(
	config: Config,
	p: string,
	baseDir: string = process.cwd(),
): string {
	return resolve(baseDir, config.server.data_dir, p);
}

/** The paths written in the file, resolved against `baseDir` (see Paths above). */
function absolutePaths(config: Config, baseDir: string): Config {
	const abs = (p: string): string => resolve(baseDir, p);
	const hosts: Config["hosts"] = {};
	for (const [name, host] of Object.entries(config.hosts)) {
		hosts[name] =
			host.tls === undefined
				? host
				: { ...host, tls: { cert: abs(host.tls.cert), key: abs(host.tls.key) } };
	}
	return {
		...config,
		server: { ...config.server, data_dir: abs(config.server.data_dir) },
		backup: { ...config.backup, dir: abs(config.backup.dir) },
		tls: {
			...config.tls,
			...(config.tls.cert === undefined ? {} : { cert: abs(config.tls.cert) }),
			...(config.tls.key === undefined ? {} : { key: abs(config.tls.key) }),
		},
		hosts,
		s2s: {
			...config.s2s,
			...(config.s2s.ca_file === undefined ? {} : { ca_file: abs(config.s2s.ca_file) }),
		},
	};
}
