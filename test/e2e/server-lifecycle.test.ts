/**
 * A Server instance's life cycle in one process: start, stop, start again on the same ports
 * with nothing left behind; modules loaded and unloaded per host at runtime; a module that
 * throws costs the sender an error, never the server.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createServer } from "../../src/app/server.ts";
import { type Config, configSchema } from "../../src/core/config/schema.ts";
import type { Connection } from "../../src/core/contracts.ts";
import { HANDLED } from "../../src/core/events.ts";
import { createSilentLogger } from "../../src/core/log.ts";
import { defineModule, type ModuleDefinition } from "../../src/core/modules/define.ts";
import type { StanzaEvent } from "../../src/core/router.ts";
import type { Server } from "../../src/core/server.ts";
import { MemoryBackend } from "../../src/storage/memory.ts";
import { resultFor } from "../../src/xmpp/stanza.ts";
import type { RawClient } from "../helpers/raw.ts";
import { iq as sendIq } from "../helpers/raw-stanzas.ts";
import { waitFor } from "../helpers/wait.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

const PLAIN_AUTH = { require_encryption: false, allow_plain_without_tls: true };

/** Every listener the schema knows (c2s, direct TLS, HTTP, ...) on loopback; port 0 unless given. */
function makeConfig(dataDir: string, ports: Record<string, number> = {}): Config {
	// Every listener, those off by default (s2s) too: all of them must come and go cleanly.
	const listeners: Record<string, { enabled: true; address: string; port: number }> = {};
	for (const kind of Object.keys(configSchema.parse({}).listeners))
		listeners[kind] = { enabled: true, address: "127.0.0.1", port: ports[kind] ?? 0 };
	return configSchema.parse({
		server: { data_dir: dataDir },
		auth: PLAIN_AUTH,
		listeners,
		storage: { backend: "memory" },
		// The component port (XEP-0114) opens only when there is an external component.
		components: { "gateway.localhost": { type: "external", secret: "s3cret" } },
	});
}

/** Open server sockets and client sockets of this process (what a leak would leave behind). */
function openHandles(): { servers: number; sockets: number } {
	const info = process.getActiveResourcesInfo();
	return {
		servers: info.filter((r) => r === "TCPServerWrap").length,
		sockets: info.filter((r) => r === "TCPSocketWrap").length,
	};
}

/** Sends an IQ get and waits for the answer with the same id. */
const iq = (c: RawClient, id: string, body: string, to = "localhost"): Promise<string> =>
	sendIq(c, id, `<iq type='get' id='${id}' to='${to}'>${body}</iq>`);

const PING = "<ping xmlns='urn:xmpp:ping'/>";
const DISCO_INFO = "<query xmlns='http://jabber.org/protocol/disco#info'/>";

test("create, start, stop, create again on the same ports three times; nothing is left behind", async () => {
	const dataDir = mkdtempSync(join(tmpdir(), "parley-lifecycle-"));
	try {
		const baseline = openHandles();
		// The admin API is opened by the Supervisor (src/admin/), not by a Server.
		const kinds = Object.keys(configSchema.parse({}).listeners).filter((k) => k !== "admin");
		let ports: Record<string, number> = {};
		for (let round = 0; round < 3; round++) {
			const server = createServer(makeConfig(dataDir, ports), {
				log: createSilentLogger(),
				storage: new MemoryBackend(),
			});
			await server.start();
			assert.equal(server.state, "running");
			const bound = Object.fromEntries(kinds.map((k) => [k, server.port(k)]));
			if (round === 0) ports = bound;
			else assert.deepEqual(bound, ports, "the same ports again");
			const c2sPort = server.port("c2s");
			assert.equal(server.hosts.size, 1);
			assert.equal(server.listeners.length, kinds.length);

			const host = server.hosts.get("localhost");
			assert.ok(host);
			await host.accounts.create("alice", "pw");
			const c = await login(c2sPort, "alice", "pw", { resource: `r${round}` });
			assert.equal(server.streams.size, 1);
			assert.match(await iq(c, "p", PING), /type="result"/, "XEP-0199 §4.2 ping answered");

			await server.stop();
			// RFC 6120 §4.9.3.22: the open stream is closed with system-shutdown.
			const text = await c.waitFor("</stream:stream>");
			assert.match(text, /<system-shutdown xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>/);
			await c.waitClosed();
			assert.equal(server.state, "stopped");
			assert.equal(server.hosts.size, 0);
			assert.equal(server.listeners.length, 0);
			assert.equal(server.streams.size, 0);
			assert.equal(host.events.has("iq-get/host/urn:xmpp:ping:ping"), false, "hooks removed");
			assert.deepEqual(host.modules.loaded, []);
			assert.throws(() => server.storage, /not open/);
			await assert.rejects(server.start(), /cannot start a server that is stopped/);
			// Listening sockets are closed; the client socket closes on its own.
			await waitFor(
				() => openHandles().servers === baseline.servers,
				"the listening sockets to close",
			);
			await waitFor(() => openHandles().sockets <= baseline.sockets, "the sockets to close");
		}
	} finally {
		rmSync(dataDir, { recursive: true, force: true });
	}
});

