/**
 * A real ejabberd (Debian's package, 23.01) for federation tests: `startEjabberd` writes a
 * private config, spool, log directory and certificates into a temporary directory, runs
 * `ejabberdctl foreground` as the ejabberd user with its own Erlang node name (never the system
 * service), and stops it and removes the directory on `stop()`.
 *
 * How ejabberd reaches a Parley domain on loopback, without DNS
 * -------------------------------------------------------------
 * ejabberd 23.01's s2s out (p1_xmpp 1.6.1's xmpp_stream_out) asks `inet_res` for the SRV
 * records `_xmpps-server._tcp.<domain>` (XEP-0368) and `_xmpp-server._tcp.<domain>`, then looks
 * up each target with `net:getaddrinfo`, the C library's resolver; without SRV records it looks
 * up the domain itself there, on `outgoing_s2s_port`. So an inetrc `{host, ...}` line (Erlang's
 * own hosts table, which the bench's recipe uses for c2s) does nothing for s2s: getaddrinfo never
 * reads it, and reads only /etc/hosts and the system's DNS (tried: "DNS lookup failed: enoname").
 * `inet_res`, though, follows the Erlang VM's resolver configuration, the file ERL_INETRC names
 * (ejabberdctl sets it to `<config dir>/inetrc`). So the helper runs a tiny DNS server on a
 * loopback UDP port (`dnsServer` below) and the inetrc names it as the only nameserver: it
 * answers the SRV query of each routed domain with target `127.0.0.1` (an address, which
 * getaddrinfo takes as is) and the route's port, and NXDOMAIN to everything else. Routes are
 * read at each query, so `setRoute` works while ejabberd runs, any port works, and parallel tests
 * do not collide. Only name resolution is replaced: ejabberd's own s2s code, STARTTLS,
 * certificate checks, SASL EXTERNAL and dialback run unchanged.
 *
 * Parley -> ejabberd needs nothing but Parley's static route to `address`:`s2sPort`.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import dgram from "node:dgram";
import {
	chmodSync,
	existsSync,
	mkdirSync,
	mkdtempSync,
	readFileSync,
	rmSync,
	writeFileSync,
} from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./prosody.ts";
import { type ServerCert, serverCert, testCa } from "./test-ca.ts";

const run = promisify(execFile);

export const EJABBERDCTL = "/usr/sbin/ejabberdctl";

/** False when ejabberd can run here, else why tests that need it are skipped. */
export const ejabberdSkip: false | string = !existsSync(EJABBERDCTL)
	? `${EJABBERDCTL} is not installed (apt-get install ejabberd)`
	: process.getuid?.() !== 0
		? "ejabberd is run as the ejabberd user, which needs root"
		: false;

export interface EjabberdOptions {
	/** Its XMPP domain; "ejabberd.test" unless given. */
	domain?: string;
	/** A MUC service domain (mod_muc `host`), none unless given. */
	muc?: string;
	/** `s2s_use_starttls`: "optional" or "required" (default "required"). */
	starttls?: "optional" | "required";
	/** Load mod_s2s_dialback (XEP-0220); default true. */
	dialback?: boolean;
	/** Trust the test CA for s2s certificates (`ca_file`); default true. */
	trustCa?: boolean;
	/** Its certificate; by default one the test CA issues for `domain` (and `muc`). */
	cert?: Pick<ServerCert, "certPath" | "keyPath">;
	/** Accounts to create on `domain`: [localpart, password]. */
	users?: [user: string, password: string][];
	/** Where ejabberd connects for these remote domains (see the top of this file). */
	routes?: Record<string, Route>;
	/** Also listen for XEP-0368 direct TLS s2s (`tls: true`) on `s2sDirectTlsPort`. */
	directTls?: boolean;
	/** ejabberd's `loglevel` (default "info"; "debug" logs every element sent and received). */
	logLevel?: "info" | "debug";
	/** YAML appended to the config, verbatim. */
	extraConfig?: string;
}

