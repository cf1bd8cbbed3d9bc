/**
 * Memory after hostile input (issue 21): starts `parley serve` as a child process (SQLite, c2s,
 * HTTP with WebSocket and BOSH), plays rounds of seeded hostile connections against it
 * (test/helpers/hostile-inputs.ts), waits until every one is gone, and prints the server's RSS
 * (from /proc) and, through the inspector, its V8 heap before and after a forced collection.
 *
 *   npx node bench/hostile-memory.ts [--rounds 3] [--count 2000] [--parallel 64] [--seed 21]
 *       [--baseline DIR]   run the parley of another checkout (before/after a fix)
 *       [--no-inspect]     no inspector in the server: RSS only, exactly as in production
 *       [--no-http]        c2s TCP only
 *       [--env K=V]        extra environment for the server (e.g. MALLOC_ARENA_MAX=2)
 *       [--node-flag F]    extra Node flag for the server (e.g. --max-semi-space-size=1)
 *       [--idle S]         seconds to watch the idle server after the last round (15)
 *       [--gc-each-round]  also force a GC after each round (is the heap growing, or garbage?)
 *       [--smaps]          also split RSS by mapping (files, glibc arenas, other anonymous)
 *       [--malloc-trim]    at the end, call glibc's malloc_trim(0) in the server through gdb: how
 *                          much of what stays is memory malloc holds free (with --env
 *                          PARLEY_MALLOC=system; best with --no-inspect)
 *
 * The server is not given --expose-gc: figures "before GC" are what the process holds on its
 * own; "after GC" come from a full collection asked through the inspector (HeapProfiler).
 * Not a test: prints.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { hostileCases } from "../test/helpers/hostile-inputs.ts";
import {
	type CaseResult,
	pool,
	runBoshCase,
	runTcpCase,
	runWsCase,
} from "../test/helpers/hostile-run.ts";
import { freePort } from "./lib/targets.ts";

const { values: args } = parseArgs({
	options: {
		rounds: { type: "string", default: "3" },
		count: { type: "string", default: "2000" },
		parallel: { type: "string", default: "64" },
		seed: { type: "string", default: "21" },
		baseline: { type: "string" },
		"no-inspect": { type: "boolean", default: false },
		"no-http": { type: "boolean", default: false },
		env: { type: "string", multiple: true, default: [] },
		"node-flag": { type: "string", multiple: true, default: [] },
		idle: { type: "string", default: "15" },
		"gc-each-round": { type: "boolean", default: false },
		smaps: { type: "boolean", default: false },
		"malloc-trim": { type: "boolean", default: false },
	},
});
const ROUNDS = Number(args.rounds);
const COUNT = Number(args.count);
const PARALLEL = Number(args.parallel);
const SEED = Number(args.seed);
const root = resolve(args.baseline ?? join(import.meta.dirname, ".."));
const inspect = !args["no-inspect"];
const http = !args["no-http"];

const MiB = 1024 * 1024;
const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rss(pid: number): number {
	const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "latin1"));
	return Number(m?.[1] ?? 0) * 1024;
}

/**
 * Where the resident memory is, from /proc/<pid>/smaps: files (the node binary, libraries),
 * glibc's main arena ([heap], grown with brk), and anonymous mappings, split into glibc's
 * thread arenas (64 MiB-aligned heaps of other threads' malloc) and the rest (V8's heap pages,
 * large mmap'd allocations, thread stacks, and all of jemalloc's memory when the server runs
 * with it, as `parley serve` does where it is installed: src/cli/allocator.ts).
 */
function smaps(pid: number): string {
	const text = readFileSync(`/proc/${pid}/smaps`, "latin1");
	let file = 0;
	let brk = 0;
	let arenas = 0;
	let arenaCount = 0;
	let anon = 0;
	let cur: { name: string; start: bigint; size: bigint } | null = null;
	const ARENA = 64n * 1024n * 1024n;
	for (const line of text.split("\n")) {
		const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
		if (head) {
			const start = BigInt(`0x${head[1]}`);
			cur = { name: head[3] ?? "", start, size: BigInt(`0x${head[2]}`) - start };
			continue;
		}
		const m = /^Rss:\s+(\d+) kB/.exec(line);
		if (!m || !cur) continue;
		const kb = Number(m[1]) * 1024;
		if (cur.name === "[heap]") brk += kb;
		else if (cur.name.startsWith("/")) file += kb;
		else if (cur.name === "" && cur.start % ARENA === 0n && cur.size <= ARENA) {
			arenas += kb;
			if (kb > 0) arenaCount++;
		} else anon += kb;
	}
	return `files ${mib(file)}, main arena [heap] ${mib(brk)}, ${arenaCount} thread arenas ${mib(arenas)}, other anonymous ${mib(anon)}`;
}

