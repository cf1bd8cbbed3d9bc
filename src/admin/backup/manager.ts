/**
 * Backups, restore and factory reset (issue 15, "Backups, restore, factory reset").
 *
 * A backup is one `<id>.tar.gz` in the backup directory, beside `<id>.json` (its manifest and
 * the archive's SHA-256). Inside: `manifest.json`, `config.toml` (the configuration file, when
 * there is one) and `data/` (the data directory: SQLite databases as consistent snapshots, the
 * upload files, the certificates; `run/`, the processes' status files, is left out).
 *
 * SQLite is copied with SQLite's online backup API (`node:sqlite` `backup()`, on a connection
 * of its own, in one step: one read transaction, so a snapshot of one commit while the server
 * keeps writing beside it in WAL mode; the copy runs on libuv's thread pool).
 *
 * A restore verifies the checksum first, then unpacks into a staging directory beside the data
 * directory (`<data_dir>.restore`), fsyncs it, and writes a journal (`<data_dir>.restore-journal`):
 * that write is the commit point. Without a journal, whatever a crash left is thrown away (the
 * old data stays); with one, the swap is finished by whoever comes next ({@link recoverRestore},
 * called by `parley serve` and the backup commands before they read anything): every step of
 * the swap is a rename that can be redone, so a kill -9 at any point leaves the old data or the
 * new, never a mix.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { createWriteStream } from "node:fs";
import { cp, mkdir, readdir, readFile, rename, stat, unlink, writeFile } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { DatabaseSync, backup as sqliteBackup } from "node:sqlite";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import * as tar from "tar";
import pkg from "../../../package.json" with { type: "json" };
import { CommandError } from "../../core/commands.ts";
import { ConfigError, loadConfigFile } from "../../core/config/load.ts";
import type { Config } from "../../core/config/schema.ts";
import {
	exists,
	fsyncPath,
	fsyncTree,
	removeTree,
	sha256File,
	treeSize,
	writeFileAtomic,
} from "./files.ts";
import {
	checkPostgresVersion,
	erasePostgres,
	exportPostgres,
	importPostgres,
	type PostgresTarget,
} from "./postgres.ts";

/** What a backup or a restore is doing, for progress bars (the admin API's Server-Sent Events). */
export type BackupPhase =
	| "database"
	| "files"
	| "config"
	| "pack"
	| "checksum"
	| "verify"
	| "unpack"
	| "sync"
	| "commit"
	| "swap"
	| "done";

export interface BackupProgress {
	phase: BackupPhase;
	/** Bytes handled so far in this phase (or its total once finished). */
	bytes: number;
}

export type ProgressCallback = (p: BackupProgress) => void;

/** `manifest.json` inside the archive, and `<id>.json` beside it (with `archive`). */
export interface BackupManifest {
	format: 1;
	id: string;
	/** Parley's version that wrote it. */
	version: string;
	/** ISO 8601, UTC. */
	created: string;
	/** Each storage backend the configuration names, and how it was saved. */
	backends: {
		name: string;
		backend: "sqlite" | "memory" | "postgres";
		/** The SQLite file, or PostgreSQL's directory of one NDJSON file per table. */
		file?: string;
		/** PostgreSQL: the schema version of the tables saved. */
		schemaVersion?: number;
	}[];
	/** Whether `config.toml` is in the archive. */
	config: boolean;
	/** The files of `data/` (databases included), before compression. */
	files: number;
	bytes: number;
}

export interface BackupInfo extends BackupManifest {
	archive: { file: string; bytes: number; sha256: string };
}

/** Where the manager works; `configPath` absent: built-in defaults, no file to save or reset. */
export interface BackupManagerOptions {
	config: Config;
	configPath?: string | undefined;
	/**
	 * Test hook: called at each named step of a restore or reset, so a test can kill the process
	 * there (kill -9 at several points). Never set in production.
	 */
	step?: ((name: string) => void) | undefined;
}

/** How long a factory-reset confirmation token is valid. */
export const RESET_TOKEN_TTL_MS = 5 * 60_000;

