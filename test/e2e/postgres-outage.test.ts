/**
 * Issue 4, failure seen from a client: PostgreSQL stops under a running Parley. Requests that
 * need storage get an IQ error (never a crash, never silence: RFC 6120 §8.3.1, the server
 * answers every IQ get/set), requests that do not need it keep being served, and once the
 * database is back the same request succeeds without restarting Parley.
 *
 * The shared PostgreSQL on 5432 is not touched: like postgres-failure.test.ts, this runs a
 * private cluster (initdb + pg_ctl) in a temporary directory on a free port, and skips when the
 * binaries are missing.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { configSchema } from "../../src/core/config/schema.ts";
import { createLogger } from "../../src/core/log.ts";
import { Server } from "../../src/core/server.ts";
import { PostgresBackend } from "../../src/storage/postgres.ts";
import type { RawClient } from "../helpers/raw.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

function findBin(): string | undefined {
	const root = "/usr/lib/postgresql";
	if (!existsSync(root)) return undefined;
	for (const v of readdirSync(root).sort().reverse()) {
		const bin = join(root, v, "bin");
		if (existsSync(join(bin, "initdb")) && existsSync(join(bin, "pg_ctl"))) return bin;
	}
	return undefined;
}

/** PostgreSQL refuses to run as root: run its tools as the postgres user then. */
function pgUser(): { uid: number; gid: number } | undefined {
	if (process.getuid?.() !== 0) return undefined;
	const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"]).toString().trim());
	return { uid: id("-u"), gid: id("-g") };
}

function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const s = createServer();
		s.once("error", reject);
		s.listen(0, "127.0.0.1", () => {
			const { port } = s.address() as { port: number };
			s.close(() => resolve(port));
		});
	});
}

const bin = findBin();
let skip: string | false = bin ? false : "PostgreSQL server binaries (initdb, pg_ctl) not found";
if (!skip && process.getuid?.() === 0) {
	try {
		pgUser();
	} catch {
		skip = "running as root and there is no postgres user to run the private cluster";
	}
}

/** Sends `xml` and waits for the answer with id `id` (a 20 s safety net); returns it. */
async function ask(c: RawClient, id: string, xml: string): Promise<string> {
	const mark = c.received.length;
	c.send(xml);
	const re = new RegExp(`<iq\\b[^>]*\\bid=["']${id}["'][^>]*?(/>|>[\\s\\S]*?</iq>)`);
	const text = await c.waitFor(re, mark, 20_000);
	return (re.exec(text) as RegExpExecArray)[0];
}

