/**
 * A rolling restart of a three-node cluster (issue 16, "Membership and failure": "a rolling
 * restart of all nodes keeps the service up for clients that reconnect"). The nodes are
 * `parley serve` child processes on a private schema of the shared PostgreSQL and a private
 * prefix of the local Redis, stopped with SIGTERM as systemd stops a unit, then started again.
 * Six users, two per node, each send a steady flow of chat messages to a user on another node
 * while node 1, 2 and 3 are restarted in turn.
 *
 * "Acknowledged" is XEP-0198's: every client enables stream management and asks for an ack
 * (`<r/>`) after each message; a message counts once an `<a h/>` covers it (§4: the server
 * handled it, i.e. routed it: into the recipient's session, its node's Redis stream, or offline
 * storage). Clients acknowledge what they receive in turn (an `<a h/>` after each batch read,
 * which §4 allows unasked), so that a node going down stores only what its clients did not
 * confirm. A client whose node stops reconnects: one of each node's two users at once to
 * another node, the other only once its node is back (offline in between, so what is sent to it
 * then goes to offline storage, XEP-0160), and the first one moves back home then.
 *
 * Checked at each step: the node's clients get `<stream:error><system-shutdown/>` and the end of
 * the stream (RFC 6120 §4.9.3.22, §4.4) and the process exits 0; resuming the session on another
 * node fails (XEP-0198 §5: it went with its process); the other two nodes stay in
 * `parley cluster status` (the service never has zero nodes up); every user's view of its
 * contacts' presence is what is really online (RFC 6121 §4.5.2: the stopped node's sessions
 * end as unavailable; §4.2.2: a new login probes); at the end, every acknowledged message
 * reached its recipient exactly once, live or from offline storage.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Redis } from "ioredis";
import pg from "pg";
import { readClusterStatus } from "../../src/cluster/status.ts";
import type { Element } from "../../src/xml/element.ts";
import { type ChildNodeConfig, spawnChildNode } from "../helpers/cluster-node.ts";
import { freePort } from "../helpers/pg-cluster.ts";
import type { RawClient } from "../helpers/raw.ts";
import { startTestServer } from "../helpers/server.ts";
import { postgresSkip, redisSkip, TEST_PG_URL, TEST_REDIS_URL } from "../helpers/services.ts";
import { StanzaReader } from "../helpers/stanza-reader.ts";
import { waitFor } from "../helpers/wait.ts";
import { login } from "../helpers/xmpp-raw-login.ts";
import { befriend } from "../helpers/xmpp-user.ts";

const TAG = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const PREFIX = `parley-test-roll-${TAG}`;
const SCHEMA = `parley_roll_${TAG.replace(/-/g, "_")}`;
const NODES = 3;
/** User i lives on node i % 3: users 0–2 reconnect elsewhere at once, 3–5 wait for their node. */
const USERS = Array.from({ length: 6 }, (_, i) => `u${i}`);
const NS_SM = "urn:xmpp:sm:3";

interface Node {
	name: string;
	port: number;
	config: ChildNodeConfig;
	child: ChildProcess | null;
	exited: Promise<number | null> | null;
	/** What its current process wrote on stderr. */
	output: () => string;
}

/** One connection of a user: what it sent since XEP-0198 was enabled, and what the server acked. */
interface Conn {
	user: number;
	jid: string;
	node: number;
	c: RawClient;
	r: StanzaReader;
	/** Ids of the messages sent since `<enabled/>`, in order: `<a h="n"/>` covers the first n. */
	sent: string[];
	acked: number;
	/** Index in `r.stanzas` of the first stanza after `<enabled/>` (§4: h counts from there). */
	base: number;
	left: boolean;
	/** The h of the last `<a/>` this client sent (XEP-0198 §4: stanzas it has read). */
	told: number;
	/** `told` at each `<r/>` sent: the server's n-th `<a/>` answers the n-th `<r/>`. */
	toldAtR: number[];
	/** Answers to `<r/>` received: the server had read the client's data up to that `<r/>`. */
	answers: number;
	/** The highest h the server is known to have read from this client (RFC 6120 §10.1 order). */
	confirmed: number;
	/** XEP-0198 §5 resumption id. */
	previd: string;
}

