/**
 * Cost of the MUC room leases of a cluster (issue 16, src/cluster/ownership.ts,
 * docs/scaling.md "MUC rooms across nodes"): claiming rooms, renewing every lease of a node
 * (what each heartbeat does), and the Redis memory a lease takes.
 *
 *   npx node bench/muc-leases.ts [--rooms 10000] [--runs 3]
 *
 * One `Ownership` (the object a cluster node's link holds) against the local Redis, under a
 * private prefix removed at the end; rooms belong to a stand-in component that keeps them all.
 * Redis's own CPU per command comes from INFO commandstats (cmdstat_eval). Not a test: prints.
 */
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { Ownership } from "../src/cluster/ownership.ts";
import type { Config } from "../src/core/config/schema.ts";
import type { Host, OwnedUnits } from "../src/core/contracts.ts";
import { createSilentLogger } from "../src/core/log.ts";

const { values } = parseArgs({
	options: { rooms: { type: "string", default: "10000" }, runs: { type: "string", default: "3" } },
});
const rooms = Number(values.rooms);
const runs = Number(values.runs);
const prefix = `parley-bench-leases-${process.pid}`;
const cfg: Config["cluster"] = {
	enabled: true,
	redis: "redis://127.0.0.1:6379",
	redis_cluster: [],
	prefix,
	node: "bench",
	heartbeat: 2,
	stream_maxlen: 100_000,
	node_timeout: 6,
	registry: "replicated",
	registry_cache: 100_000,
};
const units: OwnedUnits = { unitOf: (to) => to.local || null, holds: () => true, lost: () => {} };
// Only `name` and `placement` of a Host are read by Ownership.
const host = { name: "conference.example.org", placement: units } as unknown as Host;

const owners = new Ownership("bench-node", cfg, createSilentLogger());
await owners.start();
const r = new Redis();
const evals = async () => {
	const m = /cmdstat_eval:calls=(\d+),usec=(\d+)/.exec(await r.info("commandstats"));
	return { calls: Number(m?.[1] ?? 0), usec: Number(m?.[2] ?? 0) };
};
const since = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e6;

let before = await evals();
let t = process.hrtime.bigint();
for (let i = 0; i < rooms; i++) await owners.ownerOf(host, `room${i}`, false);
let ms = since(t);
let after = await evals();
console.log(
	`claim: ${rooms} rooms one after another in ${ms.toFixed(0)} ms (${((ms * 1000) / rooms).toFixed(0)} µs per claim, a round trip); ` +
		`${after.calls - before.calls} EVAL, Redis CPU ${((after.usec - before.usec) / (after.calls - before.calls)).toFixed(1)} µs per claim`,
);
before = await evals();
t = process.hrtime.bigint();
for (let i = 0; i < rooms; i++) await owners.ownerOf(host, `room${i}`, false);
ms = since(t);
after = await evals();
console.log(
	`owner lookup of a room this node holds: ${((ms * 1000) / rooms).toFixed(2)} µs, ${after.calls - before.calls} Redis commands`,
);
for (let run = 0; run < runs; run++) {
	before = await evals();
	t = process.hrtime.bigint();
	await owners.renew();
	ms = since(t);
	after = await evals();
	console.log(
		`renewal of ${rooms} leases: ${ms.toFixed(1)} ms, ${after.calls - before.calls} EVAL, Redis CPU ${((after.usec - before.usec) / 1000).toFixed(1)} ms`,
	);
}
console.log(
	`Redis memory of one lease key: ${String(await r.call("MEMORY", "USAGE", `${prefix}:room:room1@${host.name}`))} B`,
);
t = process.hrtime.bigint();
await owners.stop();
console.log(
	`release of ${rooms} leases at stop: ${since(t).toFixed(1)} ms; keys left: ${(await r.keys(`${prefix}:*`)).length}`,
);
await r.quit();