const ID_RE = /^parley-\d{8}T\d{6}Z-[0-9a-f]{6}$/;

/** The commented template a factory reset leaves as the configuration file. */
export const CONFIG_TEMPLATE = `# Parley configuration (written by a factory reset).
# Every key is commented out: the server needs a configuration before it serves anyone.
# See docs/configuration.md for every key.

# [server]
# data_dir = "./data"
# name = "Parley"

# [hosts."example.org"]
# (one table per domain this server serves)

# [storage]
# backend = "sqlite"          # or "postgres" with url = "postgres://..."

# [backup]
# dir = "./backups"           # must not be inside data_dir
`;

/** The paths a backup or restore touches, for one configuration. */
export function backupPaths(config: Config, configPath?: string) {
	const dataDir = resolve(config.server.data_dir);
	return {
		dataDir,
		backupDir: resolve(config.backup.dir),
		staging: `${dataDir}.restore`,
		journal: `${dataDir}.restore-journal`,
		oldData: `${dataDir}.restore-old`,
		newConfig: configPath ? `${resolve(configPath)}.restore-new` : undefined,
		resetToken: `${dataDir}.factory-reset`,
		/** The process id of the restore or reset at work (one at a time, across processes). */
		lock: `${dataDir}.restore-lock`,
		configPath: configPath ? resolve(configPath) : undefined,
	};
}

/** `inner` is `outer` or inside it. */
function within(inner: string, outer: string): boolean {
	const rel = relative(outer, inner);
	return rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !isAbsolute(rel));
}

/**
 * Why this configuration cannot take backups, or undefined: the backup directory must not be
 * inside what a restore replaces (the data directory), nor hold it.
 */
export function backupDirProblem(config: Config): string | undefined {
	const { dataDir, backupDir } = backupPaths(config);
	if (within(backupDir, dataDir))
		return `backup.dir (${backupDir}) is inside server.data_dir (${dataDir}), which a restore replaces: choose a directory outside it`;
	if (within(dataDir, backupDir))
		return `server.data_dir (${dataDir}) is inside backup.dir (${backupDir}): choose a backup directory that does not hold the data`;
	return undefined;
}

interface JournalRecord {
	id: string;
	/** A new configuration file waits at `newConfig`. */
	config: boolean;
	/**
	 * PostgreSQL databases to load from the staging directory (`dir`, relative to it) before the
	 * files are swapped. The file has mode 0600: a URL may hold a password, as the config does.
	 */
	postgres?: (PostgresTarget & { dir: string })[];
	/**
	 * A factory reset rather than a restore: PostgreSQL's tables emptied, the data directory
	 * removed, the configuration file replaced by the template.
	 */
	reset?: boolean;
}

/** The live process, other than this one, that holds the restore lock at `path`. */
async function lockHolder(path: string): Promise<number | undefined> {
	const text = await readFile(path, "utf8").catch(() => null);
	const pid = Number(text?.trim());
	if (text === null || !Number.isInteger(pid) || pid <= 0 || pid === process.pid) return undefined;
	try {
		process.kill(pid, 0);
		return pid;
	} catch (err) {
		// EPERM: alive, someone else's.
		return (err as NodeJS.ErrnoException).code === "EPERM" ? pid : undefined;
	}
}

/** Takes the restore lock, or says which process has it (a lock of a dead one is taken over). */
async function takeLock(path: string): Promise<void> {
	for (let attempt = 0; ; attempt++) {
		try {
			await writeFile(path, `${process.pid}\n`, { flag: "wx", mode: 0o600 });
			return;
		} catch (err) {
			if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw err;
		}
		const holder = await lockHolder(path);
		if (holder !== undefined)
			throw new CommandError(
				"conflict",
				`a restore or a factory reset is under way (process ${holder})`,
			);
		await unlink(path).catch(() => {});
	}
}

/**
 * Finishes a restore a crash interrupted, or throws away one that had not committed. Returns
 * what it did; "busy" when another live process is restoring (nothing is touched). Safe to
 * call at every start: without leftovers it does nothing.
 */
