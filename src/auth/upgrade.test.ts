import assert from "node:assert/strict";
import { test } from "node:test";
import { x } from "../xml/element.ts";
import { NS_SASL2, NS_SCRAM_UPGRADE } from "../xmpp/ns.ts";
import { deriveCredential, type StoredCredentials, saltedPassword } from "./scram.ts";
import { ScramUpgrade, upgradesToRun } from "./upgrade.ts";

test("XEP-0480 §2.2: only the upgrades asked for whose hash the account lacks, once each", async () => {
	const sha1 = await deriveCredential("SHA-1", "pw", 4096);
	const only1: StoredCredentials = { "SHA-1": sha1 };
	assert.deepEqual(upgradesToRun(["UPGR-SCRAM-SHA-256", "UPGR-SCRAM-SHA-256"], only1), ["SHA-256"]);
	assert.deepEqual(upgradesToRun(["UPGR-SCRAM-SHA-1", "UPGR-BLOOP2"], only1), []);
	assert.deepEqual(upgradesToRun([], {}), []);
});

test("XEP-0480 §3: the salt and iteration count out, SaltedPassword in, the RFC 5802 keys kept", async () => {
	const salt = Buffer.from("0123456789abcdef");
	const task = new ScramUpgrade("SHA-256", 4096, salt);
	assert.equal(task.name, "UPGR-SCRAM-SHA-256");
	assert.equal(
		task.start().toString(),
		`<task-data xmlns="urn:xmpp:sasl:2"><salt xmlns="urn:xmpp:scram-upgrade:0" iterations="4096">${salt.toString("base64")}</salt></task-data>`,
	);
	const salted = await saltedPassword("SHA-256", "pw", salt, 4096);
	const data = (hash?: string) =>
		x(
			"task-data",
			{ xmlns: NS_SASL2 },
			hash === undefined ? undefined : x("hash", { xmlns: NS_SCRAM_UPGRADE }, hash),
		);
	const cred = task.finish(data(salted.toString("base64")));
	assert.ok(typeof cred !== "string");
	// The same keys a password gives with that salt.
	const expected = await deriveCredential("SHA-256", "pw", 4096, salt);
	assert.equal(cred.storedKey, expected.storedKey);
	assert.equal(cred.serverKey, expected.serverKey);
	assert.equal(cred.salt, expected.salt);
	assert.ok(cred.upgraded);
	assert.match(task.finish(data()) as string, /no <hash/);
	assert.match(task.finish(data("!!")) as string, /not base64/);
	// SHA-1's size for a SHA-256 task.
	assert.match(task.finish(data(Buffer.alloc(20).toString("base64"))) as string, /SHA-256/);
});
