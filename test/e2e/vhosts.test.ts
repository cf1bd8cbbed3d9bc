/**
 * Virtual hosts: two domains in one server. Accounts are separate per host, each host presents
 * its own certificate (SNI, RFC 6125 / RFC 6120 §13.7.1.2), and a message from one host's user
 * to the other's is delivered like a local one (RFC 6120 §10.5, RFC 6121 §8.5).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type tls from "node:tls";
import { generateSelfSigned } from "../../src/tls/certs.ts";
import { RawClient } from "../helpers/raw.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

let t: TestServer;
let certDir: string;

before(async () => {
	certDir = mkdtempSync(join(tmpdir(), "parley-vhost-certs-"));
	// One certificate per host, so that which one is presented shows that SNI chose it.
	const a = await generateSelfSigned(["a.example"], join(certDir, "a"));
	const b = await generateSelfSigned(["b.example"], join(certDir, "b"));
	t = await startTestServer({
		config: {
			hosts: { "a.example": { tls: a }, "b.example": { tls: b } },
		},
		users: [
			["alice@a.example", "alice-on-a"],
			["alice@b.example", "alice-on-b"],
			["bob@b.example", "bob-on-b"],
		],
	});
});
after(async () => {
	await t.stop();
	rmSync(certDir, { recursive: true, force: true });
});

test("each host has its own accounts (DESIGN: hosts are isolated)", async () => {
	const a = t.server.hosts.get("a.example");
	const b = t.server.hosts.get("b.example");
	assert.ok(a && b);
	assert.deepEqual(await a.accounts.list(), ["alice"]);
	assert.deepEqual((await b.accounts.list()).sort(), ["alice", "bob"]);
});

test("same username on both hosts with different passwords: each logs in with its own (RFC 6120 §6)", async () => {
	const onA = await login(t.tlsPort, "alice", "alice-on-a", { host: "a.example", tls: true });
	const onB = await login(t.tlsPort, "alice", "alice-on-b", {
		host: "b.example",
		tls: true,
		mechanism: "SCRAM-SHA-256",
	});
	assert.match(onA.received, /<jid>alice@a\.example\//, "RFC 6120 §7: bound on a.example");
	assert.match(onB.received, /<jid>alice@b\.example\//, "RFC 6120 §7: bound on b.example");
	onA.end();
	onB.end();
});

test("alice@a.example's password does not open alice@b.example, and bob exists only on b (RFC 6120 §6.5.10 not-authorized)", async () => {
	await assert.rejects(
		login(t.tlsPort, "alice", "alice-on-a", { host: "b.example", tls: true }),
		/authentication failed: <failure[^>]*><not-authorized\/>/,
	);
	await assert.rejects(
		login(t.tlsPort, "alice", "alice-on-b", {
			host: "a.example",
			tls: true,
			mechanism: "SCRAM-SHA-1",
		}),
		/authentication failed: <failure[^>]*><not-authorized\/>/,
	);
	await assert.rejects(
		login(t.tlsPort, "bob", "bob-on-b", { host: "a.example", tls: true }),
		/authentication failed: <failure[^>]*><not-authorized\/>/,
	);
});

function sanOf(c: RawClient): string {
	return (c.socket as tls.TLSSocket).getPeerCertificate().subjectaltname ?? "";
}

test("direct TLS to b.example presents b.example's certificate, a.example's to a.example (SNI, XEP-0368 §3)", async () => {
	const toB = await RawClient.connect(t.tlsPort, { tls: true, servername: "b.example" });
	const toA = await RawClient.connect(t.tlsPort, { tls: true, servername: "a.example" });
	try {
		assert.match(sanOf(toB), /DNS:b\.example\b/);
		assert.doesNotMatch(sanOf(toB), /a\.example/);
		assert.match(sanOf(toA), /DNS:a\.example\b/);
		assert.doesNotMatch(sanOf(toA), /b\.example/);
	} finally {
		toB.end();
		toA.end();
	}
});

test("STARTTLS on a stream to b.example presents b.example's certificate (RFC 6120 §5.4.3.3, SNI)", async () => {
	const c = await RawClient.connect(t.port);
	try {
		c.open("b.example");
		await c.waitFor("</stream:features>");
		c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
		await c.waitFor("<proceed");
		await c.startTls("b.example");
		assert.match(sanOf(c), /DNS:b\.example\b/);
		assert.doesNotMatch(sanOf(c), /a\.example/);
	} finally {
		c.end();
	}
});

test("alice@a.example messages bob@b.example/res and back: delivered like local delivery (RFC 6121 §8.5.3.1, §8.5.2.1.1)", async () => {
	const alice = await login(t.tlsPort, "alice", "alice-on-a", {
		host: "a.example",
		tls: true,
		resource: "desk",
	});
	const bob = await login(t.tlsPort, "bob", "bob-on-b", {
		host: "b.example",
		tls: true,
		resource: "res",
	});
	try {
		// To the full JID.
		let mark = bob.received.length;
		alice.send(
			"<message to='bob@b.example/res' type='chat' id='x1'><body>hello from a</body></message>",
		);
		const got = await bob.waitFor(/<message[\s\S]*?<\/message>/, mark);
		assert.match(got, /from="alice@a\.example\/desk"/, "RFC 6120 §8.1.2.1: from stamped");
		assert.match(got, /to="bob@b\.example\/res"/);
		assert.match(got, /<body>hello from a<\/body>/);

		// Back to the bare JID (delivered to the available resource after presence).
		// RFC 6121 §4.2.2: the server sends alice's initial presence back to her; once it is
		// there, she is available for messages to her bare JID.
		mark = alice.received.length;
		alice.send("<presence/>");
		await alice.waitFor(/<presence from="alice@a\.example\/desk"/, mark);
		mark = alice.received.length;
		bob.send("<message to='alice@a.example' type='chat' id='x2'><body>hi from b</body></message>");
		const back = await alice.waitFor(/<message[^>]*id="x2"[\s\S]*?<\/message>/, mark);
		assert.match(back, /from="bob@b\.example\/res"/);
		assert.match(back, /<body>hi from b<\/body>/);

		// An account that does not exist on the other host: RFC 6121 §8.5.1 service-unavailable.
		mark = alice.received.length;
		alice.send("<message to='nobody@b.example' type='chat' id='x3'><body>?</body></message>");
		const err = await alice.waitFor(/<message[^>]*id="x3"[\s\S]*?<\/message>/, mark);
		assert.match(err, /type="error"/);
		assert.match(err, /<service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/);
	} finally {
		alice.end();
		bob.end();
	}
});
