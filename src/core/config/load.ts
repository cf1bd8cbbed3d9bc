/**
 * Loading `parley.toml`: TOML -> zod schema -> checks zod cannot make (host names, certificate
 * files), with error messages an operator can act on:
 *
 *     parley.toml:12: limits.stanza_size: expected an integer >= 1024, got "x"
 *     parley.toml:3: unknown key "data_dr" in [server]; did you mean data_dir?
 *     parley.toml:4:9: TOML syntax error: ...
 *
 * Every problem in the file is reported at once (one line each, sorted by line), not only the
 * first one.
 *
 * Paths. Relative paths written in the file are relative to the directory of the file, not to
 * the working directory of the process (so `parley serve -c /etc/parley/parley.toml` means the
 * same thing from any directory). `parseConfig` / `loadConfigFile` therefore return a Config in
 * which `server.data_dir` and every `tls.cert` / `tls.key` path are absolute. Other paths
 * (`storage.path`, ...) are relative to `server.data_dir`: use `resolveDataPath`.
 * `defaultConfig()` (no file) keeps `./data`, which `resolveDataPath` resolves against the
 * working directory.
 *
 * Host names: must be lower-case ASCII domain names (IDNs in their xn-- form). Upper case is
 * rejected with a hint rather than silently normalised, so that the name in the file, the name
 * in the logs and the name in the JIDs are the same string.
 */
