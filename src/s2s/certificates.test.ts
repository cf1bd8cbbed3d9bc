/**
 * PeerVerifier.checkPem: the same rules as for a peer's TLS chain (RFC 6125 / XEP-0178), applied
 * to a PEM chain, with the reason classified (what `parley check` needs to tell an expired
 * certificate, an error, from a self-signed one, a warning).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { generate } from "selfsigned";
import { serverCert, testCa, untrustedCa } from "../../test/helpers/test-ca.ts";
import { PeerVerifier } from "./certificates.ts";

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
