/**
 * The uploaded files on disk, one directory per upload component:
 *
 *     <id>        the file's bytes
 *     <id>.json   what GET needs: name, media type, size, uploader, upload time
 *     <id>.part   an upload in progress (created exclusively: one PUT per slot)
 *
 * A PUT streams into `<id>.part` (never the whole body in memory), fsyncs it, writes the
 * metadata, then renames the part into place, so a GET finds either nothing or the whole file.
 * Files and metadata live together, so any process that sees the directory (every worker of
 * one machine; nodes sharing it over a network file system) serves them.
 */
import { createReadStream, type ReadStream } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { SLOT_ID } from "./slot.ts";

export interface FileMeta {
	name: string;
	type: string;
	size: number;
	uploader: string;
	/** Milliseconds since the epoch, when the upload completed. */
	created: number;
}

/** The body was shorter or longer than the slot's size. */
export class SizeMismatch extends Error {}

export class FileStore {
	readonly dir: string;

	constructor(dir: string) {
		this.dir = dir;
	}

	async init(): Promise<void> {
		await mkdir(this.dir, { recursive: true, mode: 0o750 });
	}

	#path(id: string, suffix = ""): string {
		if (!SLOT_ID.test(id)) throw new Error(`not a file id: ${id}`);
		return join(this.dir, id + suffix);
	}

	/** A file whose upload completed. */
	completed(id: string): Promise<boolean> {
		return this.#has(this.#path(id));
	}

	/** A file whose upload completed, or is in progress. */
	async exists(id: string): Promise<boolean> {
		return (await this.#has(this.#path(id))) || this.#has(this.#path(id, ".part"));
	}

	/**
	 * Streams `body` into the part file; exactly `size` bytes or it throws (and removes the part).
	 * Throws with code EEXIST when another upload of the id is in progress. `received.bytes`
	 * counts what arrived, even when it throws.
	 */
	async receive(
		id: string,
		body: Readable,
		size: number,
		signal: AbortSignal,
		received: { bytes: number } = { bytes: 0 },
	): Promise<void> {
		const part = this.#path(id, ".part");
		const fh = await open(part, "wx", 0o640);
		let n = 0;
		const count = new Transform({
			transform(chunk: Buffer, _enc, done) {
				n += chunk.length;
				received.bytes += chunk.length;
				done(n > size ? new SizeMismatch("the body is longer than the slot's size") : null, chunk);
			},
		});
		try {
			// `flush`: fsync before close, so a file we answered 201 for survives a crash.
			await pipeline(body, count, fh.createWriteStream({ flush: true }), { signal });
			if (n !== size) throw new SizeMismatch("the body is shorter than the slot's size");
		} catch (err) {
			await fh.close().catch(() => {});
			await rm(part, { force: true });
			throw err;
		}
	}

	/** Publishes a received part under its id, with its metadata. */
	async commit(id: string, meta: FileMeta): Promise<void> {
		const tmp = this.#path(id, ".json.tmp");
		await writeFile(tmp, JSON.stringify(meta), { mode: 0o640, flush: true });
		await rename(tmp, this.#path(id, ".json"));
		await rename(this.#path(id, ".part"), this.#path(id));
	}

	/** Drops a received part (its upload could not be recorded). */
	async discard(id: string): Promise<void> {
		await rm(this.#path(id, ".part"), { force: true });
	}

	async #has(path: string): Promise<boolean> {
		try {
			await stat(path);
			return true;
		} catch {
			return false;
		}
	}

	/** A completed file's metadata, or null. */
	async meta(id: string): Promise<FileMeta | null> {
		try {
			const [text] = await Promise.all([
				readFile(this.#path(id, ".json"), "utf8"),
				stat(this.#path(id)),
			]);
			return JSON.parse(text) as FileMeta;
		} catch {
			return null;
		}
	}

	/** The bytes `start`..`end` (inclusive) of a file. */
	read(id: string, start: number, end: number): ReadStream {
		return createReadStream(this.#path(id), { start, end });
	}

	async remove(id: string): Promise<void> {
		await rm(this.#path(id), { force: true });
		await rm(this.#path(id, ".json"), { force: true });
	}

	/**
	 * Deletes the files completed before `before` (their mtime: when the upload ended) and the
	 * parts not written to since `staleBefore` (abandoned uploads). Returns how many files.
	 */
	async sweep(before: number, staleBefore: number): Promise<number> {
		let removed = 0;
		for (const name of await readdir(this.dir)) {
			const id = name.split(".")[0] ?? "";
			if (!SLOT_ID.test(id)) continue;
			const suffix = name.slice(id.length);
			if (![".part", ".json.tmp", ".json", ""].includes(suffix)) continue;
			let mtime: number;
			try {
				mtime = (await stat(join(this.dir, name))).mtimeMs;
			} catch {
				continue;
			}
			if (suffix === "" && mtime < before) {
				await this.remove(id);
				removed++;
			} else if (suffix === ".json") {
				// Metadata whose file is gone (a crash between the two renames of `commit`).
				if (mtime < staleBefore && !(await this.#has(this.#path(id))))
					await rm(join(this.dir, name), { force: true });
			} else if (suffix !== "" && mtime < staleBefore) {
				await rm(join(this.dir, name), { force: true });
			}
		}
		return removed;
	}
}
