/**
 * Cost of the cluster's session registry (issue 16, docs/scaling.md): per-session memory and
 * Redis traffic per login, per presence change and per logout, with 1, 2 and 3 nodes.
 *
 *   npx node --expose-gc bench/cluster-registry.ts [--nodes 1,2,3] [--sessions 600]
 *       [--concurrency 1]   logins (and presence changes, logouts) in flight at once; 1 shows
 *                           the cost of one event alone, more shows the per-tick batching
 *       [--registry replicated|sharded]   cluster.registry of the nodes
 *       [--negative 0]      first, the heap of N cached bare JIDs without sessions (sharded)
 *       [--script 0]        first, Redis's time per sharded-registry write: N new entries then
 *                           N updates, pipelined EVALSHAs of the put script, INFO commandstats
 *                           before and after (other clients' EVALSHAs would count too)
 *       [--redis redis://127.0.0.1:6379]   the Redis the nodes and the bench's MONITOR use
 *       [--no-monitor]      no MONITOR (its cost lands on Redis and on this process): the CPU
 *                           per session of the nodes (this process) and of Redis (INFO cpu) is
 *                           then the registry's alone; the traffic columns read 0
 *       [--contacts 0]      each user has this many mutual contacts (users i+1..i+K), spread
 *                           over the nodes, so that presence goes somewhere and the sharded
 *                           registry has JIDs to look up
 *
 * With the sharded registry, bytes delivered to subscribers are what the nodes received on
 * the JIDs' channels (their counters); registry commands are the scripts (EVALSHA), HGETALLs
 * and (UN)SUBSCRIBEs, counted apart from the PUBLISHes of stanzas to node channels.
 *
 * The nodes run in this process (each a whole Server, SQLite shared, the local Redis under a
 * private prefix, as test/e2e/cluster.test.ts starts them); the clients run in a child process
 * (this file with --clients), so this process's heap is the nodes' only. Sessions are spread
 * round-robin over the nodes. Memory: V8 heap used after a full GC, before and after the
 * logins, once every node holds every replica; with S sessions on N nodes the delta is
 * S·local + S·(N−1)·replica, so the 1-node run gives `local` and the others `replica`.
 * Redis: a MONITOR connection counts the commands naming this run's prefix, their bytes
 * (arguments, RESP framing left out), and the bytes Redis sends to subscribers (a PUBLISH to
 * the registry channel goes to all N nodes, to a node channel to one). Heartbeats are counted
 * apart (commands other than PUBLISH), as a rate per node. Plain TCP, no TLS. Not a test:
 * prints.
 */
import { type ChildProcess, fork } from "node:child_process";
import { rmSync } from "node:fs";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import type { ClusterLink } from "../src/cluster/link.ts";
import { PUT_SCRIPT } from "../src/cluster/registry.ts";
import { RemoteSession } from "../src/cluster/remote-session.ts";
import { startTestServer, type TestServer } from "../test/helpers/server.ts";
import { waitFor } from "../test/helpers/wait.ts";
import { befriend } from "../test/helpers/xmpp-user.ts";
import { login, type Session } from "./lib/xmpp.ts";

const PASSWORD = "bench-pw";
/** `--redis`: the Redis of the nodes, the MONITOR and the bench's reads (set in main()). */
let REDIS_URL = "redis://127.0.0.1:6379";

// --- client side (child process) ---

type ClientCmd =
	| { cmd: "login"; targets: { user: string; port: number }[]; concurrency: number }
	| { cmd: "presence"; concurrency: number }
	| { cmd: "logout"; concurrency: number }
	| { cmd: "exit" };

