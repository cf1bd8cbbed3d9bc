/**
 * PubSub nodes spread over the nodes of a cluster (issue 16, docs/architecture.md "Components
 * across nodes"): node A runs in this process, node B is a `parley serve` child, both on one
 * PostgreSQL schema and the local Redis under a private prefix. A pubsub node is owned by the
 * cluster node where it was created; a subscriber on the other node gets its notifications;
 * requests naming no node are answered from storage; when the owner is killed (SIGKILL) a live
 * node takes the pubsub node over from storage with its items and subscriptions.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Redis } from "ioredis";
import pg from "pg";
import { spawnChildNode, testCluster } from "../helpers/cluster-node.ts";
import { freePort } from "../helpers/pg-cluster.ts";
import type { RawClient } from "../helpers/raw.ts";
import { iq, online } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { postgresSkip, redisSkip, TEST_PG_URL, TEST_REDIS_URL } from "../helpers/services.ts";
import { waitFor } from "../helpers/wait.ts";

const TAG = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const PREFIX = `parley-pubsubspread-${TAG}`;
const SCHEMA = `parley_pubsubspread_${TAG.replace(/-/g, "_")}`;
const NODE_A = `ps-a-${TAG}`;
const NODE_B = `ps-b-${TAG}`;
const SERVICE = "pubsub.localhost";
const PUBSUB = "http://jabber.org/protocol/pubsub";

let a: TestServer;
let child: ChildProcess | null = null;
let portB = 0;
let childDir = "";
let childOutput = () => "";
const redis = new Redis(TEST_REDIS_URL, { lazyConnect: true });
const clients: RawClient[] = [];

async function on(port: number, user: string, resource: string): Promise<RawClient> {
	const c = await online(port, user, resource);
	clients.push(c);
	return c;
}

/** The cluster node holding the lease of pubsub node `node` (src/cluster/ownership.ts). */
const ownerOf = (node: string) => redis.get(`${PREFIX}:room:${node}@${SERVICE}`);

let seq = 0;
/** Sends an IQ to the service with `payload` and returns the answer. */
async function ask(
	c: RawClient,
	type: "get" | "set",
	payload: string,
	ms?: number,
): Promise<string> {
	const id = `ps-${++seq}`;
	return iq(c, id, `<iq type='${type}' id='${id}' to='${SERVICE}'>${payload}</iq>`, ms);
}

/** XEP-0060 §8.1.1 create (§8.1.2 instant without a name); returns the node's name. */
async function create(c: RawClient, node?: string): Promise<string> {
	const answer = await ask(
		c,
		"set",
		`<pubsub xmlns='${PUBSUB}'><create${node ? ` node='${node}'` : ""}/></pubsub>`,
	);
	assert.match(answer, /type="result"/);
	return node ?? (answer.match(/<create node="([^"]+)"/)?.[1] as string);
}

/** §7.1 publishes item `id` with a `<entry>` of `text` to `node`. */
async function publish(c: RawClient, node: string, id: string, text: string): Promise<void> {
	const answer = await ask(
		c,
		"set",
		`<pubsub xmlns='${PUBSUB}'><publish node='${node}'><item id='${id}'><entry xmlns='urn:example'>${text}</entry></item></publish></pubsub>`,
	);
	assert.match(answer, /type="result"/);
}

/** §6.1 subscribes the client's full JID to `node`. */
async function subscribe(c: RawClient, node: string, jid: string): Promise<void> {
	const answer = await ask(
		c,
		"set",
		`<pubsub xmlns='${PUBSUB}'><subscribe node='${node}' jid='${jid}'/></pubsub>`,
	);
	assert.match(answer, /subscription="subscribed"/);
}

/** §7.1.2.1: waits for the event notification of item `id` of `node`. */
function event(c: RawClient, node: string, id: string, text: string, mark: number) {
	return c.waitFor(
		new RegExp(
			`<message[^>]*from="${SERVICE}"[\\s\\S]*?<items node="${node}"><item id="${id}"[^>]*><entry xmlns="urn:example">${text}</entry>`,
		),
		mark,
	);
}

