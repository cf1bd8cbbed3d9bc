/**
 * A Parley server under the Supervisor with its admin API, in this process, as `parley serve`
 * runs it: a parley.toml in a temp directory (SQLite storage, every listener on loopback and a
 * port the system picks), re-read at each reload and restart. `wrap` lets a test reach into
 * each server the factory builds (hold its start or stop to see the states in between).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AdminApi } from "../../src/admin/api.ts";
import { adminCommands } from "../../src/admin/commands/index.ts";
import { Supervisor } from "../../src/admin/supervisor.ts";
import { createServer } from "../../src/app/server.ts";
import type { AnyAdminCommand } from "../../src/core/commands.ts";
import { loadConfigFile } from "../../src/core/config/load.ts";
import { createLogger } from "../../src/core/log.ts";
import type { Server } from "../../src/core/server.ts";
import { provideSelfSignedCertificate } from "./tls.ts";

export interface AdminHarness {
	dir: string;
	config: string;
	supervisor: Supervisor;
	api: AdminApi;
	/** Every log line, parsed (the audit log is in it). */
	lines: Record<string, unknown>[];
	/** Writes parley.toml: the base tables plus `extra`. */
	write(extra?: string): void;
	request(
		method: string,
		path: string,
		opts?: { body?: unknown; raw?: string; token?: string },
	): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }>;
	/** A token for `jid` (an admin) through `POST /auth/tokens`. */
	token(jid: string, password: string): Promise<string>;
	close(): Promise<void>;
}

export function baseToml(dir: string, hosts = ["localhost"]): string {
	return `[server]
data_dir = "${join(dir, "data")}"
[log]
level = "info"
format = "json"
[storage]
backend = "sqlite"
[listeners.c2s]
address = "127.0.0.1"
port = 0
[listeners.c2s_direct_tls]
enabled = false
[listeners.http]
address = "127.0.0.1"
port = 0
[listeners.https]
address = "127.0.0.1"
port = 0
[listeners.s2s]
enabled = false
[listeners.admin]
address = "127.0.0.1"
port = 0
${hosts.map((h) => `[hosts."${h}"]\n`).join("")}`;
}

export async function startAdmin(
	opts: {
		/** Tables appended to the base configuration. */
		extra?: string;
		/** Do not start the Supervisor (the test starts it, to see `starting`). */
		deferStart?: boolean;
		wrap?: (server: Server) => void;
		env?: NodeJS.ProcessEnv;
		/** More commands for the API (the supervised backups), built on the Supervisor. */
		commands?: (supervisor: Supervisor, config: string) => AnyAdminCommand[];
	} = {},
): Promise<AdminHarness> {
	const dir = mkdtempSync(join(tmpdir(), "parley-admin-"));
	const config = join(dir, "parley.toml");
	const write = (extra = opts.extra ?? "") => writeFileSync(config, baseToml(dir) + extra);
	write();
	try {
		await provideSelfSignedCertificate(loadConfigFile(config));
	} catch {}
	const lines: Record<string, unknown>[] = [];
	const log = createLogger({
		level: "info",
		format: "json",
		destination: {
			write(chunk: string) {
				for (const l of String(chunk).split("\n")) if (l) lines.push(JSON.parse(l));
				return true;
			},
		} as unknown as NodeJS.WritableStream,
	});
	const supervisor = new Supervisor({
		log,
		loadConfig: () => loadConfigFile(config, { env: opts.env ?? {} }),
		createServer: (cfg) => {
			const server = createServer(cfg, { log });
			opts.wrap?.(server);
			return server;
		},
	});
	const api = new AdminApi(supervisor, {
		address: "127.0.0.1",
		port: 0,
		commands: [...adminCommands, ...(opts.commands?.(supervisor, config) ?? [])],
	});
	await api.listen();
	if (!opts.deferStart) await supervisor.start();
	const request: AdminHarness["request"] = async (method, path, o = {}) => {
		const headers: Record<string, string> = {};
		if (o.token) headers.authorization = `Bearer ${o.token}`;
		let body: string | undefined;
		if (o.raw !== undefined || o.body !== undefined) {
			headers["content-type"] = "application/json";
			body = o.raw ?? JSON.stringify(o.body);
		}
		const res = await fetch(`http://127.0.0.1:${api.port}${path}`, { method, headers, body });
		const text = await res.text();
		return {
			status: res.status,
			headers: res.headers,
			body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
		};
	};
	return {
		dir,
		config,
		supervisor,
		api,
		lines,
		write,
		request,
		async token(jid, password) {
			const r = await request("POST", "/auth/tokens", { body: { jid, password } });
			if (r.status !== 201) throw new Error(`token: ${r.status} ${JSON.stringify(r.body)}`);
			return r.body.token as string;
		},
		async close() {
			await api.close();
			await supervisor.stop();
			rmSync(dir, { recursive: true, force: true });
		},
	};
}
