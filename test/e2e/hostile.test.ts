/**
 * A battery of hostile and broken input, before and after authentication, on every c2s port.
 * Whatever each one gets (a stream error, a closed connection), the server must keep serving a
 * client that was logged in all along (RFC 6120 §4.9: errors end one stream, not the server).
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { RawClient } from "../helpers/raw.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

let t: TestServer;
let witness: RawClient;

before(async () => {
	t = await startTestServer({
		config: {
			auth: { require_encryption: false, allow_plain_without_tls: true },
			limits: { sasl_failures_per_ip: 0, connections_per_ip: 0 },
		},
		users: [
			["alice@localhost", "pw-alice"],
			["mallory@localhost", "pw-mallory"],
		],
	});
	witness = await login(t.port, "alice", "pw-alice", { resource: "witness" });
});
after(async () => {
	witness.end();
	await t.stop();
});

let pings = 0;
async function stillServing(): Promise<void> {
	const id = `w${pings++}`;
	const mark = witness.received.length;
	witness.send(`<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
	await witness.waitFor(new RegExp(`id="${id}"`), mark);
}

const HEADER =
	"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

const preauth: [string, string | Buffer][] = [
	["binary garbage", Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x80, 0x81, 0xc0, 0xc1])],
	["an HTTP request", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"],
	["a TLS ClientHello on the plain port", Buffer.from("16030100a5010000a10303", "hex")],
	[
		"a header with 10k attributes",
		`<stream:stream ${Array.from({ length: 10_000 }, (_, i) => `a${i}='x'`).join(" ")}>`,
	],
	["a 1 MB attribute value", `<stream:stream to='${"x".repeat(1_000_000)}'>`],
	["a 2000-deep nesting", `${HEADER}${"<a>".repeat(2000)}`],
	[
		"a billion-laughs entity bomb",
		`<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>${HEADER}`,
	],
	[
		"an external entity",
		`<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>${HEADER}<message>&e;</message>`,
	],
	[
		"invalid UTF-8 inside a stanza",
		Buffer.concat([
			Buffer.from(`${HEADER}<message><body>`),
			Buffer.from([0xc3, 0x28]),
			Buffer.from("</body></message>"),
		]),
	],
	[
		"an overlong UTF-8 encoding of '<'",
		Buffer.concat([Buffer.from(HEADER), Buffer.from([0xc0, 0xbc])]),
	],
	["a stream header twice", `${HEADER}${HEADER}`],
	[
		"an unknown host name of 3000 bytes",
		`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='${"a".repeat(3000)}' version='1.0'>`,
	],
	[
		"SASL with broken base64",
		`${HEADER}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!!not base64!!!</auth>`,
	],
	[
		"SASL with an unknown mechanism",
		`${HEADER}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-EVIL'/>`,
	],
	[
		"a SCRAM response without a challenge",
		`${HEADER}<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>Yz1iaXdz</response>`,
	],
	[
		"a 9 KB PLAIN password",
		`${HEADER}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0alice\0${"p".repeat(7000)}`).toString("base64")}</auth>`,
	],
	[
		"bind before authentication",
		`${HEADER}<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>`,
	],
	["a stream closed before it opened", "</stream:stream>"],
	[
		"many namespace declarations",
		`${HEADER}<message ${Array.from({ length: 90 }, (_, i) => `xmlns:p${i}='urn:${i}'`).join(" ")}/>`,
	],
];

for (const [what, bytes] of preauth) {
	test(`before authentication: ${what}`, async () => {
		const c = await RawClient.connect(t.port);
		c.send(bytes);
		// Most of these end the stream at once; some (a SASL failure) rightly leave it open.
		await c.waitClosed(1000).catch(() => undefined);
		c.end();
		await stillServing();
	});
}

const postauth: [string, string][] = [
	[
		"a message to a 3000-byte JID",
		`<message to='${"a".repeat(3000)}@localhost'><body>x</body></message>`,
	],
	["an IQ with no id and two payloads", "<iq type='set'><a xmlns='urn:a'/><b xmlns='urn:b'/></iq>"],
	["presence to a malformed JID", "<presence to='@@@' type='subscribe'/>"],
	[
		"a roster set for someone else",
		"<iq type='set' id='r' to='alice@localhost'><query xmlns='jabber:iq:roster'><item jid='x@y'/></query></iq>",
	],
	[
		"a roster item with a 2 KB group",
		`<iq type='set' id='r2'><query xmlns='jabber:iq:roster'><item jid='x@localhost'><group>${"g".repeat(2048)}</group></item></query></iq>`,
	],
	[
		"a vCard set for someone else",
		"<iq type='set' id='v' to='alice@localhost'><vCard xmlns='vcard-temp'><FN>pwned</FN></vCard></iq>",
	],
	[
		"private storage in jabber:client",
		"<iq type='set' id='p'><query xmlns='jabber:iq:private'><message xmlns='jabber:client'/></query></iq>",
	],
	[
		"a self-subscription flood",
		Array.from({ length: 200 }, () => "<presence to='mallory@localhost' type='subscribe'/>").join(
			"",
		),
	],
	[
		"a directed-presence flood",
		Array.from({ length: 300 }, (_, i) => `<presence to='u${i}@localhost/r'/>`).join(""),
	],
	[
		"an error answered with an error",
		"<message to='alice@localhost/witness' type='error' id='e'><error type='cancel'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
	],
	[
		"a second SASL attempt after binding",
		"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHB3LWFsaWNl</auth>",
	],
	[
		"a stanza over the post-auth size limit",
		`<message to='alice@localhost'><body>${"z".repeat(300_000)}</body></message>`,
	],
];

for (const [what, xml] of postauth) {
	test(`after binding: ${what}`, async () => {
		const c = await login(t.port, "mallory", "pw-mallory", { resource: `m${Math.random()}` });
		c.send(xml);
		// Either the stream is ended with an error or it keeps going; a ping on it settles which.
		c.send("<iq type='get' id='after' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
		await c.waitFor(/id="after"|<\/stream:stream>/, 0, 15_000).catch(() => undefined);
		c.end();
		await stillServing();
	});
}

test("after binding: a stanza in jabber:server (as if from another server, with a forged 'from') ends the stream with unsupported-stanza-type (RFC 6120 §4.9.3.24)", async () => {
	const c = await login(t.port, "mallory", "pw-mallory", { resource: "ns" });
	// A server stanza keeps its 'from'; on a client stream it must not be taken as one, nor
	// stamped and delivered as the client's own.
	c.send(
		"<message xmlns='jabber:server' from='alice@localhost/other' to='alice@localhost/witness'><body>jabber:server forgery</body></message>",
	);
	await c.waitFor(/<unsupported-stanza-type/);
	await c.waitClosed();
	await stillServing();
	assert.doesNotMatch(witness.received, /jabber:server forgery/);
});

test("nothing the hostile client sent reached alice except what was addressed to her", () => {
	// The vCard and roster sets "for someone else" must not have changed alice's data, and no
	// stanza claiming to be from alice was forged (RFC 6120 §8.1.2.1).
	assert.doesNotMatch(witness.received, /pwned/);
	assert.doesNotMatch(witness.received, /from="alice@localhost\/witness"[^>]*type="subscribe"/);
});

test("a half-open TCP connection that never sends anything is closed by the auth timeout", async () => {
	const s = await startTestServer({ config: { limits: { auth_timeout: 0.3 } } });
	try {
		const socket = net.connect({ port: s.port, host: "127.0.0.1" });
		socket.resume(); // read (and drop) the stream error, so the end of the stream is seen
		await new Promise<void>((resolve) => socket.once("close", () => resolve()));
	} finally {
		await s.stop();
	}
});

/**
 * Connections that never get as far as a stream: every port closes them within
 * `limits.auth_timeout`, so sockets that send nothing (or half a request) cannot pile up
 * (RFC 6120 §4.9.3.4 connection-timeout, where a stream exists).
 */
