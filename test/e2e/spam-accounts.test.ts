/**
 * Registration and account defences (issue 19) over raw sockets: XEP-0077 registration refused
 * from blocked addresses and not throttled from trusted ones; the quarantine of new accounts
 * (no strangers, no new rooms) until an admin approves them; account.disable / account.enable
 * with RFC 6120 §6.5.1 account-disabled.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { accountApprove, accountDisable, accountEnable } from "../../src/admin/commands/account.ts";
import { DEFAULT_HOST_MODULES } from "../../src/core/config/schema.ts";
import { RawClient } from "../helpers/raw.ts";
import { request } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { login } from "../helpers/xmpp-raw-login.ts";
import { befriend } from "../helpers/xmpp-user.ts";

const MUC = "conference.localhost";
const plainAuth = { require_encryption: false, allow_plain_without_tls: true };

function server(register: Record<string, unknown>, spam: Record<string, unknown> = {}) {
	return startTestServer({
		config: {
			auth: plainAuth,
			hosts: {
				localhost: {
					modules: [...DEFAULT_HOST_MODULES, "register"],
					module_options: { register: { invite_only: false, ...register }, spam },
				},
			},
			components: { [MUC]: { type: "muc" as const } },
		},
		users: [
			["bob@localhost", "pw-bob"],
			["carol@localhost", "pw-carol"],
		],
	});
}

async function preauth(t: TestServer): Promise<RawClient> {
	const c = await RawClient.connect(t.port);
	c.open();
	await c.waitFor("</stream:features>");
	return c;
}
const register = (user: string) =>
	`<query xmlns='jabber:iq:register'><username>${user}</username><password>pw-${user}</password></query>`;
const condition = (reply: string) =>
	/<([a-z-]+) xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/.exec(reply)?.[1];
const ctx = (t: TestServer) => ({ core: t.server, actor: "cli" });

async function online(t: TestServer, user: string): Promise<RawClient> {
	const c = await login(t.port, user, `pw-${user}`, { resource: "r" });
	const m = c.received.length;
	c.send("<presence/>");
	await c.waitFor(new RegExp(`<presence[^>]*from="${user}@localhost/r"`), m);
	return c;
}

/** Sends a message and returns the error that came back for it, or undefined after a ping. */
async function sendMessage(c: RawClient, to: string, id: string): Promise<string | undefined> {
	const m = c.received.length;
	c.send(`<message to='${to}' type='chat' id='${id}'><body>hello</body></message>`);
	await request(c, "get", "<ping xmlns='urn:xmpp:ping'/>");
	const err = new RegExp(
		`<message[^>]*id="${id}"[^>]*type="error"[\\s\\S]*?</message>|<message[^>]*type="error"[^>]*id="${id}"[\\s\\S]*?</message>`,
	).exec(c.received.slice(m));
	return err ? condition(err[0]) : undefined;
}

async function join(c: RawClient, occupant: string): Promise<string> {
	const m = c.received.length;
	c.send(`<presence to='${occupant}'><x xmlns='http://jabber.org/protocol/muc'/></presence>`);
	return c.waitFor(new RegExp(`<presence[^>]*from="${occupant}"[\\s\\S]*?</presence>`), m);
}

test("registration_block_ips refuses, registration_allow_ips is not throttled (XEP-0077 §3.1.1)", async () => {
	const blocked = await server({ registration_block_ips: ["127.0.0.0/8", "::1"] });
	try {
		const c = await preauth(blocked);
		const r = await request(c, "set", register("nope"));
		assert.equal(condition(r), "not-allowed", r);
		assert.equal(await blocked.server.hosts.get("localhost")?.accounts.exists("nope"), false);
		c.end();
	} finally {
		await blocked.stop();
	}
	const trusted = await server({
		min_seconds_between_registrations_per_ip: 300,
		registration_allow_ips: ["127.0.0.1", "::ffff:127.0.0.1", "::1"],
	});
	try {
		const c = await preauth(trusted);
		assert.match(await request(c, "set", register("one")), /type="result"/);
		assert.match(await request(c, "set", register("two")), /type="result"/, "not throttled");
		c.end();
	} finally {
		await trusted.stop();
	}
});

test("a new account in quarantine writes only to contacts and creates no room until approved", async () => {
	const t = await server(
		{ min_seconds_between_registrations_per_ip: 0 },
		{ quarantine_seconds: 3600 },
	);
	try {
		const pre = await preauth(t);
		assert.match(await request(pre, "set", register("newbie")), /type="result"/);
		pre.end();
		await befriend(t.server, "newbie@localhost", "carol@localhost");
		const newbie = await online(t, "newbie");
		const bob = await online(t, "bob");
		assert.equal(await sendMessage(newbie, "bob@localhost", "q1"), "policy-violation");
		assert.equal(await sendMessage(newbie, "carol@localhost", "q2"), undefined, "a contact");
		const refused = await join(newbie, `spamroom@${MUC}/n`);
		assert.match(refused, /type="error"/);
		assert.equal(condition(refused), "forbidden");
		// Approved: both work.
		assert.deepEqual(await accountApprove.run(ctx(t), { jid: "newbie@localhost" }), {
			jid: "newbie@localhost",
			quarantined: false,
		});
		const m = bob.received.length;
		assert.equal(await sendMessage(newbie, "bob@localhost", "q3"), undefined);
		await bob.waitFor(/<message[^>]*id="q3"/, m);
		assert.doesNotMatch(await join(newbie, `goodroom@${MUC}/n`), /type="error"/);
		// Accounts created otherwise (by an admin) are never quarantined.
		assert.equal(await sendMessage(bob, "newbie@localhost", "q4"), undefined);
		for (const c of [newbie, bob]) c.end();
	} finally {
		await t.stop();
	}
});

test("account.disable ends the sessions and refuses logins (RFC 6120 §6.5.1); account.enable undoes it", async () => {
	const t = await server({});
	try {
		const bob = await online(t, "bob");
		const m = bob.received.length;
		const r = await accountDisable.run(ctx(t), { jid: "bob@localhost" });
		assert.deepEqual(r, { jid: "bob@localhost", disabled: true, sessionsClosed: 1 });
		await bob.waitFor(/<policy-violation/, m);
		await assert.rejects(login(t.port, "bob", "pw-bob"), /account-disabled/);
		await accountEnable.run(ctx(t), { jid: "bob@localhost" });
		(await login(t.port, "bob", "pw-bob")).end();
		await assert.rejects(accountDisable.run(ctx(t), { jid: "ghost@localhost" }), {
			code: "not_found",
		});
	} finally {
		await t.stop();
	}
});
