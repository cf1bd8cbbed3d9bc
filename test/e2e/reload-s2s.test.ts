/**
 * Issue 15 with federation: a reload that removes a host ends the server-to-server streams for
 * it too (incoming ones with `host-gone`, RFC 6120 §4.9.3.6), and leaves the streams of the
 * other hosts alone; a peer that writes to the removed domain afterwards gets an error back.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { xml } from "@xmpp/client";
import { configSchema } from "../../src/core/config/schema.ts";
import type { S2SManager } from "../../src/s2s/manager.ts";
import { freePort } from "../helpers/pg-cluster.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect, type XmppConnection } from "../helpers/xmpp-client.ts";

let a: TestServer;
let b: TestServer;

before(async () => {
	const [aS2s, bS2s] = await Promise.all([freePort(), freePort()]);
	a = await startTestServer({
		config: {
			hosts: { "a.test": {}, "gone.test": {} },
			listeners: { s2s: { enabled: true, address: "127.0.0.1", port: aS2s } },
			s2s: { routes: { "b.test": `127.0.0.1:${bS2s}` } },
		},
		users: [
			["alice@a.test", "alice-pw"],
			["dave@gone.test", "dave-pw"],
		],
	});
	b = await startTestServer({
		config: {
			hosts: { "b.test": {} },
			listeners: { s2s: { enabled: true, address: "127.0.0.1", port: bS2s } },
			s2s: { routes: { "a.test": `127.0.0.1:${aS2s}`, "gone.test": `127.0.0.1:${aS2s}` } },
		},
		users: [["bob@b.test", "bob-pw"]],
	});
});
after(async () => {
	await a?.stop();
	await b?.stop();
});

const login = (t: TestServer, user: string, domain: string): Promise<XmppConnection> =>
	connect(`xmpp://127.0.0.1:${t.port}`, user, `${user}-pw`, { domain, resource: "r" });

async function deliver(from: XmppConnection, to: XmppConnection, toJid: string, id: string) {
	await from.xmpp.send(xml("message", { to: toJid, type: "chat", id }, xml("body", {}, id)));
	await waitFor(() => to.stanzas.find((s) => s.attrs.id === id), `${id} to ${toJid}`);
}

const incomingFor = (t: TestServer, local: string) =>
	(t.server.remote as S2SManager)
		.streams()
		.filter((s) => s.direction === "incoming" && s.local === local);

test("a host removed by a reload: its s2s streams end, the other host's stay, and a peer writing to it gets an error", async () => {
	const alice = await login(a, "alice", "a.test");
	const dave = await login(a, "dave", "gone.test");
	const bob = await login(b, "bob", "b.test");
	try {
		await deliver(bob, dave, "dave@gone.test/r", "to-dave-1");
		await deliver(bob, alice, "alice@a.test/r", "to-alice-1");
		assert.equal(incomingFor(a, "gone.test").length, 1);
		assert.equal(incomingFor(a, "a.test").length, 1);

		const next = structuredClone(a.server.config);
		delete next.hosts["gone.test"];
		const report = await a.server.reload(configSchema.parse(next));
		assert.deepEqual(report, { applied: ["hosts.gone.test"], restartNeeded: [] });
		assert.deepEqual(incomingFor(a, "gone.test"), []);
		assert.equal(incomingFor(a, "a.test").length, 1);
		await waitFor(() => dave.xmpp.status !== "online", "dave's session to end");

		await bob.xmpp.send(
			xml(
				"message",
				{ to: "dave@gone.test/r", type: "chat", id: "to-dave-2" },
				xml("body", {}, "?"),
			),
		);
		const bounced = await waitFor(
			() => bob.stanzas.find((s) => s.attrs.id === "to-dave-2"),
			"the message to the removed host to come back",
		);
		assert.equal(bounced.attrs.type, "error");
		await deliver(bob, alice, "alice@a.test/r", "to-alice-2");
		await deliver(alice, bob, "bob@b.test/r", "to-bob-1");
	} finally {
		await alice.xmpp.stop();
		await bob.xmpp.stop();
		await dave.xmpp.stop().catch(() => {});
	}
});
