// npm run bench -- [--help] [--target parley|prosody|ejabberd|relay]...
//                  [login|chat|chat-sm|idle|roster|saturation|storage|muc|pep|s2s|anon]...
//                  [--profile] [--baseline DIR] [--sessions N] [--logins N] [--messages N] [--pairs N]
//                  [--guests N]
//                  [--window N] [--roster N] [--storage-n N] [--rate N]
//                  [--occupants N]... [--muc-deliveries N] [--muc-senders N] [--muc-window N]
//                  [--muc-archive]
//                  [--pep-contacts N] [--pep-items N] [--pep-window N]
//                  [--soak-sessions N] [--soak-minutes M] [--soak-ping S]
// chat-sm: the chat scenario with XEP-0198 stream management on every session: each client sends
//         <enable resume='true'/> right after bind (anything but <enabled/> fails the scenario
//         for that target), answers the server's <r/> with its count, asks <r/> itself after
//         every 5 stanzas it sends and checks each <a h/> answer (bench/lib/xmpp.ts SmClient).
//         Prosody gets mod_smacks ("smacks" in modules_enabled) and ejabberd mod_stream_mgmt,
//         with their defaults, for the whole target when chat-sm is asked for; Parley always
//         offers it. Name chat too (`chat chat-sm`) for the plain figures beside it; the server
//         is restarted first when other scenarios ran before on it (chat is then run on a fresh
//         server too when named first, so the two start alike).
// roster: N accounts (201) each with the N-1 others as mutual contacts log in one after another
//         (roster get + initial presence); server CPU per login and per delivered presence.
// saturation: chat with the window doubled from 10 until delivered/s stops growing (>5%), per
//         target; then Parley (run last) paced open-loop at the best peer's saturation rate (or
//         --rate N): p99 latencies compared.
// muc: one fresh room per size (--occupants, default 50 and 500) at conference.localhost; the
//         occupants log in and join, then --muc-senders (10) of them send groupchat messages
//         (--muc-window 2 in flight each) until about --muc-deliveries (200000) deliveries;
//         server CPU per 10k deliveries, exactly once per occupant, join cost per occupant; the
//         server is restarted first when other scenarios ran before on it.
//         --muc-archive: the rooms archive (XEP-0313) on every target, rows muc-<size>-archive:
//         Parley room_defaults.archive = true (XEP-0425 moderation is then offered; occupant ids
//         and the spam module's block-list check run either way); Prosody mod_muc_mam with
//         muc_log_by_default = true; ejabberd mod_mam with default_room_options mam: true.
// pep: PEP notification fan-out (XEP-0163): publisher pep0 with --pep-contacts (200) mutual
//         ("both") contacts pep1.. (the roster scenario's provisioning, as a star), each contact
//         online with XEP-0115 caps (client/pc, tune + tune+notify; it answers the server's
//         disco#info for node#ver, which the servers verify), the publisher online last (plain
//         presence); single publishes until one reaches every contact (the servers learned the
//         caps; 30 s at most), a warm-up of 10%, then --pep-items (500) User Tune items (id
//         "current") published to its own node http://jabber.org/protocol/tune, --pep-window (4)
//         in flight, an item leaving the window when its result and all its notifications came;
//         server CPU per 10k notifications from the first publish to the last notification,
//         each contact each item exactly once. Restarted first like muc. Prosody: mod_pep;
//         ejabberd: mod_pubsub (flat, pep) + mod_caps; Parley: its default module set.
// anon: guest logins (SASL ANONYMOUS, RFC 4505) on the anonymous host guest.localhost beside
//         SCRAM-SHA-1 logins of accounts on localhost, same server process: --logins (2000)
//         logins + initial presence each, closed at once (after 1000 unmeasured ones each), server
//         CPU per login; then --guests (2000) account sessions held, then as many guests on top
//         (initial presence each), RSS growth per session. Parley and Prosody (ejabberd skipped).
// soak (only when asked for; not part of the default set: it takes an hour): idle sessions with
//         the servers' keepalives on (issue 21), per variant of each --target server: Parley with
//         [sessions] idle_ping 60 (or --soak-ping S), ping_timeout 30 (its defaults), and with
//         idle_ping 0 (no pings: the baseline); Prosody as shipped (0.12 has no server-sent pings:
//         a whitespace keepalive after 840 s of read silence); ejabberd with mod_ping send_pings,
//         ping_interval 60 (or S), ping_ack_timeout 30, timeout_action kill, and as shipped (no
//         pings). --soak-sessions (10000) SCRAM-SHA-1 logins + initial presence, held
//         --soak-minutes (10), answering pings; server CPU, bytes each way (counted by the
//         clients' sockets: TCP payload), TCP segments each way (the server's sockets' tcp_info,
//         ss), pings and whitespace received, sessions dropped, RSS; scaled to per hour (and
//         CPU to per 10k sessions). Each variant on a freshly started server.
// storage: bench/storage.ts (memory, SQLite, PostgreSQL on 127.0.0.1:5432) in the same run.
// s2s: federation, two servers on loopback per pairing, a.bench (senders) → b.bench (receivers):
//         Parley→Parley, Parley→Prosody, Prosody→Parley, Prosody→Prosody (those of the --target
//         servers); --pairs senders on a.bench each send to a partner on b.bench, chat's window
//         and warm-up, --messages (20000 unless given) over STARTTLS + dialback; CPU per 10k
//         messages of each server and their sum. With --profile, each Parley side's profile.
// --baseline DIR: also run Parley from another checkout DIR (target "baseline", before "parley")
//                 for before/after figures in one run.
// --workers N (or --target workers, N = 2): also Parley as a local cluster of N processes
//                 (`parley serve --workers N`) over a private redis-server, whose CPU and RSS
//                 count as the server's.
// --target cluster: also Parley as two nodes (two `parley serve` processes, a c2s port each, one
//                 SQLite file, a private redis-server; the CPU of all three counts as the server's).
//                 Its chat row is same-node (both ends of every pair on node 1).
// xchat (only when asked for; --target cluster): chat with the senders on node 1 and their
//                 receivers on node 2, so every message crosses nodes (src/cluster/delivery.ts);
//                 row "cluster cross-node" in the chat table. `--target parley --target cluster
//                 chat xchat`: single-node, same-node and cross-node in one run.
// --target baseline-cluster (with --baseline DIR): the cluster target from that checkout.
// --cluster-registry R, --baseline-cluster-registry R: `cluster.registry` ("replicated" or
//                 "sharded") of the cluster and baseline-cluster targets (their default when not
//                 given); with --baseline pointing at this checkout, both registries in one run.
//                 The cluster targets start their own redis-server on a free port (never 6379).
// --target mam: also Parley from this checkout with the mam module added to the default
//                 module set (every chat message archived twice, XEP-0313), beside "parley"
//                 (no mam): `--target parley --target mam chat` is archiving's cost in one run;
//                 with --baseline DIR --baseline-mam the baseline archives too (before/after).
// --target prosody-mam / ejabberd-mam: the reference servers with their own archives on for
//                 every account, on SQLite (bench/lib/targets.ts): `--target prosody --target
//                 prosody-mam chat` is what archiving costs Prosody, as "mam" is for Parley.
// --profile: Parley only, under the scenarios given (chat when none), e.g. `--profile login`.
// Starts each target itself, provisions accounts, runs the scenarios one target at a time and
// prints one table per scenario with each figure's ratio to the best XMPP server. The primary
// figure is the server's own CPU time (utime+stime of its process tree, from /proc).
import { type ChildProcess, execFileSync, fork } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import {
	cores,
	describeSplit,
	Meter,
	machine,
	processTree,
	rssKiB,
	type Window,
} from "./lib/proc.ts";
import { topSelfTime } from "./lib/profile.ts";
import {
	freePort,
	type Running,
	type S2SOptions,
	type StartOptions,
	startBaseline,
	startBaselineCluster,
	startCluster,
	startEjabberd,
	startEjabberdMam,
	startMam,
	startParley,
	startProsody,
	startProsodyMam,
	startRelay,
	startWorkers,
	type TargetName,
} from "./lib/targets.ts";
import type {
	ChatResult,
	Command,
	LoginResult,
	MucJoinResult,
	MucResult,
	PepResult,
	PepSetupResult,
	RosterResult,
	SoakStats,
} from "./lib/worker.ts";
import { percentile } from "./lib/worker.ts";
import type { Endpoint, Mech, SmCounts } from "./lib/xmpp.ts";

const ROOT = resolve(import.meta.dirname, "..");
const OUT = join(ROOT, ".bench-results");
const PASSWORD = "benchpw";
const ALL_TARGETS: TargetName[] = ["parley", "prosody", "ejabberd", "relay"];
const ALL_SCENARIOS = [
	"login",
	"chat",
	"chat-sm",
	"idle",
	"roster",
	"saturation",
	"storage",
	"muc",
	"pep",
	"s2s",
	"anon",
	"soak",
	"xchat",
] as const;
type Scenario = (typeof ALL_SCENARIOS)[number];
/** Scenarios run only when named: the soak holds sessions for --soak-minutes per variant. */
const ON_REQUEST: readonly Scenario[] = ["soak", "xchat"];

interface Options {
	targets: TargetName[];
	scenarios: Scenario[];
	profile: boolean;
	baseline?: string;
	/** --baseline-mam: the baseline runs with mam added to its modules, as the "mam" target */
	baselineMam?: boolean;
	/** --workers N: also Parley with N worker processes (target "workers") */
	workers?: number;
	/** --cluster-registry, --baseline-cluster-registry: `cluster.registry` of those targets */
	clusterRegistry?: string;
	baselineClusterRegistry?: string;
	sessions: number;
	logins: number;
	messages: number;
	/** the s2s scenario's messages: --messages when given, else 20000 (two servers per run) */
	s2sMessages: number;
	pairs: number;
	window: number;
	roster: number;
	storageN: number;
	rate?: number;
	occupants: number[];
	mucDeliveries: number;
	mucSenders: number;
	mucWindow: number;
	/** the muc scenario's rooms archive (XEP-0313) on every target (--muc-archive) */
	mucArchive: boolean;
	/** the anon scenario's sessions held (accounts, then as many guests) */
	guests: number;
	/** the pep scenario: the publisher's contacts, the items it publishes, publishes in flight */
	pepContacts: number;
	pepItems: number;
	pepWindow: number;
	/** the soak scenario: sessions held, minutes held, Parley's idle_ping and ejabberd's ping_interval (s) */
	soakSessions: number;
	soakMinutes: number;
	soakPing?: number;
}

