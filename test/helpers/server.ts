/**
 * Starts a real Parley server for end-to-end tests: real sockets on free loopback ports, real
 * TLS with a generated certificate, in-memory storage unless a test asks for SQLite.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "../../src/app/server.ts";
import type { AnyAdminCommand } from "../../src/core/commands.ts";
import { type Config, configSchema } from "../../src/core/config/schema.ts";
import { createLogger } from "../../src/core/log.ts";
import type { Server } from "../../src/core/server.ts";
import { MemoryBackend } from "../../src/storage/memory.ts";
import { TEST_CLUSTER_REGISTRY } from "./cluster-registry.ts";
import { provideSelfSignedCertificate, trustServerCertificates } from "./tls.ts";

export interface TestServer {
	server: Server;
	/** Plain TCP port (STARTTLS). */
	port: number;
	/** Direct TLS port (XEP-0368). */
	tlsPort: number;
	/** HTTP port (BOSH, WebSocket), 0 when disabled. */
	httpPort: number;
	/** HTTPS port (BOSH, WebSocket over TLS), 0 when disabled. */
	httpsPort: number;
	/** XEP-0114 component port, 0 when not open (no external component configured). */
	componentPort: number;
	dataDir: string;
	stop(): Promise<void>;
}

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? DeepPartial<T[K]> : T[K] };

export async function startTestServer(
	opts: {
		config?: DeepPartial<Config> & Record<string, unknown>;
		users?: [jid: string, password: string][];
		storage?: "memory" | "sqlite";
		/** Reuse this data directory (e.g. a stopped server's, to test durability); kept on stop. */
		dataDir?: string;
		/** Write the server's JSON log lines here, from level info (tests that read the log). */
		log?: NodeJS.WritableStream;
		/** Admin commands besides the built-in ones (src/core/commands.ts). */
		commands?: readonly AnyAdminCommand[];
	} = {},
): Promise<TestServer> {
	const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), "parley-test-"));
	const raw = {
		...opts.config,
		server: { data_dir: dataDir, ...opts.config?.server },
		listeners: {
			c2s: { address: "127.0.0.1", port: 0 },
			c2s_direct_tls: { address: "127.0.0.1", port: 0 },
			http: { address: "127.0.0.1", port: 0 },
			https: { address: "127.0.0.1", port: 0 },
			// Opened only with an external component configured; never the real 5347 in a test.
			component: { address: "127.0.0.1", port: 0 },
			// Federation is on by default; a test that needs it turns it on with its own port.
			s2s: { enabled: false, address: "127.0.0.1", port: 0 },
			...opts.config?.listeners,
		},
		storage: { backend: opts.storage ?? "memory", ...opts.config?.storage },
	};
	const config = configSchema.parse(raw);
	// PARLEY_TEST_CLUSTER_REGISTRY=sharded runs every cluster test on the sharded registry
	// (issue 16) unless it names its own.
	if (!opts.config?.cluster?.registry) config.cluster.registry = TEST_CLUSTER_REGISTRY;
	await provideSelfSignedCertificate(config);
	const log = createLogger({
		level: opts.log ? "info" : (process.env.PARLEY_TEST_LOG ?? "silent"),
		format: "json",
		destination: opts.log ?? 2,
	});
	const server = createServer(config, {
		log,
		storage: opts.storage === "sqlite" ? undefined : new MemoryBackend(),
		commands: opts.commands,
	});
	try {
		await server.start();
	} catch (err) {
		// A server that does not start leaves nothing behind (tests of start-up failures).
		if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
		throw err;
	}
	for (const [jid, password] of opts.users ?? []) {
		const [local, domain] = jid.split("@") as [string, string];
		const host = server.hosts.get(domain);
		if (!host) throw new Error(`no host ${domain}`);
		await host.accounts.create(local, password);
	}
	// Test clients verify the server's certificate: trust it (test/helpers/tls.ts).
	trustServerCertificates(server);
	const has = (kind: string) => server.listeners.some((l) => l.kind === kind);
	return {
		server,
		port: has("c2s") ? server.port("c2s") : 0,
		tlsPort: has("c2s_direct_tls") ? server.port("c2s_direct_tls") : 0,
		httpPort: has("http") ? server.port("http") : 0,
		httpsPort: has("https") ? server.port("https") : 0,
		componentPort: has("component") ? server.port("component") : 0,
		dataDir,
		async stop() {
			await server.stop();
			if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
		},
	};
}
