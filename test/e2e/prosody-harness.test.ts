/**
 * The Prosody harness itself (test/helpers/prosody.ts, test/helpers/test-ca.ts), before any
 * Parley s2s code exists: a real Prosody starts with test-CA certificates, a client logs in to
 * it over STARTTLS trusting only the test CA, Prosody's s2s port answers a raw connection
 * (Parley -> Prosody), and a stanza for a user at the Parley test domain makes Prosody connect
 * to the address it is routed to, where a scripted peer takes it through STARTTLS and SASL
 * EXTERNAL with the test certificates until the stanza arrives (Prosody -> Parley).
 * Skipped, saying why, without /usr/bin/prosody (.ci/run installs Debian's prosody).
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import tls from "node:tls";
import { xml } from "@xmpp/client";
import { type ProsodyServer, prosodySkip, startProsody } from "../helpers/prosody.ts";
import { type ServerCert, serverCert, type TestCa, testCa } from "../helpers/test-ca.ts";
import { connect } from "../helpers/xmpp-client.ts";

const PARLEY = "parley.test";
const STREAM_NS = "xmlns:stream='http://etherx.jabber.org/streams'";

/** Text received on a socket that may be upgraded to TLS, with waits on it. */
class Wire {
	text = "";
	closed = false;
	socket: net.Socket;
	#wake: (() => void)[] = [];
	constructor(socket: net.Socket) {
		this.socket = socket;
		this.#attach(socket);
	}
	#attach(socket: net.Socket): void {
		socket.on("data", (d: Buffer) => {
			this.text += d.toString("utf8");
			for (const w of this.#wake.splice(0)) w();
		});
		socket.on("close", () => {
			this.closed = true;
			for (const w of this.#wake.splice(0)) w();
		});
		socket.on("error", () => {});
	}
	/** Swaps in the TLS socket that now carries the stream, and forgets what came before. */
	secure(socket: tls.TLSSocket): void {
		this.socket = socket;
		this.text = "";
		this.#attach(socket);
	}
	send(s: string): void {
		this.socket.write(s);
	}
	async waitFor(pattern: RegExp, ms = 10_000): Promise<RegExpExecArray> {
		const end = Date.now() + ms;
		for (;;) {
			const m = pattern.exec(this.text);
			if (m) {
				this.text = this.text.slice(m.index + m[0].length);
				return m;
			}
			if (this.closed) throw new Error(`closed before ${pattern}; had: ${this.text}`);
			if (Date.now() > end) throw new Error(`no ${pattern} within ${ms} ms; had: ${this.text}`);
			await new Promise<void>((resolve) => {
				const t = setTimeout(resolve, end - Date.now());
				this.#wake.push(() => {
					clearTimeout(t);
					resolve();
				});
			});
		}
	}
}

/** Server side of STARTTLS on an accepted socket; resolves once the handshake is done. */
function acceptTls(socket: net.Socket, cert: ServerCert, ca: TestCa): Promise<tls.TLSSocket> {
	socket.removeAllListeners("data");
	socket.removeAllListeners("close");
	const server = tls.createServer({
		key: cert.keyPem,
		cert: cert.certPem,
		ca: [ca.certPem],
		requestCert: true,
		rejectUnauthorized: false,
	});
	return new Promise((resolve, reject) => {
		server.once("secureConnection", resolve);
		server.once("tlsClientError", reject);
		server.emit("connection", socket);
	});
}

