/**
 * `parley check`: the configuration, the certificates, free ports, the cluster's Redis and, with
 * `[listeners.s2s]` on, what federation needs (DNS, certificates: check-federation.ts).
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { resolveDataPath } from "../../core/config/load.ts";
import type { Config } from "../../core/config/schema.ts";
import type { CertificateDescription, SelfSignedState } from "../../tls/certs.ts";
import { CliError, CONFIG_HELP, describeSource, EXIT, loadConfigFrom } from "../common.ts";
import { IN_USE, listenerProblemLine, probeListeners } from "../ports.ts";
import type { DomainCertificate, FederationDns } from "./check-federation.ts";

export function addCheckCommand(program: Command): void {
	program
		.command("check")
		.description(
			"check the configuration, the certificates, that the ports are free and, with s2s on, DNS and certificates for federation",
		)
		.option("-c, --config <file>", CONFIG_HELP)
		.action(check);
}

/** The self-signed certificate as it is now, and what a start does with it. */
function selfSignedLine(s: SelfSignedState): string {
	switch (s.status) {
		case "absent":
			return `self-signed, none yet: generated at start as ${s.path}`;
		case "unusable":
			return `self-signed ${s.path} cannot be used (${s.reason}); a new one is generated at start`;
		case "reuse":
			return `self-signed ${s.path} (${s.subject}, valid until ${s.notAfter})`;
		case "replace":
			return `self-signed ${s.path} (${s.subject}, valid until ${s.notAfter}) ${s.reason}; a new one is generated at start`;
	}
}

/** One line for an anonymous host and its limits (issue 20); undefined for a host with accounts. */
export function anonymousHostLine(name: string, config: Config): string | undefined {
	const h = config.hosts[name];
	if (h?.authentication !== "anonymous") return undefined;
	const cap = (n: number) => (n === 0 ? "unlimited" : String(n));
	const a = h.anonymous;
	return (
		`anonymous host ${name}: SASL ANONYMOUS only, data in memory, ` +
		`max ${cap(a.max_sessions)} sessions (${cap(a.max_sessions_per_ip)} per IP), ` +
		`federation ${a.allow_s2s ? "allowed" : "refused"}, no registration`
	);
}

/**
 * Why the cluster's Redis cannot be used (a PING; on a Redis Cluster also CLUSTER INFO's
 * `cluster_state`, which is `fail` while a slot has no serving shard), or undefined when it
 * answers.
 */
