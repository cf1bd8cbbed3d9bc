/**
 * Guest access (issue 20): an anonymous host (`authentication = "anonymous"`) beside a host with
 * accounts and a MUC service, over real sockets with a real client library (xmpp.js logs in with
 * SASL ANONYMOUS by itself when it has no credentials) and raw streams for the refusals. The
 * server runs on SQLite, so the storage routing that keeps an anonymous host in memory is the
 * one `parley serve` builds. Each test names the section it checks.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import type { XmlElement } from "@xmpp/client";
import { xml } from "@xmpp/client";
import { MEMORY_HOSTS_BACKEND, type RoutingBackend } from "../../src/storage/index.ts";
import { BoshClient } from "../helpers/bosh.ts";
import { RawClient } from "../helpers/raw.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect, connectAnonymous, type XmppConnection } from "../helpers/xmpp-client.ts";
import { authenticate } from "../helpers/xmpp-raw-login.ts";

const GUEST = "guest.localhost";
const MUC = "conference.localhost";
const STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const GUEST_JID = /^([0-9a-f]{32})@guest\.localhost\/.+$/;
const PYTHON = "/usr/bin/python3";
const noSlixmpp =
	spawnSync(PYTHON, ["-c", "import slixmpp"], { stdio: "ignore" }).status === 0
		? false
		: "python3-slixmpp is not installed (apt-get install python3-slixmpp)";

function config(anonymous: Record<string, unknown> = {}) {
	return {
		auth: { require_encryption: false, allow_plain_without_tls: true },
		hosts: {
			localhost: {},
			[GUEST]: { authentication: "anonymous" as const, anonymous },
		},
		components: { [MUC]: { type: "muc" as const } },
		// Federation on, towards a domain nobody answers: what a guest must not reach.
		listeners: { s2s: { enabled: true, address: "127.0.0.1", port: 0 } },
		s2s: { routes: { "remote.example": "127.0.0.1:9" } },
	};
}

/** The mechanisms of the first stream features of a raw stream to `host` (RFC 6120 §6.4.1). */
async function offered(t: TestServer, host: string): Promise<{ c: RawClient; mechs: string[] }> {
	const c = await RawClient.connect(t.port);
	c.open(host);
	const features = await c.waitFor("</stream:features>");
	const mechs = [...features.matchAll(/<mechanism>([^<]+)<\/mechanism>/g)].map(
		(m) => m[1] as string,
	);
	return { c, mechs };
}

/** SASL ANONYMOUS on a raw stream (RFC 4505 §2: one message, the optional trace). */
async function anonymousAuth(c: RawClient, trace = ""): Promise<string> {
	const mark = c.received.length;
	const payload = trace ? Buffer.from(trace).toString("base64") : "=";
	c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'>${payload}</auth>`);
	return c.waitFor(/<(success|failure)[\s\S]*?(\/>|<\/(success|failure)>)/, mark);
}

