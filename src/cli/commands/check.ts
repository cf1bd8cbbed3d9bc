/** `parley check`: the configuration, the certificates, free ports and the cluster's Redis. */
import { createServer } from "node:net";
import type { Command } from "commander";
import { resolveDataPath } from "../../core/config/load.ts";
import { CliError, EXIT, loadConfig } from "../common.ts";

export function addCheckCommand(program: Command): void {
	program
		.command("check")
		.description("check the configuration, the certificates and that the ports are free")
		.option("-c, --config <file>", "TOML configuration file")
		.action(check);
}

/** Why the cluster's Redis cannot be used (a PING), or undefined when it answers. */
async function redisProblem(url: string): Promise<string | undefined> {
	const { Redis } = await import("ioredis");
	const r = new Redis(url, {
		lazyConnect: true,
		connectTimeout: 3000,
		maxRetriesPerRequest: 0,
		retryStrategy: () => null,
	});
	// The socket's own error (ECONNREFUSED, ENOTFOUND, NOAUTH...) says more than the rejection.
	let cause = "";
	r.on("error", (err: Error) => {
		cause ||= err.message;
	});
	try {
		await r.connect();
		await r.ping();
		return undefined;
	} catch (err) {
		return `not reachable (${cause || (err as Error).message})`;
	} finally {
		r.disconnect();
	}
}

async function portFree(address: string, port: number): Promise<boolean> {
	return new Promise((resolve) => {
		const s = createServer();
		s.once("error", () => resolve(false));
		s.listen({ host: address, port }, () => s.close(() => resolve(true)));
	});
}

async function check(opts: { config?: string }): Promise<void> {
	const config = loadConfig(opts.config);
	const problems: string[] = [];
	console.log(`configuration: ${opts.config ?? "(built-in defaults)"}: ok`);
	const hosts = Object.entries(config.hosts)
		.filter(([, h]) => h.enabled)
		.map(([n]) => n);
	console.log(`hosts: ${hosts.join(", ")}`);
	const { loadCertificates } = await import("../../tls/certs.ts");
	const { createLogger } = await import("../../core/log.ts");
	const defaultFiles =
		config.tls.cert && config.tls.key ? { cert: config.tls.cert, key: config.tls.key } : undefined;
	// A check changes nothing: hosts that would get a generated certificate are only reported.
	const withFiles = hosts.filter((h) => config.hosts[h]?.tls || defaultFiles);
	for (const h of hosts.filter((h) => !withFiles.includes(h))) {
		if (config.tls.self_signed)
			console.log(`certificate for ${h}: self-signed, generated under the data directory at start`);
		else problems.push(`certificates: ${h} has no certificate and tls.self_signed is false`);
	}
	try {
		const certs = await loadCertificates({
			hosts: withFiles,
			perHost: Object.fromEntries(withFiles.map((h) => [h, config.hosts[h]?.tls])),
			defaultFiles,
			selfSigned: false,
			dataDir: resolveDataPath(config, "."),
			log: createLogger({ level: "warn", format: "pretty", destination: 2 }),
		});
		for (const c of certs.describe())
			console.log(
				`certificate for ${c.host}: ${c.source} ${c.path} (${c.subject}, valid until ${c.notAfter})`,
			);
	} catch (err) {
		problems.push(`certificates: ${(err as Error).message}`);
	}
	for (const [name, l] of Object.entries(config.listeners)) {
		if (!l.enabled) continue;
		const free = await portFree(l.address, l.port);
		console.log(
			`listener ${name} on [${l.address}]:${l.port}: ${free ? "port free" : "PORT IN USE"}`,
		);
		if (!free) problems.push(`listeners.${name}: port ${l.port} on ${l.address} is in use`);
	}
	const workers = await import("../../cluster/workers.ts");
	if (config.cluster.enabled || workers.workerCount(config.server.workers) > 1) {
		const problem = await redisProblem(config.cluster.redis);
		console.log(`cluster: Redis at ${config.cluster.redis}: ${problem ?? "reachable"}`);
		if (problem) problems.push(`cluster.redis: ${problem}`);
	}
	if (problems.length) throw new CliError(problems.join("\n"), EXIT.CHECK_FAILED);
	console.log("all checks passed");
}