async function clients(): Promise<void> {
	const held: { s: Session; buf: string }[] = [];
	const scramCache = new Map<string, Buffer>();
	/** Runs `fn` over `items`, `n` at a time. */
	const pool = async <T>(items: T[], n: number, fn: (t: T, i: number) => Promise<void>) => {
		let next = 0;
		const one = async () => {
			while (next < items.length) {
				const i = next++;
				await fn(items[i] as T, i);
			}
		};
		await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, one));
	};
	const waitData = (h: { s: Session; buf: string }, re: RegExp) =>
		new Promise<void>((resolve, reject) => {
			const check = () => {
				if (re.test(h.buf)) {
					h.s.socket.off("data", check);
					h.s.socket.off("close", closed);
					resolve();
				}
			};
			const closed = () => reject(new Error("closed"));
			h.s.socket.on("data", check);
			h.s.socket.once("close", closed);
			check();
		});
	process.on("message", async (m: ClientCmd) => {
		try {
			if (m.cmd === "exit") process.exit(0);
			if (m.cmd === "login")
				await pool(m.targets, m.concurrency, async (t, i) => {
					const s = await login({
						endpoint: { host: "127.0.0.1", port: t.port, domain: "localhost" },
						localAddress: `127.0.0.${2 + (i % 200)}`,
						user: t.user,
						password: PASSWORD,
						mech: "PLAIN",
						resource: "r",
						presence: false,
						timeoutMs: 30_000,
						scramCache,
					});
					const h = { s, buf: s.rest };
					s.socket.setEncoding("utf8");
					s.socket.on("data", (d: string) => {
						h.buf = (h.buf + d).slice(-4000);
					});
					held.push(h);
					// Initial presence, and its echo (RFC 6121 §4.2.2): the session is available.
					h.s.socket.write("<presence/>");
					await waitData(h, /<presence[^>]*from=/);
				});
			if (m.cmd === "presence")
				await pool(held, m.concurrency, async (h) => {
					h.buf = "";
					h.s.socket.write("<presence><show>away</show><status>lunch</status></presence>");
					await waitData(h, /<show>away<\/show>/);
				});
			if (m.cmd === "logout") {
				await pool(held, m.concurrency, async (h) => {
					const closed = new Promise<void>((r) => h.s.socket.once("close", () => r()));
					h.s.socket.end("</stream:stream>");
					await closed;
				});
				held.length = 0;
			}
			process.send?.({ ok: true });
		} catch (err) {
			process.send?.({ ok: false, error: (err as Error).message });
		}
	});
}

// --- nodes and measurements (this process) ---

interface Traffic {
	/** Sharded registry: scripts, HGETALLs, (UN)SUBSCRIBEs (EVALSHA/EVAL counted, not their insides). */
	registryCmds: number;
	registryBytes: number;
	/** PUBLISHes to node channels (stanzas between nodes). */
	stanzaPublishes: number;
	publishes: number;
	publishBytes: number;
	deliveredBytes: number;
	/** Of `deliveredBytes`, the stanzas' (node channels, one subscriber each). */
	stanzaBytes: number;
	/** commands other than PUBLISH (the heartbeats' MULTI bodies and MGETs) */
	other: number;
	otherBytes: number;
}

const zero = (): Traffic => ({
	registryCmds: 0,
	registryBytes: 0,
	stanzaPublishes: 0,
	publishes: 0,
	publishBytes: 0,
	deliveredBytes: 0,
	stanzaBytes: 0,
	other: 0,
	otherBytes: 0,
});

function call(child: ChildProcess, cmd: ClientCmd): Promise<void> {
	return new Promise((resolve, reject) => {
		child.once("message", (m: { ok: boolean; error?: string }) =>
			m.ok ? resolve() : reject(new Error(m.error)),
		);
		child.send(cmd);
	});
}

function heap(): number {
	const gc = (globalThis as { gc?: () => void }).gc;
	if (!gc) throw new Error("run with: npx node --expose-gc bench/cluster-registry.ts");
	for (let i = 0; i < 4; i++) gc();
	return process.memoryUsage().heapUsed;
}

/** Redis's own CPU time so far (s): INFO cpu, user + sys. */
async function redisCpu(r: Redis): Promise<number> {
	const info = await r.info("cpu");
	const get = (k: string) => Number(new RegExp(`${k}:([0-9.]+)`).exec(info)?.[1] ?? 0);
	return get("used_cpu_user") + get("used_cpu_sys");
}

async function commandstatsPublish(r: Redis): Promise<{ calls: number; usec: number }> {
	const info = await r.info("commandstats");
	const m = /cmdstat_publish:calls=(\d+),usec=(\d+)/.exec(info);
	return { calls: Number(m?.[1] ?? 0), usec: Number(m?.[2] ?? 0) };
}

type Registry = "replicated" | "sharded";

