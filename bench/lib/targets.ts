// The servers under test, each started by the harness as a foreground child process with a
// private configuration on loopback ports, plus the raw Node.js relay ("limit").
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
	createWriteStream,
	existsSync,
	mkdirSync,
	readFileSync,
	rmSync,
	writeFileSync,
} from "node:fs";
import { connect, createServer } from "node:net";
import { join, resolve } from "node:path";
import { DEFAULT_HOST_MODULES } from "../../src/core/config/schema.ts";
import { ROUTES_PLUGIN } from "../../test/helpers/prosody.ts";
import { procName } from "./proc.ts";
import { type Endpoint, streamHeader } from "./xmpp.ts";

/** "baseline": Parley from another checkout (`--baseline DIR`), for before/after in one run. */
/** "workers": Parley from this checkout with `--workers N` (a local cluster over a private Redis). */
/**
 * "cluster": two Parley nodes from this checkout, separate `parley serve` processes with a c2s
 * port each (Running.endpoints), one SQLite file and one private Redis: the chat scenario runs
 * both ends of each pair on the first node (same-node), xchat puts the receivers on the second
 * (every message crosses nodes through Redis).
 */
/**
 * "prosody-mam" / "ejabberd-mam": the reference servers with their own message archives on for
 * every account, each archive on SQLite as Parley's default storage (Prosody mod_mam,
 * `default_archive_policy = true`, `storage = { archive = "sql" }` with LuaDBI's SQLite3 driver;
 * ejabberd mod_mam, `default: always`, `db_type: sql` with `sql_type: sqlite`), beside
 * "prosody" / "ejabberd" in the same invocation: what archiving costs them, as "mam" for Parley.
 */
/**
 * "mam": Parley from this checkout with the mam module added to its host's default module set
 * (XEP-0313: every chat message archived for its sender and its recipient), beside "parley"
 * (mam off) in the same invocation, so the chat scenario shows what archiving costs.
 */
export type TargetName =
	| "parley"
	| "baseline"
	| "workers"
	| "cluster"
	| "baseline-cluster"
	| "mam"
	| "prosody"
	| "ejabberd"
	| "prosody-mam"
	| "ejabberd-mam"
	| "relay";

export interface Running {
	name: TargetName;
	version: string;
	pid: number;
	endpoint: Endpoint;
	/** the "cluster" target: each node's c2s endpoint, the first is `endpoint` */
	endpoints?: Endpoint[];
	/** what this target can run */
	xmpp: boolean;
	/** the MUC service's domain (XEP-0045), when StartOptions.muc asked for it and it exists */
	muc?: string;
	/** the anonymous (SASL ANONYMOUS) host's domain, when StartOptions.guest asked for it */
	guest?: string;
	stop(): Promise<void>;
	/** provision accounts b0..b(n-1) (kept between runs in the state directory) */
	provision(n: number, password: string, viaIbr: (n: number) => Promise<void>): Promise<void>;
	/**
	 * Roster-heavy scenario: accounts `users`, each with every other one as a mutual ("both")
	 * contact, by the target's own bulk path; kept between runs (marker roster.json). With
	 * `hub` (one of `users`, the pep scenario's publisher), a star instead: the hub has all the
	 * others as mutual contacts and each of them has only the hub (marker roster-star-<hub>.json).
	 */
	provisionRoster?(
		users: string[],
		password: string,
		viaIbr: (users: string[]) => Promise<void>,
		hub?: string,
	): Promise<void>;
	notes: string[];
}

/** Whom `u` has as mutual contacts: all the others, or with a hub, the hub's star. */
export function contactsOf(u: string, users: string[], hub?: string): string[] {
	if (hub === undefined || u === hub) return users.filter((v) => v !== u);
	return [hub];
}

/**
 * XEP-0227 document: the users, each with all the others as mutual contacts (or, with `hub`,
 * the hub with all the others and each of them with the hub), plain passwords.
 */
export function pieRoster(users: string[], domain: string, password: string, hub?: string): string {
	const out = [`<?xml version='1.0' encoding='UTF-8'?>`, `<server-data xmlns='urn:xmpp:pie:0'>`];
	out.push(`<host jid='${domain}'>`);
	for (const u of users) {
		out.push(`<user name='${u}' password='${password}'><query xmlns='jabber:iq:roster'>`);
		for (const v of contactsOf(u, users, hub))
			out.push(`<item jid='${v}@${domain}' subscription='both'/>`);
		out.push("</query></user>");
	}
	out.push("</host></server-data>", "");
	return out.join("\n");
}

const rosterMarker = (hub?: string) => (hub ? `roster-star-${hub}.json` : "roster.json");
function rosterDone(stateDir: string, users: string[], hub?: string): boolean {
	try {
		return readFileSync(join(stateDir, rosterMarker(hub)), "utf8") === JSON.stringify(users);
	} catch {
		return false;
	}
}
function setRosterDone(stateDir: string, users: string[], hub?: string) {
	writeFileSync(join(stateDir, rosterMarker(hub)), JSON.stringify(users));
}