const nodes: Node[] = [];
const conns: Conn[] = [];
/** The live connection of each user, or null while it is offline. */
const current: (Conn | null)[] = USERS.map(() => null);
let generation = 0;

function nodeConfig(i: number, port: number, dataDir: string): ChildNodeConfig {
	return {
		dataDir,
		port,
		prefix: PREFIX,
		node: `roll-${i}-${TAG}`,
		postgres: { url: TEST_PG_URL, schema: SCHEMA },
	};
}

/** The nodes `parley cluster status` shows alive (src/cluster/status.ts reads the same keys). */
async function aliveNodes(redis: Redis): Promise<string[]> {
	const status = await readClusterStatus(redis, PREFIX);
	return status.nodes
		.filter((n) => n.health === "alive")
		.map((n) => n.node)
		.sort();
}

function listening(port: number): Promise<boolean> {
	return new Promise((resolve) => {
		const s = netConnect({ port, host: "127.0.0.1" });
		s.once("connect", () => {
			s.destroy();
			resolve(true);
		});
		s.once("error", () => resolve(false));
	});
}

/** Starts node i and waits until it is in the cluster and accepts connections. */
async function startNode(redis: Redis, i: number): Promise<void> {
	const n = nodes[i] as Node;
	const log = process.env.ROLL_LOG;
	const started = spawnChildNode(n.config, {
		...(log ? { tee: (d: string) => appendFileSync(log, `[${n.name}] ${d}`) } : {}),
	});
	n.child = started.child;
	n.exited = started.exited;
	n.output = started.output;
	let gone = false;
	void n.exited.then(() => {
		gone = true;
	});
	await waitFor(
		async () => {
			if (gone) throw new Error(`node ${i} exited`);
			return (await aliveNodes(redis)).includes(n.name) && (await listening(n.port));
		},
		`node ${i} in the cluster`,
		30_000,
	).catch((err: Error) => {
		throw new Error(`${err.message}; it said: ${n.output()}`);
	});
}

/** The number of stanzas (not nonzas) received since `<enabled/>`: XEP-0198 §4's h. */
function inbound(k: Conn): number {
	return k.r
		.since(k.base)
		.filter((el) => el.name === "message" || el.name === "presence" || el.name === "iq").length;
}

/**
 * Logs `user` in on node `node` (RFC 6120 binding, a fresh resource), enables XEP-0198, sends
 * initial presence and keeps acknowledging what arrives: an answer to each `<r/>` and an
 * unasked `<a/>` after each read that brought stanzas (§4: "MAY send an <a/> element at any
 * time").
 */
async function connectUser(user: number, node: number): Promise<Conn> {
	const name = USERS[user] as string;
	const resource = `g${++generation}`;
	const c = await login((nodes[node] as Node).port, name, `pw-${name}`, { resource });
	const r = new StanzaReader(c);
	// Stream management before initial presence, so that the offline messages it brings
	// (XEP-0160) are counted and acknowledged too.
	c.send(`<enable xmlns='${NS_SM}' resume='true'/>`);
	const enabled = await r.wait((el) => el.name === "enabled", 0, "<enabled/>");
	c.send("<presence/>");
	const k: Conn = {
		user,
		jid: `${name}@localhost/${resource}`,
		node,
		c,
		r,
		// The initial presence below is the first stanza h counts.
		sent: ["(initial presence)"],
		acked: 0,
		base: r.stanzas.indexOf(enabled) + 1,
		left: false,
		told: 0,
		toldAtR: [],
		answers: 0,
		confirmed: 0,
		previd: enabled.attrs.id ?? "",
	};
	let seen = k.base;
	const onData = () => {
		if (c.closed || k.left) return;
		const fresh = r.since(seen);
		seen += fresh.length;
		for (const el of fresh)
			if (el.name === "a") {
				k.acked = Math.max(k.acked, Number(el.attrs.h));
				k.confirmed = k.toldAtR[k.answers++] ?? k.confirmed;
			}
		const h = inbound(k);
		if (h !== k.told || fresh.some((el) => el.name === "r")) {
			k.told = h;
			c.send(`<a xmlns='${NS_SM}' h='${h}'/>`);
		}
	};
	c.socket.on("data", onData);
	onData();
	conns.push(k);
	current[user] = k;
	return k;
}

