/**
 * A cluster of Parley nodes (DESIGN.md "Cluster"): two servers in this process and one in a
 * child process, sharing one SQLite file and the local Redis under a private prefix. Clients
 * on different nodes chat, see each other's presence, get carbons and conflicts as on one
 * server; a node killed with SIGKILL has its sessions ended by the survivors.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import pg from "pg";
import type { ClusterLink } from "../../src/cluster/link.ts";
import { RemoteSession } from "../../src/cluster/remote-session.ts";
import { HIBERNATING } from "../../src/core/contracts.ts";
import { spawnChildNode, testCluster, writeChildNodeToml } from "../helpers/cluster-node.ts";
import { TEST_CLUSTER_REGISTRY } from "../helpers/cluster-registry.ts";
import { freePort } from "../helpers/pg-cluster.ts";
import type { RawClient } from "../helpers/raw.ts";
import { iq, message, online, sync } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { postgresSkip, redisSkip, TEST_REDIS_URL } from "../helpers/services.ts";
import { waitFor } from "../helpers/wait.ts";
import { login } from "../helpers/xmpp-raw-login.ts";
import { availableWithCaps, befriend, connectUser, iq as xiq } from "../helpers/xmpp-user.ts";

const BIN = new URL("../../bin/parley.js", import.meta.url).pathname;
const PREFIX = `parley-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const USERS = [
	"alice",
	"bob",
	"carol",
	"dave",
	"erin",
	"mallory",
	"frank",
	"grace",
	"heidi",
	"ivan",
	"judy",
	"kevin",
];

/**
 * `cluster.registry` of every node: the default, "replicated"; test/e2e/cluster-sharded.test.ts
 * runs this file again with "sharded" (the environment variable is that file's way to say so).
 */
const REGISTRY = TEST_CLUSTER_REGISTRY;

const clusterConfig = (node: string) => ({
	auth: { require_encryption: false, allow_plain_without_tls: true },
	cluster: {
		enabled: true,
		redis: TEST_REDIS_URL,
		prefix: PREFIX,
		node,
		heartbeat: 0.5,
		node_timeout: 3,
		registry: REGISTRY,
	} as const,
	components: { "conference.localhost": { type: "muc" as const } },
});

/** Runs the CLI without blocking this process (a test server may be running in it). */
const run = (args: string[]) => promisify(execFile)(process.execPath, args);

let a: TestServer;
let b: TestServer;
const clients: RawClient[] = [];

async function on(port: number, user: string, resource: string, priority?: number) {
	const c = await online(port, user, resource, { priority });
	clients.push(c);
	return c;
}

/**
 * Waits until `node` knows of `count` sessions on other nodes: replicas it holds, or with the
 * sharded registry the entries other nodes wrote in Redis (`<prefix>:n:<node>` sets).
 */
async function replicas(node: TestServer, count: number): Promise<void> {
	if (REGISTRY === "sharded") {
		const me = (node.server.cluster as ClusterLink).node;
		const prefix = node.server.config.cluster.prefix;
		const r = new Redis(TEST_REDIS_URL);
		const written = async () => {
			let n = 0;
			for (const key of await r.keys(`${prefix}:n:*`))
				if (key !== `${prefix}:n:${me}`) n += await r.scard(key);
			return n;
		};
		let last = -1;
		try {
			await waitFor(async () => {
				last = await written();
				return last === count;
			}, `${count} remote sessions`);
		} catch (err) {
			throw new Error(`${(err as Error).message}; there are ${last}`);
		} finally {
			await r.quit();
		}
		return;
	}
	const seen = () =>
		[...(node.server.hosts.get("localhost")?.sessions.values() ?? [])]
			.flatMap((m) => [...m.values()])
			.filter((s) => s instanceof RemoteSession)
			.map((s) => `${s.jid?.toString()} on ${(s as RemoteSession).node}`);
	await waitFor(
		() => (node.server.cluster as ClusterLink | null)?.remoteSessions === count,
		`${count} remote sessions`,
	).catch((err: Error) => {
		throw new Error(`${err.message}; there are: ${seen().join(", ")}`);
	});
}

