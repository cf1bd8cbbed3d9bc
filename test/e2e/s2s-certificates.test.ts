/**
 * Server-to-server authentication with certificates (RFC 6120 §13.7.2, XEP-0178): SASL
 * EXTERNAL between two Parley servers and with a real Prosody, the fallback to dialback when a
 * certificate does not prove the domain, and `s2s.secure_auth` refusing that fallback.
 * Certificates come from a test CA (test/helpers/test-ca.ts) that each server trusts through
 * `s2s.ca_file`.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { xml } from "@xmpp/client";
import { parseDocument } from "../../src/xml/parser.ts";
import { logCollector } from "../helpers/log-collector.ts";
import { freePort } from "../helpers/pg-cluster.ts";
import { type ProsodyServer, prosodySkip, startProsody } from "../helpers/prosody.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { serverCert, testCa, untrustedCa } from "../helpers/test-ca.ts";
import { trustCertificates } from "../helpers/tls.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect } from "../helpers/xmpp-client.ts";

const authenticated = (lines: Record<string, unknown>[], direction: string, remote: string) =>
	lines.find(
		(l) => l.msg === "s2s stream authenticated" && l.direction === direction && l.remote === remote,
	);

interface Peer {
	t: TestServer;
	log: ReturnType<typeof logCollector>;
	s2sPort: number;
	/** The certificate names the domain, so a client accepts it. */
	clientOk: boolean;
}

async function federatedServer(
	domain: string,
	s2sPort: number,
	opts: { certFor?: string[]; routes: Record<string, string>; s2s?: Record<string, unknown> },
): Promise<Peer> {
	const cert = await serverCert(opts.certFor ?? [domain]);
	const ca = await testCa();
	const log = logCollector();
	const t = await startTestServer({
		config: {
			hosts: { [domain]: { tls: { cert: cert.certPath, key: cert.keyPath } } },
			listeners: { s2s: { enabled: true, address: "127.0.0.1", port: s2sPort } },
			s2s: { routes: opts.routes, ca_file: ca.certPath, ...opts.s2s },
		},
		users: [[`u@${domain}`, "u-pw"]],
		log: log.stream,
	});
	return { t, log, s2sPort, clientOk: opts.certFor === undefined };
}

/**
 * u@fromDomain sends a chat message to u@toDomain, who is online. The sender is a client when
 * its server's certificate names its domain; otherwise the server routes the message itself (a
 * client would refuse that certificate), and only delivery is observed.
 */
async function sendAcross(
	from: Peer,
	fromDomain: string,
	to: Peer,
	toDomain: string,
	id: string,
	/** Stop waiting (and return null) once this holds: the sender's server gave up. */
	givenUp: () => boolean = () => false,
) {
	const receiver = await connect(`xmpp://localhost:${to.t.port}`, "u", "u-pw", {
		domain: toDomain,
		resource: "r",
	});
	const sender = from.clientOk
		? await connect(`xmpp://localhost:${from.t.port}`, "u", "u-pw", {
				domain: fromDomain,
				resource: "r",
			})
		: null;
	try {
		await receiver.xmpp.send(xml("presence"));
		const text = `<message xmlns='jabber:client' to='u@${toDomain}' type='chat' id='${id}'><body>over s2s</body></message>`;
		if (sender)
			await sender.xmpp.send(
				xml("message", { to: `u@${toDomain}`, type: "chat", id }, xml("body", {}, "over s2s")),
			);
		else {
			const stanza = parseDocument(text, { maxStanzaBytes: 10_000, maxDepth: 10 });
			stanza.ns = "jabber:client";
			stanza.attrs.from = `u@${fromDomain}/r`;
			await from.t.server.router.route(stanza);
		}
		return await waitFor(
			() =>
				receiver.stanzas.find((s) => s.is("message") && s.attrs.id === id) ??
				(givenUp() ? "given up" : undefined) ??
				sender?.stanzas.find(
					(s) => s.is("message") && s.attrs.id === id && s.attrs.type === "error",
				),
			`${id} delivered or bounced`,
			20_000,
		).then((r) => (typeof r === "string" ? null : r));
	} finally {
		await sender?.xmpp.stop();
		await receiver.xmpp.stop();
	}
}

