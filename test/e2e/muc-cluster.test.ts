/**
 * MUC rooms spread over the nodes of a cluster (issue 16, docs/architecture.md "Components
 * across nodes"): node A runs in this process, node B is a `parley serve` child, both on one
 * PostgreSQL schema and the local Redis under a private prefix. A room is owned by the node
 * where its first stanza arrived; clients on either node talk in it; when its owner is killed
 * (SIGKILL) a live node takes it over from storage, the occupants left find out by XEP-0410
 * self-ping and enter again, and the room's history and archive are kept.
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
const PREFIX = `parley-mucspread-${TAG}`;
const SCHEMA = `parley_mucspread_${TAG.replace(/-/g, "_")}`;
const NODE_A = `muc-a-${TAG}`;
const NODE_B = `muc-b-${TAG}`;
const NODE_C = `muc-c-${TAG}`;
const NODE_D = `muc-d-${TAG}`;
const SERVICE = "conference.localhost";
const MUC = "http://jabber.org/protocol/muc";
const MUC_OWNER = "http://jabber.org/protocol/muc#owner";

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

/** The node holding the lease of `room` (src/cluster/ownership.ts), null when none does. */
const ownerOf = (room: string) => redis.get(`${PREFIX}:room:${room}@${SERVICE}`);

/** Enters `room/nick` (XEP-0045 §7.2) and returns what came up to the self-presence (110). */
async function enter(c: RawClient, room: string, nick: string): Promise<string> {
	const mark = c.received.length;
	c.send(`<presence to='${room}@${SERVICE}/${nick}'><x xmlns='${MUC}'/></presence>`);
	const text = await c.waitFor(
		new RegExp(`from="${room}@${SERVICE}/${nick}"[\\s\\S]*?<status code="110"`),
		mark,
	);
	return text;
}

/** §10.2: submits the room configuration (an empty form: §10.1.2 instant room). */
async function configure(c: RawClient, room: string, fields: Record<string, string> = {}) {
	const f = Object.entries(fields)
		.map(([k, v]) => `<field var='${k}'><value>${v}</value></field>`)
		.join("");
	const form = f
		? `<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>${f}`
		: "";
	const id = `cfg-${room}-${c.received.length}`;
	const answer = await iq(
		c,
		id,
		`<iq type='set' id='${id}' to='${room}@${SERVICE}'><query xmlns='${MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'>${form}</x></query></iq>`,
	);
	assert.match(answer, /type="result"/);
}

/** Sends a groupchat message to `room` and waits for it at each of `readers`. */
async function say(from: RawClient, room: string, body: string, readers: RawClient[]) {
	const marks = readers.map((r) => r.received.length);
	from.send(`<message to='${room}@${SERVICE}' type='groupchat'><body>${body}</body></message>`);
	for (const [i, r] of readers.entries())
		await r.waitFor(
			new RegExp(`<message[^>]*type="groupchat"[\\s\\S]*?<body>${body}</body>`),
			marks[i],
		);
}

/** XEP-0030 §4 on the service: the rooms its disco#items lists (XEP-0045 §6.3). */
async function listed(c: RawClient): Promise<string[]> {
	const id = `items-${c.received.length}`;
	const answer = await iq(
		c,
		id,
		`<iq type='get' id='${id}' to='${SERVICE}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`,
	);
	return [...answer.matchAll(/jid="([^"@]+)@/g)].map((m) => m[1] as string).sort();
}

/** The configuration of a node run in this process. */
const inProcess = (node: string) => ({
	auth: { require_encryption: false, allow_plain_without_tls: true },
	cluster: testCluster(PREFIX, node),
	storage: { backend: "postgres" as const, url: TEST_PG_URL, schema: SCHEMA },
	components: { [SERVICE]: { type: "muc" as const } },
});

