/**
 * A test PKI for server-to-server tests: a test CA and server certificates it issues, as PEM
 * files that both Prosody (file paths in its config) and Parley (file paths or PEM text) load.
 *
 * A server certificate for XMPP names each domain the way RFC 6120 §13.7.1.2 and RFC 6125 ask:
 * a DNS-ID (subjectAltName dNSName) and, unless turned off, an XmppAddr identifier
 * (subjectAltName otherName id-on-xmppAddr, 1.3.6.1.5.5.7.8.5, RFC 6120 §13.7.1.4). Its extended
 * key usage allows both TLS server and TLS client authentication, since the initiating server
 * presents the same certificate as a client certificate for SASL EXTERNAL (RFC 6120 §13.7.1.1
 * wants both). The common name is the first domain (RFC 6125 §6.4.4: a CN-ID is ignored when a
 * DNS-ID is present, but older verifiers still read it).
 *
 * For failure tests: `issuer: "untrusted"` issues from a second CA that nobody is told to trust,
 * `issuer: "self"` makes a self-signed certificate, and a certificate for a domain the server
 * does not serve is just `serverCert(["other.test"])` installed on the wrong server.
 *
 * Generated with the openssl command line (Debian's `openssl`, which Prosody's package pulls in
 * through ssl-cert): Node's crypto cannot write certificates and the `selfsigned` package cannot
 * write an otherName. Keys are EC P-256 (fast to make). Everything is made once per process, in
 * one temporary directory removed when the process exits.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** id-on-xmppAddr (RFC 6120 §13.7.1.4). */
export const ID_ON_XMPPADDR = "1.3.6.1.5.5.7.8.5";

export interface TestCa {
	/** The CA certificate, PEM file. Give this path to whoever must trust the test CA. */
	certPath: string;
	keyPath: string;
	certPem: string;
}

export interface ServerCert {
	/** The domains in the certificate's subjectAltName, the first also its CN. */
	domains: string[];
	certPath: string;
	keyPath: string;
	certPem: string;
	keyPem: string;
	/** The CA that issued it (for "self", the certificate itself). */
	caPath: string;
	caPem: string;
}

export interface ServerCertOptions {
	/** "test" (default): the test CA; "untrusted": a second CA; "self": self-signed. */
	issuer?: "test" | "untrusted" | "self";
	/** Also put an id-on-xmppAddr otherName per domain (default true). */
	xmppAddr?: boolean;
}

let dir: string | undefined;
function pkiDir(): string {
	if (!dir) {
		const d = mkdtempSync(join(tmpdir(), "parley-test-pki-"));
		dir = d;
		process.once("exit", () => rmSync(d, { recursive: true, force: true }));
	}
	return dir;
}

async function openssl(args: string[]): Promise<void> {
	try {
		await run("openssl", args, { cwd: pkiDir() });
	} catch (err) {
		const e = err as { stderr?: string; message: string };
		throw new Error(`openssl ${args.join(" ")} failed: ${e.stderr ?? e.message}`);
	}
}

const KEY_ARGS = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

function requestConfig(cn: string, extensions: string): string {
	return [
		"[req]",
		"distinguished_name = dn",
		"prompt = no",
		"[dn]",
		`CN = ${cn}`,
		"[ext]",
		extensions,
		"",
	].join("\n");
}

async function makeCa(name: string): Promise<TestCa> {
	const d = pkiDir();
	const conf = join(d, `${name}.cnf`);
	writeFileSync(
		conf,
		requestConfig(
			`Parley ${name}`,
			[
				"basicConstraints = critical,CA:TRUE",
				"keyUsage = critical,keyCertSign,cRLSign",
				"subjectKeyIdentifier = hash",
			].join("\n"),
		),
	);
	const certPath = join(d, `${name}.crt`);
	const keyPath = join(d, `${name}.key`);
	await openssl([
		"req",
		"-x509",
		...KEY_ARGS,
		"-keyout",
		keyPath,
		"-out",
		certPath,
		"-days",
		"30",
		"-config",
		conf,
		"-extensions",
		"ext",
	]);
	return { certPath, keyPath, certPem: readFileSync(certPath, "utf8") };
}