export interface StartOptions {
	root: string; // repository root
	stateDir: string; // .bench-results/state/<target>
	profileDir?: string; // parley only: --cpu-prof
	baselineRoot?: string; // the checkout the "baseline" target runs
	/** the "workers" target: processes (`parley serve --workers N`) */
	workers?: number;
	/** the "cluster" target: two `parley serve` nodes, each with its own c2s port */
	nodes?: boolean;
	/** the cluster's `cluster.registry` (--cluster-registry), its default when not given */
	clusterRegistry?: string;
	/**
	 * the "mam" target: the host's modules are the default set plus "mam"; the "prosody-mam" and
	 * "ejabberd-mam" targets: their archives on for every account
	 */
	mam?: boolean;
	/** enable a MUC service at conference.localhost (the muc scenario runs) */
	muc?: boolean;
	/**
	 * the MUC service's rooms archive (XEP-0313) by default (--muc-archive): Parley
	 * `room_defaults.archive = true` (XEP-0425 moderation then advertised); Prosody mod_muc_mam,
	 * `muc_log_by_default = true`; ejabberd mod_mam, `default_room_options: mam: true`
	 */
	mucArchive?: boolean;
	/** also an anonymous host guest.<domain>, without session caps (the anon scenario runs) */
	guest?: boolean;
	/**
	 * PEP (XEP-0163) with XEP-0115 caps, for the pep scenario: Prosody's mod_pep, ejabberd's
	 * mod_pubsub (plugins flat and pep; mod_caps is always on); Parley's default module set
	 */
	pep?: boolean;
	/**
	 * XEP-0198 stream management for the chat-sm scenario: Prosody's mod_smacks (in 0.12 itself,
	 * not loaded unless listed), ejabberd's mod_stream_mgmt, both with their defaults; Parley
	 * offers it always
	 */
	sm?: boolean;
	/**
	 * Parley: its liveness checks (`[sessions] idle_ping`, `ping_timeout`, seconds; idle_ping 0
	 * turns them off), written to the configuration; the defaults (no table) unless given.
	 */
	liveness?: { idle_ping: number; ping_timeout: number };
	/**
	 * ejabberd: mod_ping sending pings (`send_pings: true`, `ping_interval`, `ping_ack_timeout`,
	 * `timeout_action: kill`), seconds; as shipped (`mod_ping: {}`, no pings) unless given.
	 */
	ejabberdPings?: { interval: number; ackTimeout: number };
	/** the XMPP domain served, accounts b0.. on it; "localhost" unless given (the s2s scenario) */
	domain?: string;
	/** federation (the s2s scenario): STARTTLS and dialback, no DNS */
	s2s?: S2SOptions;
	log: (s: string) => void;
}

/**
 * The s2s scenario's federation set-up for one server: it listens for servers on
 * 127.0.0.1:`port` and reaches each domain in `routes` at that address (Parley: `[s2s.routes]`;
 * Prosody: the routing plugin of test/helpers/prosody.ts answering its SRV lookups).
 */
export interface S2SOptions {
	port: number;
	routes: Record<string, { host: string; port: number }>;
}

/** The MUC service every target gets when the muc scenario runs. */
export const MUC_DOMAIN = "conference.localhost";

export async function freePort(): Promise<number> {
	return new Promise((res, rej) => {
		const s = createServer();
		s.once("error", rej);
		s.listen({ host: "127.0.0.1", port: 0 }, () => {
			const a = s.address();
			const port = a && typeof a === "object" ? a.port : 0;
			s.close(() => res(port));
		});
	});
}

/** Waits until an XMPP stream header on the port gets stream features back. */
async function waitXmpp(e: Endpoint, child: ChildProcess, ms: number): Promise<void> {
	const deadline = Date.now() + ms;
	while (Date.now() < deadline) {
		if (child.exitCode !== null) throw new Error(`exited with code ${child.exitCode}`);
		const ok = await new Promise<boolean>((res) => {
			const s = connect({ host: e.host, port: e.port });
			let buf = "";
			const t = setTimeout(() => {
				s.destroy();
				res(false);
			}, 2000);
			s.on("error", () => {
				clearTimeout(t);
				res(false);
			});
			s.on("data", (d) => {
				buf += d.toString();
				if (/features/.test(buf)) {
					clearTimeout(t);
					s.destroy();
					res(true);
				}
			});
			s.write(streamHeader(e.domain));
		});
		if (ok) return;
		await new Promise((r) => setTimeout(r, 300));
	}
	throw new Error(`no XMPP on ${e.host}:${e.port} after ${ms} ms`);
}

function stopTree(
	child: ChildProcess,
	pids: () => number[],
	ms: number,
	signalOnly?: (pid: number) => boolean,
): Promise<void> {
	return new Promise((res) => {
		if (child.exitCode !== null || child.signalCode !== null) return res();
		const all = pids();
		const t = setTimeout(() => {
			for (const p of pids()) {
				try {
					process.kill(p, "SIGKILL");
				} catch {}
			}
			res();
		}, ms);
		child.once("exit", () => {
			clearTimeout(t);
			res();
		});
		for (const p of signalOnly ? all.filter(signalOnly) : all) {
			try {
				process.kill(p, "SIGTERM");
			} catch {}
		}
	});
}

