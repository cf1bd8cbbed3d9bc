/**
 * The leases of a cluster's component units (ownership.ts, issue 16) against the local Redis,
 * under a private prefix: two nodes racing for a room agree on one owner; a unit the owner does
 * not need any more is released at its renewal; a lease taken away is noticed and the unit
 * dropped; a node that stops releases its leases; the directory says which units are owned.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Redis } from "ioredis";
import { redisSkip, TEST_REDIS_URL } from "../../test/helpers/services.ts";
import { waitFor } from "../../test/helpers/wait.ts";
import type { Config } from "../core/config/schema.ts";
import type { Host, OwnedUnits } from "../core/contracts.ts";
import { createSilentLogger } from "../core/log.ts";
import { Ownership } from "./ownership.ts";

const PREFIX = `parley-ownership-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
const cfg: Config["cluster"] = {
	enabled: true,
	redis: TEST_REDIS_URL,
	redis_cluster: [],
	prefix: PREFIX,
	node: "",
	heartbeat: 0.5,
	node_timeout: 3,
	stream_maxlen: 100_000,
	registry: "replicated",
	registry_cache: 100_000,
};

/** A stand-in component: the units it holds, and those it was told it lost. */
function component(name: string) {
	const held = new Set<string>();
	const lost: string[] = [];
	const units: OwnedUnits = {
		unitOf: (to) => to.local || null,
		holds: (u) => held.has(u),
		lost: (u) => {
			lost.push(u);
		},
	};
	// Ownership reads only a Host's name and placement.
	const host = { name, placement: units } as unknown as Host;
	return { host, held, lost };
}

describe("component ownership leases", { skip: redisSkip }, () => {
	const redis = new Redis(TEST_REDIS_URL, { lazyConnect: true });
	const lease = (unit: string) => redis.get(`${PREFIX}:room:${unit}@muc.test`);
	let x: Ownership;
	let y: Ownership;

	before(async () => {
		await redis.connect();
		x = new Ownership("node-x", cfg, createSilentLogger());
		y = new Ownership("node-y", cfg, createSilentLogger());
		await Promise.all([x.start(), y.start()]);
	});

	after(async () => {
		await Promise.all([x.stop(), y.stop()]);
		const keys = await redis.keys(`${PREFIX}:*`);
		if (keys.length) await redis.del(...keys);
		await redis.quit();
	});

	test("two nodes claiming the same rooms at once agree on one owner per room", async () => {
		const cx = component("muc.test");
		const cy = component("muc.test");
		const rooms = Array.from({ length: 50 }, (_, i) => `race${i}`);
		const answers = await Promise.all(
			rooms.flatMap((r) => [x.ownerOf(cx.host, r, true), y.ownerOf(cy.host, r, true)]),
		);
		for (const [i, r] of rooms.entries()) {
			const [fromX, fromY] = [answers[2 * i], answers[2 * i + 1]];
			assert.equal(fromX, fromY, `both nodes name one owner of ${r}`);
			assert.equal(await lease(r), fromX);
			assert.equal(x.owns(cx.host, r), fromX === "node-x");
			assert.equal(y.owns(cy.host, r), fromX === "node-y");
		}
	});

	test("renewal keeps the units the node holds (taking again a lease Redis lost), releases the others, and notices a lease taken away", async () => {
		const c = component("muc.test");
		for (const r of ["kept", "unused", "stolen", "flushed"]) {
			assert.equal(await x.ownerOf(c.host, r, true), "node-x");
		}
		c.held.add("kept");
		c.held.add("stolen");
		c.held.add("flushed");
		// As if Redis had restarted empty: the owner takes the room again.
		await redis.del(`${PREFIX}:room:flushed@muc.test`);
		// As if node X had been paused past the lease and node Y had claimed the room since.
		await redis.set(`${PREFIX}:room:stolen@muc.test`, "node-y", "PX", 3000);
		await x.renew();
		assert.equal(await lease("kept"), "node-x");
		assert.ok(Number(await redis.pttl(`${PREFIX}:room:kept@muc.test`)) > 2000, "renewed");
		assert.equal(await lease("unused"), null, "released: the component did not need it");
		assert.equal(await lease("stolen"), "node-y", "left to its new owner");
		assert.equal(await lease("flushed"), "node-x", "taken again");
		assert.equal(x.owns(c.host, "flushed"), true);
		assert.deepEqual(c.lost.sort(), ["stolen", "unused"]);
		assert.equal(x.owns(c.host, "kept"), true);
		assert.equal(x.owns(c.host, "stolen"), false);
		// Node X now passes stolen's stanzas to node Y.
		assert.equal(await x.ownerOf(c.host, "stolen", false), "node-y");
	});

	test("the directory lists every node's entries and whether a live lease holds each", async () => {
		const c = component("muc.test");
		await x.ownerOf(c.host, "listed", true);
		await x.publish(c.host, "listed", "a");
		await y.publish(c.host, "orphan", "b");
		await y.seed(c.host, "listed", "not this");
		const dir = await y.directory(c.host);
		assert.deepEqual(dir.get("listed"), { entry: "a", owned: true });
		assert.deepEqual(dir.get("orphan"), { entry: "b", owned: false });
		await y.publish(c.host, "orphan", null);
		assert.equal((await x.directory(c.host)).has("orphan"), false);
	});

	test("a room that changes hands is dropped from the other nodes' caches at once (the owners channel)", async () => {
		// A heartbeat of a minute: the caches would keep the old owner that long.
		const slow = { ...cfg, heartbeat: 60 };
		const p = new Ownership("node-p", slow, createSilentLogger());
		const q = new Ownership("node-q", slow, createSilentLogger());
		await Promise.all([p.start(), q.start()]);
		try {
			const cp = component("muc.test");
			const cq = component("muc.test");
			assert.equal(await q.ownerOf(cq.host, "moving", true), "node-q");
			assert.equal(await p.ownerOf(cp.host, "moving", false), "node-q"); // cached now
			await q.release(cq.host, "moving");
			// Node P looks again (no stale answer) and, the room being free, claims it.
			await waitFor(
				async () => (await p.ownerOf(cp.host, "moving", false)) === "node-p" || undefined,
				"node P to see the room free",
			);
			// And node Q, which cached nothing, learns of the new owner.
			assert.equal(await q.ownerOf(cq.host, "moving", false), "node-p");
			// A node that stops: the others forget it as an owner at once.
			assert.equal(await q.ownerOf(cq.host, "leaving", true), "node-q");
			assert.equal(await p.ownerOf(cp.host, "leaving", false), "node-q");
			await q.stop();
			await waitFor(
				async () => (await p.ownerOf(cp.host, "leaving", false)) === "node-p" || undefined,
				"node P to forget node Q",
			);
		} finally {
			await Promise.all([p.stop(), q.stop()]);
		}
	});

	test("a node that stops releases its leases at once; another claims them", async () => {
		const z = new Ownership("node-z", cfg, createSilentLogger());
		await z.start();
		const c = component("muc.test");
		assert.equal(await z.ownerOf(c.host, "handover", true), "node-z");
		await z.stop();
		assert.equal(await lease("handover"), null);
		assert.equal(await y.ownerOf(component("muc.test").host, "handover", true), "node-y");
	});
});