test("stop() twice, and stop() of a server that failed to start, are harmless", async () => {
	const dataDir = mkdtempSync(join(tmpdir(), "parley-lifecycle-"));
	try {
		const a = createServer(makeConfig(dataDir), {
			log: createSilentLogger(),
			storage: new MemoryBackend(),
		});
		await a.start();
		// A second server on a port that is taken fails to start and cleans up after itself.
		const b = createServer(makeConfig(dataDir, { c2s: a.port("c2s") }), {
			log: createSilentLogger(),
			storage: new MemoryBackend(),
		});
		await assert.rejects(b.start(), /EADDRINUSE/);
		assert.equal(b.state, "stopped");
		assert.equal(b.hosts.size, 0);
		assert.equal(b.listeners.length, 0);
		await b.stop();
		await a.stop();
		await a.stop();
		assert.equal(a.state, "stopped");
	} finally {
		rmSync(dataDir, { recursive: true, force: true });
	}
});

test("a stream added while the server stops is closed with system-shutdown", async () => {
	const dataDir = mkdtempSync(join(tmpdir(), "parley-lifecycle-"));
	try {
		const a = createServer(makeConfig(dataDir), {
			log: createSilentLogger(),
			storage: new MemoryBackend(),
		});
		await a.start();
		// A connection accepted between closing the streams and closing the listeners (not
		// reproducible over a socket without timing): what a listener does, on a stopping server.
		const closes: (string | undefined)[] = [];
		const late: Connection = {
			close: (condition) => {
				closes.push(condition);
				a.streams.delete(late);
			},
			whenIdle: () => Promise.resolve(),
		};
		// Accepted once stop() has closed the open streams: added from the close of one of them.
		const open: Connection = {
			close: () => {
				a.streams.delete(open);
				assert.equal(a.state, "stopping");
				a.streams.add(late);
			},
			whenIdle: () => Promise.resolve(),
		};
		a.streams.add(open);
		await a.stop();
		// RFC 6120 §4.9.3.22: the server is being shut down.
		assert.deepEqual(closes, ["system-shutdown"]);
		assert.equal(a.streams.size, 0);
	} finally {
		rmSync(dataDir, { recursive: true, force: true });
	}
});