export async function recoverRestore(
	config: Config,
	configPath?: string,
	step?: (name: string) => void,
): Promise<"none" | "rolled-back" | "completed" | "busy"> {
	const p = backupPaths(config, configPath);
	if ((await lockHolder(p.lock)) !== undefined) return "busy";
	const result = await recoverUnlocked(p, step);
	// A lock a dead process left (its own process's is released by its owner).
	if ((await readFile(p.lock, "utf8").catch(() => "")).trim() !== String(process.pid))
		await removeTree(p.lock);
	return result;
}

async function recoverUnlocked(
	p: ReturnType<typeof backupPaths>,
	step?: (name: string) => void,
): Promise<"none" | "rolled-back" | "completed"> {
	const journal = await readFile(p.journal, "utf8").catch(() => null);
	if (journal !== null) {
		const record = JSON.parse(journal) as JournalRecord;
		await finishSwap(p, record, step ?? (() => {}));
		return "completed";
	}
	let found = false;
	for (const path of [p.staging, p.newConfig, `${p.journal}.tmp-${process.pid}`]) {
		if (path && (await exists(path))) {
			found = true;
			await removeTree(path);
		}
	}
	// A journal's temporary file of another process (it never became the journal).
	for (const name of await readdir(dirname(p.journal)).catch(() => [] as string[]))
		if (name.startsWith(`${basename(p.journal)}.tmp-`)) {
			found = true;
			await removeTree(join(dirname(p.journal), name));
		}
	// An old copy with no journal: the swap was finished, only the cleanup was not.
	if (await exists(p.oldData)) {
		await removeTree(p.oldData);
		found = true;
	}
	return found ? "rolled-back" : "none";
}

/** The swap after the commit point; each step can be redone after a crash. */
async function finishSwap(
	p: ReturnType<typeof backupPaths>,
	record: JournalRecord,
	step: (name: string) => void,
): Promise<void> {
	if (record.reset) return finishReset(p, record, step);
	// Each load is one transaction that can be run again: the staging directory stays until
	// the journal is gone.
	for (const target of record.postgres ?? []) {
		await importPostgres(target, join(p.staging, target.dir));
		step("postgres-loaded");
	}
	const stagedData = join(p.staging, "data");
	if (await exists(stagedData)) {
		if ((await exists(p.dataDir)) && !(await exists(p.oldData))) {
			await rename(p.dataDir, p.oldData);
			step("old-moved");
		} else if (await exists(p.dataDir)) {
			// Made after the old one was moved aside (a `parley user` command run before the
			// next start): kept for the operator, out of the way.
			await rename(p.dataDir, `${p.dataDir}.restore-stray-${Date.now()}`);
		}
		await rename(stagedData, p.dataDir);
		await fsyncPath(dirname(p.dataDir));
		step("data-swapped");
	}
	if (record.config && p.newConfig && p.configPath && (await exists(p.newConfig))) {
		await rename(p.newConfig, p.configPath);
		await fsyncPath(dirname(p.configPath));
		step("config-swapped");
	}
	await removeTree(p.oldData);
	step("old-removed");
	await removeTree(p.staging);
	await unlink(p.journal);
	await fsyncPath(dirname(p.journal));
}

interface Backend {
	name: string;
	backend: "sqlite" | "memory" | "postgres";
	path?: string;
	pg?: PostgresTarget;
}

/** A factory reset after its commit point; each step can be redone after a crash. */
async function finishReset(
	p: ReturnType<typeof backupPaths>,
	record: JournalRecord,
	step: (name: string) => void,
): Promise<void> {
	for (const target of record.postgres ?? []) await erasePostgres(target);
	step("postgres-erased");
	if ((await exists(p.dataDir)) && !(await exists(p.oldData))) {
		await rename(p.dataDir, p.oldData);
		await fsyncPath(dirname(p.dataDir));
	} else await removeTree(p.dataDir);
	step("data-aside");
	if (record.config && p.configPath) await writeFileAtomic(p.configPath, CONFIG_TEMPLATE);
	step("config-reset");
	await removeTree(p.oldData);
	await unlink(p.journal);
	await fsyncPath(dirname(p.journal));
}