describe("silent connections on every port are closed after limits.auth_timeout", () => {
	let s: TestServer;
	before(async () => {
		s = await startTestServer({
			config: {
				limits: { auth_timeout: 0.3 },
				listeners: {
					s2s: { enabled: true, address: "127.0.0.1", port: 0 },
					s2s_direct_tls: { enabled: true, address: "127.0.0.1", port: 0 },
				},
			},
		});
	});
	after(() => s.stop());

	/** Resolves with what the server wrote once it closed the connection. */
	function closedBy(port: number, first?: string): Promise<string> {
		return new Promise((resolve) => {
			const socket = net.connect({ port, host: "127.0.0.1" }, () => {
				if (first) socket.write(first);
			});
			let got = "";
			socket.setEncoding("utf8");
			socket.on("data", (d: string) => {
				got += d;
			});
			socket.on("error", () => {});
			socket.once("close", () => resolve(got));
		});
	}

	test("HTTP: nothing sent, or request headers never finished (slowloris)", {
		timeout: 10_000,
	}, async () => {
		await closedBy(s.httpPort);
		await closedBy(s.httpPort, "POST /http-bind HTTP/1.1\r\nHost: localhost\r\nX-A: ");
	});
	test("TLS ports: no handshake ever started (c2s direct TLS, HTTPS, s2s direct TLS)", {
		timeout: 10_000,
	}, async () => {
		await closedBy(s.tlsPort);
		await closedBy(s.httpsPort);
		await closedBy(s.server.port("s2s_direct_tls"));
	});
	test("s2s: nothing sent, or a stream that never authenticates gets connection-timeout", {
		timeout: 10_000,
	}, async () => {
		await closedBy(s.server.port("s2s"));
		const got = await closedBy(
			s.server.port("s2s"),
			"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='a.example' to='localhost' version='1.0'>",
		);
		assert.match(got, /<connection-timeout/);
	});
});