const typeOf = (iq: string) => /^<iq\b[^>]*\btype=["'](\w+)["']/.exec(iq)?.[1];

const rosterSet = (id: string, contact: string) =>
	`<iq type='set' id='${id}'><query xmlns='jabber:iq:roster'><item jid='${contact}'/></query></iq>`;
const ping = (id: string) =>
	`<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`;

describe("PostgreSQL down under a running Parley: clients get errors, then service again (issue 4)", {
	skip,
	timeout: 60_000,
}, () => {
	let dir = "";
	let data = "";
	let port = 0;
	let server: Server | undefined;
	const pgctl = (...args: string[]) => {
		const user = pgUser();
		execFileSync(
			join(bin as string, "pg_ctl"),
			["-D", data, "-w", "-l", join(dir, "log"), ...args],
			{
				stdio: "ignore",
				...(user && { uid: user.uid, gid: user.gid }),
			},
		);
	};
	const start = () =>
		pgctl("-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, "start");
	const stop = () => pgctl("-m", "fast", "stop");

	before(async () => {
		dir = mkdtempSync(join(tmpdir(), "parley-pgoutage-"));
		data = join(dir, "data");
		port = await freePort();
		const user = pgUser();
		if (user) {
			chownSync(dir, user.uid, user.gid);
			chmodSync(dir, 0o700);
		}
		execFileSync(
			join(bin as string, "initdb"),
			["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "--no-instructions"],
			{ stdio: "ignore", ...(user && { uid: user.uid, gid: user.gid }) },
		);
		start();
	});

	after(async () => {
		await server?.stop().catch(() => {});
		try {
			pgctl("-m", "immediate", "stop");
		} catch {
			// already stopped
		}
		rmSync(dir, { recursive: true, force: true });
	});

	test("storage requests answer internal-server-error while it is down, pings are answered, the same request succeeds once it is back", async () => {
		const storage = new PostgresBackend({
			url: `postgres://postgres@127.0.0.1:${port}/postgres`,
			connectTimeoutMs: 1000,
			queryTimeoutMs: 5000,
			poolSize: 4,
			onError: () => {}, // idle connections dying with the database: expected here
		});
		await storage.open();
		const config = configSchema.parse({
			server: { data_dir: join(dir, "parley") },
			listeners: {
				c2s: { address: "127.0.0.1", port: 0 },
				c2s_direct_tls: { enabled: false },
				http: { enabled: false },
				https: { enabled: false },
			},
			auth: { require_encryption: false, allow_plain_without_tls: true },
			storage: { backend: "memory" }, // replaced by the PostgresBackend below
		});
		const log = createLogger({
			level: process.env.PARLEY_TEST_LOG ?? "silent",
			format: "json",
			destination: 2,
		});
		server = new Server(config, { log, storage });
		await server.start();
		const host = server.hosts.get("localhost");
		assert.ok(host);
		await host.accounts.create("alice", "pw");
		await host.accounts.create("bob", "pw");
		const c2s = server.port("c2s");
		const alice = await login(c2s, "alice", "pw", { resource: "a" });
		const bob = await login(c2s, "bob", "pw", { resource: "b" });
		try {
			// RFC 6121 §2.3.2: a roster set is answered with a result once stored.
			assert.equal(
				typeOf(await ask(alice, "up1", rosterSet("up1", "before@example.net"))),
				"result",
			);

			stop();

			// RFC 6120 §8.3.3.6 internal-server-error (type cancel) or §8.3.3.18 resource-constraint
			// (type wait): an error reply to each request that needs storage, and the stream stays.
			const condition =
				/<error\b[^>]*\btype=["'](cancel|wait)["'][^>]*>\s*<(internal-server-error|resource-constraint)\b/;
			const failedSet = await ask(alice, "down1", rosterSet("down1", "during@example.net"));
			assert.equal(typeOf(failedSet), "error", failedSet);
			const m1 = condition.exec(failedSet);
			assert.ok(m1, failedSet);
			assert.equal(
				m1[1],
				m1[2] === "resource-constraint" ? "wait" : "cancel",
				"RFC 6120 §8.3.2 error type",
			);
			const vcardGet = await ask(
				alice,
				"down2",
				"<iq type='get' id='down2'><vCard xmlns='vcard-temp'/></iq>",
			);
			assert.equal(typeOf(vcardGet), "error", vcardGet);
			assert.match(vcardGet, condition);

			// XEP-0199 §4.2: the server still answers pings, on another client's stream and on the
			// same stream that just got the errors.
			assert.equal(typeOf(await ask(bob, "ping1", ping("ping1"))), "result");
			assert.equal(typeOf(await ask(alice, "ping2", ping("ping2"))), "result");
			assert.equal(alice.closed || bob.closed, false, "no stream was closed");

			start();

			// The pool reconnects by itself: the same request succeeds without restarting Parley.
			let answer = "";
			for (let i = 0; i < 50; i++) {
				answer = await ask(alice, `again${i}`, rosterSet(`again${i}`, "during@example.net"));
				if (typeOf(answer) === "result") break;
				await new Promise((r) => setTimeout(r, 100));
			}
			assert.equal(typeOf(answer), "result", answer);
			// RFC 6121 §2.1.3: the roster holds the item from before the outage and the new one.
			const roster = await ask(
				alice,
				"rg",
				"<iq type='get' id='rg'><query xmlns='jabber:iq:roster'/></iq>",
			);
			assert.match(roster, /jid=["']before@example\.net["']/);
			assert.match(roster, /jid=["']during@example\.net["']/);
			assert.equal(
				typeOf(await ask(alice, "vg", "<iq type='get' id='vg'><vCard xmlns='vcard-temp'/></iq>")),
				"result",
			);
		} finally {
			alice.end();
			bob.end();
		}
	});
});
