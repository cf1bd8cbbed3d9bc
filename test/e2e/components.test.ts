/**
 * XEP-0114 external components, end to end: real component libraries (xmpp.js's
 * `@xmpp/component`, slixmpp's `ComponentXMPP`) connect to the component port and talk with
 * clients through the server; raw sockets do what a broken or hostile component would.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import type { XmlElement } from "@xmpp/client";
import { component, xml } from "@xmpp/component";
import type { Element } from "../../src/xml/element.ts";
import { RawClient } from "../helpers/raw.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { StanzaReader } from "../helpers/stanza-reader.ts";
import { waitFor } from "../helpers/wait.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

const GATEWAY = "gateway.localhost";
const SECRET = "gateway-secret";
const WILD = "wild.localhost";
const WILD_SECRET = "wild-secret";
const DOWN = "down.localhost";
const STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const STREAM_HEADER = (to: string, ns = "jabber:component:accept") =>
	`<?xml version='1.0'?><stream:stream xmlns='${ns}' xmlns:stream='http://etherx.jabber.org/streams' to='${to}'>`;

const config = {
	auth: { require_encryption: false, allow_plain_without_tls: true },
	limits: { stanza_size: 16_384 },
	components: {
		[GATEWAY]: { type: "external" as const, secret: SECRET, name: "Gateway" },
		[WILD]: { type: "external" as const, secret: WILD_SECRET, subdomains: true },
		[DOWN]: { type: "external" as const, secret: "never-used" },
		"conference.localhost": { type: "muc" as const },
	},
};

const sha1 = (s: string) => createHash("sha1").update(s, "utf8").digest("hex");
const condition = (el: Element) => el.getChild("error")?.getChildByNs(STANZAS)?.name;

interface Peer {
	c: RawClient;
	r: StanzaReader;
}

/** A component by hand: header, handshake (XEP-0114 §3), then a reader of its stanzas. */
async function rawComponent(t: TestServer, domain: string, secret: string): Promise<Peer> {
	const c = await RawClient.connect(t.componentPort);
	c.send(STREAM_HEADER(domain));
	const header = await c.waitFor(/<stream:stream[^>]*>/);
	const id = /id='([^']+)'/.exec(header)?.[1] ?? "";
	const mark = c.received.length;
	c.send(`<handshake>${sha1(id + secret)}</handshake>`);
	await c.waitFor("<handshake/>", mark);
	return { c, r: new StanzaReader(c) };
}

/** A logged-in client with initial presence (RFC 6121 §4.2), so bare-JID messages reach it. */
async function client(t: TestServer, user: string): Promise<Peer> {
	const c = await login(t.port, user, `${user}-pw`, { resource: "r", mechanism: "PLAIN" });
	const r = new StanzaReader(c);
	const m = r.mark();
	c.send("<presence/>");
	await r.wait((el) => el.is("presence") && el.attrs.from === `${user}@localhost/r`, m, "presence");
	return { c, r };
}

/** What the server answered before closing: the stream error condition, if any. */
async function streamError(c: RawClient): Promise<string | undefined> {
	await c.waitClosed();
	return /<stream:error><([a-z-]+)/.exec(c.received)?.[1];
}