const cas = new Map<string, Promise<TestCa>>();
function ca(name: "test-ca" | "untrusted-ca"): Promise<TestCa> {
	let p = cas.get(name);
	if (!p) {
		p = makeCa(name);
		cas.set(name, p);
	}
	return p;
}

/** The test CA (made on first use, then the same for the whole process). */
export function testCa(): Promise<TestCa> {
	return ca("test-ca");
}

/** A second CA that no test server is told to trust. */
export function untrustedCa(): Promise<TestCa> {
	return ca("untrusted-ca");
}

let serial = 0;
async function makeServerCert(domains: string[], opts: ServerCertOptions): Promise<ServerCert> {
	const [first] = domains;
	if (!first) throw new Error("serverCert needs at least one domain");
	const issuer = opts.issuer ?? "test";
	const d = pkiDir();
	const base = join(d, `${first}-${issuer}-${++serial}`);
	const altNames = domains.flatMap((name, i) => [
		`DNS.${i + 1} = ${name}`,
		...(opts.xmppAddr === false ? [] : [`otherName.${i + 1} = ${ID_ON_XMPPADDR};UTF8:${name}`]),
	]);
	writeFileSync(
		`${base}.cnf`,
		requestConfig(
			first,
			[
				"basicConstraints = critical,CA:FALSE",
				"keyUsage = critical,digitalSignature,keyEncipherment",
				"extendedKeyUsage = serverAuth,clientAuth",
				"subjectKeyIdentifier = hash",
				"subjectAltName = @alt",
				"[alt]",
				...altNames,
			].join("\n"),
		),
	);
	const certPath = `${base}.crt`;
	const keyPath = `${base}.key`;
	const validity = ["-days", "30"];
	if (issuer === "self") {
		await openssl([
			"req",
			"-x509",
			...KEY_ARGS,
			"-keyout",
			keyPath,
			"-out",
			certPath,
			...validity,
			"-config",
			`${base}.cnf`,
			"-extensions",
			"ext",
		]);
	} else {
		const authority = await ca(issuer === "untrusted" ? "untrusted-ca" : "test-ca");
		await openssl([
			"req",
			"-new",
			...KEY_ARGS,
			"-keyout",
			keyPath,
			"-out",
			`${base}.csr`,
			"-config",
			`${base}.cnf`,
		]);
		await openssl([
			"x509",
			"-req",
			"-in",
			`${base}.csr`,
			"-CA",
			authority.certPath,
			"-CAkey",
			authority.keyPath,
			"-set_serial",
			`0x${randomBytes(8).toString("hex")}`,
			...validity,
			"-extfile",
			`${base}.cnf`,
			"-extensions",
			"ext",
			"-out",
			certPath,
		]);
	}
	const certPem = readFileSync(certPath, "utf8");
	const caPath =
		issuer === "self"
			? certPath
			: (await ca(issuer === "untrusted" ? "untrusted-ca" : "test-ca")).certPath;
	return {
		domains: [...domains],
		certPath,
		keyPath,
		certPem,
		keyPem: readFileSync(keyPath, "utf8"),
		caPath,
		caPem: readFileSync(caPath, "utf8"),
	};
}

const certs = new Map<string, Promise<ServerCert>>();

/**
 * A server certificate for `domains` (made on first use, then the same for the same domains and
 * options for the whole process).
 */
export function serverCert(domains: string[], opts: ServerCertOptions = {}): Promise<ServerCert> {
	const key = JSON.stringify([domains, opts.issuer ?? "test", opts.xmppAddr ?? true]);
	let p = certs.get(key);
	if (!p) {
		p = makeServerCert(domains, opts);
		certs.set(key, p);
	}
	return p;
}