import { accessSync, constants, readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { domainToASCII } from "node:url";
import { parse as parseToml, TomlError } from "smol-toml";
import { z } from "zod";
import { type Config, configSchema } from "./schema.ts";

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
			throw new ConfigError([`${fileName}:${err.line}:${err.column}: TOML syntax error: ${first}`]);
		}
		throw err;
	}

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
export function loadConfigFile(path: string): Config {
	let text: string;
	try {
		text = readFileSync(path, "utf8");
	} catch (err) {
		throw new ConfigError([`${path}: cannot read the configuration file: ${fsReason(err)}`]);
	}
	return parseConfig(text, path);
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

// ---------------------------------------------------------------------------------------------

interface Problem {
	line: number | undefined;
	message: string;
}

type Report = (
	path: readonly (string | number)[],
	message: string,
	lineOf?: readonly (string | number)[],
) => void;

/** `hosts."a.example".modules[2]`: the way the key is written in TOML. */
export function formatKeyPath(path: readonly PropertyKey[]): string {
	let out = "";
	for (const segment of path) {
		if (typeof segment === "number") out += `[${segment}]`;
		else {
			const s = String(segment);
			const written = /^[A-Za-z0-9_-]+$/.test(s) ? s : JSON.stringify(s);
			out += out === "" ? written : `.${written}`;
		}
	}
	return out;
}

function tableName(path: readonly PropertyKey[]): string {
	return path.length === 0 ? "at the top level" : `in [${formatKeyPath(path)}]`;
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown, report: Report): void {
	const path = issue.path.filter((s): s is string | number => typeof s !== "symbol");
	const key = formatKeyPath(path);

	if (issue.code === "unrecognized_keys") {
		const valid = Object.keys(objectShapeAt(path) ?? {});
		for (const unknown of issue.keys) {
			const suggestion = closest(unknown, valid);
			const hint = suggestion === undefined ? "" : `; did you mean ${suggestion}?`;
			report(
				[...path, unknown],
				`unknown key ${JSON.stringify(unknown)} ${tableName(path)}${hint}`,
			);
		}
		return;
	}

	const schema = schemaAt(path);
	const found = valueAt(raw, path);
	// A refinement's own message says what is wrong better than the key's type would.
	if (issue.code === "custom" && found.present !== false) {
		report(path, `${key}: ${issue.message}, got ${describeValue(found.value)}`);
		return;
	}
	const expected = schema === undefined ? undefined : describeExpected(schema);

	if (found.present === false) {
		const what = schema?.description ?? expected;
		report(path, `${key}: missing${what === undefined ? "" : ` (${what})`}`);
		return;
	}
	if (expected !== undefined) {
		report(path, `${key}: expected ${expected}, got ${describeValue(found.value)}`);
		return;
	}
	report(path, `${key}: ${issue.message}, got ${describeValue(found.value)}`);
}

// --- schema walking --------------------------------------------------------------------------

function unwrap(schema: z.ZodType): z.ZodType {
	let s = schema;
	while (s instanceof z.ZodDefault || s instanceof z.ZodPrefault || s instanceof z.ZodOptional) {
		s = s.unwrap() as z.ZodType;
	}
	return s;
}

/** The schema of the value at `path`, or undefined where the schema does not say (unknown). */
function schemaAt(path: readonly (string | number)[]): z.ZodType | undefined {
	let s: z.ZodType = configSchema;
	for (const segment of path) {
		const u = unwrap(s);
		if (u instanceof z.ZodObject && typeof segment === "string") {
			const next = (u.shape as Record<string, z.ZodType>)[segment];
			if (next === undefined) return undefined;
			s = next;
		} else if (u instanceof z.ZodRecord) {
			s = u.valueType as z.ZodType;
		} else if (u instanceof z.ZodArray) {
			s = u.element as z.ZodType;
		} else {
			return undefined;
		}
	}
	return s;
}

function objectShapeAt(path: readonly (string | number)[]): Record<string, unknown> | undefined {
	const s = schemaAt(path);
	if (s === undefined) return undefined;
	const u = unwrap(s);
	return u instanceof z.ZodObject ? (u.shape as Record<string, unknown>) : undefined;
}

interface BoundCheck {
	check?: string;
	value?: unknown;
	inclusive?: boolean;
}

function describeExpected(schema: z.ZodType): string | undefined {
	const s = unwrap(schema);
	if (s instanceof z.ZodNumber) {
		const integer = s.format === "safeint" || s.format === "int32" || s.format === "uint32";
		const noun = integer ? "an integer" : "a number";
		let lower: string | undefined;
		let upper: string | undefined;
		for (const check of s._zod.def.checks ?? []) {
			const def = check._zod.def as BoundCheck;
			if (typeof def.value !== "number") continue;
			if (def.check === "greater_than") lower = `${def.inclusive ? ">=" : ">"} ${def.value}`;
			if (def.check === "less_than") upper = `${def.inclusive ? "<=" : "<"} ${def.value}`;
		}
		if (lower !== undefined && upper !== undefined) return `${noun} ${lower} and ${upper}`;
		return [noun, lower ?? upper].filter(Boolean).join(" ");
	}
	if (s instanceof z.ZodString) return "a string";
	if (s instanceof z.ZodBoolean) return "true or false";
	if (s instanceof z.ZodEnum) {
		return `one of ${s.options.map((o) => JSON.stringify(o)).join(", ")}`;
	}
	if (s instanceof z.ZodArray) {
		const element = describeExpected(s.element as z.ZodType);
		return element === undefined ? "an array" : `an array of ${plural(element)}`;
	}
	if (s instanceof z.ZodObject || s instanceof z.ZodRecord) return "a table";
	return undefined;
}

function plural(description: string): string {
	// "a string" -> "strings", "an integer >= 1" -> "integers >= 1"; anything else stays as is.
	const m = /^an? (string|integer|number|table)\b(.*)$/.exec(description);
	return m === null ? description : `${m[1]}s${m[2]}`;
}

// --- raw values ------------------------------------------------------------------------------

function valueAt(
	raw: unknown,
	path: readonly (string | number)[],
): { present: true; value: unknown } | { present: false } {
	let v: unknown = raw;
	for (const segment of path) {
		if (v === null || typeof v !== "object" || !Object.hasOwn(v, segment))
			return { present: false };
		v = (v as Record<string | number, unknown>)[segment];
	}
	return { present: true, value: v };
}

function describeValue(v: unknown): string {
	if (typeof v === "string") return JSON.stringify(v);
	if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
	if (Array.isArray(v)) return "an array";
	if (v instanceof Date) return `a date (${v.toISOString()})`;
	if (v !== null && typeof v === "object") return "a table";
	return String(v);
}

function isTable(v: unknown): v is Record<string, unknown> {
	return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date);
}