async function run(
	nodes: number,
	sessions: number,
	concurrency: number,
	registry: Registry,
	contacts: number,
	monitoring = true,
) {
	const prefix = `parley-bench-${process.pid}-${nodes}-${Math.random().toString(36).slice(2, 6)}`;
	const users = Array.from({ length: sessions }, (_, i) => `u${i}`);
	const cluster = (node: string) => ({
		auth: { require_encryption: false, allow_plain_without_tls: true },
		cluster: {
			enabled: true,
			redis: REDIS_URL,
			prefix,
			node,
			heartbeat: 1,
			node_timeout: 5,
			registry,
		},
		limits: { connections_per_ip: 0, unauthenticated_per_ip: 0 },
	});
	const servers: TestServer[] = [];
	servers.push(
		await startTestServer({
			storage: "sqlite",
			config: cluster("n0"),
			users: users.map((u) => [`${u}@localhost`, PASSWORD] as [string, string]),
		}),
	);
	for (let i = 1; i < nodes; i++)
		servers.push(
			await startTestServer({
				storage: "sqlite",
				dataDir: servers[0]?.dataDir,
				config: cluster(`n${i}`),
			}),
		);
	const first = servers[0] as TestServer;
	for (let i = 0; i < sessions; i++)
		for (let k = 1; k <= Math.min(contacts, sessions - 1); k++)
			await befriend(first.server, `u${i}@localhost`, `u${(i + k) % sessions}@localhost`);
	const child = fork(new URL(import.meta.url).pathname, ["--clients"], {
		stdio: ["ignore", "inherit", "inherit", "ipc"],
	});

	// Counting Redis traffic of this run's prefix.
	const monitorConn = new Redis(REDIS_URL);
	const stats = new Redis(REDIS_URL);
	const monitor = monitoring ? await monitorConn.monitor() : null;
	await stats.ping();
	// The bench's own reads (stats) and the commands a script runs are not the nodes' traffic.
	const statsPort = `:${stats.stream.localPort}`;
	let t = zero();
	monitor?.on("monitor", (_time: string, args: string[], source: string) => {
		if (source === "lua" || source.endsWith(statsPort)) return;
		if (!args.some((a) => a.startsWith(prefix))) return;
		const bytes = args.reduce((n, a) => n + Buffer.byteLength(a), 0);
		const cmd = args[0]?.toLowerCase() ?? "";
		if (["evalsha", "eval", "hgetall", "subscribe", "unsubscribe"].includes(cmd)) {
			t.registryCmds++;
			t.registryBytes += bytes;
			return;
		}
		if (cmd === "publish" && args[1] !== `${prefix}:registry`) t.stanzaPublishes++;
		if (cmd === "publish") {
			t.publishes++;
			t.publishBytes += bytes;
			const payload = Buffer.byteLength(args[2] ?? "");
			const toRegistry = args[1] === `${prefix}:registry`;
			t.deliveredBytes += payload * (toRegistry ? nodes : 1);
			if (!toRegistry) t.stanzaBytes += payload;
		} else {
			t.other++;
			t.otherBytes += bytes;
		}
	});
	const remote = () =>
		servers.map((s) => (s.server.cluster as ClusterLink | null)?.remoteSessions ?? 0);
	const shards = () =>
		servers.map((s) => (s.server.cluster as ClusterLink).shard?.counters).filter((c) => !!c);
	const sum = (key: "writes" | "receivedBytes" | "misses") =>
		shards().reduce((n, c) => n + c[key], 0);
	/** Sessions written in the sharded registry (all nodes' sets). */
	let written = 0;
	const countWritten = async () => {
		let n = 0;
		for (const key of await stats.keys(`${prefix}:n:*`)) n += await stats.scard(key);
		written = n;
	};
	const phase = async (
		what: string,
		go: () => Promise<void>,
		check: () => boolean | Promise<boolean>,
	) => {
		t = zero();
		const cs0 = await commandstatsPublish(stats);
		const received0 = sum("receivedBytes");
		const misses0 = sum("misses");
		const redis0 = await redisCpu(stats);
		const cpu0 = process.cpuUsage();
		const t0 = performance.now();
		await go();
		await waitFor(check, what, 120_000);
		// What the last tick queued is published at setImmediate and reaches MONITOR after.
		await new Promise((r) => setTimeout(r, 300));
		const ms = performance.now() - t0;
		const cpu = process.cpuUsage(cpu0);
		const redisS = (await redisCpu(stats)) - redis0;
		const cs1 = await commandstatsPublish(stats);
		const seen = t;
		// Sharded: what the nodes received on the JIDs' channels (a script's PUBLISH is not seen
		// with its subscribers), and the stanzas.
		if (registry === "sharded")
			seen.deliveredBytes = sum("receivedBytes") - received0 + seen.stanzaBytes;
		const misses = sum("misses") - misses0;
		return {
			what,
			ms,
			/** CPU of the nodes (this process) and of Redis during the phase, µs. */
			nodeUs: cpu.user + cpu.system,
			redisUs: redisS * 1e6,
			misses,
			traffic: seen,
			publishUsec:
				cs1.calls > cs0.calls ? (cs1.usec - cs0.usec) / Math.max(1, cs1.calls - cs0.calls) : 0,
		};
	};
	const replicasShow = (re: RegExp) => () =>
		servers.every((s) => {
			for (const resources of s.server.hosts.get("localhost")?.sessions.values() ?? [])
				for (const r of resources.values())
					if (r instanceof RemoteSession && !re.test(r.presence?.toString() ?? "")) return false;
			return true;
		});

	await new Promise((r) => setTimeout(r, 1500));
	const before = heap();
	const targets = users.map((user, i) => ({ user, port: servers[i % nodes]?.port ?? 0 }));
	const results = [];
	const sharded = registry === "sharded";
	results.push(
		await phase(
			"login",
			() => call(child, { cmd: "login", targets, concurrency }),
			sharded
				? async () => {
						await countWritten();
						return written === sessions;
					}
				: () =>
						remote().every(
							(n, i) => n === sessions - targets.filter((_, k) => k % nodes === i).length,
						),
		),
	);
	const loggedIn = heap();
	const cached = remote();
	const writes0 = sharded ? sum("writes") : 0;
	results.push(
		await phase(
			"presence change",
			() => call(child, { cmd: "presence", concurrency }),
			sharded ? () => sum("writes") - writes0 >= sessions : replicasShow(/<show>away<\/show>/),
		),
	);
	// Heartbeats alone, for 5 s of quiet.
	t = zero();
	await new Promise((r) => setTimeout(r, 5000));
	const idle = t;
	results.push(
		await phase(
			"logout",
			() => call(child, { cmd: "logout", concurrency }),
			sharded
				? async () => {
						await countWritten();
						return written === 0;
					}
				: () => remote().every((n) => n === 0),
		),
	);

	child.send({ cmd: "exit" });
	await monitorConn.quit().catch(() => {});
	for (const s of servers.slice().reverse()) await s.stop();
	const keys = await stats.keys(`${prefix}:*`);
	if (keys.length) await stats.del(...keys);
	await stats.quit();
	rmSync(servers[0]?.dataDir ?? "/nonexistent", { recursive: true, force: true });
	return { nodes, sessions, heapDelta: loggedIn - before, results, idle, cached };
}