/** The configuration of a node run in this process. */
const inProcess = (node: string) => ({
	auth: { require_encryption: false, allow_plain_without_tls: true },
	cluster: testCluster(PREFIX, node),
	storage: { backend: "postgres" as const, url: TEST_PG_URL, schema: SCHEMA },
	components: { [SERVICE]: { type: "pubsub" as const } },
});

describe("PubSub nodes spread over the nodes of a cluster (issue 16)", {
	skip: redisSkip || postgresSkip,
}, () => {
	before(async () => {
		await redis.connect();
		a = await startTestServer({
			storage: "sqlite",
			config: inProcess(NODE_A),
			users: ["alice", "bob"].map((u) => [`${u}@localhost`, `pw-${u}`] as [string, string]),
		});
		// Node B: another process with a data directory of its own, as on another machine.
		portB = await freePort();
		childDir = mkdtempSync(join(tmpdir(), "parley-pubsubspread-"));
		const started = spawnChildNode({
			dataDir: childDir,
			port: portB,
			prefix: PREFIX,
			node: NODE_B,
			postgres: { url: TEST_PG_URL, schema: SCHEMA },
			extra: [`[components.${JSON.stringify(SERVICE)}]`, 'type = "pubsub"'],
		});
		child = started.child;
		childOutput = started.output;
	});

	after(async () => {
		for (const c of clients) c.end();
		child?.kill("SIGKILL");
		await a?.stop();
		if (childDir) rmSync(childDir, { recursive: true, force: true });
		const keys = await redis.keys(`${PREFIX}:*`);
		if (keys.length) await redis.del(...keys);
		await redis.quit();
		const c = new pg.Client({ connectionString: TEST_PG_URL });
		await c.connect();
		await c.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`);
		await c.end();
	});

	let alice: RawClient;
	let bob: RawClient;
	let instant = "";

	test("XEP-0060 §8.1: a pubsub node is owned by the cluster node where it was created, an instant node (§8.1.2) too", async () => {
		bob = await waitFor(
			() => on(portB, "bob", "b").catch(() => undefined),
			"node B to serve",
			30_000,
		).catch((err: Error) => {
			throw new Error(`${err.message}; node B said: ${childOutput()}`);
		});
		alice = await on(a.port, "alice", "a");
		await create(alice, "news-a");
		await create(bob, "news-b");
		instant = await create(bob);
		assert.ok(instant, "§8.1.2: the result names the instant node");
		assert.equal(await ownerOf("news-a"), NODE_A);
		assert.equal(await ownerOf("news-b"), NODE_B);
		assert.equal(await ownerOf(instant), NODE_B);
		// §8.1.1: the name is taken whichever node is asked (the request goes to the owner).
		const dup = await ask(
			alice,
			"set",
			`<pubsub xmlns='${PUBSUB}'><create node='news-b'/></pubsub>`,
		);
		assert.match(dup, /type="error"[\s\S]*<conflict\b/);
	});

	test("XEP-0060 §7.1.2.1: published on one cluster node, the subscriber on the other gets the event; §5.6 and §5.5 answered from storage on either node", async () => {
		await subscribe(bob, "news-a", "bob@localhost/b");
		await subscribe(alice, "news-b", "alice@localhost/a");
		let mark = bob.received.length;
		await publish(alice, "news-a", "a1", "from A");
		await event(bob, "news-a", "a1", "from A", mark);
		mark = alice.received.length;
		await publish(bob, "news-b", "b1", "from B");
		await event(alice, "news-b", "b1", "from B", mark);
		// The publisher on node A publishes to news-b through node B's owner: an owner on node B.
		const aff = await ask(
			bob,
			"set",
			`<pubsub xmlns='${PUBSUB}#owner'><affiliations node='news-b'><affiliation jid='alice@localhost' affiliation='publisher'/></affiliations></pubsub>`,
		);
		assert.match(aff, /type="result"/);
		mark = alice.received.length;
		await publish(alice, "news-b", "b2", "via A");
		await event(alice, "news-b", "b2", "via A", mark);
		// §5.6: every subscription of Bob, asked on node B, includes news-a held by node A.
		const subs = await ask(bob, "get", `<pubsub xmlns='${PUBSUB}'><subscriptions/></pubsub>`);
		assert.match(subs, /<subscription node="news-a" jid="bob@localhost\/b"/);
		// XEP-0030 §4 on the service root: the nodes of both cluster nodes, asked on either.
		for (const c of [alice, bob]) {
			const items = await ask(c, "get", "<query xmlns='http://jabber.org/protocol/disco#items'/>");
			for (const n of ["news-a", "news-b", instant]) assert.match(items, new RegExp(`node="${n}"`));
		}
		// §6.5: items of a node owned elsewhere, through its owner.
		const got = await ask(
			alice,
			"get",
			`<pubsub xmlns='${PUBSUB}'><items node='news-b'/></pubsub>`,
		);
		assert.match(got, /<item id="b1"/);
		assert.match(got, /<item id="b2"/);
	});

	test("a cluster node that lost a pubsub node's lease (paused past it) drops the node; the new owner reads it from storage", async () => {
		assert.equal(await ownerOf("news-a"), NODE_A);
		assert.match((await a.server.metricsText()).body, /^parley_cluster_owned_rooms\{[^}]*\} 1$/m);
		// As if node A had been paused longer than the lease and node B had claimed news-a.
		await redis.set(`${PREFIX}:room:news-a@${SERVICE}`, NODE_B, "PX", 3000);
		await waitFor(
			async () =>
				/^parley_cluster_owned_rooms\{[^}]*\} 0$/m.test((await a.server.metricsText()).body) ||
				undefined,
			"node A to drop news-a at its next renewal",
		);
		// Alice's publication goes to node B, which loads news-a (her ownership, Bob's
		// subscription, item a1) from storage.
		const mark = bob.received.length;
		await publish(alice, "news-a", "a2", "at the new owner");
		await event(bob, "news-a", "a2", "at the new owner", mark);
		const got = await ask(bob, "get", `<pubsub xmlns='${PUBSUB}'><items node='news-a'/></pubsub>`);
		assert.match(got, /<item id="a1"/);
		assert.match(got, /<item id="a2"/);
		assert.equal(await ownerOf("news-a"), NODE_B);
		// And back: node A, owner again, reads news-a afresh (its copy from before lacks a2).
		await redis.set(`${PREFIX}:room:news-a@${SERVICE}`, NODE_A, "PX", 3000);
		await waitFor(async () => {
			await ask(alice, "get", `<pubsub xmlns='${PUBSUB}'><items node='news-a'/></pubsub>`);
			return (
				/^parley_cluster_owned_rooms\{[^}]*\} 1$/m.test((await a.server.metricsText()).body) ||
				undefined
			);
		}, "node A to hold news-a again");
		const back = await ask(
			alice,
			"get",
			`<pubsub xmlns='${PUBSUB}'><items node='news-a'/></pubsub>`,
		);
		assert.match(back, /<item id="a1"/);
		assert.match(back, /<item id="a2"/);
	});

	test("the owner killed (SIGKILL), a live cluster node takes its pubsub nodes over from storage: items and subscriptions kept", async () => {
		const proc = child as ChildProcess;
		assert.equal(proc.exitCode, null, `node B runs; it said: ${childOutput()}`);
		const exited = new Promise((resolve) => proc.once("exit", resolve));
		proc.kill("SIGKILL");
		await exited;
		child = null;
		await waitFor(
			async () => (await ownerOf("news-b")) === null || undefined,
			"node B's leases to expire",
		);
		// §6.5: node A claims news-b at its next stanza and reads it from storage.
		const got = await ask(
			alice,
			"get",
			`<pubsub xmlns='${PUBSUB}'><items node='news-b'/></pubsub>`,
		);
		assert.match(got, /<item id="b1"[^>]*><entry xmlns="urn:example">from B<\/entry>/);
		assert.match(got, /<item id="b2"/);
		assert.equal(await ownerOf("news-b"), NODE_A);
		// Alice stays subscribed and a publisher (both stored): her new item reaches her.
		const mark = alice.received.length;
		await publish(alice, "news-b", "b3", "after the crash");
		await event(alice, "news-b", "b3", "after the crash", mark);
		// The instant node is still there, taken over the same way.
		const info = await ask(
			alice,
			"get",
			`<query xmlns='http://jabber.org/protocol/disco#info' node='${instant}'/>`,
		);
		assert.match(info, /type="result"/);
		assert.equal(await ownerOf(instant), NODE_A);
	});
});