function parseArgs(argv: string[]): Options {
	const o: Options = {
		targets: [],
		scenarios: [],
		profile: false,
		sessions: 5000,
		logins: 2000,
		messages: 50_000,
		s2sMessages: 20_000,
		pairs: 100,
		window: 10,
		roster: 201,
		storageN: 5000,
		occupants: [],
		mucDeliveries: 200_000,
		mucSenders: 10,
		mucWindow: 2,
		mucArchive: false,
		guests: 2000,
		pepContacts: 200,
		pepItems: 500,
		pepWindow: 4,
		soakSessions: 10_000,
		soakMinutes: 10,
	};
	const num = (v: string | undefined, name: string) => {
		const n = Number(v);
		if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} needs a positive integer`);
		return n;
	};
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i] as string;
		if (a === "--help" || a === "-h") {
			// The usage is this file's opening comment.
			const text = readFileSync(new URL(import.meta.url), "utf8");
			const head = text.slice(0, text.search(/^import /m));
			process.stdout.write(head.replace(/^\/\/ ?/gm, ""));
			process.exit(0);
		}
		if (a === "--target" || a === "-t") {
			const t = argv[++i] as TargetName;
			if (
				!ALL_TARGETS.includes(t) &&
				t !== "workers" &&
				t !== "mam" &&
				t !== "prosody-mam" &&
				t !== "ejabberd-mam" &&
				t !== "cluster" &&
				t !== "baseline-cluster"
			)
				throw new Error(`unknown target ${t}`);
			o.targets.push(t);
		} else if (a === "--profile") o.profile = true;
		else if (a === "--baseline") o.baseline = resolve(argv[++i] ?? "");
		else if (a === "--baseline-mam") o.baselineMam = true;
		else if (a === "--workers") o.workers = num(argv[++i], a);
		else if (a === "--cluster-registry" || a === "--baseline-cluster-registry") {
			const r = argv[++i] ?? "";
			if (r !== "replicated" && r !== "sharded")
				throw new Error(`${a} needs "replicated" or "sharded"`);
			if (a === "--cluster-registry") o.clusterRegistry = r;
			else o.baselineClusterRegistry = r;
		} else if (a === "--sessions") o.sessions = num(argv[++i], a);
		else if (a === "--logins") o.logins = num(argv[++i], a);
		else if (a === "--messages") o.messages = o.s2sMessages = num(argv[++i], a);
		else if (a === "--pairs") o.pairs = num(argv[++i], a);
		else if (a === "--window") o.window = num(argv[++i], a);
		else if (a === "--roster") o.roster = num(argv[++i], a);
		else if (a === "--storage-n") o.storageN = num(argv[++i], a);
		else if (a === "--rate") o.rate = num(argv[++i], a);
		else if (a === "--occupants") o.occupants.push(num(argv[++i], a));
		else if (a === "--muc-deliveries") o.mucDeliveries = num(argv[++i], a);
		else if (a === "--muc-senders") o.mucSenders = num(argv[++i], a);
		else if (a === "--muc-window") o.mucWindow = num(argv[++i], a);
		else if (a === "--muc-archive") o.mucArchive = true;
		else if (a === "--guests") o.guests = num(argv[++i], a);
		else if (a === "--pep-contacts") o.pepContacts = num(argv[++i], a);
		else if (a === "--pep-items") o.pepItems = num(argv[++i], a);
		else if (a === "--pep-window") o.pepWindow = num(argv[++i], a);
		else if (a === "--soak-sessions") o.soakSessions = num(argv[++i], a);
		else if (a === "--soak-minutes") {
			o.soakMinutes = Number(argv[++i]);
			if (!(o.soakMinutes > 0)) throw new Error("--soak-minutes needs a positive number");
		} else if (a === "--soak-ping") o.soakPing = num(argv[++i], a);
		else if ((ALL_SCENARIOS as readonly string[]).includes(a)) o.scenarios.push(a as Scenario);
		else throw new Error(`unknown argument ${a}`);
	}
	if (o.profile) {
		if (!o.targets.length) o.targets = ["parley"];
		if (!o.scenarios.length) o.scenarios = ["chat"];
	}
	if (!o.targets.length) o.targets = [...ALL_TARGETS];
	if (o.baseline && !o.targets.includes("baseline")) o.targets.unshift("baseline");
	if (o.workers && !o.targets.includes("workers")) o.targets.push("workers");
	if (!o.scenarios.length) o.scenarios = ALL_SCENARIOS.filter((s) => !ON_REQUEST.includes(s));
	if (!o.occupants.length) o.occupants = [50, 500];
	// saturation: Parley goes last, paced at the rate the peers saturated at.
	if (o.scenarios.includes("saturation"))
		o.targets.sort((a, b) => Number(isParley(a)) - Number(isParley(b)));
	return o;
}

/** One generator process, driven over IPC. */
class Worker {
	child: ChildProcess;
	constructor() {
		this.child = fork(join(ROOT, "bench/lib/worker.ts"), [], {
			stdio: ["ignore", "inherit", "inherit", "ipc"],
		});
	}
	call<T>(cmd: Command): Promise<T> {
		return new Promise((res, rej) => {
			const onExit = (c: number | null) => rej(new Error(`generator exited (${c})`));
			this.child.once("exit", onExit);
			this.child.once("message", (m: { ok: boolean; result?: T; error?: string }) => {
				this.child.off("exit", onExit);
				if (m.ok) res(m.result as T);
				else rej(new Error(m.error));
			});
			this.child.send(cmd);
		});
	}
	stop() {
		if (this.child.connected) this.child.send({ cmd: "exit" });
	}
}

const isParley = (t: TargetName) =>
	t === "parley" ||
	t === "baseline" ||
	t === "workers" ||
	t === "mam" ||
	t === "cluster" ||
	t === "baseline-cluster";

type Row = Record<string, number | string | boolean>;
interface ScenarioResult {
	scenario: string;
	/** a target, a storage backend, or an s2s pairing ("parley→prosody") */
	target: string;
	figures: Row;
	note?: string;
}

/**
 * Logins before each storm, on other accounts, not measured. 1000 rather than 100: after 100 the
 * JIT was still compiling the login path during the measured storm (V8's compiler threads
 * showed 0.20 ms per measured login, 0.08 after 2000), for every target alike.
 */
const LOGIN_WARMUP = 1000;

/** A scenario's notes, plus each server process's share of the CPU when there are several. */
function noteWithSplit(notes: string[], w: Window): string | undefined {
	const all = [...notes];
	if (w.processes.length > 1) all.push(`server processes: ${describeSplit(w.processes)}`);
	return all.length ? all.join("; ") : undefined;
}

const users = (from: number, n: number) => Array.from({ length: n }, (_, i) => `b${from + i}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (s: string) =>
	process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);

/** Generators: one process per 15000 connections (a process may hold 20000 open files). */
function workersFor(n: number): Worker[] {
	return Array.from({ length: Math.max(1, Math.ceil(n / 15_000)) }, () => new Worker());
}

/**
 * A login storm over accounts b0..b(logins-1). `again`: the same accounts log in a second time
 * with the same password (a reconnect), after the first storm; no warm-up then.
 */
async function loginStorm(
	t: Running,
	mech: Mech,
	o: Options,
	gens: Worker[],
	again = false,
): Promise<ScenarioResult> {
	const g = gens[0] as Worker;
	const base = {
		cmd: "login",
		endpoint: t.endpoint,
		password: PASSWORD,
		mech,
		keep: false,
		presence: false,
		timeoutMs: 60_000,
	} as const;
	// Warm-up (not measured): JIT, caches of the generator. Other accounts than the measured
	// ones (b<logins>.. exist, see `accounts`), so that the measured logins are each account's
	// first since the server started: nothing the server may cache per account helps them.
	if (!again) {
		await g.call<LoginResult>({
			...base,
			users: users(o.logins, LOGIN_WARMUP),
			concurrency: 20,
			addrOffset: 0,
		});
	}
	await sleep(500);
	const meter = new Meter(t.pid, () => gens.map((w) => w.child.pid as number));
	meter.start();
	const t0 = performance.now();
	const r = await g.call<LoginResult>({
		...base,
		users: users(0, o.logins),
		concurrency: 50,
		addrOffset: 100,
	});
	const wall = (performance.now() - t0) / 1000;
	await sleep(500); // let the server finish closing the streams: their cost is part of a login
	const w = meter.stop();
	const lat = r.latenciesMs.sort((a, b) => a - b);
	return {
		scenario: `login-${mech}${again ? "-again" : ""}`,
		target: t.name,
		figures: {
			"server CPU ms/login": (1000 * w.serverCpu) / Math.max(1, r.ok),
			"logins/s": r.ok / wall,
			"p50 ms": percentile(lat, 50),
			"p99 ms": percentile(lat, 99),
			failed: r.failures,
			"generator CPU ms/login": (1000 * w.generatorCpu) / Math.max(1, r.ok),
			"machine busy %": w.machineBusyPct,
			"others busy %": w.othersBusyPct,
		},
		note: noteWithSplit(r.errors, w),
	};
}

async function idle(t: Running, o: Options, gens: Worker[]): Promise<ScenarioResult> {
	const tree = () => processTree(t.pid);
	await sleep(1000);
	const rss0 = rssKiB(tree());
	const meter = new Meter(t.pid, () => gens.map((w) => w.child.pid as number));
	meter.start();
	const per = Math.ceil(o.sessions / gens.length);
	const results = await Promise.all(
		gens.map((g, k) =>
			g.call<LoginResult>({
				cmd: "login",
				endpoint: t.endpoint,
				password: PASSWORD,
				mech: "SCRAM-SHA-1",
				keep: true,
				presence: true,
				timeoutMs: 30_000,
				users: users(k * per, Math.min(per, o.sessions - k * per)),
				concurrency: 50,
				addrOffset: k * per,
			}),
		),
	);
	await sleep(3000);
	const rss1 = rssKiB(tree());
	const w = meter.stop();
	const ok = results.reduce((a, r) => a + r.ok, 0);
	const failed = results.reduce((a, r) => a + r.failures, 0);
	await Promise.all(gens.map((g) => g.call({ cmd: "closeAll" })));
	return {
		scenario: "idle",
		target: t.name,
		figures: {
			"RSS KiB/session": (rss1 - rss0) / Math.max(1, ok),
			sessions: ok,
			failed,
			"RSS before MiB": rss0 / 1024,
			"RSS after MiB": rss1 / 1024,
			"server CPU ms/session (login+presence)": (1000 * w.serverCpu) / Math.max(1, ok),
			"machine busy %": w.machineBusyPct,
			"others busy %": w.othersBusyPct,
		},
		note:
			results
				.flatMap((r) => r.errors)
				.slice(0, 3)
				.join("; ") || undefined,
	};
}

