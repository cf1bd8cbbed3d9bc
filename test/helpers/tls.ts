/**
 * The tests' TLS clients check certificates as real clients do, and trust exactly the test
 * servers' certificates. Node's default CA list is the one place to do that for every client
 * here: xmpp.js (xmpps://, STARTTLS, wss://) and fetch (BOSH) take no `ca` option of their own.
 * Clients are therefore told the name the certificate holds: `localhost` (or the virtual host,
 * by SNI), never a bare 127.0.0.1, which the certificate does not name.
 *
 * Every trusted certificate needs a subject of its own: OpenSSL finds a trusted self-signed
 * certificate by subject name, so of many "CN=localhost" certificates it would accept one
 * server's only. A test server's data directory therefore starts with a self-signed
 * certificate that the server reuses (as it does its own across restarts): the hosts it
 * generates one for, and a unique subject.
 *
 * A test that needs to reach a server with an untrusted certificate says so where it connects
 * (`rejectUnauthorized: false`).
 */
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import tls from "node:tls";
import { generate } from "selfsigned";
import { resolveDataPath } from "../../src/core/config/load.ts";
import type { Config } from "../../src/core/config/schema.ts";
import { SELF_SIGNED_CERT, SELF_SIGNED_KEY } from "../../src/tls/certs.ts";

const added = new Set<string>();

/** Trusts the PEM certificates in `files` for every TLS client this process opens later. */
export function trustCertificates(files: string[]): void {
	const fresh = files.map((f) => readFileSync(f, "utf8")).filter((pem) => !added.has(pem));
	if (fresh.length === 0) return;
	for (const pem of fresh) added.add(pem);
	tls.setDefaultCACertificates([...tls.getCACertificates("default"), ...fresh]);
}

/** Trusts the certificates a started server uses (whatever their source). */
export function trustServerCertificates(server: {
	certificates: { describe(): { path: string }[] };
}): void {
	trustCertificates([...new Set(server.certificates.describe().map((c) => c.path))]);
}

/**
 * Puts a self-signed certificate with a unique subject where the server looks for its own
 * (`<data_dir>/certs/`), for the hosts that would get one; does nothing when that file exists.
 */
export async function provideSelfSignedCertificate(config: Config): Promise<void> {
	const dir = join(resolveDataPath(config, "."), "certs");
	if (!config.tls.self_signed || existsSync(join(dir, SELF_SIGNED_CERT))) return;
	const hasDefault = config.tls.cert !== undefined && config.tls.key !== undefined;
	const hosts = Object.entries(config.hosts)
		.filter(([, h]) => h.enabled && h.tls === undefined && !hasDefault)
		.map(([name]) => name);
	if (hosts.length === 0) return;
	const now = Date.now();
	const pems = await generate([{ name: "commonName", value: `parley test ${randomUUID()}` }], {
		keyType: "ec",
		curve: "P-256",
		algorithm: "sha256",
		notBeforeDate: new Date(now - 3600 * 1000),
		notAfterDate: new Date(now + 365 * 24 * 3600 * 1000),
		extensions: [
			{ name: "basicConstraints", cA: false },
			{ name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
			{ name: "extKeyUsage", serverAuth: true, clientAuth: true },
			{
				name: "subjectAltName",
				altNames: hosts.flatMap((h) => [
					{ type: 2 as const, value: h },
					{ type: 2 as const, value: `*.${h}` },
				]),
			},
		],
	});
	mkdirSync(dir, { recursive: true, mode: 0o700 });
	writeFileSync(join(dir, SELF_SIGNED_KEY), pems.private, { mode: 0o600 });
	writeFileSync(join(dir, SELF_SIGNED_CERT), pems.cert);
}