/**
 * The heap one replica costs, measured alone and on a large count: one node, and `count`
 * sessions of a made-up node "ghost" published on the registry channel as that node would
 * (entries shaped as the link's, with a client's presence with caps, the size of the real ones
 * MONITOR shows), its `alive` key kept so that the node does not declare it dead.
 */
async function replicaCost(count: number): Promise<{ bytes: number; applyUs: number }> {
	const prefix = `parley-bench-${process.pid}-ghost`;
	const s = await startTestServer({
		storage: "sqlite",
		config: {
			cluster: {
				enabled: true,
				redis: REDIS_URL,
				prefix,
				node: "n0",
				heartbeat: 1,
				node_timeout: 5,
				registry: "replicated",
			},
		},
	});
	const r = new Redis(REDIS_URL);
	await r.set(`${prefix}:alive:ghost`, "1", "PX", 600_000);
	await new Promise((res) => setTimeout(res, 1500));
	const link = s.server.cluster as ClusterLink;
	const before = heap();
	const cpu0 = process.cpuUsage();
	for (let i = 0; i < count; i += 500) {
		const batch = [];
		for (let k = i; k < Math.min(count, i + 500); k++) {
			const jid = `ghost${k}@localhost/phone-${k.toString(36)}`;
			batch.push({
				op: "put",
				entry: {
					node: "ghost",
					seq: k + 1,
					id: `00000000-0000-4000-8000-${k.toString().padStart(12, "0")}`,
					host: "localhost",
					jid,
					addr: `10.0.${(k >> 8) & 255}.${k & 255}`,
					secure: true,
					available: true,
					priority: 0,
					presence: `<presence xmlns="jabber:client" from="${jid}"><show>away</show><status>lunch</status><c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="https://conversations.im" ver="Nh2cGMw5s3H3b1vGeHO1T7Z0qoQ="/></presence>`,
					interested: true,
					data: { carbons: true },
				},
			});
		}
		await r.publish(`${prefix}:registry`, JSON.stringify(batch));
	}
	await waitFor(() => link.remoteSessions === count, `${count} replicas`, 120_000);
	const cpu = process.cpuUsage(cpu0);
	// Mostly the node applying the entries (JSON, the presence's XML, the maps); the publishing
	// client's share is small beside it.
	const applyUs = (cpu.user + cpu.system) / count;
	const after = heap();
	await s.stop();
	rmSync(s.dataDir, { recursive: true, force: true });
	const keys = await r.keys(`${prefix}:*`);
	if (keys.length) await r.del(...keys);
	await r.quit();
	return { bytes: (after - before) / count, applyUs };
}