describe("external components (XEP-0114)", () => {
	let t: TestServer;
	const open: RawClient[] = [];
	before(async () => {
		t = await startTestServer({
			config,
			users: [
				["alice@localhost", "alice-pw"],
				["bob@localhost", "bob-pw"],
			],
		});
	});
	after(async () => {
		for (const c of open) c.end();
		await t?.stop();
	});

	test("the component port opens on loopback only because external components are configured", () => {
		assert.ok(t.componentPort > 0);
	});

	test("@xmpp/component: a message and an IQ from a client are answered; it sends to a client", async () => {
		const alice = await client(t, "alice");
		open.push(alice.c);
		const got: XmlElement[] = [];
		const comp = component({
			service: `xmpp://127.0.0.1:${t.componentPort}`,
			domain: GATEWAY,
			password: SECRET,
		});
		comp.reconnect.stop();
		comp.on("error", () => {});
		comp.on("stanza", (s: XmlElement) => {
			got.push(s);
			// An echo: the reply comes from the address the message was sent to.
			if (s.is("message") && s.getChildText("body"))
				void comp.send(
					xml(
						"message",
						{ to: s.attrs.from, from: s.attrs.to, type: "chat" },
						xml("body", {}, `echo: ${s.getChildText("body")}`),
					),
				);
		});
		// XEP-0092 answered by the component itself: its own IQs are its business.
		comp.iqCallee.get("jabber:iq:version", "query", () =>
			xml("query", { xmlns: "jabber:iq:version" }, xml("name", {}, "echo-gateway")),
		);
		try {
			// XEP-0114 §3: header, handshake, empty <handshake/>; xmpp.js goes "online".
			const jid = await comp.start();
			assert.equal(jid.toString(), GATEWAY);

			// A chat message to bot@gateway.localhost reaches the component, in its namespace and
			// with the sender's full JID (RFC 6120 §8.1.2.1 stamping happened on the client side).
			let m = alice.r.mark();
			alice.c.send(`<message to='bot@${GATEWAY}' type='chat' id='m1'><body>hello</body></message>`);
			const echo = await alice.r.wait(
				(el) => el.is("message") && el.attrs.from === `bot@${GATEWAY}`,
				m,
				"the echo",
			);
			assert.equal(echo.getChildText("body"), "echo: hello");
			const inbound = got.find((s) => s.is("message"));
			assert.equal(inbound?.attrs.from, "alice@localhost/r");
			assert.equal(inbound?.attrs.to, `bot@${GATEWAY}`);

			// An IQ get to the component's domain is answered by the component.
			m = alice.r.mark();
			alice.c.send(
				`<iq type='get' id='v1' to='${GATEWAY}'><query xmlns='jabber:iq:version'/></iq>`,
			);
			const version = await alice.r.wait((el) => el.attrs.id === "v1", m, "version answer");
			assert.equal(version.attrs.type, "result");
			assert.equal(version.attrs.from, GATEWAY);
			assert.equal(version.getChild("query")?.getChildText("name"), "echo-gateway");

			// The component writes first: a message from an address at its domain to the client.
			m = alice.r.mark();
			await comp.send(
				xml(
					"message",
					{ to: "alice@localhost", from: `news@${GATEWAY}`, type: "chat" },
					xml("body", {}, "pushed"),
				),
			);
			const pushed = await alice.r.wait(
				(el) => el.is("message") && el.attrs.from === `news@${GATEWAY}`,
				m,
				"the pushed message",
			);
			assert.equal(pushed.getChildText("body"), "pushed");

			// Counted (docs/architecture.md "Metrics"): the stream, and what crossed it.
			const { body } = await t.server.metricsText();
			const sample = (key: string) =>
				Number(new RegExp(`^${key.replace(/[{}]/g, "\\$&")} (\\S+)$`, "m").exec(body)?.[1]);
			assert.equal(sample("parley_component_streams"), 1);
			assert.equal(sample('parley_stanzas_sent_total{stream="component",kind="message"}'), 1);
			assert.equal(sample('parley_stanzas_received_total{stream="component",kind="message"}'), 2);
			assert.equal(sample('parley_stanzas_sent_total{stream="component",kind="iq"}'), 1);
			assert.equal(sample('parley_stanzas_received_total{stream="component",kind="iq"}'), 1);
		} finally {
			await comp.stop().catch(() => {});
		}
	});

	test("the parent host's disco#items lists the component (XEP-0030 §4.1)", async () => {
		const bob = await client(t, "bob");
		open.push(bob.c);
		const m = bob.r.mark();
		bob.c.send(
			"<iq type='get' id='items' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
		);
		const items = await bob.r.wait((el) => el.attrs.id === "items", m, "disco#items");
		const listed = (items.getChild("query")?.getChildren("item") ?? []).map((i) => i.attrs.jid);
		assert.ok(listed.includes(GATEWAY), String(listed));
	});

	test("a component that is down: its stanzas bounce with service-unavailable (RFC 6120 §8.3.3.19)", async () => {
		const bob = await client(t, "bob");
		open.push(bob.c);
		let m = bob.r.mark();
		bob.c.send(`<message to='x@${DOWN}' type='chat' id='d1'><body>anyone?</body></message>`);
		const bounced = await bob.r.wait((el) => el.attrs.id === "d1", m, "the bounce");
		assert.equal(bounced.attrs.type, "error");
		assert.equal(bounced.attrs.from, `x@${DOWN}`);
		assert.equal(condition(bounced), "service-unavailable");
		// Temporary: the component may connect later (type "wait", as Prosody answers).
		assert.equal(bounced.getChild("error")?.attrs.type, "wait");
		m = bob.r.mark();
		bob.c.send(`<iq type='get' id='d2' to='${DOWN}'><query xmlns='jabber:iq:version'/></iq>`);
		const iqBounce = await bob.r.wait((el) => el.attrs.id === "d2", m, "the IQ bounce");
		assert.equal(iqBounce.attrs.type, "error");
		assert.equal(condition(iqBounce), "service-unavailable");
	});

	test("XEP-0114 §3: a wrong handshake gets not-authorized", async () => {
		const c = await RawClient.connect(t.componentPort);
		c.send(STREAM_HEADER(GATEWAY));
		await c.waitFor(/<stream:stream[^>]*id='[^']+'/);
		c.send(`<handshake>${sha1(`not the id${SECRET}`)}</handshake>`);
		assert.equal(await streamError(c), "not-authorized");
	});

	test("XEP-0114 §3: a domain that is no external component here gets host-unknown", async () => {
		for (const to of ["nowhere.localhost", "localhost", "conference.localhost"]) {
			const c = await RawClient.connect(t.componentPort);
			c.send(STREAM_HEADER(to));
			assert.equal(await streamError(c), "host-unknown", to);
		}
	});

	test("RFC 6120 §4.9.3.10: a stream in another namespace gets invalid-namespace", async () => {
		const c = await RawClient.connect(t.componentPort);
		c.send(STREAM_HEADER(GATEWAY, "jabber:client"));
		assert.equal(await streamError(c), "invalid-namespace");
	});

	test("XEP-0114 §3: a stanza before the handshake gets not-authorized", async () => {
		const c = await RawClient.connect(t.componentPort);
		c.send(STREAM_HEADER(GATEWAY));
		await c.waitFor(/<stream:stream[^>]*>/);
		c.send(`<message from='${GATEWAY}' to='alice@localhost'><body>early</body></message>`);
		assert.equal(await streamError(c), "not-authorized");
	});

	test("RFC 6120 §4.9.3.9: a component sending from another domain gets invalid-from", async () => {
		for (const from of ["alice@localhost", `x@${DOWN}`, "evil.example", "sub.gateway.localhost"]) {
			const comp = await rawComponent(t, GATEWAY, SECRET);
			comp.c.send(`<message from='${from}' to='bob@localhost'><body>spoof</body></message>`);
			assert.equal(await streamError(comp.c), "invalid-from", from);
		}
	});

	test("a second connection for a connected component gets conflict; the first keeps working", async () => {
		const first = await rawComponent(t, GATEWAY, SECRET);
		open.push(first.c);
		const c = await RawClient.connect(t.componentPort);
		c.send(STREAM_HEADER(GATEWAY));
		const header = await c.waitFor(/<stream:stream[^>]*>/);
		const id = /id='([^']+)'/.exec(header)?.[1] ?? "";
		c.send(`<handshake>${sha1(id + SECRET)}</handshake>`);
		// RFC 6120 §4.9.3.3 conflict, as Prosody refuses the new one (component_conflict_resolve).
		assert.equal(await streamError(c), "conflict");
		assert.ok(!c.received.includes("<handshake/>"));

		const bob = await client(t, "bob");
		open.push(bob.c);
		let m = first.r.mark();
		bob.c.send(
			`<message to='bot@${GATEWAY}' id='after-conflict'><body>still there?</body></message>`,
		);
		const got = await first.r.wait((el) => el.attrs.id === "after-conflict", m, "the message");
		assert.equal(got.attrs.from, "bob@localhost/r");

		// Once the first is gone, the component may connect again.
		first.c.send("</stream:stream>");
		await first.c.waitClosed();
		const again = await waitFor(
			() => rawComponent(t, GATEWAY, SECRET).catch(() => undefined),
			"a new connection after the first closed",
		);
		open.push(again.c);
		m = again.r.mark();
		bob.c.send(`<message to='${GATEWAY}' id='reconnected'><body>back</body></message>`);
		await again.r.wait((el) => el.attrs.id === "reconnected", m, "the message after reconnecting");
		again.c.send("</stream:stream>");
		await again.c.waitClosed();
	});

	test("stanzas without 'from' are stamped with the domain; without 'to' get bad-request", async () => {
		const comp = await rawComponent(t, GATEWAY, SECRET);
		open.push(comp.c);
		const alice = await client(t, "alice");
		open.push(alice.c);
		let m = alice.r.mark();
		comp.c.send("<message to='alice@localhost/r' id='nofrom'><body>x</body></message>");
		const stamped = await alice.r.wait((el) => el.attrs.id === "nofrom", m, "the message");
		assert.equal(stamped.attrs.from, GATEWAY);
		m = comp.r.mark();
		comp.c.send(`<iq type='get' id='noto' from='${GATEWAY}'><ping xmlns='urn:xmpp:ping'/></iq>`);
		const err = await comp.r.wait((el) => el.attrs.id === "noto", m, "the error");
		assert.equal(condition(err), "bad-request");
		// An IQ to a user's host is answered by the host (RFC 6120 §8.2.3) and reaches the component.
		m = comp.r.mark();
		comp.c.send(
			`<iq type='get' id='ping' from='${GATEWAY}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`,
		);
		const pong = await comp.r.wait((el) => el.attrs.id === "ping", m, "the pong");
		assert.equal(pong.attrs.type, "result");
		assert.equal(pong.attrs.from, "localhost");
		comp.c.send("</stream:stream>");
		await comp.c.waitClosed();
	});

	test("subdomains = true: stanzas to x.wild.localhost reach the component, which may send from them", async () => {
		const comp = await rawComponent(t, WILD, WILD_SECRET);
		open.push(comp.c);
		const alice = await client(t, "alice");
		open.push(alice.c);
		let m = comp.r.mark();
		alice.c.send(`<message to='user@irc.${WILD}' id='sub1'><body>to a subdomain</body></message>`);
		const got = await comp.r.wait((el) => el.attrs.id === "sub1", m, "the message");
		assert.equal(got.attrs.to, `user@irc.${WILD}`);
		m = alice.r.mark();
		comp.c.send(
			`<message from='user@irc.${WILD}' to='alice@localhost/r' id='sub2'><body>back</body></message>`,
		);
		const back = await alice.r.wait((el) => el.attrs.id === "sub2", m, "the answer");
		assert.equal(back.attrs.from, `user@irc.${WILD}`);
		comp.c.send("</stream:stream>");
		await comp.c.waitClosed();
	});

	test("a flooding or broken component is cut off; the server keeps serving (RFC 6120 §4.9.3)", async () => {
		// Over limits.stanza_size: policy-violation.
		const big = await rawComponent(t, GATEWAY, SECRET);
		big.c.send(
			`<message from='${GATEWAY}' to='alice@localhost'><body>${"x".repeat(20_000)}</body></message>`,
		);
		assert.equal(await streamError(big.c), "policy-violation");
		// Malformed XML: not-well-formed.
		const broken = await rawComponent(t, GATEWAY, SECRET);
		broken.c.send("<message><body></message>");
		assert.equal(await streamError(broken.c), "not-well-formed");
		// Everyone else is still served, and the component can come back.
		const bob = await client(t, "bob");
		open.push(bob.c);
		const m = bob.r.mark();
		bob.c.send("<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
		assert.equal(
			(await bob.r.wait((el) => el.attrs.id === "alive", m, "pong")).attrs.type,
			"result",
		);
		const again = await rawComponent(t, GATEWAY, SECRET);
		again.c.send("</stream:stream>");
		await again.c.waitClosed();
	});

	test("stopping the server closes a connected component with system-shutdown (RFC 6120 §4.9.3.22)", async () => {
		const own = await startTestServer({ config });
		try {
			const comp = await rawComponent(own, GATEWAY, SECRET);
			await own.stop();
			assert.equal(await streamError(comp.c), "system-shutdown");
		} finally {
			await own.stop();
		}
	});
});

