/**
 * In-band registration (XEP-0077) over raw sockets: not offered unless enabled; when enabled,
 * register before authentication, log in, change the password, remove the account; per-IP
 * rate limit; and the welcome message / message of the day that go with new accounts.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { RawClient } from "../helpers/raw.ts";
import { request } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

const plainAuth = { require_encryption: false, allow_plain_without_tls: true };

function withRegister(options: Record<string, unknown>, extra: Record<string, unknown> = {}) {
	return startTestServer({
		config: {
			auth: plainAuth,
			hosts: {
				localhost: {
					modules: ["disco", "ping", "presence", "roster", "register", "motd"],
					// Open registration unless a test says otherwise (the default is invitations only).
					module_options: { register: { invite_only: false, ...options }, ...extra },
				},
			},
		},
	});
}

/** A fresh unauthenticated stream; resolves once the features are in. */
async function preauth(t: TestServer): Promise<{ c: RawClient; features: string }> {
	const c = await RawClient.connect(t.port);
	c.open();
	const features = await c.waitFor("</stream:features>");
	return { c, features };
}

const condition = (reply: string) =>
	/<([a-z-]+) xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/.exec(reply)?.[1];
const register = (user: string, password: string) =>
	`<query xmlns='jabber:iq:register'><username>${user}</username><password>${password}</password></query>`;

test("the default module list (account, no register): a logged-in user changes its password and cancels its account (XEP-0077 §3.3, §3.2)", async () => {
	const t = await startTestServer({
		config: { auth: plainAuth },
		users: [["dora@localhost", "old-pw"]],
	});
	try {
		const dora = await login(t.port, "dora", "old-pw");
		const reg = await request(dora, "get", "<query xmlns='jabber:iq:register'/>", "localhost");
		assert.match(reg, /<registered\/>/, "§3.1: an authenticated entity is registered");
		const other = await request(dora, "set", register("someoneelse", "x"), "localhost");
		assert.equal(condition(other), "forbidden", "only one's own password");
		const changed = await request(dora, "set", register("dora", "new-pw"), "localhost");
		assert.match(changed, /type="result"/, `§3.3: ${changed}`);
		dora.end();
		await assert.rejects(login(t.port, "dora", "old-pw"), /authentication failed/);
		const again = await login(t.port, "dora", "new-pw");
		const removed = await request(
			again,
			"set",
			"<query xmlns='jabber:iq:register'><remove/></query>",
		);
		assert.match(removed, /type="result"/, "§3.2");
		await again.waitClosed();
		assert.equal(await t.server.hosts.get("localhost")?.accounts.exists("dora"), false);
	} finally {
		await t.stop();
	}
});

test("account.allow_password_change = false: a password change is not-allowed (XEP-0077 §3.3)", async () => {
	const t = await startTestServer({
		config: {
			auth: plainAuth,
			hosts: { localhost: { module_options: { account: { allow_password_change: false } } } },
		},
		users: [["ed@localhost", "pw"]],
	});
	try {
		const ed = await login(t.port, "ed", "pw");
		const refused = await request(ed, "set", register("ed", "other"), "localhost");
		assert.equal(condition(refused), "not-allowed");
		ed.end();
		(await login(t.port, "ed", "pw")).end();
	} finally {
		await t.stop();
	}
});

test("XEP-0077 disabled by default: not advertised (users.md 26), the IQ ends the stream", async () => {
	const t = await startTestServer({
		config: { auth: plainAuth },
		users: [["alice@localhost", "pw"]],
	});
	try {
		const { c, features } = await preauth(t);
		assert.doesNotMatch(features, /iq-register/, "XEP-0077 §8: no stream feature");
		c.send(`<iq type='get' id='g1'><query xmlns='jabber:iq:register'/></iq>`);
		await c.waitClosed();
		assert.match(
			c.received,
			/<not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-streams"/,
			"RFC 6120 §6.4.1",
		);
		const alice = await login(t.port, "alice", "pw");
		const info = await request(
			alice,
			"get",
			"<query xmlns='http://jabber.org/protocol/disco#info'/>",
			"localhost",
		);
		// Listed for what a logged-in account can do (the `account` module): change its password.
		assert.match(info, /jabber:iq:register/, "disco#info: §3.3 and §3.2 for logged-in users");
		alice.end();
	} finally {
		await t.stop();
	}
});