describe("Prosody harness", { skip: prosodySkip }, () => {
	let ca: TestCa;
	let parleyCert: ServerCert;
	let prosody: ProsodyServer;
	before(async () => {
		ca = await testCa();
		parleyCert = await serverCert([PARLEY]);
		prosody = await startProsody({
			domain: "prosody.test",
			muc: "rooms.prosody.test",
			users: [["alice", "alice-pw"]],
			trustCa: ca.certPath,
			secureAuth: true,
		});
		// Trust only the test CA in this process, so a client that logs in proves the chain.
		tls.setDefaultCACertificates([ca.certPem]);
	});
	after(async () => {
		await prosody?.stop();
	});

	test("Prosody's s2s port: stream header, STARTTLS with the test CA, then SASL EXTERNAL offered", async () => {
		const w = new Wire(net.connect(prosody.s2sPort, prosody.address));
		const open = `<?xml version='1.0'?><stream:stream xmlns='jabber:server' ${STREAM_NS} to='prosody.test' from='${PARLEY}' version='1.0'>`;
		w.send(open);
		await w.waitFor(/<stream:stream [^>]*from='prosody\.test'/);
		await w.waitFor(/<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required\/>/);
		await w.waitFor(/<\/stream:features>/);
		w.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
		await w.waitFor(/<proceed/);
		w.socket.removeAllListeners("data");
		const secure = tls.connect({
			socket: w.socket,
			servername: "prosody.test",
			ca: [ca.certPem],
			key: parleyCert.keyPem,
			cert: parleyCert.certPem,
		});
		await new Promise<void>((resolve, reject) => {
			secure.once("secureConnect", resolve);
			secure.once("error", reject);
		});
		assert.equal(secure.authorized, true, String(secure.authorizationError));
		w.secure(secure);
		w.send(open);
		const [features] = await w.waitFor(/<stream:features>[\s\S]*?<\/stream:features>/);
		// Prosody verified Parley's client certificate against the trusted test CA (RFC 6120 §6.4).
		assert.match(features, /<mechanism>EXTERNAL<\/mechanism>/);
		secure.destroy();
	});

	test("a client logs in to Prosody over STARTTLS, trusting only the test CA", async () => {
		const c = await connect(`xmpp://127.0.0.1:${prosody.c2sPort}`, "alice", "alice-pw", {
			domain: "prosody.test",
		});
		try {
			assert.match(c.jid, /^alice@prosody\.test\//);
		} finally {
			await c.xmpp.stop();
		}
	});

	test("a stanza for the Parley domain reaches the routed address, through TLS and SASL EXTERNAL", async () => {
		// A scripted receiving server on another loopback address than Prosody's.
		const accepted: net.Socket[] = [];
		const peer = net.createServer((s) => accepted.push(s));
		await new Promise<void>((resolve) => peer.listen(0, "127.0.0.2", resolve));
		const { port } = peer.address() as net.AddressInfo;
		prosody.setRoute(PARLEY, "127.0.0.2", port);
		const c = await connect(`xmpp://127.0.0.1:${prosody.c2sPort}`, "alice", "alice-pw", {
			domain: "prosody.test",
		});
		try {
			await c.xmpp.send(
				xml("message", { to: `bob@${PARLEY}`, type: "chat", id: "m1" }, xml("body", {}, "hi")),
			);
			const deadline = Date.now() + 10_000;
			while (!accepted[0] && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
			const socket = accepted[0];
			assert.ok(socket, `no connection to the routed address; Prosody's log:\n${prosody.log()}`);
			const w = new Wire(socket);
			await w.waitFor(new RegExp(`<stream:stream [^>]*to='${PARLEY}'`));
			const reply = `<?xml version='1.0'?><stream:stream xmlns='jabber:server' ${STREAM_NS} from='${PARLEY}' to='prosody.test' id='s1' version='1.0'>`;
			w.send(
				`${reply}<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>`,
			);
			await w.waitFor(/<starttls/);
			w.send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
			const secure = await acceptTls(socket, parleyCert, ca);
			// Prosody 0.12.3 sends no SNI over s2s STARTTLS (net.server sets it only for direct
			// TLS), so a receiving server picks its certificate from the stream's 'to', not SNI.
			assert.ok(!secure.servername || secure.servername === PARLEY, String(secure.servername));
			// Prosody presents its own certificate, which the test CA issued for its domain.
			assert.equal(secure.authorized, true, String(secure.authorizationError));
			assert.match(secure.getPeerX509Certificate()?.subjectAltName ?? "", /DNS:prosody\.test/);
			w.secure(secure);
			await w.waitFor(new RegExp(`<stream:stream [^>]*to='${PARLEY}'`));
			w.send(
				`${reply.replace("s1", "s2")}<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms></stream:features>`,
			);
			const [, authzid] = await w.waitFor(/<auth [^>]*mechanism='EXTERNAL'[^>]*>([^<]*)<\/auth>/);
			assert.equal(Buffer.from(authzid as string, "base64").toString(), "prosody.test");
			w.send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
			await w.waitFor(/<stream:stream /);
			w.send(`${reply.replace("s1", "s3")}<stream:features/>`);
			const [message] = await w.waitFor(/<message [\s\S]*?<\/message>/);
			assert.match(message, new RegExp(`to='bob@${PARLEY}'`));
			assert.match(message, /<body>hi<\/body>/);
			// Prosody checked the scripted peer's certificate too (chain and name).
			await prosody.waitForLog("certificate chain validation result: valid");
			await prosody.waitForLog("certificate identity validation result: valid");
			secure.destroy();
		} finally {
			await c.xmpp.stop();
			peer.close();
			prosody.removeRoute(PARLEY);
		}
	});

	test("a second Prosody without the test CA offers dialback, not EXTERNAL", async () => {
		const other = await startProsody({ domain: "other.test" });
		try {
			assert.notEqual(other.s2sPort, prosody.s2sPort);
			const w = new Wire(net.connect(other.s2sPort, other.address));
			const open = `<?xml version='1.0'?><stream:stream xmlns='jabber:server' ${STREAM_NS} to='other.test' from='${PARLEY}' version='1.0'>`;
			w.send(open);
			await w.waitFor(/<\/stream:features>/);
			w.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
			await w.waitFor(/<proceed/);
			w.socket.removeAllListeners("data");
			const secure = tls.connect({
				socket: w.socket,
				servername: "other.test",
				ca: [ca.certPem],
				key: parleyCert.keyPem,
				cert: parleyCert.certPem,
			});
			await new Promise<void>((resolve, reject) => {
				secure.once("secureConnect", resolve);
				secure.once("error", reject);
			});
			w.secure(secure);
			w.send(open);
			const [features] = await w.waitFor(/<stream:features>[\s\S]*?<\/stream:features>/);
			assert.doesNotMatch(features, /EXTERNAL/);
			assert.match(features, /<dialback xmlns='urn:xmpp:features:dialback'/);
			secure.destroy();
		} finally {
			await other.stop();
		}
	});
});
