import assert from "node:assert/strict";
import { test } from "node:test";
import { createMechanism, type SaslContext, type SaslStep } from "./sasl.ts";
import { deriveAllCredentials, type StoredCredentials } from "./scram.ts";
import { VerifiedPasswordCache } from "./verified-cache.ts";

const creds = await deriveAllCredentials("right horse", 4096);
const other = await deriveAllCredentials("right horse", 4096); // same password, new salts

function ctx(
	getCredentials: () => StoredCredentials | null,
	cache: SaslContext["verifiedPasswords"],
): SaslContext {
	return {
		domain: "example.com",
		secure: true,
		channelBinding: null,
		allowPlainWithoutTls: false,
		prepUsername: (raw) => raw.toLowerCase(),
		getCredentials: async () => getCredentials(),
		unknownUserSecret: Buffer.from("test secret"),
		unknownUserIterations: 4096,
		verifiedPasswords: cache,
	};
}

async function plain(c: SaslContext, user: string, password: string): Promise<SaslStep> {
	const m = createMechanism("PLAIN", c);
	assert.ok(m);
	return m.step(Buffer.from(`\0${user}\0${password}`, "utf8"));
}

test("verified cache: only the same password for the same credential hits", () => {
	const cache = new VerifiedPasswordCache();
	const cred = creds["SHA-256"];
	assert.equal(cache.has("juliet", cred, "right horse"), false);
	cache.add("juliet", cred, "right horse");
	assert.equal(cache.has("juliet", cred, "right horse"), true);
	assert.equal(cache.has("juliet", cred, "wrong horse"), false);
	assert.equal(cache.has("romeo", cred, "right horse"), false);
	// A password change gives a new salt and StoredKey: the old tag does not match it.
	assert.equal(cache.has("juliet", other["SHA-256"], "right horse"), false);
	cache.delete("juliet");
	assert.equal(cache.has("juliet", cred, "right horse"), false);
});

test("verified cache: bounded (least recently used out first) and entries expire", () => {
	let now = 0;
	const cache = new VerifiedPasswordCache({ max: 2, ttlMs: 1000, now: () => now });
	const cred = creds["SHA-256"];
	cache.add("a", cred, "pw");
	cache.add("b", cred, "pw");
	assert.equal(cache.has("a", cred, "pw"), true); // a is now the most recently used
	cache.add("c", cred, "pw");
	assert.equal(cache.size, 2);
	assert.equal(cache.has("b", cred, "pw"), false, "b was the least recently used");
	assert.equal(cache.has("a", cred, "pw"), true);
	now = 1000;
	assert.equal(cache.has("a", cred, "pw"), false, "expired");
});

test("RFC 4616 PLAIN with the cache: a repeated login is taken from it, without PBKDF2", async () => {
	const cache = new VerifiedPasswordCache();
	const stored: StoredCredentials | null = creds;
	const c = ctx(() => stored, cache);
	assert.equal((await plain(c, "juliet", "right horse")).kind, "success");
	assert.equal(cache.size, 1, "a proven password is remembered");
	assert.equal((await plain(c, "juliet", "right horse")).kind, "success");
	// A hit is trusted as is: with a cache that says yes, PBKDF2 is not run at all (it would
	// refuse this password).
	const yes = { has: () => true, add: () => {} };
	assert.equal(
		(
			await plain(
				ctx(() => stored, yes),
				"juliet",
				"not checked",
			)
		).kind,
		"success",
	);
	// A cached success never lets another password in.
	const wrong = await plain(c, "juliet", "wrong horse");
	assert.equal(wrong.kind, "failure");
});

test("RFC 4616 PLAIN with the cache: a hit needs the stored credential the tag was made for", async () => {
	const cache = new VerifiedPasswordCache();
	let stored: StoredCredentials | null = creds;
	const c = ctx(() => stored, cache);
	assert.equal((await plain(c, "juliet", "right horse")).kind, "success");
	// The password changed (CLI, another process): same old password against the new
	// credential goes through PBKDF2 and fails.
	stored = await deriveAllCredentials("new horse", 4096);
	const old = await plain(c, "juliet", "right horse");
	assert.ok(old.kind === "failure" && old.condition === "not-authorized");
	assert.equal((await plain(c, "juliet", "new horse")).kind, "success");
	// Account deleted: no credential, no success whatever the cache holds.
	stored = null;
	const gone = await plain(c, "juliet", "new horse");
	assert.ok(gone.kind === "failure" && gone.condition === "not-authorized");
});

test("RFC 4616 PLAIN with the cache: failures are never remembered", async () => {
	const added: string[] = [];
	const spy = { has: () => false, add: (u: string) => void added.push(u) };
	const c = ctx(() => creds, spy);
	const r = await plain(c, "juliet", "wrong horse");
	assert.equal(r.kind, "failure");
	assert.deepEqual(added, []);
	assert.equal((await plain(c, "juliet", "right horse")).kind, "success");
	assert.deepEqual(added, ["juliet"]);
});
