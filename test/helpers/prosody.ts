/**
 * A real Prosody (Debian's package, /usr/bin/prosody, 0.12) for federation tests: each call to
 * `startProsody` writes a private config, data directory and certificates into a temporary
 * directory, runs `prosody --config <file> -F` as a child process on loopback ports of its own,
 * and stops it (and removes the directory) on `stop()`.
 *
 * How Prosody reaches a Parley domain on loopback, without DNS
 * ------------------------------------------------------------
 * Prosody 0.12 finds an s2s peer with net.resolvers.service (mod_s2s, route_to_new_session):
 * an SRV lookup of `_xmpp-server._tcp.<domain>`, and without SRV records the domain's A/AAAA
 * records on port 5269. The lookups go through net.adns, which is one of two DNS clients, picked
 * at start:
 *   - with lua-unbound installed, net.unbound (libunbound). It reads a hosts file only when
 *     told to (`unbound = { hoststxt = "<file>" }`; Prosody's default is false). That should
 *     work (not tried), but the peer must then listen on port 5269, since a hosts file has no SRV records.
 *     Debian's prosody Recommends lua-unbound, so a plain `apt-get install prosody` brings it.
 *   - without it (as installed on this machine), net.dns, Prosody's own pure-Lua resolver: it
 *     reads the nameservers from /etc/resolv.conf, sends UDP queries, never reads /etc/hosts.
 * Tried, with both: with `127.0.0.1 vm` in /etc/hosts (as on this machine) and a listener on
 * 127.0.0.1:5269, a message to bob@vm makes Prosody ask the nameserver for
 * _xmpps-server._tcp.vm, _xmpp-server._tcp.vm, then A and AAAA of vm, and bounce it with
 * remote-server-not-found ("unable to resolve service" after about 2 s with net.dns,
 * "NXDomain in AAAA lookup" at once with net.unbound); nothing connects. So an /etc/hosts line
 * or a loopback alias does nothing for Prosody.
 * 0.12.3 has no config option to route a remote domain (the `s2sout-pre-connect` event that
 * community module mod_s2soutinjection now uses arrived in 0.12.4), and a local DNS server would
 * mean pointing the whole machine's /etc/resolv.conf at it.
 *
 * What works, and is what this harness does: a small Prosody plugin of our own,
 * mod_test_s2s_routes (ROUTES_PLUGIN below, written into the private plugin directory and
 * loaded through `plugin_paths`; community mod_srvinjection uses the same trick). It wraps
 * net.adns's resolver so that the SRV query `_xmpp-server._tcp.<domain>` for a domain listed in
 * a routes file is answered with one record whose target is the IP address and port from that
 * file (`_xmpps-server._tcp.<domain>`, direct TLS, gets an empty answer); every other query goes
 * to the real resolver, unchanged. The routes file is read at each lookup, so a test can start
 * Prosody, start Parley with a static route to Prosody's `address`:`s2sPort`, then `setRoute()`
 * the Parley domain to Parley's s2s address and port: any loopback address (127.0.0.2 works
 * with no alias on Linux) and any port, so nothing needs port 5269, /etc/hosts or an alias, and
 * parallel tests do not collide. Only the DNS answer is faked: Prosody's own mod_s2s, TLS,
 * certificate checks, SASL EXTERNAL and dialback run unchanged, and the peer's certificate is
 * still checked against the domain, not the address. The harness test passes with net.dns and
 * with net.unbound (lua-unbound installed for the try, then removed).
 * Parley -> Prosody needs nothing but Parley's static route to `address`:`s2sPort`.
 *
 * Seen on the wire (test/e2e/prosody-harness.test.ts): Prosody 0.12.3 sends no SNI on s2s
 * STARTTLS (net.server sets a server name only for direct TLS), so a receiving server must pick
 * its certificate from the stream header's 'to', not from SNI. It presents its certificate as
 * a client certificate, and as the initiator it tries SASL EXTERNAL whenever the receiver offers
 * it, with its own domain as authorization identity.
 *
 * Prosody refuses to run as root unless `run_as_root = true` (mod_posix), which the config sets
 * (CI runs as root); it is harmless as another user.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./ports.ts";
import { type ServerCert, serverCert } from "./test-ca.ts";

export { freePort };

const run = promisify(execFile);

export const PROSODY = "/usr/bin/prosody";
export const PROSODYCTL = "/usr/bin/prosodyctl";

/** False when Prosody is installed, else why tests that need it are skipped. */
export const prosodySkip: false | string =
	existsSync(PROSODY) && existsSync(PROSODYCTL)
		? false
		: `${PROSODY} is not installed (apt-get install prosody)`;

