/**
 * File-system steps the backup manager needs to be crash-safe: fsync of files and directories,
 * atomic replacement of a small file, a SHA-256 of a file, and a walk that sums sizes.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, open, readdir, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";

/** fsync one file or directory (a directory's fsync makes the renames inside it durable). */
export async function fsyncPath(path: string): Promise<void> {
	const fh = await open(path, "r");
	try {
		await fh.sync();
	} finally {
		await fh.close();
	}
}

/** fsync every file and directory under `root`, children before their directory. */
export async function fsyncTree(root: string): Promise<void> {
	const st = await lstat(root);
	if (st.isDirectory()) {
		for (const name of await readdir(root)) await fsyncTree(join(root, name));
	}
	if (st.isDirectory() || st.isFile()) await fsyncPath(root);
}

/** Replaces `path` with `data` atomically: a temporary file beside it, fsync, rename, fsync dir. */
export async function writeFileAtomic(path: string, data: string): Promise<void> {
	const tmp = `${path}.tmp-${process.pid}`;
	await writeFile(tmp, data, { mode: 0o600 });
	await fsyncPath(tmp);
	await rename(tmp, path);
	await fsyncPath(dirname(path));
}

/** The SHA-256 of a file, hex. */
export async function sha256File(path: string): Promise<string> {
	const hash = createHash("sha256");
	for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
	return hash.digest("hex");
}

/** Files and bytes under `root` (0 when it does not exist). */
export async function treeSize(root: string): Promise<{ files: number; bytes: number }> {
	let files = 0;
	let bytes = 0;
	const walk = async (p: string): Promise<void> => {
		const st = await lstat(p).catch(() => null);
		if (!st) return;
		if (st.isDirectory()) for (const name of await readdir(p)) await walk(join(p, name));
		else if (st.isFile()) {
			files++;
			bytes += st.size;
		}
	};
	await walk(root);
	return { files, bytes };
}

export async function exists(path: string): Promise<boolean> {
	return (await lstat(path).catch(() => null)) !== null;
}

export async function removeTree(path: string): Promise<void> {
	await rm(path, { recursive: true, force: true });
}