describe("Parley to Parley with certificates", () => {
	let a: Peer;
	let b: Peer;
	let c: Peer;
	let d: Peer;

	before(async () => {
		const [pa, pb, pc, pd] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
		// The test clients check the servers' certificates against the test CA.
		trustCertificates([(await testCa()).certPath]);
		// a and b: certificates that prove their domains. c: a certificate for another name,
		// talking to b (dialback allowed) and to d (which holds everyone to certificates).
		a = await federatedServer("a.test", pa, { routes: { "b.test": `127.0.0.1:${pb}` } });
		b = await federatedServer("b.test", pb, {
			routes: { "a.test": `127.0.0.1:${pa}`, "c.test": `127.0.0.1:${pc}` },
		});
		c = await federatedServer("c.test", pc, {
			certFor: ["someone-else.test"],
			routes: { "b.test": `127.0.0.1:${pb}`, "d.test": `127.0.0.1:${pd}` },
		});
		d = await federatedServer("d.test", pd, {
			routes: { "c.test": `127.0.0.1:${pc}` },
			s2s: { secure_auth: true },
		});
	});
	after(async () => {
		for (const p of [a, b, c, d]) await p?.t.stop();
	});

	test("SASL EXTERNAL both ways when certificates prove the domains (XEP-0178 §3)", async () => {
		const m = await sendAcross(a, "a.test", b, "b.test", "e1");
		assert.equal(m?.attrs.type, "chat");
		assert.equal(authenticated(a.log.lines(), "outgoing", "b.test")?.auth, "external");
		assert.equal(authenticated(b.log.lines(), "incoming", "a.test")?.auth, "external");
	});

	test("a certificate for another name: no EXTERNAL, dialback instead (RFC 6120 §13.7.2.3)", async () => {
		const m = await sendAcross(c, "c.test", b, "b.test", "e2");
		assert.equal(m?.attrs.type, "chat");
		assert.equal(authenticated(b.log.lines(), "incoming", "c.test")?.auth, "dialback");
	});

	test("secure_auth: the same peer is refused, nothing is delivered (RFC 6120 §13.7.2.3)", async () => {
		const failed = () =>
			c.log.lines().some((l) => l.msg === "s2s outgoing stream failed" && l.remote === "d.test");
		const m = await sendAcross(c, "c.test", d, "d.test", "e3", failed);
		assert.equal(m, null, "not delivered");
		assert.equal(authenticated(d.log.lines(), "incoming", "c.test"), undefined);
		// c gave up on d.test and bounced what was waiting (RFC 6120 §8.3.3.16).
		assert.ok(
			c.log.lines().some((l) => l.msg === "s2s outgoing stream failed" && l.remote === "d.test"),
		);
	});
});

describe("Parley and Prosody with certificates", { skip: prosodySkip }, () => {
	let prosody: ProsodyServer;
	let parley: Peer;

	before(async () => {
		const ca = await testCa();
		prosody = await startProsody({
			domain: "prosody.test",
			users: [["u", "u-pw"]],
			trustCa: ca.certPath,
		});
		const s2sPort = await freePort();
		parley = await federatedServer("parley.test", s2sPort, {
			routes: { "prosody.test": `${prosody.address}:${prosody.s2sPort}` },
		});
		prosody.setRoute("parley.test", "127.0.0.1", s2sPort);
		trustCertificates([ca.certPath]);
	});
	after(async () => {
		await parley?.t.stop();
		await prosody?.stop();
	});

	test("chat both ways over streams authenticated with SASL EXTERNAL (XEP-0178)", async () => {
		const paul = await connect(`xmpp://localhost:${parley.t.port}`, "u", "u-pw", {
			domain: "parley.test",
			resource: "p",
		});
		const pam = await connect(`xmpp://localhost:${prosody.c2sPort}`, "u", "u-pw", {
			domain: "prosody.test",
			resource: "q",
		});
		try {
			await paul.xmpp.send(xml("presence"));
			await pam.xmpp.send(xml("presence"));
			await paul.xmpp.send(
				xml("message", { to: "u@prosody.test/q", type: "chat", id: "x1" }, xml("body", {}, "hi")),
			);
			await waitFor(
				() => pam.stanzas.find((s) => s.is("message") && s.attrs.id === "x1"),
				"Prosody's user to get it",
				20_000,
			);
			await pam.xmpp.send(
				xml("message", { to: "u@parley.test/p", type: "chat", id: "x2" }, xml("body", {}, "hi")),
			);
			await waitFor(
				() => paul.stanzas.find((s) => s.is("message") && s.attrs.id === "x2"),
				"Parley's user to get the answer",
				20_000,
			);
			const lines = parley.log.lines();
			assert.equal(authenticated(lines, "outgoing", "prosody.test")?.auth, "external");
			assert.equal(authenticated(lines, "incoming", "prosody.test")?.auth, "external");
		} finally {
			await paul.xmpp.stop();
			await pam.xmpp.stop();
		}
	});
});

