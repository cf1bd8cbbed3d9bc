import assert from "node:assert/strict";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, test } from "node:test";
import tls from "node:tls";
import { createLogger, createSilentLogger, type Logger } from "../core/log.ts";
import {
	CertificateError,
	generateSelfSigned,
	loadCertificates,
	ReplaceableCertificates,
	SELF_SIGNED_CERT,
	SELF_SIGNED_KEY,
} from "./certs.ts";

const root = mkdtempSync(join(tmpdir(), "parley-certs-"));
after(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
function freshDir(): string {
	counter++;
	return join(root, `d${counter}`);
}

/** A JSON logger into an array of parsed lines. */
function capturingLogger(): { log: Logger; lines: Record<string, unknown>[] } {
	const lines: Record<string, unknown>[] = [];
	const stream = new Writable({
		write(chunk: Buffer, _encoding, callback) {
			for (const line of chunk.toString().split("\n")) {
				if (line !== "") lines.push(JSON.parse(line) as Record<string, unknown>);
			}
			callback();
		},
	});
	return { log: createLogger({ level: "debug", format: "json", destination: stream }), lines };
}

function fingerprint(path: string): string {
	return new X509Certificate(readFileSync(path)).fingerprint256;
}

test("generateSelfSigned writes a certificate covering every host and *.host, with a matching key", async () => {
	const dir = freshDir();
	const files = await generateSelfSigned(["a.example", "b.example"], dir);
	assert.equal(files.cert, join(dir, SELF_SIGNED_CERT));
	assert.equal(files.key, join(dir, SELF_SIGNED_KEY));
	const x509 = new X509Certificate(readFileSync(files.cert));
	assert.equal(
		x509.subjectAltName,
		"DNS:a.example, DNS:*.a.example, DNS:b.example, DNS:*.b.example",
	);
	assert.equal(x509.checkHost("conference.a.example"), "*.a.example");
	assert.ok(x509.checkPrivateKey(createPrivateKey(readFileSync(files.key))));
	const days = (x509.validToDate.getTime() - Date.now()) / 86_400_000;
	assert.ok(days > 360 && days < 370, `valid for ${days} days`);
	assert.equal(statSync(files.key).mode & 0o777, 0o600);
});

test("the self-signed certificate is generated once, reused, and regenerated when a host is added", async () => {
	const dataDir = freshDir();
	const certPath = join(dataDir, "certs", SELF_SIGNED_CERT);
	const first = capturingLogger();
	const store = await loadCertificates({
		hosts: ["localhost"],
		perHost: {},
		selfSigned: true,
		dataDir,
		log: first.log,
	});
	const warning = first.lines.find((l) => l.level === "warn");
	assert.match(
		String(warning?.msg),
		/^generated a self-signed certificate for localhost at .*certs\/self-signed\.crt; clients will warn; configure tls\.cert\/tls\.key for production$/,
	);
	assert.deepEqual(
		store.describe().map((d) => [d.host, d.source, d.path, d.subject]),
		[["localhost", "self-signed", certPath, "CN=localhost"]],
	);
	const original = fingerprint(certPath);
	const mtime = statSync(certPath).mtimeMs;

	const second = capturingLogger();
	await loadCertificates({
		hosts: ["localhost"],
		perHost: {},
		selfSigned: true,
		dataDir,
		log: second.log,
	});
	assert.equal(fingerprint(certPath), original);
	assert.equal(statSync(certPath).mtimeMs, mtime);
	assert.ok(!second.lines.some((l) => String(l.msg).startsWith("generated")));

	const third = capturingLogger();
	const grown = await loadCertificates({
		hosts: ["localhost", "new.example"],
		perHost: {},
		selfSigned: true,
		dataDir,
		log: third.log,
	});
	assert.notEqual(fingerprint(certPath), original);
	assert.match(
		new X509Certificate(readFileSync(certPath)).subjectAltName ?? "",
		/DNS:new\.example/,
	);
	assert.ok(
		third.lines.some((l) => String(l.msg).startsWith("generated a self-signed certificate")),
	);
	assert.equal(grown.describe().length, 2);
});

test("garbage in the stored self-signed files is replaced", async () => {
	const dataDir = freshDir();
	await generateSelfSigned(["localhost"], join(dataDir, "certs"));
	writeFileSync(join(dataDir, "certs", SELF_SIGNED_CERT), "garbage");
	await loadCertificates({
		hosts: ["localhost"],
		perHost: {},
		selfSigned: true,
		dataDir,
		log: createSilentLogger(),
	});
	assert.ok(fingerprint(join(dataDir, "certs", SELF_SIGNED_CERT)));
});

test("without self_signed, a host with no certificate is an error naming it", async () => {
	await assert.rejects(
		loadCertificates({
			hosts: ["a.example", "b.example"],
			perHost: { "a.example": await generateSelfSigned(["a.example"], freshDir()) },
			selfSigned: false,
			dataDir: freshDir(),
			log: createSilentLogger(),
		}),
		(err: unknown) => {
			assert.ok(err instanceof CertificateError);
			assert.match(err.message, /no TLS certificate for host "b\.example"/);
			assert.doesNotMatch(err.message, /a\.example"/);
			return true;
		},
	);
});

test("a key that does not match its certificate, or garbage PEM, is an error naming the file", async () => {
	const a = await generateSelfSigned(["a.example"], freshDir());
	const b = await generateSelfSigned(["b.example"], freshDir());
	const load = (files: { cert: string; key: string }) =>
		loadCertificates({
			hosts: ["a.example"],
			perHost: { "a.example": files },
			selfSigned: false,
			dataDir: freshDir(),
			log: createSilentLogger(),
		});

	await assert.rejects(load({ cert: a.cert, key: b.key }), {
		name: "CertificateError",
		message: `the private key ${b.key} does not match the certificate ${a.cert}`,
	});

	const garbage = join(root, "garbage.pem");
	writeFileSync(
		garbage,
		"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
	);
	await assert.rejects(load({ cert: garbage, key: a.key }), (err: Error) => {
		assert.match(err.message, new RegExp(`^${garbage} is not a valid PEM certificate`));
		return true;
	});
	await assert.rejects(load({ cert: a.cert, key: garbage }), (err: Error) => {
		assert.match(err.message, new RegExp(`^${garbage} is not a valid unencrypted PEM private key`));
		return true;
	});
	const missing = join(root, "missing.pem");
	await assert.rejects(load({ cert: missing, key: a.key }), (err: Error) => {
		assert.match(err.message, new RegExp(`^cannot read the certificate file ${missing}`));
		return true;
	});
});

/** Connects to the server and returns the certificate it presented (or the handshake error). */
function handshake(
	port: number,
	options: tls.ConnectionOptions,
): Promise<
	{ ok: true; cert: tls.PeerCertificate; protocol: string | null } | { ok: false; error: Error }
> {
	return new Promise((resolve) => {
		const socket = tls.connect({ host: "127.0.0.1", port, ...options }, () => {
			resolve({ ok: true, cert: socket.getPeerCertificate(), protocol: socket.getProtocol() });
			socket.end();
		});
		socket.on("error", (error) => resolve({ ok: false, error }));
	});
}

async function listen(
	options: tls.TlsOptions,
): Promise<{ port: number; close: () => Promise<void> }> {
	const server = tls.createServer(options, (socket) => {
		socket.on("error", () => {});
		socket.end();
	});
	server.on("tlsClientError", () => {});
	await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
	return {
		port: (server.address() as AddressInfo).port,
		close: () => new Promise<void>((resolve) => server.close(() => resolve())),
	};
}

test("SNI picks the host's certificate, a parent host's for subdomains, the first host's otherwise", async () => {
	const a = await generateSelfSigned(["a.example"], freshDir());
	const b = await generateSelfSigned(["b.example"], freshDir());
	const store = await loadCertificates({
		hosts: ["a.example", "b.example"],
		perHost: { "a.example": a, "b.example": b },
		selfSigned: false,
		dataDir: freshDir(),
		log: createSilentLogger(),
	});
	assert.deepEqual(
		store.describe().map((d) => [d.host, d.source, d.path]),
		[
			["a.example", "file", a.cert],
			["b.example", "file", b.cert],
		],
	);
	assert.equal(store.contextFor("B.EXAMPLE"), store.contextFor("b.example"));
	assert.equal(store.contextFor("muc.b.example"), store.contextFor("b.example"));
	assert.notEqual(store.contextFor("a.example"), store.contextFor("b.example"));
	assert.equal(store.contextFor("c.example"), undefined);

	const caA = readFileSync(a.cert, "utf8");
	const caB = readFileSync(b.cert, "utf8");
	const server = await listen(store.serverOptions());
	try {
		const toB = await handshake(server.port, { servername: "b.example", ca: caB });
		assert.ok(toB.ok, toB.ok ? "" : toB.error.message);
		assert.equal(toB.cert.subject.CN, "b.example");

		const toA = await handshake(server.port, { servername: "a.example", ca: caA });
		assert.ok(toA.ok, toA.ok ? "" : toA.error.message);
		assert.equal(toA.cert.subject.CN, "a.example");

		// A component under b.example gets b.example's certificate, valid through *.b.example.
		const toMuc = await handshake(server.port, { servername: "muc.b.example", ca: caB });
		assert.ok(toMuc.ok, toMuc.ok ? "" : toMuc.error.message);
		assert.equal(toMuc.cert.subject.CN, "b.example");

		// Unknown name: the default (first host's) certificate, which the client then rejects.
		const unknown = await handshake(server.port, {
			servername: "c.example",
			rejectUnauthorized: false,
		});
		assert.ok(unknown.ok);
		assert.equal(unknown.cert.subject.CN, "a.example");

		// With b's CA only, asking for a.example must fail verification.
		const wrong = await handshake(server.port, { servername: "a.example", ca: caB });
		assert.equal(wrong.ok, false);
	} finally {
		await server.close();
	}
});

test("TLS 1.1 is refused (minVersion TLSv1.2)", async () => {
	const files = await generateSelfSigned(["a.example"], freshDir());
	const store = await loadCertificates({
		hosts: ["a.example"],
		perHost: { "a.example": files },
		selfSigned: false,
		dataDir: freshDir(),
		log: createSilentLogger(),
	});
	assert.equal(store.serverOptions().minVersion, "TLSv1.2");
	const ca = readFileSync(files.cert, "utf8");
	// OpenSSL's default security level refuses TLS 1.1 on its own: lower it on both sides so that
	// only minVersion stands in the way.
	const old: tls.ConnectionOptions = {
		ca,
		minVersion: "TLSv1",
		maxVersion: "TLSv1.1",
		ciphers: "DEFAULT@SECLEVEL=0",
		checkServerIdentity: () => undefined,
	};
	const lowered = { ...store.serverOptions(), ciphers: "DEFAULT@SECLEVEL=0" };

	// Control: the same server without our minVersion accepts TLS 1.1, so the test can fail.
	const control = await listen({ ...lowered, minVersion: "TLSv1" });
	try {
		const result = await handshake(control.port, old);
		assert.ok(result.ok, result.ok ? "" : result.error.message);
		assert.equal(result.protocol, "TLSv1.1");
	} finally {
		await control.close();
	}

	const server = await listen(lowered);
	try {
		for (const servername of [undefined, "a.example"]) {
			const result = await handshake(server.port, {
				...old,
				...(servername ? { servername } : {}),
			});
			assert.equal(result.ok, false);
			if (!result.ok) assert.match(result.error.message, /protocol version|unsupported protocol/i);
		}
		const modern = await handshake(server.port, { ca, servername: "a.example" });
		assert.ok(modern.ok);
	} finally {
		await server.close();
	}
});

test("ReplaceableCertificates: options handed out before a replace answer SNI with the new certificates", async () => {
	const load = async (hosts: string[]) => {
		const dir = freshDir();
		const files = await generateSelfSigned(hosts, dir);
		const store = await loadCertificates({
			hosts,
			perHost: {},
			defaultFiles: files,
			selfSigned: false,
			dataDir: dir,
			log: createSilentLogger(),
		});
		return { store, fp: fingerprint(files.cert) };
	};
	const first = await load(["a.example"]);
	const second = await load(["a.example", "b.example"]);
	const live = new ReplaceableCertificates(first.store);
	const options = live.serverOptions();
	const sni = (name: string) =>
		new Promise<tls.SecureContext | undefined>((resolve, reject) =>
			options.SNICallback?.(name, (err, ctx) => (err ? reject(err) : resolve(ctx))),
		);
	assert.equal(await sni("a.example"), first.store.contextFor("a.example"));
	assert.deepEqual(
		live.describe().map((d) => d.fingerprint),
		[first.fp],
	);
	live.replace(second.store);
	assert.equal(await sni("a.example"), second.store.contextFor("a.example"));
	assert.equal(await sni("b.example"), second.store.contextFor("b.example"));
	assert.equal(live.contextFor("b.example"), second.store.contextFor("b.example"));
	assert.deepEqual(
		live.describe().map((d) => d.fingerprint),
		[second.fp, second.fp],
	);
	assert.notEqual(first.fp, second.fp);
});