test("XEP-0077 §10: without TLS (and plain not allowed) registration is not offered", async () => {
	const t = await startTestServer({
		config: {
			auth: { require_encryption: false },
			hosts: { localhost: { modules: ["disco", "register"] } },
		},
	});
	try {
		const { c, features } = await preauth(t);
		assert.doesNotMatch(features, /iq-register/);
		c.send(`<iq type='set' id='s1'>${register("eve", "pw")}</iq>`);
		await c.waitClosed();
		assert.equal(await t.server.hosts.get("localhost")?.accounts.exists("eve"), false);
	} finally {
		await t.stop();
	}
});

test("issue 19: with the register module and no options, registration needs an invitation (XEP-0077 §3.1.1 not-allowed, XEP-0445 opens it)", async () => {
	const t = await startTestServer({
		config: {
			auth: plainAuth,
			hosts: { localhost: { modules: ["disco", "ping", "presence", "roster", "register"] } },
		},
	});
	try {
		const { c, features } = await preauth(t);
		assert.match(features, /iq-register/, "offered: a newcomer with a token uses it");
		const refused = await request(c, "set", register("newbie", "pw-newbie"));
		assert.equal(condition(refused), "not-allowed", refused);
		assert.match(refused, /needs an invitation/);
		assert.equal(await t.server.hosts.get("localhost")?.accounts.exists("newbie"), false);
		c.end();
	} finally {
		await t.stop();
	}
});

