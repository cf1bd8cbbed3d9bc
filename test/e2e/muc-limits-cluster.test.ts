/**
 * A MUC service's `max_rooms` and `max_rooms_per_user` in a cluster (issue 16): rooms are spread
 * over the nodes (each owned where its first stanza arrived), and the limits count the rooms of
 * every node through counters in Redis (src/cluster/counters.ts). A node killed with SIGKILL
 * takes its temporary rooms with it, and the leader takes them out of the counts; persistent
 * rooms outlive it and stay counted. Node A runs in this process (the leader: it joined first),
 * node B is a `parley serve` process on A's SQLite file.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { Redis } from "ioredis";
import { spawnChildNode, testCluster } from "../helpers/cluster-node.ts";
import { freePort } from "../helpers/pg-cluster.ts";
import type { RawClient } from "../helpers/raw.ts";
import { iq, online } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { redisSkip, TEST_REDIS_URL } from "../helpers/services.ts";
import { waitFor } from "../helpers/wait.ts";

const TAG = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const PREFIX = `parley-mucmax-${TAG}`;
const SERVICE = "conference.localhost";
const MUC = "http://jabber.org/protocol/muc";
const MUC_OWNER = "http://jabber.org/protocol/muc#owner";
const LIMITS = { max_rooms: 4, max_rooms_per_user: 2 };

let a: TestServer;
let child: ChildProcess | null = null;
let portB = 0;
let childOutput = () => "";
const clients: RawClient[] = [];

async function on(port: number, user: string, resource: string): Promise<RawClient> {
	const c = await online(port, user, resource);
	clients.push(c);
	return c;
}

/**
 * Tries to enter (and so create) `room` as `nick` (XEP-0045 §7.2, §10.1): the self-presence
 * (status 110) or the error presence, whichever comes.
 */
async function enter(c: RawClient, room: string, nick: string): Promise<string> {
	const mark = c.received.length;
	c.send(`<presence to='${room}@${SERVICE}/${nick}'><x xmlns='${MUC}'/></presence>`);
	const from = `from="${room}@${SERVICE}/${nick}"`;
	return c.waitFor(
		new RegExp(
			`<presence(?=[^>]*${from})(?=[^>]*type="error")[\\s\\S]*?</presence>|${from}[\\s\\S]*?<status code="110"`,
		),
		mark,
	);
}

/** §10.1.2 / §10.2: submits the room's configuration (persistent or not). */
async function configure(c: RawClient, room: string, persistent: boolean) {
	const id = `cfg-${room}-${c.received.length}`;
	const answer = await iq(
		c,
		id,
		`<iq type='set' id='${id}' to='${room}@${SERVICE}'><query xmlns='${MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field><field var='muc#roomconfig_persistentroom'><value>${persistent ? 1 : 0}</value></field></x></query></iq>`,
	);
	assert.match(answer, /type="result"/);
}

/** Creates `room`: §10.1.1 status 201, then configured. */
async function create(c: RawClient, room: string, nick: string, persistent = false) {
	assert.match(await enter(c, room, nick), /<status code="201"/);
	await configure(c, room, persistent);
}

/** A refused creation: an error presence with `condition` (RFC 6120 §8.3.3). */
async function refused(c: RawClient, room: string, nick: string, condition: string) {
	const text = await enter(c, room, nick);
	assert.match(text, /type="error"/);
	assert.match(text, new RegExp(`<${condition}\\b`));
}

describe("max_rooms and max_rooms_per_user over the nodes of a cluster (issue 16)", {
	skip: redisSkip,
}, () => {
	before(async () => {
		a = await startTestServer({
			storage: "sqlite",
			config: {
				auth: { require_encryption: false, allow_plain_without_tls: true },
				cluster: testCluster(PREFIX, "mucmax-a"),
				components: { [SERVICE]: { type: "muc", ...LIMITS } },
			},
			users: ["alice", "bob", "carol"].map(
				(u) => [`${u}@localhost`, `pw-${u}`] as [string, string],
			),
		});
		portB = await freePort();
		const started = spawnChildNode({
			dataDir: a.dataDir,
			port: portB,
			prefix: PREFIX,
			node: "mucmax-b",
			extra: [
				`[components.${JSON.stringify(SERVICE)}]`,
				'type = "muc"',
				`max_rooms = ${LIMITS.max_rooms}`,
				`max_rooms_per_user = ${LIMITS.max_rooms_per_user}`,
			],
		});
		child = started.child;
		childOutput = started.output;
	});

	after(async () => {
		for (const c of clients) c.end();
		child?.kill("SIGKILL");
		await a?.stop();
		const r = new Redis(TEST_REDIS_URL);
		const keys = await r.keys(`${PREFIX}:*`);
		if (keys.length) await r.del(...keys);
		await r.quit();
	});

	test("XEP-0045 §10.1.1: the limits count the rooms of both nodes; a killed node's temporary rooms stop counting, its persistent ones do not", async () => {
		const bobB = await waitFor(
			() => on(portB, "bob", "b").catch(() => undefined),
			"node B to serve",
			30_000,
		).catch((err: Error) => {
			throw new Error(`${err.message}; node B said: ${childOutput()}`);
		});
		const carolB = await on(portB, "carol", "b");
		const alice = await on(a.port, "alice", "a");
		const bobA = await on(a.port, "bob", "a");

		// Bob's two rooms, one on each node (one persistent): a third is refused on either node.
		await create(alice, "a1", "Alice");
		await create(bobB, "b1", "Bob", true);
		await create(bobA, "b2", "Bob");
		await refused(bobB, "b3", "Bob", "policy-violation");
		await refused(bobA, "b3", "Bob", "policy-violation");
		// Four rooms, two on each node: the service is full, on either node.
		await create(carolB, "c1", "Carol");
		await refused(alice, "a2", "Alice", "resource-constraint");
		await refused(carolB, "c2", "Carol", "resource-constraint");

		// Node B dies: carol's temporary c1 goes with it (the leader releases node B's share)...
		child?.kill("SIGKILL");
		child = null;
		await waitFor(
			async () => /<status code="201"/.test(await enter(alice, "a2", "Alice")) || undefined,
			"a room made once node B is declared dead",
			20_000,
		);
		await configure(alice, "a2", false);
		// ... while the persistent b1 still counts: four rooms again.
		await refused(alice, "a3", "Alice", "resource-constraint");
	});
});
