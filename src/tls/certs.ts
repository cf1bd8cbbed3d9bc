/**
 * TLS certificates for the virtual hosts.
 *
 * Each host gets its certificate from, in order: its own `hosts."x".tls` files, the default
 * `tls.cert` / `tls.key` files, or (when `tls.self_signed` is on) one self-signed certificate
 * kept under `<data_dir>/certs/` and shared by every host that has nothing better. That
 * certificate is generated once, reused on later starts while it covers every such host and is
 * not about to expire, and generated again otherwise (a host was added, it expired, the files
 * are broken).
 *
 * Every certificate is checked when it is loaded (readable PEM, key matching the certificate,
 * accepted by OpenSSL) so that a bad file fails `parley serve` / `parley check` with a message
 * naming the file, rather than failing a client's handshake later.
 *
 * The TLS server picks the certificate with SNI: exact host name, else the closest parent host
 * (`conference.example.org` -> `example.org`), else the first host's certificate.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { isAbsolute, join, relative } from "node:path";
import tls from "node:tls";
import { generate } from "selfsigned";
import type { Logger } from "../core/log.ts";

export interface CertificateStore {
	/** Options for `tls.createServer`: a default certificate (the first host's), SNICallback, TLS >= 1.2. */
	serverOptions(): tls.TlsOptions;
	/** The context for a host name (exact, else its closest parent host), undefined if none. */
	contextFor(host: string): tls.SecureContext | undefined;
	describe(): CertificateDescription[];
}

export interface CertificateDescription {
	host: string;
	source: "file" | "self-signed";
	/** Path of the certificate file. */
	path: string;
	/** ISO 8601 date. */
	notAfter: string;
	/** e.g. "CN=example.org" */
	subject: string;
	/** SHA-256 fingerprint ("AB:CD:..."): a reload compares it to see a replaced certificate. */
	fingerprint: string;
}

export interface CertificateFiles {
	cert: string;
	key: string;
}

export interface LoadCertificatesOptions {
	hosts: string[];
	perHost: Record<string, CertificateFiles | undefined>;
	defaultFiles?: CertificateFiles;
	selfSigned: boolean;
	dataDir: string;
	log: Logger;
}

/** A certificate that cannot be used; the message names the file(s). */
export class CertificateError extends Error {
	constructor(message: string) {
		super(message);
		this.name = "CertificateError";
	}
}

export const MIN_TLS_VERSION = "TLSv1.2";

export const SELF_SIGNED_CERT = "self-signed.crt";
export const SELF_SIGNED_KEY = "self-signed.key";

/** A self-signed certificate closer than this to expiry is generated again at start. */
const RENEW_BEFORE_MS = 30 * 24 * 3600 * 1000;
const VALIDITY_MS = 365 * 24 * 3600 * 1000;

interface LoadedPair {
	certPath: string;
	keyPath: string;
	certPem: string;
	keyPem: string;
	x509: X509Certificate;
	context: tls.SecureContext;
}

interface HostEntry {
	host: string;
	source: "file" | "self-signed";
	pair: LoadedPair;
}