describe("Prosody with s2s_secure_auth and a Parley certificate it cannot verify", {
	skip: prosodySkip,
}, () => {
	let prosody: ProsodyServer;
	let parley: Peer;

	before(async () => {
		const ca = await testCa();
		prosody = await startProsody({
			domain: "strict.test",
			users: [["u", "u-pw"]],
			// No trustCa: Prosody cannot verify Parley's certificate, which the test CA issued.
			secureAuth: true,
		});
		const s2sPort = await freePort();
		// Prosody refuses Parley's certificate for EXTERNAL, and s2s_secure_auth refuses dialback.
		parley = await federatedServer("parley.test", s2sPort, {
			routes: { "strict.test": `${prosody.address}:${prosody.s2sPort}` },
		});
		prosody.setRoute("parley.test", "127.0.0.1", s2sPort);
		trustCertificates([ca.certPath]);
	});
	after(async () => {
		await parley?.t.stop();
		await prosody?.stop();
	});

	test("a message to it comes back to its sender as an error, payload kept, nothing delivered (RFC 6120 §8.3.3.16, §13.7.2.3)", async () => {
		const pam = await connect(`xmpp://localhost:${prosody.c2sPort}`, "u", "u-pw", {
			domain: "strict.test",
			resource: "q",
		});
		const paul = await connect(`xmpp://localhost:${parley.t.port}`, "u", "u-pw", {
			domain: "parley.test",
			resource: "p",
		});
		try {
			await pam.xmpp.send(xml("presence"));
			await paul.xmpp.send(xml("presence"));
			await paul.xmpp.send(
				xml("message", { to: "u@strict.test/q", type: "chat", id: "s1" }, xml("body", {}, "hi")),
			);
			const back = await waitFor(
				() => paul.stanzas.find((s) => s.is("message") && s.attrs.id === "s1"),
				"the message to come back",
				20_000,
			);
			assert.equal(back.attrs.type, "error");
			assert.equal(back.getChildText("body"), "hi");
			assert.equal(
				pam.stanzas.find((s) => s.attrs.id === "s1"),
				undefined,
			);
			// And Prosody's user, writing to Parley, hears from Prosody that it cannot be reached.
			await pam.xmpp.send(
				xml("message", { to: "u@parley.test/p", type: "chat", id: "s2" }, xml("body", {}, "hi")),
			);
			const back2 = await waitFor(
				() => pam.stanzas.find((s) => s.is("message") && s.attrs.id === "s2"),
				"Prosody to bounce its user's message",
				20_000,
			);
			assert.equal(back2.attrs.type, "error");
			assert.equal(
				paul.stanzas.find((s) => s.attrs.id === "s2"),
				undefined,
			);
		} finally {
			await paul.xmpp.stop();
			await pam.xmpp.stop();
		}
	});
});

describe("Parley with secure_auth and a Prosody certificate it cannot verify", {
	skip: prosodySkip,
}, () => {
	let prosody: ProsodyServer;
	let parley: Peer;

	before(async () => {
		const ca = await testCa();
		// Prosody's certificate names its domain but comes from a CA Parley does not trust.
		prosody = await startProsody({
			domain: "lax.test",
			users: [["u", "u-pw"]],
			cert: await serverCert(["lax.test"], { issuer: "untrusted" }),
			trustCa: ca.certPath,
		});
		const s2sPort = await freePort();
		parley = await federatedServer("parley.test", s2sPort, {
			routes: { "lax.test": `${prosody.address}:${prosody.s2sPort}` },
			s2s: { secure_auth: true },
		});
		prosody.setRoute("parley.test", "127.0.0.1", s2sPort);
		// The clients trust both CAs; only Parley's s2s (ca_file: the test CA) does not.
		trustCertificates([ca.certPath, (await untrustedCa()).certPath]);
	});
	after(async () => {
		await parley?.t.stop();
		await prosody?.stop();
	});

	test("no dialback either way: each side's message comes back to its sender (RFC 6120 §13.7.2.3, §8.3.3.16)", async () => {
		const paul = await connect(`xmpp://localhost:${parley.t.port}`, "u", "u-pw", {
			domain: "parley.test",
			resource: "p",
		});
		const pam = await connect(`xmpp://localhost:${prosody.c2sPort}`, "u", "u-pw", {
			domain: "lax.test",
			resource: "q",
		});
		try {
			await paul.xmpp.send(xml("presence"));
			await pam.xmpp.send(xml("presence"));
			await paul.xmpp.send(
				xml("message", { to: "u@lax.test/q", type: "chat", id: "l1" }, xml("body", {}, "hi")),
			);
			const back = await waitFor(
				() => paul.stanzas.find((s) => s.is("message") && s.attrs.id === "l1"),
				"Parley to bounce its user's message",
				20_000,
			);
			assert.equal(back.attrs.type, "error");
			await pam.xmpp.send(
				xml("message", { to: "u@parley.test/p", type: "chat", id: "l2" }, xml("body", {}, "hi")),
			);
			const back2 = await waitFor(
				() => pam.stanzas.find((s) => s.is("message") && s.attrs.id === "l2"),
				"Prosody to bounce its user's message",
				20_000,
			);
			assert.equal(back2.attrs.type, "error");
			assert.equal(
				pam.stanzas.find((s) => s.attrs.id === "l1"),
				undefined,
			);
			assert.equal(
				paul.stanzas.find((s) => s.attrs.id === "l2"),
				undefined,
			);
			assert.equal(authenticated(parley.log.lines(), "incoming", "lax.test"), undefined);
		} finally {
			await paul.xmpp.stop();
			await pam.xmpp.stop();
		}
	});
});
