import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { calculateSlot, clusterKeys, tag } from "./keys.ts";

describe("cluster key names (src/cluster/keys.ts)", () => {
	test("one Redis: the names deployments already have", () => {
		const k = clusterKeys("parley", false);
		assert.equal(k.nodes, "parley:nodes");
		assert.equal(k.alive("n1"), "parley:alive:n1");
		assert.equal(k.stream("n1"), "parley:stream:n1");
		assert.equal(k.orphan("n1", 5), "parley:orphan:n1:5");
		assert.equal(k.jidHash("a@h"), "parley:s:a@h");
		assert.equal(k.jidChannel("a@h"), "parley:j:a@h");
		assert.equal(k.jidOfChannel("parley:j:a@h"), "a@h");
		assert.equal(k.jidOfChannel("parley:registry"), null);
		assert.equal(k.hostSet("h"), "parley:h:h");
		assert.equal(k.lease("conference.h", "room"), "parley:room:room@conference.h");
		assert.deepEqual(k.groups(["a", "b", "c"], 2), [["a", "b"], ["c"]]);
	});

	test("the slot of a key is Redis Cluster's: CRC16 of the key or of its hash tag, mod 16384", () => {
		// Values from the cluster specification and `redis-cli cluster keyslot` (Redis 7.0).
		assert.equal(calculateSlot("123456789"), 0x31c3 % 16384);
		assert.equal(calculateSlot("foo"), 12182);
		assert.equal(calculateSlot("somekey"), 11058);
		assert.equal(calculateSlot("{user1000}.following"), calculateSlot("user1000"));
		// An empty tag is no tag: the whole key is hashed.
		assert.equal(calculateSlot("{}x"), calculateSlot("{}x"));
		assert.notEqual(calculateSlot("a{}x"), calculateSlot("x"));
	});

	test("Redis Cluster: what one script or transaction touches shares a slot", () => {
		const k = clusterKeys("parley", true);
		const same = (...keys: string[]) =>
			assert.equal(new Set(keys.map(calculateSlot)).size, 1, keys.join(" "));
		same(k.nodes, k.alive("n1"), k.alive("other"), k.beats, k.orphans, k.registry, k.owners);
		same(k.stream("n1"), k.orphan("n1", Date.now()), k.nodeSet("n1"), k.nodeChannel("n1"));
		same(k.hostSet("example.org"), k.hostUsers("example.org"));
		// Localparts may hold braces (RFC 7622 §3.3.1): the hash and its channel still agree,
		// and the channel gives the JID back.
		for (const bare of ["alice@example.org", "a{b@x", "}x@y", "{}@z", "a}b{c@d"]) {
			same(k.jidHash(bare), k.jidChannel(bare));
			assert.equal(k.jidOfChannel(k.jidChannel(bare)), bare);
		}
		assert.notEqual(k.jidHash("a{b@x"), k.jidHash("a_b@x"));
		assert.equal(tag("n1"), "{n1}");
		// Leases are grouped by slot, at most `max` a group, every key once.
		const leases = Array.from({ length: 50 }, (_, i) => k.lease("conference.h", `r${i}`));
		leases.push(k.lease("conference.h", "r0"));
		const groups = k.groups(leases, 1);
		assert.equal(groups.flat().length, leases.length);
		for (const g of k.groups(leases, 10)) same(...g);
	});
});