const PYTHON = "/usr/bin/python3";
const hasSlixmpp = spawnSync(PYTHON, ["-c", "import slixmpp"], { stdio: "ignore" }).status === 0;

describe("slixmpp ComponentXMPP (XEP-0114)", {
	skip: hasSlixmpp ? false : "python3-slixmpp is not installed (apt-get install python3-slixmpp)",
}, () => {
	let t: TestServer;
	before(async () => {
		t = await startTestServer({ config, users: [["carol@localhost", "carol-pw"]] });
	});
	after(() => t?.stop());

	test("connects, echoes a client's message, answers disco#info, sends to the client", async () => {
		const r = await promisify(execFile)(
			PYTHON,
			[
				"test/clients/slixmpp_component.py",
				"localhost",
				String(t.port),
				String(t.componentPort),
				GATEWAY,
				SECRET,
				"carol",
				"carol-pw",
			],
			{ encoding: "utf8", timeout: 60_000 },
		).catch((e: { stdout?: string; stderr?: string }) => e);
		const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
		const steps = JSON.parse(line || "{}") as Record<string, unknown>;
		assert.deepEqual(
			steps,
			{
				component_started: true,
				echo: [`bot@${GATEWAY}`, "echo: hi"],
				// XEP-0030 answered by the component itself, through the server.
				disco_identity: ["gateway", "xmpp", "Echo gateway"],
				pushed: [`news@${GATEWAY}`, "pushed"],
			},
			`${line}\n${r.stderr ?? ""}`,
		);
	});
});