/**
 * Sharded registry: the heap one cached bare JID without sessions costs (an offline contact a
 * node looked up: the cache record and its channel subscription), on one node, `count` of them
 * looked up in batches of 500 as a presence broadcast would.
 */
async function negativeCacheCost(count: number): Promise<number> {
	const prefix = `parley-bench-${process.pid}-neg`;
	const s = await startTestServer({
		storage: "sqlite",
		config: {
			cluster: {
				enabled: true,
				redis: REDIS_URL,
				prefix,
				node: "n0",
				heartbeat: 1,
				node_timeout: 5,
				registry: "sharded",
				registry_cache: count * 2,
			},
		},
	});
	const link = s.server.cluster as ClusterLink;
	await new Promise((res) => setTimeout(res, 1500));
	const before = heap();
	for (let i = 0; i < count; i += 500) {
		const batch = [];
		for (let k = i; k < Math.min(count, i + 500); k++) batch.push(`nobody${k}@localhost`);
		await link.resolveAll(batch);
	}
	const after = heap();
	const cached = link.shard?.cached ?? 0;
	await s.stop();
	rmSync(s.dataDir, { recursive: true, force: true });
	if (cached !== count) throw new Error(`${cached} cached, not ${count}`);
	return (after - before) / count;
}

async function scriptCost(count: number): Promise<{ added: number; updated: number }> {
	const r = new Redis(REDIS_URL);
	const sha = (await r.script("LOAD", PUT_SCRIPT)) as string;
	const p0 = `parley-bench-${process.pid}-script`;
	const stat = async () => {
		const m = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(await r.info("commandstats"));
		return { calls: Number(m?.[1] ?? 0), usec: Number(m?.[2] ?? 0) };
	};
	const out: number[] = [];
	for (const isNew of ["1", "0"]) {
		const s0 = await stat();
		const p = r.pipeline();
		for (let i = 0; i < count; i++) {
			const id = `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`;
			const jid = `u${i}@localhost/r`;
			const entry = JSON.stringify({
				node: "n0",
				seq: i + 1,
				id,
				host: "localhost",
				jid,
				addr: "127.0.0.1",
				secure: true,
				available: true,
				priority: 0,
				presence: `<presence xmlns="jabber:client" from="${jid}"><show>away</show><status>lunch</status></presence>`,
				interested: true,
				data: {},
			});
			p.evalsha(
				sha,
				4,
				`${p0}:s:u${i}@localhost`,
				`${p0}:n:n0`,
				`${p0}:h:localhost`,
				`${p0}:u:localhost`,
				"r",
				id,
				entry,
				isNew,
				`${p0}:j:u${i}@localhost`,
				jid,
			);
		}
		await p.exec();
		const s1 = await stat();
		out.push((s1.usec - s0.usec) / Math.max(1, s1.calls - s0.calls));
	}
	const keys = await r.keys(`${p0}:*`);
	for (let i = 0; i < keys.length; i += 1000) await r.del(...keys.slice(i, i + 1000));
	await r.quit();
	return { added: out[0] ?? 0, updated: out[1] ?? 0 };
}