/** Accounts b0..b(n-1) on `t`, by its own bulk path or in-band registration (kept between runs). */
async function provisionAccounts(t: Running, n: number, gens: Worker[]): Promise<void> {
	await t.provision(n, PASSWORD, async (n) => {
		const r = await (gens[0] as Worker).call<{
			created: number;
			exists: number;
			errors: string[];
		}>({
			cmd: "register",
			endpoint: t.endpoint,
			users: users(0, n),
			password: PASSWORD,
			concurrency: 16,
		});
		log(
			`${t.name}: registered ${r.created}, existing ${r.exists}${r.errors.length ? `, errors: ${r.errors.join("; ")}` : ""}`,
		);
		if (r.created + r.exists < n) throw new Error("registration incomplete");
	});
}

/** tcp_info of the server's established sockets on `port`, summed (ss, iproute2). */
function serverSockets(port: number) {
	const out = execFileSync("ss", ["-tinH", "state", "established", `( sport = :${port} )`], {
		encoding: "utf8",
		maxBuffer: 512 << 20,
	});
	const sum = (re: RegExp) => {
		let n = 0;
		for (const m of out.matchAll(re)) n += Number(m[1]);
		return n;
	};
	return {
		sockets: out.split("\n").filter((l) => /^\S/.test(l)).length,
		segsOut: sum(/\bsegs_out:(\d+)/g),
		segsIn: sum(/\bsegs_in:(\d+)/g),
		bytesSent: sum(/\bbytes_sent:(\d+)/g),
		bytesReceived: sum(/\bbytes_received:(\d+)/g),
	};
}

/** One server configuration of the soak scenario. */
interface SoakVariant {
	/** the table's column, e.g. "parley idle_ping 60" */
	label: string;
	server: "parley" | "prosody" | "ejabberd";
	/** what it does about idle sessions, for the notes */
	keepalive: string;
	extra: Partial<StartOptions>;
}

function soakVariants(o: Options): SoakVariant[] {
	const ping = o.soakPing ?? 60;
	const out: SoakVariant[] = [];
	if (o.targets.includes("parley")) {
		out.push(
			{
				label: `parley idle_ping ${ping}`,
				server: "parley",
				keepalive: `[sessions] idle_ping = ${ping}, ping_timeout = 30${ping === 60 ? " (the defaults)" : ""}: a XEP-0199 ping after ${ping} s without a byte from the client, dropped without an answer 30 s later; TCP keepalive (SO_KEEPALIVE, 60 s idle) on its sockets as always`,
				extra: { liveness: { idle_ping: ping, ping_timeout: 30 } },
			},
			{
				label: "parley idle_ping 0",
				server: "parley",
				keepalive:
					"[sessions] idle_ping = 0: no pings (the baseline); TCP keepalive (SO_KEEPALIVE, 60 s idle) as always",
				extra: { liveness: { idle_ping: 0, ping_timeout: 30 } },
			},
		);
	}
	if (o.targets.includes("prosody"))
		out.push({
			label: "prosody as shipped",
			server: "prosody",
			keepalive:
				"as shipped: 0.12 sends no pings (mod_ping only answers them; mod_smacks acts only for clients that enable XEP-0198); mod_c2s writes a whitespace keepalive when a connection was silent for network_settings.read_timeout (840 s) and sets SO_KEEPALIVE (c2s_tcp_keepalives, kernel default 7200 s idle)",
			extra: {},
		});
	if (o.targets.includes("ejabberd")) {
		out.push(
			{
				label: `ejabberd send_pings ${ping}`,
				server: "ejabberd",
				keepalive: `mod_ping send_pings: true, ping_interval: ${ping}, ping_ack_timeout: 30, timeout_action: kill (the setting comparable to Parley's)`,
				extra: { ejabberdPings: { interval: ping, ackTimeout: 30 } },
			},
			{
				label: "ejabberd as shipped",
				server: "ejabberd",
				keepalive: "mod_ping {} as shipped: send_pings false, no pings",
				extra: {},
			},
		);
	}
	return out;
}

/**
 * The soak scenario for one variant: a fresh server, --soak-sessions logins (SCRAM-SHA-1, bind,
 * initial presence) spread over the generators, held --soak-minutes while the clients answer
 * pings; what the hold cost, scaled to an hour.
 */
async function soakOne(
	v: SoakVariant,
	o: Options,
): Promise<{ result: ScenarioResult; version: string; notes: string[] }> {
	const stateDir = join(OUT, "state", v.server);
	mkdirSync(stateDir, { recursive: true });
	const so: StartOptions = { root: ROOT, stateDir, log, ...v.extra };
	const start = { parley: startParley, prosody: startProsody, ejabberd: startEjabberd }[v.server];
	log(`soak ${v.label}: starting`);
	const t = await start(so, processTree);
	const gens = workersFor(o.soakSessions);
	const genPids = () => gens.map((w) => w.child.pid as number);
	const tree = () => processTree(t.pid);
	try {
		await provisionAccounts(t, o.soakSessions, gens);
		await sleep(2000);
		const rss0 = rssKiB(tree());
		const lm = new Meter(t.pid, genPids);
		lm.start();
		const per = Math.ceil(o.soakSessions / gens.length);
		const logins = await Promise.all(
			gens.map((g, k) =>
				g.call<LoginResult>({
					cmd: "login",
					endpoint: t.endpoint,
					password: PASSWORD,
					mech: "SCRAM-SHA-1",
					keep: true,
					presence: true,
					timeoutMs: 60_000,
					users: users(k * per, Math.max(0, Math.min(per, o.soakSessions - k * per))),
					concurrency: 50,
					addrOffset: k * per,
				}),
			),
		);
		// The logins' own work (presence, the server's session set-up) settles before the hold.
		await sleep(5000);
		const lw = lm.stop();
		const ok = logins.reduce((a, r) => a + r.ok, 0);
		const loginFailures = logins.reduce((a, r) => a + r.failures, 0);
		const rss1 = rssKiB(tree());
		log(
			`soak ${v.label}: ${ok} sessions up (${loginFailures} failed); holding ${o.soakMinutes} min`,
		);
		await Promise.all(gens.map((g) => g.call({ cmd: "soakMark" })));
		const ss0 = serverSockets(t.endpoint.port);
		const meter = new Meter(t.pid, genPids);
		meter.start();
		const holdMs = o.soakMinutes * 60_000;
		const t0 = Date.now();
		while (Date.now() - t0 < holdMs) {
			await sleep(Math.min(60_000, holdMs - (Date.now() - t0)));
			const part = await Promise.all(gens.map((g) => g.call<SoakStats>({ cmd: "soakStats" })));
			log(
				`soak ${v.label}: ${((Date.now() - t0) / 60_000).toFixed(1)} min, pings ${part.reduce((a, r) => a + r.pings, 0)}, dropped ${part.reduce((a, r) => a + r.dropped, 0)}`,
			);
		}
		const w = meter.stop();
		const ss1 = serverSockets(t.endpoint.port);
		const stats = await Promise.all(gens.map((g) => g.call<SoakStats>({ cmd: "soakStats" })));
		const rss2 = rssKiB(tree());
		await Promise.all(gens.map((g) => g.call({ cmd: "closeAll" })));
		const sum = (f: (r: SoakStats) => number) => stats.reduce((a, r) => a + f(r), 0);
		const held = sum((r) => r.held);
		const dropped = sum((r) => r.dropped);
		const pings = sum((r) => r.pings);
		const perHour = 3600 / w.seconds;
		/** per session per hour */
		const psh = (x: number) => (x * perHour) / Math.max(1, held);
		const notes = [
			v.keepalive,
			`held ${(w.seconds / 60).toFixed(2)} min: figures × ${perHour.toFixed(2)} for an hour`,
			...logins.flatMap((r) => r.errors).slice(0, 2),
			...stats.flatMap((r) => r.droppedSamples.map((d) => `dropped, last bytes: ${d}`)).slice(0, 2),
			...stats.flatMap((r) => r.otherSamples.map((d) => `other bytes: ${d}`)).slice(0, 2),
			...(ss1.sockets !== ss0.sockets
				? [`server sockets ${ss0.sockets} at the start, ${ss1.sockets} at the end`]
				: []),
		];
		if (w.processes.length > 1) notes.push(`server processes: ${describeSplit(w.processes)}`);
		return {
			version: t.version,
			notes: t.notes,
			result: {
				scenario: "soak",
				target: v.label,
				figures: {
					"sessions held": held,
					"login failures": loginFailures,
					"dropped during the hold": dropped,
					"hold minutes": w.seconds / 60,
					"server CPU s per 10k sessions per hour":
						(w.serverCpu * perHour * 10_000) / Math.max(1, held),
					"server CPU % of a core": (100 * w.serverCpu) / w.seconds,
					"pings/session/hour": psh(pings),
					"pings per session in the hold (min–max)": `${Math.min(...stats.map((r) => r.pingsMin))}–${Math.max(...stats.map((r) => r.pingsMax))}`,
					"whitespace keepalives/session/hour": psh(sum((r) => r.whitespace)),
					"other reads in the hold": sum((r) => r.otherReads),
					"bytes server→client/session/hour": psh(sum((r) => r.bytesToClients)),
					"bytes client→server/session/hour": psh(sum((r) => r.bytesFromClients)),
					"TCP segments server→client/session/hour": psh(ss1.segsOut - ss0.segsOut),
					"TCP segments client→server/session/hour": psh(ss1.segsIn - ss0.segsIn),
					"bytes per ping exchange (both ways)": pings
						? (sum((r) => r.bytesToClients) + sum((r) => r.bytesFromClients)) / pings
						: "–",
					"bytes server→client/session/hour (ss)": psh(ss1.bytesSent - ss0.bytesSent),
					"bytes client→server/session/hour (ss)": psh(ss1.bytesReceived - ss0.bytesReceived),
					"RSS KiB/session (logins)": (rss1 - rss0) / Math.max(1, ok),
					"RSS after logins MiB": rss1 / 1024,
					"RSS at the end MiB": rss2 / 1024,
					"RSS growth in the hold MiB": (rss2 - rss1) / 1024,
					"server CPU ms/login (+presence)": (1000 * lw.serverCpu) / Math.max(1, ok),
					"generator CPU s/hour": w.generatorCpu * perHour,
					"machine busy %": w.machineBusyPct,
					"others busy %": w.othersBusyPct,
				},
				note: notes.join("; "),
			},
		};
	} finally {
		for (const g of gens) g.stop();
		log(`soak ${v.label}: stopping`);
		await t.stop();
	}
}