// --- checks zod cannot make ------------------------------------------------------------------

/** Why `name` is not a usable host name, or undefined if it is one. */
export function hostNameProblem(name: string): string | undefined {
	if (name === "") return "a host name cannot be empty";
	if (/[A-Z]/.test(name)) {
		return `host names are lower case; write ${JSON.stringify(name.toLowerCase())}`;
	}
	if (name.endsWith(".")) return `remove the trailing dot: ${JSON.stringify(name.slice(0, -1))}`;
	if (/^[0-9.]+$/.test(name) || name.includes(":") || name.startsWith("[")) {
		return 'an IP address is not a host name; use a domain name ("localhost" for local tests)';
	}
	if ([...name].some((c) => (c.codePointAt(0) ?? 0) > 0x7f)) {
		const ascii = domainToASCII(name);
		return ascii === ""
			? "not a valid internationalised domain name"
			: `write internationalised names in their ASCII form: ${JSON.stringify(ascii)}`;
	}
	if (name.length > 253) return "a domain name has at most 253 characters";
	for (const label of name.split(".")) {
		if (label === "") return 'a domain name cannot have empty labels ("..")';
		if (label.length > 63)
			return `the label "${label.slice(0, 10)}..." is longer than 63 characters`;
		if (!/^[a-z0-9-]+$/.test(label)) {
			return `the label ${JSON.stringify(label)} may only contain a-z, 0-9 and "-"`;
		}
		if (label.startsWith("-") || label.endsWith("-")) {
			return `the label ${JSON.stringify(label)} cannot start or end with "-"`;
		}
	}
	return undefined;
}

function checkHostNames(raw: Record<string, unknown>, report: Report): void {
	// Component domains ([components."x"]) are domains like hosts, with the same rules.
	for (const table of ["hosts", "components"]) {
		const hosts = raw[table];
		if (!isTable(hosts)) continue;
		for (const name of Object.keys(hosts)) {
			const problem = hostNameProblem(name);
			if (problem !== undefined) {
				report([table, name], `${formatKeyPath([table, name])}: invalid host name: ${problem}`);
			}
		}
	}
}

function checkTlsFiles(raw: Record<string, unknown>, baseDir: string, report: Report): void {
	const checkTable = (path: string[], table: unknown, requirePair: boolean): void => {
		if (!isTable(table)) return;
		const cert = table.cert;
		const key = table.key;
		for (const [name, value] of [
			["cert", cert],
			["key", key],
		] as const) {
			if (typeof value !== "string") continue;
			const problem = fileProblem(resolve(baseDir, value));
			if (problem !== undefined) {
				const shown = isAbsolute(value)
					? JSON.stringify(value)
					: `${JSON.stringify(value)} (${resolve(baseDir, value)})`;
				report(
					[...path, name],
					`${formatKeyPath([...path, name])}: cannot read ${shown}: ${problem}`,
				);
			}
		}
		// A host's own tls table is a strictObject with both keys required: zod reports that one.
		if (requirePair && typeof cert === "string" && key === undefined) {
			report(
				[...path, "key"],
				`${formatKeyPath([...path, "key"])}: missing; ${formatKeyPath([...path, "cert"])} is set, so the private key is needed too`,
				[...path, "cert"],
			);
		}
		if (requirePair && typeof key === "string" && cert === undefined) {
			report(
				[...path, "cert"],
				`${formatKeyPath([...path, "cert"])}: missing; ${formatKeyPath([...path, "key"])} is set, so the certificate is needed too`,
				[...path, "key"],
			);
		}
	};

	checkTable(["tls"], raw.tls, true);
	const hosts = raw.hosts;
	if (isTable(hosts)) {
		for (const [name, host] of Object.entries(hosts)) {
			if (isTable(host)) checkTable(["hosts", name, "tls"], host.tls, false);
		}
	}
}