export async function loadCertificates(opts: LoadCertificatesOptions): Promise<CertificateStore> {
	const { log } = opts;
	const hosts = opts.hosts.map((h) => h.toLowerCase());
	const chosen = new Map<string, { source: "file" | "self-signed"; files?: CertificateFiles }>();
	const needSelfSigned: string[] = [];
	for (const host of hosts) {
		const files = opts.perHost[host] ?? opts.defaultFiles;
		if (files !== undefined) chosen.set(host, { source: "file", files });
		else needSelfSigned.push(host);
	}

	if (needSelfSigned.length > 0) {
		if (!opts.selfSigned) {
			const first = needSelfSigned[0] ?? "";
			throw new CertificateError(
				`no TLS certificate for host ${needSelfSigned.map((h) => JSON.stringify(h)).join(", ")}: ` +
					`configure [hosts.${JSON.stringify(first)}.tls] or tls.cert/tls.key, or set tls.self_signed = true`,
			);
		}
		const dir = join(opts.dataDir, "certs");
		let files = await reusableSelfSigned(dir, needSelfSigned, log);
		if (files === undefined) {
			files = await generateSelfSigned(needSelfSigned, dir);
			log.warn(
				{ hosts: needSelfSigned, cert: files.cert },
				`generated a self-signed certificate for ${needSelfSigned.join(", ")} at ${shownPath(files.cert)}; ` +
					"clients will warn; configure tls.cert/tls.key for production",
			);
		} else {
			log.warn(
				{ hosts: needSelfSigned, cert: files.cert },
				`using the self-signed certificate at ${shownPath(files.cert)} for ${needSelfSigned.join(", ")}; ` +
					"clients will warn; configure tls.cert/tls.key for production",
			);
		}
		for (const host of needSelfSigned) chosen.set(host, { source: "self-signed", files });
	}

	// Load every distinct pair once; hosts sharing files share the context.
	const pairs = new Map<string, LoadedPair>();
	const entries = new Map<string, HostEntry>();
	for (const host of hosts) {
		const choice = chosen.get(host);
		if (choice?.files === undefined) continue;
		const id = `${choice.files.cert}\0${choice.files.key}`;
		let pair = pairs.get(id);
		if (pair === undefined) {
			pair = await loadPair(choice.files);
			pairs.set(id, pair);
		}
		entries.set(host, { host, source: choice.source, pair });
		if (choice.source === "file") warnAboutFileCertificate(host, pair, log);
	}

	return makeStore(hosts, entries);
}

function makeStore(hosts: readonly string[], entries: Map<string, HostEntry>): CertificateStore {
	const first = hosts[0] === undefined ? undefined : entries.get(hosts[0]);

	const contextFor = (name: string): tls.SecureContext | undefined => {
		let candidate = name.toLowerCase().replace(/\.$/, "");
		for (;;) {
			const entry = entries.get(candidate);
			if (entry !== undefined) return entry.pair.context;
			const dot = candidate.indexOf(".");
			if (dot < 0) return undefined;
			candidate = candidate.slice(dot + 1);
		}
	};

	return {
		serverOptions() {
			const options: tls.TlsOptions = {
				minVersion: MIN_TLS_VERSION,
				SNICallback: (servername, callback) => {
					callback(null, contextFor(servername) ?? first?.pair.context);
				},
			};
			if (first !== undefined) {
				options.cert = first.pair.certPem;
				options.key = first.pair.keyPem;
			}
			return options;
		},
		contextFor,
		describe() {
			return hosts.flatMap((host) => {
				const entry = entries.get(host);
				if (entry === undefined) return [];
				return [
					{
						host,
						source: entry.source,
						path: entry.pair.certPath,
						notAfter: entry.pair.x509.validToDate.toISOString(),
						subject: entry.pair.x509.subject.replaceAll("\n", ", "),
						fingerprint: entry.pair.x509.fingerprint256,
					},
				];
			});
		},
	};
}

/**
 * The certificates in force, as one object that stays while a reload replaces what is behind it
 * (`replace`): the SNI callback of options handed out before (a TLS server listening since the
 * start) answers with the certificates in force. A server's default certificate, for clients
 * without SNI, is its own: the listener sets it again (`tls.Server.setSecureContext`).
 */
export class ReplaceableCertificates implements CertificateStore {
	#current: CertificateStore;

	constructor(initial: CertificateStore) {
		this.#current = initial;
	}

	replace(next: CertificateStore): void {
		this.#current = next;
	}

	serverOptions(): tls.TlsOptions {
		return {
			...this.#current.serverOptions(),
			SNICallback: (servername, callback) => {
				const sni = this.#current.serverOptions().SNICallback;
				if (sni) sni(servername, callback);
				else callback(null, undefined);
			},
		};
	}

	contextFor(host: string): tls.SecureContext | undefined {
		return this.#current.contextFor(host);
	}

	describe(): CertificateDescription[] {
		return this.#current.describe();
	}
}