/** A raw guest: authenticated, stream restarted, resource bound; resolves to the bind answer. */
async function rawGuest(t: TestServer): Promise<{ c: RawClient; sasl: string; bind?: string }> {
	const { c } = await offered(t, GUEST);
	const sasl = await anonymousAuth(c);
	if (!sasl.includes("<success")) return { c, sasl };
	const mark = c.received.length;
	c.open(GUEST);
	await c.waitFor("</stream:features>", mark);
	const mark2 = c.received.length;
	c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
	const bind = await c.waitFor(/<iq[^>]*id=["']b1["'][\s\S]*?<\/iq>/, mark2);
	return { c, sasl, bind };
}

const errorOf = (el: XmlElement | undefined) =>
	el
		?.getChild("error")
		?.children.find((ch) => typeof ch !== "string" && ch.attrs.xmlns === STANZAS) as
		| XmlElement
		| undefined;

/** An account holder enters `room` as `nick` and unlocks it as an instant room (XEP-0045 §10.1.2). */
async function createRoom(conn: XmppConnection, room: string, nick: string): Promise<void> {
	await conn.xmpp.send(
		xml(
			"presence",
			{ to: `${room}/${nick}` },
			xml("x", { xmlns: "http://jabber.org/protocol/muc" }),
		),
	);
	await stanzaFrom(conn, (s) => s.is("presence") && s.attrs.from === `${room}/${nick}`, "entered");
	await conn.xmpp.iqCaller.set(
		xml(
			"query",
			{ xmlns: "http://jabber.org/protocol/muc#owner" },
			xml("x", { xmlns: "jabber:x:data", type: "submit" }),
		),
		room,
	);
}

async function stanzaFrom(
	conn: XmppConnection,
	pred: (s: XmlElement) => boolean,
	what: string,
): Promise<XmlElement> {
	return waitFor(() => conn.stanzas.find(pred), what);
}

describe("anonymous host beside a host with accounts", () => {
	let t: TestServer;
	before(async () => {
		t = await startTestServer({
			config: config(),
			storage: "sqlite",
			users: [["alice@localhost", "alice-pw"]],
		});
	});
	after(() => t.stop());

	test("ANONYMOUS is offered alone on the anonymous host and never on the host with accounts (RFC 4505, RFC 6120 §6.4.1)", async () => {
		const normal = await offered(t, "localhost");
		assert.ok(normal.mechs.length > 0);
		assert.ok(!normal.mechs.includes("ANONYMOUS"), normal.mechs.join(" "));
		normal.c.end();
		const guest = await offered(t, GUEST);
		assert.deepEqual(guest.mechs, ["ANONYMOUS"]);
		guest.c.end();
	});

	test("ANONYMOUS on the host with accounts, PLAIN and SCRAM on the anonymous host: invalid-mechanism (RFC 6120 §6.4.2, §6.5)", async () => {
		const normal = await offered(t, "localhost");
		const refused = await anonymousAuth(normal.c);
		assert.match(refused, /<failure[^>]*><invalid-mechanism\/>/);
		normal.c.end();
		for (const mechanism of ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"] as const) {
			const guest = await offered(t, GUEST);
			const answer = await authenticate(guest.c, "alice", "alice-pw", { mechanism });
			assert.match(answer, /<failure[^>]*><invalid-mechanism\/>/, mechanism);
			guest.c.end();
		}
	});

	test("xmpp.js without credentials logs in as a fresh random JID over TCP and over WebSocket (XEP-0175, RFC 6120 §7)", async () => {
		const tcp = await connectAnonymous(`xmpp://127.0.0.1:${t.port}`, { domain: GUEST });
		const ws = await connectAnonymous(`ws://127.0.0.1:${t.httpPort}/xmpp-websocket`, {
			domain: GUEST,
		});
		try {
			const a = GUEST_JID.exec(tcp.jid);
			const b = GUEST_JID.exec(ws.jid);
			assert.ok(a && b, `${tcp.jid} ${ws.jid}`);
			assert.notEqual(a[1], b[1]);
			// XEP-0175 §3 (server side): the features before authentication offered ANONYMOUS.
			assert.match(tcp.features, /<mechanism>ANONYMOUS<\/mechanism>/);
			// Bound as any session: the host knows both.
			assert.ok(t.server.hosts.get(GUEST)?.sessions.has(a[1] as string));
			assert.ok(t.server.hosts.get(GUEST)?.sessions.has(b[1] as string));
		} finally {
			await tcp.xmpp.stop();
			await ws.xmpp.stop();
		}
	});

	test("a guest (WebSocket) and an account holder (TCP) share a MUC room and see each other's messages (XEP-0045 §7.2, §7.4)", async () => {
		const alice = await connect(`xmpp://127.0.0.1:${t.port}`, "alice", "alice-pw", {
			mechanism: "PLAIN",
		});
		const guest = await connectAnonymous(`ws://127.0.0.1:${t.httpPort}/xmpp-websocket`, {
			domain: GUEST,
		});
		const room = `meeting@${MUC}`;
		try {
			await alice.xmpp.send(
				xml(
					"presence",
					{ to: `${room}/alice` },
					xml("x", { xmlns: "http://jabber.org/protocol/muc" }),
				),
			);
			await stanzaFrom(
				alice,
				(s) => s.is("presence") && s.attrs.from === `${room}/alice`,
				"alice in",
			);
			// §10.1.2: the creator unlocks it as an instant room.
			await alice.xmpp.iqCaller.set(
				xml(
					"query",
					{ xmlns: "http://jabber.org/protocol/muc#owner" },
					xml("x", { xmlns: "jabber:x:data", type: "submit" }),
				),
				room,
			);
			await guest.xmpp.send(
				xml(
					"presence",
					{ to: `${room}/guest` },
					xml("x", { xmlns: "http://jabber.org/protocol/muc" }),
				),
			);
			// §7.2.3: each occupant learns of the other's presence.
			await stanzaFrom(
				alice,
				(s) => s.is("presence") && s.attrs.from === `${room}/guest`,
				"guest seen",
			);
			await stanzaFrom(
				guest,
				(s) => s.is("presence") && s.attrs.from === `${room}/alice`,
				"alice seen",
			);
			await guest.xmpp.send(
				xml("message", { to: room, type: "groupchat" }, xml("body", {}, "hi from a guest")),
			);
			await alice.xmpp.send(
				xml("message", { to: room, type: "groupchat" }, xml("body", {}, "welcome")),
			);
			// §7.4: a groupchat message goes to every occupant, its sender included.
			for (const conn of [alice, guest]) {
				await stanzaFrom(
					conn,
					(s) => s.attrs.from === `${room}/guest` && s.getChildText("body") === "hi from a guest",
					"the guest's message",
				);
				await stanzaFrom(
					conn,
					(s) => s.attrs.from === `${room}/alice` && s.getChildText("body") === "welcome",
					"alice's message",
				);
			}
			// RFC 6121 §8.5.3.1: the guest writes to a local user's resource directly, too.
			await guest.xmpp.send(
				xml("message", { to: alice.jid, type: "chat" }, xml("body", {}, "psst")),
			);
			await stanzaFrom(
				alice,
				(s) => s.is("message") && s.getChildText("body") === "psst",
				"direct message",
			);
		} finally {
			await alice.xmpp.stop();
			await guest.xmpp.stop();
		}
	});

	test("slixmpp, with no local part and no password, logs in with ANONYMOUS and talks in a room with an account holder (RFC 4505, XEP-0045 §7.2, §7.4)", {
		skip: noSlixmpp,
	}, async () => {
		const alice = await connect(`xmpp://127.0.0.1:${t.port}`, "alice", "alice-pw", {
			mechanism: "PLAIN",
		});
		const room = `slixguests@${MUC}`;
		try {
			await createRoom(alice, room, "alice");
			// Async on purpose: a synchronous child would block the server in this process.
			const child = promisify(execFile)(
				PYTHON,
				["test/clients/slixmpp_anonymous.py", GUEST, String(t.port), room],
				{ encoding: "utf8", timeout: 60_000 },
			).catch((e: { stdout?: string; stderr?: string }) => e);
			// §7.2.3: alice sees the guest enter; §7.4: the guest's message reaches her.
			await stanzaFrom(
				alice,
				(s) => s.is("presence") && s.attrs.from === `${room}/guest`,
				"guest seen",
			);
			await stanzaFrom(
				alice,
				(s) =>
					s.attrs.from === `${room}/guest` &&
					s.getChildText("body") === "hello from a slixmpp guest",
				"the guest's message",
			);
			await alice.xmpp.send(
				xml("message", { to: room, type: "groupchat" }, xml("body", {}, "welcome, guest")),
			);
			const r = await child;
			const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
			const result = JSON.parse(line || "{}") as Record<string, unknown>;
			assert.equal(result.error, undefined, `${line}\n${r.stderr ?? ""}`);
			assert.equal(result.mech, "ANONYMOUS");
			// RFC 6120 §7.6.1: the server made up the local part and the resource.
			assert.match(String(result.jid), GUEST_JID);
			// §7.2.3: the guest saw alice and itself (110 marks its own presence).
			assert.deepEqual(result.saw, ["alice", "guest"]);
			assert.ok((result.codes as number[]).includes(110), line);
			// §7.4: both messages reach the guest, its own reflected.
			assert.deepEqual(result.got, [
				["guest", "hello from a slixmpp guest"],
				["alice", "welcome, guest"],
			]);
		} finally {
			await alice.xmpp.stop();
		}
	});

	test("a guest over BOSH (HTTPS): creation offers ANONYMOUS alone, the bound JID is random, and it chats with an account holder (XEP-0206 §5, §6, RFC 4505)", async () => {
		const bosh = new BoshClient(`https://localhost:${t.httpsPort}/http-bind`);
		const other = new BoshClient(`https://localhost:${t.httpsPort}/http-bind`);
		const alice = await connect(`xmpp://127.0.0.1:${t.port}`, "alice", "alice-pw", {
			mechanism: "PLAIN",
		});
		try {
			const jid = await bosh.loginAnonymous(GUEST);
			// XEP-0206 §5: the session creation response carried the stream features.
			const mechs = bosh.received
				.find((e) => e.name === "features")
				?.getChild("mechanisms")
				?.getChildren("mechanism")
				.map((m) => m.text());
			assert.deepEqual(mechs, ["ANONYMOUS"]);
			const local = GUEST_JID.exec(jid)?.[1];
			assert.ok(local, jid);
			assert.ok(t.server.hosts.get(GUEST)?.sessions.has(local));
			// A second BOSH guest is someone else.
			const jid2 = await other.loginAnonymous(GUEST);
			assert.notEqual(GUEST_JID.exec(jid2)?.[1], local, jid2);
			bosh.startPolling();
			bosh.send(
				`<message xmlns='jabber:client' to='${alice.jid}' type='chat' id='g1'><body>from BOSH</body></message>`,
			);
			// RFC 6120 §8.1.2.1: stamped with the guest's full JID.
			const got = await stanzaFrom(
				alice,
				(s) => s.is("message") && s.getChildText("body") === "from BOSH",
				"the guest's message",
			);
			assert.equal(got.attrs.from, jid);
			await alice.xmpp.send(
				xml("message", { to: jid, type: "chat", id: "g2" }, xml("body", {}, "to BOSH")),
			);
			const back = await bosh.waitFor((e) => e.name === "message" && e.attrs.id === "g2", "g2");
			assert.equal(back.getChildText("body"), "to BOSH");
			assert.equal(back.attrs.from, alice.jid);
			// XEP-0124 §13: terminating the session ends the guest.
			await bosh.terminate();
			await waitFor(() => !t.server.hosts.get(GUEST)?.sessions.has(local), "the guest is gone");
		} finally {
			await bosh.terminate().catch(() => {});
			await other.terminate().catch(() => {});
			await alice.xmpp.stop();
		}
	});

	test("a guest over direct TLS (XEP-0368): xmpp.js on xmpps:// and a raw stream with SNI for the guest host get random JIDs (RFC 4505, RFC 6120 §7)", async () => {
		const guest = await connectAnonymous(`xmpps://localhost:${t.tlsPort}`, { domain: GUEST });
		try {
			assert.match(guest.jid, GUEST_JID);
			assert.match(guest.features, /<mechanism>ANONYMOUS<\/mechanism>/);
			assert.doesNotMatch(guest.features, /starttls/);
		} finally {
			await guest.xmpp.stop();
		}
		// The certificate for the name the client asked for (RFC 6120 §13.7.2.1, SNI).
		const c = await RawClient.connect(t.tlsPort, { tls: true, servername: GUEST });
		try {
			c.open(GUEST);
			const features = await c.waitFor("</stream:features>");
			// RFC 6120 SASL's list (XEP-0388 SASL2 repeats it in <authentication/> over TLS).
			const sasl = /<mechanisms[\s\S]*?<\/mechanisms>/.exec(features)?.[0] ?? "";
			assert.deepEqual(
				[...sasl.matchAll(/<mechanism>([^<]+)<\/mechanism>/g)].map((m) => m[1]),
				["ANONYMOUS"],
			);
			assert.match(
				features,
				/<authentication xmlns="urn:xmpp:sasl:2"><mechanism>ANONYMOUS<\/mechanism><inline>/,
			);
			assert.match(await anonymousAuth(c), /<success/);
			const mark = c.received.length;
			c.open(GUEST);
			await c.waitFor("</stream:features>", mark);
			const mark2 = c.received.length;
			c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
			const bind = await c.waitFor(/<\/iq>/, mark2);
			const jid = /<jid>([^<]+)<\/jid>/.exec(bind)?.[1] ?? "";
			assert.match(jid, GUEST_JID);
			assert.notEqual(GUEST_JID.exec(jid)?.[1], GUEST_JID.exec(guest.jid)?.[1]);
		} finally {
			c.end();
		}
	});

	test("nothing of a guest stays in storage after it leaves; a message to it then bounces (RFC 6121 §8.5.1)", async () => {
		const alice = await connect(`xmpp://127.0.0.1:${t.port}`, "alice", "alice-pw", {
			mechanism: "PLAIN",
		});
		const guest = await connectAnonymous(`xmpp://127.0.0.1:${t.port}`, { domain: GUEST });
		const local = GUEST_JID.exec(guest.jid)?.[1] as string;
		const memory = (t.server.storage as RoutingBackend).backends.get(MEMORY_HOSTS_BACKEND);
		assert.ok(memory, "the anonymous host has its memory backend");
		try {
			// Roster (RFC 6121 §2.3), private XML (XEP-0049 §2), vCard (XEP-0054 §3.2).
			await guest.xmpp.iqCaller.set(
				xml("query", { xmlns: "jabber:iq:roster" }, xml("item", { jid: "alice@localhost" })),
			);
			await guest.xmpp.iqCaller.set(
				xml(
					"query",
					{ xmlns: "jabber:iq:private" },
					xml("notes", { xmlns: "urn:example:notes" }, "x"),
				),
			);
			await guest.xmpp.iqCaller.set(xml("vCard", { xmlns: "vcard-temp" }, xml("FN", {}, "Guest")));
			const stored = async () =>
				(await memory.keyval(GUEST, "roster").users()).includes(local) &&
				(await memory.keyval(GUEST, "vcard").get(local)) !== undefined;
			assert.ok(await stored(), "while connected, the guest's data is in the memory backend");
			// RFC 6121 §8.5.2.2.1 option (c): a connected guest with no available resource gets
			// no offline storage: service-unavailable.
			await alice.xmpp.send(
				xml("message", { to: `${local}@${GUEST}`, type: "chat", id: "m1" }, xml("body", {}, "?")),
			);
			const early = await stanzaFrom(
				alice,
				(s) => s.attrs.id === "m1" && s.attrs.type === "error",
				"bounce",
			);
			assert.equal(errorOf(early)?.name, "service-unavailable");
		} finally {
			await guest.xmpp.stop();
		}
		await waitFor(
			() => !t.server.hosts.get(GUEST)?.sessions.has(local),
			"the guest's session ends",
		);
		// Deleted by the anonymous module when the session closed.
		await waitFor(async () => {
			for (const store of ["roster", "vcard", "private", "last", "blocklist", "accounts"])
				if ((await memory.keyval(GUEST, store).users()).includes(local)) return false;
			return (await memory.archive(GUEST, "offline").count(local)) === 0;
		}, "the guest's data is gone");
		// The SQLite file never held any of it: only the host's secret is there.
		const db = new DatabaseSync(join(t.dataDir, "parley.sqlite"), { readOnly: true });
		try {
			const tables = db
				.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
				.all()
				.map((r) => r.name as string)
				.filter((n) =>
					db.prepare(`SELECT * FROM pragma_table_info('${n}') WHERE name = 'host'`).get(),
				);
			assert.ok(tables.length > 0);
			for (const table of tables) {
				const rows = db.prepare(`SELECT * FROM "${table}" WHERE host = ?`).all(GUEST);
				const stores = rows.map((r) => r.store);
				assert.ok(
					stores.every((s) => s === "server_secrets"),
					`${table} holds ${JSON.stringify(stores)} for ${GUEST}`,
				);
				assert.ok(!JSON.stringify(rows).includes(local), `${table} mentions the guest`);
			}
		} finally {
			db.close();
		}
		// RFC 6121 §8.5.1: the guest's JID no longer exists: service-unavailable.
		await alice.xmpp.send(
			xml("message", { to: `${local}@${GUEST}`, type: "chat", id: "m2" }, xml("body", {}, "gone?")),
		);
		const bounce = await stanzaFrom(
			alice,
			(s) => s.attrs.id === "m2" && s.attrs.type === "error",
			"bounce",
		);
		assert.equal(errorOf(bounce)?.name, "service-unavailable");
		await alice.xmpp.stop();
	});

	test("a guest cannot reach another domain (RFC 6120 §8.3.3.10 not-allowed; Prosody's allow_anonymous_s2s = false)", async () => {
		const guest = await connectAnonymous(`xmpp://127.0.0.1:${t.port}`, { domain: GUEST });
		try {
			await guest.xmpp.send(
				xml(
					"message",
					{ to: "someone@remote.example", type: "chat", id: "r1" },
					xml("body", {}, "out"),
				),
			);
			await guest.xmpp.send(
				xml("presence", { to: "someone@remote.example", type: "subscribe", id: "r2" }),
			);
			for (const id of ["r1", "r2"]) {
				const err = await stanzaFrom(
					guest,
					(s) => s.attrs.id === id && s.attrs.type === "error",
					id,
				);
				assert.equal(errorOf(err)?.name, "not-allowed", id);
			}
			await assert.rejects(
				guest.xmpp.iqCaller.get(xml("query", { xmlns: "jabber:iq:version" }), "remote.example"),
				(e: { condition?: string }) => e.condition === "not-allowed",
			);
		} finally {
			await guest.xmpp.stop();
		}
	});

	test("in-band registration is neither offered nor answered on the anonymous host (XEP-0077 §3.1, RFC 6120 §8.4)", async () => {
		const { c } = await offered(t, GUEST);
		assert.ok(!c.received.includes("http://jabber.org/features/iq-register"));
		c.end();
		const guest = await connectAnonymous(`xmpp://127.0.0.1:${t.port}`, { domain: GUEST });
		try {
			await assert.rejects(
				guest.xmpp.iqCaller.set(
					xml(
						"query",
						{ xmlns: "jabber:iq:register" },
						xml("username", {}, "me"),
						xml("password", {}, "pw"),
					),
					GUEST,
				),
				(e: { condition?: string }) => e.condition === "service-unavailable",
			);
			assert.deepEqual(await t.server.hosts.get(GUEST)?.accounts.list(), []);
		} finally {
			await guest.xmpp.stop();
		}
	});

	test("the trace token is logged and never becomes the identity (RFC 4505 §2, §4)", async () => {
		const { c } = await offered(t, GUEST);
		const answer = await anonymousAuth(c, "alice@localhost");
		assert.match(answer, /<success/);
		const mark = c.received.length;
		c.open(GUEST);
		await c.waitFor("</stream:features>", mark);
		const mark2 = c.received.length;
		c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
		const bind = await c.waitFor(/<\/iq>/, mark2);
		assert.match(bind, /<jid>[0-9a-f]{32}@guest\.localhost\/[^<]+<\/jid>/);
		c.end();
	});
});

describe("anonymous session caps", () => {
	test("anonymous.max_sessions: one guest more gets temporary-auth-failure, then a place frees up (RFC 6120 §6.5)", async () => {
		const t = await startTestServer({
			config: config({ max_sessions: 2, max_sessions_per_ip: 0 }),
			users: [["alice@localhost", "alice-pw"]],
		});
		try {
			const a = await rawGuest(t);
			const b = await rawGuest(t);
			assert.match(a.bind ?? "", /<jid>/);
			assert.match(b.bind ?? "", /<jid>/);
			const c = await rawGuest(t);
			assert.match(c.sasl, /<failure[^>]*><temporary-auth-failure\/><text[^>]*>too many guests/);
			// Other users are not affected.
			const alice = await connect(`xmpp://127.0.0.1:${t.port}`, "alice", "alice-pw", {
				mechanism: "PLAIN",
			});
			await alice.xmpp.stop();
			a.c.end();
			await waitFor(() => t.server.hosts.get(GUEST)?.sessions.size === 1, "a guest has left");
			const d = await rawGuest(t);
			assert.match(d.bind ?? "", /<jid>/);
			for (const x of [b, c, d]) x.c.end();
		} finally {
			await t.stop();
		}
	});

	test("guests that authenticated together: the one bound past the cap gets resource-constraint (RFC 6120 §7.6.2.1)", async () => {
		const t = await startTestServer({
			config: config({ max_sessions: 1, max_sessions_per_ip: 0 }),
		});
		try {
			const first = await offered(t, GUEST);
			const second = await offered(t, GUEST);
			assert.match(await anonymousAuth(first.c), /<success/);
			assert.match(await anonymousAuth(second.c), /<success/);
			const bind = async (c: RawClient) => {
				const mark = c.received.length;
				c.open(GUEST);
				await c.waitFor("</stream:features>", mark);
				const mark2 = c.received.length;
				c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
				return c.waitFor(/<\/iq>/, mark2);
			};
			assert.match(await bind(first.c), /<jid>/);
			assert.match(await bind(second.c), /type=["']error["'][\s\S]*<resource-constraint /);
			first.c.end();
			second.c.end();
		} finally {
			await t.stop();
		}
	});

	test("anonymous.max_sessions_per_ip: a flood from one address stops at the cap (RFC 6120 §6.5 temporary-auth-failure)", async () => {
		const t = await startTestServer({
			config: config({ max_sessions: 0, max_sessions_per_ip: 2 }),
		});
		try {
			const guests = [await rawGuest(t), await rawGuest(t)];
			const refused = await rawGuest(t);
			assert.match(
				refused.sasl,
				/<temporary-auth-failure\/><text[^>]*>too many guest sessions from this address/,
			);
			// Counted under the limit's configuration key (docs/architecture.md "Metrics").
			assert.match(
				(await t.server.metricsText()).body,
				/^parley_connections_refused_total\{limit="anonymous\.max_sessions_per_ip"\} 1$/m,
			);
			for (const g of [...guests, refused]) g.c.end();
		} finally {
			await t.stop();
		}
	});
});

describe("anonymous.allow_local_users = false", () => {
	test("a guest reaches rooms and the server, not the users of its hosts (not-allowed, RFC 6120 §8.3.3.10)", async () => {
		const t = await startTestServer({
			config: config({ allow_local_users: false }),
			users: [["alice@localhost", "alice-pw"]],
		});
		try {
			const g = await rawGuest(t);
			const mark = g.c.received.length;
			g.c.send("<message to='alice@localhost' type='chat' id='u1'><body>hi</body></message>");
			const refused = await g.c.waitFor(
				/<message(?=[^>]*id="u1")(?=[^>]*type="error")[^>]*>[\s\S]*?<\/message>/,
				mark,
			);
			assert.match(refused, /<not-allowed /);
			// The server itself still answers (XEP-0199), and so does a room service (XEP-0030).
			const mark2 = g.c.received.length;
			g.c.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
			assert.match(await g.c.waitFor(/<iq[^>]*id="p1"[^>]*>/, mark2), /type="result"/);
			const mark3 = g.c.received.length;
			g.c.send(
				`<iq type='get' id='d1' to='${MUC}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`,
			);
			assert.match(await g.c.waitFor(/<iq[^>]*id="d1"[^>]*>/, mark3), /type="result"/);
			g.c.end();
		} finally {
			await t.stop();
		}
	});
});