describe("a cluster of nodes over Redis", { skip: redisSkip }, () => {
	before(async () => {
		a = await startTestServer({
			storage: "sqlite",
			config: clusterConfig("node-a"),
			users: USERS.map((u) => [`${u}@localhost`, `pw-${u}`] as [string, string]),
		});
		b = await startTestServer({
			storage: "sqlite",
			dataDir: a.dataDir,
			config: clusterConfig("node-b"),
		});
	});

	after(async () => {
		for (const c of clients) c.end();
		await b?.stop();
		await a?.stop();
		const r = new Redis(TEST_REDIS_URL);
		const keys = await r.keys(`${PREFIX}:*`);
		if (keys.length) await r.del(...keys);
		await r.quit();
	});

	test("RFC 6120 §10.5.4: a message to a full JID reaches a session on another node", async () => {
		const alice = await on(a.port, "alice", "a1");
		const bob = await on(b.port, "bob", "b1");
		await replicas(a, 1);
		await replicas(b, 1);
		const mark = bob.received.length;
		alice.send("<message to='bob@localhost/b1' id='m1' type='chat'><body>across</body></message>");
		const got = await message(bob, "m1", mark);
		assert.match(got, /from="alice@localhost\/a1"/);
		assert.match(got, /<body>across<\/body>/);
		// and back, to the bare JID (RFC 6121 §8.5.2.1.1: the one available resource)
		const mark2 = alice.received.length;
		bob.send("<message to='alice@localhost' id='m2' type='chat'><body>back</body></message>");
		assert.match(await message(alice, "m2", mark2), /from="bob@localhost\/b1"/);
		// In order (RFC 6120 §10.1): 50 messages from one sender arrive as sent.
		const mark3 = bob.received.length;
		for (let i = 0; i < 50; i++)
			alice.send(
				`<message to='bob@localhost/b1' id='o${i}' type='chat'><body>${i}</body></message>`,
			);
		await message(bob, "o49", mark3);
		const ids = [...bob.received.slice(mark3).matchAll(/id="(o\d+)"/g)].map((m) => m[1]);
		assert.deepEqual(
			ids,
			Array.from({ length: 50 }, (_, i) => `o${i}`),
		);
		alice.end();
		bob.end();
		await replicas(a, 0);
		await replicas(b, 0);
	});

	test("metrics in a cluster: one scrape per node, every series says which node; another node's session is not counted twice", async () => {
		const alice = await on(a.port, "alice", "metrics");
		await replicas(b, 1);
		const sa = (await a.server.metricsText()).body;
		const sb = (await b.server.metricsText()).body;
		assert.match(sa, /^parley_sessions\{transport="tcp",node="node-a"\} 1$/m);
		// node-b holds a replica of alice's session (for routing), not a session of its own.
		assert.match(sb, /^parley_sessions\{transport="tcp",node="node-b"\} 0$/m);
		for (const line of sa.split("\n"))
			if (line && !line.startsWith("#")) assert.match(line, /node="node-a"/, line);
		alice.end();
		await replicas(b, 0);
	});

	test("XEP-0163 in a cluster: a contact on another node is notified; a node sees what another node published", async () => {
		const TUNE = "http://jabber.org/protocol/tune";
		const EVENT = "http://jabber.org/protocol/pubsub#event";
		const publish = (title: string) =>
			`<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='${TUNE}'><item id='${title}'><tune xmlns='${TUNE}'><title>${title}</title></tune></item></publish></pubsub>`;
		await befriend(a.server, "dave@localhost", "erin@localhost");
		const dave = await connectUser(a.port, "dave", "a", "pw-dave");
		const erin = await connectUser(b.port, "erin", "b", "pw-erin");
		clients.push(dave.c, erin.c);
		// erin's node learns her caps (XEP-0115) and keeps them in the shared store.
		await availableWithCaps(erin, [TUNE]);
		await xiq(erin, "get", "localhost", "<ping xmlns='urn:xmpp:ping'/>");
		await waitFor(async () => {
			const host = a.server.hosts.get("localhost");
			// The sharded registry holds what node a looked up: look erin up as routing would.
			if (host) await a.server.cluster?.resolve?.(host, "erin");
			return host?.sessions.get("erin")?.get("b")?.presence;
		}, "erin's presence on node a");
		const mark = erin.r.mark();
		assert.equal((await xiq(dave, "set", "", publish("one"))).attrs.type, "result");
		const ev = await erin.r.wait(
			(el) =>
				el.is("message") && el.getChild("event", EVENT)?.getChild("items")?.attrs.node === TUNE,
			mark,
			"tune from node a",
		);
		assert.equal(ev.attrs.from, "dave@localhost");
		// dave publishes again from a session on node b; node a drops its copy (cluster notice).
		const dave2 = await connectUser(b.port, "dave", "b", "pw-dave");
		clients.push(dave2.c);
		assert.equal((await xiq(dave2, "set", "", publish("two"))).attrs.type, "result");
		await waitFor(async () => {
			const items = await xiq(
				dave,
				"get",
				"",
				`<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='${TUNE}'/></pubsub>`,
			);
			return items.getChild("pubsub")?.getChild("items")?.getChild("item")?.attrs.id === "two";
		}, "node a to see the item published on node b");
		for (const u of [dave, erin, dave2]) u.c.end();
		await replicas(a, 0);
		await replicas(b, 0);
	});

	test("RFC 6121 §8.5.2.1.1: a bare-JID message goes to the highest-priority resource, whichever node holds it", async () => {
		const low = await on(a.port, "carol", "low", 1);
		const high = await on(b.port, "carol", "high", 5);
		const dave = await on(a.port, "dave", "d");
		await replicas(a, 1);
		await replicas(b, 2);
		const markLow = low.received.length;
		const markHigh = high.received.length;
		dave.send("<message to='carol@localhost' id='p1' type='chat'><body>prio</body></message>");
		await message(high, "p1", markHigh);
		// Ordered after p1 on low's node: p1 would have arrived first.
		await sync(dave, low, "carol@localhost/low", markLow);
		assert.doesNotMatch(low.received.slice(markLow), /id="p1"/);
		// A presence change on one node moves the choice on the other (RFC 6121 §4.7.2.3).
		const mark = dave.received.length;
		high.send("<presence><priority>-1</priority></presence>");
		await waitFor(
			() =>
				[...(a.server.hosts.get("localhost")?.sessionsOf("carol") ?? [])].find(
					(s) => s.jid?.resource === "high" && s.priority === -1,
				) ?? undefined,
			"the new priority replicated",
		);
		const markLow2 = low.received.length;
		dave.send("<message to='carol@localhost' id='p2' type='chat'><body>prio2</body></message>");
		await message(low, "p2", markLow2);
		assert.equal(dave.received.slice(mark).includes('type="error"'), false);
		for (const c of [low, high, dave]) c.end();
		await replicas(a, 0);
		await replicas(b, 0);
	});

	test("RFC 6121 §4.2.2 / §4.3.2 in a cluster: two contacts whose initial presences reach two nodes at once still see each other", async () => {
		await befriend(a.server, "frank@localhost", "grace@localhost");
		const frank = await login(a.port, "frank", "pw-frank", { resource: "f" });
		const grace = await login(b.port, "grace", "pw-grace", { resource: "g" });
		clients.push(frank, grace);
		// Both in the same turn: neither node has the other's session in its registry yet, so the
		// broadcast and the probe answers on each node find no available session of the contact.
		frank.send("<presence/>");
		grace.send("<presence/>");
		await frank.waitFor(/<presence[^>]*from="grace@localhost\/g"/);
		await grace.waitFor(/<presence[^>]*from="frank@localhost\/f"/);
		frank.end();
		grace.end();
	});

	test("RFC 6121 §4.2.2 / §4.5.2 in a cluster: a resource on another node that goes unavailable is announced to the account's other resource once", async () => {
		const old = await on(a.port, "heidi", "old");
		const fresh = await on(b.port, "heidi", "fresh");
		// §4.2.2: node b shows the new resource the other one, from its replica.
		await fresh.waitFor(/<presence[^>]*from="heidi@localhost\/old"/);
		await waitFor(
			() => a.server.hosts.get("localhost")?.sessions.get("heidi")?.get("fresh")?.available,
			"node a to know heidi/fresh available",
		);
		const mark = fresh.received.length;
		old.send("<presence type='unavailable'/>");
		// After the unavailable on node a's stream for node b (RFC 6120 §10.1: in order).
		old.send("<message to='heidi@localhost/fresh' id='after-unavailable'><body>x</body></message>");
		await message(fresh, "after-unavailable", mark);
		await waitFor(
			() => b.server.hosts.get("localhost")?.sessions.get("heidi")?.get("old")?.available === false,
			"node b to see heidi/old unavailable",
		);
		// Node a knew heidi/fresh: node b adds nothing (it would have by this answer).
		await iq(fresh, "ping-u", "<iq type='get' id='ping-u'><ping xmlns='urn:xmpp:ping'/></iq>");
		const unavailable = /<presence(?=[^>]*from="heidi@localhost\/old")(?=[^>]*type="unavailable")/g;
		assert.equal(fresh.received.slice(mark).match(unavailable)?.length, 1);
		old.end();
		fresh.end();
		await replicas(a, 0);
		await replicas(b, 0);
	});

	test("RFC 6121 §4.2.2 / §4.3.2 / §4.5.2 in a cluster: a resource that ends on one node before that node learns of the account's new resource and a contact's, on another node, is shown to them as unavailable", async () => {
		await befriend(a.server, "heidi@localhost", "ivan@localhost");
		const old = await on(a.port, "heidi", "old");
		const fresh = await login(b.port, "heidi", "pw-heidi", { resource: "fresh" });
		const ivan = await login(b.port, "ivan", "pw-ivan", { resource: "i" });
		clients.push(fresh, ivan);
		await waitFor(
			() => b.server.hosts.get("localhost")?.sessions.get("heidi")?.get("old")?.available,
			"node b to know heidi/old available",
		);
		await waitFor(
			() => a.server.hosts.get("localhost")?.sessions.get("heidi")?.get("fresh"),
			"node a to know heidi/fresh bound",
		);
		// Redis takes no writes (CLIENT PAUSE … WRITE, Redis 6.2+): no registry change of either
		// node reaches the other, as when both happen within a registry propagation.
		const redis = new Redis(TEST_REDIS_URL);
		const markF = fresh.received.length;
		const markI = ivan.received.length;
		await redis.call("CLIENT", "PAUSE", "20000", "WRITE");
		try {
			// Node b shows both heidi/old: to her new resource (§4.2.2), in answer to ivan's probe
			// (§4.3.2).
			fresh.send("<presence/>");
			await fresh.waitFor(/<presence[^>]*from="heidi@localhost\/old"/, markF);
			ivan.send("<presence/>");
			await ivan.waitFor(/<presence[^>]*from="heidi@localhost\/old"/, markI);
			// heidi/old ends while node a still has neither of them available.
			old.end();
			await waitFor(
				() => a.server.hosts.get("localhost")?.sessions.get("heidi")?.get("old") === undefined,
				"node a to end heidi/old",
			);
		} finally {
			await redis.call("CLIENT", "UNPAUSE");
			await redis.quit();
		}
		const unavailable = /<presence(?=[^>]*from="heidi@localhost\/old")(?=[^>]*type="unavailable")/;
		await fresh.waitFor(unavailable, markF);
		await ivan.waitFor(unavailable, markI);
		fresh.end();
		ivan.end();
		await replicas(a, 0);
		await replicas(b, 0);
	});

	test("RFC 6121 §4.2.2 / §4.4.2 in a cluster: a presence change on another node reaches the account's other resource once", async () => {
		const old = await on(a.port, "judy", "old");
		const fresh = await on(b.port, "judy", "fresh");
		await fresh.waitFor(/<presence[^>]*from="judy@localhost\/old"/);
		await waitFor(
			() => a.server.hosts.get("localhost")?.sessions.get("judy")?.get("fresh")?.available,
			"node a to know judy/fresh available",
		);
		const mark = fresh.received.length;
		old.send("<presence><show>away</show></presence>");
		await waitFor(
			() =>
				b.server.hosts
					.get("localhost")
					?.sessions.get("judy")
					?.get("old")
					?.presence?.getChildText("show") === "away",
			"node b to see judy/old away",
		);
		// Node a knew judy/fresh: node b adds nothing (it would have by this answer).
		await iq(fresh, "ping-p", "<iq type='get' id='ping-p'><ping xmlns='urn:xmpp:ping'/></iq>");
		const away =
			/<presence(?=[^>]*from="judy@localhost\/old")[^>]*>(?:(?!<\/presence>)[\s\S])*<show>away<\/show>/g;
		assert.equal(fresh.received.slice(mark).match(away)?.length, 1);
		old.end();
		fresh.end();
		await replicas(a, 0);
		await replicas(b, 0);
	});

	test("RFC 6121 §4.2.2 / §4.3.2 / §4.4.2 in a cluster: a presence change made on one node before that node learns of the account's new resource and a contact's, on another node, reaches them", async () => {
		await befriend(a.server, "judy@localhost", "kevin@localhost");
		const old = await on(a.port, "judy", "old");
		const fresh = await login(b.port, "judy", "pw-judy", { resource: "fresh" });
		const kevin = await login(b.port, "kevin", "pw-kevin", { resource: "k" });
		clients.push(fresh, kevin);
		await waitFor(
			() => b.server.hosts.get("localhost")?.sessions.get("judy")?.get("old")?.available,
			"node b to know judy/old available",
		);
		await waitFor(
			() => a.server.hosts.get("localhost")?.sessions.get("judy")?.get("fresh"),
			"node a to know judy/fresh bound",
		);
		// Redis takes no writes (CLIENT PAUSE … WRITE, Redis 6.2+): no registry change of either
		// node reaches the other, as when both happen within a registry propagation.
		const redis = new Redis(TEST_REDIS_URL);
		const markF = fresh.received.length;
		const markK = kevin.received.length;
		const markO = old.received.length;
		await redis.call("CLIENT", "PAUSE", "20000", "WRITE");
		try {
			// Node b shows judy/old's presence to her new resource (§4.2.2) and in answer to
			// kevin's probe (§4.3.2).
			fresh.send("<presence/>");
			await fresh.waitFor(/<presence[^>]*from="judy@localhost\/old"/, markF);
			kevin.send("<presence/>");
			await kevin.waitFor(/<presence[^>]*from="judy@localhost\/old"/, markK);
			// judy/old goes away while node a still has neither of them available; node a has
			// broadcast it once it echoes it to the sender (§4.4.2).
			old.send("<presence><show>away</show></presence>");
			await old.waitFor(/<show>away<\/show>/, markO);
		} finally {
			await redis.call("CLIENT", "UNPAUSE");
			await redis.quit();
		}
		const away =
			/<presence(?=[^>]*from="judy@localhost\/old")[^>]*>(?:(?!<\/presence>)[\s\S])*<show>away<\/show>/;
		await fresh.waitFor(away, markF);
		await kevin.waitFor(away, markK);
		old.end();
		fresh.end();
		kevin.end();
		await replicas(a, 0);
		await replicas(b, 0);
	});

	test("XEP-0280 §7: a carbon copy reaches the user's resource on the other node", async () => {
		const enable = async (c: RawClient) =>
			assert.match(
				await iq(c, "cb", "<iq type='set' id='cb'><enable xmlns='urn:xmpp:carbons:2'/></iq>"),
				/type="result"/,
			);
		const e1 = await on(a.port, "erin", "e1");
		const e2 = await on(b.port, "erin", "e2");
		const dave = await on(a.port, "dave", "d2");
		await enable(e1);
		await enable(e2);
		// The flag is replicated: node A sees e2's carbons enabled.
		await waitFor(
			() =>
				a.server.hosts
					.get("localhost")
					?.sessionsOf("erin")
					.find((s) => s.jid?.resource === "e2" && s.data.get("carbons") === true),
			"carbons flag replicated",
		);
		const mark = e2.received.length;
		dave.send("<message to='erin@localhost/e1' id='c1' type='chat'><body>carbon</body></message>");
		const text = await e2.waitFor(/<received xmlns="urn:xmpp:carbons:2">[\s\S]*?id="c1"/, mark);
		assert.match(text, /<forwarded/);
		for (const c of [e1, e2, dave]) c.end();
		await replicas(a, 0);
		await replicas(b, 0);
	});

	test("RFC 6120 §7.7.2.2: binding a resource that is online on another node replaces that session", async () => {
		const first = await on(a.port, "alice", "same");
		await replicas(b, 1);
		const second = await on(b.port, "alice", "same");
		await first.waitFor(/<conflict xmlns="urn:ietf:params:xml:ns:xmpp-streams"/);
		await first.waitClosed();
		const mark = second.received.length;
		second.send("<iq type='get' id='ping1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
		await second.waitFor(/id="ping1"/, mark);
		second.end();
		await replicas(a, 0);
	});

	test("XEP-0191 §3.3: a block made on one node holds on the other", async () => {
		const aliceB = await on(b.port, "alice", "blocker");
		const mallory = await on(a.port, "mallory", "m");
		const aliceA = await on(a.port, "alice", "other");
		// XEP-0191 §3.2: asking for the list makes a resource one that gets pushes.
		await iq(aliceA, "bl", "<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>");
		await replicas(b, 2);
		await waitFor(
			() =>
				b.server.hosts
					.get("localhost")
					?.sessionsOf("alice")
					// The blocking module's flag itself (other modules keep flags in `data` too).
					.some((s) => s.jid?.resource === "other" && s.data.get("blocking") === true),
			"alice/other's interest replicated",
		);
		// Node A caches alice's (empty) list when mallory writes to her.
		const mark0 = aliceA.received.length;
		mallory.send("<message to='alice@localhost/other' id='pre'><body>before</body></message>");
		await message(aliceA, "pre", mark0);
		assert.match(
			await iq(
				aliceB,
				"blk",
				"<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='mallory@localhost'/></block></iq>",
			),
			/type="result"/,
		);
		// XEP-0191 §3.3: the other resource (on node A) gets the push.
		await aliceA.waitFor(/<block xmlns="urn:xmpp:blocking"><item jid="mallory@localhost"\/>/);
		const mark = mallory.received.length;
		mallory.send("<message to='alice@localhost/other' id='post'><body>after</body></message>");
		// XEP-0191 §3.5: the blocked sender gets service-unavailable.
		const err = await mallory.waitFor(/<message[^>]*id="post"[^>]*type="error"/, mark);
		assert.match(err, /service-unavailable/);
		for (const c of [aliceB, mallory, aliceA]) c.end();
		await replicas(a, 0);
		await replicas(b, 0);
	});

	test("XEP-0045 in a cluster: the room lives on the node where it was made; occupants on any node talk", async () => {
		assert.equal(a.server.cluster?.leader, true, "node A joined first");
		const alice = await on(b.port, "alice", "muc");
		const bob = await on(a.port, "bob", "muc");
		const room = "talk@conference.localhost";
		const join = async (c: RawClient, nick: string) => {
			const mark = c.received.length;
			c.send(
				`<presence to='${room}/${nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>`,
			);
			// §7.2.2: the self-presence carries status 110.
			return c.waitFor(new RegExp(`from="${room}/${nick}"[\\s\\S]*?<status code="110"`), mark);
		};
		const created = await join(alice, "Alice");
		assert.match(created, /<status code="201"/); // §10.1.1: a new room
		// §10.1.2: an instant room, accepted with an empty form.
		assert.match(
			await iq(
				alice,
				"inst",
				`<iq type='set' id='inst' to='${room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`,
			),
			/type="result"/,
		);
		await join(bob, "Bob");
		const markA = alice.received.length;
		const markB = bob.received.length;
		bob.send(`<message to='${room}' type='groupchat' id='g1'><body>hello room</body></message>`);
		// §7.4: to every occupant, the sender's reflection included.
		for (const [c, mark] of [
			[alice, markA],
			[bob, markB],
		] as const)
			assert.match(
				await c.waitFor(
					/<message[^>]*from="talk@conference.localhost\/Bob"[\s\S]*?hello room/,
					mark,
				),
				/type="groupchat"/,
			);
		const markLeave = bob.received.length;
		alice.end(); // §7.14: the stream's end is an exit, across nodes too
		await bob.waitFor(
			/from="talk@conference.localhost\/Alice"[^>]*type="unavailable"|type="unavailable"[^>]*from="talk@conference.localhost\/Alice"/,
			markLeave,
		);
		bob.end();
		await replicas(a, 0);
		await replicas(b, 0);
	});

	test("a node that loses its Redis connections resynchronises: what changed meanwhile is seen", async () => {
		const alice = await on(a.port, "alice", "stay");
		const gone = await on(a.port, "dave", "gone");
		await replicas(b, 2);
		// Cut node B off Redis (both its connections); ioredis reconnects by itself.
		const r = new Redis(TEST_REDIS_URL);
		const list = (await r.call("CLIENT", "LIST")) as string;
		const ids = list
			.split("\n")
			.filter((l) => / name=node-b:(pub|sub) /.test(l))
			.map((l) => /id=(\d+)/.exec(l)?.[1] as string);
		assert.equal(ids.length, 2, list);
		for (const id of ids) await r.call("CLIENT", "KILL", "ID", id);
		await r.quit();
		// Meanwhile dave leaves: node B may miss the announcement, but not the registry.
		gone.end();
		await replicas(b, 1);
		const bob = await on(b.port, "bob", "after");
		await replicas(a, 1);
		const mark = bob.received.length;
		alice.send(
			"<message to='bob@localhost/after' id='rs1' type='chat'><body>again</body></message>",
		);
		await message(bob, "rs1", mark);
		for (const c of [alice, bob]) c.end();
		await replicas(a, 0);
		await replicas(b, 0);
	});

	test("XEP-0198 §5 in a cluster: a resume on another node fails there; the hibernating session ends at once and its queued messages reach the new session", async () => {
		const SM = "urn:xmpp:sm:3";
		const phone = await on(a.port, "erin", "phone");
		const mark0 = phone.received.length;
		phone.send(`<enable xmlns='${SM}' resume='true'/>`);
		const enabled = await phone.waitFor(/<enabled\b[^>]*>/, mark0);
		const previd = /\bid="([^"]+)"/.exec(enabled.slice(enabled.lastIndexOf("<enabled")))?.[1];
		assert.ok(previd);
		// The connection breaks without a closing tag: the session hibernates on node a (§5).
		phone.socket.destroy();
		const sessionOnA = () => a.server.hosts.get("localhost")?.sessions.get("erin")?.get("phone");
		await waitFor(
			() => sessionOnA()?.data.get(HIBERNATING) === true,
			"erin's session to hibernate",
		);
		const dave = await on(b.port, "dave", "sm-sender");
		for (const id of ["h1", "h2"])
			dave.send(
				`<message to='erin@localhost/phone' type='chat' id='${id}'><body>${id}</body></message>`,
			);
		// Whether they reach node a before or after it gives the session up, they end at the user:
		// queued and then stored offline, or (the resource gone) handled as to the bare JID
		// (RFC 6121 §8.5.3.2.1).
		// The phone comes back through node b, which does not hold the session: <failed/>.
		const n = await login(b.port, "erin", "pw-erin", { mechanism: "PLAIN", bind: false });
		clients.push(n);
		const mark = n.received.length;
		n.send(`<resume xmlns='${SM}' previd='${previd}' h='0'/>`);
		assert.match(await n.waitFor(/<failed[\s\S]*?<\/failed>/, mark), /item-not-found/);
		// Node a ends its hibernating session now, not after sessions.hibernation (600 s here).
		await waitFor(() => sessionOnA() === undefined, "node a to end the abandoned session");
		// The client binds afresh and goes online; both messages reach it, once each.
		const bound = await iq(
			n,
			"rebind",
			"<iq type='set' id='rebind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>phone2</resource></bind></iq>",
		);
		assert.match(bound, /type="result"/);
		const mark2 = n.received.length;
		n.send("<presence/>");
		const text = await n.waitFor(/<body>h2<\/body>/, mark2);
		assert.equal([...text.matchAll(/<body>h1<\/body>/g)].length, 1);
		n.end();
		dave.end();
		await replicas(a, 0);
	});

	test("RFC 6121 §4.5.2 and XEP-0160: a node killed with SIGKILL has its sessions ended; messages then go offline", async () => {
		// Mutual subscription between alice and bob, made across the nodes.
		const alice = await on(a.port, "alice", "watch");
		const bob0 = await on(b.port, "bob", "setup");
		for (const c of [alice, bob0])
			await iq(c, "r", "<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>");
		const subscribe = async (from: RawClient, to: RawClient, toJid: string, fromJid: string) => {
			const mark = to.received.length;
			from.send(`<presence to='${toJid}' type='subscribe'/>`);
			await to.waitFor(
				new RegExp(`<presence(?=[^>]*from="${fromJid}")(?=[^>]*type="subscribe")`),
				mark,
			);
			to.send(`<presence to='${fromJid}' type='subscribed'/>`);
		};
		await subscribe(alice, bob0, "bob@localhost", "alice@localhost");
		await subscribe(bob0, alice, "alice@localhost", "bob@localhost");
		await waitFor(async () => {
			const r = await iq(
				alice,
				"r2",
				"<iq type='get' id='r2'><query xmlns='jabber:iq:roster'/></iq>",
			);
			return /jid="bob@localhost"[^>]*subscription="both"|subscription="both"[^>]*jid="bob@localhost"/.test(
				r,
			)
				? true
				: undefined;
		}, "mutual subscription");
		bob0.end();
		await replicas(a, 0);

		// Node C: a separate process on the same storage and cluster.
		const port = await freePort();
		const nodeC = spawnChildNode({ dataDir: a.dataDir, port, prefix: PREFIX, node: "node-c" });
		let child: ChildProcess | null = nodeC.child;
		try {
			await waitFor(
				async () => {
					try {
						const c = await online(port, "bob", "onc");
						clients.push(c);
						return c;
					} catch {
						return undefined;
					}
				},
				"node C to serve",
				20_000,
			).catch((err: Error) => {
				throw new Error(`${err.message}; node C said: ${nodeC.output()}`);
			});
			// Alice (node A) sees bob come online on node C.
			await alice.waitFor(/<presence[^>]*from="bob@localhost\/onc"/);
			await replicas(a, 1);
			const mark = alice.received.length;
			child.kill("SIGKILL");
			child = null;
			// RFC 6121 §4.5.2: the server ends the session as unavailable, here the surviving leader.
			await alice.waitFor(
				/<presence[^>]*from="bob@localhost\/onc"[^>]*type="unavailable"|<presence[^>]*type="unavailable"[^>]*from="bob@localhost\/onc"/,
				mark,
			);
			await replicas(a, 0);
			await replicas(b, 1); // alice/watch on node A
			// With bob nowhere, a chat message is stored (XEP-0160) and delivered at his next login.
			alice.send("<message to='bob@localhost' id='off1' type='chat'><body>later</body></message>");
			await iq(
				alice,
				"flush",
				"<iq type='get' id='flush' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
			);
			const bob = await on(b.port, "bob", "back");
			await bob.waitFor(/id="off1"[\s\S]*?<body>later<\/body>/);
		} finally {
			child?.kill("SIGKILL");
		}
		alice.end();
	});

	test("server.workers: `parley serve --workers 2` spreads clients over two processes that serve each other", async () => {
		const dir = mkdtempSync(join(tmpdir(), "parley-workers-"));
		const prefix = `${PREFIX}-w`;
		const port = await freePort();
		const config = {
			dataDir: dir,
			port,
			prefix,
			log: ['level = "info"', 'format = "json"'],
		};
		const toml = writeChildNodeToml(config);
		for (const u of ["alice", "bob"])
			await run([BIN, "user", "add", `${u}@localhost`, "--config", toml, "--password", `pw-${u}`]);
		const pidfile = join(dir, "parley.pid");
		const { child, exited, output } = spawnChildNode(config, {
			args: ["--workers", "2", "--pidfile", pidfile],
			stdout: true,
		});
		try {
			// Written whole: writeFileSync creates the file before it writes the pid.
			const written = () => existsSync(pidfile) && readFileSync(pidfile, "utf8").endsWith("\n");
			await waitFor(written, "the pidfile (all workers running)", 30_000).catch((err: Error) => {
				throw new Error(`${err.message}; output: ${output()}`);
			});
			assert.equal(readFileSync(pidfile, "utf8").trim(), String(child.pid));
			const cs: RawClient[] = [];
			for (let i = 0; i < 16; i++) cs.push(await online(port, i % 2 ? "bob" : "alice", `r${i}`));
			// Each worker listens on the port with SO_REUSEPORT and the kernel spreads connections by
			// address hash: with 16 connections both workers serve some (all on one: p = 2^-15).
			const pids = new Set(
				output()
					.split("\n")
					.filter((l) => l.includes('"msg":"authenticated"'))
					.map((l) => (JSON.parse(l) as { pid: number }).pid),
			);
			assert.equal(pids.size, 2, output());
			for (let i = 0; i < 4; i++)
				for (let j = 0; j < 4; j++) {
					if (i === j) continue;
					const to = `${j % 2 ? "bob" : "alice"}@localhost/r${j}`;
					const mark = (cs[j] as RawClient).received.length;
					(cs[i] as RawClient).send(
						`<message to='${to}' id='w${i}${j}' type='chat'><body>x</body></message>`,
					);
					await message(cs[j] as RawClient, `w${i}${j}`, mark);
				}
			for (const c of cs) c.end();
			child.kill("SIGTERM");
			assert.equal(await exited, 0, output());
			assert.equal(existsSync(pidfile), false);
			// Each worker left the cluster: nothing of it stays in Redis.
			const r = new Redis(TEST_REDIS_URL);
			const left = await r.keys(`${prefix}:*`);
			await r.quit();
			assert.deepEqual(left, []);
		} finally {
			child.kill("SIGKILL");
			rmSync(dir, { recursive: true, force: true });
		}
	});

	test("server.workers needs shared storage: memory storage is a configuration error (exit 3)", async () => {
		const dir = mkdtempSync(join(tmpdir(), "parley-workers-"));
		const toml = join(dir, "parley.toml");
		writeFileSync(toml, '[server]\nworkers = 2\n[storage]\nbackend = "memory"\n');
		const r = await run([BIN, "serve", "--config", toml]).catch(
			(e: { code: number; stderr: string }) => e,
		);
		assert.equal((r as { code: number }).code, 3);
		assert.match((r as { stderr: string }).stderr, /needs shared storage/);
		rmSync(dir, { recursive: true, force: true });
	});

	test("XEP-0045 §10.2 persistent rooms outlive their node: a node that stops lets its rooms go, another loads them from storage", async () => {
		const prefix = `${PREFIX}-f`;
		const config = (node: string) => ({
			...clusterConfig(node),
			cluster: testCluster(prefix, node),
		});
		const dataDir = mkdtempSync(join(tmpdir(), "parley-failover-"));
		const x = await startTestServer({
			storage: "sqlite",
			dataDir,
			config: config("node-x"),
			users: [["frank@localhost", "pw-frank"]],
		});
		const y = await startTestServer({
			storage: "sqlite",
			dataDir: x.dataDir,
			config: config("node-y"),
		});
		try {
			await waitFor(() => y.server.cluster?.leaderNode === "node-x", "node X leading");
			let frank = await online(x.port, "frank", "f");
			clients.push(frank);
			const room = "kept@conference.localhost";
			const join = async () => {
				const mark = frank.received.length;
				frank.send(
					`<presence to='${room}/Frank'><x xmlns='http://jabber.org/protocol/muc'/></presence>`,
				);
				return frank.waitFor(
					/from="kept@conference.localhost\/Frank"[\s\S]*?<status code="110"/,
					mark,
				);
			};
			assert.match(await join(), /<status code="201"/); // created on node X, where frank is
			const r = new Redis(TEST_REDIS_URL);
			const lease = () => r.get(`${prefix}:room:${room}`);
			assert.equal(await lease(), "node-x");
			assert.match(
				await iq(
					frank,
					"cfg",
					`<iq type='set' id='cfg' to='${room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>`,
				),
				/type="result"/,
			);
			await x.stop();
			// A node that stops releases its rooms at once (src/cluster/ownership.ts).
			assert.equal(await lease(), null);
			frank = await online(y.port, "frank", "f2");
			clients.push(frank);
			// The room is there on node Y, from storage: entering it creates nothing (no 201).
			assert.doesNotMatch(await join(), /<status code="201"/);
			assert.equal(await lease(), "node-y");
			await r.quit();
			frank.end();
		} finally {
			await y.stop();
			await x.stop();
			rmSync(dataDir, { recursive: true, force: true });
		}
	});

	test("a cluster on PostgreSQL, as on several machines: chat across nodes, offline storage shared", {
		skip: postgresSkip,
	}, async () => {
		const url = process.env.PARLEY_TEST_PG ?? "postgres://postgres@127.0.0.1:5432/test";
		const schema = `parley_cluster_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
		const prefix = `${PREFIX}-pg`;
		const config = (node: string) => ({
			...clusterConfig(node),
			cluster: { ...clusterConfig(node).cluster, prefix },
			storage: { backend: "postgres" as const, url, schema },
		});
		// Each node has a data directory of its own, as on separate machines; storage is shared.
		const p = await startTestServer({
			storage: "sqlite",
			config: config("node-p"),
			users: [
				["gina@localhost", "pw-gina"],
				["hank@localhost", "pw-hank"],
			],
		});
		const q = await startTestServer({ storage: "sqlite", config: config("node-q") });
		try {
			const gina = await online(p.port, "gina", "g");
			clients.push(gina);
			const hank = await online(q.port, "hank", "h");
			clients.push(hank);
			await replicas(p, 1);
			const mark = hank.received.length;
			gina.send(
				"<message to='hank@localhost/h' id='pg1' type='chat'><body>over pg</body></message>",
			);
			await message(hank, "pg1", mark);
			hank.end();
			await replicas(p, 0);
			// XEP-0160: stored by node P in PostgreSQL, delivered by node Q at the next login.
			gina.send("<message to='hank@localhost' id='pg2' type='chat'><body>later</body></message>");
			await iq(
				gina,
				"f",
				"<iq type='get' id='f' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
			);
			const again = await online(q.port, "hank", "h2");
			clients.push(again);
			await again.waitFor(/id="pg2"[\s\S]*?<body>later<\/body>/);
			gina.end();
		} finally {
			await q.stop();
			await p.stop();
			const c = new pg.Client({ connectionString: url });
			await c.connect();
			await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
			await c.end();
		}
	});

	test("a node whose Redis cannot be reached does not start, and says why", async () => {
		await assert.rejects(
			startTestServer({
				storage: "sqlite",
				config: {
					cluster: { enabled: true, prefix: `${PREFIX}-down`, redis: "redis://127.0.0.1:1" },
				},
			}),
			/cluster: cannot reach Redis at redis:\/\/127\.0\.0\.1:1: connect ECONNREFUSED/,
		);
	});
});