function accountsMarker(stateDir: string): number {
	try {
		return Number(JSON.parse(readFileSync(join(stateDir, "accounts.json"), "utf8")).count) || 0;
	} catch {
		return 0;
	}
}
function setAccountsMarker(stateDir: string, n: number) {
	writeFileSync(join(stateDir, "accounts.json"), JSON.stringify({ count: n }));
}

function pipeLog(child: ChildProcess, file: string) {
	const out = createWriteStream(file, { flags: "a" });
	child.stdout?.pipe(out);
	child.stderr?.pipe(out);
}

/**
 * Parley with `--workers N`: N node processes and, for their cluster link, a private Redis
 * (no persistence) started by the same shell that then execs Parley, so that Redis is a child of
 * the server's process and its CPU and memory count in the server's figures.
 */
export async function startWorkers(o: StartOptions, processTree: (p: number) => number[]) {
	const t = await startParley(
		{ ...o, workers: o.workers ?? 2, profileDir: undefined },
		processTree,
	);
	t.name = "workers";
	return t;
}

export async function startCluster(o: StartOptions, processTree: (p: number) => number[]) {
	const t = await startParley({ ...o, nodes: true, profileDir: undefined }, processTree);
	t.name = "cluster";
	return t;
}

/** "baseline-cluster": the "cluster" target from the --baseline checkout (before/after). */
export async function startBaselineCluster(o: StartOptions, processTree: (p: number) => number[]) {
	if (!o.baselineRoot) throw new Error("the baseline-cluster target needs --baseline DIR");
	const t = await startCluster({ ...o, root: o.baselineRoot }, processTree);
	t.name = "baseline-cluster";
	t.version = t.version.replace("this checkout", o.baselineRoot);
	return t;
}

export async function startProsodyMam(o: StartOptions, processTree: (p: number) => number[]) {
	const t = await startProsody({ ...o, mam: true }, processTree);
	t.name = "prosody-mam";
	return t;
}

export async function startEjabberdMam(o: StartOptions, processTree: (p: number) => number[]) {
	const t = await startEjabberd({ ...o, mam: true }, processTree);
	t.name = "ejabberd-mam";
	return t;
}

export async function startMam(o: StartOptions, processTree: (p: number) => number[]) {
	const t = await startParley({ ...o, mam: true, profileDir: o.profileDir }, processTree);
	t.name = "mam";
	return t;
}

export async function startBaseline(o: StartOptions, processTree: (p: number) => number[]) {
	if (!o.baselineRoot) throw new Error("the baseline target needs --baseline DIR");
	const t = await startParley({ ...o, root: o.baselineRoot, profileDir: undefined }, processTree);
	t.name = "baseline";
	t.version = `${t.version.replace("this checkout", o.baselineRoot)}`;
	return t;
}

/**
 * Parley's MUC component, as its configuration enables it; the room default of 200 occupants
 * (ejabberd's too) raised for the 500-occupant room, as ejabberd's max_users is.
 */
const parleyMuc = (archive: boolean) => `[components."${MUC_DOMAIN}"]
type = "muc"
room_defaults = { max_occupants = 1000${archive ? ", archive = true" : ""} }
`;
/** The same without the limit, in case that key is not (yet) in the checkout's schema. */
const parleyMucPlain = (archive: boolean) => `[components."${MUC_DOMAIN}"]
type = "muc"
${archive ? "room_defaults = { archive = true }\n" : ""}`;

/** The anon scenario's guest host: SASL ANONYMOUS only, its session caps off (0 = unlimited). */
const parleyGuest = (domain: string) => `[hosts."guest.${domain}"]
authentication = "anonymous"
[hosts."guest.${domain}".anonymous]
max_sessions = 0
max_sessions_per_ip = 0
`;

/**
 * Parley, with its MUC component when the muc scenario runs and the checkout has
 * src/modules/muc (the config schema rejects unknown keys); if the server does not start with
 * it (MUC work in progress), with the plain component, then without MUC.
 */
export async function startParley(o: StartOptions, processTree: (p: number) => number[]) {
	const withMuc = !!o.muc && existsSync(join(o.root, "src/modules/muc"));
	if (o.muc && !withMuc) o.log("parley: no src/modules/muc in this checkout: no MUC");
	if (!withMuc) return startParleyWith(o, processTree, "");
	// With --muc-archive no fallback without the archive: the rows would not be what they say.
	for (const muc of [parleyMuc(!!o.mucArchive), parleyMucPlain(!!o.mucArchive)]) {
		try {
			return await startParleyWith(o, processTree, muc);
		} catch (e) {
			o.log(`parley: did not start with ${JSON.stringify(muc)}: ${(e as Error).message}`);
		}
	}
	o.log("parley: starting without MUC");
	return startParleyWith(o, processTree, "");
}

