/**
 * A second, independent client implementation: slixmpp (Debian's python3-slixmpp) logs in over
 * STARTTLS and direct TLS with the mechanism it picks itself and with each one forced, and two
 * accounts chat. .ci/run installs python3-slixmpp; without it these tests are skipped, saying so.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { startTestServer, type TestServer } from "../helpers/server.ts";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";
const hasSlixmpp = spawnSync(PYTHON, ["-c", "import slixmpp"], { stdio: "ignore" }).status === 0;
const skip = hasSlixmpp
	? false
	: "python3-slixmpp is not installed (apt-get install python3-slixmpp)";

describe("slixmpp", { skip }, () => {
	let t: TestServer;
	before(async () => {
		t = await startTestServer({
			users: [
				["alice@localhost", "alice-pw"],
				["bob@localhost", "bob-pw"],
				["carol@localhost", "carol-pw"],
				["dave@localhost", "dave-pw"],
			],
		});
	});
	after(() => t?.stop());

	test("IM as a person does it: subscribe, presence, chat, offline, offline delivery, block", async () => {
		// RFC 6121 §3 (subscription), §4 (presence), XEP-0160/0203 (offline, delay), XEP-0191.
		const r = await run(
			PYTHON,
			["test/clients/slixmpp_im.py", "localhost", String(t.port), "carol", "dave"],
			{
				encoding: "utf8",
				timeout: 120_000,
			},
		).catch((e: { stdout?: string; stderr?: string }) => e);
		const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
		const steps = JSON.parse(line || "{}") as Record<string, unknown>;
		assert.deepEqual(
			steps,
			{
				subscribed_both: true,
				presence_seen: true,
				chat: true,
				offline_seen: true,
				offline_delivered: true,
				blocked: true,
				// XEP-0191 §3.5 lets the server answer a blocked sender's message with an error.
				block_error: ["service-unavailable"],
			},
			`${line}\n${r.stderr ?? ""}`,
		);
	});

	test("XEP-0045 with slixmpp's xep_0045 plugin: create a room, enter, talk, set the subject", async () => {
		const muc = await startTestServer({
			config: { components: { "conference.localhost": { type: "muc" } } },
			users: [
				["alice@localhost", "alice-pw"],
				["bob@localhost", "bob-pw"],
			],
		});
		try {
			const r = await run(
				PYTHON,
				["test/clients/slixmpp_muc.py", "localhost", String(muc.port), "conference.localhost"],
				{ encoding: "utf8", timeout: 60_000 },
			).catch((e: { stdout?: string; stderr?: string }) => e);
			const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
			const result = JSON.parse(line || "{}") as Record<string, unknown>;
			assert.deepEqual(
				result,
				{
					// §10.1.1: 201 room created, 110 self-presence.
					created_codes: [110, 201],
					bob_affiliation: "none",
					// §7.2.3: bob learns about alice and himself.
					bob_saw: ["alice", "bob"],
					// §7.4: both messages reach both occupants, the sender's own included.
					alice_got: [
						["alice", "hello from alice"],
						["bob", "hello from bob"],
					],
					bob_got: [
						["alice", "hello from alice"],
						["bob", "hello from bob"],
					],
					// §8.1: the subject the owner set.
					bob_subject: "slixmpp subject",
					roster: ["alice", "bob"],
				},
				`${line}\n${r.stderr ?? ""}`,
			);
		} finally {
			await muc.stop();
		}
	});

	const cases: [mode: "starttls" | "directtls", mech: string][] = [
		["starttls", "auto"],
		["directtls", "auto"],
		["starttls", "SCRAM-SHA-1"],
		["directtls", "PLAIN"],
	];
	for (const [mode, mech] of cases) {
		test(`${mode} with ${mech}: log in and exchange messages both ways`, async () => {
			const port = mode === "starttls" ? t.port : t.tlsPort;
			// Async on purpose: a synchronous child would block the server in this process.
			const r = await run(
				PYTHON,
				["test/clients/slixmpp_chat.py", "localhost", String(port), mode, mech],
				{
					encoding: "utf8",
					timeout: 60_000,
				},
			).catch((e: { stdout?: string; stderr?: string }) => e);
			const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
			const result = JSON.parse(line || "{}") as {
				alice_got?: [string, string];
				bob_got?: [string, string];
				mechanisms?: Record<string, string>;
				error?: string;
			};
			assert.equal(result.error, undefined, `${line}\n${r.stderr ?? ""}`);
			// RFC 6120 §8.1.2.1: stamped full JID; RFC 6121 §8.5.2.1.1: bare-JID delivery.
			assert.deepEqual(result.bob_got, ["alice@localhost/slix", "hello from alice"]);
			assert.deepEqual(result.alice_got, ["bob@localhost/slix", "hello from bob"]);
			if (mech !== "auto") assert.equal(result.mechanisms?.alice, mech);
			// With its own choice slixmpp ends on SCRAM: it tries -PLUS with tls-unique, which
			// TLS 1.3 does not have (RFC 9266), and falls back.
			else assert.match(result.mechanisms?.alice ?? "", /^SCRAM-SHA-256/);
		});
	}
});
