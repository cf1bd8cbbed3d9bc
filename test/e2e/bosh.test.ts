/**
 * BOSH (XEP-0124) carrying XMPP (XEP-0206), and endpoint discovery (XEP-0156), against a real
 * server over HTTPS with the fetch-based client in test/helpers/bosh.ts.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { BoshClient, NS_HTTPBIND } from "../helpers/bosh.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";

let t: TestServer;
let url: string;

before(async () => {
	t = await startTestServer({
		users: [
			["alice@localhost", "alice-secret"],
			["bob@localhost", "bob-secret"],
		],
		config: { http: { bosh: { max_wait: 30, inactivity: 2, max_pause: 60, polling: 0 } } },
	});
	url = `https://localhost:${t.httpsPort}/http-bind`;
});
after(() => t.stop());

const PLAIN_AUTH = (user: string, pw: string) =>
	`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${pw}`).toString("base64")}</auth>`;

function creationBody(rid: number, extra = ""): string {
	return `<body xmlns='${NS_HTTPBIND}' rid='${rid}' to='localhost' wait='5' hold='1' ver='1.11' xml:lang='en' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'${extra}/>`;
}

describe("session creation", () => {
	test("the response carries the session attributes and the stream features (XEP-0124 §7.1, XEP-0206 §4)", async () => {
		const c = new BoshClient(url);
		const res = await c.post(creationBody(c.rid++, " ack='1'").replace("wait='5'", "wait='120'"));
		assert.equal(res.status, 200);
		// XEP-0124 §4: responses are text/xml; charset=utf-8.
		assert.equal(res.headers.get("content-type"), "text/xml; charset=utf-8");
		const b = res.body;
		assert.equal(b.name, "body");
		assert.equal(b.ns, NS_HTTPBIND);
		assert.ok(b.attrs.sid && b.attrs.sid.length >= 16, "a sid");
		// XEP-0124 §7.1: the server may lower 'wait' (max_wait 30), never raise it.
		assert.equal(b.attrs.wait, "30");
		assert.equal(b.attrs.hold, "1");
		assert.equal(b.attrs.requests, "2");
		assert.equal(b.attrs.inactivity, "2");
		assert.equal(b.attrs.maxpause, "60");
		assert.ok(b.attrs.polling !== undefined);
		assert.equal(b.attrs.from, "localhost");
		assert.ok(b.attrs.authid, "authid is the stream id");
		// XEP-0124 §9.1: ack switched on with the creation request's rid.
		assert.equal(b.attrs.ack, String(c.rid - 1));
		// XEP-0206 §4 and §5.
		assert.equal(b.attrs["xmpp:version"], "1.0");
		assert.equal(b.attrs["xmpp:restartlogic"], "true");
		const features = b.getChild("features", "http://etherx.jabber.org/streams");
		assert.ok(features, "stream features in the body");
		const mechs = features
			.getChild("mechanisms")
			?.getChildren("mechanism")
			.map((m) => m.text());
		assert.ok(mechs?.includes("PLAIN") && mechs.includes("SCRAM-SHA-1"), String(mechs));
	});

	test("an unknown 'to' is host-unknown (XEP-0124 §17.2)", async () => {
		const c = new BoshClient(url);
		const res = await c.post(creationBody(1).replace("to='localhost'", "to='nowhere.example'"));
		assert.equal(res.body.attrs.type, "terminate");
		assert.equal(res.body.attrs.condition, "host-unknown");
	});

	test("plain HTTP is refused when the host requires encryption (RFC 6120 §5.3.1)", async () => {
		const c = new BoshClient(`http://127.0.0.1:${t.httpPort}/http-bind`);
		const res = await c.post(creationBody(1));
		assert.equal(res.body.attrs.type, "terminate");
		assert.equal(res.body.attrs.condition, "policy-violation");
	});
});

describe("chat over BOSH", () => {
	test("two BOSH clients log in (PLAIN, restart, bind) and exchange messages (XEP-0206)", async () => {
		const alice = new BoshClient(url);
		const bob = new BoshClient(url);
		assert.equal(await alice.login("alice", "alice-secret", "web"), "alice@localhost/web");
		assert.equal(await bob.login("bob", "bob-secret", "web"), "bob@localhost/web");
		alice.startPolling();
		bob.startPolling();
		try {
			alice.send("<presence xmlns='jabber:client'/>");
			bob.send("<presence xmlns='jabber:client'/>");
			alice.send(
				"<message xmlns='jabber:client' to='bob@localhost/web' type='chat' id='b1'><body>Hi Bob &amp; co</body></message>",
			);
			const m1 = await bob.waitFor((e) => e.name === "message" && e.attrs.id === "b1", "b1");
			// RFC 6120 §8.1.2.1: stamped with the sender's full JID.
			assert.equal(m1.attrs.from, "alice@localhost/web");
			assert.equal(m1.getChildText("body"), "Hi Bob & co");
			// XEP-0206 §6: stanzas in a body are qualified by jabber:client.
			assert.equal(m1.ns, "jabber:client");
			bob.send(
				"<message xmlns='jabber:client' to='alice@localhost' type='chat' id='b2'><body>Hello</body></message>",
			);
			const m2 = await alice.waitFor((e) => e.name === "message" && e.attrs.id === "b2", "b2");
			assert.equal(m2.attrs.from, "bob@localhost/web");
		} finally {
			await alice.terminate();
			await bob.terminate();
		}
	});

	test("stanzas in a terminate body are delivered before the session ends (XEP-0124 §13)", async () => {
		const alice = new BoshClient(url);
		const bob = new BoshClient(url);
		await alice.login("alice", "alice-secret", "last");
		await bob.login("bob", "bob-secret", "reader");
		bob.startPolling();
		try {
			const end = await alice.terminate(
				"<message xmlns='jabber:client' to='bob@localhost/reader' id='bye'><body>bye</body></message>",
			);
			assert.equal(end.attrs.type, "terminate");
			await bob.waitFor((e) => e.name === "message" && e.attrs.id === "bye", "the last message");
			// XEP-0124 §13: after terminate the sid is gone.
			const again = await alice.request();
			assert.equal(again.attrs.type, "terminate");
		} finally {
			await bob.terminate();
		}
	});

	test("an empty held request is answered after 'wait' (XEP-0124 §11)", async () => {
		const c = new BoshClient(url);
		await c.create({ wait: 1 });
		const body = await c.request();
		assert.equal(body.attrs.type, undefined);
		assert.equal(body.elements().length, 0);
		await c.terminate();
	});
});

describe("rid handling (XEP-0124 §14)", () => {
	test("a replayed rid gets the same response again (§14.3)", async () => {
		const c = new BoshClient(url);
		await c.create();
		const rid = c.rid++;
		const first = await c.post(c.bodyXml(rid, {}, PLAIN_AUTH("alice", "alice-secret")));
		assert.ok(first.body.getChild("success"), first.text);
		const replay = await c.post(c.bodyXml(rid, {}, PLAIN_AUTH("alice", "alice-secret")));
		assert.equal(replay.text, first.text);
		await c.terminate();
	});

	test("requests that arrive out of order are processed in rid order (§14.1)", async () => {
		const alice = new BoshClient(url);
		const bob = new BoshClient(url);
		await alice.login("alice", "alice-secret", "ooo");
		await bob.login("bob", "bob-secret", "ooo");
		bob.startPolling();
		try {
			const r1 = alice.rid++;
			const r2 = alice.rid++;
			const msg = (id: string) =>
				`<message xmlns='jabber:client' to='bob@localhost/ooo' id='${id}'><body>${id}</body></message>`;
			const later = alice.post(alice.bodyXml(r2, {}, msg("second")));
			await new Promise((r) => setTimeout(r, 50)); // let the later rid arrive first
			const earlier = alice.post(alice.bodyXml(r1, {}, msg("first")));
			await earlier;
			await bob.waitFor((e) => e.attrs.id === "second", "both messages");
			const ids = bob.received.filter((e) => e.name === "message").map((e) => e.attrs.id);
			assert.deepEqual(ids, ["first", "second"]);
			// The later request is held (hold=1) until the next one takes its place.
			void later.catch(() => {});
		} finally {
			await alice.terminate();
			await bob.terminate();
		}
	});

	test("a rid beyond the window terminates with item-not-found (§14.1)", async () => {
		const c = new BoshClient(url);
		const created = await c.create();
		const res = await c.post(c.bodyXml(c.rid + Number(created.attrs.requests)));
		assert.equal(res.body.attrs.type, "terminate");
		assert.equal(res.body.attrs.condition, "item-not-found");
		// The session is over: the next in-order request gets the terminal body too.
		assert.equal((await c.request()).attrs.type, "terminate");
	});

	test("an old rid that is no longer cached terminates with item-not-found (§14.3)", async () => {
		const c = new BoshClient(url);
		await c.create({ hold: 0 });
		// hold=0: each empty request is answered at once (polling is 0 on this server).
		for (let i = 0; i < 4; i++) await c.request();
		const res = await c.post(c.bodyXml(c.rid - 4));
		assert.equal(res.body.attrs.condition, "item-not-found");
	});
});

describe("bad input", () => {
	test("an unknown sid gets item-not-found with HTTP 200 (XEP-0124 §17.2)", async () => {
		const c = new BoshClient(url);
		c.sid = "no-such-session";
		const res = await c.post(c.bodyXml(1));
		assert.equal(res.status, 200);
		assert.equal(res.body.attrs.type, "terminate");
		assert.equal(res.body.attrs.condition, "item-not-found");
	});

	test("malformed or restricted XML, a wrong root and a missing rid are bad-request (XEP-0124 §17.2)", async () => {
		const c = new BoshClient(url);
		for (const text of [
			`<body xmlns='${NS_HTTPBIND}' rid='1'><unclosed></body>`,
			`<!DOCTYPE body [<!ENTITY x 'y'>]><body xmlns='${NS_HTTPBIND}' rid='1'/>`,
			`<body xmlns='${NS_HTTPBIND}' rid='1'><!-- comment --></body>`,
			`<html xmlns='${NS_HTTPBIND}' rid='1'/>`,
			`<body xmlns='urn:example' rid='1'/>`,
			`<body xmlns='${NS_HTTPBIND}' to='localhost'/>`,
			`<body xmlns='${NS_HTTPBIND}' rid='-4' to='localhost'/>`,
			"",
		]) {
			const res = await c.post(text);
			assert.equal(res.body.attrs.type, "terminate", text);
			assert.equal(res.body.attrs.condition, "bad-request", text);
		}
	});

	test("a body over the HTTP limit is policy-violation (XEP-0124 §17.2)", async () => {
		const c = new BoshClient(url);
		const res = await c.post(
			`<body xmlns='${NS_HTTPBIND}' rid='1'>${"x".repeat(300 * 1024)}</body>`,
		);
		assert.equal(res.status, 413);
		assert.equal(res.body.attrs.condition, "policy-violation");
	});

	test("a body over the pre-auth limit terminates the session with policy-violation", async () => {
		const c = new BoshClient(url);
		await c.create();
		const big = await c.request(
			{},
			`<message xmlns='jabber:client'><body>${"x".repeat(20_000)}</body></message>`,
		);
		assert.equal(big.attrs.condition, "policy-violation");
	});

	test("more simultaneous requests than 'requests' is policy-violation (XEP-0124 §12)", async () => {
		const c = new BoshClient(url);
		const created = await c.create();
		assert.equal(created.attrs.requests, "2");
		const n = c.rid;
		// rid n is held (hold=1) and rid n+2 waits for the gap at n+1: two requests in flight.
		const held = c.post(c.bodyXml(n));
		await new Promise((r) => setTimeout(r, 50)); // ordering aid only
		const ahead = c.post(c.bodyXml(n + 2));
		await new Promise((r) => setTimeout(r, 50));
		const third = await c.post(c.bodyXml(n + 1));
		assert.equal(third.body.attrs.type, "terminate");
		assert.equal(third.body.attrs.condition, "policy-violation");
		// Every request of the session gets the terminal answer.
		for (const r of await Promise.all([held, ahead])) assert.equal(r.body.attrs.type, "terminate");
	});

	test("a restart that is not due is bad-request (XEP-0206 §5)", async () => {
		const c = new BoshClient(url);
		await c.create();
		const res = await c.request({ "xmpp:restart": "true", "xmlns:xmpp": "urn:xmpp:xbosh" });
		assert.equal(res.attrs.condition, "bad-request");
	});

	test("stanzas before the restart after SASL end the stream (XEP-0206 §5)", async () => {
		const c = new BoshClient(url);
		await c.create();
		const ok = await c.request({}, PLAIN_AUTH("alice", "alice-secret"));
		assert.ok(ok.getChild("success"));
		const res = await c.request(
			{},
			"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
		);
		// XEP-0206 §7: stream errors travel as remote-stream-error with the stream:error inside.
		assert.equal(res.attrs.type, "terminate");
		assert.equal(res.attrs.condition, "remote-stream-error");
		assert.ok(res.getChild("error", "http://etherx.jabber.org/streams"));
	});

	test("a pause longer than maxpause is policy-violation; a valid one answers held requests (XEP-0124 §10)", async () => {
		const c = new BoshClient(url);
		await c.create();
		const paused = await c.request({ pause: "30" });
		assert.equal(paused.attrs.type, undefined);
		const tooLong = await c.request({ pause: "3600" });
		assert.equal(tooLong.attrs.condition, "policy-violation");
	});

	test("a session without requests ends after 'inactivity' and its resource goes away (XEP-0124 §7.1)", async () => {
		const c = new BoshClient(url);
		await c.login("bob", "bob-secret", "idle");
		const host = t.server.hosts.get("localhost");
		assert.ok(host?.sessions.get("bob")?.get("idle"), "bound");
		// inactivity is 2 s in this server's config; no request is pending now.
		await waitFor(() => !host?.sessions.get("bob")?.get("idle"), "the session to expire");
		assert.equal((await c.request()).attrs.type, "terminate");
	});

	test("GET is not BOSH: 405 with Allow (XEP-0124 §3)", async () => {
		const res = await fetch(url);
		assert.equal(res.status, 405);
		assert.match(res.headers.get("allow") ?? "", /POST/);
	});

	test("CORS preflight is answered for browsers on other origins", async () => {
		const res = await fetch(url, {
			method: "OPTIONS",
			headers: {
				origin: "https://chat.example",
				"access-control-request-method": "POST",
				"access-control-request-headers": "content-type",
			},
		});
		assert.ok(res.status === 204 || res.status === 200, String(res.status));
		assert.equal(res.headers.get("access-control-allow-origin"), "*");
		assert.match(res.headers.get("access-control-allow-methods") ?? "", /POST/);
	});
});

describe("shutdown", () => {
	test("stopping the server answers a held request with system-shutdown (RFC 6120 §4.9.3.22, XEP-0206 §7)", async () => {
		const s = await startTestServer({ users: [["carol@localhost", "carol-secret"]] });
		const c = new BoshClient(`https://localhost:${s.httpsPort}/http-bind`);
		await c.login("carol", "carol-secret");
		const held = c.request();
		await new Promise((r) => setTimeout(r, 50)); // ordering aid: the request is held first
		await s.stop();
		const body = await held;
		assert.equal(body.attrs.type, "terminate");
		assert.equal(body.attrs.condition, "remote-stream-error");
		assert.ok(
			body.getChild("error", "http://etherx.jabber.org/streams")?.getChild("system-shutdown"),
		);
	});
});

describe("discovery (XEP-0156)", () => {
	test("host-meta lists the BOSH and WebSocket endpoints (XEP-0156 §3)", async () => {
		const res = await fetch(`https://localhost:${t.httpsPort}/.well-known/host-meta`);
		assert.equal(res.status, 200);
		assert.match(res.headers.get("content-type") ?? "", /^application\/xrd\+xml/);
		const text = await res.text();
		assert.match(text, /<XRD xmlns='http:\/\/docs.oasis-open.org\/ns\/xri\/xrd-1.0'>/);
		assert.ok(
			text.includes(
				`<Link rel="urn:xmpp:alt-connections:xbosh" href="https://localhost:${t.httpsPort}/http-bind"/>`,
			),
			text,
		);
		assert.ok(
			text.includes(
				`<Link rel="urn:xmpp:alt-connections:websocket" href="wss://localhost:${t.httpsPort}/xmpp-websocket"/>`,
			),
			text,
		);
	});

	test("host-meta.json, with the host and scheme a trusted proxy forwarded (XEP-0156 §3)", async () => {
		const res = await fetch(`http://127.0.0.1:${t.httpPort}/.well-known/host-meta.json`, {
			headers: { "x-forwarded-host": "chat.example.org", "x-forwarded-proto": "https" },
		});
		assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
		assert.deepEqual(await res.json(), {
			links: [
				{ rel: "urn:xmpp:alt-connections:xbosh", href: "https://chat.example.org/http-bind" },
				{
					rel: "urn:xmpp:alt-connections:websocket",
					href: "wss://chat.example.org/xmpp-websocket",
				},
			],
		});
	});

	test("an unsafe Host header is not echoed into the links", async () => {
		const res = await fetch(`http://127.0.0.1:${t.httpPort}/.well-known/host-meta.json`, {
			headers: { "x-forwarded-host": 'evil"><script>' },
		});
		const json = (await res.json()) as { links: { href: string }[] };
		for (const l of json.links) assert.doesNotMatch(l.href, /evil|script/);
	});
});
