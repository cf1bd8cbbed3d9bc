/**
 * Guest access (issue 20) in a cluster: two nodes in this process on the local Redis (private
 * prefix) and one shared SQLite file. The anonymous host's data stays in each node's memory;
 * sessions, routing and the MUC service (which runs on the leader, docs/architecture.md
 * "Cluster") are the cluster's. A guest on node 2 enters a room on node 1 and talks with an
 * account holder there, and the two write to each other directly.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, test } from "node:test";
import type { XmlElement } from "@xmpp/client";
import { xml } from "@xmpp/client";
import { Redis } from "ioredis";
import type { ClusterLink } from "../../src/cluster/link.ts";
import { spawnChildNode, testCluster } from "../helpers/cluster-node.ts";
import { freePort } from "../helpers/pg-cluster.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { redisSkip, TEST_REDIS_URL } from "../helpers/services.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect, connectAnonymous, type XmppConnection } from "../helpers/xmpp-client.ts";

const PREFIX = `parley-anon-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const GUEST = "guest.localhost";
const MUC = "conference.localhost";
const GUEST_JID = /^([0-9a-f]{32})@guest\.localhost\/.+$/;

const node = (name: string) => ({
	auth: { require_encryption: false, allow_plain_without_tls: true },
	hosts: {
		localhost: {},
		[GUEST]: { authentication: "anonymous" as const, anonymous: { max_sessions: 2 } },
	},
	components: { [MUC]: { type: "muc" as const } },
	cluster: testCluster(PREFIX, name),
});

let n1: TestServer;
let n2: TestServer;
const conns: XmppConnection[] = [];

describe("guests in a cluster", { skip: redisSkip }, () => {
	before(async () => {
		n1 = await startTestServer({
			storage: "sqlite",
			config: node("node-1"),
			users: [["alice@localhost", "alice-pw"]],
		});
		n2 = await startTestServer({ storage: "sqlite", dataDir: n1.dataDir, config: node("node-2") });
	});

	after(async () => {
		for (const c of conns) await c.xmpp.stop().catch(() => {});
		await n2?.stop();
		await n1?.stop();
		const r = new Redis(TEST_REDIS_URL);
		const keys = await r.keys(`${PREFIX}:*`);
		if (keys.length) await r.del(...keys);
		await r.quit();
	});

	const stanzaFrom = (conn: XmppConnection, pred: (s: XmlElement) => boolean, what: string) =>
		waitFor(() => conn.stanzas.find(pred), what);

	const remoteSessions = (t: TestServer) =>
		(t.server.cluster as ClusterLink | null)?.remoteSessions;

	test("a guest on node 2 and an account holder on node 1 share a room on the leader and write to each other (XEP-0045 §7.2, §7.4; RFC 6121 §8.5)", async () => {
		await waitFor(() => n1.server.cluster?.leader === true, "node 1 leading");
		assert.notEqual(n2.server.cluster?.leader, true);
		const alice = await connect(`xmpp://127.0.0.1:${n1.port}`, "alice", "alice-pw", {
			mechanism: "PLAIN",
		});
		conns.push(alice);
		const guest = await connectAnonymous(`ws://127.0.0.1:${n2.httpPort}/xmpp-websocket`, {
			domain: GUEST,
		});
		conns.push(guest);
		const local = GUEST_JID.exec(guest.jid)?.[1] as string;
		assert.ok(local, guest.jid);
		// The guest's session is node 2's; node 1 knows of it through the cluster.
		assert.ok(n2.server.hosts.get(GUEST)?.sessions.has(local));
		await waitFor(async () => {
			// With the sharded registry a node knows of another's session once it looks it up.
			const g = n1.server.hosts.get(GUEST);
			const l = n2.server.hosts.get("localhost");
			if (g) await n1.server.cluster?.resolve?.(g, local);
			if (l) await n2.server.cluster?.resolve?.(l, "alice");
			return remoteSessions(n1) === 1 && remoteSessions(n2) === 1;
		}, "sessions replicated");
		assert.ok(n1.server.hosts.get(GUEST)?.sessions.has(local), "node 1 sees the guest");

		const room = `guests@${MUC}`;
		const enter = async (conn: XmppConnection, nick: string) => {
			await conn.xmpp.send(
				xml(
					"presence",
					{ to: `${room}/${nick}` },
					xml("x", { xmlns: "http://jabber.org/protocol/muc" }),
				),
			);
			// §7.2.2: the self-presence carries status 110.
			return stanzaFrom(
				conn,
				(s) =>
					s.is("presence") &&
					s.attrs.from === `${room}/${nick}` &&
					(s
						.getChild("x", "http://jabber.org/protocol/muc#user")
						?.children.some(
							(st) => typeof st !== "string" && st.name === "status" && st.attrs.code === "110",
						) ??
						false),
				`${nick} in`,
			);
		};
		await enter(alice, "alice");
		// §10.1.2: an instant room.
		await alice.xmpp.iqCaller.set(
			xml(
				"query",
				{ xmlns: "http://jabber.org/protocol/muc#owner" },
				xml("x", { xmlns: "jabber:x:data", type: "submit" }),
			),
			room,
		);
		await enter(guest, "guest");
		// §7.2.3: each sees the other.
		await stanzaFrom(
			alice,
			(s) => s.is("presence") && s.attrs.from === `${room}/guest`,
			"guest seen",
		);
		await stanzaFrom(
			guest,
			(s) => s.is("presence") && s.attrs.from === `${room}/alice`,
			"alice seen",
		);

		await guest.xmpp.send(
			xml("message", { to: room, type: "groupchat" }, xml("body", {}, "hello from node 2")),
		);
		await alice.xmpp.send(
			xml("message", { to: room, type: "groupchat" }, xml("body", {}, "hello from node 1")),
		);
		// §7.4: every occupant, on either node, gets both, its own reflected.
		for (const conn of [alice, guest])
			for (const [nick, body] of [
				["guest", "hello from node 2"],
				["alice", "hello from node 1"],
			] as const)
				await stanzaFrom(
					conn,
					(s) =>
						s.is("message") &&
						s.attrs.type === "groupchat" &&
						s.attrs.from === `${room}/${nick}` &&
						s.getChildText("body") === body,
					`${body} at ${conn.jid}`,
				);

		// RFC 6121 §8.5.3.1 and §8.5.2.1.1: direct messages across nodes, to the full JID and to
		// the guest's bare JID (routed by node 1 to the session on node 2).
		await guest.xmpp.send(
			xml("message", { to: alice.jid, type: "chat" }, xml("body", {}, "psst, alice")),
		);
		const psst = await stanzaFrom(
			alice,
			(s) => s.is("message") && s.getChildText("body") === "psst, alice",
			"direct message",
		);
		assert.equal(psst.attrs.from, guest.jid);
		await alice.xmpp.send(
			xml("message", { to: guest.jid, type: "chat" }, xml("body", {}, "to the full JID")),
		);
		await stanzaFrom(
			guest,
			(s) => s.is("message") && s.getChildText("body") === "to the full JID",
			"message to the full JID",
		);
		// Before its initial presence the guest has no available resource: a message to its bare
		// JID is not stored for it but bounced, by node 1 as on one node (RFC 6121 §8.5.2.2.1).
		const bare = `${local}@${GUEST}`;
		await alice.xmpp.send(
			xml("message", { to: bare, type: "chat", id: "early" }, xml("body", {}, "early")),
		);
		const early = await stanzaFrom(
			alice,
			(s) => s.attrs.id === "early" && s.attrs.type === "error",
			"the bounce",
		);
		assert.ok(early.getChild("error")?.getChild("service-unavailable"), early.toString());
		// RFC 6121 §4.2: available; node 1 learns it through the cluster.
		await guest.xmpp.send(xml("presence"));
		await waitFor(
			() =>
				[...(n1.server.hosts.get(GUEST)?.sessions.get(local)?.values() ?? [])].some(
					(s) => (s as { available?: boolean }).available,
				),
			"node 1 sees the guest available",
		);
		await alice.xmpp.send(xml("message", { to: bare, type: "chat" }, xml("body", {}, "to bare")));
		await stanzaFrom(
			guest,
			(s) => s.is("message") && s.getChildText("body") === "to bare",
			"message to the bare JID",
		);

		// §7.14: the guest's stream ends on node 2; the room on node 1 sees it leave. It entered
		// before its initial presence, so the room is no directed-presence recipient (RFC 6121
		// §4.6.2) and node 2 sends it no unavailable: the leader learns it from the registry
		// (`session/remote-closed`), or the guest would stay in the room as a ghost.
		await guest.xmpp.stop();
		await stanzaFrom(
			alice,
			(s) => s.is("presence") && s.attrs.from === `${room}/guest` && s.attrs.type === "unavailable",
			"the guest leaves the room",
		);
		await waitFor(
			() => !n1.server.hosts.get(GUEST)?.sessions.has(local),
			"node 1 forgets the guest",
		);
	});
	test("anonymous.max_sessions, the online-users count and an announcement cover both nodes (RFC 6120 §6.5; XEP-0133 §4.15, §4.23)", async () => {
		for (const c of conns.splice(0)) await c.xmpp.stop().catch(() => {});
		const run = async (t: TestServer, name: string, args: Record<string, unknown>) => {
			const cmd = t.server.commands.find((c) => c.name === name);
			assert.ok(cmd, name);
			return (await cmd.run({ core: t.server, actor: "admin@localhost" }, args)) as Record<
				string,
				number
			>;
		};
		const online = async (t: TestServer) =>
			(await run(t, "users.online.count", { host: GUEST })).onlineusersnum;
		await waitFor(
			async () => (await online(n1)) === 0 && (await online(n2)) === 0,
			"earlier guests gone",
		);
		const ws = (t: TestServer) => `ws://127.0.0.1:${t.httpPort}/xmpp-websocket`;
		const a = await connectAnonymous(ws(n1), { domain: GUEST });
		conns.push(a);
		const b = await connectAnonymous(ws(n2), { domain: GUEST });
		conns.push(b);
		// §4.15: each node counts the other's guest (sharded registry: from Redis, not its cache).
		await waitFor(
			async () => (await online(n1)) === 2 && (await online(n2)) === 2,
			"both guests counted on both nodes",
		);
		// max_sessions = 2 is reached in the cluster: RFC 6120 §6.5 temporary-auth-failure.
		await assert.rejects(connectAnonymous(ws(n1), { domain: GUEST }), /too many guests/);
		// §4.23: an announcement made on node 1 reaches the guest on node 2 too.
		const sent = await run(n1, "announce", { host: GUEST, announcement: "maintenance at noon" });
		assert.equal(sent.sessions, 2);
		for (const g of [a, b])
			await stanzaFrom(
				g,
				(s) => s.is("message") && s.getChildText("body") === "maintenance at noon",
				`announcement at ${g.jid}`,
			);
	});
});

/**
 * `anonymous.max_sessions_per_ip` counts the guests of an address on every node (a counter in
 * Redis, src/cluster/counters.ts), and a node killed with SIGKILL leaves nothing counted: the
 * leader releases its share when it declares it dead. Node 1 in this process (the leader: it
 * joined first), node 2 a `parley serve` process; every client comes from 127.0.0.1.
 */