/** XEP-0198 §4: asks the server how many of this client's stanzas it has handled. */
function requestAck(k: Conn): void {
	k.toldAtR.push(k.told);
	k.c.send(`<r xmlns='${NS_SM}'/>`);
}

/** Leaves in order: acknowledges what it read, then closes the stream (RFC 6120 §4.4). */
async function leave(k: Conn): Promise<void> {
	k.told = inbound(k);
	k.c.send(`<a xmlns='${NS_SM}' h='${k.told}'/></stream:stream>`);
	k.left = true;
	// The server reads the <a/> before the closing tag (RFC 6120 §10.1 in-order processing).
	k.confirmed = k.told;
	if (current[k.user] === k) current[k.user] = null;
	await k.c.waitClosed();
}

/** Who `k` believes is online among its contacts: presence in arrival order (RFC 6121 §4). */
function view(k: Conn): string[] {
	const on = new Set<string>();
	for (const el of k.r.since(0)) {
		if (el.name !== "presence") continue;
		const from = el.attrs.from ?? "";
		if (from === k.jid) continue;
		if (el.attrs.type === "unavailable") on.delete(from);
		else if (el.attrs.type === undefined) on.add(from);
	}
	return [...on].sort();
}

/** Every online user sees exactly the other online users' current resources. */
async function presenceRight(): Promise<void> {
	const expected = (k: Conn) =>
		current
			.filter((o): o is Conn => o !== null && o !== k)
			.map((o) => o.jid)
			.sort();
	await waitFor(
		() => current.every((k) => k === null || view(k).join() === expected(k).join()),
		"every user's view of its contacts' presence",
		20_000,
	).catch((err: Error) => {
		const wrong = current
			.filter((k): k is Conn => k !== null && view(k).join() !== expected(k).join())
			.map((k) => `${k.jid} on node ${k.node} sees [${view(k)}], expected [${expected(k)}]`);
		throw new Error(`${err.message}: ${wrong.join("; ")}`);
	});
}

/** The steady flow: each online user sends to the next user (on another node), then `<r/>`. */
function flow(): { stop: () => Promise<void> } {
	let running = true;
	let seq = 0;
	const done = (async () => {
		while (running) {
			seq++;
			for (const k of current) {
				if (!k || k.c.closed || k.left) continue;
				const id = `m-${k.user}-${seq}`;
				const to = `${USERS[(k.user + 1) % USERS.length]}@localhost`;
				k.c.send(`<message to='${to}' id='${id}' type='chat'><body>${id}</body></message>`);
				requestAck(k);
				k.sent.push(id);
			}
			// Pacing, not a timing assertion: a steady flow rather than a flood on 2 shared cores.
			await new Promise((r) => setTimeout(r, 40));
		}
	})();
	return {
		stop: async () => {
			running = false;
			await done;
		},
	};
}

