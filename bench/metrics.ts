/**
 * What counting costs (docs/performance.md "Metrics"): CPU per recorder call (a stanza in or
 * out, a SASL result), per timed storage operation against the untimed one (memory backend: the
 * cheapest operation there is, so the worst ratio), and per scrape with many sessions. CPU time
 * of this process (process.cpuUsage), best of 5 rounds. No gating: it prints a table.
 * Run: npx node bench/metrics.ts [--n 2000000]
 */
import { type Core, HIBERNATING, type Host, type Session } from "../src/core/contracts.ts";
import { ServerMetrics } from "../src/core/metrics.ts";
import { ConnectionLimiter } from "../src/security/limits.ts";
import { MemoryBackend } from "../src/storage/memory.ts";

const arg = process.argv.indexOf("--n");
const N = arg > 0 ? Number(process.argv[arg + 1]) : 2_000_000;
const ROUNDS = 5;

/** A core with `n` sessions on one host, as far as the metrics read it. */
function core(n: number): Core {
	const sessions = new Map<string, Map<string, Session>>();
	for (let i = 0; i < n; i++) {
		const data = new Map<string, unknown>(i % 10 === 0 ? [[HIBERNATING, true]] : []);
		const transport = i % 3 === 0 ? "websocket" : "tcp";
		sessions.set(`u${i}`, new Map([["r", { transport, data } as unknown as Session]]));
	}
	return {
		hosts: new Map([["localhost", { sessions } as unknown as Host]]),
		remote: null,
		connectionLimiter: new ConnectionLimiter(0),
	} as unknown as Core;
}

/** CPU µs of `fn`, best of ROUNDS. */
async function cpu(fn: () => void | Promise<void>): Promise<number> {
	let best = Number.POSITIVE_INFINITY;
	for (let r = 0; r < ROUNDS; r++) {
		const a = process.cpuUsage();
		await fn();
		const b = process.cpuUsage(a);
		best = Math.min(best, b.user + b.system);
	}
	return best;
}

const m = new ServerMetrics(core(0));
const names = ["message", "presence", "iq"];
const rows: [string, string][] = [];

const empty = await cpu(() => {
	for (let i = 0; i < N; i++) names[i % 3];
});
const stanzas = await cpu(() => {
	for (let i = 0; i < N; i++) {
		m.stanzaIn("c2s", names[i % 3] as string);
		m.stanzaOut("c2s", names[i % 3] as string);
	}
});
rows.push(["stanza counted in + out (ns per stanza)", (((stanzas - empty) * 1000) / N).toFixed(1)]);
const auth = await cpu(() => {
	for (let i = 0; i < N / 10; i++) m.auth("SCRAM-SHA-1", i % 7 !== 0);
});
rows.push(["SASL result counted (ns)", ((auth * 1000) / (N / 10)).toFixed(1)]);

const OPS = 200_000;
const raw = new MemoryBackend();
const timed = m.timeStorage(raw);
await raw.keyval("localhost", "roster").set("alice", { a: 1 });
const plainOps = await cpu(async () => {
	for (let i = 0; i < OPS; i++) await raw.keyval("localhost", "roster").get("alice");
});
const timedOps = await cpu(async () => {
	for (let i = 0; i < OPS; i++) await timed.keyval("localhost", "roster").get("alice");
});
rows.push(["memory keyval get, untimed (ns)", ((plainOps * 1000) / OPS).toFixed(0)]);
rows.push(["memory keyval get, timed (ns)", ((timedOps * 1000) / OPS).toFixed(0)]);
rows.push(["timing one storage operation (ns)", (((timedOps - plainOps) * 1000) / OPS).toFixed(0)]);

for (const n of [10_000, 100_000]) {
	const big = new ServerMetrics(core(n));
	const scrape = await cpu(async () => {
		await big.text();
	});
	rows.push([`one scrape with ${n} sessions (ms)`, (scrape / 1000).toFixed(2)]);
}

console.log(`# npx node bench/metrics.ts --n ${N}  (${new Date().toISOString()})\n`);
console.log("| what | CPU |\n|---|---:|");
for (const [what, v] of rows) console.log(`| ${what} | ${v} |`);
