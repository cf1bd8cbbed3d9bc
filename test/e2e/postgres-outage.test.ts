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
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { createServer } from "../../src/app/server.ts";
import { configSchema } from "../../src/core/config/schema.ts";
import { createLogger } from "../../src/core/log.ts";
import type { Server } from "../../src/core/server.ts";
import { PostgresBackend } from "../../src/storage/postgres.ts";
import { type PgCluster, pgClusterSkip, startPgCluster } from "../helpers/pg-cluster.ts";
import type { RawClient } from "../helpers/raw.ts";
import { iq } from "../helpers/raw-stanzas.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

/** Sends `xml` and waits for the answer with id `id` (a 20 s safety net); returns it. */
const ask = (c: RawClient, id: string, xml: string) => iq(c, id, xml, 20_000);

const typeOf = (iq: string) => /^<iq\b[^>]*\btype=["'](\w+)["']/.exec(iq)?.[1];

const rosterSet = (id: string, contact: string) =>
	`<iq type='set' id='${id}'><query xmlns='jabber:iq:roster'><item jid='${contact}'/></query></iq>`;
const ping = (id: string) =>
	`<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`;

describe("PostgreSQL down under a running Parley: clients get errors, then service again (issue 4)", {
	skip: pgClusterSkip,
	timeout: 60_000,
}, () => {
	let pg: PgCluster | undefined;
	let server: Server | undefined;

	before(async () => {
		pg = await startPgCluster("parley-pgoutage-");
	});

	after(async () => {
		await server?.stop().catch(() => {});
		pg?.destroy();
	});

	test("storage requests answer internal-server-error while it is down, pings are answered, the same request succeeds once it is back", async () => {
		const cluster = pg as PgCluster;
		const storage = new PostgresBackend({
			url: cluster.url,
			connectTimeoutMs: 1000,
			queryTimeoutMs: 5000,
			poolSize: 4,
			onError: () => {}, // idle connections dying with the database: expected here
		});
		await storage.open();
		const config = configSchema.parse({
			server: { data_dir: join(cluster.dir, "parley") },
			listeners: {
				c2s: { address: "127.0.0.1", port: 0 },
				c2s_direct_tls: { enabled: false },
				http: { enabled: false },
				https: { enabled: false },
				s2s: { enabled: false },
			},
			auth: { require_encryption: false, allow_plain_without_tls: true },
			storage: { backend: "memory" }, // replaced by the PostgresBackend below
		});
		const log = createLogger({
			level: process.env.PARLEY_TEST_LOG ?? "silent",
			format: "json",
			destination: 2,
		});
		server = createServer(config, { log, storage });
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

			cluster.stop();

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

			cluster.start();

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
