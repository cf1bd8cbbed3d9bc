/**
 * Web transports with 1 and 2 workers (issue 16), against a real `parley serve --workers N`
 * child (SQLite, the local Redis under a private prefix for N > 1):
 * - WebSocket logins: --logins RFC 7395 sessions opened --concurrency at a time over loopback,
 *   each doing SASL PLAIN, the stream restart and resource binding, then closing; logins/s and
 *   the server's CPU (all its processes) per login. The client is raw `ws` with fixed XML, so
 *   that its own cost stays small beside the server's on a machine it shares.
 * - BOSH hand-over: one session (hold=1), 300 requests each on a connection of its own; each
 *   new request releases the held one (XEP-0124 §11), and the time from sending it to the held
 *   one's answer is the round trip. With 2 workers about half the requests land on the worker
 *   not holding the session and are handed over through Redis.
 * No gating: it prints a table.
 *
 *     npx node bench/ws-logins.ts [--logins 600] [--concurrency 40] [--runs 2]
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import { cpuSeconds, processTree } from "./lib/proc.ts";

const arg = (name: string, d: number) => {
	const i = process.argv.indexOf(`--${name}`);
	return i > 0 ? Number(process.argv[i + 1]) : d;
};
const LOGINS = arg("logins", 600);
const CONCURRENCY = arg("concurrency", 40);
const RUNS = arg("runs", 2);
const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "bin/parley.js");
const USERS = 4;

function freePort(): Promise<number> {
	return new Promise((res, rej) => {
		const s = net.createServer().listen(0, "127.0.0.1", () => {
			const a = s.address();
			s.close(() => (a && typeof a === "object" ? res(a.port) : rej(new Error("no port"))));
		});
	});
}

const OPEN =
	"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0' xml:lang='en'/>";

/** One RFC 7395 login: open, PLAIN, restart, bind; resolves once bound, then closes. */
function login(url: string, user: string, n: number): Promise<void> {
	return new Promise((resolve, reject) => {
		const ws = new WebSocket(url, "xmpp");
		let step = 0;
		ws.on("error", reject);
		ws.on("open", () => ws.send(OPEN));
		ws.on("message", (data) => {
			const s = data.toString();
			if (step === 0 && s.includes("<stream:features") && s.includes("PLAIN")) {
				step = 1;
				const auth = Buffer.from(`\0${user}\0pw-${user}`).toString("base64");
				ws.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${auth}</auth>`);
			} else if (step === 1 && s.includes("<success")) {
				step = 2;
				ws.send(OPEN);
			} else if (step === 1 && s.includes("<failure")) {
				reject(new Error(s));
			} else if (step === 2 && s.includes("<stream:features")) {
				step = 3;
				ws.send(
					`<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r${n}</resource></bind></iq>`,
				);
			} else if (step === 3 && (s.includes("id='b'") || s.includes('id="b"'))) {
				step = 4;
				ws.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>");
				ws.close();
				resolve();
			}
		});
	});
}

async function serve(workers: number): Promise<{ child: ChildProcess; port: number; dir: string }> {
	const dir = mkdtempSync(join(tmpdir(), "parley-wsbench-"));
	const port = await freePort();
	const prefix = `parley-wsbench-${process.pid}-${workers}`;
	const toml = join(dir, "parley.toml");
	writeFileSync(
		toml,
		[
			"[server]",
			`data_dir = ${JSON.stringify(dir)}`,
			`workers = ${workers}`,
			"[auth]",
			"require_encryption = false",
			"allow_plain_without_tls = true",
			"[limits]",
			"connections_per_ip = 0",
			"unauthenticated_per_ip = 0",
			"[listeners.c2s]",
			"enabled = false",
			"[listeners.c2s_direct_tls]",
			"enabled = false",
			"[listeners.http]",
			'address = "127.0.0.1"',
			`port = ${port}`,
			"[listeners.https]",
			"enabled = false",
			"[listeners.s2s]",
			"enabled = false",
			"[log]",
			'level = "warn"',
			"[cluster]",
			`prefix = ${JSON.stringify(prefix)}`,
		].join("\n"),
	);
	for (let u = 0; u < USERS; u++)
		execFileSync(process.execPath, [
			BIN,
			"user",
			"add",
			`u${u}@localhost`,
			"--config",
			toml,
			"--password",
			`pw-u${u}`,
		]);
	const pidfile = join(dir, "parley.pid");
	const child = spawn(process.execPath, [BIN, "serve", "--config", toml, "--pidfile", pidfile], {
		stdio: ["ignore", "ignore", "inherit"],
	});
	const deadline = Date.now() + 30_000;
	while (!existsSync(pidfile)) {
		if (Date.now() > deadline) throw new Error("the server did not start");
		await new Promise((r) => setTimeout(r, 50));
	}
	return { child, port, dir };
}

function post(port: number, body: string): Promise<string> {
	return new Promise((resolve, reject) => {
		const req = http.request(
			{ host: "127.0.0.1", port, path: "/http-bind", method: "POST", agent: false },
			(res) => {
				let text = "";
				res.on("data", (c) => (text += c));
				res.on("end", () => resolve(text));
				res.on("error", reject);
			},
		);
		req.on("error", reject);
		req.end(body);
	});
}

/** Mean ms from a new BOSH request to the answer of the one it releases. */
async function boshRoundTrip(port: number, n: number): Promise<number> {
	const NS = "http://jabber.org/protocol/httpbind";
	let rid = 1000;
	const created = await post(
		port,
		`<body xmlns='${NS}' rid='${rid++}' to='localhost' wait='60' hold='1' ver='1.11' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'/>`,
	);
	const sid = /sid=["']([^"']+)/.exec(created)?.[1];
	if (!sid) throw new Error(`no BOSH session: ${created}`);
	const req = () => post(port, `<body xmlns='${NS}' rid='${rid++}' sid='${sid}'/>`);
	let held = req();
	await new Promise((r) => setTimeout(r, 50));
	let total = 0;
	for (let i = 0; i < n; i++) {
		const t0 = performance.now();
		const next = req();
		await held;
		total += performance.now() - t0;
		held = next;
	}
	await post(port, `<body xmlns='${NS}' rid='${rid++}' sid='${sid}' type='terminate'/>`);
	await held;
	return total / n;
}

async function measure(workers: number): Promise<{ rate: number; cpuMs: number; boshMs: number }> {
	const { child, port, dir } = await serve(workers);
	const url = `ws://127.0.0.1:${port}/xmpp-websocket`;
	try {
		// Warm-up: the JIT and the storage's caches.
		await Promise.all(Array.from({ length: 20 }, (_, i) => login(url, `u${i % USERS}`, i)));
		let next = 0;
		const pids = processTree(child.pid as number);
		const cpu0 = cpuSeconds(pids);
		const t0 = performance.now();
		const lane = async () => {
			while (next < LOGINS) {
				const n = next++;
				await login(url, `u${n % USERS}`, n);
			}
		};
		await Promise.all(Array.from({ length: CONCURRENCY }, lane));
		const rate = LOGINS / ((performance.now() - t0) / 1000);
		const cpuMs = ((cpuSeconds(pids) - cpu0) * 1000) / LOGINS;
		return { rate, cpuMs, boshMs: await boshRoundTrip(port, 300) };
	} finally {
		const exited = new Promise((r) => child.once("exit", r));
		child.kill("SIGTERM");
		await exited;
		rmSync(dir, { recursive: true, force: true });
	}
}

console.log(`${LOGINS} WebSocket logins, ${CONCURRENCY} at a time; 300 BOSH requests; loopback`);
console.log("run | workers | logins/s | server CPU ms/login | BOSH round trip ms");
for (let r = 1; r <= RUNS; r++)
	for (const workers of [1, 2]) {
		const m = await measure(workers);
		console.log(
			`${r}   | ${workers}       | ${m.rate.toFixed(0).padStart(8)} | ${m.cpuMs.toFixed(2).padStart(19)} | ${m.boshMs.toFixed(2)}`,
		);
	}