/** The soak scenario: each variant of each --target server, one after another. */
async function soak(o: Options) {
	const results: ScenarioResult[] = [];
	const versions: Record<string, { version: string; notes: string[] }> = {};
	const variants = soakVariants(o);
	const skipped = o.targets.filter((x) => x !== "parley" && x !== "prosody" && x !== "ejabberd");
	if (skipped.length) log(`soak: not set up for ${skipped.join(", ")}`);
	for (const v of variants) {
		try {
			const r = await soakOne(v, o);
			results.push(r.result);
			versions[`soak ${v.label}`] = { version: r.version, notes: r.notes };
		} catch (e) {
			log(`soak ${v.label}: failed: ${(e as Error).stack}`);
		}
	}
	return { results, versions };
}

/**
 * The anon scenario's login storm: `list` logs in on `endpoint` with `mech`, initial presence,
 * then closes (after `warm` unmeasured logins). Server CPU per login.
 */
async function presenceStorm(
	t: Running,
	endpoint: Endpoint,
	mech: Mech,
	list: string[],
	warm: string[],
	gens: Worker[],
) {
	const g = gens[0] as Worker;
	const base = {
		cmd: "login",
		endpoint,
		password: PASSWORD,
		mech,
		keep: false,
		presence: true,
		timeoutMs: 60_000,
	} as const;
	await g.call<LoginResult>({ ...base, users: warm, concurrency: 20, addrOffset: 0 });
	await sleep(500);
	const meter = new Meter(t.pid, () => gens.map((w) => w.child.pid as number));
	meter.start();
	const t0 = performance.now();
	const r = await g.call<LoginResult>({ ...base, users: list, concurrency: 50, addrOffset: 100 });
	const wall = (performance.now() - t0) / 1000;
	await sleep(500); // closing the streams (and a guest's clean-up) is part of a login
	const w = meter.stop();
	return { r, w, wall, lat: r.latenciesMs.sort((a, b) => a - b) };
}

/** Holds `list` logged in on `endpoint` (initial presence), spread over the generators. */
async function hold(
	t: Running,
	endpoint: Endpoint,
	mech: Mech,
	list: string[],
	gens: Worker[],
	addrBase: number,
) {
	const tree = () => processTree(t.pid);
	const rss0 = rssKiB(tree());
	const meter = new Meter(t.pid, () => gens.map((w) => w.child.pid as number));
	meter.start();
	const per = Math.ceil(list.length / gens.length);
	const results = await Promise.all(
		gens.map((g, k) =>
			g.call<LoginResult>({
				cmd: "login",
				endpoint,
				password: PASSWORD,
				mech,
				keep: true,
				presence: true,
				timeoutMs: 30_000,
				users: list.slice(k * per, (k + 1) * per),
				concurrency: 50,
				addrOffset: addrBase + k * per,
			}),
		),
	);
	await sleep(3000);
	const rss1 = rssKiB(tree());
	const w = meter.stop();
	const ok = results.reduce((a, r) => a + r.ok, 0);
	return {
		ok,
		failed: results.reduce((a, r) => a + r.failures, 0),
		errors: results.flatMap((r) => r.errors),
		rss0,
		rss1,
		w,
	};
}

/**
 * Guests (SASL ANONYMOUS on t.guest) beside accounts (SCRAM-SHA-1 on the main host) in the same
 * server process: login + presence storms, then --guests account sessions held and as many
 * guests on top of them, RSS growth per session of each.
 */
async function anon(t: Running, o: Options, gens: Worker[]): Promise<ScenarioResult> {
	if (!t.guest) throw new Error("no anonymous host");
	const guestEp: Endpoint = { ...t.endpoint, domain: t.guest };
	const trace = (p: string, n: number) => Array.from({ length: n }, (_, i) => `${p}${i}`);
	const g = await presenceStorm(
		t,
		guestEp,
		"ANONYMOUS",
		trace("bench-", o.logins),
		trace("warm-", LOGIN_WARMUP),
		gens,
	);
	const a = await presenceStorm(
		t,
		t.endpoint,
		"SCRAM-SHA-1",
		users(0, o.logins),
		users(o.logins, LOGIN_WARMUP),
		gens,
	);
	await sleep(1000);
	const ha = await hold(t, t.endpoint, "SCRAM-SHA-1", users(0, o.guests), gens, 0);
	const hg = await hold(t, guestEp, "ANONYMOUS", trace("idle-", o.guests), gens, o.guests);
	await Promise.all(gens.map((w) => w.call({ cmd: "closeAll" })));
	const ws = [g.w, a.w, ha.w, hg.w];
	const cpuG = (1000 * g.w.serverCpu) / Math.max(1, g.r.ok);
	const cpuA = (1000 * a.w.serverCpu) / Math.max(1, a.r.ok);
	const notes = [
		...g.r.errors.slice(0, 2).map((e) => `guest login: ${e}`),
		...a.r.errors.slice(0, 2).map((e) => `SCRAM login: ${e}`),
		...ha.errors.slice(0, 2).map((e) => `account session: ${e}`),
		...hg.errors.slice(0, 2).map((e) => `guest session: ${e}`),
	];
	return {
		scenario: "anon",
		target: t.name,
		figures: {
			"guest: server CPU ms/login (+presence)": cpuG,
			"SCRAM-SHA-1 account: server CPU ms/login (+presence)": cpuA,
			"guest ÷ SCRAM CPU per login": cpuG / cpuA,
			"guest logins/s": g.r.ok / g.wall,
			"SCRAM logins/s": a.r.ok / a.wall,
			"guest login p50 ms": percentile(g.lat, 50),
			"guest login p99 ms": percentile(g.lat, 99),
			"SCRAM login p50 ms": percentile(a.lat, 50),
			"SCRAM login p99 ms": percentile(a.lat, 99),
			"guest: RSS KiB/session": (hg.rss1 - hg.rss0) / Math.max(1, hg.ok),
			"SCRAM account: RSS KiB/session": (ha.rss1 - ha.rss0) / Math.max(1, ha.ok),
			"guest ÷ account RSS per session":
				(hg.rss1 - hg.rss0) / hg.ok / ((ha.rss1 - ha.rss0) / ha.ok),
			"guest sessions": hg.ok,
			"account sessions": ha.ok,
			"RSS before MiB": ha.rss0 / 1024,
			"RSS after MiB": hg.rss1 / 1024,
			failed: g.r.failures + a.r.failures + ha.failed + hg.failed,
			"machine busy % (max of 4 windows)": Math.max(...ws.map((w) => w.machineBusyPct)),
			"others busy % (max of 4 windows)": Math.max(...ws.map((w) => w.othersBusyPct)),
		},
		note: notes.length ? notes.join("; ") : undefined,
	};
}

/**
 * Logs in the chat scenario's pairs on the first generator and returns it; `sm`: with XEP-0198
 * enabled on every session (chat-sm). `cross`: the senders b0..b(pairs-1) on the cluster's
 * first node, their receivers b(pairs).. on the second (xchat).
 */
async function chatSetup(
	t: Running,
	o: Options,
	gens: Worker[],
	sm = false,
	cross = false,
): Promise<Worker> {
	const g = gens[0] as Worker;
	const second = t.endpoints?.[1];
	await g.call({
		cmd: "chatSetup",
		endpoint: t.endpoint,
		relay: !t.xmpp,
		users: cross ? users(0, o.pairs) : users(0, 2 * o.pairs),
		password: PASSWORD,
		mech: "PLAIN",
		sm,
		...(cross && second ? { receivers: { endpoint: second, users: users(o.pairs, o.pairs) } } : {}),
	});
	return g;
}

/**
 * The chat scenario's traffic on pairs already set up on `g`: a warm-up of 10% (at least 10 per
 * pair), then `perPair` messages per pair, window `o.window`, 100-byte bodies, with `meters`
 * (one per server: the s2s scenario has two) around the measured part only. `sm`: the
 * sessions' stream management counts just before the measured part are returned too.
 */
async function chatTraffic(
	name: string,
	g: Worker,
	o: Options,
	perPair: number,
	meters: Meter[],
	sm = false,
): Promise<{ r: ChatResult; w: Window[]; smBefore?: SmCounts }> {
	const warm = await g.call<ChatResult>({
		cmd: "chatRun",
		tag: "w",
		window: o.window,
		perPair: Math.max(10, Math.ceil(perPair / 10)),
		bodyBytes: 100,
		capMs: 60_000,
	});
	if (warm.missing) log(`${name}: warm-up lost ${warm.missing} messages`);
	await sleep(500);
	const smBefore = sm ? await g.call<SmCounts>({ cmd: "smCounts", waitMs: 10_000 }) : undefined;
	for (const m of meters) m.start();
	const r = await g.call<ChatResult>({
		cmd: "chatRun",
		tag: "m",
		window: o.window,
		perPair,
		bodyBytes: 100,
		capMs: 120_000,
	});
	return { r, w: meters.map((m) => m.stop()), smBefore };
}

/**
 * The chat scenario, or with `sm` the chat-sm scenario (XEP-0198 on every session; `plain`:
 * the same target's chat result of this run, for the ratio); `cross`: xchat.
 */
