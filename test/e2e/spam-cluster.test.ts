/**
 * Spam defence in a cluster (issue 19): two nodes in this process sharing one SQLite file and
 * the local Redis under a private prefix. What one node changes acts on the other at once: a
 * block-list update (the pubsub notification reaches the leader only), a user's strangers
 * policy and a quarantine release set through the other node (both cached per node), and an
 * account disabled on one node while its session is on the other.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Redis } from "ioredis";
import { accountApprove, accountDisable } from "../../src/admin/commands/account.ts";
import { strangersPolicy } from "../../src/admin/commands/strangers.ts";
import type { ClusterLink } from "../../src/cluster/link.ts";
import { DEFAULT_HOST_MODULES } from "../../src/core/config/schema.ts";
import type { ClusterNotice } from "../../src/core/contracts.ts";
import { QUARANTINE_STORE } from "../../src/modules/spam/quarantine.ts";
import { REPORT_STORE } from "../../src/modules/spam/reports.ts";
import { sha256 } from "../../src/modules/spam/rtbl.ts";
import { testCluster } from "../helpers/cluster-node.ts";
import type { RawClient } from "../helpers/raw.ts";
import { iq, message, online } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { redisSkip, TEST_REDIS_URL } from "../helpers/services.ts";
import { waitFor } from "../helpers/wait.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

const PREFIX = `parley-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const PUBSUB = "pubsub.localhost";
const NODE = "spam_source_jids";
const SPAMMER = "spammer@example.net";
const USERS = ["admin", "alice", "bob", "carol", "dave", "mallory"];

const clusterConfig = (node: string) => ({
	auth: { require_encryption: false, allow_plain_without_tls: true },
	cluster: testCluster(PREFIX, node),
	hosts: {
		localhost: {
			modules: [...DEFAULT_HOST_MODULES],
			module_options: {
				spam: {
					rtbl: [{ service: PUBSUB, node: NODE, applies_to: ["strangers" as const] }],
					report_queue_max: 2,
				},
			},
		},
		"example.net": {},
	},
	components: {
		[PUBSUB]: { type: "pubsub" as const, admins: ["admin@localhost"] },
	},
});

let a: TestServer;
let b: TestServer;
const clients: RawClient[] = [];
async function on(t: TestServer, user: string, resource: string, host = "localhost") {
	const c = await online(t.port, user, resource, { host });
	clients.push(c);
	return c;
}
const ctx = (t: TestServer) => ({ core: t.server, actor: "cli" });

let seq = 0;
/**
 * Sends chat messages from `from` to `to` until one bounces with `condition` (the change made
 * on the other node has arrived here); returns the bounce. Without the change it never does.
 */
async function untilBounced(from: RawClient, to: string, condition: string): Promise<string> {
	return waitFor(async () => {
		const id = `try${++seq}`;
		const mark = from.received.length;
		from.send(`<message to='${to}' type='chat' id='${id}'><body>hello</body></message>`);
		// The receiver's copy or the bounce: after a sync IQ, either has arrived (RFC 6120 §10.1).
		await iq(from, `s${id}`, `<iq type='get' id='s${id}'><ping xmlns='urn:xmpp:ping'/></iq>`);
		const bounce = new RegExp(`<message[^>]*id="${id}"[^>]*>[\\s\\S]*?</message>`);
		const got = bounce.exec(from.received.slice(mark))?.[0];
		return got?.includes('type="error"') && got.includes(condition) ? got : undefined;
	}, `a bounce with ${condition}`);
}

/** Sends a chat message and waits for `to` to get it. */
async function delivered(from: RawClient, to: RawClient, jid: string): Promise<void> {
	const id = `ok${++seq}`;
	const mark = to.received.length;
	from.send(`<message to='${jid}' type='chat' id='${id}'><body>hi</body></message>`);
	await message(to, id, mark);
}