async function main() {
	const { values } = parseArgs({
		options: {
			nodes: { type: "string", default: "1,2,3" },
			sessions: { type: "string", default: "600" },
			concurrency: { type: "string", default: "1" },
			clients: { type: "boolean", default: false },
			replicas: { type: "string", default: "20000" },
			registry: { type: "string", default: "replicated" },
			contacts: { type: "string", default: "0" },
			negative: { type: "string", default: "0" },
			script: { type: "string", default: "0" },
			"no-monitor": { type: "boolean", default: false },
			redis: { type: "string", default: REDIS_URL },
		},
	});
	REDIS_URL = values.redis;
	const registry = values.registry === "sharded" ? "sharded" : "replicated";
	const contacts = Number(values.contacts);
	if (values.clients) return clients();
	const sessions = Number(values.sessions);
	const concurrency = Number(values.concurrency);
	console.log(
		`cluster registry (${registry}): ${sessions} sessions, ${contacts} contacts each, concurrency ${concurrency}, node ${process.version}`,
	);
	const replica =
		Number(values.replicas) > 0
			? await replicaCost(Number(values.replicas))
			: { bytes: 0, applyUs: 0 };
	console.log(
		`one replica alone (${values.replicas} of a made-up node on 1 node): ${(replica.bytes / 1024).toFixed(2)} KiB of heap each, ${replica.applyUs.toFixed(1)} µs CPU to apply one put`,
	);
	if (Number(values.script) > 0) {
		const c = await scriptCost(Number(values.script));
		console.log(
			`sharded: Redis time per put script (${values.script} pipelined): ${c.added.toFixed(1)} µs for a new entry, ${c.updated.toFixed(1)} µs for an update`,
		);
	}
	if (Number(values.negative) > 0) {
		const bytes = await negativeCacheCost(Number(values.negative));
		console.log(
			`sharded: one cached bare JID without sessions (${values.negative} looked up on 1 node): ${bytes.toFixed(0)} B of heap each`,
		);
	}
	let local = 0;
	for (const n of values.nodes.split(",").map(Number)) {
		const r = await run(n, sessions, concurrency, registry, contacts, !values["no-monitor"]);
		const perSession = r.heapDelta / sessions;
		if (n === 1) local = perSession;
		console.log(`\n== ${n} node(s), ${sessions} sessions (${Math.ceil(sessions / n)} per node)`);
		console.log(
			`heap of all nodes: +${(r.heapDelta / 1048576).toFixed(1)} MiB = ${(perSession / 1024).toFixed(1)} KiB per cluster session`,
		);
		if (n > 1 && local > 0) {
			// At a thousand sessions one-time allocations blur the difference; compare with what
			// the direct replica figure predicts.
			const expected = sessions * local + sessions * (n - 1) * replica.bytes;
			console.log(
				`  expected from ${(local / 1024).toFixed(1)} KiB local (1 node) and ${(replica.bytes / 1024).toFixed(2)} KiB per replica: +${(expected / 1048576).toFixed(1)} MiB`,
			);
		}
		console.log(`other nodes' sessions held per node after the logins: ${r.cached.join(", ")}`);
		for (const p of r.results) {
			const x = p.traffic;
			const per = (v: number, d = 3) => (v / sessions).toFixed(d);
			console.log(
				`${p.what.padEnd(16)} per session: ${per(x.publishes)} PUBLISH (${per(x.stanzaPublishes)} of stanzas), ${per(x.registryCmds)} registry cmds (${per(p.misses)} lookups), ` +
					`${per(x.publishBytes + x.registryBytes, 0)} B in, ${per(x.deliveredBytes, 0)} B out to subscribers (${per(x.deliveredBytes - x.stanzaBytes, 0)} registry, ${per(x.stanzaBytes, 0)} stanzas), ${per(x.other)} other cmds; ` +
					`${(sessions / (p.ms / 1000)).toFixed(0)}/s; redis PUBLISH ${p.publishUsec.toFixed(1)} µs/call; ` +
					`CPU per session: nodes ${(p.nodeUs / sessions).toFixed(0)} µs, Redis ${(p.redisUs / sessions).toFixed(0)} µs`,
			);
		}
		console.log(
			`heartbeats (idle 5 s): ${(r.idle.other / 5 / n).toFixed(1)} cmds/s per node, ${(r.idle.otherBytes / 5 / n).toFixed(0)} B/s per node; ${r.idle.publishes} PUBLISH`,
		);
	}
}

await main();
// The clients child and ioredis timers would keep the process up; everything is closed by now.
if (!process.argv.includes("--clients")) process.exit(0);
