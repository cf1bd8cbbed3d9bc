import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import * as tls from "node:tls";
import { generate } from "selfsigned";
import {
	channelBindingFor,
	endPointHashForSignatureOid,
	serverEndPointData,
	TLS_EXPORTER_LABEL,
} from "./channel-binding.ts";

async function makeCert(algorithm: string): Promise<{ key: string; cert: string; der: Buffer }> {
	const pems = await generate([{ name: "commonName", value: "localhost" }], {
		keyType: "ec",
		curve: "P-256",
		algorithm,
	});
	return { key: pems.private, cert: pems.cert, der: new X509Certificate(pems.cert).raw };
}

/** A TLS connection over loopback; returns both ends once the handshake is done. */
async function connectPair(
	key: string,
	cert: string,
	version: tls.SecureVersion,
): Promise<{ server: tls.TLSSocket; client: tls.TLSSocket; close: () => Promise<void> }> {
	const srv = tls.createServer({ key, cert, minVersion: version, maxVersion: version });
	const serverSide = once(srv, "secureConnection") as Promise<[tls.TLSSocket]>;
	srv.listen(0, "127.0.0.1");
	await once(srv, "listening");
	const { port } = srv.address() as AddressInfo;
	const client = tls.connect({
		host: "127.0.0.1",
		port,
		rejectUnauthorized: false, // self-signed test certificate
		minVersion: version,
		maxVersion: version,
	});
	await once(client, "secureConnect");
	const [server] = await serverSide;
	return {
		server,
		client,
		close: async () => {
			client.destroy();
			server.destroy();
			srv.close();
			await once(srv, "close");
		},
	};
}

test("TLS 1.3: tls-exporter (RFC 9266) and tls-server-end-point (RFC 5929) match the client's view", async () => {
	const { key, cert, der } = await makeCert("sha256");
	const pair = await connectPair(key, cert, "TLSv1.3");
	try {
		const cb = channelBindingFor(pair.server);
		assert.deepEqual(cb.types(), ["tls-exporter", "tls-server-end-point"]);

		const exporter = cb.data("tls-exporter");
		assert.ok(exporter);
		assert.equal(exporter.length, 32); // RFC 9266 §2: 32 bytes
		// RFC 9266 §2 / RFC 8446 §7.5: no context and an empty context give the same value in
		// TLS 1.3, so clients that omit the context (rustls, Python's None) agree with us.
		// @types/node declares the context as required; Node itself accepts it omitted.
		const exportNoContext = pair.client.exportKeyingMaterial as (n: number, l: string) => Buffer;
		assert.deepEqual(exportNoContext.call(pair.client, 32, TLS_EXPORTER_LABEL), exporter);
		assert.deepEqual(
			pair.client.exportKeyingMaterial(32, TLS_EXPORTER_LABEL, Buffer.alloc(0)),
			exporter,
		);
		// ...and it differs per connection.
		const pair2 = await connectPair(key, cert, "TLSv1.3");
		try {
			assert.notDeepEqual(channelBindingFor(pair2.server).data("tls-exporter"), exporter);
		} finally {
			await pair2.close();
		}

		// RFC 5929 §4.1: hash of the server's certificate with the signature's hash (SHA-256).
		const endPoint = cb.data("tls-server-end-point");
		const peer = pair.client.getPeerCertificate();
		assert.deepEqual(peer.raw, der);
		assert.deepEqual(endPoint, createHash("sha256").update(peer.raw).digest());
	} finally {
		await pair.close();
	}
});

test("TLS 1.2: tls-exporter is not offered (RFC 9266 §3), tls-server-end-point is", async () => {
	const { key, cert, der } = await makeCert("sha256");
	const pair = await connectPair(key, cert, "TLSv1.2");
	try {
		const cb = channelBindingFor(pair.server);
		assert.deepEqual(cb.types(), ["tls-server-end-point"]);
		assert.equal(cb.data("tls-exporter"), null);
		assert.deepEqual(cb.data("tls-server-end-point"), createHash("sha256").update(der).digest());
	} finally {
		await pair.close();
	}
});

test("RFC 5929 §4.1: SHA-384 certificate -> SHA-384; SHA-1 certificate -> SHA-256", async () => {
	const c384 = await makeCert("sha384");
	assert.deepEqual(serverEndPointData(c384.der), createHash("sha384").update(c384.der).digest());
	const c1 = await makeCert("sha1");
	assert.equal(new X509Certificate(c1.der).signatureAlgorithmOid, "1.2.840.10045.4.1");
	assert.deepEqual(serverEndPointData(c1.der), createHash("sha256").update(c1.der).digest());
});

test("RFC 5929 §4.1: signature algorithm hash table", () => {
	assert.equal(endPointHashForSignatureOid("1.2.840.113549.1.1.4"), "sha256"); // MD5 -> SHA-256
	assert.equal(endPointHashForSignatureOid("1.2.840.113549.1.1.5"), "sha256"); // SHA-1 -> SHA-256
	assert.equal(endPointHashForSignatureOid("1.2.840.113549.1.1.11"), "sha256");
	assert.equal(endPointHashForSignatureOid("1.2.840.113549.1.1.13"), "sha512");
	assert.equal(endPointHashForSignatureOid("1.2.840.10045.4.3.3"), "sha384");
	// No single hash (Ed25519, Ed448) or hash in parameters (RSASSA-PSS): undefined, not offered
	assert.equal(endPointHashForSignatureOid("1.3.101.112"), null);
	assert.equal(endPointHashForSignatureOid("1.3.101.113"), null);
	assert.equal(endPointHashForSignatureOid("1.2.840.113549.1.1.10"), null);
	assert.equal(serverEndPointData(Buffer.from("not a certificate")), null);
});