async function chat(
	t: Running,
	o: Options,
	gens: Worker[],
	sm = false,
	plain?: ScenarioResult,
	cross = false,
): Promise<ScenarioResult> {
	const g = await chatSetup(t, o, gens, sm, cross);
	const perPair = Math.ceil(o.messages / o.pairs);
	const meter = new Meter(t.pid, () => gens.map((w) => w.child.pid as number));
	const {
		r,
		w: [w],
		smBefore,
	} = await chatTraffic(t.name, g, o, perPair, [meter], sm);
	if (!w) throw new Error("no measurement");
	// After the meter: the answers to the clients' last <r/> (10 s at most).
	const smAfter = sm ? await g.call<SmCounts>({ cmd: "smCounts", waitMs: 10_000 }) : undefined;
	await g.call({ cmd: "closeAll" });
	const cpu = (10_000 * w.serverCpu) / Math.max(1, r.delivered);
	const notes = r.capped ? [`time cap reached after ${r.elapsedMs.toFixed(0)} ms`] : [];
	if (smAfter?.wrongSamples.length) notes.push(`wrong <a/>: ${smAfter.wrongSamples.join("; ")}`);
	return {
		scenario: sm ? "chat-sm" : "chat",
		target: cross ? `${t.name} cross-node` : t.name,
		figures: {
			"server CPU s/10k msgs": cpu,
			...(sm
				? {
						"server CPU ÷ plain chat's (same run)":
							typeof plain?.figures["server CPU s/10k msgs"] === "number"
								? cpu / plain.figures["server CPU s/10k msgs"]
								: "–",
					}
				: {}),
			"delivered/s": r.delivered / (r.elapsedMs / 1000),
			"p50 ms": r.p50Ms,
			"p99 ms": r.p99Ms,
			delivered: r.delivered,
			"exactly once": r.duplicates === 0 && r.missing === 0,
			duplicates: r.duplicates,
			missing: r.missing,
			"generator CPU s/10k msgs": (10_000 * w.generatorCpu) / Math.max(1, r.delivered),
			"machine busy %": w.machineBusyPct,
			"others busy %": w.othersBusyPct,
			...(smBefore && smAfter ? smFigures(smBefore, smAfter, r.delivered) : {}),
		},
		note: noteWithSplit(notes, w),
	};
}

/**
 * chat-sm's stream management checks, from the counts before and after the measured part
 * (`before`, `after`); wrong and unanswered acknowledgements over the whole scenario.
 */
function smFigures(before: SmCounts, after: SmCounts, delivered: number): Row {
	const per10k = (n: number) => (10_000 * n) / Math.max(1, delivered);
	return {
		"SM sessions": after.sessions,
		"client <r/> answered right (measured)": `${after.acksRight - before.acksRight}/${after.requests - before.requests}`,
		"wrong <a h/>": after.acksWrong,
		"unanswered client <r/>": after.unanswered,
		"server <r/> per 10k msgs": per10k(after.serverRequests - before.serverRequests),
		"stanzas counted by the clients, sent/received (whole scenario)": `${after.sent}/${after.received}`,
	};
}

/** Accounts r0..r(N-1), each with all the others as mutual contacts, log in one after another. */
async function roster(t: Running, o: Options, gens: Worker[]): Promise<ScenarioResult> {
	const g = gens[0] as Worker;
	const list = Array.from({ length: o.roster }, (_, i) => `r${i}`);
	if (!t.provisionRoster) throw new Error("no roster provisioning for this target");
	await t.provisionRoster(list, PASSWORD, async (us) => {
		const r = await g.call<{ created: number; exists: number; errors: string[] }>({
			cmd: "register",
			endpoint: t.endpoint,
			users: us,
			password: PASSWORD,
			concurrency: 16,
		});
		if (r.created + r.exists < us.length) throw new Error(`registration: ${r.errors.join("; ")}`);
	});
	await sleep(1000);
	const meter = new Meter(t.pid, () => gens.map((w) => w.child.pid as number));
	meter.start();
	const r = await g.call<RosterResult>({
		cmd: "rosterRun",
		endpoint: t.endpoint,
		users: list,
		password: PASSWORD,
		mech: "SCRAM-SHA-1",
		waitMs: 10_000,
	});
	const w = meter.stop();
	await g.call({ cmd: "closeAll" });
	const lat = r.latenciesMs.sort((a, b) => a - b);
	return {
		scenario: "roster",
		target: t.name,
		figures: {
			"server CPU ms/login (roster get + presence)": (1000 * w.serverCpu) / Math.max(1, r.ok),
			"server CPU µs per delivered presence": (1e6 * w.serverCpu) / Math.max(1, r.delivered),
			"p50 ms": percentile(lat, 50),
			"p99 ms": percentile(lat, 99),
			logins: r.ok,
			failed: r.failures,
			"contact presences delivered": r.delivered,
			"broadcasts reaching online contacts": `${r.broadcastReached}/${r.expectedEach}`,
			"probe answers from online contacts": `${r.probeAnswers}/${r.expectedEach}`,
			duplicates: r.duplicates,
			"incomplete logins": r.incomplete,
			"generator CPU ms/login": (1000 * w.generatorCpu) / Math.max(1, r.ok),
			"machine busy %": w.machineBusyPct,
			"others busy %": w.othersBusyPct,
		},
		note: r.errors.length ? r.errors.join("; ") : undefined,
	};
}

/**
 * Saturation: the chat scenario's pairs with the window doubled from --window until delivered/s
 * grows by less than 5%; the best step is the target's saturation rate. Parley (run last) is
 * then also run open-loop at the best peer's saturation rate (`peerRate`), its p99 to compare.
 */
async function saturation(
	t: Running,
	o: Options,
	gens: Worker[],
	peerRate: number | undefined,
): Promise<ScenarioResult[]> {
	const g = await chatSetup(t, o, gens);
	const perPair = Math.ceil(o.messages / o.pairs);
	await g.call<ChatResult>({
		cmd: "chatRun",
		tag: "sw",
		window: o.window,
		perPair: Math.max(10, Math.ceil(perPair / 10)),
		bodyBytes: 100,
		capMs: 60_000,
	});
	const out: ScenarioResult[] = [];
	const step = async (tag: string, window: number, rate?: number, n = perPair) => {
		await sleep(500);
		const meter = new Meter(t.pid, () => gens.map((w) => w.child.pid as number));
		meter.start();
		const r = await g.call<ChatResult>({
			cmd: "chatRun",
			tag,
			window,
			perPair: n,
			bodyBytes: 100,
			capMs: 120_000,
			rate,
		});
		const w = meter.stop();
		return { r, w, rate: r.delivered / (r.elapsedMs / 1000) };
	};
	const tags = "abcdefghij";
	let best: Awaited<ReturnType<typeof step>> | undefined;
	let bestWindow = o.window;
	const ramp: string[] = [];
	// A window past a quarter of the messages per pair is one burst, not a rate: stop there.
	for (let i = 0, win = o.window; i < tags.length && win <= perPair / 4; i++, win *= 2) {
		const s = await step(`s${tags[i]}`, win);
		ramp.push(`${win}: ${s.rate.toFixed(0)}/s p99 ${s.r.p99Ms.toFixed(1)}`);
		log(`${t.name}: saturation window ${win}: ${s.rate.toFixed(0)} delivered/s`);
		// Windows 10..80 always (one step's figure is noisy on 2 shared cores), then on while
		// delivered/s still grows by 5% or more, up to perPair / 4.
		if (best && win >= 8 * o.window && s.rate < best.rate * 1.05) break;
		if (!best || s.rate > best.rate) {
			best = s;
			bestWindow = win;
		}
	}
	if (!best) throw new Error("saturation needs --messages of at least 4 × window × pairs");
	const b = best;
	out.push({
		scenario: "saturation",
		target: t.name,
		figures: {
			"saturation delivered/s": b.rate,
			"at window": bestWindow,
			"p50 ms": b.r.p50Ms,
			"p99 ms": b.r.p99Ms,
			"server CPU s/10k msgs": (10_000 * b.w.serverCpu) / Math.max(1, b.r.delivered),
			"exactly once": b.r.duplicates === 0 && b.r.missing === 0,
			"machine busy %": b.w.machineBusyPct,
			"others busy %": b.w.othersBusyPct,
		},
		note: `windows → delivered/s, p99 ms: ${ramp.join("; ")}`,
	});
	if (peerRate && isParley(t.name)) {
		// Open loop at the peer's rate, for 5 s worth of messages (at least --messages).
		const n = Math.ceil(Math.max(o.messages, 5 * peerRate) / o.pairs);
		const s = await step("so", 1000, peerRate, n);
		out.push({
			scenario: "saturation-paced",
			target: t.name,
			figures: {
				"offered msgs/s (best peer's saturation)": peerRate,
				"delivered/s": s.rate,
				"p50 ms": s.r.p50Ms,
				"p99 ms": s.r.p99Ms,
				"server CPU s/10k msgs": (10_000 * s.w.serverCpu) / Math.max(1, s.r.delivered),
				"exactly once": s.r.duplicates === 0 && s.r.missing === 0,
				"machine busy %": s.w.machineBusyPct,
				"others busy %": s.w.othersBusyPct,
			},
		});
	}
	await g.call({ cmd: "closeAll" });
	return out;
}

/** The muc scenario's row name: `muc-<size>`, `muc-<size>-archive` with --muc-archive. */
const mucScenario = (size: number, o: Options) => `muc-${size}${o.mucArchive ? "-archive" : ""}`;

/**
 * MUC fan-out (XEP-0045): per size, a fresh room `bench<size>-<run>@conference.localhost`; the
 * occupants b0..b(size-1) log in (SCRAM-SHA-1, bind, initial presence; not measured) and join
 * (measured: join cost per occupant); a warm-up of 10% of the messages; then the first
 * --muc-senders occupants send groupchat messages, --muc-window in flight each, a message
 * leaving the window when all occupants (the sender's reflection included) received it.
 */
