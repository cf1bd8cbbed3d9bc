import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { test } from "node:test";
import { MemoryBackend } from "../storage/memory.ts";
import { FastTokens, offeredFastMechanisms, type TokenRecord } from "./fast.ts";
import { downgradeProtectionHash } from "./sasl.ts";
import { deriveAllCredentials } from "./scram.ts";

test("XEP-0474 §6 example: the SSDP hash of the offered mechanisms and channel binding types", () => {
	assert.equal(
		downgradeProtectionHash("SHA-1", {
			mechanisms: ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"],
			channelBindings: ["tls-server-end-point", "tls-exporter"],
		}),
		"G6k/rBLDqgOhRRaCuuatSDFkJ08=",
	);
});

test("XEP-0484 §3.1: channel-binding mechanisms only where the connection has the binding", () => {
	assert.deepEqual(offeredFastMechanisms({ secure: false, channelBinding: null }), [
		"HT-SHA-256-NONE",
	]);
	const cb = { types: () => ["tls-server-end-point" as const], data: () => Buffer.alloc(32) };
	assert.deepEqual(offeredFastMechanisms({ secure: true, channelBinding: cb }), [
		"HT-SHA-256-ENDP",
		"HT-SHA-256-NONE",
	]);
});

test("XEP-0484 §5.1: two slots; expiry; the credential; rotation due after the configured age", async () => {
	const storage = new MemoryBackend();
	let now = 1_000_000;
	const tokens = new FastTokens(storage.map<TokenRecord>("h", "fast_tokens"), {
		lifetime: 10_000,
		rotation: 5_000,
		now: () => now,
	});
	const creds = await deriveAllCredentials("pw", 4096);
	const { token } = await tokens.issue("u", "ua", "HT-SHA-256-NONE", creds);
	const proof = (t: string) => createHmac("sha256", t).update("Initiator").digest();
	const check = (t: string, extra: Partial<Parameters<FastTokens["check"]>[0]> = {}) =>
		tokens.check({
			user: "u",
			userAgent: "ua",
			mechanism: "HT-SHA-256-NONE",
			proof: proof(t),
			cbData: Buffer.alloc(0),
			creds,
			count: null,
			invalidate: false,
			...extra,
		});
	const ok = await check(token);
	assert.equal(ok.ok && ok.rotate, false);
	assert.deepEqual(ok.ok && ok.responder, createHmac("sha256", token).update("Responder").digest());
	now += 6_000;
	const due = await check(token);
	assert.equal(due.ok && due.rotate, true);
	const other = await deriveAllCredentials("pw2", 4096);
	assert.deepEqual(await check(token, { creds: other }), {
		ok: false,
		condition: "credentials-expired",
		reason: "FAST token issued before the password changed",
	});
	assert.equal((await check(token)).ok, false, "revoked with the password change");
	const again = await tokens.issue("u", "ua", "HT-SHA-256-NONE", creds);
	now += 20_000;
	assert.equal((await check(again.token)).ok, false, "expired");
});