async function startParleyWith(
	o: StartOptions,
	processTree: (p: number) => number[],
	/** the components table to append to the configuration, "" for none */
	muc: string,
): Promise<Running> {
	mkdirSync(join(o.stateDir, "data"), { recursive: true });
	const domain = o.domain ?? "localhost";
	const port = await freePort();
	const redisPort = o.workers || o.nodes ? await freePort() : 0;
	const port2 = o.nodes ? await freePort() : 0;
	// Federation: defaults otherwise (STARTTLS required, dialback since the certificates are
	// the self-signed ones Parley makes for its host, queue_size 1000, idle_timeout 300 s).
	const s2s = o.s2s
		? `[listeners.s2s]
enabled = true
address = "127.0.0.1"
port = ${o.s2s.port}
[s2s.routes]
${Object.entries(o.s2s.routes)
	.map(([d, r]) => `"${d}" = "${r.host}:${r.port}"`)
	.join("\n")}
`
		: // Federation is on by default since it exists; a checkout from before (a --baseline)
			// would refuse the key.
			existsSync(join(o.root, "src/s2s"))
			? "[listeners.s2s]\nenabled = false\n"
			: "";
	const cfg = join(o.stateDir, "parley.toml");
	writeFileSync(
		cfg,
		`# generated by bench/run.ts
[server]
data_dir = "${join(o.stateDir, "data")}"
[log]
level = "warn"
format = "json"
[storage]
backend = "sqlite"
[auth]
scram_iterations = 4096
require_encryption = false
allow_plain_without_tls = true
[limits]
connections_per_ip = 0
unauthenticated_per_ip = 0
sasl_failures_per_ip = 0
auth_timeout = 600
${o.liveness ? `[sessions]\nidle_ping = ${o.liveness.idle_ping}\nping_timeout = ${o.liveness.ping_timeout}\n` : ""}[listeners.c2s]
address = "127.0.0.1"
port = ${port}
[listeners.c2s_direct_tls]
enabled = false
[listeners.http]
enabled = false
[listeners.https]
enabled = false
${
	// The admin listener exists since src/admin (issue 15); a --baseline from before refuses it.
	existsSync(join(o.root, "src/admin")) ? "[listeners.admin]\nenabled = false\n" : ""
}${s2s}[hosts."${domain}"]
${o.mam ? `modules = ${JSON.stringify([...DEFAULT_HOST_MODULES, "mam"])}\n` : ""}${muc}${o.guest ? parleyGuest(domain) : ""}${
	redisPort
		? `[cluster]\nenabled = true\nredis = "redis://127.0.0.1:${redisPort}"\nprefix = "bench"\n${o.nodes ? 'node = "n1"\n' : ""}${o.clusterRegistry ? `registry = "${o.clusterRegistry}"\n` : ""}`
		: ""
}`,
	);
	const cfg2 = join(o.stateDir, "parley-n2.toml");
	const go2 = join(o.stateDir, "n2.go");
	if (o.nodes) {
		rmSync(go2, { force: true });
		writeFileSync(
			cfg2,
			readFileSync(cfg, "utf8")
				.replace(`port = ${port}\n`, `port = ${port2}\n`)
				.replace('node = "n1"', 'node = "n2"'),
		);
	}
	const bin = join(o.root, "bin/parley.js");
	const args = [
		...(o.profileDir ? ["--cpu-prof", `--cpu-prof-dir=${o.profileDir}`] : []),
		bin,
		"serve",
		"--config",
		cfg,
	];
	const endpoint: Endpoint = { host: "127.0.0.1", port, domain };
	const provision = async (n: number, password: string) => {
		const have = accountsMarker(o.stateDir);
		if (have >= n) return;
		const lines: string[] = [];
		for (let i = have; i < n; i++) lines.push(`b${i}@${domain} ${password}`);
		o.log(`parley: importing ${n - have} accounts (parley user import)`);
		execFileSync(process.execPath, [bin, "user", "import", "--skip-existing", "--config", cfg], {
			input: `${lines.join("\n")}\n`,
			stdio: ["pipe", "inherit", "inherit"],
		});
		setAccountsMarker(o.stateDir, n);
	};
	// Accounts are imported with the server running (the CLI and the server share the SQLite
	// file); the import happens before any measurement.
	// Two nodes: Redis, node n1, and once n1 serves (storage migrated) node n2, all children of
	// one shell, so that the CPU and memory of all three count as the server's.
	const child = o.nodes
		? spawn(
				"/bin/sh",
				[
					"-c",
					`redis-server --port ${redisPort} --bind 127.0.0.1 --save '' --appendonly no --loglevel warning & ` +
						`sleep 0.3; "$0" "$@" & while [ ! -e '${go2}' ]; do sleep 0.1; done; ` +
						`exec "$0" '${bin}' serve --config '${cfg2}'`,
					process.execPath,
					...args,
				],
				{ cwd: o.root, stdio: ["ignore", "pipe", "pipe"] },
			)
		: o.workers
			? spawn(
					"/bin/sh",
					[
						"-c",
						`redis-server --port ${redisPort} --bind 127.0.0.1 --save '' --appendonly no --loglevel warning & ` +
							`sleep 0.3; exec "$0" "$@" --workers ${o.workers}`,
						process.execPath,
						...args,
					],
					{ cwd: o.root, stdio: ["ignore", "pipe", "pipe"] },
				)
			: spawn(process.execPath, args, { cwd: o.root, stdio: ["ignore", "pipe", "pipe"] });
	pipeLog(child, join(o.stateDir, "parley.log"));
	await waitXmpp(endpoint, child, 30_000);
	const endpoint2: Endpoint = { host: "127.0.0.1", port: port2, domain };
	if (o.nodes) {
		writeFileSync(go2, "");
		await waitXmpp(endpoint2, child, 30_000);
	}
	const version = JSON.parse(readFileSync(join(o.root, "package.json"), "utf8")).version;
	const running: Running = {
		name: "parley",
		version: `${version} (this checkout, Node ${process.versions.node})`,
		pid: child.pid as number,
		endpoint,
		endpoints: o.nodes ? [endpoint, endpoint2] : undefined,
		xmpp: true,
		muc: muc ? MUC_DOMAIN : undefined,
		guest: o.guest ? `guest.${domain}` : undefined,
		notes: [
			`storage: SQLite (WAL, synchronous=FULL); default module set${o.liveness ? `; [sessions] idle_ping = ${o.liveness.idle_ping}, ping_timeout = ${o.liveness.ping_timeout}` : ""}${muc ? `; MUC at ${MUC_DOMAIN}${muc.includes("max_occupants") ? " (room_defaults.max_occupants 1000)" : ""}${o.mucArchive ? " (room_defaults.archive = true: rooms archive, XEP-0425 moderation offered)" : ""}` : ""}${o.guest ? `; anonymous host guest.${domain} (max_sessions and max_sessions_per_ip 0: unlimited)` : ""}${o.sm ? "; XEP-0198 as always (src/c2s/sm.ts: an <r/> once 5 stanzas are unacknowledged and none is out; hibernation 600 s)" : ""}`,
			...(o.nodes
				? [
						"two nodes (parley serve, node n1 and n2, a c2s port each) on one SQLite file and a private redis-server; server CPU and RSS include both nodes and Redis",
					]
				: []),
			...(o.workers
				? [
						`${o.workers} worker processes (parley serve --workers ${o.workers}) and a private redis-server for their cluster link; server CPU and RSS include the primary, the workers and Redis`,
					]
				: []),
			...(o.s2s
				? [
						`${domain}: s2s listener on 127.0.0.1:${o.s2s.port}, [s2s] defaults (STARTTLS required; dialback with its self-signed certificate) and static routes`,
					]
				: []),
		],
		stop: async () => {
			const tree = processTree(child.pid as number);
			const redis = tree.filter((p) => procName(p) === "redis-server");
			await stopTree(
				child,
				() => processTree(child.pid as number),
				15_000,
				(p) => !redis.includes(p),
			);
			for (const p of redis) {
				try {
					process.kill(p, "SIGTERM");
				} catch {}
			}
		},
		provision: async (n, pw) => provision(n, pw),
		// The operator's path: `parley import` of a XEP-0227 file (accounts and rosters), through
		// the storage interface, beside the running server (shared SQLite file, before measuring).
		provisionRoster: async (users, pw, _viaIbr, hub) => {
			if (rosterDone(o.stateDir, users, hub)) return;
			const file = join(o.stateDir, "roster-pie.xml");
			writeFileSync(file, pieRoster(users, endpoint.domain, pw, hub));
			o.log(`parley: importing ${users.length} accounts with mutual rosters (parley import)`);
			execFileSync(process.execPath, [bin, "import", file, "--config", cfg], {
				stdio: ["ignore", "inherit", "inherit"],
			});
			setRosterDone(o.stateDir, users, hub);
		},
	};
	return running;
}

