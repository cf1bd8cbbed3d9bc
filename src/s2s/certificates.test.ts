/**
 * namesDomain (certificates.ts): RFC 6125 §6.4 DNS-ID with §6.4.3 wildcards, XmppAddr and SRV-ID
 * (RFC 6120 §13.7.1.2), and no common-name fallback (RFC 9525 §6.3).
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { test } from "node:test";
import { generate } from "selfsigned";
import { namesDomain } from "./certificates.ts";

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