describe("a rolling restart of a three-node cluster", { skip: redisSkip || postgresSkip }, () => {
	let redis: Redis;
	let dataDir: string;

	before(async () => {
		redis = new Redis(TEST_REDIS_URL);
		dataDir = mkdtempSync(join(tmpdir(), "parley-roll-"));
		// Accounts and mutual subscriptions (RFC 6121 §3 "both"), written through a server on the
		// same schema that is not part of the cluster and stops before the nodes start.
		const setup = await startTestServer({
			storage: "sqlite",
			dataDir,
			config: { storage: { backend: "postgres", url: TEST_PG_URL, schema: SCHEMA } },
			users: USERS.map((u) => [`${u}@localhost`, `pw-${u}`] as [string, string]),
		});
		for (let i = 0; i < USERS.length; i++)
			for (let j = i + 1; j < USERS.length; j++)
				await befriend(setup.server, `${USERS[i]}@localhost`, `${USERS[j]}@localhost`);
		await setup.stop();
		for (let i = 0; i < NODES; i++) {
			const port = await freePort();
			nodes.push({
				name: `roll-${i}-${TAG}`,
				port,
				config: nodeConfig(i, port, dataDir),
				child: null,
				exited: null,
				output: () => "",
			});
		}
	});

	after(async () => {
		for (const k of conns) k.c.socket.destroy();
		for (const n of nodes) n.child?.kill("SIGKILL");
		const keys = await redis.keys(`${PREFIX}:*`);
		if (keys.length) await redis.del(...keys);
		await redis.quit();
		const c = new pg.Client({ connectionString: TEST_PG_URL });
		await c.connect();
		await c.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`);
		await c.end();
		rmSync(dataDir, { recursive: true, force: true });
	});

	test("SIGTERM node 1, 2, 3 in turn under a steady cross-node flow: every acknowledged message arrives exactly once, presence stays right, two nodes always up", async () => {
		for (let i = 0; i < NODES; i++) await startNode(redis, i);
		assert.deepEqual(await aliveNodes(redis), nodes.map((n) => n.name).sort());
		for (let u = 0; u < USERS.length; u++) await connectUser(u, u % NODES);
		// Two logins on different nodes closer together than the registry's propagation may miss
		// each other's presence (docs/scaling.md "Rolling restarts", a known gap): once every
		// node's heartbeat counts its two sessions (written after its registry entries went out
		// on the same connection), each user says its presence again (RFC 6121 §4.4.2 broadcast).
		await waitFor(
			async () => (await readClusterStatus(redis, PREFIX)).nodes.every((n) => n.sessions === 2),
			"two sessions on each node",
			20_000,
		);
		for (const k of current) {
			k?.c.send("<presence><status>up</status></presence>");
			k?.sent.push("(presence update)");
		}
		const traffic = flow();
		try {
			for (let i = 0; i < NODES; i++) {
				const node = nodes[i] as Node;
				const others = nodes.filter((n) => n !== node).map((n) => n.name);
				const here = current.filter((k): k is Conn => k?.node === i);
				// Some of the flow runs through this node before it goes.
				const before = Math.max(...here.map((k) => k.sent.length));
				await waitFor(
					() => here.every((k) => k.acked >= before + 5),
					"some acknowledged traffic",
					20_000,
				).catch((err: Error) => {
					const k = here[0] as Conn;
					throw new Error(
						`${err.message}: ${k.jid} acked ${k.acked} of ${k.sent.length}; ${k.c.received.slice(-600)}`,
					);
				});
				node.child?.kill("SIGTERM");
				// RFC 6120 §4.9.3.22: the server is being shut down; §4.4: the stream is closed.
				for (const k of here) {
					await k.c.waitClosed(20_000);
					assert.match(
						k.c.received,
						/<stream:error><system-shutdown xmlns="urn:ietf:params:xml:ns:xmpp-streams"\/>(<text[^>]*>[^<]*<\/text>)?<\/stream:error><\/stream:stream>$/,
						`${k.jid}: ${k.c.received.slice(-300)}`,
					);
					current[k.user] = null;
				}
				assert.equal(await node.exited, 0, node.output());
				// XEP-0198 §5: the session went with its process; resuming it elsewhere fails, and the
				// client binds afresh (below).
				const first = here[0] as Conn;
				assert.ok(first.previd, "resumption was offered");
				const name = USERS[first.user] as string;
				const again = await login((nodes[(i + 1) % NODES] as Node).port, name, `pw-${name}`, {
					bind: false,
				});
				again.send(`<resume xmlns='${NS_SM}' previd='${first.previd}' h='${inbound(first)}'/>`);
				assert.match(
					await again.waitFor(/<failed[\s\S]*?<\/failed>|<failed[^>]*\/>/),
					/<failed xmlns="urn:xmpp:sm:3"[^>]*><item-not-found/,
				);
				again.socket.destroy();
				node.child = null;
				// The node left: the others serve on (never zero nodes up), and its users are seen to
				// go (RFC 6121 §4.5.2: unavailable presence when a session ends).
				assert.deepEqual(await aliveNodes(redis), others.sort());
				await presenceRight();
				// One of its users reconnects at once to the next node; the other waits for its own.
				const movers = here.filter((k) => k.user < NODES);
				for (const k of movers) {
					await connectUser(k.user, (i + 1) % NODES);
					await presenceRight();
				}
				await startNode(redis, i);
				assert.deepEqual(await aliveNodes(redis), nodes.map((n) => n.name).sort());
				for (const k of here) {
					const moved = current[k.user];
					if (moved) {
						await leave(moved);
						await presenceRight();
					}
					await connectUser(k.user, i);
					await presenceRight();
				}
			}
		} finally {
			await traffic.stop();
		}
		// Every acknowledged message was routed; what is still in flight arrives. Then the counts.
		for (const k of current) if (k) requestAck(k);
		await waitFor(
			() => current.every((k) => k === null || k.acked === k.sent.length),
			"the last acknowledgements",
			20_000,
		);
		const ackedIds = conns.flatMap((k) =>
			k.sent.slice(0, k.acked).filter((id) => id.startsWith("m-")),
		);
		/** Each copy of a message: the connection, its h position (§4), and the stanza. */
		type Copy = { k: Conn; h: number; el: Element };
		const copies = new Map<string, Copy[]>();
		const received = () => {
			copies.clear();
			for (const k of conns) {
				let h = 0;
				for (const el of k.r.since(k.base)) {
					if (el.name !== "message" && el.name !== "presence" && el.name !== "iq") continue;
					h++;
					const id = el.attrs.id ?? "";
					if (el.name !== "message" || !id.startsWith("m-")) continue;
					copies.set(id, [...(copies.get(id) ?? []), { k, h, el }]);
				}
			}
			return copies;
		};
		await waitFor(
			() => ackedIds.every((id) => received().has(id)),
			"every acknowledged message",
			20_000,
		).catch(() => {
			const lost = ackedIds.filter((id) => !copies.has(id));
			throw new Error(`lost ${lost.length} of ${ackedIds.length}: ${lost.join(" ")}`);
		});
		// Exactly once, but for XEP-0198's own window: a message the server wrote to a connection
		// that ended (the node stopped, or the client left) before the client's <a/> covering it
		// reached the server is unacknowledged, and goes to offline storage (XEP-0198 §5 end of
		// session: "treat as if delivery failed"; the client read it too). Such a second copy must
		// be the offline one (XEP-0203 stamp) of a live copy the server had not been told of.
		const delay = (c: Copy) => c.el.getChild("delay", "urn:xmpp:delay") !== undefined;
		const wrong = [...received()].filter(
			([, cs]) =>
				cs.length > 2 ||
				(cs.length === 2 &&
					!(
						!delay(cs[0] as Copy) &&
						delay(cs[1] as Copy) &&
						(cs[0] as Copy).h > (cs[0] as Copy).k.confirmed &&
						((cs[0] as Copy).k.left || (cs[0] as Copy).k.c.closed)
					)),
		);
		assert.deepEqual(
			wrong.map(
				([id, cs]) =>
					`${id}: ${cs.map((c) => `${c.k.jid} h=${c.h} confirmed=${c.k.confirmed} ${c.el}`).join(" | ")}`,
			),
			[],
			"delivered more than once",
		);
		const twice = [...copies.values()].filter((cs) => cs.length === 2).length;
		// Some went to offline storage (a waiting user), and carry XEP-0203 stamps.
		const delayed = [...copies.values()].filter((cs) => cs.some(delay));
		assert.ok(delayed.length > 0, "some messages came from offline storage");
		// Every sender on a live node had its messages acknowledged: the flow ran throughout.
		assert.ok(ackedIds.length > 100, `${ackedIds.length} acknowledged`);
		process.stderr.write(
			`rolling restart: ${ackedIds.length} messages acknowledged, ${delayed.length} from offline storage, ${twice} twice (live, then offline: unacknowledged by the client when its stream ended)\n`,
		);
		for (const k of conns) if (!k.left && !k.c.closed) k.c.send("</stream:stream>");
	});
});