export async function startProsody(
	o: StartOptions,
	processTree: (p: number) => number[],
): Promise<Running> {
	if (!existsSync("/usr/bin/prosody")) aptInstall("prosody", o.log);
	const data = join(o.stateDir, "data");
	mkdirSync(data, { recursive: true });
	const domain = o.domain ?? "localhost";
	const port = await freePort();
	const cfg = join(o.stateDir, "prosody.cfg.lua");
	const s2s = o.s2s ? prosodyS2S(o.stateDir, domain, o.s2s) : undefined;
	writeFileSync(
		cfg,
		`-- generated by bench/run.ts
run_as_root = true
pidfile = "${join(o.stateDir, "prosody.pid")}"
data_path = "${data}"
log = { { levels = { min = "error" }, to = "file", filename = "${join(o.stateDir, "prosody.log")}" } }
interfaces = { "127.0.0.1" }
c2s_ports = { ${port} }
c2s_direct_tls_ports = {}
s2s_ports = { ${o.s2s?.port ?? ""} }
s2s_direct_tls_ports = {}
modules_enabled = {
	"roster"; "saslauth"; "disco"; "ping"; "version"; "time"; "vcard_legacy"; "private";
	"lastactivity"; "server_contact_info"; "offline"; "carbons"; "blocklist"; "register";
${o.pep ? `\t"pep";\n` : ""}${o.sm ? `\t"smacks";\n` : ""}${o.mam ? `\t"mam";\n` : ""}${s2s ? `\t"tls"; "dialback"; "test_s2s_routes";\n` : ""}}
${s2s ? s2s.global : `modules_disabled = { "s2s"; "tls" }`}
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
default_iteration_count = 4096
${
	o.mam
		? `-- archives on SQLite, as Prosody recommends for them (and as Parley's default storage)
storage = { archive = "sql" }
default_storage = "internal"
sql = { driver = "SQLite3", database = "${join(o.stateDir, "prosody.sqlite")}" }`
		: `storage = "internal"`
}
allow_registration = true
registration_allowlist = { "127.0.0.1" }
c2s_timeout = 3600
${o.mam ? `default_archive_policy = true\narchive_expires_after = "never"\n` : ""}network_settings = { tcp_backlog = 1024 }
VirtualHost "${domain}"
${s2s ? s2s.host : ""}${
	o.guest
		? `-- anon scenario: mod_auth_anonymous (no storage, no s2s for guests, as by default)
VirtualHost "guest.${domain}"
	authentication = "anonymous"
	allow_registration = false
`
		: ""
}${
	o.muc
		? `-- muc scenario: no mod_muc_limits; rooms locked until the owner's form (muc_room_locking,
-- the default), history 20 (the default), no occupant limit in 0.12
Component "${MUC_DOMAIN}" "muc"
	restrict_room_creation = false
	muc_room_locking = true
	muc_room_default_history_length = 20
	muc_tombstones = false
${
	o.mucArchive
		? `	modules_enabled = { "muc_mam" }
	muc_log_by_default = true
`
		: ""
}`
		: ""
}`,
	);
	const endpoint: Endpoint = { host: "127.0.0.1", port, domain };
	const child = spawn("prosody", ["--config", cfg, "-F"], {
		cwd: o.stateDir,
		stdio: ["ignore", "pipe", "pipe"],
	});
	pipeLog(child, join(o.stateDir, "prosody.out"));
	await waitXmpp(endpoint, child, 30_000);
	const version = dpkgVersion("prosody");
	return {
		name: "prosody",
		version,
		pid: child.pid as number,
		endpoint,
		xmpp: true,
		muc: o.muc ? MUC_DOMAIN : undefined,
		guest: o.guest ? `guest.${domain}` : undefined,
		notes: [
			`storage: internal (files); accounts via in-band registration, no throttle${o.muc ? `; MUC (mod_muc) at ${MUC_DOMAIN}${o.mucArchive ? " with mod_muc_mam, muc_log_by_default = true" : ""}` : ""}${o.guest ? `; anonymous host guest.${domain} (mod_auth_anonymous, its defaults)` : ""}${o.pep ? "; mod_pep (its defaults: max_items 1, persist_items)" : ""}${o.sm ? "; mod_smacks (XEP-0198) with its defaults: an <r/> whenever a stanza is unacknowledged and none is out (smacks_max_unacked_stanzas 0), hibernation 600 s, queue 500" : ""}${o.mam ? "; mod_mam for every account (default_archive_policy = true), archive storage sql on SQLite3 (LuaDBI)" : ""}`,
			...(o.s2s
				? [
						`${domain}: s2s on 127.0.0.1:${o.s2s.port}, mod_tls + mod_dialback, s2s_require_encryption and s2s_secure_auth as by default (true, false), a self-signed certificate; routes by the SRV-answering plugin of test/helpers/prosody.ts`,
					]
				: []),
		],
		stop: () => stopTree(child, () => processTree(child.pid as number), 15_000),
		provision: async (n: number, _pw: string, viaIbr: (n: number) => Promise<void>) => {
			const have = accountsMarker(o.stateDir);
			if (have >= n) return;
			o.log(`prosody: registering ${n - have} accounts in-band`);
			await viaIbr(n);
			setAccountsMarker(o.stateDir, n);
		},
		// Accounts in-band; rosters written as Prosody's own storage files (mod_storage_internal:
		// data/<host>/roster/<user>.dat, a Lua table; [false] holds the version and pending).
		provisionRoster: async (users, _pw, viaIbr, hub) => {
			if (rosterDone(o.stateDir, users, hub)) return;
			o.log(`prosody: registering ${users.length} accounts in-band, writing their rosters`);
			await viaIbr(users);
			const dir = join(data, "localhost", "roster");
			mkdirSync(dir, { recursive: true });
			for (const u of users) {
				const lines = ["return {", '\t[false] = { ["version"] = 1; ["pending"] = {}; };'];
				for (const v of contactsOf(u, users, hub))
					lines.push(`\t["${v}@localhost"] = { ["subscription"] = "both"; ["groups"] = {}; };`);
				lines.push("};", "");
				writeFileSync(join(dir, `${u}.dat`), lines.join("\n"));
			}
			setRosterDone(o.stateDir, users, hub);
		},
	} satisfies Running;
}

