/**
 * Closing a TCP stream the client closed first (RFC 6120 §4.4): the server answers with its own
 * closing tag, and since both streams are then closed it ends the TCP connection at once
 * instead of half-closing and waiting for the client's FIN. Observed without timing: with a
 * connection limit of one per address, a second connection is only accepted once the first
 * one's connection is released on the server.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, test } from "node:test";
import { startTestServer, type TestServer } from "../helpers/server.ts";

let t: TestServer;

before(async () => {
	t = await startTestServer({
		config: {
			auth: { require_encryption: false, allow_plain_without_tls: true },
			limits: { connections_per_ip: 1, exempt_ips: [] },
		},
		users: [["ann@localhost", "pw-ann"]],
	});
});
after(() => t.stop());

const HEADER =
	"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/** A socket that keeps its own side open after the server's FIN (allowHalfOpen). */
class HalfOpenClient {
	readonly socket: net.Socket;
	text = "";
	ended = false;
	closed = false;
	#wake: (() => void) | null = null;

	constructor(port: number) {
		this.socket = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
		this.socket.setEncoding("utf8");
		this.socket.on("data", (d: string) => {
			this.text += d;
			this.#wake?.();
		});
		this.socket.on("end", () => {
			this.ended = true;
			this.#wake?.();
		});
		this.socket.on("close", () => {
			this.closed = true;
			this.#wake?.();
		});
		this.socket.on("error", () => {});
	}

	/** Waits until `done()` holds; each step is an event, the timeout only a safety net. */
	async until(done: () => boolean, what: string, ms = 10_000): Promise<void> {
		const deadline = Date.now() + ms;
		while (!done()) {
			if (Date.now() > deadline) throw new Error(`no ${what}; received: ${this.text}`);
			await new Promise<void>((resolve) => {
				const timer = setTimeout(resolve, 100);
				this.#wake = () => {
					clearTimeout(timer);
					resolve();
				};
			});
		}
	}

	async expect(s: string, from: number): Promise<void> {
		await this.until(() => this.text.indexOf(s, from) >= 0 || this.ended, s);
		assert.ok(this.text.indexOf(s, from) >= 0, `${s} expected; received: ${this.text}`);
	}
}

async function loggedIn(): Promise<HalfOpenClient> {
	const c = new HalfOpenClient(t.port);
	c.socket.write(HEADER);
	await c.expect("</stream:features>", 0);
	let mark = c.text.length;
	const token = Buffer.from("\0ann\0pw-ann").toString("base64");
	c.socket.write(
		`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${token}</auth>`,
	);
	await c.expect("<success", mark);
	mark = c.text.length;
	c.socket.write(HEADER);
	await c.expect("</stream:features>", mark);
	mark = c.text.length;
	c.socket.write(
		"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>",
	);
	await c.expect("</iq>", mark);
	return c;
}

test("RFC 6120 §4.4: after the client's closing tag, ours, then the connection ends at once", async () => {
	const a = await loggedIn();
	const mark = a.text.length;
	// The client closes its stream but not its side of the TCP connection.
	a.socket.write("</stream:stream>");
	await a.until(() => a.ended, "FIN from the server");
	assert.equal(a.text.slice(mark), "</stream:stream>", "the closing tag, then FIN");
	assert.equal(a.closed, false, "the client's side is still open");

	// The server released the connection although the client never sent FIN: a new one from
	// the same address is accepted under the limit of one.
	const b = new HalfOpenClient(t.port);
	b.socket.write(HEADER);
	await b.until(() => b.text.includes("</stream:features>") || b.ended, "an answer");
	assert.match(b.text, /<stream:features>/, "second connection accepted");
	a.socket.destroy();
	// b closes first too, so the server releases it before the next test connects.
	b.socket.write("</stream:stream>");
	await b.until(() => b.ended, "FIN from the server");
	b.socket.destroy();
});

test("a stream the server ends first still waits for the client (RFC 6120 §4.4)", async () => {
	const a = await loggedIn();
	const mark = a.text.length;
	// A stream error ends the stream from the server's side (RFC 6120 §4.9.1.1): the server
	// sends its closing tag and half-closes, and the client may still send its own.
	a.socket.write("<garbage xmlns='urn:x'/>"); // §4.9.3.24 unsupported-stanza-type
	await a.until(() => a.ended, "FIN from the server");
	assert.match(a.text.slice(mark), /<stream:error>[\s\S]*<\/stream:stream>$/);
	// The server still holds the connection, waiting for the client's closing tag: the limit
	// of one refuses a second connection until the client closes.
	const b = new HalfOpenClient(t.port);
	b.socket.write(HEADER);
	await b.until(() => b.ended || b.text.includes("</stream:features>"), "an answer");
	assert.equal(b.text, "", "refused while the first is still open");
	a.socket.end("</stream:stream>");
	await a.until(() => a.closed, "close");
	b.socket.destroy();
});