describe("MUC rooms spread over the nodes of a cluster (issue 16)", {
	skip: redisSkip || postgresSkip,
}, () => {
	before(async () => {
		await redis.connect();
		a = await startTestServer({
			storage: "sqlite",
			config: inProcess(NODE_A),
			users: ["alice", "bob", "carol"].map(
				(u) => [`${u}@localhost`, `pw-${u}`] as [string, string],
			),
		});
		// Node B: another process with a data directory of its own, as on another machine.
		portB = await freePort();
		childDir = mkdtempSync(join(tmpdir(), "parley-mucspread-"));
		const started = spawnChildNode({
			dataDir: childDir,
			port: portB,
			prefix: PREFIX,
			node: NODE_B,
			postgres: { url: TEST_PG_URL, schema: SCHEMA },
			extra: [`[components.${JSON.stringify(SERVICE)}]`, 'type = "muc"'],
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

	test("XEP-0045 §10.1: a room is owned by the node where it was created; occupants on both nodes talk; §6.3 lists the rooms of every node", async () => {
		bob = await waitFor(
			() => on(portB, "bob", "b").catch(() => undefined),
			"node B to serve",
			30_000,
		).catch((err: Error) => {
			throw new Error(`${err.message}; node B said: ${childOutput()}`);
		});
		alice = await on(a.port, "alice", "a");

		// Alpha is made on node A, beta and gamma on node B: each stays where it was made.
		assert.match(await enter(alice, "alpha", "Alice"), /<status code="201"/);
		await configure(alice, "alpha");
		assert.match(await enter(bob, "beta", "Bob"), /<status code="201"/);
		// Beta keeps its messages (XEP-0313) and outlives its node (§10.2 persistent).
		await configure(bob, "beta", {
			"muc#roomconfig_persistentroom": "1",
			"muc#roomconfig_enablearchiving": "1",
		});
		assert.match(await enter(bob, "gamma", "Bob"), /<status code="201"/);
		await configure(bob, "gamma");
		assert.equal(await ownerOf("alpha"), NODE_A);
		assert.equal(await ownerOf("beta"), NODE_B);
		assert.equal(await ownerOf("gamma"), NODE_B);

		// Alice, on node A, enters beta, held by node B; both talk (§7.4: to every occupant).
		const markBob = bob.received.length;
		assert.doesNotMatch(await enter(alice, "beta", "Alice"), /<status code="201"/);
		await bob.waitFor(new RegExp(`<presence[^>]*from="beta@${SERVICE}/Alice"`), markBob);
		await say(alice, "beta", "from node A", [alice, bob]);
		await say(bob, "beta", "before the crash", [alice, bob]);

		// §6.3: each node lists the public rooms of both.
		assert.deepEqual(await listed(alice), ["alpha", "beta", "gamma"]);
		assert.deepEqual(await listed(bob), ["alpha", "beta", "gamma"]);
		// Redis lost the directory (a restart): each node holding rooms writes them again at its
		// next heartbeat.
		await redis.del(`${PREFIX}:rooms:${SERVICE}`);
		await waitFor(
			async () =>
				(await redis.hexists(`${PREFIX}:rooms:${SERVICE}`, `@${NODE_A}`)) === 1 &&
				(await redis.hexists(`${PREFIX}:rooms:${SERVICE}`, `@${NODE_B}`)) === 1,
			"both nodes to write the directory again",
		);
		assert.deepEqual(await listed(alice), ["alpha", "beta", "gamma"]);
		// Node A holds one room's lease (alpha), as its metrics say.
		assert.match((await a.server.metricsText()).body, /^parley_cluster_owned_rooms\{[^}]*\} 1$/m);
	});

	test("a node that lost a room's lease (paused past it) drops the room; its occupant's self-ping finds out from the new owner (XEP-0410 §3)", async () => {
		assert.match(await enter(alice, "delta", "Alice"), /<status code="201"/);
		await configure(alice, "delta", { "muc#roomconfig_persistentroom": "1" });
		assert.equal(await ownerOf("delta"), NODE_A);
		// As if node A had been paused longer than the lease and node B had claimed the room.
		await redis.set(`${PREFIX}:room:delta@${SERVICE}`, NODE_B, "PX", 3000);
		// At its next renewal node A finds the lease lost and drops the room; the self-ping then
		// goes to node B, which loads delta from storage, without Alice.
		const answer = await waitFor(async () => {
			const id = `lost-${alice.received.length}`;
			const a = await iq(
				alice,
				id,
				`<iq type='get' id='${id}' to='delta@${SERVICE}/Alice'><ping xmlns='urn:xmpp:ping'/></iq>`,
			);
			return /type="error"/.test(a) ? a : undefined;
		}, "node A to drop the room");
		assert.match(answer, /<not-acceptable\b/);
		assert.doesNotMatch(await enter(alice, "delta", "Alice"), /<status code="201"/);
		assert.equal(await ownerOf("delta"), NODE_B);
	});

	test("XEP-0045 §15.6.2: a node that stops tells the occupants on other nodes (status 332) and lets its rooms go; entering again moves the room", async () => {
		const c = await startTestServer({ storage: "sqlite", config: inProcess(NODE_C) });
		try {
			const carol = await on(c.port, "carol", "c");
			assert.match(await enter(carol, "epsilon", "Carol"), /<status code="201"/);
			await configure(carol, "epsilon", { "muc#roomconfig_persistentroom": "1" });
			assert.equal(await ownerOf("epsilon"), NODE_C);
			await enter(alice, "epsilon", "Alice");
			const mark = alice.received.length;
			await c.stop();
			const bye = await alice.waitFor(
				new RegExp(
					`<presence[^>]*from="epsilon@${SERVICE}/Alice"[^>]*type="unavailable"[\\s\\S]*?</presence>|<presence[^>]*type="unavailable"[^>]*from="epsilon@${SERVICE}/Alice"[\\s\\S]*?</presence>`,
				),
				mark,
			);
			assert.match(bye, /<status code="332"\/>/);
			assert.match(bye, /<status code="110"\/>/);
			assert.equal(await ownerOf("epsilon"), null, "released at once");
			// Entering again: node A claims the room and loads it from storage (no 201).
			assert.doesNotMatch(await enter(alice, "epsilon", "Alice"), /<status code="201"/);
			assert.equal(await ownerOf("epsilon"), NODE_A);
		} finally {
			await c.stop();
		}
	});

	test("XEP-0410 §3 and XEP-0045 §7.2.14: the owner killed, a live node takes the room over from storage; a self-ping answers not-acceptable, the occupant enters again and finds the history; its occupants leave the rooms of other nodes", async () => {
		// Node D, neither the leader nor the dying node, owns zeta, where Bob (node B) is too.
		const d = await startTestServer({ storage: "sqlite", config: inProcess(NODE_D) });
		try {
			const carolD = await on(d.port, "carol", "d");
			assert.match(await enter(carolD, "zeta", "Carol"), /<status code="201"/);
			await configure(carolD, "zeta");
			assert.equal(await ownerOf("zeta"), NODE_D);
			await enter(bob, "zeta", "Bob");
			const markD = carolD.received.length;

			const proc = child as ChildProcess;
			const exited = new Promise((resolve) => proc.once("exit", resolve));
			proc.kill("SIGKILL");
			await exited;
			child = null;
			// §7.14, no ghosts: node D learns that node B died and Bob leaves zeta.
			await carolD.waitFor(
				new RegExp(
					`<presence[^>]*from="zeta@${SERVICE}/Bob"[^>]*type="unavailable"|<presence[^>]*type="unavailable"[^>]*from="zeta@${SERVICE}/Bob"`,
				),
				markD,
			);

			// The dead node's leases expire (node_timeout); nobody holds the rooms until a stanza comes.
			await waitFor(
				async () =>
					((await ownerOf("beta")) === null && (await ownerOf("gamma")) === null) || undefined,
				"node B's leases to expire",
			);
			// §6.3: the persistent room is still listed (storage has it), the temporary one is gone.
			assert.deepEqual(await listed(alice), ["alpha", "beta", "delta", "epsilon", "zeta"]);

			// XEP-0410 §3: the client asks whether it is still in the room. Pings that went to node B
			// before node A learned it was gone get no answer; the first answered one says
			// not-acceptable: node A now holds beta, loaded from storage, without Alice in it.
			let answer = "";
			for (let i = 0; !answer; i++) {
				const id = `self-ping-${i}`;
				answer = await iq(
					alice,
					id,
					`<iq type='get' id='${id}' to='beta@${SERVICE}/Alice'><ping xmlns='urn:xmpp:ping'/></iq>`,
					2000,
				).catch(() => "");
				assert.ok(i < 20, "no answer to any self-ping");
			}
			assert.match(answer, /type="error"/);
			assert.match(answer, /<not-acceptable\b/);
			assert.equal(await ownerOf("beta"), NODE_A);

			// Alice enters again: the room exists (no 201) and its history is the archive's (§7.2.14).
			const mark0 = alice.received.length;
			assert.doesNotMatch(await enter(alice, "beta", "Alice"), /<status code="201"/);
			// The history follows the self-presence, each message with its delay (§7.2.14).
			assert.match(
				await alice.waitFor(
					/<message[^>]*type="groupchat"[\s\S]*?<body>before the crash<\/body>[\s\S]*?<\/message>/,
					mark0,
				),
				/<body>before the crash<\/body>[\s\S]*?<delay\b|<delay\b[\s\S]*?<body>before the crash<\/body>/,
			);

			// Bob, whose session ended with node B, comes back through node A and talks with Alice.
			const bob2 = await on(a.port, "bob", "b2");
			await enter(bob2, "beta", "Bob");
			await say(bob2, "beta", "after the crash", [alice, bob2]);

			// XEP-0313 on the room: what was said on node B and on node A, in order.
			const id = "mam-beta";
			const mark = alice.received.length;
			const fin = await iq(
				alice,
				id,
				`<iq type='set' id='${id}' to='beta@${SERVICE}'><query xmlns='urn:xmpp:mam:2'/></iq>`,
			);
			assert.match(fin, /<fin\b/);
			const results = alice.received.slice(mark);
			const order = ["from node A", "before the crash", "after the crash"].map((b) =>
				results.indexOf(`<body>${b}</body>`),
			);
			assert.ok(
				order.every((n) => n >= 0),
				`all three archived: ${results}`,
			);
			assert.deepEqual(
				[...order].sort((x, y) => x - y),
				order,
			);
		} finally {
			await d.stop();
		}
	});
});