export interface EjabberdServer {
	domain: string;
	muc: string | undefined;
	address: string;
	c2sPort: number;
	s2sPort: number;
	/** XEP-0368 direct TLS s2s port, 0 unless `directTls`. */
	s2sDirectTlsPort: number;
	dir: string;
	/** ejabberd's log so far (ejabberd.log, error.log and console). */
	log(): string;
	/** Routes a remote domain to 127.0.0.1:`port` from now on (read at each s2s lookup). */
	setRoute(domain: string, route: Route): void;
	/** Runs `ejabberdctl <args>` against this node; resolves with its output. */
	ctl(...args: string[]): Promise<string>;
	addUser(user: string, password: string): Promise<void>;
	/** Stops ejabberd (SIGTERM to the VM, SIGKILL after 15 s), keeping `dir`. */
	halt(): Promise<void>;
	/** Starts it again on the same ports and spool (after `halt`). */
	restart(): Promise<void>;
	/** Stops it and removes `dir`. */
	stop(): Promise<void>;
}

function canConnect(address: string, port: number): Promise<boolean> {
	return new Promise((resolve) => {
		const s = net.connect({ host: address, port });
		s.once("connect", () => {
			s.destroy();
			resolve(true);
		});
		s.once("error", () => resolve(false));
	});
}

/** Where a remote domain is on 127.0.0.1: its STARTTLS port, and its XEP-0368 direct TLS one. */
export interface Route {
	port: number;
	directTlsPort?: number;
}

/**
 * A DNS server on 127.0.0.1 (UDP, a free port) that knows only SRV records (RFC 2782): for each
 * routed domain, `_xmpp-server._tcp.<domain>` -> 127.0.0.1:port and, when given,
 * `_xmpps-server._tcp.<domain>` -> 127.0.0.1:directTlsPort (XEP-0368 §2). Every other query gets
 * NXDOMAIN (RFC 1035 §4.1.1 RCODE 3), at once.
 */
async function dnsServer(routes: Map<string, Route>): Promise<{ port: number; close(): void }> {
	const socket = dgram.createSocket("udp4");
	socket.on("message", (q, rinfo) => {
		if (q.length < 12) return;
		// The question: labels up to a zero byte, then QTYPE and QCLASS (RFC 1035 §4.1.2).
		const labels: string[] = [];
		let i = 12;
		while (i < q.length && q[i] !== 0) {
			const len = q[i] as number;
			labels.push(q.subarray(i + 1, i + 1 + len).toString("latin1"));
			i += 1 + len;
		}
		const qEnd = i + 5;
		if (qEnd > q.length) return;
		const qtype = q.readUInt16BE(i + 1);
		const name = labels.join(".").toLowerCase();
		const m = /^_(xmpps?)-server\._tcp\.(.+)$/.exec(name);
		const route = m ? routes.get(m[2] as string) : undefined;
		const port = m?.[1] === "xmpps" ? route?.directTlsPort : route?.port;
		const answer = qtype === 33 && port !== undefined;
		const head = Buffer.alloc(12);
		q.copy(head, 0, 0, 2);
		// QR, AA, RD as asked, RA; RCODE 0 or 3 (NXDOMAIN).
		head.writeUInt16BE(0x8400 | (((q[2] as number) & 1) << 8) | 0x80 | (answer ? 0 : 3), 2);
		head.writeUInt16BE(1, 4);
		head.writeUInt16BE(answer ? 1 : 0, 6);
		const parts = [head, q.subarray(12, qEnd)];
		if (answer) {
			const target = Buffer.concat([
				...["127", "0", "0", "1"].map((l) =>
					Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]),
				),
				Buffer.from([0]),
			]);
			const rr = Buffer.alloc(12 + 6);
			rr.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
			rr.writeUInt16BE(33, 2); // SRV
			rr.writeUInt16BE(1, 4); // IN
			rr.writeUInt32BE(1, 6); // TTL 1 s: inet_res caches answers, routes may change
			rr.writeUInt16BE(6 + target.length, 10);
			rr.writeUInt16BE(0, 12); // priority
			rr.writeUInt16BE(0, 14); // weight
			rr.writeUInt16BE(port, 16);
			parts.push(rr, target);
		}
		socket.send(Buffer.concat(parts), rinfo.port, rinfo.address);
	});
	await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
	return { port: socket.address().port, close: () => socket.close() };
}

/** A YAML double-quoted string. */
const yaml = (s: string) => JSON.stringify(s);

let nodes = 0;