/**
 * Prosody's federation settings for the s2s scenario: a self-signed certificate for the domain
 * (made once per state directory with the openssl command line; dialback authenticates, so
 * nothing needs to trust it), and the routing plugin of test/helpers/prosody.ts with its routes
 * file, so that Prosody reaches the other bench server on loopback without DNS.
 */
function prosodyS2S(stateDir: string, domain: string, s2s: S2SOptions) {
	const plugins = join(stateDir, "plugins");
	mkdirSync(plugins, { recursive: true });
	writeFileSync(join(plugins, "mod_test_s2s_routes.lua"), ROUTES_PLUGIN);
	const routes = join(stateDir, "s2s-routes.txt");
	writeFileSync(
		routes,
		Object.entries(s2s.routes)
			.map(([d, r]) => `${d} ${r.host} ${r.port}\n`)
			.join(""),
	);
	const cert = join(stateDir, `${domain}.crt`);
	const key = join(stateDir, `${domain}.key`);
	if (!existsSync(cert) || !existsSync(key)) {
		execFileSync(
			"openssl",
			[
				"req",
				"-x509",
				"-newkey",
				"ec",
				"-pkeyopt",
				"ec_paramgen_curve:prime256v1",
				"-nodes",
				"-keyout",
				key,
				"-out",
				cert,
				"-days",
				"3650",
				"-subj",
				`/CN=${domain}`,
				"-addext",
				`subjectAltName=DNS:${domain}`,
			],
			{ stdio: "pipe" }, // its key-generation dots stay out of the bench's output
		);
	}
	return {
		global: `plugin_paths = { "${plugins}" }
test_s2s_routes_file = "${routes}"`,
		host: `\tssl = { certificate = "${cert}"; key = "${key}"; }\n`,
	};
}