describe("guests per address across nodes", { skip: redisSkip }, () => {
	const IP_PREFIX = `${PREFIX}-ip`;
	const IPGUEST = "ipguest.localhost";
	const anon = { authentication: "anonymous" as const, anonymous: { max_sessions_per_ip: 2 } };
	let leader: TestServer;
	let child: ChildProcess | null = null;
	let output = () => "";
	let port = 0;
	const mine: XmppConnection[] = [];

	before(async () => {
		leader = await startTestServer({
			storage: "sqlite",
			config: {
				auth: { require_encryption: false, allow_plain_without_tls: true },
				hosts: { localhost: {}, [IPGUEST]: anon },
				cluster: testCluster(IP_PREFIX, "ip-1"),
			},
		});
		port = await freePort();
		// On the leader's SQLite file, as another node of the same cluster.
		const started = spawnChildNode({
			dataDir: leader.dataDir,
			port,
			prefix: IP_PREFIX,
			node: "ip-2",
			extra: [
				`[hosts.${JSON.stringify(IPGUEST)}]`,
				'authentication = "anonymous"',
				`[hosts.${JSON.stringify(IPGUEST)}.anonymous]`,
				"max_sessions_per_ip = 2",
			],
		});
		child = started.child;
		output = started.output;
	});

	after(async () => {
		for (const c of mine) await c.xmpp.stop().catch(() => {});
		child?.kill("SIGKILL");
		await leader?.stop();
		const r = new Redis(TEST_REDIS_URL);
		const keys = await r.keys(`${IP_PREFIX}:*`);
		if (keys.length) await r.del(...keys);
		await r.quit();
	});

	const guestOn = async (p: number) => {
		const c = await connectAnonymous(`xmpp://127.0.0.1:${p}`, { domain: IPGUEST });
		mine.push(c);
		return c;
	};

	test("RFC 6120 §7.6.2.1: the limit holds over both nodes and a killed node's guests stop counting", async () => {
		// Node 2's first guest: once it serves.
		await waitFor(
			() => guestOn(port).catch(() => undefined),
			"node 2 to serve a guest",
			20_000,
		).catch((err: Error) => {
			throw new Error(`${err.message}; node 2 said: ${output()}`);
		});
		await guestOn(leader.port);
		// Two guests from 127.0.0.1, one on each node: a third is refused on either node.
		await assert.rejects(guestOn(leader.port), /too many guest sessions from this address/);
		await assert.rejects(guestOn(port), /too many guest sessions from this address/);
		// The guest of node 2 is gone with its node: the leader takes it out of the count.
		child?.kill("SIGKILL");
		child = null;
		await waitFor(
			() => guestOn(leader.port).catch(() => undefined),
			"a guest admitted again once node 2 is declared dead",
			20_000,
		);
		// ... and the limit still holds: two guests are connected again.
		await assert.rejects(guestOn(leader.port), /too many guest sessions from this address/);
	});
});