export interface ProsodyOptions {
	/** Its XMPP domain (a VirtualHost); "prosody.test" unless given. */
	domain?: string;
	/** A MUC component domain (`Component "<muc>" "muc"`), none unless given. */
	muc?: string;
	/** `s2s_secure_auth`: true accepts only peers with a valid certificate (default false). */
	secureAuth?: boolean;
	/** Load mod_dialback (XEP-0220); default true. */
	dialback?: boolean;
	/** `s2s_require_encryption` (default true, as Prosody's own default). */
	requireEncryption?: boolean;
	/**
	 * A CA file (PEM) Prosody trusts for s2s certificates, e.g. `(await testCa()).certPath`. Without
	 * it Prosody trusts only the system store, so test certificates do not verify.
	 */
	trustCa?: string;
	/** Its certificate; by default one the test CA issues for `domain` (and `muc`). */
	cert?: Pick<ServerCert, "certPath" | "keyPath">;
	/** Accounts to create on `domain`: [localpart, password]. */
	users?: [user: string, password: string][];
	/** Where Prosody connects for these remote domains (see the top of this file). */
	routes?: Record<string, { address: string; port: number }>;
	/** More modules for the global `modules_enabled`. */
	modules?: string[];
	/** Lua appended to the global section of the config, verbatim. */
	extraConfig?: string;
	/** The loopback address it listens on (c2s and s2s); "127.0.0.1" unless given. */
	address?: string;
}

export interface ProsodyServer {
	domain: string;
	muc: string | undefined;
	/** Listening address of both ports. */
	address: string;
	/** Client port (STARTTLS). */
	c2sPort: number;
	/** Server-to-server port (STARTTLS); route the Prosody domain here. */
	s2sPort: number;
	/** Its certificate (files). */
	cert: Pick<ServerCert, "certPath" | "keyPath">;
	/** The temporary directory holding config, data, log and plugin. */
	dir: string;
	dataDir: string;
	configPath: string;
	/** Prosody's log (debug level) and console output so far. */
	log(): string;
	/** Waits until the log matches `pattern` (after offset `from`); rejects after `ms`. */
	waitForLog(pattern: RegExp | string, ms?: number, from?: number): Promise<string>;
	/** Routes a remote domain to `address`:`port` from now on (read at each s2s lookup). */
	setRoute(domain: string, address: string, port: number): void;
	removeRoute(domain: string): void;
	/** Creates an account on `domain` (prosodyctl register; works while running). */
	addUser(user: string, password: string): Promise<void>;
	/** The exit code once it has exited (null while running, or killed by a signal). */
	exitCode(): number | null;
	/** Stops Prosody (SIGTERM, then SIGKILL after 5 s), keeping `dir`. */
	halt(): Promise<void>;
	/** Starts it again on the same ports and data (after `halt`). */
	restart(): Promise<void>;
	/** Stops Prosody (SIGTERM, then SIGKILL after 5 s) and removes `dir`. */
	stop(): Promise<void>;
}