test("XEP-0220: one s2s stream has at most 8 dialback claims verified at once; more get resource-constraint", {
	timeout: 20_000,
}, async () => {
	// Every claim sends us to the claimed domain's server: here one that accepts and never
	// answers, so the verifications stay pending.
	const silent = net.createServer((sock) => sock.on("error", () => {}));
	await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
	const port = (silent.address() as net.AddressInfo).port;
	const domains = Array.from({ length: 12 }, (_, i) => `d${i}.example`);
	const s = await startTestServer({
		config: {
			listeners: { s2s: { enabled: true, address: "127.0.0.1", port: 0 } },
			s2s: {
				require_encryption: false,
				routes: Object.fromEntries(domains.map((d) => [d, `127.0.0.1:${port}`])),
			},
		},
	});
	try {
		const c = await RawClient.connect(s.server.port("s2s"));
		c.send(
			"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='d0.example' to='localhost' version='1.0'>",
		);
		await c.waitFor("</stream:features>");
		for (const d of domains) c.send(`<db:result from='${d}' to='localhost'>00ff</db:result>`);
		await c.waitFor(/(<db:result[^>]*type="error"[\s\S]*?<\/db:result>[\s\S]*){4}/);
		const refused = [...c.received.matchAll(/<db:result[^>]*to="([^"]+)"[^>]*type="error"/g)].map(
			(m) => m[1],
		);
		assert.deepEqual(refused, domains.slice(8));
		assert.match(c.received, /<resource-constraint/);
		assert.equal(c.closed, false, "XEP-0220 §2.4: the stream stays open");
		c.end();
	} finally {
		await s.stop();
		silent.close();
	}
});

for (const [listener, limit] of [
	["c2s_direct_tls", "unauthenticated_per_ip"],
	["s2s_direct_tls", "unauthenticated_per_ip"],
	["http", "connections_per_ip"],
	["https", "connections_per_ip"],
] as const) {
	test(`${listener}: a connection counts against limits.${limit} from its TCP accept (before any handshake or request)`, {
		timeout: 20_000,
	}, async () => {
		const s = await startTestServer({
			config: {
				limits: { [limit]: 2, exempt_ips: [] },
				listeners: { [listener]: { enabled: true, address: "127.0.0.1", port: 0 } },
				// Loopback is a trusted proxy by default, whose connections are not counted.
				http: { trusted_proxies: [] },
			},
		});
		const port = s.server.port(listener);
		const open: net.Socket[] = [];
		const connect = () => {
			const c = net.connect({ port, host: "127.0.0.1" }).on("error", () => {});
			open.push(c);
			return c;
		};
		try {
			// Two silent connections (no ClientHello) take the address's two places...
			const held = [connect(), connect()];
			await Promise.all(held.map((h) => new Promise((r) => h.once("connect", r))));
			// ...so a third is closed at once (it would otherwise wait for limits.auth_timeout, 60 s).
			const third = connect();
			await new Promise<void>((r) => third.once("close", () => r()));
			assert.ok(
				held.every((h) => !h.destroyed),
				"the first two are still open",
			);
		} finally {
			for (const o of open) o.destroy();
			await s.stop();
		}
	});
}

test("a direct TLS client that logs in gives back its unauthenticated place (taken at its TCP accept)", {
	timeout: 20_000,
}, async () => {
	const s = await startTestServer({
		config: { limits: { unauthenticated_per_ip: 1, exempt_ips: [] } },
		users: [["alice@localhost", "pw"]],
	});
	try {
		const first = await login(s.tlsPort, "alice", "pw", { tls: true, resource: "one" });
		const second = await login(s.tlsPort, "alice", "pw", { tls: true, resource: "two" });
		first.end();
		second.end();
	} finally {
		await s.stop();
	}
});

test("a message flood from one client: another client's message is delivered while the flood is still being handled (RFC 6120 §10.1 per sender, not globally)", {
	timeout: 60_000,
}, async () => {
	const s = await startTestServer({
		config: { auth: { require_encryption: false, allow_plain_without_tls: true } },
		users: [
			["alice@localhost", "a"],
			["bob@localhost", "b"],
			["mallory@localhost", "m"],
		],
	});
	const clients: RawClient[] = [];
	try {
		const alice = await login(s.port, "alice", "a", { resource: "a" });
		const bob = await login(s.port, "bob", "b", { resource: "b" });
		const mallory = await login(s.port, "mallory", "m", { resource: "flood" });
		clients.push(alice, bob, mallory);
		const N = 10_000;
		mallory.send(
			Array.from(
				{ length: N },
				(_, i) => `<message to='mallory@localhost/flood' id='f${i}'><body>${i}</body></message>`,
			).join(""),
		);
		await mallory.waitFor('id="f10"');
		bob.send("<message to='alice@localhost/a' id='bob'><body>hello</body></message>");
		await alice.waitFor(/id="bob"/, 0, 30_000);
		// Each stream is handled in order on its own (and a flooder's socket is paused past 64
		// queued elements), so Bob's one message did not wait behind the whole flood.
		const handled = mallory.received.match(/id="f\d+"/g)?.length ?? 0;
		assert.ok(handled < N, `Bob's message waited for all ${N} of Mallory's`);
		await mallory.waitFor(`id="f${N - 1}"`, 0, 30_000);
	} finally {
		for (const c of clients) c.end();
		await s.stop();
	}
});