/** A DevTools-protocol client over the server's inspector WebSocket. */
class Inspector {
	#ws: WebSocket;
	#id = 0;
	#pending = new Map<number, (r: unknown) => void>();
	private constructor(ws: WebSocket) {
		this.#ws = ws;
		ws.on("message", (d) => {
			const msg = JSON.parse(d.toString()) as { id?: number; result?: unknown };
			if (msg.id !== undefined) this.#pending.get(msg.id)?.(msg.result);
		});
	}
	static async connect(port: number): Promise<Inspector> {
		let list: { webSocketDebuggerUrl: string }[] = [];
		for (let i = 0; ; i++) {
			try {
				list = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as typeof list;
				break;
			} catch (err) {
				if (i === 20) throw err;
				await sleep(250);
			}
		}
		const ws = new WebSocket((list[0] as { webSocketDebuggerUrl: string }).webSocketDebuggerUrl);
		await new Promise((r, j) => ws.once("open", r).once("error", j));
		return new Inspector(ws);
	}
	call(method: string, params: object = {}): Promise<unknown> {
		const id = ++this.#id;
		this.#ws.send(JSON.stringify({ id, method, params }));
		return new Promise((r) => this.#pending.set(id, r));
	}
	async eval<T>(expr: string): Promise<T> {
		const r = (await this.call("Runtime.evaluate", { expression: expr, returnByValue: true })) as {
			result: { value: T };
		};
		return r.result.value;
	}
	close() {
		this.#ws.close();
	}
}

interface Mem {
	rss: number;
	heapUsed?: number;
	heapTotal?: number;
	external?: number;
	arrayBuffers?: number;
	smaps?: string;
}

async function measure(pid: number, ins: Inspector | null, gc: boolean): Promise<Mem> {
	if (ins && gc) {
		// Twice: the first collection finalises what the second frees.
		await ins.call("HeapProfiler.collectGarbage");
		await ins.call("HeapProfiler.collectGarbage");
		await sleep(500);
	}
	const m: Mem = { rss: rss(pid) };
	if (ins) Object.assign(m, await ins.eval<object>("process.memoryUsage()"), { rss: rss(pid) });
	if (args.smaps) m.smaps = smaps(pid);
	return m;
}

function show(label: string, m: Mem, base?: Mem): string {
	const d = (k: keyof Mem) =>
		base && m[k] !== undefined && base[k] !== undefined
			? ` (${(m[k] as number) >= (base[k] as number) ? "+" : ""}${(((m[k] as number) - (base[k] as number)) / MiB).toFixed(1)})`
			: "";
	let s = `${label.padEnd(34)} rss ${mib(m.rss)}${d("rss")}`;
	if (m.heapUsed !== undefined)
		s += `  heapUsed ${mib(m.heapUsed)}${d("heapUsed")}  heapTotal ${mib(m.heapTotal as number)}${d("heapTotal")}  external ${mib(m.external as number)}${d("external")}  arrayBuffers ${mib(m.arrayBuffers as number)}${d("arrayBuffers")}`;
	if (m.smaps) s += `\n${"".padEnd(34)} ${m.smaps}`;
	return s;
}

/** The server answers a stream header with its features (a refused connect is not an answer). */
function features(port: number): Promise<boolean> {
	return new Promise((resolve) => {
		let text = "";
		const socket = connect(port, "127.0.0.1", () =>
			socket.write(
				"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>",
			),
		);
		const done = (ok: boolean) => {
			socket.destroy();
			resolve(ok);
		};
		socket.setTimeout(2000, () => done(false));
		socket.on("data", (d) => {
			text += d;
			if (text.includes("</stream:features>")) done(true);
		});
		socket.on("error", () => done(false));
		socket.on("close", () => done(false));
	});
}

async function waitListening(port: number, child: ChildProcess): Promise<void> {
	for (let i = 0; i < 200; i++) {
		if (child.exitCode !== null) throw new Error(`parley exited with code ${child.exitCode}`);
		if (await features(port)) return;
		await sleep(200);
	}
	throw new Error("parley did not start");
}

const dir = mkdtempSync(join(tmpdir(), "parley-hostile-"));
mkdirSync(join(dir, "data"));
const c2s = await freePort();
const httpPort = await freePort();
const inspectPort = await freePort();
const cfg = join(dir, "parley.toml");
writeFileSync(
	cfg,
	`[server]
data_dir = "${join(dir, "data")}"
[log]
level = "warn"
format = "json"
[storage]
backend = "sqlite"
[auth]
require_encryption = false
allow_plain_without_tls = true
[limits]
connections_per_ip = 0
unauthenticated_per_ip = 0
sasl_failures_per_ip = 0
[listeners.c2s]
address = "127.0.0.1"
port = ${c2s}
[listeners.c2s_direct_tls]
enabled = false
[listeners.http]
enabled = ${http}
address = "127.0.0.1"
port = ${httpPort}
[listeners.https]
enabled = false
[listeners.s2s]
enabled = false
[listeners.admin]
enabled = false
[hosts."localhost"]
`,
);
const bin = join(root, "bin/parley.js");
const nodeFlags = [
	...(inspect ? [`--inspect=127.0.0.1:${inspectPort}`] : []),
	...args["node-flag"],
];
const env = { ...process.env };
for (const kv of args.env) {
	const i = kv.indexOf("=");
	env[kv.slice(0, i)] = kv.slice(i + 1);
}
// The account the post-auth cases log in to.
const user = { user: "fuzz", password: "fuzz-pw" };
await new Promise<void>((res, rej) => {
	const p = spawn(
		process.execPath,
		[bin, "user", "add", "fuzz@localhost", "--password-stdin", "--config", cfg],
		{
			cwd: root,
			stdio: ["pipe", "ignore", "inherit"],
		},
	);
	p.stdin.end(`${user.password}\n`);
	p.on("exit", (code) => (code === 0 ? res() : rej(new Error(`user add: ${code}`))));
});
const child = spawn(process.execPath, [...nodeFlags, bin, "serve", "--config", cfg], {
	cwd: root,
	env,
	stdio: ["ignore", "ignore", "pipe"],
});
let stderr = "";
child.stderr?.on("data", (d) => {
	stderr += d;
	if (stderr.length > 100_000) stderr = stderr.slice(-50_000);
});
const pid = child.pid as number;
try {
	await waitListening(c2s, child);
	const ins = inspect ? await Inspector.connect(inspectPort) : null;
	console.log(
		`parley ${root} pid ${pid}, node ${[...nodeFlags].join(" ") || "(no flags)"}, not --expose-gc` +
			`${args.env.length ? `, env ${args.env.join(" ")}` : ""}; ${ROUNDS} rounds of ${COUNT} connections, ${PARALLEL} at a time, seed ${SEED}${http ? " (TCP 80%, WebSocket 10%, BOSH 10%)" : " (TCP only)"}`,
	);
	await sleep(2000);
	const start = await measure(pid, ins, false);
	console.log(show("before the attack", start));
	const startGc = await measure(pid, ins, true);
	if (ins) console.log(show("before the attack, after GC", startGc));
	const o = { holdMs: 3000, maxMs: 30_000 };
	for (let round = 1; round <= ROUNDS; round++) {
		const cases = hostileCases(SEED + round, COUNT, user);
		const t0 = Date.now();
		let peak = 0;
		const sampler = setInterval(() => {
			peak = Math.max(peak, rss(pid));
		}, 100);
		const results = await pool<CaseResult>(
			cases.map((c, i) => () => {
				if (!http || i % 10 < 8 || c.kind.startsWith("postauth")) return runTcpCase(c2s, c, o);
				return i % 10 === 8
					? runWsCase(httpPort, "/xmpp-websocket", c, o)
					: runBoshCase(httpPort, "/http-bind", c, o);
			}),
			PARALLEL,
		);
		clearInterval(sampler);
		const byServer = results.filter((r) => r.closedByServer).length;
		const errors = results.filter((r) => r.streamError).length;
		console.log(
			`round ${round}: ${results.length} connections in ${((Date.now() - t0) / 1000).toFixed(1)} s; closed by the server ${byServer}, with a stream error ${errors}; peak rss ${mib(peak)}`,
		);
		await sleep(5000);
		console.log(show(`round ${round}, 5 s later`, await measure(pid, ins, false), start));
		if (ins && args["gc-each-round"])
			console.log(
				show(`round ${round}, after a forced GC`, await measure(pid, ins, true), startGc),
			);
	}
	const idle = Number(args.idle);
	for (let s = 10; s <= idle; s += 10) {
		await sleep(10_000);
		console.log(show(`${s + 5} s after the last round`, await measure(pid, ins, false), start));
	}
	if (ins) {
		const endGc = await measure(pid, ins, true);
		console.log(show("then after a forced GC", endGc, startGc));
		ins.close();
	}
	if (args["malloc-trim"]) {
		const r = spawnSync("gdb", ["-p", String(pid), "-batch", "-ex", "call (int)malloc_trim(0)"], {
			encoding: "utf8",
			timeout: 60_000,
		});
		if (r.status !== 0) console.log(`gdb: ${r.status} ${r.stderr}`);
		await sleep(500);
		console.log(show("then after malloc_trim(0)", await measure(pid, ins, false), start));
	}
	if (child.exitCode !== null) console.log(`parley exited: ${child.exitCode}\n${stderr}`);
} finally {
	child.kill("SIGTERM");
	await new Promise((r) => child.once("exit", r));
	rmSync(dir, { recursive: true, force: true });
}