/** Reads, parses and cross-checks a certificate and its key. Throws CertificateError naming the file. */
async function loadPair(files: CertificateFiles): Promise<LoadedPair> {
	const certPem = await readText(files.cert, "certificate");
	const keyPem = await readText(files.key, "private key");

	if (!certPem.includes("-----BEGIN CERTIFICATE-----")) {
		throw new CertificateError(
			`${files.cert} is not a PEM certificate (no "BEGIN CERTIFICATE" line)`,
		);
	}
	let x509: X509Certificate;
	try {
		x509 = new X509Certificate(certPem);
	} catch (err) {
		throw new CertificateError(`${files.cert} is not a valid PEM certificate: ${message(err)}`);
	}
	let key: KeyObject;
	try {
		key = createPrivateKey(keyPem);
	} catch (err) {
		throw new CertificateError(
			`${files.key} is not a valid unencrypted PEM private key: ${message(err)}`,
		);
	}
	if (!x509.checkPrivateKey(key)) {
		throw new CertificateError(
			`the private key ${files.key} does not match the certificate ${files.cert}`,
		);
	}
	let context: tls.SecureContext;
	try {
		context = tls.createSecureContext({ cert: certPem, key: keyPem, minVersion: MIN_TLS_VERSION });
	} catch (err) {
		throw new CertificateError(
			`cannot use the certificate ${files.cert} with the key ${files.key}: ${message(err)}`,
		);
	}
	return { certPath: files.cert, keyPath: files.key, certPem, keyPem, x509, context };
}

/**
 * Generates a self-signed certificate (P-256 key, SHA-256, valid one year) whose
 * subjectAltNames are every host and `*.host`, and writes it as PEM to
 * `<dir>/self-signed.crt` and `<dir>/self-signed.key` (mode 0600). Returns the paths.
 */
