/**
 * A private PostgreSQL cluster for tests that stop and start the database: initdb + pg_ctl in a
 * temporary directory on a free loopback port, so the shared PostgreSQL on 5432 is never touched.
 * Tests skip with `pgClusterSkip` when the server binaries (or, as root, the postgres user) are
 * missing.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.ts";

export { freePort };

function findBin(): string | undefined {
	const root = "/usr/lib/postgresql";
	if (!existsSync(root)) return undefined;
	for (const v of readdirSync(root).sort().reverse()) {
		const bin = join(root, v, "bin");
		if (existsSync(join(bin, "initdb")) && existsSync(join(bin, "pg_ctl"))) return bin;
	}
	return undefined;
}

/** PostgreSQL refuses to run as root: run its tools as the postgres user then. */
function pgUser(): { uid: number; gid: number } | undefined {
	if (process.getuid?.() !== 0) return undefined;
	const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"]).toString().trim());
	return { uid: id("-u"), gid: id("-g") };
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */

const bin = findBin();

/** The `skip` option for a suite that needs a private cluster: a reason, or false. */
export const pgClusterSkip: string | false = (() => {
	if (!bin) return "PostgreSQL server binaries (initdb, pg_ctl) not found";
	if (process.getuid?.() === 0) {
		try {
			pgUser();
		} catch {
			return "running as root and there is no postgres user to run the private cluster";
		}
	}
	return false;
})();

export interface PgCluster {
	/** The temporary directory holding the cluster (and free for the test's own files). */
	dir: string;
	port: number;
	/** A connection URL for the `postgres` superuser (trust authentication). */
	url: string;
	/** `pg_ctl start`, waiting until it accepts connections. */
	start(): void;
	/** `pg_ctl stop -m fast`. */
	stop(): void;
	/** Stops the cluster if it runs (immediate mode) and removes its directory. */
	destroy(): void;
}

/** Creates a cluster in a new temporary directory named after `prefix`, and starts it. */
export async function startPgCluster(prefix: string): Promise<PgCluster> {
	if (!bin) throw new Error("PostgreSQL server binaries (initdb, pg_ctl) not found");
	const tools = bin;
	const dir = mkdtempSync(join(tmpdir(), prefix));
	const data = join(dir, "data");
	const port = await freePort();
	const user = pgUser();
	const asUser = { stdio: "ignore" as const, ...(user && { uid: user.uid, gid: user.gid }) };
	if (user) {
		chownSync(dir, user.uid, user.gid);
		chmodSync(dir, 0o700);
	}
	const pgctl = (...args: string[]) =>
		execFileSync(
			join(tools, "pg_ctl"),
			["-D", data, "-w", "-l", join(dir, "log"), ...args],
			asUser,
		);
	const cluster: PgCluster = {
		dir,
		port,
		url: `postgres://postgres@127.0.0.1:${port}/postgres`,
		start: () => {
			pgctl("-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, "start");
		},
		stop: () => {
			pgctl("-m", "fast", "stop");
		},
		destroy: () => {
			try {
				pgctl("-m", "immediate", "stop");
			} catch {
				// already stopped
			}
			rmSync(dir, { recursive: true, force: true });
		},
	};
	try {
		execFileSync(
			join(tools, "initdb"),
			["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "--no-instructions"],
			asUser,
		);
		cluster.start();
	} catch (e) {
		cluster.destroy();
		throw e;
	}
	return cluster;
}
