/**
 * XEP-0050 ad-hoc commands over raw sockets, serving the admin command registry: discovery,
 * forms built from a command's arguments, execute / complete / cancel with a session id, the
 * admin role, CommandError as an IQ error with a note; XEP-0133's announce and
 * get-online-users-num.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { xml } from "@xmpp/client";
import { z } from "zod";
import { CommandError, defineCommand } from "../../src/core/commands.ts";
import type { RawClient } from "../helpers/raw.ts";
import { iq, online } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { connectAnonymous } from "../helpers/xmpp-client.ts";

const NS = "http://jabber.org/protocol/commands";
const ADMIN = "http://jabber.org/protocol/admin";

/** A command of the test's own: every field type, and a refusal with a CommandError. */
const probe = defineCommand({
	name: "test.probe",
	description: "Probe the form builder",
	args: z.object({
		host: z.string().optional(),
		accountjid: z.string().describe("The Jabber ID"),
		password: z.string().optional(),
		enabled: z.boolean().default(true),
		color: z.enum(["red", "green"]).default("green"),
		accountjids: z.array(z.string()).default([]),
	}),
	role: "admin",
	http: { method: "POST", path: "/test/probe" },
	adhoc: "urn:parley:test:probe",
	async run(ctx, args) {
		if (args.accountjid === "taken@localhost") throw new CommandError("conflict", "already there");
		return {
			host: ctx.host,
			accountjid: args.accountjid,
			enabled: args.enabled,
			color: args.color,
			accountjids: args.accountjids,
		};
	},
});

/** A command every account may run (role user). */
const whoami = defineCommand({
	name: "test.whoami",
	description: "Who am I",
	args: z.object({}),
	role: "user",
	http: { method: "GET", path: "/test/whoami" },
	adhoc: "urn:parley:test:whoami",
	async run(ctx) {
		return { actor: ctx.actor };
	},
});

const cmd = (node: string, attrs: string, body = "") =>
	`<command xmlns='${NS}' node='${node}' ${attrs}>${body}</command>`;
const submit = (fields: Record<string, string | string[]>, formType = ADMIN) =>
	`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>${formType}</value></field>${Object.entries(
		fields,
	)
		.map(
			([k, v]) =>
				`<field var='${k}'>${(typeof v === "string" ? [v] : v).map((s) => `<value>${s}</value>`).join("")}</field>`,
		)
		.join("")}</x>`;
const set = (c: RawClient, id: string, payload: string) =>
	iq(c, id, `<iq type='set' to='localhost' id='${id}'>${payload}</iq>`);
const sessionOf = (reply: string) => /sessionid="([^"]+)"/.exec(reply)?.[1] as string;