export async function startEjabberd(
	o: StartOptions,
	processTree: (p: number) => number[],
): Promise<Running> {
	if (!existsSync("/usr/sbin/ejabberdctl")) aptInstall("ejabberd", o.log);
	for (const d of ["logs", "spool"]) mkdirSync(join(o.stateDir, d), { recursive: true });
	const port = await freePort();
	const cfg = join(o.stateDir, "ejabberd.yml");
	writeFileSync(
		cfg,
		`# generated by bench/run.ts
hosts: [localhost]
loglevel: warning
log_rotate_count: 0
certfiles: []
listen:
  - port: ${port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    backlog: 1024
    shaper: none
    access: c2s
    starttls: false
    starttls_required: false
auth_method: internal
${
	o.mam
		? `# the archive on SQLite (mod_mam db_type sql), as Parley's default storage; the rest on Mnesia
sql_type: sqlite
sql_database: "${join(o.stateDir, "ejabberd.db")}"
`
		: ""
}auth_password_format: scram
auth_scram_hash: sha
disable_sasl_mechanisms: ["digest-md5", "x-oauth2"]
registration_timeout: infinity
acl:
  loopback:
    ip: ["127.0.0.0/8", "::1/128"]
access_rules:
  c2s:
    allow: all
  register:
    allow: all
  local:
    allow: all
shaper: {}
shaper_rules:
  max_user_sessions: 100
  max_user_offline_messages: 5000
  c2s_shaper: none
  s2s_shaper: none
modules:
  mod_roster: {}
  mod_disco: {}
  mod_ping:${
		o.ejabberdPings
			? `
    send_pings: true
    ping_interval: ${o.ejabberdPings.interval}
    ping_ack_timeout: ${o.ejabberdPings.ackTimeout}
    timeout_action: kill`
			: " {}"
	}
  mod_version:
    show_os: false
  mod_time: {}
  mod_vcard: {}
  mod_private: {}
  mod_last: {}
  mod_offline: {}
  mod_carboncopy: {}
  mod_privacy: {}
  mod_blocking: {}
  mod_caps: {}
  mod_register:
    ip_access: all
    access: register
${o.sm ? "  mod_stream_mgmt: {}\n" : ""}${o.mam ? "  mod_mam:\n    default: always\n    db_type: sql\n" : ""}${
	o.pep
		? `  mod_pubsub:
    plugins: ["flat", "pep"]
`
		: ""
}${
	o.muc
		? `  mod_muc:
    host: "${MUC_DOMAIN}"
    access: all
    access_create: all
    access_persistent: all
    access_admin: none
    max_users: 2000
    max_users_presence: 10000
    max_user_conferences: 100
    min_message_interval: 0
    min_presence_interval: 0
    history_size: 20
    default_room_options:
      max_users: 2000
      persistent: false
${o.mucArchive ? `      mam: true\n${o.mam ? "" : "  mod_mam: {}\n"}` : ""}`
		: ""
}`,
	);
	writeFileSync(join(o.stateDir, "inetrc"), "{lookup, [file, native]}.\n");
	execFileSync("chown", ["-R", "ejabberd:ejabberd", o.stateDir]);
	const endpoint: Endpoint = { host: "127.0.0.1", port, domain: "localhost" };
	const child = spawn(
		"ejabberdctl",
		[
			"--config-dir",
			o.stateDir,
			"--config",
			cfg,
			"--logs",
			join(o.stateDir, "logs"),
			"--spool",
			join(o.stateDir, "spool"),
			"--node",
			"parleybench@localhost",
			"foreground",
		],
		// Run as the ejabberd user directly: through ejabberdctl's own `su`, PAM resets the
		// open-files limit to 1024 and ejabberd stops accepting at about 1000 sessions.
		{
			cwd: o.stateDir,
			stdio: ["ignore", "pipe", "pipe"],
			uid: Number(execFileSync("id", ["-u", "ejabberd"], { encoding: "utf8" })),
			gid: Number(execFileSync("id", ["-g", "ejabberd"], { encoding: "utf8" })),
			env: { ...process.env, HOME: "/var/lib/ejabberd" },
		},
	);
	pipeLog(child, join(o.stateDir, "ejabberd.out"));
	await waitXmpp(endpoint, child, 60_000);
	return {
		name: "ejabberd",
		version: dpkgVersion("ejabberd"),
		pid: child.pid as number,
		endpoint,
		xmpp: true,
		muc: o.muc ? MUC_DOMAIN : undefined,
		notes: [
			`storage: mnesia; auth_password_format scram (SHA-1, 4096); accounts via in-band registration${o.ejabberdPings ? `; mod_ping send_pings: true, ping_interval: ${o.ejabberdPings.interval}, ping_ack_timeout: ${o.ejabberdPings.ackTimeout}, timeout_action: kill` : ""}${o.muc ? `; mod_muc at ${MUC_DOMAIN} (max_users 2000, no intervals${o.mucArchive ? "; default_room_options mam: true, mod_mam with its defaults" : ""})` : ""}${o.pep ? `; mod_pubsub (plugins flat, pep; its defaults otherwise) and mod_caps` : ""}${o.sm ? "; mod_stream_mgmt (XEP-0198) with its defaults (resume_timeout 300 s, max_ack_queue 5000, ack_timeout 60 s)" : ""}${o.mam ? "; mod_mam for every account (default: always), db_type sql on SQLite (sql_type sqlite)" : ""}`,
		],
		// SIGTERM to the Erlang VM only (init:stop); its port programs end with it.
		stop: () =>
			stopTree(
				child,
				() => processTree(child.pid as number),
				30_000,
				(p) => {
					try {
						return readFileSync(`/proc/${p}/comm`, "utf8").trim() === "beam.smp";
					} catch {
						return false;
					}
				},
			),
		provision: async (n: number, _pw: string, viaIbr: (n: number) => Promise<void>) => {
			const have = accountsMarker(o.stateDir);
			if (have >= n) return;
			o.log(`ejabberd: registering ${n - have} accounts in-band`);
			await viaIbr(n);
			setAccountsMarker(o.stateDir, n);
		},
		// ejabberd's own XEP-0227 import (`ejabberdctl import_piefxis`) on the running node. It
		// refuses a user that exists (an earlier import with another --roster or --pep-contacts):
		// those are unregistered first.
		provisionRoster: async (users, pw, _viaIbr, hub) => {
			if (rosterDone(o.stateDir, users, hub)) return;
			const ctl = (...args: string[]) =>
				execFileSync(
					"ejabberdctl",
					["--node", "parleybench@localhost", "--config-dir", o.stateDir, ...args],
					{ encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] },
				);
			const wanted = new Set(users);
			const existing = ctl("registered_users", endpoint.domain)
				.split("\n")
				.filter((u) => wanted.has(u));
			if (existing.length)
				o.log(`ejabberd: unregistering ${existing.length} of them first (import_piefxis)`);
			for (const u of existing) ctl("unregister", u, endpoint.domain);
			const file = join(o.stateDir, "roster-pie.xml");
			writeFileSync(file, pieRoster(users, endpoint.domain, pw, hub));
			execFileSync("chown", ["ejabberd:ejabberd", file]);
			o.log(`ejabberd: importing ${users.length} accounts with mutual rosters (import_piefxis)`);
			ctl("import_piefxis", file);
			setRosterDone(o.stateDir, users, hub);
		},
	} satisfies Running;
}

