import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { avatarHash, parseStoredVCard } from "./vcard.ts";

test("XEP-0153 §4.1: the hash is the hex SHA-1 of the decoded BINVAL, whitespace ignored", () => {
	const bytes = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 3, 255]);
	const b64 = bytes.toString("base64");
	const wrapped = `${b64.slice(0, 4)}\n  ${b64.slice(4)}`;
	const vcard = parseStoredVCard(
		`<vCard xmlns="vcard-temp"><PHOTO><TYPE>image/png</TYPE><BINVAL>${wrapped}</BINVAL></PHOTO></vCard>`,
	);
	assert.equal(avatarHash(vcard), createHash("sha1").update(bytes).digest("hex"));
});

test("XEP-0153 §4.1: no PHOTO means no avatar (empty hash); an EXTVAL photo has no hash", () => {
	assert.equal(avatarHash(parseStoredVCard(`<vCard xmlns="vcard-temp"><FN>x</FN></vCard>`)), "");
	assert.equal(
		avatarHash(
			parseStoredVCard(
				`<vCard xmlns="vcard-temp"><PHOTO><EXTVAL>http://x/y.png</EXTVAL></PHOTO></vCard>`,
			),
		),
		null,
	);
});