describe("spam defence across the nodes of a cluster", { skip: redisSkip }, () => {
	before(async () => {
		a = await startTestServer({
			storage: "sqlite",
			config: clusterConfig("node-a"),
			users: [
				...USERS.map((u) => [`${u}@localhost`, `pw-${u}`] as [string, string]),
				[SPAMMER, "pw-spammer"],
			],
		});
		// The list exists before node B starts, so B fetches it at once (A, the leader, runs pubsub).
		const admin = await on(a, "admin", "x");
		const created = await iq(
			admin,
			"c",
			`<iq type='set' id='c' to='${PUBSUB}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='${NODE}'/></pubsub></iq>`,
		);
		assert.match(created, /type="result"/);
		b = await startTestServer({
			storage: "sqlite",
			dataDir: a.dataDir,
			config: clusterConfig("node-b"),
		});
		assert.equal((a.server.cluster as ClusterLink | null)?.leader, true);
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

	test("RTBL: an entry published (and retracted) reaches node B, where the pubsub notification does not go", async () => {
		const admin = await on(a, "admin", "pub");
		const bob = await on(b, "bob", "b");
		const spammer = await on(b, "spammer", "s", "example.net");
		await delivered(spammer, bob, "bob@localhost");
		// The leader has subscribed and stored the (empty) list: notifications now reach it.
		await waitFor(
			() => a.server.hosts.get("localhost")?.keyval("rtbl").get(`${NODE}@${PUBSUB}`),
			"the leader's first fetch",
			120_000,
		);
		const published = await iq(
			admin,
			"p",
			`<iq type='set' id='p' to='${PUBSUB}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='${NODE}'><item id='${sha256(SPAMMER)}'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'/></item></publish></pubsub></iq>`,
		);
		assert.match(published, /type="result"/);
		// Node B refuses the listed stranger (policy-violation, as on one node).
		await untilBounced(spammer, "bob@localhost", "policy-violation");
		const retracted = await iq(
			admin,
			"r",
			`<iq type='set' id='r' to='${PUBSUB}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='${NODE}' notify='true'><item id='${sha256(SPAMMER)}'/></retract></pubsub></iq>`,
		);
		assert.match(retracted, /type="result"/);
		await waitFor(async () => {
			const id = `after${++seq}`;
			const mark = bob.received.length;
			spammer.send(`<message to='bob@localhost' type='chat' id='${id}'><body>hi</body></message>`);
			await iq(spammer, `s${id}`, `<iq type='get' id='s${id}'><ping xmlns='urn:xmpp:ping'/></iq>`);
			await iq(bob, `s${id}`, `<iq type='get' id='s${id}'><ping xmlns='urn:xmpp:ping'/></iq>`);
			return bob.received.slice(mark).includes(`id="${id}"`) || undefined;
		}, "delivered again after the retraction");
	});

	test("strangers: a policy set through node A holds on node B at once", async () => {
		const carol = await on(b, "carol", "c");
		const dave = await on(b, "dave", "d");
		// Node B has read carol's policy (none: the server's allow) and keeps it.
		await delivered(dave, carol, "carol@localhost");
		const set = await strangersPolicy.run(ctx(a), { jid: "carol@localhost", policy: "bounce" });
		assert.equal(set.policy, "bounce");
		await untilBounced(dave, "carol@localhost", "policy-violation");
	});

	test("quarantine: an account approved through node A may write to strangers on node B", async () => {
		await a.server.hosts
			.get("localhost")
			?.keyval(QUARANTINE_STORE)
			.set("alice", { until: Date.now() + 3_600_000 });
		const alice = await on(b, "alice", "q");
		const bob = await on(b, "bob", "q");
		const mark = alice.received.length;
		alice.send("<message to='bob@localhost' type='chat' id='q1'><body>hi</body></message>");
		const refused = await message(alice, "q1", mark);
		assert.match(refused, /type="error"[\s\S]*policy-violation/);
		const approved = await accountApprove.run(ctx(a), { jid: "alice@localhost" });
		assert.equal(approved.quarantined, false);
		await waitFor(async () => {
			const id = `q${++seq}`;
			const m = bob.received.length;
			alice.send(`<message to='bob@localhost' type='chat' id='${id}'><body>hi</body></message>`);
			await iq(alice, `s${id}`, `<iq type='get' id='s${id}'><ping xmlns='urn:xmpp:ping'/></iq>`);
			await iq(bob, `s${id}`, `<iq type='get' id='s${id}'><ping xmlns='urn:xmpp:ping'/></iq>`);
			return bob.received.slice(m).includes(`id="${id}"`) || undefined;
		}, "alice's message delivered after approval");
	});

	test("XEP-0377 reports: report_queue_max holds for the queue the nodes share", async () => {
		const bob = await on(b, "bob", "r");
		const alice = await on(a, "alice", "r");
		const reports = b.server.hosts.get("localhost")?.keyval(REPORT_STORE);
		const report = (c: RawClient, id: string, jid: string) =>
			iq(
				c,
				id,
				`<iq type='set' id='${id}'><block xmlns='urn:xmpp:blocking'><item jid='${jid}'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'/></item></block></iq>`,
			);
		// Node B counts its open reports: one.
		assert.match(await report(bob, "r1", "one@example.net"), /type="result"/);
		assert.equal((await reports?.users())?.length, 1);
		// Node A keeps the second and tells node B.
		// (The timer is a safety net for a notice that never comes, not a timing assertion.)
		const told = new Promise<void>((resolve, reject) => {
			setTimeout(() => reject(new Error("node B was not told of the report")), 10_000).unref();
			b.server.hosts.get("localhost")?.events.on("cluster/spam-reports", (n: ClusterNotice) => {
				if (n.data !== "") resolve();
				return undefined;
			});
		});
		assert.match(await report(alice, "r2", "two@example.net"), /type="result"/);
		await told;
		// The queue is full for node B too: the block is done, the report not kept.
		assert.match(await report(bob, "r3", "three@example.net"), /type="result"/);
		assert.equal((await reports?.users())?.length, 2);
	});

	test("account.disable on node A ends the session on node B; logins there are refused (RFC 6120 §6.5.1)", async () => {
		const mallory = await on(b, "mallory", "m");
		// Node A must hold mallory's replica (other users' sessions do not tell: earlier tests'
		// clients may still be there): the disable ends the sessions it knows of.
		await waitFor(async () => {
			const host = a.server.hosts.get("localhost");
			// With the sharded registry, node A knows of it once it looks it up.
			if (host) await a.server.cluster?.resolve?.(host, "mallory");
			return (host?.sessionsOf("mallory").length ?? 0) > 0 || undefined;
		}, "node A sees mallory's session on node B");
		const done = await accountDisable.run(ctx(a), { jid: "mallory@localhost" });
		assert.equal(done.disabled, true);
		await mallory.waitClosed();
		await assert.rejects(login(b.port, "mallory", "pw-mallory", { resource: "again" }));
	});
});