function fileProblem(path: string): string | undefined {
	try {
		if (!statSync(path).isFile()) return "not a file";
		accessSync(path, constants.R_OK);
		return undefined;
	} catch (err) {
		return fsReason(err);
	}
}

function fsReason(err: unknown): string {
	const code = (err as { code?: unknown }).code;
	switch (code) {
		case "ENOENT":
			return "no such file (ENOENT)";
		case "EACCES":
		case "EPERM":
			return `permission denied (${code})`;
		case "EISDIR":
			return "it is a directory (EISDIR)";
		default:
			return err instanceof Error ? err.message : String(err);
	}
}

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
		tls: {
			...config.tls,
			...(config.tls.cert === undefined ? {} : { cert: abs(config.tls.cert) }),
			...(config.tls.key === undefined ? {} : { key: abs(config.tls.key) }),
		},
		hosts,
	};
}

// --- suggestions -----------------------------------------------------------------------------

function editDistance(a: string, b: string): number {
	let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
	for (let i = 1; i <= a.length; i++) {
		const current = [i];
		for (let j = 1; j <= b.length; j++) {
			const cost = a[i - 1] === b[j - 1] ? 0 : 1;
			current[j] = Math.min(
				(previous[j] ?? 0) + 1,
				(current[j - 1] ?? 0) + 1,
				(previous[j - 1] ?? 0) + cost,
			);
		}
		previous = current;
	}
	return previous[b.length] ?? 0;
}

function closest(key: string, candidates: readonly string[]): string | undefined {
	let best: string | undefined;
	let bestDistance = Number.POSITIVE_INFINITY;
	const normalised = key.toLowerCase().replaceAll("-", "_");
	for (const candidate of candidates) {
		const d = normalised === candidate ? 0 : editDistance(normalised, candidate);
		if (d < bestDistance) {
			best = candidate;
			bestDistance = d;
		}
	}
	const limit = Math.min(3, Math.max(1, Math.floor(key.length / 3)));
	return bestDistance <= limit ? best : undefined;
}

// --- where is a key in the TOML text? --------------------------------------------------------

interface KeyLines {
	/** Line (1-based) where `path` or, failing that, its closest written parent is defined. */
	lookup(path: readonly (string | number)[]): number | undefined;
}

/**
 * Scans (already valid) TOML text and records the line where each key path first appears:
 * table headers, dotted keys, keys inside inline tables, array elements (by index; arrays of
 * tables `[[x]]` are not indexed and map to their first header). Best effort: on anything unexpected it stops and keeps what it
 * has, since the text was parsed successfully before and this only serves error messages.
 */
