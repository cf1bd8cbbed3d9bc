/**
 * A second, independent client implementation: slixmpp (Debian's python3-slixmpp) logs in over
 * STARTTLS and direct TLS with the mechanism it picks itself and with each one forced, and two
 * accounts chat. .ci/run installs python3-slixmpp; without it these tests are skipped, saying so.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { type Invite, InviteStore } from "../../src/auth/invites.ts";
import { logCollector } from "../helpers/log-collector.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { befriend } from "../helpers/xmpp-user.ts";

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

	test("XEP-0163 PEP with slixmpp's plugins: OMEMO's nodes, +notify, XEP-0084/XEP-0398 avatars, XEP-0048/0402 bookmarks", async () => {
		const pep = await startTestServer({
			users: ["alice", "bob", "carol"].map(
				(u) => [`${u}@localhost`, `${u}-pw`] as [string, string],
			),
		});
		try {
			await befriend(pep.server, "alice@localhost", "bob@localhost");
			const r = await run(PYTHON, ["test/clients/slixmpp_pep.py", "localhost", String(pep.port)], {
				encoding: "utf8",
				timeout: 120_000,
			}).catch((e: { stdout?: string; stderr?: string }) => e);
			const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
			const result = JSON.parse(line || "{}") as Record<string, unknown>;
			assert.deepEqual(
				result,
				{
					omemo: { devices: ["4242"], bundle: ["{eu.siacs.conversations.axolotl}bundle"] },
					notified: [["http://jabber.org/protocol/tune", "alice@localhost"]],
					vcard_photo_matches: true,
					avatar_from_vcard: true,
					// XEP-0049 on the server's disco#info, where poezio 0.14 looks for it.
					server_lists_private: true,
					bookmarks2: ["room@conference.localhost"],
					private_after_pep: ["other@conference.localhost", "room@conference.localhost"],
				},
				`${line}\n${(r.stderr ?? "").slice(-3000)}`,
			);
		} finally {
			await pep.stop();
		}
	});

	test("XEP-0050 / XEP-0133 with slixmpp's xep_0050 plugin: an admin counts online users and announces, a user creates a contact invitation", async () => {
		const adhoc = await startTestServer({
			users: [
				["alice@localhost", "alice-pw"],
				["bob@localhost", "bob-pw"],
			],
		});
		try {
			await adhoc.server.hosts.get("localhost")?.accounts.setRole("alice", "admin");
			const r = await run(
				PYTHON,
				["test/clients/slixmpp_adhoc.py", "localhost", String(adhoc.port)],
				{
					encoding: "utf8",
					timeout: 60_000,
				},
			).catch((e: { stdout?: string; stderr?: string }) => e);
			const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
			const result = JSON.parse(line || "{}") as Record<string, unknown>;
			assert.deepEqual(
				result,
				{
					// XEP-0050 §3.2: an admin sees the XEP-0133 commands.
					commands: [
						"http://jabber.org/protocol/admin#add-user",
						"http://jabber.org/protocol/admin#announce",
						"http://jabber.org/protocol/admin#change-user-password",
						"http://jabber.org/protocol/admin#delete-user",
						"http://jabber.org/protocol/admin#disable-user",
						"http://jabber.org/protocol/admin#get-online-users-list",
						"http://jabber.org/protocol/admin#get-online-users-num",
						"http://jabber.org/protocol/admin#reenable-user",
					],
					count_status: "completed",
					onlineusersnum: "2",
					// XEP-0133 §4.23's form.
					announce_fields: [
						["announcement", "text-multi"],
						["subject", "text-single"],
					],
					announce_status: "completed",
					bob_got: ["Hello", "From slixmpp"],
					// XEP-0050 §3.2: a user sees the commands every account may run, no admin one.
					// A user's own: its strangers policy and held messages (spam module), invitations.
					bob_commands: [
						"urn:parley:strangers:discard",
						"urn:parley:strangers:held",
						"urn:parley:strangers:policy",
						"urn:parley:strangers:release",
						"urn:xmpp:invite#invite",
					],
					invite_status: "completed",
					invite_uri_ok: true,
					invite_page_ok: true,
				},
				`${line}\n${(r.stderr ?? "").slice(-3000)}`,
			);
		} finally {
			await adhoc.stop();
		}
	});

	test("XEP-0445 with slixmpp's xep_0077: a newcomer registers on an invite-only host with a token, once", async () => {
		const inv = await startTestServer({
			config: {
				hosts: {
					localhost: {
						modules: ["disco", "ping", "presence", "roster", "register"],
						module_options: { register: { invite_only: true } },
					},
				},
			},
			users: [["alice@localhost", "alice-pw"]],
		});
		try {
			const host = inv.server.hosts.get("localhost");
			assert.ok(host);
			const invite = await new InviteStore(host.keyval<Invite>("invites")).create({
				type: "account",
				roster: "alice",
				creator: "cli",
				ttl: 3600,
			});
			const register = async (user: string) => {
				const r = await run(
					PYTHON,
					[
						"test/clients/slixmpp_invite_register.py",
						"localhost",
						String(inv.port),
						invite.token,
						user,
						`${user}-pw`,
					],
					{ encoding: "utf8", timeout: 60_000 },
				).catch((e: { stdout?: string; stderr?: string }) => e);
				const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
				return {
					result: JSON.parse(line || "{}") as Record<string, unknown>,
					text: `${line}\n${(r.stderr ?? "").slice(-3000)}`,
				};
			};
			const first = await register("newbie");
			assert.deepEqual(
				first.result,
				{ preauth: "result", register: "result", roster: [["alice@localhost", "both"]] },
				first.text,
			);
			// A one-time token: the second newcomer is refused at preauth and at registration.
			const second = await register("other");
			assert.deepEqual(
				second.result,
				{ preauth: "item-not-found", register: "not-allowed" },
				second.text,
			);
		} finally {
			await inv.stop();
		}
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

	for (const mode of ["starttls", "directtls"] as const) {
		test(`${mode}: a session's carbons, vCard-temp, MUC history and stream resumption with slixmpp's plugins`, async () => {
			const s = await startTestServer({
				config: { components: { "conference.localhost": { type: "muc" } } },
				users: [
					["alice@localhost", "alice-pw"],
					["bob@localhost", "bob-pw"],
				],
			});
			try {
				const port = mode === "starttls" ? s.port : s.tlsPort;
				const r = await run(
					PYTHON,
					[
						"test/clients/slixmpp_session.py",
						"localhost",
						String(port),
						mode,
						"conference.localhost",
					],
					{ encoding: "utf8", timeout: 60_000 },
				).catch((e: { stdout?: string; stderr?: string }) => e);
				const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
				const result = JSON.parse(line || "{}") as Record<string, unknown>;
				assert.deepEqual(
					result,
					{
						// XEP-0280 §6 / §7: the other resource's sent and received messages.
						carbon_sent: ["sent", "alice@localhost/a2", "bob@localhost/b", "from a2"],
						carbon_received: ["received", "bob@localhost/b", "alice@localhost/a2", "to a2"],
						// XEP-0054 §3.1 / §3.2.
						vcard: ["Alice Liddell", ["alice"]],
						// XEP-0045 §7.2.15 (maxstanzas=2), each with XEP-0203 delay, before the subject.
						muc_history: [
							["line 2", true],
							["line 3", true],
						],
						// XEP-0198 §5: resumed, and what came meanwhile delivered.
						sm_resumable: true,
						sm_resumed: ["alice@localhost/a2", "while you were away"],
					},
					`${line}\n${(r.stderr ?? "").slice(-3000)}`,
				);
			} finally {
				await s.stop();
			}
		});
	}

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

interface LoginRecord {
	ok: boolean;
	mech: string | null;
	failures: [condition: string, text: string][];
	error?: string;
}

async function slixmppLogins(
	port: number,
	user: string,
	password: string,
	count: number,
): Promise<{ logins: LoginRecord[]; raw: string }> {
	const r = await run(
		PYTHON,
		["test/clients/slixmpp_logins.py", "localhost", String(port), user, password, String(count)],
		{ encoding: "utf8", timeout: 120_000 },
	).catch((e: { stdout?: string; stderr?: string }) => e);
	const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
	const parsed = JSON.parse(line || '{"logins":[]}') as { logins: LoginRecord[] };
	return { logins: parsed.logins, raw: `${line}\n${r.stderr ?? ""}` };
}

describe("slixmpp 1.8.3 and channel binding (issues 11 and 22)", { skip }, () => {
	// slixmpp 1.8.3 binds every -PLUS mechanism to tls-unique (util/sasl/mechanisms.py), which
	// TLS 1.3 does not have (RFC 9266 §1), and ignores our XEP-0440 list. Each such attempt is
	// refused at once and must not count toward either throttle.
	const ALLOWANCE = 2;
	const LOGINS = ALLOWANCE + 2;
	let t: TestServer;
	const log = logCollector();
	before(async () => {
		t = await startTestServer({
			config: {
				// One counted failure would close the connection; ALLOWANCE per IP would delay.
				limits: { sasl_failures_per_connection: 1, sasl_failures_per_ip: ALLOWANCE },
			},
			users: [["erin@localhost", "erin-pw"]],
			log: log.stream,
		});
	});
	after(() => t?.stop());

	test(`a correct password logs in ${LOGINS} times in a row, more than sasl_failures_per_ip allows failures, and nothing counts (RFC 5802 §6, RFC 6120 §6.4.5)`, async () => {
		const { logins, raw } = await slixmppLogins(t.port, "erin", "erin-pw", LOGINS);
		assert.equal(logins.length, LOGINS, raw);
		for (const login of logins) {
			assert.equal(login.ok, true, raw);
			// Both -PLUS mechanisms are refused with RFC 6120 §6.5.9 malformed-request and the
			// RFC 5802 §7 server-error-value as text, then SCRAM without binding ('y') succeeds.
			assert.deepEqual(
				login.failures,
				[
					["malformed-request", "unsupported-channel-binding-type"],
					["malformed-request", "unsupported-channel-binding-type"],
				],
				raw,
			);
			assert.equal(login.mech, "SCRAM-SHA-256", raw);
		}
		// Neither throttle counted anything: no per-IP failure recorded, no delay ahead.
		assert.equal(t.server.authFailures.failures("127.0.0.1"), 0);
		assert.equal(t.server.authFailures.delayFor("127.0.0.1"), 0);

		// The log names the reason for each refusal, so an operator can tell it from a wrong
		// password: the type asked for, the types we have (XEP-0440), the address, not counted.
		const refusals = log.lines().filter((l) => l.msg === "authentication failed");
		assert.equal(refusals.length, 2 * LOGINS, JSON.stringify(log.lines()));
		for (const l of refusals) {
			assert.equal(l.level, "info");
			assert.equal(l.ip, "127.0.0.1");
			assert.equal(l.user, "erin");
			assert.match(String(l.mech), /^SCRAM-SHA-(1|256)-PLUS$/);
			assert.equal(l.condition, "malformed-request");
			assert.equal(l.counted, false);
			const cb = l.channelBinding as { requested: string; available: string[] };
			assert.equal(cb.requested, "tls-unique");
			assert.ok(cb.available.includes("tls-exporter"), JSON.stringify(cb));
			assert.match(String(l.reason), /tls-unique is undefined for TLS 1\.3/);
		}
		const ok = log.lines().filter((l) => l.msg === "authenticated");
		assert.equal(ok.length, LOGINS);
	});

	test("a wrong password still counts (RFC 6120 §6.5.10), and only the guess, not the refused -PLUS", async () => {
		const before = t.server.authFailures.failures("127.0.0.1");
		const mark = log.lines().length;
		const { logins, raw } = await slixmppLogins(t.port, "erin", "not-erin-pw", 1);
		assert.equal(logins[0]?.ok, false, raw);
		// sasl_failures_per_connection = 1: the first counted failure closes the connection
		// (RFC 6120 §6.4.5), so exactly one guess was counted.
		assert.equal(t.server.authFailures.failures("127.0.0.1"), before + 1);
		const failed = log
			.lines()
			.slice(mark)
			.filter((l) => l.msg === "authentication failed");
		assert.deepEqual(
			failed.map((l) => [l.mech, l.condition, l.counted, l.reason]),
			[
				["SCRAM-SHA-256-PLUS", "malformed-request", false, failed[0]?.reason],
				["SCRAM-SHA-1-PLUS", "malformed-request", false, failed[1]?.reason],
				["SCRAM-SHA-256", "not-authorized", true, "wrong password"],
			],
			JSON.stringify(failed),
		);
	});
});
