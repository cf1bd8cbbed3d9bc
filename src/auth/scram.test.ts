import assert from "node:assert/strict";
import { createHash, createHmac, pbkdf2Sync } from "node:crypto";
import { test } from "node:test";
import {
	deriveAllCredentials,
	deriveCredential,
	digest,
	hmac,
	type ScramCredential,
	saslprepPassword,
	verifyPassword,
} from "./scram.ts";

// Independent reference (test only, so the sync PBKDF2 is fine here). RFC 5802 §3.
function reference(
	algo: "sha1" | "sha256",
	password: string,
	salt: Buffer,
	i: number,
): { storedKey: string; serverKey: string } {
	const len = algo === "sha1" ? 20 : 32;
	const salted = pbkdf2Sync(password, salt, i, len, algo);
	const clientKey = createHmac(algo, salted).update("Client Key").digest();
	return {
		storedKey: createHash(algo).update(clientKey).digest("base64"),
		serverKey: createHmac(algo, salted).update("Server Key").digest("base64"),
	};
}

test("deriveCredential matches RFC 5802 §3 definitions for the RFC 5802 §5 example salt", async () => {
	const salt = Buffer.from("QSXCR+Q6sek8bf92", "base64");
	const cred = await deriveCredential("SHA-1", "pencil", 4096, salt);
	assert.equal(cred.salt, "QSXCR+Q6sek8bf92");
	assert.equal(cred.iterations, 4096);
	const ref = reference("sha1", "pencil", salt, 4096);
	assert.equal(cred.storedKey, ref.storedKey);
	assert.equal(cred.serverKey, ref.serverKey);
});

test("deriveCredential SHA-256 matches RFC 7677 §3 example salt", async () => {
	const salt = Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64");
	const cred = await deriveCredential("SHA-256", "pencil", 4096, salt);
	const ref = reference("sha256", "pencil", salt, 4096);
	assert.equal(cred.storedKey, ref.storedKey);
	assert.equal(cred.serverKey, ref.serverKey);
	assert.equal(Buffer.from(cred.storedKey, "base64").length, 32);
});

test("deriveAllCredentials: both hashes, fresh 16-byte salts, nothing reversible", async () => {
	const a = await deriveAllCredentials("s3cret", 4096);
	const b = await deriveAllCredentials("s3cret", 4096);
	assert.deepEqual(Object.keys(a).sort(), ["SHA-1", "SHA-256"]);
	for (const cred of [a["SHA-1"], a["SHA-256"], b["SHA-1"], b["SHA-256"]]) {
		assert.equal(Buffer.from(cred.salt, "base64").length, 16);
		assert.equal(cred.iterations, 4096);
		assert.deepEqual(Object.keys(cred).sort(), ["iterations", "salt", "serverKey", "storedKey"]);
		assert.ok(!JSON.stringify(cred).includes("s3cret"));
	}
	assert.equal(Buffer.from(a["SHA-1"].storedKey, "base64").length, 20);
	assert.equal(Buffer.from(a["SHA-256"].storedKey, "base64").length, 32);
	assert.notEqual(a["SHA-1"].salt, a["SHA-256"].salt);
	assert.notEqual(a["SHA-256"].salt, b["SHA-256"].salt);
	assert.notEqual(a["SHA-256"].storedKey, b["SHA-256"].storedKey);
});

test("verifyPassword accepts the right password and refuses others, for both hashes", async () => {
	const creds = await deriveAllCredentials("correct horse", 4096);
	for (const cred of [creds["SHA-1"], creds["SHA-256"]]) {
		assert.equal(await verifyPassword(cred, "correct horse"), true);
		assert.equal(await verifyPassword(cred, "correct hors"), false);
		assert.equal(await verifyPassword(cred, "Correct horse"), false);
		assert.equal(await verifyPassword(cred, ""), false);
	}
});

test("verifyPassword is false (not a throw) for a damaged credential", async () => {
	const cred = await deriveCredential("SHA-256", "pw", 4096);
	const broken: ScramCredential = { ...cred, storedKey: Buffer.alloc(7).toString("base64") };
	assert.equal(await verifyPassword(broken, "pw"), false);
	assert.equal(await verifyPassword({ ...cred, iterations: 0 }, "pw"), false);
});

test("SASLprep of passwords (RFC 4013 §3 examples)", async () => {
	// RFC 4013 §3: "I<U+00AD>X" -> "IX" (soft hyphen mapped to nothing), U+2168 -> "IX" (NFKC)
	assert.equal(saslprepPassword("I\u00ADX"), "IX");
	assert.equal(saslprepPassword("\u2168"), "IX");
	assert.equal(saslprepPassword("user"), "user");
	// RFC 4013 §2.1: non-ASCII space maps to SPACE
	assert.equal(saslprepPassword("a\u00A0b"), "a b");
	// RFC 4013 §3: <U+0007> is a prohibited character
	assert.throws(() => saslprepPassword("\u0007"));
	// Unassigned in Unicode 3.2 but allowed (query profile, see saslprepPassword's comment)
	assert.equal(saslprepPassword("pass\u{1F600}"), "pass\u{1F600}");

	const cred = await deriveCredential("SHA-256", "I\u00ADX", 4096);
	assert.equal(await verifyPassword(cred, "IX"), true);
	assert.equal(await verifyPassword(cred, "\u2168"), true);
	assert.equal(await verifyPassword(cred, "\u0007"), false);
	await assert.rejects(deriveCredential("SHA-256", "\u0007", 4096));
});

test("deriveCredential refuses a bad iteration count", async () => {
	await assert.rejects(deriveCredential("SHA-1", "pw", 0), RangeError);
	await assert.rejects(deriveCredential("SHA-1", "pw", 1.5), RangeError);
});

test("PBKDF2 does not block the event loop: a setImmediate runs before a long derivation ends", async () => {
	// Ordering check, not a timing assertion: with a synchronous PBKDF2 the derivation would
	// finish inside the call and "derived" would be recorded before any immediate could run.
	const order: string[] = [];
	const derivation = deriveCredential("SHA-256", "pw", 2_000_000).then(() => {
		order.push("derived");
	});
	setImmediate(() => order.push("immediate"));
	await derivation;
	assert.deepEqual(order, ["immediate", "derived"]);
});

test("hmac and digest: the same bytes as node:crypto's createHmac/createHash (RFC 2104), every key length", () => {
	for (const h of ["SHA-1", "SHA-256"] as const) {
		const node = h === "SHA-1" ? "sha1" : "sha256";
		for (let len = 0; len <= 130; len += 1) {
			const key = Buffer.alloc(len, len * 7 + 1);
			for (const data of ["", "Client Key", Buffer.alloc(200, 9)]) {
				assert.deepEqual(hmac(h, key, data), createHmac(node, key).update(data).digest());
			}
			assert.deepEqual(digest(h, key), createHash(node).update(key).digest());
		}
	}
});