function indexKeyLines(text: string): KeyLines {
	const lines = new Map<string, number>();
	type Path = readonly (string | number)[];
	const id = (path: Path): string => JSON.stringify(path);
	const record = (path: Path, line: number): void => {
		for (let i = 1; i <= path.length; i++) {
			const k = id(path.slice(0, i));
			if (!lines.has(k)) lines.set(k, line);
		}
	};

	let pos = 0;
	let line = 1;
	const peek = (n = 0): string => text[pos + n] ?? "";
	const startsWith = (s: string): boolean => text.startsWith(s, pos);
	const advance = (n = 1): void => {
		for (let i = 0; i < n && pos < text.length; i++) {
			if (text[pos] === "\n") line++;
			pos++;
		}
	};
	const skipSpaces = (): void => {
		while (peek() === " " || peek() === "\t") advance();
	};
	const skipComment = (): void => {
		if (peek() === "#") while (pos < text.length && peek() !== "\n") advance();
	};
	/** Whitespace, newlines and comments (inside arrays and between statements). */
	const skipBlank = (): void => {
		for (;;) {
			const c = peek();
			if (c === " " || c === "\t" || c === "\r" || c === "\n") advance();
			else if (c === "#") skipComment();
			else return;
		}
	};

	const parseString = (): string | undefined => {
		if (startsWith('"""') || startsWith("'''")) {
			const delim = text.slice(pos, pos + 3);
			advance(3);
			const start = pos;
			while (pos < text.length && !startsWith(delim))
				advance(delim === '"""' && peek() === "\\" ? 2 : 1);
			const value = text.slice(start, pos);
			advance(3);
			while (peek() === delim[0]) advance(); // up to two extra quotes belong to the string
			return value;
		}
		const quote = peek();
		if (quote !== '"' && quote !== "'") return undefined;
		advance();
		const start = pos;
		while (pos < text.length && peek() !== quote && peek() !== "\n") {
			advance(quote === '"' && peek() === "\\" ? 2 : 1);
		}
		const body = text.slice(start, pos);
		advance();
		if (quote === "'") return body;
		try {
			return JSON.parse(`"${body}"`) as string;
		} catch {
			return body;
		}
	};

	const parseKey = (): string[] | undefined => {
		const segments: string[] = [];
		for (;;) {
			skipSpaces();
			let segment: string | undefined;
			if (peek() === '"' || peek() === "'") segment = parseString();
			else {
				const m = /^[A-Za-z0-9_-]+/.exec(text.slice(pos, pos + 256));
				if (m !== null) {
					segment = m[0];
					advance(segment.length);
				}
			}
			if (segment === undefined) return undefined;
			segments.push(segment);
			skipSpaces();
			if (peek() !== ".") return segments;
			advance();
		}
	};

	const parseValue = (path: Path): boolean => {
		const c = peek();
		if (c === '"' || c === "'") return parseString() !== undefined;
		if (c === "[") {
			advance();
			for (let index = 0; ; index++) {
				skipBlank();
				if (peek() === "]") {
					advance();
					return true;
				}
				record([...path, index], line);
				if (!parseValue([...path, index])) return false;
				skipBlank();
				if (peek() === ",") advance();
				else if (peek() !== "]") return false;
			}
		}
		if (c === "{") {
			advance();
			for (;;) {
				skipBlank();
				if (peek() === "}") {
					advance();
					return true;
				}
				const keyLine = line;
				const key = parseKey();
				if (key === undefined) return false;
				record([...path, ...key], keyLine);
				skipSpaces();
				if (peek() !== "=") return false;
				advance();
				skipSpaces();
				if (!parseValue([...path, ...key])) return false;
				skipBlank();
				if (peek() === ",") advance();
				else if (peek() !== "}") return false;
			}
		}
		// Scalar: number, boolean, date-time (which may contain one space).
		const start = pos;
		while (pos < text.length && !/[,\]}\n#]/.test(peek())) advance();
		return pos > start;
	};

	let table: string[] = [];
	while (pos < text.length) {
		skipBlank();
		if (pos >= text.length) break;
		const headerLine = line;
		if (peek() === "[") {
			const arrayOfTables = peek(1) === "[";
			advance(arrayOfTables ? 2 : 1);
			const key = parseKey();
			if (key === undefined) break;
			table = key;
			record(table, headerLine);
			advance(arrayOfTables ? 2 : 1);
		} else {
			const key = parseKey();
			if (key === undefined) break;
			record([...table, ...key], headerLine);
			skipSpaces();
			if (peek() !== "=") break;
			advance();
			skipSpaces();
			if (!parseValue([...table, ...key])) break;
		}
		skipSpaces();
		skipComment();
	}

	return {
		lookup(path) {
			for (let n = path.length; n > 0; n--) {
				const found = lines.get(id(path.slice(0, n)));
				if (found !== undefined) return found;
			}
			return undefined;
		},
	};
}