async function muc(t: Running, o: Options, gens: Worker[], run: string): Promise<ScenarioResult[]> {
	const out: ScenarioResult[] = [];
	const g = gens[0] as Worker;
	for (const size of o.occupants) {
		const scenario = mucScenario(size, o);
		if (!t.muc) {
			out.push({
				scenario,
				target: t.name,
				figures: { "server CPU s/10k deliveries": "no MUC yet" },
			});
			continue;
		}
		const room = `bench${size}-${run}@${t.muc}`;
		const login = await g.call<LoginResult>({
			cmd: "mucLogin",
			endpoint: t.endpoint,
			users: users(0, size),
			password: PASSWORD,
			mech: "SCRAM-SHA-1",
			concurrency: 20,
		});
		if (login.failures)
			log(`${t.name}: ${login.failures} occupant logins failed: ${login.errors.join("; ")}`);
		await sleep(500);
		const jm = new Meter(t.pid, () => gens.map((w) => w.child.pid as number));
		jm.start();
		const j = await g.call<MucJoinResult>({
			cmd: "mucJoin",
			room,
			concurrency: 10,
			timeoutMs: 30_000,
			subjectWaitMs: 3000,
		});
		const jw = jm.stop(); // includes mucJoin's 500 ms drain of the last broadcasts
		log(
			`${t.name}: ${room}: ${j.joined} joined, ${j.failures} failed, created ${j.created}, form ${j.configured}, no subject ${j.noSubject}`,
		);
		if (!j.joined) {
			await g.call({ cmd: "closeAll" });
			out.push({
				scenario,
				target: t.name,
				figures: { "server CPU s/10k deliveries": "no occupant joined" },
				note: j.errors.join("; "),
			});
			continue;
		}
		const perSender = Math.max(1, Math.ceil(o.mucDeliveries / j.joined / o.mucSenders));
		const base = {
			cmd: "mucRun",
			senders: o.mucSenders,
			window: o.mucWindow,
			bodyBytes: 100,
		} as const;
		const warm = await g.call<MucResult>({
			...base,
			tag: "w",
			perSender: Math.max(2, Math.ceil(perSender / 10)),
			capMs: 60_000,
		});
		if (warm.missing) log(`${t.name}: ${scenario} warm-up lost ${warm.missing} deliveries`);
		await sleep(500);
		const meter = new Meter(t.pid, () => gens.map((w) => w.child.pid as number));
		meter.start();
		const r = await g.call<MucResult>({ ...base, tag: "m", perSender, capMs: 180_000 });
		const w = meter.stop();
		await g.call({ cmd: "closeAll" });
		const jl = j.latenciesMs.sort((a, b) => a - b);
		const notes = [
			r.capped ? `time cap reached after ${r.elapsedMs.toFixed(0)} ms` : "",
			j.failures ? `joins failed: ${j.errors.join("; ")}` : "",
			login.failures ? `logins failed: ${login.errors.join("; ")}` : "",
			j.noSubject ? `${j.noSubject} joins without a subject message within 3 s` : "",
			`room ${room}: ${j.created ? "created (201)" : "not created by the first join"}, instant-room form ${j.configured}`,
		].filter(Boolean);
		out.push({
			scenario,
			target: t.name,
			figures: {
				"server CPU s/10k deliveries": (10_000 * w.serverCpu) / Math.max(1, r.delivered),
				"deliveries/s": r.delivered / (r.elapsedMs / 1000),
				"p50 ms": r.p50Ms,
				"p99 ms": r.p99Ms,
				occupants: r.occupants,
				"messages (senders × each)": `${r.messages} (${r.senders} × ${perSender})`,
				deliveries: r.delivered,
				"exactly once": r.duplicates === 0 && r.missing === 0,
				duplicates: r.duplicates,
				missing: r.missing,
				"occupants missing a message": r.occupantsMissing,
				"server CPU ms/join": (1000 * jw.serverCpu) / Math.max(1, j.joined),
				"join p50 ms": percentile(jl, 50),
				"join p99 ms": percentile(jl, 99),
				"joins failed": j.failures,
				"generator CPU s/10k deliveries": (10_000 * w.generatorCpu) / Math.max(1, r.delivered),
				"machine busy %": w.machineBusyPct,
				"others busy %": w.othersBusyPct,
				"others busy % (joins)": jw.othersBusyPct,
			},
			note: notes.join("; "),
		});
	}
	return out;
}