/** A Lua string literal (decimal escapes for what could break out of the quotes). */
function lua(s: string): string {
	return `"${s.replace(/[\\"\n\r\0]/g, (c) => `\\${c.charCodeAt(0)}`)}"`;
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

/**
 * The routing plugin (see the top of this file). `adns.resolver` is looked up by
 * net.resolvers.service and net.resolvers.basic at each connection attempt, so replacing it
 * on the shared module table takes effect for every later s2s connection. Exported for the
 * bench's Prosody instances (bench/lib/targets.ts), which load it the same way: the file
 * `mod_test_s2s_routes.lua` in a `plugin_paths` directory, `test_s2s_routes_file` naming the
 * routes file.
 */
export const ROUTES_PLUGIN = `-- Test-only (Parley's test/helpers/prosody.ts): answers the s2s SRV lookup of the
-- domains listed in test_s2s_routes_file ("domain address port" lines) with that address and
-- port, so Prosody reaches a test server on loopback without DNS. Other lookups are untouched.
module:set_global();

local adns = require "net.adns";
local routes_file = module:get_option_string("test_s2s_routes_file");

local function route_for(domain)
	local f = routes_file and io.open(routes_file);
	if not f then return nil; end
	for line in f:lines() do
		local d, address, port = line:match("^(%S+)%s+(%S+)%s+(%d+)%s*$");
		if d == domain then
			f:close();
			return address, tonumber(port);
		end
	end
	f:close();
end

local original_resolver = adns.resolver;
adns.resolver = function (...)
	local real = original_resolver(...);
	local r = setmetatable({}, { __index = function (_, k)
		local v = real[k];
		if type(v) == "function" then return function (_, ...) return v(real, ...); end end
		return v;
	end });
	function r:lookup(handler, qname, qtype, qclass)
		local service, domain = tostring(qname):lower():match("^_(xmpps?%-server)%._tcp%.(.-)%.?$");
		if qtype == "SRV" and domain then
			local address, port = route_for(domain);
			if address then
				module:log("info", "test route: %s -> %s port %d", qname, address, port);
				local answer = {};
				if service == "xmpp-server" then
					answer[1] = { srv = { priority = 0, weight = 0, port = port, target = address } };
				end
				handler(answer);
				return;
			end
		end
		return real:lookup(handler, qname, qtype, qclass);
	end
	return r;
end

function module.unload()
	adns.resolver = original_resolver;
end
`;

/** Starts a private Prosody; rejects (with its log) if it does not come up within 15 s. */
export async function startProsody(opts: ProsodyOptions = {}): Promise<ProsodyServer> {
	const domain = opts.domain ?? "prosody.test";
	const muc = opts.muc;
	const address = opts.address ?? "127.0.0.1";
	const cert = opts.cert ?? (await serverCert(muc ? [domain, muc] : [domain]));
	const dir = mkdtempSync(join(tmpdir(), "parley-prosody-"));
	const dataDir = join(dir, "data");
	const pluginDir = join(dir, "plugins");
	const certsDir = join(dir, "certs");
	for (const d of [dataDir, pluginDir, certsDir]) mkdirSync(d);
	const configPath = join(dir, "prosody.cfg.lua");
	const logPath = join(dir, "prosody.log");
	const routesPath = join(dir, "s2s-routes.txt");
	writeFileSync(join(pluginDir, "mod_test_s2s_routes.lua"), ROUTES_PLUGIN);

	const routes = new Map<string, string>();
	const writeRoutes = () =>
		writeFileSync(routesPath, [...routes].map(([d, target]) => `${d} ${target}\n`).join(""));
	for (const [d, r] of Object.entries(opts.routes ?? {})) routes.set(d, `${r.address} ${r.port}`);
	writeRoutes();

	const modules = [
		"roster",
		"saslauth",
		"tls",
		...(opts.dialback === false ? [] : ["dialback"]),
		"disco",
		"ping",
		"test_s2s_routes",
		...(opts.modules ?? []),
	];
	const hostSsl = `ssl = { certificate = ${lua(cert.certPath)}; key = ${lua(cert.keyPath)}; }`;
	const writeConfig = (c2sPort: number, s2sPort: number) =>
		writeFileSync(
			configPath,
			[
				"-- Written by Parley's test/helpers/prosody.ts for one test; removed when it stops.",
				"run_as_root = true",
				`pidfile = ${lua(join(dir, "prosody.pid"))}`,
				`data_path = ${lua(dataDir)}`,
				`certificates = ${lua(certsDir)}`,
				`plugin_paths = { ${lua(pluginDir)} }`,
				`log = { { levels = { min = "debug" }, to = "file", filename = ${lua(logPath)} }; { levels = { min = "error" }, to = "console" } }`,
				`modules_enabled = { ${modules.map(lua).join("; ")} }`,
				'authentication = "internal_hashed"',
				"allow_registration = false",
				"c2s_require_encryption = true",
				`s2s_require_encryption = ${opts.requireEncryption !== false}`,
				`s2s_secure_auth = ${opts.secureAuth === true}`,
				`c2s_ports = { ${c2sPort} }`,
				`c2s_interfaces = { ${lua(address)} }`,
				`s2s_ports = { ${s2sPort} }`,
				`s2s_interfaces = { ${lua(address)} }`,
				"c2s_direct_tls_ports = { }",
				"s2s_direct_tls_ports = { }",
				"legacy_ssl_ports = { }",
				`test_s2s_routes_file = ${lua(routesPath)}`,
				...(opts.trustCa ? [`ssl = { cafile = ${lua(opts.trustCa)}; }`] : []),
				opts.extraConfig ?? "",
				"",
				`VirtualHost ${lua(domain)}`,
				`\t${hostSsl}`,
				...(muc ? ["", `Component ${lua(muc)} "muc"`, `\t${hostSsl}`] : []),
				"",
			].join("\n"),
		);

	const addUser = async (user: string, password: string) => {
		try {
			await run(PROSODYCTL, ["--config", configPath, "register", user, domain, password]);
		} catch (err) {
			const e = err as { stdout?: string; stderr?: string; message: string };
			throw new Error(`prosodyctl register ${user}@${domain} failed: ${e.stderr || e.message}`);
		}
	};
	writeConfig(0, 0);
	for (const [user, password] of opts.users ?? []) await addUser(user, password);

	let console_ = "";
	const log = () => {
		let text = "";
		try {
			text = readFileSync(logPath, "utf8");
		} catch {}
		return console_ ? `${text}\n--- console ---\n${console_}` : text;
	};

	// The ports are free when picked, but another process may take one before Prosody binds it
	// (Prosody then logs the error and runs on): start again on new ports, a few times.
	let child: ChildProcess | undefined;
	let exited: Promise<void> = Promise.resolve();
	const killOnExit = () => child?.kill("SIGKILL");
	process.once("exit", killOnExit);
	const halt = async () => {
		const c = child;
		if (c && c.exitCode === null && c.signalCode === null) {
			c.kill("SIGTERM");
			const t = setTimeout(() => c.kill("SIGKILL"), 5000);
			await exited;
			clearTimeout(t);
		}
	};
	let stopped = false;
	const stop = async () => {
		if (stopped) return;
		stopped = true;
		await halt();
		process.removeListener("exit", killOnExit);
		rmSync(dir, { recursive: true, force: true });
	};
	const fail = async (why: string): Promise<never> => {
		const text = log();
		await stop();
		throw new Error(`${why}:\n${text}`);
	};

	/** Spawns Prosody on these ports; "taken" when another process had one of them. */
	const spawnOn = async (c2sPort: number, s2sPort: number): Promise<"ok" | "taken"> => {
		writeConfig(c2sPort, s2sPort);
		rmSync(logPath, { force: true });
		console_ = "";
		const c = spawn(PROSODY, ["--config", configPath, "-F"], {
			stdio: ["ignore", "pipe", "pipe"],
		});
		child = c;
		exited = new Promise<void>((resolve) => c.once("exit", () => resolve()));
		const collect = (d: string) => {
			console_ += d;
		};
		c.stdout?.setEncoding("utf8").on("data", collect);
		c.stderr?.setEncoding("utf8").on("data", collect);

		const ready = [
			`Activated service 'c2s' on [${address}]:${c2sPort}`,
			`Activated service 's2s' on [${address}]:${s2sPort}`,
		];
		const deadline = Date.now() + 15_000;
		for (;;) {
			if (c.exitCode !== null || c.signalCode !== null)
				return fail(`prosody exited (${c.exitCode ?? c.signalCode}) at start`);
			const text = log();
			if (text.includes("Failed to open server port")) return "taken";
			if (
				ready.every((line) => text.includes(line)) &&
				(await canConnect(address, c2sPort)) &&
				(await canConnect(address, s2sPort))
			)
				return "ok";
			if (Date.now() > deadline)
				return fail(`prosody did not listen on ${c2sPort}/${s2sPort} within 15 s`);
			await new Promise((r) => setTimeout(r, 50));
		}
	};

	let c2sPort = 0;
	let s2sPort = 0;
	for (let attempt = 1; ; attempt++) {
		c2sPort = await freePort(address);
		s2sPort = await freePort(address);
		if ((await spawnOn(c2sPort, s2sPort)) === "ok") break;
		if (attempt === 3) return fail("prosody could not bind its ports 3 times");
		await halt();
	}

	return {
		domain,
		muc,
		address,
		c2sPort,
		s2sPort,
		cert,
		dir,
		dataDir,
		configPath,
		log,
		async waitForLog(pattern, ms = 10_000, from = 0) {
			const end = Date.now() + ms;
			for (;;) {
				const text = log().slice(from);
				if (typeof pattern === "string" ? text.includes(pattern) : pattern.test(text)) return text;
				if (Date.now() > end) throw new Error(`no ${pattern} in Prosody's log within ${ms} ms`);
				await new Promise((r) => setTimeout(r, 50));
			}
		},
		setRoute(d, a, p) {
			routes.set(d, `${a} ${p}`);
			writeRoutes();
		},
		removeRoute(d) {
			routes.delete(d);
			writeRoutes();
		},
		addUser,
		exitCode: () => child?.exitCode ?? null,
		halt,
		async restart() {
			if ((await spawnOn(c2sPort, s2sPort)) !== "ok")
				throw new Error(`prosody could not bind ${c2sPort}/${s2sPort} again`);
		},
		stop,
	};
}
