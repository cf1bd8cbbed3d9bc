/**
 * Invitations end to end over raw sockets: an admin creates one with XEP-0401's ad-hoc command,
 * a newcomer registers with its token (XEP-0445) on a host whose registration is otherwise
 * closed, and is subscribed both ways with the inviter; a one-time token works once, an expired
 * or revoked one never; a multi-use one as often as it says; the landing page renders.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Invite, InviteStore } from "../../src/auth/invites.ts";
import { RawClient } from "../helpers/raw.ts";
import { iq, online } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

const NS = "http://jabber.org/protocol/commands";
const BASE = "https://chat.example.org:5281";

const fieldValue = (reply: string, v: string) =>
	new RegExp(`<field var="${v}"[^>]*><value>([^<]*)</value>`).exec(reply)?.[1];
const condition = (reply: string) =>
	/<([a-z-]+) xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/.exec(reply)?.[1];
const tokenOf = (uri: string) => /preauth=([^;&]+)/.exec(uri)?.[1] as string;

describe("XEP-0401 invitations and XEP-0445 pre-authenticated registration", () => {
	let t: TestServer;
	let admin: RawClient;
	let bob: RawClient;
	before(async () => {
		t = await startTestServer({
			config: {
				auth: { require_encryption: false, allow_plain_without_tls: true },
				invites: { base_url: BASE },
				hosts: {
					localhost: {
						modules: ["disco", "ping", "adhoc", "presence", "roster", "register"],
						module_options: {
							register: { invite_only: true, min_seconds_between_registrations_per_ip: 0 },
						},
					},
				},
			},
			users: [
				["admin@localhost", "pw-admin"],
				["bob@localhost", "pw-bob"],
			],
		});
		await t.server.hosts.get("localhost")?.accounts.setRole("admin", "admin");
		admin = await online(t.port, "admin", "a");
		bob = await online(t.port, "bob", "b");
	});
	after(async () => {
		admin?.close();
		bob?.close();
		await t?.stop();
	});

	let n = 0;
	/** Runs an ad-hoc command in two steps (form, then submit) and returns the final answer. */
	async function adhoc(
		c: RawClient,
		node: string,
		fields: Record<string, string>,
	): Promise<string> {
		const id = `c${n++}`;
		const first = await iq(
			c,
			id,
			`<iq type='set' to='localhost' id='${id}'><command xmlns='${NS}' node='${node}' action='execute'/></iq>`,
		);
		const sessionid = /sessionid="([^"]+)"/.exec(first)?.[1];
		if (/status="completed"/.test(first)) return first;
		const x = Object.entries(fields)
			.map(([k, v]) => `<field var='${k}'><value>${v}</value></field>`)
			.join("");
		return iq(
			c,
			`${id}b`,
			`<iq type='set' to='localhost' id='${id}b'><command xmlns='${NS}' node='${node}' action='complete' sessionid='${sessionid}'><x xmlns='jabber:x:data' type='submit'>${x}</x></command></iq>`,
		);
	}

	/** A fresh unauthenticated stream, with its features. */
	async function newcomer(): Promise<{ c: RawClient; features: string }> {
		const c = await RawClient.connect(t.port);
		c.open();
		const features = await c.waitFor("</stream:features>");
		return { c, features };
	}
	async function pars(c: RawClient, token: string): Promise<string> {
		const id = `pa${n++}`;
		return iq(
			c,
			id,
			`<iq type='set' id='${id}'><preauth xmlns='urn:xmpp:pars:0' token='${token}'/></iq>`,
		);
	}
	async function register(c: RawClient, user: string, password: string): Promise<string> {
		const id = `r${n++}`;
		return iq(
			c,
			id,
			`<iq type='set' id='${id}'><query xmlns='jabber:iq:register'><username>${user}</username><password>${password}</password></query></iq>`,
		);
	}

	test("invite-only: no registration without a token (XEP-0077 §3.1.1 not-allowed); tokens advertised (XEP-0445 §4)", async () => {
		const { c, features } = await newcomer();
		assert.match(features, /<register xmlns="urn:xmpp:ibr-token:0"\/>/);
		assert.match(features, /<register xmlns="http:\/\/jabber.org\/features\/iq-register"\/>/);
		assert.equal(condition(await register(c, "eve", "pw")), "not-allowed");
		// XEP-0445 §3: an unknown token is item-not-found.
		assert.equal(condition(await pars(c, "made-up")), "item-not-found");
		assert.equal(condition(await register(c, "eve", "pw")), "not-allowed");
		c.close();
	});

	test("an admin's XEP-0401 create-account invitation registers once, with the roster subscription both ways", async () => {
		const done = await adhoc(admin, "urn:xmpp:invite#create-account", {
			"roster-subscription": "1",
		});
		assert.match(done, /status="completed"/);
		const uri = fieldValue(done, "uri") as string;
		assert.match(uri, /^xmpp:localhost\?register;preauth=[A-Za-z0-9_-]+$/);
		const token = tokenOf(uri);
		assert.equal(fieldValue(done, "landing-url"), `${BASE}/invite/${token}`);
		assert.match(fieldValue(done, "expire") ?? "", /^\d{4}-\d\d-\d\dT/);

		const { c } = await newcomer();
		assert.match(await pars(c, token), /type="result"/);
		assert.match(await register(c, "carol", "pw-carol"), /type="result"/);
		c.close();
		// The account works, and carol and admin are subscribed to each other (XEP-0401 §5).
		const carol = await login(t.port, "carol", "pw-carol", { resource: "r" });
		const roster = await iq(
			carol,
			"ro",
			`<iq type='get' id='ro'><query xmlns='jabber:iq:roster'/></iq>`,
		);
		assert.match(roster, /<item jid="admin@localhost" subscription="both"/);
		carol.close();
		const stored = (await t.server.hosts.get("localhost")?.keyval("roster").get("admin")) as {
			items: Record<string, { subscription: string }>;
		};
		assert.equal(stored.items["carol@localhost"]?.subscription, "both");

		// A second use of a one-time token fails, at preauth and at registration.
		const again = await newcomer();
		assert.equal(condition(await pars(again.c, token)), "item-not-found");
		assert.equal(condition(await register(again.c, "carol2", "pw")), "not-allowed");
		again.c.close();
	});

	test("a token used up between preauth and registration is refused at registration", async () => {
		const done = await adhoc(admin, "urn:xmpp:invite#create-account", {});
		const token = tokenOf(fieldValue(done, "uri") as string);
		const a = await newcomer();
		const b = await newcomer();
		assert.match(await pars(a.c, token), /type="result"/);
		assert.match(await pars(b.c, token), /type="result"/);
		assert.match(await register(a.c, "dan", "pw-dan"), /type="result"/);
		assert.equal(condition(await register(b.c, "dan2", "pw")), "not-allowed");
		a.c.close();
		b.c.close();
	});

	test("an expired invitation is refused; a multi-use one works as often as it says", async () => {
		const host = t.server.hosts.get("localhost");
		assert.ok(host);
		const expired = tokenOf(
			fieldValue(await adhoc(admin, "urn:xmpp:invite#create-account", {}), "uri") as string,
		);
		// Expire it in storage rather than wait: no timed assertions.
		const store = host.keyval<Invite>("invites");
		const inv = (await store.get(expired)) as Invite;
		await store.set(expired, { ...inv, expires: Date.now() - 1000 });
		const { c } = await newcomer();
		assert.equal(condition(await pars(c, expired)), "item-not-found");
		c.close();

		const multi = tokenOf(
			fieldValue(
				await adhoc(admin, "urn:xmpp:invite#create-account", { uses: "2" }),
				"uri",
			) as string,
		);
		for (const user of ["m1", "m2"]) {
			const s = await newcomer();
			assert.match(await pars(s.c, multi), /type="result"/);
			assert.match(await register(s.c, user, "pw"), /type="result"/, user);
			s.c.close();
		}
		const third = await newcomer();
		assert.equal(condition(await pars(third.c, multi)), "item-not-found");
		third.c.close();
	});

	test("a reserved username registers that name only (XEP-0445 §2.1)", async () => {
		const done = await adhoc(admin, "urn:xmpp:invite#create-account", { username: "frank" });
		const uri = fieldValue(done, "uri") as string;
		assert.match(uri, /^xmpp:frank@localhost\?register;preauth=/);
		const { c } = await newcomer();
		assert.match(await pars(c, tokenOf(uri)), /type="result"/);
		assert.equal(condition(await register(c, "notfrank", "pw")), "not-allowed");
		assert.match(await register(c, "frank", "pw"), /type="result"/);
		c.close();
	});

	test("a user's contact invitation (urn:xmpp:invite#invite) does not open registration by default", async () => {
		const done = await adhoc(bob, "urn:xmpp:invite#invite", {});
		assert.match(done, /status="completed"/);
		const uri = fieldValue(done, "uri") as string;
		assert.match(uri, /^xmpp:bob@localhost\?roster;preauth=[A-Za-z0-9_-]+$/, "no ;ibr=y");
		const { c } = await newcomer();
		assert.equal(condition(await pars(c, tokenOf(uri))), "item-not-found");
		c.close();
		// And a user cannot run the admin's command.
		const refused = await iq(
			bob,
			"cf",
			`<iq type='set' to='localhost' id='cf'><command xmlns='${NS}' node='urn:xmpp:invite#create-account' action='execute'/></iq>`,
		);
		assert.equal(condition(refused), "forbidden");
	});

	test("XEP-0379: an existing account's subscription with the token is approved and answered with one back, once", async () => {
		const host = t.server.hosts.get("localhost");
		assert.ok(host);
		await host.accounts.create("dave", "pw-dave");
		await host.accounts.create("erin", "pw-erin");
		const done = await adhoc(bob, "urn:xmpp:invite#invite", {});
		const token = tokenOf(fieldValue(done, "uri") as string);
		const dave = await online(t.port, "dave", "d");
		const mark = dave.received.length;
		dave.send(
			`<presence type='subscribe' to='bob@localhost'><preauth xmlns='urn:xmpp:pars:0' token='${token}'/></presence>`,
		);
		await dave.waitFor(/<presence(?=[^>]*from="bob@localhost")[^>]*type="subscribed"/, mark);
		await dave.waitFor(/<presence(?=[^>]*from="bob@localhost")[^>]*type="subscribe"/, mark);
		const stored = (await host.keyval("roster").get("bob")) as {
			items: Record<string, { subscription: string; ask?: boolean }>;
		};
		assert.equal(stored.items["dave@localhost"]?.subscription, "from");
		assert.equal(stored.items["dave@localhost"]?.ask, true);
		dave.close();
		// Used once: the next request with it waits for bob as any other (RFC 6121 §3.1.3).
		const erin = await online(t.port, "erin", "e");
		const bobMark = bob.received.length;
		erin.send(
			`<presence type='subscribe' to='bob@localhost'><preauth xmlns='urn:xmpp:pars:0' token='${token}'/></presence>`,
		);
		await bob.waitFor(/<presence(?=[^>]*from="erin@localhost")[^>]*type="subscribe"/, bobMark);
		const after = (await host.keyval("roster").get("bob")) as { items: Record<string, unknown> };
		assert.equal(after.items["erin@localhost"], undefined);
		erin.close();
	});

	test("list and revoke: a revoked invitation is refused", async () => {
		const token = tokenOf(
			fieldValue(await adhoc(admin, "urn:xmpp:invite#create-account", {}), "uri") as string,
		);
		const listed = await adhoc(admin, "urn:parley:admin:invite-list", {});
		assert.ok(listed.includes(token), "listed");
		const revoked = await adhoc(admin, "urn:parley:admin:invite-revoke", { token });
		assert.match(revoked, /status="completed"/);
		const { c } = await newcomer();
		assert.equal(condition(await pars(c, token)), "item-not-found");
		c.close();
		const missing = await adhoc(admin, "urn:parley:admin:invite-revoke", { token });
		assert.equal(condition(missing), "item-not-found");
	});

	test("the landing page: the app list and the xmpp: URI, no script, nothing from elsewhere", async () => {
		const done = await adhoc(admin, "urn:xmpp:invite#create-account", {
			"roster-subscription": "1",
		});
		const uri = fieldValue(done, "uri") as string;
		const token = tokenOf(uri);
		const res = await fetch(`http://127.0.0.1:${t.httpPort}/invite/${token}`);
		assert.equal(res.status, 200);
		assert.match(res.headers.get("content-type") ?? "", /^text\/html/);
		assert.match(res.headers.get("content-security-policy") ?? "", /default-src 'none'/);
		assert.equal(res.headers.get("referrer-policy"), "no-referrer");
		const html = await res.text();
		assert.ok(html.includes(`href="${uri}"`), "the xmpp: URI as a link");
		assert.match(html, /admin@localhost invites you to chat/);
		assert.match(html, /Conversations/);
		assert.doesNotMatch(html, /<script|<link|src=/i, "no script, no external resource");
		assert.equal((await fetch(`http://127.0.0.1:${t.httpPort}/invite/nope`)).status, 404);
		await adhoc(admin, "urn:parley:admin:invite-revoke", { token });
		assert.equal((await fetch(`http://127.0.0.1:${t.httpPort}/invite/${token}`)).status, 404);
	});
});

