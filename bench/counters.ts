/**
 * Redis cost of a cluster-wide counter's check-and-add (src/cluster/counters.ts, docs/scaling.md
 * "Cluster-wide limits"): a MUC service's room counter holding `--units` persistent rooms (unit
 * fields), then `--adds` room creations one after another (an add of 1 to this node's share with
 * a max), each released after.
 *
 *   npx node bench/counters.ts [--redis redis://127.0.0.1:6379] [--units 10000] [--adds 1000]
 *
 * One `ClusterCounters` against that Redis, under a private prefix removed at the end. Redis's
 * own CPU per script comes from INFO commandstats (cmdstat_evalsha). Not a test: prints.
 */
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { ClusterCounters } from "../src/cluster/counters.ts";
import { createSilentLogger } from "../src/core/log.ts";

const { values } = parseArgs({
	options: {
		redis: { type: "string", default: "redis://127.0.0.1:6379" },
		units: { type: "string", default: "10000" },
		adds: { type: "string", default: "1000" },
	},
});
const units = Number(values.units);
const adds = Number(values.adds);
const prefix = `parley-bench-counters-${process.pid}`;
const r = new Redis(values.redis);
const counters = new ClusterCounters({ pub: r, prefix, node: "bench", log: createSilentLogger() });
const name = "muc:conference.example.org:rooms";
const scripts = async () => {
	const m = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(await r.info("commandstats"));
	return { calls: Number(m?.[1] ?? 0), usec: Number(m?.[2] ?? 0) };
};
const since = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e6;

// The persistent rooms, 100 at a time (their cost is not what is measured).
for (let i = 0; i < units; i += 100) {
	const batch: Promise<unknown>[] = [];
	for (let j = i; j < Math.min(units, i + 100); j++)
		batch.push(counters.tryAdd(name, 1, 0, { unit: `room${j}` }));
	await Promise.all(batch);
}
const max = units + adds + 1;
let before = await scripts();
let t = process.hrtime.bigint();
for (let i = 0; i < adds; i++)
	if ((await counters.tryAdd(name, 1, max)) !== true) throw new Error("refused");
let ms = since(t);
let after = await scripts();
const per = (a: typeof after, b: typeof before) =>
	((a.usec - b.usec) / (a.calls - b.calls)).toFixed(1);
console.log(
	`check-and-add: ${adds} adds beside ${units} units in ${ms.toFixed(0)} ms (${((ms * 1000) / adds).toFixed(0)} µs each, a round trip); ` +
		`${after.calls - before.calls} EVALSHA, Redis CPU ${per(after, before)} µs per add`,
);
before = await scripts();
t = process.hrtime.bigint();
for (let i = 0; i < adds; i++) await counters.release(name, 1);
ms = since(t);
after = await scripts();
console.log(
	`release: ${adds} in ${ms.toFixed(0)} ms; ${after.calls - before.calls} EVALSHA, Redis CPU ${per(after, before)} µs per release`,
);
const total = await counters.total(name);
if (total !== units) throw new Error(`total ${total}, expected ${units}`);
await r.del(counters.key(name), counters.nodeKey("bench"));
r.disconnect();