/** Starts a private ejabberd; rejects (with its log) if it does not come up within 60 s. */
export async function startEjabberd(opts: EjabberdOptions): Promise<EjabberdServer> {
	const domain = opts.domain ?? "ejabberd.test";
	const muc = opts.muc;
	const address = "127.0.0.1";
	const cert = opts.cert ?? (await serverCert(muc ? [domain, muc] : [domain]));
	const ca = await testCa();
	const dir = mkdtempSync(join(tmpdir(), "parley-ejabberd-"));
	chmodSync(dir, 0o755);
	const logs = join(dir, "logs");
	const spool = join(dir, "spool");
	for (const d of [logs, spool]) mkdirSync(d);
	// ejabberd reads its certificate and key as the ejabberd user: private copies.
	const certFile = join(dir, "cert.pem");
	writeFileSync(certFile, readFileSync(cert.certPath, "utf8") + readFileSync(cert.keyPath, "utf8"));
	const caFile = join(dir, "ca.pem");
	writeFileSync(caFile, ca.certPem);
	const c2sPort = await freePort(address);
	const s2sPort = await freePort(address);
	const s2sDirectTlsPort = opts.directTls ? await freePort(address) : 0;
	const node = `parleytest${process.pid}x${++nodes}@localhost`;
	const configPath = join(dir, "ejabberd.yml");
	const starttls = opts.starttls ?? "required";
	writeFileSync(
		configPath,
		`# Written by Parley's test/helpers/ejabberd.ts for one test; removed when it stops.
hosts: [${yaml(domain)}]
loglevel: ${opts.logLevel ?? "info"}
log_rotate_count: 0
hide_sensitive_log_data: false
certfiles: [${yaml(certFile)}]
${opts.trustCa === false ? "" : `ca_file: ${yaml(caFile)}\n`}s2s_use_starttls: ${starttls}
s2s_dns_timeout: 1
s2s_dns_retries: 1
outgoing_s2s_families: [ipv4]
s2s_access: all
listen:
  - port: ${c2sPort}
    ip: ${yaml(address)}
    module: ejabberd_c2s
    starttls: true
  - port: ${s2sPort}
    ip: ${yaml(address)}
    module: ejabberd_s2s_in
${
	s2sDirectTlsPort
		? `  - port: ${s2sDirectTlsPort}
    ip: ${yaml(address)}
    module: ejabberd_s2s_in
    tls: true
`
		: ""
}auth_method: internal
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
shaper_rules:
  c2s_shaper: none
  s2s_shaper: none
modules:
  mod_roster: {}
  mod_disco: {}
  mod_ping: {}
  mod_version:
    show_os: false
  mod_caps: {}
  mod_offline: {}
  mod_last: {}
  mod_vcard: {}
  mod_pubsub:
    plugins: ["flat", "pep"]
${opts.dialback === false ? "" : "  mod_s2s_dialback: {}\n"}${
	muc
		? `  mod_muc:
    host: ${yaml(muc)}
    access: all
    access_create: all
    access_persistent: all
    access_admin: none
    history_size: 0
`
		: ""
}${opts.extraConfig ?? ""}`,
	);
	// See the top of this file.
	const routes = new Map(Object.entries(opts.routes ?? {}));
	const dns = await dnsServer(routes);
	writeFileSync(
		join(dir, "inetrc"),
		`{resolv_conf, ""}.\n{nameserver, {127,0,0,1}, ${dns.port}}.\n{timeout, 1000}.\n{retry, 2}.\n`,
	);
	execFileSync("chown", ["-R", "ejabberd:ejabberd", dir]);
	const uid = Number(execFileSync("id", ["-u", "ejabberd"], { encoding: "utf8" }));
	const gid = Number(execFileSync("id", ["-g", "ejabberd"], { encoding: "utf8" }));
	const env = { ...process.env, HOME: "/var/lib/ejabberd" };
	const common = [
		"--config-dir",
		dir,
		"--config",
		configPath,
		"--logs",
		logs,
		"--spool",
		spool,
		"--node",
		node,
	];

	let console_ = "";
	const log = () => {
		let text = "";
		for (const f of ["ejabberd.log", "error.log"]) {
			try {
				text += readFileSync(join(logs, f), "utf8");
			} catch {}
		}
		return console_ ? `${text}\n--- console ---\n${console_}` : text;
	};

	let child: ChildProcess | undefined;
	let exited: Promise<void> = Promise.resolve();

	/** The Erlang VM of this node: ejabberdctl runs erl as its child, it does not exec it. */
	const beams = (): number[] => {
		try {
			return execFileSync("pgrep", ["-f", `beam.smp .*-sname ${node} `], { encoding: "utf8" })
				.split("\n")
				.filter(Boolean)
				.map(Number);
		} catch {
			return [];
		}
	};
	const halt = async () => {
		const c = child;
		if (!c) return;
		// SIGTERM to the VM is init:stop (an orderly stop); the script then exits with it.
		const signal = (sig: NodeJS.Signals) => {
			for (const pid of beams()) {
				try {
					process.kill(pid, sig);
				} catch {}
			}
		};
		signal("SIGTERM");
		const t = setTimeout(() => {
			signal("SIGKILL");
			c.kill("SIGKILL");
		}, 15_000);
		await exited;
		clearTimeout(t);
		for (let i = 0; i < 100 && beams().length; i++) await new Promise((r) => setTimeout(r, 100));
	};
	const killOnExit = () => {
		for (const pid of beams()) {
			try {
				process.kill(pid, "SIGKILL");
			} catch {}
		}
	};
	const ctl = async (...args: string[]) => {
		try {
			const { stdout } = await run(EJABBERDCTL, [...common, ...args], { uid, gid, env });
			return stdout;
		} catch (err) {
			const e = err as { stdout?: string; stderr?: string; message: string };
			throw new Error(`ejabberdctl ${args.join(" ")}: ${e.stdout ?? ""}${e.stderr || e.message}`);
		}
	};

	const launch = async () => {
		console_ = "";
		// `foreground` execs erl with -noinput: SIGTERM to it stops the VM (init:stop).
		const c = spawn(EJABBERDCTL, [...common, "foreground"], {
			cwd: dir,
			stdio: ["ignore", "pipe", "pipe"],
			uid,
			gid,
			env,
		});
		child = c;
		exited = new Promise<void>((resolve) => c.once("exit", () => resolve()));
		const collect = (d: string) => {
			console_ += d;
		};
		c.stdout?.setEncoding("utf8").on("data", collect);
		c.stderr?.setEncoding("utf8").on("data", collect);
		const deadline = Date.now() + 60_000;
		for (;;) {
			if (c.exitCode !== null || c.signalCode !== null)
				throw new Error(`ejabberd exited (${c.exitCode ?? c.signalCode}) at start:\n${log()}`);
			if (
				(await canConnect(address, c2sPort)) &&
				(await canConnect(address, s2sPort)) &&
				(!s2sDirectTlsPort || (await canConnect(address, s2sDirectTlsPort)))
			)
				break;
			if (Date.now() > deadline) {
				await halt();
				throw new Error(`ejabberd did not listen on ${c2sPort}/${s2sPort} within 60 s:\n${log()}`);
			}
			await new Promise((r) => setTimeout(r, 100));
		}
	};

	process.once("exit", killOnExit);
	let stopped = false;
	const stop = async () => {
		if (stopped) return;
		stopped = true;
		await halt();
		dns.close();
		process.removeListener("exit", killOnExit);
		rmSync(dir, { recursive: true, force: true });
	};

	const addUser = async (user: string, password: string) => {
		// ejabberd listens a moment before its command interface answers: try again for 10 s.
		for (let attempt = 1; ; attempt++) {
			try {
				await ctl("register", user, domain, password);
				return;
			} catch (err) {
				if (attempt >= 20) throw err;
				await new Promise((r) => setTimeout(r, 500));
			}
		}
	};

	try {
		await launch();
		for (const [user, password] of opts.users ?? []) await addUser(user, password);
	} catch (err) {
		await stop();
		throw err;
	}

	return {
		domain,
		muc,
		address,
		c2sPort,
		s2sPort,
		s2sDirectTlsPort,
		dir,
		log,
		ctl,
		addUser,
		setRoute(d, r) {
			routes.set(d, r);
		},
		halt,
		restart: launch,
		stop,
	};
}
