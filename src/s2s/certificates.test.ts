/**
 * namesDomain: RFC 6125 §6.4 DNS-ID with §6.4.3 wildcards and no common-name fallback (RFC 9525
 * §6.3). PeerVerifier.checkPem: the same rules as for a peer's TLS chain (RFC 6125 / XEP-0178), applied
 * to a PEM chain, with the reason classified (what `parley check` needs to tell an expired
 * certificate, an error, from a self-signed one, a warning).
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { describe, test } from "node:test";
import { generate } from "selfsigned";
import { serverCert, testCa, untrustedCa } from "../../test/helpers/test-ca.ts";
import { namesDomain, PeerVerifier } from "./certificates.ts";

describe("PeerVerifier.checkPem", () => {
	test("a test-CA certificate is valid for its domains once the CA is trusted", async () => {
		const cert = await serverCert(["a.test", "b.test"]);
		const ca = await testCa();
		const verifier = new PeerVerifier(ca.certPath);
		assert.deepEqual(verifier.checkPem(cert.certPem, "a.test"), { valid: true });
		assert.deepEqual(verifier.checkPem(cert.certPem, "B.TEST"), { valid: true });
		const wrong = verifier.checkPem(cert.certPem, "c.test");
		assert.equal(wrong.valid, false);
		assert.equal(!wrong.valid && wrong.problem, "name");
	});

	test("without the CA it is untrusted", async () => {
		const cert = await serverCert(["a.test"]);
		const r = new PeerVerifier().checkPem(cert.certPem, "a.test");
		assert.deepEqual(r, {
			valid: false,
			reason: "not issued by a trusted authority",
			problem: "untrusted",
		});
	});

	test("an intermediate sent along is followed; a CA nobody trusts is not", async () => {
		const cert = await serverCert(["a.test"], { issuer: "untrusted" });
		const ca = await untrustedCa();
		const r = new PeerVerifier((await testCa()).certPath).checkPem(
			cert.certPem + ca.certPem,
			"a.test",
		);
		assert.equal(!r.valid && r.problem, "untrusted");
		assert.deepEqual(new PeerVerifier(ca.certPath).checkPem(cert.certPem, "a.test"), {
			valid: true,
		});
	});

	test("a self-signed certificate is told apart from an untrusted one", async () => {
		const cert = await serverCert(["a.test"], { issuer: "self" });
		const r = new PeerVerifier().checkPem(cert.certPem, "a.test");
		assert.equal(!r.valid && r.problem, "self-signed");
		assert.match(!r.valid ? r.reason : "", /^self-signed/);
	});

	test("an expired certificate is expired before anything else", async () => {
		const day = 24 * 3600 * 1000;
		const pems = await generate([{ name: "commonName", value: "a.test" }], {
			keyType: "ec",
			curve: "P-256",
			algorithm: "sha256",
			notBeforeDate: new Date(Date.now() - 30 * day),
			notAfterDate: new Date(Date.now() - day),
			extensions: [{ name: "subjectAltName", altNames: [{ type: 2, value: "a.test" }] }],
		});
		const r = new PeerVerifier().checkPem(pems.cert, "a.test");
		assert.equal(!r.valid && r.problem, "expired");
	});

	test("no certificate, or text that is not one", () => {
		const v = new PeerVerifier();
		assert.equal(v.checkPem("", "a.test").valid, false);
		const broken = v.checkPem(
			"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
			"a.test",
		);
		assert.equal(!broken.valid && broken.problem, "none");
	});
});

/** A self-signed certificate with this CN and these dNSName entries. */
async function cert(cn: string, dnsNames: string[]): Promise<X509Certificate> {
	const altNames = dnsNames.map((value) => ({ type: 2 as const, value }));
	const pems = await generate([{ name: "commonName", value: cn }], {
		keySize: 2048,
		extensions: [{ name: "subjectAltName", altNames }],
	});
	return new X509Certificate(pems.cert);
}

test("DNS-ID: exact, case-insensitive; a wildcard covers one whole left-most label only", async () => {
	const c = await cert("unused.example", ["chat.example", "*.wild.example"]);
	assert.equal(namesDomain(c, "chat.example"), true);
	assert.equal(namesDomain(c, "CHAT.example"), true);
	assert.equal(namesDomain(c, "a.wild.example"), true);
	assert.equal(namesDomain(c, "a.b.wild.example"), false);
	assert.equal(namesDomain(c, "wild.example"), false);
	assert.equal(namesDomain(c, "other.example"), false);
});

test("RFC 9525 §6.3: the subject's common name alone does not name a domain", async () => {
	const c = await cert("cn-only.example", ["something-else.example"]);
	assert.equal(namesDomain(c, "cn-only.example"), false);
});
