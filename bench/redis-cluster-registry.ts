/**
 * Redis's time per sharded-registry write on one Redis and on a Redis Cluster (issue 16,
 * docs/scaling.md "Redis Cluster"): N new entries, then N updates, of the put script as the
 * registry sends them (one Redis: PUT_SCRIPT in one pipeline; Redis Cluster: SADD of the node
 * set, PUT_SLOT_SCRIPT, then the host set's SADD and the counter's INCR its
 * answer asks for, on an auto-pipelining Cluster client). Redis time is INFO commandstats (usec of every command)
 * summed over the masters after CONFIG RESETSTAT, so nothing but this run may use them.
 *
 *   npx node bench/redis-cluster-registry.ts --redis redis://127.0.0.1:6392 [--count 20000]
 *
 * The Redis Cluster is a private one of three masters on ports 7101-7103
 * (test/helpers/redis-cluster.ts; PARLEY_TEST_REDIS_CLUSTER_PORT moves them), stopped at the end.
 * `--redis` must be a Redis of yours (its stats are reset). Not a test: prints.
 */
import { parseArgs } from "node:util";
import { Cluster, Redis } from "ioredis";
import { clusterKeys } from "../src/cluster/keys.ts";
import { PUT_SCRIPT, PUT_SLOT_SCRIPT } from "../src/cluster/registry.ts";
import { startRedisCluster } from "../test/helpers/redis-cluster.ts";

const { values } = parseArgs({
	options: {
		redis: { type: "string" },
		count: { type: "string", default: "20000" },
	},
});
if (!values.redis) throw new Error("--redis <url of a Redis of yours> is required");
const COUNT = Number(values.count);
const PREFIX = `parley-bench-${process.pid}`;
const HOST = "example.org";
const NODE = "bench-node";

/** An entry as the link writes one (src/cluster/link.ts #entryOf), about 420 bytes. */
function entry(i: number, seq: number): string {
	return JSON.stringify({
		node: NODE,
		seq,
		id: `0b7c${i.toString(16).padStart(8, "0")}-5d1e-4c4f-9a61-3f0e2d8c9b7a`,
		host: HOST,
		jid: `user${i}@${HOST}/phone-${i}`,
		addr: "203.0.113.7",
		secure: true,
		available: true,
		priority: 0,
		presence:
			'<presence xmlns="jabber:client"><c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="https://conversations.im" ver="q07IKJEyjvHSyhy//CH0CxmKi8w="/></presence>',
		interested: true,
		data: { carbons: true, csi: false },
	});
}

/** Total usec and calls of every command, summed over `nodes`. */
async function stats(
	nodes: Redis[],
): Promise<{ usec: number; calls: number; perNode: number[]; callsPerNode: number[] }> {
	let usec = 0;
	let calls = 0;
	const perNode: number[] = [];
	const callsPerNode: number[] = [];
	for (const n of nodes) {
		let mine = 0;
		let myCalls = 0;
		for (const m of (await n.info("commandstats")).matchAll(
			/cmdstat_(\w+):calls=(\d+),usec=(\d+)/g,
		)) {
			if (m[1] === "info" || m[1] === "config") continue;
			calls += Number(m[2]);
			usec += Number(m[3]);
			mine += Number(m[3]);
			myCalls += Number(m[2]);
		}
		perNode.push(mine);
		callsPerNode.push(myCalls);
	}
	return { usec, calls, perNode, callsPerNode };
}

async function single(url: string): Promise<{ added: number; updated: number }> {
	const r = new Redis(url);
	const k = clusterKeys(PREFIX, false);
	const sha = (await r.script("LOAD", PUT_SCRIPT)) as string;
	const run = async (seq: number, isNew: boolean) => {
		await r.config("RESETSTAT");
		const p = r.pipeline();
		for (let i = 0; i < COUNT; i++) {
			const bare = `user${i}@${HOST}`;
			p.evalsha(
				sha,
				4,
				k.jidHash(bare),
				k.nodeSet(NODE),
				k.hostSet(HOST),
				k.hostUsers(HOST),
				`phone-${i}`,
				`0b7c${i.toString(16).padStart(8, "0")}-5d1e-4c4f-9a61-3f0e2d8c9b7a`,
				entry(i, seq),
				isNew ? "1" : "0",
				k.jidChannel(bare),
				`${bare}/phone-${i}`,
			);
		}
		await p.exec();
		return (await stats([r])).usec / COUNT;
	};
	const added = await run(1, true);
	const updated = await run(2, false);
	let cursor = "0";
	do {
		const [next, keys] = await r.scan(cursor, "MATCH", `${PREFIX}:*`, "COUNT", 1000);
		if (keys.length) await r.del(...keys);
		cursor = next;
	} while (cursor !== "0");
	r.disconnect();
	return { added, updated };
}

async function cluster(): Promise<{ added: number; updated: number; shares: string }> {
	const rc = await startRedisCluster({ masters: 3 });
	const masters = rc.ports.map((port) => new Redis({ port, host: "127.0.0.1" }));
	const c = new Cluster(
		rc.seeds.map((s) => ({ host: "127.0.0.1", port: Number(s.split(":")[1]) })),
		{ enableAutoPipelining: true },
	);
	c.defineCommand("putSlot", { numberOfKeys: 1, lua: PUT_SLOT_SCRIPT });
	const put = c as unknown as { putSlot(...a: string[]): Promise<number> };
	const k = clusterKeys(PREFIX, true);
	let shares = "";
	try {
		const run = async (seq: number, isNew: boolean) => {
			await Promise.all(masters.map((m) => m.config("RESETSTAT")));
			const done: Promise<unknown>[] = [];
			for (let i = 0; i < COUNT; i++) {
				const bare = `user${i}@${HOST}`;
				const full = `${bare}/phone-${i}`;
				done.push(c.sadd(k.nodeSet(NODE), full));
				done.push(
					put
						.putSlot(
							k.jidHash(bare),
							`phone-${i}`,
							`0b7c${i.toString(16).padStart(8, "0")}-5d1e-4c4f-9a61-3f0e2d8c9b7a`,
							entry(i, seq),
							isNew ? "1" : "0",
							k.jidChannel(bare),
						)
						.then((res) =>
							Promise.all([
								res >= 2 ? c.sadd(k.hostSet(HOST), full) : 0,
								res === 3 ? c.incr(k.hostUsers(HOST)) : 0,
							]),
						),
				);
			}
			await Promise.all(done);
			const s = await stats(masters);
			const pc = (x: number, all: number) => `${((100 * x) / all).toFixed(0)}%`;
			shares += `${isNew ? "new entries" : "; updates"}: time ${s.perNode.map((u) => pc(u, s.usec)).join(" / ")} (commands ${s.callsPerNode.map((c) => pc(c, s.calls)).join(" / ")})`;
			return s.usec / COUNT;
		};
		const added = await run(1, true);
		const updated = await run(2, false);
		return { added, updated, shares };
	} finally {
		c.disconnect();
		for (const m of masters) m.disconnect();
		await rc.stop();
	}
}

const one = await single(values.redis);
console.log(
	`one Redis: ${one.added.toFixed(1)} µs of Redis time per new entry, ${one.updated.toFixed(1)} µs per update (${COUNT} each)`,
);
const rc = await cluster();
console.log(
	`Redis Cluster, 3 masters: ${rc.added.toFixed(1)} µs of Redis time per new entry, ${rc.updated.toFixed(1)} µs per update, summed over the masters; shares of the masters: ${rc.shares}`,
);
