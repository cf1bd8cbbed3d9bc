/**
 * A bug must cost one connection, not the server: an exception thrown while a connection's bytes
 * are handled (a parser or stream bug, injected here by wrapping StreamParser.write) closes that
 * stream with internal-server-error (RFC 6120 §4.9.3.8) on a client stream, or drops the
 * connection on a server-to-server one, and every other session goes on. Before the guards such
 * an exception was uncaught in the socket's data handler and ended `parley serve` (Psi's header
 * did it once, issue 14's desktop sweep).
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, test } from "node:test";
import { StreamParser } from "../../src/xml/parser.ts";
import { RawClient } from "../helpers/raw.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

const MARK = "<injected-fault/>";
let t: TestServer;
const original = StreamParser.prototype.write;

before(async () => {
	t = await startTestServer({
		users: [["alice@localhost", "pw-alice"]],
		config: {
			auth: { require_encryption: false, allow_plain_without_tls: true },
			listeners: { s2s: { enabled: true, address: "127.0.0.1", port: 0 } },
		},
	});
	StreamParser.prototype.write = function (chunk: Buffer | string): void {
		if (String(chunk).includes(MARK)) throw new Error("injected fault");
		original.call(this, chunk);
	};
});

after(async () => {
	StreamParser.prototype.write = original;
	await t.stop();
});

/** Alice logs in and the server answers her ping (XEP-0199): it is still serving. */
async function stillServing(): Promise<void> {
	const alice = await login(t.port, "alice", "pw-alice", { resource: `r${Math.random()}` });
	const mark = alice.received.length;
	alice.send("<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
	await alice.waitFor(
		/<iq[^>]*id="alive"[^>]*type="result"|<iq[^>]*type="result"[^>]*id="alive"/,
		mark,
	);
	alice.end();
}

test("c2s: the stream whose bytes threw gets internal-server-error; the server goes on", async () => {
	const bad = await RawClient.connect(t.port);
	bad.open();
	await bad.waitFor("</stream:features>");
	bad.send(MARK);
	await bad.waitFor("<internal-server-error");
	await bad.waitClosed();
	assert.match(
		bad.received,
		/<stream:error><internal-server-error xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/,
	);
	await stillServing();
});

test("s2s: the connection whose bytes threw is dropped; the server goes on", async () => {
	const port = t.server.port("s2s");
	const socket = net.connect(port, "127.0.0.1");
	await new Promise<void>((resolve, reject) => {
		socket.once("connect", resolve);
		socket.once("error", reject);
	});
	const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
	socket.on("error", () => {});
	socket.write(
		"<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' " +
			`xmlns:db='jabber:server:dialback' to='localhost' from='peer.example' version='1.0'>${MARK}`,
	);
	await closed;
	await stillServing();
});