export async function startRelay(o: StartOptions, processTree: (p: number) => number[]) {
	const child = spawn(process.execPath, [resolve(o.root, "bench/lib/relay.ts")], {
		stdio: ["ignore", "pipe", "inherit"],
	});
	const port = await new Promise<number>((res, rej) => {
		child.once("exit", (c) => rej(new Error(`relay exited ${c}`)));
		child.stdout?.once("data", (d: Buffer) => res(JSON.parse(d.toString()).port));
	});
	return {
		name: "relay",
		version: `raw Node.js TCP relay (Node ${process.versions.node})`,
		pid: child.pid as number,
		endpoint: { host: "127.0.0.1", port, domain: "localhost" },
		xmpp: false,
		notes: ["no XML, no auth: pairs sockets and forwards the chat scenario's bytes"],
		stop: () => stopTree(child, () => processTree(child.pid as number), 5000),
		provision: async () => {},
	} satisfies Running;
}

function dpkgVersion(pkg: string): string {
	try {
		return `${pkg} ${execFileSync("dpkg-query", ["-W", `-f=$${"{Version}"}`, pkg], { encoding: "utf8" })} (Debian)`;
	} catch {
		return pkg;
	}
}

function aptInstall(pkg: string, log: (s: string) => void) {
	log(`installing ${pkg} from Debian (apt-get)`);
	const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
	execFileSync("apt-get", ["update"], { stdio: "inherit", env });
	execFileSync("apt-get", ["install", "-y", "--no-install-recommends", pkg], {
		stdio: "inherit",
		env,
	});
}