describe("modules at runtime", () => {
	let dataDir: string;
	let server: Server;
	let port: number;
	const boomHandled: string[] = [];

	/** A test module whose handlers throw (ServerOptions.modules). */
	const boom = defineModule({
		name: "boom",
		description: "throws on purpose",
		load(api) {
			api.addFeature("urn:test:boom");
			api.hook("iq-get/host/urn:test:boom:query", () => {
				throw new Error("a bug in a module");
			});
			api.hook("iq-get/host/urn:test:boom-async:query", async () => {
				await Promise.resolve();
				throw new TypeError("an async bug in a module");
			});
			api.hook("message/host", ({ stanza }: StanzaEvent) => {
				boomHandled.push(stanza.attrs.id ?? "");
				throw new Error("a bug in a message handler");
			});
			api.hook("iq-get/host/urn:test:fine:query", ({ stanza, origin }: StanzaEvent) => {
				origin?.send(resultFor(stanza));
				return HANDLED;
			});
		},
	});

	before(async () => {
		dataDir = mkdtempSync(join(tmpdir(), "parley-modules-"));
		const raw = makeConfig(dataDir);
		const localhost = raw.hosts.localhost;
		assert.ok(localhost);
		localhost.modules.push("boom");
		server = createServer(raw, {
			log: createSilentLogger(),
			storage: new MemoryBackend(),
			modules: [boom as ModuleDefinition<never>],
		});
		await server.start();
		port = server.port("c2s");
		await server.hosts.get("localhost")?.accounts.create("alice", "pw");
		await server.hosts.get("localhost")?.accounts.create("bob", "pw");
	});
	after(async () => {
		await server.stop();
		rmSync(dataDir, { recursive: true, force: true });
	});

	test("unload('ping') -> service-unavailable and no urn:xmpp:ping in disco#info; load('ping') -> back (XEP-0199, RFC 6120 §8.4, XEP-0030 §3.1)", async () => {
		const host = server.hosts.get("localhost");
		assert.ok(host);
		const c = await login(port, "alice", "pw", { resource: "mods" });
		try {
			assert.match(await iq(c, "p1", PING), /type="result"/);
			assert.match(await iq(c, "d1", DISCO_INFO), /var="urn:xmpp:ping"/);

			await host.modules.unload("ping");
			assert.equal(host.modules.isLoaded("ping"), false);
			// RFC 6120 §8.4: an IQ nobody handles gets service-unavailable.
			const unanswered = await iq(c, "p2", PING);
			assert.match(unanswered, /type="error"/);
			assert.match(
				unanswered,
				/<service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/,
			);
			// XEP-0030 §3.1: features come from the loaded modules only.
			const info = await iq(c, "d2", DISCO_INFO);
			assert.doesNotMatch(info, /urn:xmpp:ping/);
			assert.match(info, /var="http:\/\/jabber.org\/protocol\/disco#info"/);

			await host.modules.load("ping");
			assert.match(await iq(c, "p3", PING), /type="result"/);
			assert.match(await iq(c, "d3", DISCO_INFO), /var="urn:xmpp:ping"/);
		} finally {
			c.end();
		}
	});

	test("a handler that throws: the sender gets internal-server-error and the server keeps serving (RFC 6120 §8.3.3.6)", async () => {
		const alice = await login(port, "alice", "pw", { resource: "boom" });
		const bob = await login(port, "bob", "pw", { resource: "other" });
		try {
			for (const [id, ns] of [
				["b1", "urn:test:boom"],
				["b2", "urn:test:boom-async"],
			] as const) {
				const reply = await iq(alice, id, `<query xmlns='${ns}'/>`);
				assert.match(reply, /type="error"/);
				assert.match(
					reply,
					/<internal-server-error xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/>/,
				);
				// RFC 6120 §8.3.1: the error echoes the original payload.
				assert.match(reply, new RegExp(`<query xmlns="${ns}"/>`));
			}
			// A message handler that throws: a message to the server gets the error too.
			const mark = alice.received.length;
			alice.send("<message to='localhost' id='m1' type='chat'><body>hi</body></message>");
			const err = await alice.waitFor(/<message[^>]*id="m1"[\s\S]*?<\/message>/, mark);
			assert.match(err, /type="error"/);
			assert.match(err, /internal-server-error/);
			assert.deepEqual(boomHandled, ["m1"]);

			// The same stream goes on (RFC 6120 §10.1: the next stanza is processed) ...
			assert.match(await iq(alice, "p", PING), /type="result"/);
			assert.match(await iq(alice, "f", "<query xmlns='urn:test:fine'/>"), /type="result"/);
			// ... and so do other sessions and delivery between them.
			const mark2 = bob.received.length;
			alice.send(
				"<message to='bob@localhost/other' id='m2' type='chat'><body>still here</body></message>",
			);
			await bob.waitFor(/<body>still here<\/body>/, mark2);
			assert.equal(server.state, "running");
			assert.equal(alice.closed, false);
		} finally {
			alice.end();
			bob.end();
		}
	});
});