export class BackupManager {
	readonly #config: Config;
	readonly #configPath: string | undefined;
	readonly #step: (name: string) => void;

	constructor(opts: BackupManagerOptions) {
		this.#config = opts.config;
		this.#configPath = opts.configPath;
		this.#step = opts.step ?? (() => {});
	}

	get paths() {
		return backupPaths(this.#config, this.#configPath);
	}

	#checkDir(): void {
		const problem = backupDirProblem(this.#config);
		if (problem) throw new CommandError("invalid_argument", problem);
	}

	/** The configured backends, by name: SQLite's file, PostgreSQL's URL and schema. */
	#backends(config: Config = this.#config): Backend[] {
		const s = config.storage;
		const all = [
			{ name: "default", cfg: s },
			...Object.entries(s.backends).map(([name, cfg]) => ({ name, cfg })),
		];
		return all.map(({ name, cfg }): Backend => {
			if (cfg.backend === "sqlite")
				return { name, backend: "sqlite", path: resolve(this.paths.dataDir, cfg.path) };
			if (cfg.backend === "postgres")
				return { name, backend: "postgres", pg: { url: cfg.url ?? "", schema: cfg.schema } };
			return { name, backend: "memory" };
		});
	}

	/**
	 * Writes a new backup while the server may be running, and returns its description. The
	 * archive appears under its final name only once complete (a `.partial` before).
	 */
	async create(onProgress: ProgressCallback = () => {}): Promise<BackupInfo> {
		this.#checkDir();
		const { dataDir, backupDir } = this.paths;
		// A restore or a reset in another process is replacing what would be read.
		const holder = await lockHolder(this.paths.lock);
		if (holder !== undefined)
			throw new CommandError(
				"conflict",
				`a restore or a factory reset is under way (process ${holder})`,
			);
		const backends = this.#backends();
		for (const b of backends)
			if (b.path && !within(b.path, dataDir))
				throw new CommandError(
					"invalid_argument",
					`the SQLite file of backend "${b.name}" (${b.path}) is outside server.data_dir: a backup holds data_dir only`,
				);
		await mkdir(backupDir, { recursive: true });
		const now = new Date();
		const stamp = now
			.toISOString()
			.replace(/[-:]/g, "")
			.replace(/\.\d+Z$/, "Z");
		const id = `parley-${stamp}-${randomBytes(3).toString("hex")}`;
		const work = join(backupDir, `.${id}.work`);
		const partial = join(backupDir, `${id}.tar.gz.partial`);
		try {
			await mkdir(join(work, "data"), { recursive: true });
			// 1. databases: one consistent snapshot each.
			const skip = new Set<string>();
			const manifestBackends: BackupManifest["backends"] = [];
			let dbBytes = 0;
			for (const b of backends) {
				if (b.pg) {
					const dir = `postgres/${b.name}`;
					const { schemaVersion } = await exportPostgres(b.pg, join(work, dir));
					manifestBackends.push({ name: b.name, backend: "postgres", file: dir, schemaVersion });
					onProgress({ phase: "database", bytes: (await treeSize(join(work, dir))).bytes });
					continue;
				}
				if (!b.path) {
					manifestBackends.push({ name: b.name, backend: b.backend });
					continue;
				}
				for (const suffix of ["", "-wal", "-shm", "-journal"]) skip.add(`${b.path}${suffix}`);
				const rel = relative(dataDir, b.path);
				manifestBackends.push({ name: b.name, backend: "sqlite", file: `data/${rel}` });
				if (!(await exists(b.path))) continue;
				const target = join(work, "data", rel);
				await mkdir(dirname(target), { recursive: true });
				const source = new DatabaseSync(b.path, { readOnly: true, timeout: 10_000 });
				try {
					// One step (the largest rate there is): one read transaction, never restarted
					// by the server's writes on its own connection.
					await sqliteBackup(source, target, { rate: 2_147_483_647 });
				} finally {
					source.close();
				}
				dbBytes += (await stat(target)).size;
				onProgress({ phase: "database", bytes: dbBytes });
			}
			// 2. the other files of the data directory.
			if (await exists(dataDir)) {
				await cp(dataDir, join(work, "data"), {
					recursive: true,
					filter: (src) => !skip.has(src) && src !== join(dataDir, "run"),
				});
			}
			const size = await treeSize(join(work, "data"));
			onProgress({ phase: "files", bytes: size.bytes });
			// 3. the configuration file.
			let hasConfig = false;
			if (this.#configPath && (await exists(this.#configPath))) {
				await cp(this.#configPath, join(work, "config.toml"));
				hasConfig = true;
				onProgress({ phase: "config", bytes: (await stat(this.#configPath)).size });
			}
			const manifest: BackupManifest = {
				format: 1,
				id,
				version: pkg.version,
				created: now.toISOString(),
				backends: manifestBackends,
				config: hasConfig,
				files: size.files,
				bytes: size.bytes,
			};
			await writeFileAtomic(join(work, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
			// 4. pack, checksum, publish.
			const entries = ["manifest.json", "data"];
			if (hasConfig) entries.push("config.toml");
			if (await exists(join(work, "postgres"))) entries.push("postgres");
			// Compressed by node:zlib's stream, which runs on the thread pool; tar's own gzip
			// option compresses on the main thread (minizlib) and held the event loop up to
			// 444 ms per chunk on a 107 MB database (docs/architecture.md "Backups").
			await pipeline(
				tar.create({ cwd: work, portable: true }, entries),
				createGzip(),
				createWriteStream(partial),
			);
			const archiveBytes = (await stat(partial)).size;
			onProgress({ phase: "pack", bytes: archiveBytes });
			const sha256 = await sha256File(partial);
			onProgress({ phase: "checksum", bytes: archiveBytes });
			await fsyncPath(partial);
			const archive = join(backupDir, `${id}.tar.gz`);
			const info: BackupInfo = {
				...manifest,
				archive: { file: archive, bytes: archiveBytes, sha256 },
			};
			await rename(partial, archive);
			await writeFileAtomic(join(backupDir, `${id}.json`), `${JSON.stringify(info, null, 2)}\n`);
			onProgress({ phase: "done", bytes: archiveBytes });
			return info;
		} finally {
			await removeTree(work);
			await removeTree(partial);
		}
	}

	/** Every complete backup, oldest first. */
	async list(): Promise<BackupInfo[]> {
		const { backupDir } = this.paths;
		const names = await readdir(backupDir).catch(() => [] as string[]);
		const out: BackupInfo[] = [];
		for (const name of names.sort()) {
			if (!name.endsWith(".json") || !ID_RE.test(name.slice(0, -5))) continue;
			const info = await this.get(name.slice(0, -5)).catch(() => undefined);
			if (info) out.push(info);
		}
		return out;
	}

	/** One backup, with the archive's path (for a download). Unknown: CommandError not_found. */
	async get(id: string): Promise<BackupInfo> {
		if (!ID_RE.test(id)) throw new CommandError("not_found", `no backup ${JSON.stringify(id)}`);
		const { backupDir } = this.paths;
		const text = await readFile(join(backupDir, `${id}.json`), "utf8").catch(() => null);
		const archive = join(backupDir, `${id}.tar.gz`);
		if (text === null || !(await exists(archive)))
			throw new CommandError("not_found", `no backup ${id}`);
		const info = JSON.parse(text) as BackupInfo;
		return { ...info, archive: { ...info.archive, file: archive } };
	}

	async delete(id: string): Promise<void> {
		const info = await this.get(id);
		// The description last: a backup without it is not listed.
		await unlink(info.archive.file);
		await unlink(join(this.paths.backupDir, `${id}.json`));
	}

	/**
	 * Replaces the data directory (and the configuration file, when the backup has one and
	 * `withConfig`) with the backup's. The server must not be running on this data (the caller
	 * stops it: sessions end with `system-shutdown`). Nothing is touched before the checksum
	 * matches.
	 */
	async restore(
		id: string,
		opts: { withConfig?: boolean; onProgress?: ProgressCallback } = {},
	): Promise<BackupInfo> {
		const onProgress = opts.onProgress ?? (() => {});
		const step = this.#step;
		const info = await this.get(id);
		// 1. the checksum, before anything else.
		const sum = await sha256File(info.archive.file);
		onProgress({ phase: "verify", bytes: info.archive.bytes });
		if (sum !== info.archive.sha256)
			throw new CommandError(
				"invalid_argument",
				`backup ${id} is damaged: its SHA-256 is ${sum}, ${info.archive.sha256} was recorded`,
			);
		step("verified");
		const p = this.paths;
		await takeLock(p.lock);
		try {
			return await this.#restoreLocked(id, info, opts.withConfig ?? true, onProgress);
		} finally {
			await unlink(p.lock).catch(() => {});
		}
	}

	async #restoreLocked(
		id: string,
		info: BackupInfo,
		withConfig: boolean,
		onProgress: ProgressCallback,
	): Promise<BackupInfo> {
		const p = this.paths;
		const step = this.#step;
		// Leftovers of an earlier attempt: finished or thrown away first.
		await recoverRestore(this.#config, this.#configPath);
		let record: JournalRecord;
		let manifest: BackupManifest;
		try {
			({ record, manifest } = await this.#stage(id, withConfig, onProgress));
		} catch (err) {
			// Before the commit point: nothing happened.
			await recoverRestore(this.#config, this.#configPath);
			throw err;
		}
		// 4. commit: from here on the restore completes, now or at the next start.
		await writeFileAtomic(p.journal, `${JSON.stringify(record)}\n`);
		onProgress({ phase: "commit", bytes: 0 });
		step("committed");
		await finishSwap(p, record, step);
		onProgress({ phase: "swap", bytes: manifest.bytes });
		onProgress({ phase: "done", bytes: manifest.bytes });
		return info;
	}

	/** Unpacks, checks and syncs the staging directory; the journal record to commit. */
	async #stage(
		id: string,
		withConfigAsked: boolean,
		onProgress: ProgressCallback,
	): Promise<{ record: JournalRecord; manifest: BackupManifest }> {
		const p = this.paths;
		const step = this.#step;
		const info = await this.get(id);
		// 2. unpack beside the data directory (same file system: the swap is a rename).
		await mkdir(p.staging, { recursive: true });
		await tar.extract({ file: info.archive.file, cwd: p.staging, strict: true });
		step("unpacked");
		const manifest = JSON.parse(
			await readFile(join(p.staging, "manifest.json"), "utf8"),
		) as BackupManifest;
		if (manifest.format !== 1 || manifest.id !== id)
			throw new CommandError("invalid_argument", `backup ${id} has an unknown manifest`);
		await mkdir(join(p.staging, "data"), { recursive: true });
		onProgress({ phase: "unpack", bytes: manifest.bytes });
		const withConfig = withConfigAsked && manifest.config && p.newConfig !== undefined;
		let after = this.#config;
		if (withConfig && p.newConfig) {
			await cp(join(p.staging, "config.toml"), p.newConfig);
			after = await this.#checkNewConfig(p.newConfig);
		}
		const postgres = this.#postgresTargets(manifest, after);
		// 3. durable before the commit point.
		await fsyncTree(p.staging);
		if (withConfig && p.newConfig) await fsyncPath(p.newConfig);
		await fsyncPath(dirname(p.staging));
		onProgress({ phase: "sync", bytes: manifest.bytes });
		step("synced");
		return { record: { id, config: withConfig, postgres }, manifest };
	}

	/**
	 * Where the backup's PostgreSQL data goes: the backend of the same name in the configuration
	 * in force after the restore, which must be PostgreSQL too (and the reverse).
	 */
	#postgresTargets(manifest: BackupManifest, after: Config): JournalRecord["postgres"] {
		const targets: NonNullable<JournalRecord["postgres"]> = [];
		const now = this.#backends(after);
		for (const saved of manifest.backends) {
			const here = now.find((b) => b.name === saved.name);
			if (saved.backend === "postgres") {
				if (!here?.pg)
					throw new CommandError(
						"invalid_argument",
						`the backup holds PostgreSQL data for storage backend "${saved.name}", which is not PostgreSQL in the configuration the restore leaves`,
					);
				checkPostgresVersion(saved.schemaVersion, saved.name);
				targets.push({ ...here.pg, dir: saved.file ?? `postgres/${saved.name}` });
			}
		}
		for (const b of now)
			if (b.pg && !manifest.backends.some((s) => s.name === b.name && s.backend === "postgres"))
				throw new CommandError(
					"invalid_argument",
					`storage backend "${b.name}" is PostgreSQL, and the backup holds no PostgreSQL data for it`,
				);
		return targets;
	}

	/** The backup's configuration must load here and name the same data directory. */
	async #checkNewConfig(path: string): Promise<Config> {
		let next: Config;
		try {
			next = loadConfigFile(path);
		} catch (err) {
			await removeTree(path);
			const msg = err instanceof ConfigError ? err.message : String(err);
			throw new CommandError(
				"invalid_argument",
				`the backup's configuration does not load here (restore the data only to keep this one): ${msg}`,
			);
		}
		const here = this.paths.dataDir;
		if (resolve(next.server.data_dir) !== here) {
			await removeTree(path);
			throw new CommandError(
				"invalid_argument",
				`the backup's configuration names another data directory (${resolve(next.server.data_dir)}, not ${here}): restore the data only, or edit server.data_dir`,
			);
		}
		return next;
	}

	/**
	 * Step one of a factory reset: a confirmation token, valid {@link RESET_TOKEN_TTL_MS}. Only a
	 * hash of it is kept (beside the data directory, so the CLI and a server see the same one).
	 */
	async requestReset(now = Date.now()): Promise<{ token: string; expires: string }> {
		const token = randomBytes(24).toString("base64url");
		const expires = now + RESET_TOKEN_TTL_MS;
		const hash = createHash("sha256").update(token).digest("hex");
		await mkdir(dirname(this.paths.resetToken), { recursive: true });
		await writeFileAtomic(this.paths.resetToken, JSON.stringify({ hash, expires }));
		return { token, expires: new Date(expires).toISOString() };
	}

	/**
	 * Step two: with the token of step one, erase the data directory and replace the
	 * configuration file with {@link CONFIG_TEMPLATE}. The server must not be running on this
	 * data. Afterwards the server needs a configuration.
	 */
	async confirmReset(token: string, now = Date.now()): Promise<{ configurationNeeded: true }> {
		const p = this.paths;
		const text = await readFile(p.resetToken, "utf8").catch(() => null);
		if (text === null) throw new CommandError("invalid_argument", "no factory reset was requested");
		const { hash, expires } = JSON.parse(text) as { hash: string; expires: number };
		const given = createHash("sha256").update(token).digest();
		const want = Buffer.from(hash, "hex");
		if (now > expires) {
			await removeTree(p.resetToken);
			throw new CommandError("invalid_argument", "the factory reset token has expired");
		}
		if (given.length !== want.length || !timingSafeEqual(given, want))
			throw new CommandError("forbidden", "wrong factory reset token");
		await removeTree(p.resetToken);
		await takeLock(p.lock);
		try {
			return await this.#eraseLocked();
		} finally {
			await unlink(p.lock).catch(() => {});
		}
	}

	/** The reset's journal is its commit point, as a restore's: the next start finishes it. */
	async #eraseLocked(): Promise<{ configurationNeeded: true }> {
		const p = this.paths;
		await recoverRestore(this.#config, this.#configPath);
		const postgres = this.#backends().flatMap((b) => (b.pg ? [{ ...b.pg, dir: "" }] : []));
		const record: JournalRecord = {
			id: "factory-reset",
			config: p.configPath !== undefined,
			postgres,
			reset: true,
		};
		await writeFileAtomic(p.journal, `${JSON.stringify(record)}\n`);
		this.#step("committed");
		await finishReset(p, record, this.#step);
		return { configurationNeeded: true };
	}
}