test("XEP-0077 §3.1, §3.3, §3.2: register, log in, change password, remove", async () => {
	const t = await withRegister({ min_seconds_between_registrations_per_ip: 0 });
	try {
		const { c, features } = await preauth(t);
		assert.match(features, /<register xmlns="http:\/\/jabber.org\/features\/iq-register"\/>/, "§8");
		const fields = await request(c, "get", "<query xmlns='jabber:iq:register'/>");
		assert.match(fields, /type="result"/);
		assert.match(fields, /<username\/>/, "§3.1: the fields to fill in");
		assert.match(fields, /<password\/>/);
		const missing = await request(
			c,
			"set",
			"<query xmlns='jabber:iq:register'><username>newbie</username><password/></query>",
		);
		assert.equal(
			condition(missing),
			"not-acceptable",
			"§3.1: an empty password is missing information",
		);
		assert.doesNotMatch(missing, /<query/, "§3.3: the request is not echoed");
		const ok = await request(c, "set", register("newbie", "first-pw"));
		assert.match(ok, /type="result"/, `§3.1 registered: ${ok}`);
		const again = await request(c, "set", register("newbie", "other-pw"));
		assert.equal(condition(again), "conflict", "§3.1: username taken");
		c.end();

		const user = await login(t.port, "newbie", "first-pw", { mechanism: "SCRAM-SHA-1" });
		const reg = await request(user, "get", "<query xmlns='jabber:iq:register'/>", "localhost");
		assert.match(reg, /<registered\/>/, "§3.1: an authenticated entity is registered");
		assert.match(reg, /<username>newbie<\/username>/);
		const other = await request(user, "set", register("someoneelse", "x"), "localhost");
		assert.equal(condition(other), "forbidden");
		const empty = await request(
			user,
			"set",
			"<query xmlns='jabber:iq:register'><username>newbie</username><password/></query>",
			"localhost",
		);
		assert.equal(condition(empty), "bad-request", "§3.3: never an empty password");
		const changed = await request(user, "set", register("newbie", "second-pw"), "localhost");
		assert.match(changed, /type="result"/, `§3.3: ${changed}`);
		user.end();
		await assert.rejects(login(t.port, "newbie", "first-pw"), /authentication failed/);

		const again2 = await login(t.port, "newbie", "second-pw", { mechanism: "SCRAM-SHA-256" });
		const second = await login(t.port, "newbie", "second-pw", { resource: "other" });
		const bad = await request(
			again2,
			"set",
			"<query xmlns='jabber:iq:register'><remove/><username>x</username></query>",
		);
		assert.equal(condition(bad), "bad-request", "§3.2: <remove/> must be alone");
		const removed = await request(
			again2,
			"set",
			"<query xmlns='jabber:iq:register'><remove/></query>",
		);
		assert.match(removed, /type="result"/, "§3.2");
		// §3.2: every session of the account ends with a not-authorized stream error.
		for (const s of [again2, second]) {
			await s.waitClosed();
			assert.match(s.received, /<not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-streams"/);
		}
		assert.equal(await t.server.hosts.get("localhost")?.accounts.exists("newbie"), false);
		await assert.rejects(login(t.port, "newbie", "second-pw"), /authentication failed/);
	} finally {
		await t.stop();
	}
});

test("XEP-0077 §3.1.1: a second registration from one IP within the window is refused", async () => {
	const t = await withRegister({ min_seconds_between_registrations_per_ip: 300 });
	try {
		const { c } = await preauth(t);
		assert.match(await request(c, "set", register("first", "pw")), /type="result"/);
		const second = await request(c, "set", register("second", "pw"));
		assert.equal(condition(second), "policy-violation");
		assert.match(second, /type="wait"/, "RFC 6120 §8.3.2: try again later");
		assert.equal(await t.server.hosts.get("localhost")?.accounts.exists("second"), false);
		c.end();
	} finally {
		await t.stop();
	}
});

test("XEP-0077 §3.1.1: registrations sent at once on parallel connections from one IP make one account, not one each", async () => {
	const t = await withRegister({ min_seconds_between_registrations_per_ip: 300 });
	try {
		const streams = await Promise.all(Array.from({ length: 6 }, () => preauth(t)));
		const replies = await Promise.all(
			streams.map(({ c }, i) => request(c, "set", register(`burst${i}`, "pw"))),
		);
		const created = replies.filter((r) => /type="result"/.test(r));
		assert.equal(created.length, 1, replies.join("\n"));
		assert.ok(
			replies.filter((r) => r !== created[0]).every((r) => condition(r) === "policy-violation"),
		);
		const accounts = t.server.hosts.get("localhost")?.accounts;
		let existing = 0;
		for (let i = 0; i < 6; i++) if (await accounts?.exists(`burst${i}`)) existing++;
		assert.equal(existing, 1);
		for (const { c } of streams) c.end();
	} finally {
		await t.stop();
	}
});

test("XEP-0077 §3.1.1: a registration that fails (the name is taken) does not use up the address's turn", async () => {
	const t = await withRegister({ min_seconds_between_registrations_per_ip: 300 });
	try {
		await t.server.hosts.get("localhost")?.accounts.create("taken", "pw");
		const { c } = await preauth(t);
		assert.equal(condition(await request(c, "set", register("taken", "pw"))), "conflict");
		assert.match(await request(c, "set", register("fresh", "pw")), /type="result"/);
		c.end();
	} finally {
		await t.stop();
	}
});

test("welcome once to a new account, message of the day once per change", async () => {
	const t = await withRegister(
		{ min_seconds_between_registrations_per_ip: 0 },
		{ motd: { welcome: "Welcome aboard!", motd: "Maintenance Sunday." } },
	);
	const host = t.server.hosts.get("localhost");
	assert.ok(host);
	try {
		const { c } = await preauth(t);
		assert.match(await request(c, "set", register("fresh", "pw")), /type="result"/);
		c.end();
		const goOnline = async () => {
			const s = await login(t.port, "fresh", "pw");
			const mark = s.received.length;
			s.send("<presence/>");
			await s.waitFor('<presence from="fresh@localhost', mark);
			// A ping round trip: anything the server sent for the presence is in by now.
			await request(s, "get", "<ping xmlns='urn:xmpp:ping'/>", "localhost");
			const text = s.received.slice(mark);
			s.end();
			return text;
		};
		const first = await goOnline();
		assert.match(first, /<message from="localhost"[^>]*><body>Welcome aboard!<\/body><\/message>/);
		assert.match(first, /<body>Maintenance Sunday.<\/body>/);
		const secondLogin = await goOnline();
		assert.doesNotMatch(secondLogin, /<message/, "each is sent once");
		// A new message of the day is sent again, once.
		(host.config.module_options.motd as Record<string, unknown>).motd = "New policy.";
		await host.modules.unload("motd");
		await host.modules.load("motd");
		const third = await goOnline();
		assert.match(third, /<body>New policy.<\/body>/);
		assert.doesNotMatch(third, /Welcome aboard/);
	} finally {
		await t.stop();
	}
});
