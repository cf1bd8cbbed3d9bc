/**
 * Spam and abuse defence (issue 19) over real sockets: XEP-0377 reports on a XEP-0191 block,
 * queued for the admins, forwarded only where the reporter opted in (§processing).
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { reportList, reportResolve } from "../../src/admin/commands/report.ts";
import { DEFAULT_HOST_MODULES } from "../../src/core/config/schema.ts";
import type { SpamCounters } from "../../src/modules/spam/index.ts";
import type { StoredReport } from "../../src/modules/spam/reports.ts";
import type { RawClient } from "../helpers/raw.ts";
import { iq, online as rawOnline } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";
const hasSlixmpp = spawnSync(PYTHON, ["-c", "import slixmpp"], { stdio: "ignore" }).status === 0;

let t: TestServer;

before(async () => {
	t = await startTestServer({
		config: {
			auth: { require_encryption: false, allow_plain_without_tls: true },
			hosts: {
				localhost: {
					// mam: the reported messages are found in the reporter's archive.
					modules: [...DEFAULT_HOST_MODULES, "mam"],
					module_options: {
						spam: {
							report_forward_to_origin: true,
							report_forward_to: ["blocklist@localhost"],
							reports_per_hour: 5,
						},
					},
				},
				// The reported domain, which publishes its abuse address (XEP-0157 §3).
				"example.net": {
					module_options: {
						contact_info: { abuse: ["mailto:abuse@example.net", "xmpp:abuse@example.net"] },
					},
				},
			},
		},
		users: [
			["alice@localhost", "pw-alice"],
			["bob@localhost", "pw-bob"],
			["blocklist@localhost", "pw-blocklist"],
			["abuse@example.net", "pw-abuse"],
			["spammer@example.net", "pw-spammer"],
			["flood@localhost", "pw-flood"],
		],
	});
});
after(() => t.stop());

const online = (user: string, resource: string, host = "localhost"): Promise<RawClient> =>
	rawOnline(t.port, user, resource, { host });
const ctx = () => ({ core: t.server, actor: "cli" });
const reports = async (status: "open" | "resolved" | "all" = "all") =>
	(await reportList.run(ctx(), { status })) as (StoredReport & { host: string })[];

test("the server advertises XEP-0377 reporting:0 and :1 (§discovery)", async () => {
	const c = await online("bob", "disco");
	const r = await iq(
		c,
		"d",
		"<iq type='get' to='localhost' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
	);
	assert.match(r, /<feature var="urn:xmpp:reporting:0"\/>/);
	assert.match(r, /<feature var="urn:xmpp:reporting:1"\/>/);
	assert.match(r, /<feature var="urn:xmpp:reporting:reason:spam:0"\/>/);
	c.end();
});

test("a reporting:1 report blocks, is queued, and goes where the reporter opted in (XEP-0377 §blocking, §processing)", async () => {
	const alice = await online("alice", "r1");
	const third = await online("blocklist", "svc");
	const abuse = await online("abuse", "desk", "example.net");
	const spammer = await online("spammer", "bot", "example.net");
	// The message alice reports, with the stanza-id her archive gave it (XEP-0359).
	const am = alice.received.length;
	spammer.send(
		"<message to='alice@localhost' type='chat' id='sp1'><body>cheap pills</body></message>",
	);
	const got = await alice.waitFor(/<message[^>]*id="sp1"[\s\S]*?<\/message>/, am);
	const sid = (/<stanza-id xmlns="urn:xmpp:sid:0" by="alice@localhost" id="([^"]+)"/.exec(got) ??
		[])[1];
	assert.ok(sid, got);
	const thirdMark = third.received.length;
	const abuseMark = abuse.received.length;
	// No opt-in: kept for the admins, forwarded nowhere.
	const r0 = await iq(
		alice,
		"b0",
		`<iq type='set' id='b0'><block xmlns='urn:xmpp:blocking'><item jid='quiet@example.net'>
			<report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:abuse'/></item></block></iq>`,
	);
	assert.match(r0, /type="result"/);
	// Both opt-ins, with stanza-ids and a text.
	const r1 = await iq(
		alice,
		"b1",
		`<iq type='set' id='b1'><block xmlns='urn:xmpp:blocking'><item jid='spammer@example.net'>
			<report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>
				<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='${sid}'/>
				<stanza-id xmlns='urn:xmpp:sid:0' by='room@conference.example.net' id='r-9'/>
				<text xml:lang='en'>Never came trouble to my house like this.</text>
				<report-origin/><third-party/>
			</report></item></block></iq>`,
	);
	assert.match(r1, /type="result"/);
	// §blocking: the JID is blocked as without a report.
	const list = await iq(
		alice,
		"l",
		"<iq type='get' id='l'><blocklist xmlns='urn:xmpp:blocking'/></iq>",
	);
	assert.match(list, /<item jid="spammer@example.net"\/>/);
	assert.match(list, /<item jid="quiet@example.net"\/>/);

	// Third party (<third-party/>): the first report it gets is the opted-in one.
	const fwd = await third.waitFor(/<message[\s\S]*?<\/message>/, thirdMark);
	const msg = (/<message[\s\S]*?<\/message>/.exec(fwd.slice(fwd.indexOf("<message"))) ?? [""])[0];
	assert.match(msg, /from="localhost"/);
	assert.match(msg, /<report xmlns="urn:xmpp:reporting:1" reason="urn:xmpp:reporting:spam">/);
	assert.match(msg, /<jid xmlns="urn:xmpp:jid:0">spammer@example.net<\/jid>/);
	assert.match(
		msg,
		/<stanza-id xmlns="urn:xmpp:sid:0" by="room@conference.example.net" id="r-9"\/>/,
	);
	assert.match(msg, /Never came trouble/);
	// The reporter's own stanza-id became a copy of the message from her archive, without
	// its 'to' (§processing's one anonymisation).
	assert.match(
		msg,
		/<forwarded xmlns="urn:xmpp:forward:0"><delay xmlns="urn:xmpp:delay" stamp="[^"]+"\/><message [^>]*from="spammer@example.net\/bot"[^>]*>[\s\S]*cheap pills/,
	);
	assert.doesNotMatch(msg, /quiet@example\.net/, "a report without opt-in is not forwarded");
	// The reporter is not named (§processing: only the reported JID is kept).
	assert.doesNotMatch(msg, /alice/);
	// Origin (<report-origin/>): the xmpp: abuse address from example.net's disco#info.
	const toOrigin = await abuse.waitFor(/<message[\s\S]*?<\/message>/, abuseMark);
	assert.match(toOrigin, /<jid xmlns="urn:xmpp:jid:0">spammer@example.net<\/jid>/);
	assert.doesNotMatch(toOrigin, /quiet@example\.net/);

	// Queued for the admins, with what the reporter said.
	const all = await reports();
	const spam = all.find((r) => r.jid === "spammer@example.net");
	assert.ok(spam, JSON.stringify(all));
	assert.equal(spam.reason, "urn:xmpp:reporting:spam");
	assert.equal(spam.version, 1);
	assert.equal(spam.reporter, "alice@localhost");
	assert.deepEqual(
		spam.stanzaIds.map((s) => s.id),
		[sid, "r-9"],
	);
	assert.equal(spam.text, "Never came trouble to my house like this.");
	assert.equal(spam.status, "open");
	const quiet = all.find((r) => r.jid === "quiet@example.net");
	assert.equal(quiet?.reason, "urn:xmpp:reporting:abuse");
	assert.deepEqual(quiet?.forwardedTo, []);
	const forwarded = await waitFor(
		async () =>
			(await reports()).find((r) => r.id === spam.id && r.forwardedTo.length === 2)?.forwardedTo,
		"forwardedTo recorded",
	);
	assert.deepEqual([...forwarded].sort(), ["abuse@example.net", "blocklist@localhost"]);
	for (const c of [alice, third, abuse, spammer]) c.end();
});

test("report.resolve closes a report; report.list shows open ones by default; unknown ids are not_found", async () => {
	const bob = await online("bob", "r2");
	await iq(
		bob,
		"b",
		`<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='pest@example.net'>
			<report xmlns='urn:xmpp:reporting:0'><abuse/><text>rude</text></report></item></block></iq>`,
	);
	const mine = await waitFor(
		async () => (await reports("open")).find((r) => r.jid === "pest@example.net"),
		"bob's report",
	);
	assert.equal(mine.reason, "urn:xmpp:reporting:abuse");
	assert.equal(mine.version, 0);
	assert.equal(mine.text, "rude");
	const done = await reportResolve.run(ctx(), { id: mine.id, resolution: "account warned" });
	assert.equal(done.status, "resolved");
	assert.equal(done.resolvedBy, "cli");
	assert.ok(!(await reports("open")).some((r) => r.id === mine.id));
	assert.equal(
		(await reports("resolved")).find((r) => r.id === mine.id)?.resolution,
		"account warned",
	);
	await assert.rejects(reportResolve.run(ctx(), { id: "nope", resolution: "" }), {
		code: "not_found",
	});
	bob.end();
});

describe("slixmpp xep_0377", {
	skip: hasSlixmpp ? false : "python3-slixmpp is not installed",
}, () => {
	test("slixmpp's reporting:0 report (in <block/>, beside the item) blocks and is queued, not forwarded", async () => {
		const r = await run(
			PYTHON,
			[
				"test/clients/slixmpp_report.py",
				"localhost",
				String(t.port),
				"bob",
				"pw-bob",
				"slixspam@example.net",
			],
			{ encoding: "utf8", timeout: 60_000 },
		).catch((e: { stdout?: string; stderr?: string }) => e);
		const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
		assert.deepEqual(JSON.parse(line || "{}"), { block_result: "result", listed: true }, r.stderr);
		const rep = await waitFor(
			async () => (await reports("open")).find((x) => x.jid === "slixspam@example.net"),
			"slixmpp's report",
		);
		assert.equal(rep.reason, "urn:xmpp:reporting:spam");
		assert.equal(rep.version, 0);
		assert.equal(rep.text, "buy cheap stuff");
		assert.equal(rep.reporter, "bob@localhost");
		// :0 has no opt-ins: XEP-0377 §processing forbids forwarding it.
		assert.equal(rep.reportOrigin, false);
		assert.equal(rep.thirdParty, false);
	});
});

test("one account files at most reports_per_hour reports; the rest still block (XEP-0377 §blocking)", async () => {
	const flood = await online("flood", "f");
	for (let i = 0; i < 7; i++) {
		const r = await iq(
			flood,
			`f${i}`,
			`<iq type='set' id='f${i}'><block xmlns='urn:xmpp:blocking'><item jid='victim${i}@example.net'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:abuse'/></item></block></iq>`,
		);
		assert.match(r, /type="result"/);
	}
	const mine = (await reports()).filter((r) => r.reporter === "flood@localhost");
	assert.equal(mine.length, 5);
	const q: { counters?: SpamCounters } = {};
	await t.server.hosts.get("localhost")?.events.fire("spam/counters", q);
	assert.equal(q.counters?.reportsDropped, 2, JSON.stringify(q.counters));
	// The same counters in the Prometheus text (GET /metrics on the admin listener).
	const { body } = await t.server.metricsText();
	assert.match(body, /^parley_spam_total\{host="localhost",event="reports_dropped"\} 2$/m);
	const list = await iq(
		flood,
		"l",
		"<iq type='get' id='l'><blocklist xmlns='urn:xmpp:blocking'/></iq>",
	);
	assert.match(list, /victim6@example.net/, "blocked all the same");
	flood.end();
});

test("bad input: a report naming unknown stanza-ids, another sender's message and too many ids is kept and forwarded without them (XEP-0377 §processing)", async () => {
	const alice = await online("alice", "r3");
	const bob = await online("bob", "r3");
	const third = await online("blocklist", "svc3");
	// A message from bob, which alice's archive keeps: its stanza-id is real, but not ghost's.
	const am = alice.received.length;
	bob.send(
		"<message to='alice@localhost' type='chat' id='bob1'><body>bob's own words</body></message>",
	);
	const got = await alice.waitFor(/<message[^>]*id="bob1"[\s\S]*?<\/message>/, am);
	const bobSid = (/<stanza-id xmlns="urn:xmpp:sid:0" by="alice@localhost" id="([^"]+)"/.exec(got) ??
		[])[1];
	assert.ok(bobSid, got);
	const mark = third.received.length;
	const roomIds = Array.from(
		{ length: 60 },
		(_, i) => `<stanza-id xmlns='urn:xmpp:sid:0' by='room@conference.example.net' id='x${i}'/>`,
	).join("");
	const r = await iq(
		alice,
		"g",
		`<iq type='set' id='g'><block xmlns='urn:xmpp:blocking'><item jid='ghost@example.net'>
			<report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>
				<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='no-such-id'/>
				<stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='${bobSid}'/>
				${roomIds}<third-party/>
			</report></item></block></iq>`,
	);
	// §blocking: the block happens whatever the report names.
	assert.match(r, /type="result"/);
	const fwd = await third.waitFor(/ghost@example\.net[\s\S]*?<\/message>/, mark);
	const msg = fwd.slice(fwd.lastIndexOf("<message", fwd.indexOf("ghost@example.net")));
	assert.match(msg, /<jid xmlns="urn:xmpp:jid:0">ghost@example.net<\/jid>/);
	// An id the archive does not know gives nothing; bob's message is not ghost's, so it is
	// not handed to a third party (only messages from the reported JID are evidence).
	assert.doesNotMatch(msg, /<forwarded/, msg);
	assert.doesNotMatch(msg, /bob's own words|no-such-id/, msg);
	const stored = (await reports()).find((x) => x.jid === "ghost@example.net");
	assert.ok(stored);
	// At most 50 stanza-ids are kept.
	assert.equal(stored.stanzaIds.length, 50);
	for (const c of [alice, bob, third]) c.end();
});