export async function generateSelfSigned(hosts: string[], dir: string): Promise<CertificateFiles> {
	if (hosts.length === 0) throw new Error("generateSelfSigned: no host names");
	const now = Date.now();
	const pems = await generate([{ name: "commonName", value: hosts[0] ?? "" }], {
		keyType: "ec",
		curve: "P-256",
		algorithm: "sha256",
		// An hour of margin for clocks that are slightly behind.
		notBeforeDate: new Date(now - 3600 * 1000),
		notAfterDate: new Date(now + VALIDITY_MS),
		extensions: [
			{ name: "basicConstraints", cA: false },
			{ name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
			// clientAuth too: server-to-server connections present the same certificate.
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

	await mkdir(dir, { recursive: true, mode: 0o700 });
	const cert = join(dir, SELF_SIGNED_CERT);
	const key = join(dir, SELF_SIGNED_KEY);
	// Write then rename, so that a crash never leaves half a file behind.
	await writeFile(`${key}.tmp`, pems.private, { mode: 0o600 });
	await writeFile(`${cert}.tmp`, pems.cert, { mode: 0o644 });
	await rename(`${key}.tmp`, key);
	await rename(`${cert}.tmp`, cert);
	return { cert, key };
}

/** The self-signed certificate under `<dataDir>/certs`, as `parley check` reports it. */
export type SelfSignedState =
	| { status: "absent"; path: string }
	| { status: "unusable"; path: string; reason: string }
	| {
			/** "reuse": serve will use it; "replace": it does not cover every host or expires soon. */
			status: "reuse" | "replace";
			path: string;
			subject: string;
			notAfter: string;
			/** Why it is replaced. */
			reason?: string;
	  };

/** What is there, and whether a start would reuse it (the rule of `reusableSelfSigned`). */
export async function inspectSelfSigned(
	dataDir: string,
	hosts: readonly string[],
): Promise<SelfSignedState> {
	const e = await examineSelfSigned(join(dataDir, "certs"), hosts);
	const path = e.files.cert;
	if (e.pair === undefined)
		return e.missingFile
			? { status: "absent", path }
			: { status: "unusable", path, reason: message(e.error) };
	const described = {
		path,
		subject: e.pair.x509.subject.replaceAll("\n", ", "),
		notAfter: e.pair.x509.validToDate.toISOString(),
	};
	if (e.uncovered.length > 0)
		return { status: "replace", ...described, reason: `does not name ${e.uncovered.join(", ")}` };
	if (e.expiresSoon) return { status: "replace", ...described, reason: "expires within 30 days" };
	return { status: "reuse", ...described };
}

interface SelfSignedExamination {
	files: CertificateFiles;
	/** Undefined when the files do not load. */
	pair?: LoadedPair;
	missingFile: boolean;
	error?: unknown;
	uncovered: string[];
	expiresSoon: boolean;
}

async function examineSelfSigned(
	dir: string,
	hosts: readonly string[],
): Promise<SelfSignedExamination> {
	const files = { cert: join(dir, SELF_SIGNED_CERT), key: join(dir, SELF_SIGNED_KEY) };
	let pair: LoadedPair;
	try {
		pair = await loadPair(files);
	} catch (error) {
		const missingFile = (error as { code?: unknown }).code === "ENOENT";
		return { files, missingFile, error, uncovered: [], expiresSoon: false };
	}
	return {
		files,
		pair,
		missingFile: false,
		uncovered: hosts.filter((h) => !sanCovers(pair.x509, h)),
		expiresSoon: pair.x509.validToDate.getTime() - Date.now() < RENEW_BEFORE_MS,
	};
}

/** The existing self-signed files, if they load, cover every host and are not about to expire. */
async function reusableSelfSigned(
	dir: string,
	hosts: readonly string[],
	log: Logger,
): Promise<CertificateFiles | undefined> {
	const e = await examineSelfSigned(dir, hosts);
	if (e.pair === undefined) {
		if (!e.missingFile)
			log.warn(
				{ err: e.error },
				"the self-signed certificate cannot be used; generating a new one",
			);
		return undefined;
	}
	if (e.uncovered.length > 0) {
		log.info(
			{ missing: e.uncovered },
			"the self-signed certificate does not cover every host; generating a new one",
		);
		return undefined;
	}
	if (e.expiresSoon) {
		log.info(
			{ notAfter: e.pair.x509.validToDate },
			"the self-signed certificate expires soon; generating a new one",
		);
		return undefined;
	}
	return e.files;
}

/** Exact DNS subjectAltName match (checkHost alone would also accept a wildcard). */
function sanCovers(x509: X509Certificate, host: string): boolean {
	const names = (x509.subjectAltName ?? "").split(/,\s*/);
	return names.includes(`DNS:${host}`);
}

function warnAboutFileCertificate(host: string, pair: LoadedPair, log: Logger): void {
	if (pair.x509.checkHost(host) === undefined) {
		log.warn(
			{
				host,
				cert: pair.certPath,
				subject: pair.x509.subject,
				subjectAltName: pair.x509.subjectAltName,
			},
			`the certificate ${pair.certPath} does not name the host ${host}; clients will refuse it`,
		);
	}
	const notAfter = pair.x509.validToDate;
	if (notAfter.getTime() < Date.now()) {
		log.error(
			{ host, cert: pair.certPath, notAfter },
			`the certificate ${pair.certPath} has expired`,
		);
	} else if (notAfter.getTime() - Date.now() < RENEW_BEFORE_MS) {
		log.warn(
			{ host, cert: pair.certPath, notAfter },
			`the certificate ${pair.certPath} expires soon`,
		);
	}
}

async function readText(path: string, what: string): Promise<string> {
	try {
		return await readFile(path, "utf8");
	} catch (err) {
		const error = new CertificateError(`cannot read the ${what} file ${path}: ${message(err)}`);
		Object.assign(error, { code: (err as { code?: unknown }).code });
		throw error;
	}
}

function message(err: unknown): string {
	return err instanceof Error ? err.message : String(err);
}

/** `data/certs/x.crt` when under the working directory, the absolute path otherwise. */
function shownPath(path: string): string {
	const rel = relative(process.cwd(), path);
	return rel.startsWith("..") || isAbsolute(rel) ? path : rel;
}
