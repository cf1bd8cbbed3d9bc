/**
 * `parley s2s`: the server-to-server streams a running server has open, read from the status
 * file each server process keeps under `data_dir/run/` (src/s2s/manager.ts): one line a stream
 * with its direction, domains, authentication and TLS version. The admin API will serve the same
 * list; until then this works without one, for every process of `server.workers` on this machine.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Command } from "commander";
import { resolveDataPath } from "../../core/config/load.ts";
import type { S2SStreamInfo } from "../../s2s/manager.ts";
import { loadConfig } from "../common.ts";

interface StatusFile {
	pid: number;
	updated: string;
	streams: S2SStreamInfo[];
}

export function addS2SCommand(program: Command): void {
	program
		.command("s2s")
		.description("list the server-to-server streams a running server has open")
		.option("-c, --config <file>", "TOML configuration file (for data_dir)")
		.option("--json", "print the list as JSON")
		.action(async (opts: { config?: string; json?: boolean }) => {
			const config = loadConfig(opts.config);
			const dir = resolveDataPath(config, "run");
			const files = await liveStatusFiles(dir);
			if (opts.json) {
				console.log(
					JSON.stringify(files.flatMap((f) => f.streams.map((s) => ({ ...s, pid: f.pid })))),
				);
				return;
			}
			if (files.length === 0) {
				console.log(`no running server with federation on keeps its status under ${dir}`);
				return;
			}
			const streams = files.flatMap((f) => f.streams.map((s) => ({ s, pid: f.pid })));
			if (streams.length === 0) console.log("no server-to-server streams open");
			for (const { s, pid } of streams) console.log(describe(s, pid, files.length > 1));
		});
}

function describe(s: S2SStreamInfo, pid: number, withPid: boolean): string {
	const arrow = s.direction === "outgoing" ? "->" : "<-";
	const remote = s.remote.length ? s.remote.join(",") : "(not authenticated yet)";
	const auth = s.auth.filter(Boolean).join(",") || "-";
	const parts = [
		s.direction.padEnd(8),
		`${s.local || "?"} ${arrow} ${remote}`,
		s.state,
		auth,
		s.tls ?? "no TLS",
		`since ${s.since}`,
	];
	if (withPid) parts.push(`(pid ${pid})`);
	return parts.join("  ");
}

/** The status files whose process is still running (a killed server leaves its file behind). */
async function liveStatusFiles(dir: string): Promise<StatusFile[]> {
	let names: string[];
	try {
		names = await readdir(dir);
	} catch {
		return [];
	}
	const out: StatusFile[] = [];
	for (const name of names.filter((n) => /^s2s-\d+\.json$/.test(n)).sort()) {
		let file: StatusFile;
		try {
			file = JSON.parse(await readFile(join(dir, name), "utf8")) as StatusFile;
		} catch {
			continue;
		}
		if (alive(file.pid)) out.push(file);
	}
	return out;
}

function alive(pid: number): boolean {
	try {
		process.kill(pid, 0);
		return true;
	} catch (err) {
		// EPERM: it exists, as another user's process.
		return (err as NodeJS.ErrnoException).code === "EPERM";
	}
}
