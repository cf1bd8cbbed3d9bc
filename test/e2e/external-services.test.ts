/**
 * External Service Discovery (XEP-0215) end to end: the STUN/TURN servers of the module's
 * options, asked for over a real socket, with TURN credentials checked against an HMAC computed
 * here independently (coturn's "TURN REST API": username "<expiry>:<user>", password
 * base64(HMAC-SHA1(secret, username))). Section numbers are XEP-0215 1.0's.
 */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, test } from "node:test";
import { client, type XmlElement, xml } from "@xmpp/client";
import type { Element } from "../../src/xml/element.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { StanzaReader } from "../helpers/stanza-reader.ts";
import { CLIENT_TIMEOUT_MS } from "../helpers/xmpp-client.ts";
import { login } from "../helpers/xmpp-raw-login.ts";
import { connectUser, errorOf, iq, type User } from "../helpers/xmpp-user.ts";

const NS = "urn:xmpp:extdisco:2";
const SECRET = "coturn static-auth-secret";
const TTL = 3600;

let t: TestServer;
let alice: User;
let eve: User;

before(async () => {
	t = await startTestServer({
		config: {
			auth: { require_encryption: false, allow_plain_without_tls: true },
			hosts: {
				localhost: {
					modules: ["disco", "external_services"],
					module_options: {
						external_services: {
							secret: SECRET,
							ttl: TTL,
							services: [
								{ type: "stun", host: "turn.example.org", port: 3478, transport: "udp" },
								{ type: "turn", host: "turn.example.org", port: 3478, transport: "udp" },
								{
									type: "turns",
									host: "turn.example.org",
									port: 5349,
									transport: "tcp",
									name: "TLS relay",
								},
							],
						},
					},
				},
				"elsewhere.test": { modules: ["disco"] },
			},
		} as never,
		users: [
			["alice@localhost", "alice-pw"],
			["eve@elsewhere.test", "eve-pw"],
		],
	});
	alice = await connectUser(t.port, "alice");
	const c = await login(t.port, "eve", "eve-pw", {
		host: "elsewhere.test",
		resource: "r",
		mechanism: "PLAIN",
	});
	eve = { c, r: new StanzaReader(c), jid: "eve@elsewhere.test/r", bare: "eve@elsewhere.test" };
});
after(async () => {
	alice?.c.end();
	eve?.c.end();
	await t?.stop();
});

/** Checks one service's TURN REST API credentials, independently of the server's code. */
function checkCredentials(s: Element, user: string, asked: number) {
	const username = s.attrs.username ?? "";
	const [expiry, who] = username.split(/:(.*)/s);
	assert.equal(who, user);
	const expires = Number(expiry);
	// Valid for the ttl from the moment of the request (give or take the round trip).
	assert.ok(
		expires >= Math.floor(asked / 1000) + TTL && expires <= Math.ceil(Date.now() / 1000) + TTL,
		username,
	);
	assert.equal(s.attrs.password, createHmac("sha1", SECRET).update(username).digest("base64"));
	// The `expires` attribute (XEP-0082) is the same instant.
	assert.equal(Date.parse(s.attrs.expires ?? ""), expires * 1000);
	assert.equal(s.attrs.restricted, "1");
}

test("§3.1: every service; TURN ones carry time-limited credentials, STUN none", async () => {
	const asked = Date.now();
	const r = await iq(alice, "get", "localhost", `<services xmlns='${NS}'/>`);
	assert.equal(r.attrs.type, "result", r.toString());
	const list = r.getChild("services", NS)?.getChildren("service") ?? [];
	assert.deepEqual(
		list.map((s) => [s.attrs.type, s.attrs.host, s.attrs.port, s.attrs.transport, s.attrs.name]),
		[
			["stun", "turn.example.org", "3478", "udp", undefined],
			["turn", "turn.example.org", "3478", "udp", undefined],
			["turns", "turn.example.org", "5349", "tcp", "TLS relay"],
		],
	);
	const [stun, turn, turns] = list as [Element, Element, Element];
	assert.equal(stun.attrs.username, undefined);
	assert.equal(stun.attrs.password, undefined);
	checkCredentials(turn, "alice@localhost", asked);
	checkCredentials(turns, "alice@localhost", asked);
});

test("§3.2: services of one type", async () => {
	const r = await iq(alice, "get", "localhost", `<services xmlns='${NS}' type='turn'/>`);
	const list = r.getChild("services", NS)?.getChildren("service") ?? [];
	assert.deepEqual(
		list.map((s) => s.attrs.type),
		["turn"],
	);
});

test("§3.3: credentials for one service; item-not-found for one that has none", async () => {
	const asked = Date.now();
	const r = await iq(
		alice,
		"get",
		"localhost",
		`<credentials xmlns='${NS}'><service host='turn.example.org' type='turns'/></credentials>`,
	);
	const s = r.getChild("credentials", NS)?.getChild("service");
	assert.ok(s, r.toString());
	assert.equal(s.attrs.port, "5349");
	checkCredentials(s, "alice@localhost", asked);
	const none = await iq(
		alice,
		"get",
		"localhost",
		`<credentials xmlns='${NS}'><service host='stun.elsewhere.org' type='turn'/></credentials>`,
	);
	assert.equal(errorOf(none).condition, "item-not-found");
});

test("the host's disco#info lists the feature", async () => {
	const r = await iq(
		alice,
		"get",
		"localhost",
		"<query xmlns='http://jabber.org/protocol/disco#info'/>",
	);
	assert.ok(
		r
			.getChild("query")
			?.getChildren("feature")
			.some((f) => f.attrs.var === NS),
	);
});

test("only the host's own users: a user of another host is forbidden", async () => {
	const r = await iq(eve, "get", "localhost", `<services xmlns='${NS}'/>`);
	assert.equal(errorOf(r).condition, "forbidden");
	const c = await iq(
		eve,
		"get",
		"localhost",
		`<credentials xmlns='${NS}'><service host='turn.example.org' type='turn'/></credentials>`,
	);
	assert.equal(errorOf(c).condition, "forbidden");
});

test("xmpp.js asks as Conversations does and reads the credentials", async () => {
	const xmpp = client({
		service: `xmpp://127.0.0.1:${t.port}`,
		domain: "localhost",
		credentials: async (authenticate, mechanisms) => {
			await authenticate(
				{ username: "alice", password: "alice-pw" },
				mechanisms.includes("PLAIN") ? "PLAIN" : (mechanisms[0] as string),
			);
		},
	});
	xmpp.reconnect.stop();
	xmpp.on("error", () => {});
	(xmpp as unknown as { timeout: number }).timeout = CLIENT_TIMEOUT_MS;
	try {
		await xmpp.start();
		const res = await xmpp.iqCaller.request(
			xml("iq", { type: "get", to: "localhost" }, xml("services", { xmlns: NS })),
		);
		const turn = res
			.getChild("services", NS)
			?.children.find((s): s is XmlElement => typeof s !== "string" && s.attrs.type === "turn");
		assert.ok(turn);
		assert.equal(
			turn.attrs.password,
			createHmac("sha1", SECRET).update(String(turn.attrs.username)).digest("base64"),
		);
	} finally {
		await xmpp.stop().catch(() => undefined);
	}
});
