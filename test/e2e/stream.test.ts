/**
 * Stream negotiation, stream errors and limits over raw sockets (RFC 6120 §4-§7, §11): the bytes
 * a broken or hostile client would send, and the exact answer the RFC names.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { RawClient } from "../helpers/raw.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { authenticate, login } from "../helpers/xmpp-raw-login.ts";

/** Asserts that the stream ended with this stream error (RFC 6120 §4.9) and was closed. */
async function expectStreamError(c: RawClient, condition: string, from = 0): Promise<void> {
	const text = await c.waitFor(/<stream:error>[\s\S]*<\/stream:error>/, from);
	assert.match(
		text,
		new RegExp(`<${condition} xmlns="urn:ietf:params:xml:ns:xmpp-streams"/>`),
		text,
	);
	await c.waitFor("</stream:stream>", from);
	await c.waitClosed();
}

describe("with TLS required (the default)", () => {
	let t: TestServer;
	before(async () => {
		t = await startTestServer({ users: [["alice@localhost", "pw-alice"]] });
	});
	after(() => t.stop());

	test("features before TLS offer only STARTTLS, marked required (RFC 6120 §5.3.1)", async () => {
		const c = await RawClient.connect(t.port);
		c.open();
		const f = await c.waitFor("</stream:features>");
		assert.match(f, /<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls"><required\/><\/starttls>/);
		assert.doesNotMatch(f, /<mechanisms/);
		// XEP-0478: the pre-authentication stanza limit is announced.
		assert.match(f, /<limits xmlns="urn:xmpp:stream-limits:0"><max-bytes>10240<\/max-bytes>/);
		// SASL before TLS: RFC 6120 §6.4.5 encryption-required.
		c.send(
			"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHB3LWFsaWNl</auth>",
		);
		await c.waitFor(/<failure xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><encryption-required\/>/);
		c.end();
	});

	test("a stream header that declares xmlns:xml (Namespaces in XML 1.0 §3) is served (Psi)", async () => {
		// Psi 1.5 (Iris) sends this header; parsing it threw outside any handler and ended the
		// whole server process.
		const c = await RawClient.connect(t.port);
		c.send(
			"<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en' to='localhost' xmlns='jabber:client' xmlns:xml='http://www.w3.org/XML/1998/namespace'>",
		);
		const f = await c.waitFor("</stream:features>");
		assert.match(f, /<starttls xmlns="urn:ietf:params:xml:ns:xmpp-tls">/);
		c.end();
		// The server is still there for the next client.
		const d = await RawClient.connect(t.port);
		d.open();
		await d.waitFor("</stream:features>");
		d.end();
	});

	test("after STARTTLS, SCRAM and PLAIN are offered with channel binding types (XEP-0440)", async () => {
		const c = await RawClient.connect(t.port);
		c.open();
		await c.waitFor("</stream:features>");
		c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
		await c.waitFor("<proceed");
		await c.startTls();
		const mark = c.received.length;
		c.open();
		const f = await c.waitFor("</stream:features>", mark);
		assert.doesNotMatch(f, /<starttls/);
		for (const m of [
			"SCRAM-SHA-256-PLUS",
			"SCRAM-SHA-1-PLUS",
			"SCRAM-SHA-256",
			"SCRAM-SHA-1",
			"PLAIN",
		])
			assert.ok(f.includes(`<mechanism>${m}</mechanism>`), `${m} offered`);
		assert.match(
			f,
			/<sasl-channel-binding xmlns="urn:xmpp:sasl-cb:0">.*<channel-binding type="tls-exporter"\/>/,
		);
		c.end();
	});

	for (const mechanism of [
		"SCRAM-SHA-256",
		"SCRAM-SHA-1",
		"SCRAM-SHA-256-PLUS",
		"SCRAM-SHA-1-PLUS",
		"PLAIN",
	] as const) {
		test(`${mechanism} over STARTTLS logs in and binds (RFC 6120 §6, §7)`, async () => {
			const c = await login(t.port, "alice", "pw-alice", {
				starttls: true,
				mechanism,
				resource: "r1",
			});
			assert.match(c.received, /<jid>alice@localhost\/r1<\/jid>/);
			c.end();
		});
	}

	test("SCRAM-SHA-256-PLUS with tls-server-end-point over direct TLS (RFC 5929 §4)", async () => {
		const c = await login(t.tlsPort, "alice", "pw-alice", {
			tls: true,
			mechanism: "SCRAM-SHA-256-PLUS",
			cbType: "tls-server-end-point",
		});
		assert.match(c.received, /<jid>alice@localhost\/[^<]+<\/jid>/);
		c.end();
	});

	test("an authzid naming another account is refused (RFC 6120 §6.3.8, invalid-authzid)", async () => {
		await t.server.hosts
			.get("localhost")
			?.accounts.create("mallory", "pw-mallory")
			.catch(() => {});
		for (const mechanism of ["PLAIN", "SCRAM-SHA-256"] as const) {
			const c = await RawClient.connect(t.tlsPort, { tls: true });
			c.open();
			await c.waitFor("</stream:features>");
			const r = await authenticate(c, "mallory", "pw-mallory", {
				mechanism,
				authzid: "alice@localhost",
			});
			assert.match(
				r,
				/<failure xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><invalid-authzid\/>/,
				mechanism,
			);
			c.end();
		}
		// Naming oneself is fine.
		const ok = await login(t.tlsPort, "mallory", "pw-mallory", {
			tls: true,
			authzid: "mallory@localhost",
		});
		ok.end();
	});

	test("a wrong password answers not-authorized and the stream stays open for a retry (RFC 6120 §6.4.5)", async () => {
		const c = await RawClient.connect(t.tlsPort, { tls: true });
		c.open();
		await c.waitFor("</stream:features>");
		const r = await authenticate(c, "alice", "wrong", { mechanism: "SCRAM-SHA-256" });
		assert.match(r, /<not-authorized\/>/);
		const ok = await authenticate(c, "alice", "pw-alice", { mechanism: "SCRAM-SHA-256" });
		assert.match(ok, /<success/);
		c.end();
	});
});

describe("negotiation and errors (plain TCP allowed for speed)", () => {
	let t: TestServer;
	before(async () => {
		t = await startTestServer({
			config: {
				auth: { require_encryption: false, allow_plain_without_tls: true },
				limits: { sasl_failures_per_ip: 0 },
			},
			users: [
				["alice@localhost", "pw-alice"],
				["bob@localhost", "pw-bob"],
			],
		});
	});
	after(() => t.stop());

	test("the server answers the header with its own: from, id, version (RFC 6120 §4.7)", async () => {
		const c = await RawClient.connect(t.port);
		c.send(
			"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='LocalHost' from='alice@localhost' version='1.0'>",
		);
		const header = await c.waitFor(/<stream:stream[^>]*>/);
		assert.match(header, /from='localhost'/);
		assert.match(header, /to='alice@localhost'/);
		assert.match(header, /version='1.0'/);
		assert.match(header, /id='[0-9a-f]{32}'/);
		c.end();
	});

	test("unknown host: host-unknown (RFC 6120 §4.9.3.6)", async () => {
		const c = await RawClient.connect(t.port);
		c.open("nowhere.example");
		await expectStreamError(c, "host-unknown");
	});

	test("wrong stream namespace: invalid-namespace (RFC 6120 §4.9.3.10)", async () => {
		const c = await RawClient.connect(t.port);
		c.send(
			"<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' to='localhost' version='1.0'>",
		);
		await expectStreamError(c, "invalid-namespace");
	});

	test("wrong content namespace: invalid-namespace (RFC 6120 §4.8.2)", async () => {
		const c = await RawClient.connect(t.port);
		c.send(
			"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
		);
		await expectStreamError(c, "invalid-namespace");
	});

	test("no version: unsupported-version (RFC 6120 §4.7.5)", async () => {
		const c = await RawClient.connect(t.port);
		c.send(
			"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost'>",
		);
		await expectStreamError(c, "unsupported-version");
	});

	const hostile: [string, string, string][] = [
		["a comment", "<!-- hi -->", "restricted-xml"],
		["a processing instruction", "<?php echo 1; ?>", "restricted-xml"],
		[
			"an undefined entity",
			"<message to='bob@localhost'><body>&foo;</body></message>",
			"restricted-xml",
		],
		["a mismatched end tag", "<message><body></message>", "not-well-formed"],
		["a raw NUL character", "<message>\u0000</message>", "not-well-formed"],
		["an undeclared prefix", "<foo:bar/>", "not-well-formed"],
	];
	for (const [what, xml, condition] of hostile) {
		test(`${what} ends the stream with ${condition} (RFC 6120 §11.1, §4.9.3)`, async () => {
			const c = await RawClient.connect(t.port);
			c.open();
			await c.waitFor("</stream:features>");
			c.send(xml);
			await expectStreamError(c, condition);
		});
	}

	test("a DOCTYPE with an entity bomb is refused before expansion: restricted-xml (RFC 6120 §11.1)", async () => {
		const c = await RawClient.connect(t.port);
		c.send(
			`<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>`,
		);
		await expectStreamError(c, "restricted-xml");
	});

	test("a stanza over the pre-authentication limit: policy-violation (RFC 6120 §4.9.3.14)", async () => {
		const c = await RawClient.connect(t.port);
		c.open();
		await c.waitFor("</stream:features>");
		c.send(`<message><body>${"x".repeat(20_000)}</body></message>`);
		await expectStreamError(c, "policy-violation");
	});

	test("a stanza before authentication: not-authorized (RFC 6120 §6.4.1)", async () => {
		const c = await RawClient.connect(t.port);
		c.open();
		await c.waitFor("</stream:features>");
		c.send("<message to='bob@localhost'><body>hi</body></message>");
		await expectStreamError(c, "not-authorized");
	});

	test("after binding: an unknown top-level element ends the stream with unsupported-stanza-type (RFC 6120 §4.9.3.24)", async () => {
		const c = await login(t.port, "alice", "pw-alice");
		const mark = c.received.length;
		c.send("<foo xmlns='urn:example'/>");
		await expectStreamError(c, "unsupported-stanza-type", mark);
	});

	test("a spoofed 'from' ends the stream with invalid-from (RFC 6120 §8.1.2.1, §4.9.3.9)", async () => {
		const bob = await login(t.port, "bob", "pw-bob", { resource: "b" });
		const c = await login(t.port, "alice", "pw-alice");
		const mark = c.received.length;
		const bobMark = bob.received.length;
		c.send(
			"<message from='bob@localhost/b' to='bob@localhost/b'><body>it is me, bob</body></message>",
		);
		await expectStreamError(c, "invalid-from", mark);
		// The spoofed message was not delivered.
		bob.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
		await bob.waitFor(/id="sync"/, bobMark);
		assert.doesNotMatch(bob.received.slice(bobMark), /it is me, bob/);
		bob.end();
	});

	test("one's own bare or full JID as 'from' is accepted and stamped with the full JID (RFC 6120 §8.1.2.1)", async () => {
		const bob = await login(t.port, "bob", "pw-bob", { resource: "b2" });
		const c = await login(t.port, "alice", "pw-alice", { resource: "a2" });
		const mark = bob.received.length;
		c.send(
			"<message from='alice@localhost' to='bob@localhost/b2' id='own'><body>hi</body></message>",
		);
		const got = await bob.waitFor(/<message[^>]*id="own"[\s\S]*?<\/message>/, mark);
		assert.match(got, /from="alice@localhost\/a2"/);
		c.end();
		bob.end();
	});

	test("one's own account with another resource as 'from' is overridden with the full JID (RFC 6120 §8.1.2.1), as after Converse 14 resumes", async () => {
		// Converse 14 resumes its session (XEP-0198) after a page reload, under the old resource,
		// then writes the new resource it picked into 'from' (test/e2e/browser.test.ts).
		const bob = await login(t.port, "bob", "pw-bob", { resource: "b3" });
		const c = await login(t.port, "alice", "pw-alice", { resource: "a3" });
		const mark = bob.received.length;
		c.send(
			"<message from='alice@localhost/picked-after-reload' to='bob@localhost/b3' id='other-res'><body>hi</body></message>",
		);
		const got = await bob.waitFor(/<message[^>]*id="other-res"[\s\S]*?<\/message>/, mark);
		assert.match(got, /from="alice@localhost\/a3"/);
		c.end();
		bob.end();
	});

	test("a malformed 'to' gets jid-malformed with the stanza echoed (RFC 6120 §8.3.3.8, §8.3.1)", async () => {
		const c = await login(t.port, "alice", "pw-alice");
		const mark = c.received.length;
		c.send("<message to='a@b@c' id='bad'><body>x</body></message>");
		const e = await c.waitFor(/<message[^>]*type="error"[\s\S]*?<\/message>/, mark);
		assert.match(e, /<jid-malformed xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
		assert.match(e, /<body>x<\/body>/);
		assert.match(e, /id="bad"/);
		c.end();
	});

	test("IQ errors: remote domain, unknown resource, unknown payload, bad IQs (RFC 6120 §8.2.3, §8.3.3)", async () => {
		const c = await login(t.port, "alice", "pw-alice");
		const ask = async (iq: string, id: string, condition: string) => {
			const mark = c.received.length;
			c.send(iq);
			const e = await c.waitFor(new RegExp(`<iq[^>]*id="${id}"[\\s\\S]*?</iq>`), mark);
			assert.match(e, /type="error"/, id);
			assert.match(
				e,
				new RegExp(`<${condition} xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>`),
				`${id}: ${e}`,
			);
		};
		// No federation yet: every other domain is unreachable (§8.3.3.16).
		await ask(
			"<iq type='get' id='i1' to='example.net'><ping xmlns='urn:xmpp:ping'/></iq>",
			"i1",
			"remote-server-not-found",
		);
		// RFC 6121 §8.5.3.2.2: IQ to a resource that is not online.
		await ask(
			"<iq type='get' id='i2' to='bob@localhost/nothere'><ping xmlns='urn:xmpp:ping'/></iq>",
			"i2",
			"service-unavailable",
		);
		// RFC 6120 §8.4: nobody handles this payload.
		await ask(
			"<iq type='get' id='i3' to='localhost'><query xmlns='urn:example:none'/></iq>",
			"i3",
			"service-unavailable",
		);
		// RFC 6120 §8.2.3: get/set with two payloads, or an unknown type.
		await ask(
			"<iq type='get' id='i4' to='localhost'><ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>",
			"i4",
			"bad-request",
		);
		await ask(
			"<iq type='fetch' id='i5' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
			"i5",
			"bad-request",
		);
		// A message to an account that does not exist (RFC 6121 §8.5.1).
		const mark = c.received.length;
		c.send("<message to='nobody@localhost' id='m1'><body>x</body></message>");
		const e = await c.waitFor(/<message[^>]*id="m1"[\s\S]*?<\/message>/, mark);
		assert.match(e, /<service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
		// An error is never answered with an error (RFC 6120 §8.3.1).
		const mark2 = c.received.length;
		c.send("<message to='nobody@localhost' type='error' id='m2'><body>x</body></message>");
		c.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
		const rest = await c.waitFor(/id="sync"/, mark2);
		assert.doesNotMatch(rest, /id="m2"/);
		c.end();
	});

	test("binding the same resource twice: the new session wins, the old gets conflict (RFC 6120 §7.7.2.2)", async () => {
		const first = await login(t.port, "alice", "pw-alice", { resource: "same" });
		const mark = first.received.length;
		const second = await login(t.port, "alice", "pw-alice", { resource: "same" });
		await expectStreamError(first, "conflict", mark);
		assert.match(second.received, /<jid>alice@localhost\/same<\/jid>/);
		second.end();
	});

	test("the legacy session element is answered (RFC 3921 §3, optional per RFC 6121 Appendix E)", async () => {
		const c = await RawClient.connect(t.port);
		c.open();
		await c.waitFor("</stream:features>");
		await authenticate(c, "alice", "pw-alice", { mechanism: "PLAIN" });
		const mark = c.received.length;
		c.open();
		const f = await c.waitFor("</stream:features>", mark);
		assert.match(f, /<session xmlns="urn:ietf:params:xml:ns:xmpp-session"><optional\/><\/session>/);
		assert.match(f, /<max-bytes>262144<\/max-bytes>/);
		c.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
		await c.waitFor(/id="b"/, mark);
		const m2 = c.received.length;
		c.send("<iq type='set' id='s'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
		const r = await c.waitFor(/<iq[^>]*id="s"[^>]*\/>/, m2);
		assert.match(r, /type="result"/);
		c.end();
	});

	test("stanzas of one session are delivered in the order sent (RFC 6120 §10.1)", async () => {
		const bob = await login(t.port, "bob", "pw-bob", { resource: "order" });
		const alice = await login(t.port, "alice", "pw-alice");
		const mark = bob.received.length;
		let burst = "";
		for (let i = 0; i < 300; i++)
			burst += `<message to='bob@localhost/order' id='o${i}'><body>${i}</body></message>`;
		alice.send(burst);
		const text = await bob.waitFor(/id="o299"/, mark);
		const ids = [...text.matchAll(/id="o(\d+)"/g)].map((m) => Number(m[1]));
		assert.deepEqual(
			ids,
			Array.from({ length: 300 }, (_, i) => i),
		);
		alice.end();
		bob.end();
	});

	test("a client that stops reading is dropped instead of buffered without bound; others are served", async () => {
		const sink = await login(t.port, "bob", "pw-bob", { resource: "sink" });
		sink.socket.pause(); // reads nothing from now on
		const sender = await login(t.port, "alice", "pw-alice", { resource: "flood" });
		const body = "x".repeat(200_000);
		for (let i = 0; i < 150 && !sink.socket.destroyed; i++) {
			sender.send(`<message to='bob@localhost/sink' id='f${i}'><body>${body}</body></message>`);
			if (i % 10 === 9) {
				// Wait for the server to have handled what was sent so far.
				const mark = sender.received.length;
				sender.send(`<iq type='get' id='fp${i}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
				await sender.waitFor(new RegExp(`id="fp${i}"`), mark, 30_000);
			}
		}
		// The sink's session is gone (its resource is no longer bound)...
		const host = t.server.hosts.get("localhost");
		for (let i = 0; i < 200 && host?.sessions.get("bob")?.has("sink"); i++)
			await new Promise((r) => setTimeout(r, 25));
		assert.equal(host?.sessions.get("bob")?.has("sink") ?? false, false);
		// ...and the sender is still served.
		const mark = sender.received.length;
		sender.send("<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
		await sender.waitFor(/id="alive"/, mark);
		sender.end();
		sink.end();
	});

	test("a closing tag from the client is answered with ours (RFC 6120 §4.4)", async () => {
		const c = await login(t.port, "alice", "pw-alice");
		const mark = c.received.length;
		c.send("</stream:stream>");
		await c.waitFor("</stream:stream>", mark);
		await c.waitClosed();
	});
});

describe("resource conflict policies (RFC 6120 §7.7.2.2)", () => {
	for (const policy of ["refuse", "rename"] as const) {
		test(`on_resource_conflict = "${policy}"`, async () => {
			const t = await startTestServer({
				config: {
					auth: { require_encryption: false, allow_plain_without_tls: true },
					sessions: { on_resource_conflict: policy },
				},
				users: [["alice@localhost", "pw"]],
			});
			try {
				const first = await login(t.port, "alice", "pw", { resource: "same" });
				const c = await RawClient.connect(t.port);
				c.open();
				await c.waitFor("</stream:features>");
				await authenticate(c, "alice", "pw", { mechanism: "PLAIN" });
				const mark = c.received.length;
				c.open();
				await c.waitFor("</stream:features>", mark);
				c.send(
					"<iq type='set' id='b2'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>same</resource></bind></iq>",
				);
				const answer = await c.waitFor(/<iq[^>]*id="b2"[\s\S]*?<\/iq>/, mark);
				if (policy === "refuse") {
					assert.match(answer, /type="error"/);
					assert.match(answer, /<conflict xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
				} else {
					assert.match(answer, /<jid>alice@localhost\/same\.[0-9a-f]{8}<\/jid>/);
				}
				// Either way the first session is untouched.
				assert.equal(first.closed, false);
				assert.doesNotMatch(first.received, /<conflict/);
				first.end();
				c.end();
			} finally {
				await t.stop();
			}
		});
	}
});

describe("limits", () => {
	test("a connection that does not authenticate in time gets connection-timeout (RFC 6120 §4.9.3.4)", async () => {
		const t = await startTestServer({ config: { limits: { auth_timeout: 0.3 } } });
		try {
			const c = await RawClient.connect(t.port);
			c.open();
			await expectStreamError(c, "connection-timeout");
		} finally {
			await t.stop();
		}
	});

	test("connections per IP are capped", async () => {
		const t = await startTestServer({
			config: { limits: { connections_per_ip: 2, exempt_ips: [] } },
		});
		try {
			const a = await RawClient.connect(t.port);
			const b = await RawClient.connect(t.port);
			a.open();
			await a.waitFor("</stream:features>");
			b.open();
			await b.waitFor("</stream:features>");
			const c = await RawClient.connect(t.port);
			await c.waitClosed();
			a.end();
			await a.waitClosed();
			// A freed slot can be used again (after the server has seen the close).
			let d: RawClient | null = null;
			for (let i = 0; i < 50 && !d; i++) {
				const attempt = await RawClient.connect(t.port);
				attempt.open();
				try {
					await attempt.waitFor("</stream:features>", 0, 2000);
					d = attempt;
				} catch {
					await new Promise((r) => setTimeout(r, 20));
				}
			}
			assert.ok(d, "a new connection is accepted once one closed");
			d.end();
			b.end();
		} finally {
			await t.stop();
		}
	});

	test("only connections that have not authenticated count against limits.unauthenticated_per_ip: logged-in clients may share an address (a NAT, a proxy)", async () => {
		const t = await startTestServer({
			users: [["alice@localhost", "pw-alice"]],
			config: {
				auth: { require_encryption: false, allow_plain_without_tls: true },
				limits: { unauthenticated_per_ip: 2, sasl_failures_per_ip: 0, exempt_ips: [] },
			},
		});
		const clients: RawClient[] = [];
		try {
			// Six sessions from 127.0.0.1: each counted only until its SASL success.
			for (let i = 0; i < 6; i++)
				clients.push(await login(t.port, "alice", "pw-alice", { resource: `r${i}` }));
			const a = await RawClient.connect(t.port);
			const b = await RawClient.connect(t.port);
			clients.push(a, b);
			for (const c of [a, b]) {
				c.open();
				await c.waitFor("</stream:features>");
			}
			const refused = await RawClient.connect(t.port);
			await refused.waitClosed();
			// a authenticates: its place is free at once, before its connection ends.
			assert.match(await authenticate(a, "alice", "pw-alice", {}), /<success/);
			const d = await RawClient.connect(t.port);
			clients.push(d);
			d.open();
			await d.waitFor("</stream:features>");
		} finally {
			for (const c of clients) c.end();
			await t.stop();
		}
	});

	test("loopback is exempt from the per-IP connection caps by default (limits.exempt_ips): a local proxy or load generator speaks for many", async () => {
		const t = await startTestServer({ config: { limits: { unauthenticated_per_ip: 2 } } });
		const clients: RawClient[] = [];
		try {
			for (let i = 0; i < 5; i++) {
				const c = await RawClient.connect(t.port);
				clients.push(c);
				c.open();
				await c.waitFor("</stream:features>");
			}
		} finally {
			for (const c of clients) c.end();
			await t.stop();
		}
	});

	test("repeated SASL failures close the connection with policy-violation (RFC 6120 §6.4.5)", async () => {
		const t = await startTestServer({
			config: {
				auth: { require_encryption: false, allow_plain_without_tls: true },
				limits: { sasl_failures_per_connection: 2, sasl_failures_per_ip: 0 },
			},
			users: [["alice@localhost", "pw"]],
		});
		try {
			const c = await RawClient.connect(t.port);
			c.open();
			await c.waitFor("</stream:features>");
			await authenticate(c, "alice", "no1", { mechanism: "PLAIN" });
			const mark = c.received.length;
			await authenticate(c, "alice", "no2", { mechanism: "PLAIN" });
			await expectStreamError(c, "policy-violation", mark);
		} finally {
			await t.stop();
		}
	});

	test("SIGTERM-style stop closes every stream with system-shutdown (RFC 6120 §4.9.3.22)", async () => {
		const t = await startTestServer({
			config: { auth: { require_encryption: false, allow_plain_without_tls: true } },
			users: [["alice@localhost", "pw"]],
		});
		const c = await login(t.port, "alice", "pw");
		const mark = c.received.length;
		await t.stop();
		await expectStreamError(c, "system-shutdown", mark);
	});
});