/** The XMPP stanza error condition in an error answer, or its first 200 characters. */
function errorCondition(stanza: string): string {
	const m = /<([a-z-]+)\s+xmlns=['"]urn:ietf:params:xml:ns:xmpp-stanzas['"]/.exec(stanza);
	return m ? (m[1] as string) : stanza.slice(0, 200);
}

/**
 * PEP notification fan-out (XEP-0163): pep0 publishes, its --pep-contacts mutual contacts
 * pep1.. get the notifications (see the header). A row with the reason instead of figures when
 * the target has no PEP (the publish is refused) or does not notify every contact in 30 s.
 */
async function pep(t: Running, o: Options, gens: Worker[], run: string): Promise<ScenarioResult> {
	const g = gens[0] as Worker;
	const publisher = "pep0";
	const contacts = Array.from({ length: o.pepContacts }, (_, i) => `pep${i + 1}`);
	const list = [publisher, ...contacts];
	const row = (why: string, note?: string): ScenarioResult => ({
		scenario: "pep",
		target: t.name,
		figures: { "server CPU s/10k notifications": why },
		note,
	});
	if (!t.provisionRoster) throw new Error("no roster provisioning for this target");
	await t.provisionRoster(
		list,
		PASSWORD,
		async (us) => {
			const r = await g.call<{ created: number; exists: number; errors: string[] }>({
				cmd: "register",
				endpoint: t.endpoint,
				users: us,
				password: PASSWORD,
				concurrency: 16,
			});
			if (r.created + r.exists < us.length) throw new Error(`registration: ${r.errors.join("; ")}`);
		},
		publisher,
	);
	await sleep(1000);
	const setup = await g.call<PepSetupResult>({
		cmd: "pepSetup",
		endpoint: t.endpoint,
		publisher,
		contacts,
		password: PASSWORD,
		mech: "PLAIN",
		concurrency: 20,
	});
	log(
		`${t.name}: pep: ${setup.contacts} contacts online with caps, ${setup.failures} failed, ${setup.discoAnswered} disco#info queries answered`,
	);
	if (setup.failures) log(`${t.name}: pep: contact logins failed: ${setup.errors.join("; ")}`);
	try {
		// Until the servers know the caps: one publish at a time until one reaches every contact.
		const t0 = performance.now();
		let attempts = 0;
		let caps: PepResult;
		for (;;) {
			caps = await g.call<PepResult>({
				cmd: "pepRun",
				tag: `${run}c${attempts++}`,
				items: 1,
				window: 1,
				capMs: 5000,
				stallMs: 2000,
			});
			if (caps.publishErrors) {
				const why = `no PEP: the publish was refused (${errorCondition(caps.errors[0] ?? "")})`;
				log(`${t.name}: pep: ${why}: ${caps.errors[0]}`);
				return row(why, caps.errors[0]);
			}
			if (!caps.missing) break;
			if (performance.now() - t0 > 30_000) {
				const why = `${t.name}: after ${attempts} warm-up publishes in ${((performance.now() - t0) / 1000).toFixed(0)} s, only ${caps.delivered} of ${caps.contacts} contacts got the last one's notification (${caps.results ? "publish answered" : "publish not answered"}; ${caps.discoAnswered} disco#info queries answered by the contacts)`;
				log(`pep: ${why}`);
				return row("not every contact notified", why);
			}
		}
		const capsMs = performance.now() - t0;
		log(
			`${t.name}: pep: every contact notified after ${attempts} warm-up publish(es), ${capsMs.toFixed(0)} ms`,
		);
		const base = { cmd: "pepRun", window: o.pepWindow, capMs: 180_000, stallMs: 10_000 } as const;
		const warm = await g.call<PepResult>({
			...base,
			tag: `${run}w`,
			items: Math.max(10, Math.ceil(o.pepItems / 10)),
		});
		if (warm.missing || warm.publishErrors)
			log(
				`${t.name}: pep warm-up: ${warm.missing} notifications missing, ${warm.publishErrors} publishes failed`,
			);
		await g.call({ cmd: "pepSettle", waitMs: 500 });
		const meter = new Meter(t.pid, () => gens.map((w) => w.child.pid as number));
		meter.start();
		const m = await g.call<PepResult>({ ...base, tag: `${run}m`, items: o.pepItems });
		const w = meter.stop();
		// Late notifications (duplicates) after the measurement, not in it.
		const r = (await g.call<PepResult | null>({ cmd: "pepSettle", waitMs: 1000 })) ?? m;
		const per10k = (cpu: number) => (10_000 * cpu) / Math.max(1, m.delivered);
		const notes = [
			m.capped ? `time cap reached after ${m.elapsedMs.toFixed(0)} ms` : "",
			m.stalled ? `no progress for 10 s: stopped after ${m.elapsedMs.toFixed(0)} ms` : "",
			r.publishErrors ? `publishes failed: ${r.errors.map(errorCondition).join(", ")}` : "",
			r.delivered > m.delivered
				? `${r.delivered - m.delivered} notifications came after the measurement`
				: "",
			`caps learned (every contact notified) after ${attempts} warm-up publish(es), ${capsMs.toFixed(0)} ms; ${r.discoAnswered} disco#info queries answered by the sessions`,
			r.otherEvents ? `${r.otherEvents} other pubsub events during the run` : "",
			r.duplicateSample ? `first duplicate: ${r.duplicateSample}` : "",
			w.processes.length > 1 ? `server processes: ${describeSplit(w.processes)}` : "",
		].filter(Boolean);
		return {
			scenario: "pep",
			target: t.name,
			figures: {
				"server CPU s/10k notifications": per10k(w.serverCpu),
				"notifications/s": m.delivered / (m.elapsedMs / 1000),
				"p50 ms": m.p50Ms,
				"p99 ms": m.p99Ms,
				"server CPU ms/publish": (1000 * w.serverCpu) / Math.max(1, m.results),
				contacts: m.contacts,
				"items published": m.published,
				"notifications delivered": m.delivered,
				"exactly once": r.duplicates === 0 && r.missing === 0,
				duplicates: r.duplicates,
				missing: r.missing,
				"contacts missing an item": r.contactsMissing,
				"publishes failed": r.publishErrors,
				"generator CPU s/10k notifications": per10k(w.generatorCpu),
				"machine busy %": w.machineBusyPct,
				"others busy %": w.othersBusyPct,
			},
			note: notes.join("; "),
		};
	} finally {
		await g.call({ cmd: "closeAll" });
	}
}

/** The servers the s2s scenario can federate (static routes on loopback, no DNS). */
const S2S_SERVERS = ["parley", "prosody"] as const;
type S2SServer = (typeof S2S_SERVERS)[number];
/** The sender's domain and the receiver's. */
const S2S_A = "a.bench";
const S2S_B = "b.bench";

/**
 * One s2s pairing: server `from` serves a.bench (the senders), server `to` serves b.bench (the
 * receivers), each with a listener on its own loopback port and a route to the other's (the
 * receiver connects back to the sender's domain to verify the dialback key). --pairs accounts
 * b0.. on each; sender b<p>@a.bench sends to b<p>@b.bench/chat. One message per pair first
 * (window 1) opens the s2s streams (TCP, STARTTLS, dialback both ways: `s2s set-up ms`), then
 * the chat scenario's warm-up and measured run (chatTraffic) with a meter on each server.
 */
async function s2sPairing(
	from: S2SServer,
	to: S2SServer,
	o: Options,
	stamp: string,
): Promise<{
	result: ScenarioResult;
	profiles: { label: string; file: string }[];
	servers: Running[];
}> {
	const pairing = `${from}→${to}`;
	const [portA, portB] = [await freePort(), await freePort()];
	const loop = (port: number) => ({ host: "127.0.0.1", port });
	const sides: { server: S2SServer; domain: string; port: number; routes: S2SOptions["routes"] }[] =
		[
			{ server: from, domain: S2S_A, port: portA, routes: { [S2S_B]: loop(portB) } },
			{ server: to, domain: S2S_B, port: portB, routes: { [S2S_A]: loop(portA) } },
		];
	const profileDirs: (string | undefined)[] = [];
	const running: Running[] = [];
	const gens = workersFor(2 * o.pairs);
	const stopAll = async () => {
		for (const g of gens) g.stop();
		for (const t of running) await t.stop();
	};
	try {
		for (const [k, side] of sides.entries()) {
			const stateDir = join(OUT, "state", `s2s-${side.server}-${side.domain}`);
			mkdirSync(stateDir, { recursive: true });
			const profileDir =
				o.profile && side.server === "parley"
					? join(OUT, "profiles", `${stamp}-s2s-${from}-${to}-${side.domain}`)
					: undefined;
			if (profileDir) mkdirSync(profileDir, { recursive: true });
			profileDirs[k] = profileDir;
			const so: StartOptions = {
				root: ROOT,
				stateDir,
				profileDir,
				log,
				domain: side.domain,
				s2s: { port: side.port, routes: side.routes },
			};
			log(`${pairing}: starting ${side.server} for ${side.domain}`);
			const t = await (side.server === "parley" ? startParley : startProsody)(so, processTree);
			running.push(t);
			await t.provision(o.pairs, PASSWORD, async (n) => {
				const r = await (gens[0] as Worker).call<{
					created: number;
					exists: number;
					errors: string[];
				}>({
					cmd: "register",
					endpoint: t.endpoint,
					users: users(0, n),
					password: PASSWORD,
					concurrency: 16,
				});
				if (r.created + r.exists < n)
					throw new Error(`registration on ${side.domain}: ${r.errors.join("; ")}`);
			});
		}
		const [a, b] = running as [Running, Running];
		const g = gens[0] as Worker;
		await g.call({
			cmd: "chatSetup",
			endpoint: a.endpoint,
			relay: false,
			users: users(0, o.pairs),
			password: PASSWORD,
			mech: "PLAIN",
			receivers: { endpoint: b.endpoint, users: users(0, o.pairs) },
		});
		const first = await g.call<ChatResult>({
			cmd: "chatRun",
			tag: "f",
			window: 1,
			perPair: 1,
			bodyBytes: 100,
			capMs: 60_000,
		});
		log(
			`${pairing}: s2s streams up, first ${first.delivered}/${first.messages} messages in ${first.elapsedMs.toFixed(0)} ms`,
		);
		if (first.missing) throw new Error(`${first.missing} of the first messages did not arrive`);
		const perPair = Math.ceil(o.s2sMessages / o.pairs);
		const genPids = () => gens.map((w) => w.child.pid as number);
		const { r, w } = await chatTraffic(pairing, g, o, perPair, [
			new Meter(a.pid, genPids),
			new Meter(b.pid, genPids),
		]);
		const [wa, wb] = w as [Window, Window];
		await g.call({ cmd: "closeAll" });
		const per10k = (cpu: number) => (10_000 * cpu) / Math.max(1, r.delivered);
		// The machine's busy time not explained by either server or the generator.
		const others = Math.max(
			0,
			wa.othersBusyPct - (100 * wb.serverCpu) / Math.max(1e-9, wa.machineSeconds),
		);
		const notes = [
			r.capped ? `time cap reached after ${r.elapsedMs.toFixed(0)} ms` : "",
			wa.processes.length > 1 ? `sender's processes: ${describeSplit(wa.processes)}` : "",
			wb.processes.length > 1 ? `receiver's processes: ${describeSplit(wb.processes)}` : "",
		].filter(Boolean);
		const result: ScenarioResult = {
			scenario: "s2s",
			target: pairing,
			figures: {
				"server CPU s/10k msgs (both servers)": per10k(wa.serverCpu + wb.serverCpu),
				"sender's server CPU s/10k msgs": per10k(wa.serverCpu),
				"receiver's server CPU s/10k msgs": per10k(wb.serverCpu),
				"delivered/s": r.delivered / (r.elapsedMs / 1000),
				"p50 ms": r.p50Ms,
				"p99 ms": r.p99Ms,
				delivered: r.delivered,
				"exactly once": r.duplicates === 0 && r.missing === 0,
				duplicates: r.duplicates,
				missing: r.missing,
				"s2s set-up ms (first message per pair)": first.elapsedMs,
				"generator CPU s/10k msgs": per10k(wa.generatorCpu),
				"machine busy %": wa.machineBusyPct,
				"others busy %": others,
			},
			note: notes.length ? notes.join("; ") : undefined,
		};
		await stopAll();
		const profiles: { label: string; file: string }[] = [];
		for (const [k, dir] of profileDirs.entries()) {
			if (!dir) continue;
			const files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"));
			files.sort((x, y) => statSync(join(dir, y)).mtimeMs - statSync(join(dir, x)).mtimeMs);
			const side = sides[k] as { domain: string };
			const role = k === 0 ? "sender" : "receiver";
			if (files[0])
				profiles.push({ label: `${pairing}, ${role} (${side.domain})`, file: join(dir, files[0]) });
		}
		return { result, profiles, servers: running };
	} catch (e) {
		await stopAll();
		throw e;
	}
}

/** The s2s scenario: every pairing of the --target servers that can federate here. */
async function s2s(
	o: Options,
	stamp: string,
): Promise<{
	results: ScenarioResult[];
	profiles: { label: string; file: string }[];
	/** what each side ran, by "s2s <server> <domain>" */
	versions: Record<string, { version: string; notes: string[] }>;
}> {
	const versions: Record<string, { version: string; notes: string[] }> = {};
	const servers = S2S_SERVERS.filter((x) => o.targets.includes(x));
	const skipped = o.targets.filter((x) => !(S2S_SERVERS as readonly string[]).includes(x));
	if (skipped.length) log(`s2s: not set up for ${skipped.join(", ")}`);
	const results: ScenarioResult[] = [];
	const profiles: { label: string; file: string }[] = [];
	for (const from of servers) {
		for (const to of servers) {
			try {
				const p = await s2sPairing(from, to, o, stamp);
				results.push(p.result);
				profiles.push(...p.profiles);
				for (const t of p.servers)
					versions[`s2s ${t.name} ${t.endpoint.domain}`] = { version: t.version, notes: t.notes };
			} catch (e) {
				log(`s2s ${from}→${to}: failed: ${(e as Error).stack}`);
			}
		}
	}
	return { results, profiles, versions };
}

/** bench/storage.ts in a child process (memory, SQLite, PostgreSQL), its rows as figures. */
async function storage(o: Options): Promise<ScenarioResult[]> {
	const child = fork(join(ROOT, "bench/storage.ts"), ["--ipc", "--n", String(o.storageN)], {
		stdio: ["ignore", "inherit", "inherit", "ipc"],
	});
	const meter = new Meter(child.pid as number, () => []);
	meter.start();
	// The child sends its rows and waits, so that its CPU time can be read before it exits.
	const rows = await new Promise<Record<string, Row>>((res, rej) => {
		child.once("exit", (c) => rej(new Error(`storage bench exited ${c}`)));
		child.once("message", (m) => res(m as Record<string, Row>));
	});
	const w = meter.stop();
	child.send("exit");
	return Object.entries(rows).map(([backend, figures]) => ({
		scenario: "storage",
		target: backend as TargetName,
		figures: {
			...figures,
			"bench CPU s (all backends)": w.serverCpu,
			"machine busy %": w.machineBusyPct,
			"others busy % (incl. PostgreSQL)": w.othersBusyPct,
		},
	}));
}

const LOWER_IS_BETTER =
	/CPU|ms|µs|RSS KiB|failed|failures|missing|duplicates|incomplete|bytes|segments|dropped/;
const NO_RATIO =
	/÷|<r\/>|<a h\/>|busy|delivered$|deliveries$|occupants$|sessions$|RSS before|RSS after|generator|window|offered|logins$|bench CPU|^contacts$|published$|^sessions held|pings|whitespace|minutes|other reads|RSS at the end|RSS growth|% of a core|per ping exchange/;

function table(results: ScenarioResult[], scenario: string): string {
	const order = [
		"baseline",
		"parley",
		"mam",
		"workers",
		"baseline-cluster",
		"baseline-cluster cross-node",
		"cluster",
		"cluster cross-node",
		"prosody",
		"prosody-mam",
		"ejabberd",
		"ejabberd-mam",
		"relay",
		...S2S_SERVERS.flatMap((x) => S2S_SERVERS.map((y) => `${x}→${y}`)),
	];
	const rows = results
		.filter((r) => r.scenario === scenario)
		.sort((a, b) => order.indexOf(a.target) - order.indexOf(b.target));
	if (!rows.length) return "";
	const keys = [...new Set(rows.flatMap((r) => Object.keys(r.figures)))];
	const head = `| ${scenario} | ${rows.map((r) => r.target).join(" | ")} |`;
	const sep = `|---|${rows.map(() => "---:").join("|")}|`;
	const lines = [head, sep];
	for (const k of keys) {
		const vals = rows.map((r) => r.figures[k]);
		const nums = rows
			.filter((r) => r.target !== "relay")
			.map((r) => r.figures[k])
			.filter((v): v is number => typeof v === "number" && Number.isFinite(v) && v > 0);
		const lower = LOWER_IS_BETTER.test(k) && !/\/s$/.test(k);
		const best = nums.length ? (lower ? Math.min(...nums) : Math.max(...nums)) : undefined;
		const cells = vals.map((v) => {
			if (v === undefined) return "";
			if (typeof v !== "number") return String(v);
			const s = Number.isInteger(v)
				? String(v)
				: Math.abs(v) >= 100
					? v.toFixed(0)
					: Math.abs(v) >= 10
						? v.toFixed(1)
						: v.toFixed(v === Math.round(v) ? 0 : 3);
			if (best === undefined || NO_RATIO.test(k) || !Number.isFinite(v) || v <= 0) return s;
			return `${s} (${(v / best).toFixed(2)}×)`;
		});
		lines.push(`| ${k} | ${cells.join(" | ")} |`);
	}
	const notes = rows.filter((r) => r.note).map((r) => `- ${r.target}: ${r.note}`);
	return [...lines, ...notes].join("\n");
}

async function main() {
	const o = parseArgs(process.argv.slice(2));
	const stamp = new Date().toISOString().replace(/[:.]/g, "-");
	mkdirSync(OUT, { recursive: true });
	// How busy is the machine before we start? (other users' load)
	const m0 = machine();
	await sleep(2000);
	const m1 = machine();
	const idleBusy = (100 * (m1.busy - m0.busy)) / (m1.total - m0.total);
	log(
		`machine: ${cores()} cores, busy ${idleBusy.toFixed(0)}% before the run (load ${(await import("node:fs")).readFileSync("/proc/loadavg", "utf8").trim()})`,
	);
	const results: ScenarioResult[] = [];
	const versions: Record<string, string> = {};
	const notes: Record<string, string[]> = {};
	const accounts = Math.max(
		o.sessions,
		o.logins + LOGIN_WARMUP,
		2 * o.pairs,
		...(o.scenarios.includes("anon") ? [o.guests] : []),
		...(o.scenarios.includes("muc") ? o.occupants : []),
	);
	const run = Date.now().toString(36);
	let profileFile: string | undefined;
	for (const name of o.targets) {
		const wanted = o.scenarios.filter((s) => s !== "storage" && s !== "s2s" && s !== "soak");
		if (!wanted.length) continue;
		if (name === "relay" && !wanted.includes("chat") && !wanted.includes("saturation")) continue;
		const stateDir = join(OUT, "state", name);
		mkdirSync(stateDir, { recursive: true });
		const profileDir =
			o.profile && (name === "parley" || name === "workers" || name === "mam")
				? join(OUT, "profiles", `${stamp}-${name}`)
				: undefined;
		if (profileDir) mkdirSync(profileDir, { recursive: true });
		const so: StartOptions = {
			root: ROOT,
			stateDir,
			profileDir,
			log,
			baselineRoot: o.baseline,
			workers: name === "workers" ? (o.workers ?? 2) : undefined,
			clusterRegistry:
				name === "cluster"
					? o.clusterRegistry
					: name === "baseline-cluster"
						? o.baselineClusterRegistry
						: undefined,
			mam: name === "baseline" && o.baselineMam,
			muc: wanted.includes("muc"),
			mucArchive: o.mucArchive,
			pep: wanted.includes("pep"),
			sm: wanted.includes("chat-sm"),
			guest: wanted.includes("anon") && (name === "parley" || name === "prosody"),
		};
		log(`${name}: starting`);
		const start = {
			parley: startParley,
			baseline: startBaseline,
			workers: startWorkers,
			cluster: startCluster,
			"baseline-cluster": startBaselineCluster,
			mam: startMam,
			prosody: startProsody,
			ejabberd: startEjabberd,
			"prosody-mam": startProsodyMam,
			"ejabberd-mam": startEjabberdMam,
			relay: startRelay,
		}[name];
		let t: Running;
		try {
			t = await start(so, processTree);
		} catch (e) {
			log(`${name}: could not start: ${(e as Error).message}`);
			continue;
		}
		versions[name] = t.version;
		notes[name] = t.notes;
		const gens = workersFor(
			Math.max(
				wanted.includes("idle") && t.xmpp ? o.sessions : 2 * o.pairs,
				wanted.includes("anon") ? 2 * o.guests : 0,
			),
		);
		try {
			// The roster and pep scenarios provision their own accounts (r*, pep*), not b0...
			if (t.xmpp && wanted.some((s) => s !== "roster" && s !== "pep"))
				await provisionAccounts(t, accounts, gens);
			for (const s of wanted) {
				if (name === "relay" && s !== "chat" && s !== "saturation") continue;
				log(`${name}: ${s}`);
				if (s === "login") {
					results.push(await loginStorm(t, "PLAIN", o, gens));
					// The same accounts again with PLAIN: what a reconnecting client costs.
					results.push(await loginStorm(t, "PLAIN", o, gens, true));
					results.push(await loginStorm(t, "SCRAM-SHA-1", o, gens));
				} else if (s === "chat") results.push(await chat(t, o, gens));
				else if (s === "xchat") {
					if (t.endpoints && t.endpoints.length > 1) {
						// Freshly started, as chat-sm: a second chat run in one process costs less.
						if (wanted.indexOf("xchat") > 0) {
							log(`${name}: restarting for xchat`);
							await t.stop();
							t = await start(so, processTree);
						}
						results.push(await chat(t, o, gens, false, undefined, true));
					} else log(`${name}: one node: xchat skipped (it needs --target cluster)`);
				} else if (s === "chat-sm") {
					// On a freshly started server, as plain chat was when it ran first: Parley's
					// chat cost 0.13–0.15 s/10k msgs run second in one process against 0.19–0.27
					// run first (JIT and heap warmed by the other run), SM on or off.
					if (wanted.indexOf("chat-sm") > 0) {
						log(`${name}: restarting for chat-sm`);
						await t.stop();
						t = await start(so, processTree);
					}
					const plain = results.find((r) => r.scenario === "chat" && r.target === name);
					results.push(await chat(t, o, gens, true, plain));
				} else if (s === "idle") results.push(await idle(t, o, gens));
				else if (s === "anon") {
					if (t.guest) results.push(await anon(t, o, gens));
					else log(`${name}: no anonymous host configured by the bench: anon skipped`);
				} else if (s === "roster") results.push(await roster(t, o, gens));
				else if (s === "pep") {
					// On a freshly started server, as muc (fan-out after other scenarios' sessions).
					if (wanted.indexOf("pep") > 0) {
						log(`${name}: restarting for pep`);
						await t.stop();
						t = await start(so, processTree);
					}
					results.push(await pep(t, o, gens, run));
				} else if (s === "muc") {
					// On a freshly started server: Prosody's fan-out costs 3–5× more after the idle
					// scenario's sessions came and went in the same process (docs/performance.md).
					if (wanted.indexOf("muc") > 0) {
						log(`${name}: restarting for muc`);
						await t.stop();
						t = await start(so, processTree);
					}
					results.push(...(await muc(t, o, gens, run)));
				} else if (s === "saturation") {
					const peers = results.filter(
						(r) =>
							r.scenario === "saturation" &&
							!isParley(r.target as TargetName) &&
							r.target !== "relay",
					);
					const peerRate =
						o.rate ??
						(peers.length
							? Math.max(...peers.map((r) => r.figures["saturation delivered/s"] as number))
							: undefined);
					results.push(...(await saturation(t, o, gens, peerRate)));
				}
			}
		} catch (e) {
			log(`${name}: failed: ${(e as Error).stack}`);
		} finally {
			for (const g of gens) g.stop();
			log(`${name}: stopping`);
			await t.stop();
		}
		if (profileDir) {
			const files = readdirSync(profileDir).filter((f) => f.endsWith(".cpuprofile"));
			files.sort(
				(a, b) => statSync(join(profileDir, b)).mtimeMs - statSync(join(profileDir, a)).mtimeMs,
			);
			if (files[0]) profileFile = join(profileDir, files[0]);
		}
	}
	const s2sProfiles: { label: string; file: string }[] = [];
	if (o.scenarios.includes("s2s")) {
		const r = await s2s(o, stamp);
		results.push(...r.results);
		s2sProfiles.push(...r.profiles);
		for (const [k, v] of Object.entries(r.versions)) {
			versions[k] = v.version;
			notes[k] = v.notes;
		}
	}
	if (o.scenarios.includes("soak")) {
		const r = await soak(o);
		results.push(...r.results);
		for (const [k, v] of Object.entries(r.versions)) {
			versions[k] = v.version;
			notes[k] = v.notes;
		}
	}
	if (o.scenarios.includes("storage") && !o.profile) {
		log("storage: bench/storage.ts");
		try {
			results.push(...(await storage(o)));
		} catch (e) {
			log(`storage: failed: ${(e as Error).message}`);
		}
	}
	const out: string[] = [];
	out.push(`# npm run bench -- ${process.argv.slice(2).join(" ")}`);
	out.push(
		`${new Date().toISOString()}; ${cores()} cores; machine busy ${idleBusy.toFixed(0)}% in the 2 s before the run`,
	);
	for (const [k, v] of Object.entries(versions))
		out.push(`- ${k}: ${v}; ${(notes[k] ?? []).join("; ")}`);
	for (const s of [
		"login-PLAIN",
		"login-PLAIN-again",
		"login-SCRAM-SHA-1",
		"chat",
		"chat-sm",
		"idle",
		"anon",
		"roster",
		"saturation",
		"saturation-paced",
		...o.occupants.map((n) => mucScenario(n, o)),
		"pep",
		"s2s",
		"soak",
		"storage",
	]) {
		const t = table(results, s);
		if (t) out.push("", t);
	}
	const profiles: ({ label?: string; file: string } & ReturnType<typeof topSelfTime>)[] = [];
	for (const { label, file } of [
		...(profileFile ? [{ label: undefined, file: profileFile }] : []),
		...s2sProfiles,
	]) {
		const profile = topSelfTime(file, ROOT, 15);
		profiles.push({ label, file, ...profile });
		out.push(
			"",
			`Profile ${label ? `(s2s ${label}) ` : ""}${file.replace(`${ROOT}/`, "")}: ${profile.activeMs.toFixed(0)} ms active of ${profile.totalMs.toFixed(0)} ms`,
			"",
			"| # | self ms | % of active | function | location |",
			"|---:|---:|---:|---|---|",
		);
		for (const [i, f] of profile.top.entries())
			out.push(
				`| ${i + 1} | ${f.selfMs.toFixed(0)} | ${f.pct.toFixed(1)} | ${f.name} | ${f.location} |`,
			);
	}
	const text = out.join("\n");
	console.log(text);
	const file = join(OUT, `${stamp}.json`);
	writeFileSync(
		file,
		JSON.stringify(
			{
				argv: process.argv.slice(2),
				options: o,
				date: new Date().toISOString(),
				machineBusyBeforePct: idleBusy,
				cores: cores(),
				versions,
				notes,
				results,
				profile: profiles.find((p) => !p.label),
				s2sProfiles: profiles.filter((p) => p.label),
			},
			null,
			2,
		),
	);
	writeFileSync(join(OUT, `${stamp}.md`), `${text}\n`);
	log(`results: ${file}`);
}

main().catch((e: unknown) => {
	console.error(e);
	process.exit(1);
});