test("invites.allow_user_invites: a user's contact invitation registers the newcomer as the user's contact", async () => {
	const t = await startTestServer({
		config: {
			auth: { require_encryption: false, allow_plain_without_tls: true },
			invites: { allow_user_invites: true },
			hosts: {
				localhost: {
					modules: ["disco", "ping", "adhoc", "presence", "roster", "register"],
					module_options: { register: { invite_only: true } },
				},
			},
		},
		users: [["bob@localhost", "pw-bob"]],
	});
	try {
		const bob = await online(t.port, "bob", "b");
		// RFC 6121 §2.1.6: an interested resource, which gets roster pushes.
		await iq(bob, "rg0", `<iq type='get' id='rg0'><query xmlns='jabber:iq:roster'/></iq>`);
		const done = await iq(
			bob,
			"ci",
			`<iq type='set' to='localhost' id='ci'><command xmlns='${NS}' node='urn:xmpp:invite#invite' action='execute'/></iq>`,
		);
		const uri = fieldValue(done, "uri") as string;
		// XEP-0401 §4: ibr=y says the token also creates an account.
		assert.match(uri, /^xmpp:bob@localhost\?roster;preauth=[A-Za-z0-9_-]+;ibr=y$/);
		const c = await RawClient.connect(t.port);
		c.open();
		await c.waitFor("</stream:features>");
		const pa = await iq(
			c,
			"pa",
			`<iq type='set' id='pa'><preauth xmlns='urn:xmpp:pars:0' token='${tokenOf(uri)}'/></iq>`,
		);
		assert.match(pa, /type="result"/);
		const mark = bob.received.length;
		const reg = await iq(
			c,
			"rg",
			`<iq type='set' id='rg'><query xmlns='jabber:iq:register'><username>nina</username><password>pw-nina</password></query></iq>`,
		);
		assert.match(reg, /type="result"/);
		c.close();
		// RFC 6121 §2.1.6: bob's interested resource gets the push of his new contact.
		await bob.waitFor(/<item jid="nina@localhost" subscription="both"/, mark);
		bob.close();
	} finally {
		await t.stop();
	}
});

test("the landing page of a host without in-band registration does not promise an account", async () => {
	const t = await startTestServer({ config: { invites: { base_url: BASE } } });
	try {
		const host = t.server.hosts.get("localhost");
		assert.ok(host);
		const invite = await new InviteStore(host.keyval<Invite>("invites")).create({
			type: "account",
			creator: "cli",
			ttl: 3600,
		});
		const res = await fetch(`http://127.0.0.1:${t.httpPort}/invite/${invite.token}`);
		assert.equal(res.status, 200);
		const html = await res.text();
		assert.match(html, /does not take new accounts/);
		assert.doesNotMatch(html, /token <code>/);
	} finally {
		await t.stop();
	}
});