describe("XEP-0050 ad-hoc commands", () => {
	let t: TestServer;
	let admin: RawClient;
	let user: RawClient;
	before(async () => {
		t = await startTestServer({
			config: { auth: { require_encryption: false, allow_plain_without_tls: true } },
			users: [
				["admin@localhost", "pw-admin"],
				["bob@localhost", "pw-bob"],
			],
			commands: [probe, whoami],
		});
		await t.server.hosts.get("localhost")?.accounts.setRole("admin", "admin");
		admin = await online(t.port, "admin", "a");
		user = await online(t.port, "bob", "b");
	});
	after(async () => {
		admin?.close();
		user?.close();
		await t?.stop();
	});

	test("§3.1, §3.2: the feature; the list shows admin commands to admins only", async () => {
		const info = await iq(
			admin,
			"i1",
			`<iq type='get' to='localhost' id='i1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`,
		);
		assert.match(info, new RegExp(`<feature var="${NS}"/>`));
		const items = (c: RawClient, id: string) =>
			iq(
				c,
				id,
				`<iq type='get' to='localhost' id='${id}'><query xmlns='http://jabber.org/protocol/disco#items' node='${NS}'/></iq>`,
			);
		const a = await items(admin, "l1");
		for (const node of [
			`${ADMIN}#announce`,
			`${ADMIN}#get-online-users-num`,
			"urn:parley:test:probe",
		])
			assert.match(a, new RegExp(`<item jid="localhost" node="${node}"`), node);
		const b = await items(user, "l2");
		assert.doesNotMatch(b, /admin#announce/, "not listed to a non-admin");
		assert.match(b, /node="urn:parley:test:whoami"/, "a user command is listed to every account");
	});

	test("§3.3: a command node's disco#info; forbidden to a non-admin", async () => {
		const q = (c: RawClient, id: string) =>
			iq(
				c,
				id,
				`<iq type='get' to='localhost' id='${id}'><query xmlns='http://jabber.org/protocol/disco#info' node='${ADMIN}#announce'/></iq>`,
			);
		const a = await q(admin, "n1");
		assert.match(a, /<identity category="automation" type="command-node"/);
		assert.match(a, new RegExp(`<feature var="${NS}"/>`));
		assert.match(await q(user, "n2"), /type="error"[\s\S]*<forbidden /);
	});

	test("XEP-0133 §4.15: get-online-users-num runs at once and counts users", async () => {
		const r = await set(admin, "c1", cmd(`${ADMIN}#get-online-users-num`, "action='execute'"));
		assert.match(r, /status="completed"/);
		assert.match(r, /<field var="onlineusersnum" type="text-single"[^>]*><value>2<\/value>/);
	});

	test("XEP-0133 §4.23: announce asks a form, then every online session gets the message", async () => {
		const first = await set(admin, "a1", cmd(`${ADMIN}#announce`, "action='execute'"));
		assert.match(first, /status="executing"/);
		assert.match(first, /<actions execute="complete"><complete\/><\/actions>/, "§3.4 one stage");
		assert.match(first, /<field var="announcement" type="text-multi"/);
		assert.match(first, /<field var="subject" type="text-single"/);
		assert.doesNotMatch(first, /var="host"/, "the host is the one the command was sent to");
		const mark = user.received.length;
		const done = await set(
			admin,
			"a2",
			cmd(
				`${ADMIN}#announce`,
				`action='complete' sessionid='${sessionOf(first)}'`,
				submit({ subject: "Maintenance", announcement: ["Down at noon", "for an hour"] }),
			),
		);
		assert.match(done, /status="completed"/);
		const msg = await user.waitFor(/<message[^>]*from="localhost"[\s\S]*?<\/message>/, mark);
		assert.match(msg, /<subject>Maintenance<\/subject>/);
		assert.match(msg, /<body>Down at noon\nfor an hour<\/body>/, "XEP-0004 §3.3 text-multi lines");
	});

	test("§6: a non-admin executing an admin command is forbidden", async () => {
		const r = await set(user, "f1", cmd(`${ADMIN}#announce`, "action='execute'"));
		assert.match(r, /type="error"[\s\S]*<forbidden /);
	});

	test("XEP-0004 fields from the zod arguments; the result as a form", async () => {
		const first = await set(admin, "p1", cmd("urn:parley:test:probe", "action='execute'"));
		assert.match(
			first,
			/<field var="FORM_TYPE" type="hidden"><value>urn:parley:test:probe<\/value>/,
		);
		assert.match(
			first,
			/<field var="accountjid" type="jid-single" label="The Jabber ID"><required\/>/,
		);
		assert.match(first, /<field var="password" type="text-private"/);
		assert.match(first, /<field var="enabled" type="boolean"[^>]*><value>1<\/value>/);
		assert.match(
			first,
			/<field var="color" type="list-single"[^>]*><option label="red"><value>red<\/value><\/option><option label="green"><value>green<\/value><\/option><value>green<\/value>/,
		);
		assert.match(first, /<field var="accountjids" type="jid-multi"/);
		const done = await set(
			admin,
			"p2",
			cmd(
				"urn:parley:test:probe",
				`action='complete' sessionid='${sessionOf(first)}'`,
				submit(
					{
						accountjid: "x@localhost",
						enabled: "false",
						color: "red",
						accountjids: ["a@localhost", "b@localhost"],
					},
					"urn:parley:test:probe",
				),
			),
		);
		assert.match(done, /status="completed"/);
		assert.match(done, /<x xmlns="jabber:x:data" type="result">/);
		assert.match(done, /<field var="host" type="text-single"[^>]*><value>localhost<\/value>/);
		assert.match(done, /<field var="enabled" type="boolean"[^>]*><value>0<\/value>/);
		assert.match(
			done,
			/<field var="accountjids" type="jid-multi"[^>]*><value>a@localhost<\/value><value>b@localhost<\/value>/,
		);
	});

	test("§6: a CommandError is the mapped condition with a note; a bad form is bad-payload", async () => {
		const first = await set(admin, "e1", cmd("urn:parley:test:probe", "action='execute'"));
		const err = await set(
			admin,
			"e2",
			cmd(
				"urn:parley:test:probe",
				`action='complete' sessionid='${sessionOf(first)}'`,
				submit({ accountjid: "taken@localhost" }, "urn:parley:test:probe"),
			),
		);
		assert.match(err, /type="error"/);
		assert.match(err, /<note type="error">already there<\/note>/);
		assert.match(err, /<conflict xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
		const again = await set(admin, "e3", cmd("urn:parley:test:probe", "action='execute'"));
		const bad = await set(
			admin,
			"e4",
			cmd(
				"urn:parley:test:probe",
				`action='complete' sessionid='${sessionOf(again)}'`,
				submit({ color: "blue" }, "urn:parley:test:probe"),
			),
		);
		assert.match(
			bad,
			/<bad-request [^>]*\/>[\s\S]*<bad-payload xmlns="http:\/\/jabber.org\/protocol\/commands"\/>/,
		);
	});

	test("§3.4.3 cancel ends the session; its id is then bad-sessionid; another's id too", async () => {
		const first = await set(admin, "s1", cmd(`${ADMIN}#announce`, "action='execute'"));
		const id = sessionOf(first);
		assert.match(
			await set(admin, "s2", cmd(`${ADMIN}#announce`, `action='cancel' sessionid='${id}'`)),
			/status="canceled"/,
		);
		const gone = await set(
			admin,
			"s3",
			cmd(
				`${ADMIN}#announce`,
				`action='complete' sessionid='${id}'`,
				submit({ announcement: "x" }),
			),
		);
		assert.match(gone, /<bad-sessionid xmlns="http:\/\/jabber.org\/protocol\/commands"\/>/);
		const other = await set(
			user,
			"s4",
			cmd("urn:parley:test:whoami", `action='complete' sessionid='${id}'`),
		);
		assert.match(other, /<bad-sessionid /);
	});

	test("a user command runs for any account, as that account", async () => {
		const r = await set(user, "w1", cmd("urn:parley:test:whoami", "action='execute'"));
		assert.match(r, /status="completed"/);
		assert.match(r, /<field var="actor" type="text-single"[^>]*><value>bob@localhost<\/value>/);
	});
});

test("a guest of an anonymous host sees and runs no command (XEP-0050 §3.2, §6 forbidden), with @xmpp/client", async () => {
	const t = await startTestServer({
		config: {
			auth: { require_encryption: false, allow_plain_without_tls: true },
			hosts: { localhost: {}, "guest.localhost": { authentication: "anonymous" } },
		},
	});
	try {
		const guest = await connectAnonymous(`xmpp://127.0.0.1:${t.port}`, {
			domain: "guest.localhost",
		});
		try {
			const items = await guest.xmpp.iqCaller.get(
				xml("query", { xmlns: "http://jabber.org/protocol/disco#items", node: NS }),
				"guest.localhost",
			);
			assert.equal(items.getChildren("item").length, 0);
			await assert.rejects(
				guest.xmpp.iqCaller.set(
					xml("command", { xmlns: NS, node: "urn:xmpp:invite#invite", action: "execute" }),
					"guest.localhost",
				),
				(err: { condition?: string }) => err.condition === "forbidden",
			);
		} finally {
			await guest.xmpp.stop();
		}
	} finally {
		await t.stop();
	}
});