async function redisProblem(cfg: Config["cluster"]): Promise<string | undefined> {
	const { openRedis, usesRedisCluster } = await import("../../cluster/redis.ts");
	const r = openRedis(cfg, {
		name: "parley-check",
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
		if (usesRedisCluster(cfg)) {
			const info = String(await r.cluster("INFO"));
			const state = /cluster_state:(\w+)/.exec(info)?.[1] ?? "unknown";
			if (state !== "ok") return `the Redis Cluster's state is ${state} (CLUSTER INFO)`;
		}
		return undefined;
	} catch (err) {
		return `not reachable (${cause || (err as Error).message})`;
	} finally {
		r.disconnect();
	}
}

async function check(opts: { config?: string }): Promise<void> {
	const { config, source } = loadConfigFrom(opts.config);
	const problems: string[] = [];
	console.log(`configuration: ${describeSource(source)}: ok`);
	const hosts = Object.entries(config.hosts)
		.filter(([, h]) => h.enabled)
		.map(([n]) => n);
	console.log(`hosts: ${hosts.join(", ")}`);
	for (const h of hosts) {
		const line = anonymousHostLine(h, config);
		if (line) console.log(line);
	}
	const { inspectSelfSigned, loadCertificates } = await import("../../tls/certs.ts");
	const { createLogger } = await import("../../core/log.ts");
	const defaultFiles =
		config.tls.cert && config.tls.key ? { cert: config.tls.cert, key: config.tls.key } : undefined;
	// A check changes nothing: the self-signed certificate is reported as it is, or as missing.
	const withFiles = hosts.filter((h) => config.hosts[h]?.tls || defaultFiles);
	const selfSigned = hosts.filter((h) => !withFiles.includes(h));
	if (selfSigned.length > 0 && !config.tls.self_signed)
		for (const h of selfSigned)
			problems.push(`certificates: ${h} has no certificate and tls.self_signed is false`);
	/** The self-signed certificate's file when it is there and kept at start. */
	let selfSignedFile: string | undefined;
	if (selfSigned.length > 0 && config.tls.self_signed) {
		const state = await inspectSelfSigned(resolveDataPath(config, "."), selfSigned);
		if (state.status === "reuse") selfSignedFile = state.path;
		const line = selfSignedLine(state);
		for (const h of selfSigned) console.log(`certificate for ${h}: ${line}`);
	}
	let described: CertificateDescription[] | undefined;
	try {
		const certs = await loadCertificates({
			hosts: withFiles,
			perHost: Object.fromEntries(withFiles.map((h) => [h, config.hosts[h]?.tls])),
			defaultFiles,
			selfSigned: false,
			dataDir: resolveDataPath(config, "."),
			log: createLogger({ level: "warn", format: "pretty", destination: 2 }),
		});
		described = certs.describe();
		for (const c of described)
			console.log(
				`certificate for ${c.host}: ${c.source} ${c.path} (${c.subject}, valid until ${c.notAfter})`,
			);
	} catch (err) {
		problems.push(`certificates: ${(err as Error).message}`);
	}
	// The listeners serve opens (the component port only with an external component), tested
	// the way serve tests them before it starts (src/cli/ports.ts).
	for (const l of await probeListeners(config)) {
		const state =
			l.problem === undefined
				? "port free"
				: l.problem === IN_USE
					? "PORT IN USE"
					: `port ${l.problem}`;
		console.log(`listener ${l.name} on [${l.address}]:${l.port}: ${state}`);
		if (l.problem !== undefined) problems.push(listenerProblemLine(l, l.problem));
	}
	if (config.listeners.s2s.enabled)
		problems.push(...(await federation(config, hosts, described, selfSignedFile)));
	const workers = await import("../../cluster/workers.ts");
	if (config.cluster.enabled || workers.workerCount(config.server.workers) > 1) {
		const { describeRedis, usesRedisCluster } = await import("../../cluster/redis.ts");
		const problem = await redisProblem(config.cluster);
		const where = describeRedis(config.cluster);
		console.log(
			`cluster: ${usesRedisCluster(config.cluster) ? where : `Redis at ${where}`}: ${problem ?? "reachable"}`,
		);
		const setting = usesRedisCluster(config.cluster) ? "cluster.redis_cluster" : "cluster.redis";
		if (problem) problems.push(`${setting}: ${problem}`);
	}
	if (problems.length) throw new CliError(problems.join("\n"), EXIT.CHECK_FAILED);
	console.log("all checks passed");
}

/**
 * The federation section: prints one line per finding, returns the errors. `described`: the
 * hosts' certificates from files (undefined when they did not load); the other hosts get the
 * self-signed one at start.
 */
async function federation(
	config: Config,
	hosts: string[],
	described: CertificateDescription[] | undefined,
	/** The self-signed certificate file, when there is one to keep. */
	selfSignedFile?: string,
): Promise<string[]> {
	const { checkFederation } = await import("./check-federation.ts");
	const { PeerVerifier } = await import("../../s2s/certificates.ts");
	let verifier: InstanceType<typeof PeerVerifier>;
	try {
		verifier = new PeerVerifier(config.s2s.ca_file);
	} catch (err) {
		const message = `s2s.ca_file: cannot read ${config.s2s.ca_file}: ${(err as Error).message}`;
		console.log(`federation: ${message}`);
		return [message];
	}
	const lower = hosts.map((h) => h.toLowerCase());
	const certificateOf = (host: string): DomainCertificate => {
		if (described === undefined) return { kind: "unknown" };
		const file = described.find((c) => c.host === host);
		if (!file) return { kind: "self-signed", owner: host, path: selfSignedFile };
		try {
			return { kind: "file", path: file.path, pem: readFileSync(file.path, "utf8"), owner: host };
		} catch {
			return { kind: "unknown" };
		}
	};
	// A component is shown its closest parent host's certificate, else the first host's (the
	// TLS server's default): the same choice as CertificateStore.contextFor / serverOptions.
	const ownerOf = (domain: string): string => {
		let d = domain.toLowerCase();
		for (;;) {
			if (lower.includes(d)) return d;
			const dot = d.indexOf(".");
			if (dot < 0) return lower[0] ?? domain;
			d = d.slice(dot + 1);
		}
	};
	const components = Object.entries(config.components)
		.filter(([, c]) => c.enabled)
		.map(([n]) => n);
	const findings = await checkFederation({
		domains: [...hosts, ...components].map((domain) => ({
			domain,
			certificate: certificateOf(ownerOf(domain)),
		})),
		listener: config.listeners.s2s,
		directTlsListener: config.listeners.s2s_direct_tls.enabled
			? config.listeners.s2s_direct_tls
			: null,
		dns: await systemDns(),
		checkPem: (pem, domain) => verifier.checkPem(pem, domain),
		localAddresses: Object.values((await import("node:os")).networkInterfaces()).flatMap((list) =>
			(list ?? []).map((i) => i.address),
		),
	});
	for (const f of findings) console.log(f.line);
	return findings.flatMap((f) => (f.problem ? [f.problem] : []));
}

/** The system's resolver, with short timeouts: a check should not hang on a dead DNS server. */
async function systemDns(): Promise<FederationDns> {
	const dns = await import("node:dns");
	const resolver = new dns.promises.Resolver({ timeout: 3000, tries: 2 });
	return {
		resolveSrv: (name) => resolver.resolveSrv(name),
		lookup: async (host) => {
			let timer: NodeJS.Timeout | undefined;
			const timeout = new Promise<never>((_, reject) => {
				timer = setTimeout(() => reject(new Error("lookup timed out after 5 s")), 5000);
			});
			try {
				const found = await Promise.race([dns.promises.lookup(host, { all: true }), timeout]);
				return found.map((a) => a.address);
			} finally {
				clearTimeout(timer);
			}
		},
	};
}
