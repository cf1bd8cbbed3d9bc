// node bench/mam.ts [--backend sqlite|postgres]... [--users N] [--per-user N] [--queries N]
//                    [--xmpp-queries N] [--vacuum]
//
// XEP-0313 archive volume (issue 14): fills --users (1000) x --per-user (1000) archived chat
// messages (1,000,000) straight through the storage backend, into the store the mam module
// uses, then times --queries (2000) 50-message pages through the module's own query path
// (parseQuery + runQuery of src/modules/mam/protocol.ts: page, RSM count and first index, each
// message parsed as the server does before sending it) for random users, in the mixes clients
// use: the newest page (empty <before/>, Conversations/Monal catch-up), the page before it (RSM
// <before>id and #extended before-id), one conversation (`with`) newest page, forwards from a
// start date, a start+end range, the newest page up to an end date, and 10 messages by #extended
// ids. Then --xmpp-queries (500) MAM IQ round trips over a real c2s connection (@xmpp/client,
// STARTTLS) to a server started on the same database. p50/p95/p99/max per mix.
// SQLite: a fresh file under a temporary directory; PostgreSQL: 127.0.0.1:5432 database `test`,
// a private schema dropped at the end (PARLEY_TEST_PG overrides the URL).
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { xml as x } from "@xmpp/client";
import pg from "pg";
import { DEFAULT_HOST_MODULES } from "../src/core/config/schema.ts";
import { type ArchivedMessage, parseQuery, runQuery } from "../src/modules/mam/protocol.ts";
import { PostgresBackend } from "../src/storage/postgres.ts";
import { SqliteBackend } from "../src/storage/sqlite.ts";
import type { StorageBackend } from "../src/storage/types.ts";
import { parseDocument } from "../src/xml/parser.ts";
import { startTestServer } from "../test/helpers/server.ts";
import { connect } from "../test/helpers/xmpp-client.ts";

const args = process.argv.slice(2);
const opt = (name: string, def: number) => {
	const i = args.indexOf(`--${name}`);
	return i >= 0 ? Number(args[i + 1]) : def;
};
const backends = args.flatMap((a, i) => (args[i - 1] === "--backend" ? [a] : []));
const USERS = opt("users", 1000);
const PER_USER = opt("per-user", 1000);
const QUERIES = opt("queries", 2000);
const XMPP_QUERIES = opt("xmpp-queries", 500);
const PEERS = 20;
const HOST = "localhost";
const PG_URL = process.env.PARLEY_TEST_PG ?? "postgres://postgres@127.0.0.1:5432/test";
const T0 = Date.UTC(2024, 0, 1);

const body = (i: number) =>
	`Message number ${i}: the quick brown fox jumps over the lazy dog, as it always does.`;
const xml = (user: string, peer: string, i: number, out: boolean) =>
	`<message xmlns="jabber:client" type="chat" id="${user}-${i}" from="${out ? user : peer}@${HOST}/phone" to="${out ? peer : user}@${HOST}"><body>${body(i)}</body><active xmlns="http://jabber.org/protocol/chatstates"/><origin-id xmlns="urn:xmpp:sid:0" id="o-${user}-${i}"/></message>`;

async function fill(b: StorageBackend): Promise<number> {
	const store = b.archive<ArchivedMessage>(HOST, "mam");
	const t = performance.now();
	// Time-ordered like a live server: message i of every user at T0 + i minutes (+ user offset).
	const BATCH = 5000;
	let pending: Promise<string>[] = [];
	for (let i = 0; i < PER_USER; i++) {
		for (let u = 0; u < USERS; u++) {
			const user = `u${u}`;
			const peer = `u${(u + 1 + (i % PEERS)) % USERS}`;
			pending.push(
				store.append(user, {
					value: { xml: xml(user, peer, i, i % 2 === 0) },
					with: `${peer}@${HOST}`,
					when: T0 + i * 60_000 + u,
				}),
			);
			if (pending.length >= BATCH) {
				await Promise.all(pending);
				pending = [];
			}
		}
		if (i % 100 === 99) process.stderr.write(`  ${((i + 1) * USERS).toLocaleString()} appended\n`);
	}
	await Promise.all(pending);
	return (performance.now() - t) / 1000;
}

const q = (inner: string) =>
	parseDocument(`<query xmlns="urn:xmpp:mam:2">${inner}</query>`, {
		maxStanzaBytes: 1 << 20,
		maxDepth: 64,
	});
const FORM = (fields: string) =>
	`<x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE"><value>urn:xmpp:mam:2</value></field>${fields}</x>`;
const RSM = (s: string) => `<set xmlns="http://jabber.org/protocol/rsm"><max>50</max>${s}</set>`;

function pct(xs: number[], p: number): number {
	const s = [...xs].sort((a, b) => a - b);
	return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
}

async function measure(b: StorageBackend) {
	const store = b.archive<ArchivedMessage>(HOST, "mam");
	const limits = { defaultPage: 50, maxPage: 250 };
	let sent = 0;
	/** The ids of the last page, for the `ids` mix. */
	let lastIds: string[] = [];
	const send = (item: { id: string }, el: { toString(): string }) => {
		// What the server does with each result: serialise it onto the stream.
		sent += el.toString().length > 0 ? 1 : 0;
		lastIds.push(item.id);
	};
	const mixes: Record<string, number[]> = {
		"newest page (empty <before/>)": [],
		"page before the newest (before=id)": [],
		"page before an id (#extended before-id)": [],
		"one conversation, newest page (with)": [],
		"forwards from a start date (start)": [],
		"a 2-hour range (start and end)": [],
		"newest page up to a date (end)": [],
		"10 messages by id (#extended ids)": [],
	};
	/** Messages sent per mix, for the mean page size. */
	const results: Record<string, number> = {};
	const run = async (mix: string, query: ReturnType<typeof q>, user: string) => {
		const t = performance.now();
		const before = sent;
		const fin = await runQuery(store, user, parseQuery(query, limits), send);
		(mixes[mix] as number[]).push(performance.now() - t);
		results[mix] = (results[mix] ?? 0) + sent - before;
		return fin;
	};
	// Warm-up: statements prepared, caches primed as on a running server.
	for (let i = 0; i < 50; i++)
		await run("newest page (empty <before/>)", q(RSM("<before/>")), `u${i}`);
	for (const k of Object.keys(mixes)) (mixes[k] as number[]).length = 0;
	for (const k of Object.keys(results)) delete results[k];
	for (let n = 0; n < QUERIES; n++) {
		const u = Math.floor(Math.random() * USERS);
		const user = `u${u}`;
		lastIds = [];
		const fin = await run("newest page (empty <before/>)", q(RSM("<before/>")), user);
		const newest = lastIds;
		const first = fin.getChild("set")?.getChildText("first");
		await run("page before the newest (before=id)", q(RSM(`<before>${first}</before>`)), user);
		// XEP-0313 #extended before-id: paging backwards by the form, as Conversations does.
		await run(
			"page before an id (#extended before-id)",
			q(`${FORM(`<field var="before-id"><value>${first}</value></field>`)}${RSM("<before/>")}`),
			user,
		);
		const peer = `u${(u + 1 + (n % PEERS)) % USERS}@${HOST}`;
		await run(
			"one conversation, newest page (with)",
			q(`${FORM(`<field var="with"><value>${peer}</value></field>`)}${RSM("<before/>")}`),
			user,
		);
		const start = new Date(T0 + Math.floor(Math.random() * PER_USER) * 60_000).toISOString();
		await run(
			"forwards from a start date (start)",
			q(`${FORM(`<field var="start"><value>${start}</value></field>`)}${RSM("")}`),
			user,
		);
		const from = T0 + Math.floor(Math.random() * (PER_USER - 120)) * 60_000;
		const range = `<field var="start"><value>${new Date(from).toISOString()}</value></field><field var="end"><value>${new Date(from + 2 * 3_600_000).toISOString()}</value></field>`;
		await run("a 2-hour range (start and end)", q(`${FORM(range)}${RSM("")}`), user);
		const end = new Date(T0 + Math.floor(Math.random() * PER_USER) * 60_000).toISOString();
		await run(
			"newest page up to a date (end)",
			q(`${FORM(`<field var="end"><value>${end}</value></field>`)}${RSM("<before/>")}`),
			user,
		);
		// Ten of the newest page's ids, as a client fetching the messages a reply or a
		// reaction points at (XEP-0313 #extended, §4.1.3 of 1.1).
		const ids = newest.filter((_, i) => i % 5 === 0).slice(0, 10);
		await run(
			"10 messages by id (#extended ids)",
			q(
				`${FORM(`<field var="ids">${ids.map((id) => `<value>${id}</value>`).join("")}</field>`)}${RSM("")}`,
			),
			user,
		);
	}
	return { mixes, sent, results };
}

/**
 * The same archive behind a real server: Parley started on the filled database (mam in its
 * modules), 10 of the users logged in with @xmpp/client over a TCP socket with STARTTLS, and
 * --xmpp-queries MAM IQs timed from sending the `<iq type='set'>` to its result, after the 50
 * `<message><result/></message>` before it (XEP-0313 §4.2, §5): the newest page and the page
 * before it. The client runs in the bench process, the server too: both share one event loop.
 */
async function overXmpp(storage: Record<string, unknown>, dataDir: string) {
	const ts = await startTestServer({
		storage: "sqlite", // the server opens its own backend from `storage` (sqlite or postgres)
		dataDir,
		config: {
			hosts: { [HOST]: { modules: [...DEFAULT_HOST_MODULES, "mam"] } },
			storage,
		} as never, // a partial config; startTestServer validates it with the schema
		users: Array.from({ length: 10 }, (_, i) => [`u${i}@${HOST}`, "secret"]),
	});
	const clients = await Promise.all(
		Array.from({ length: 10 }, (_, i) =>
			connect(`xmpp://127.0.0.1:${ts.port}`, `u${i}`, "secret", { timeout: 30_000 }),
		),
	);
	// Nagle off on the client's socket as on the server's (src/c2s/tcp.ts), else a request
	// written in two pieces waits for the server's delayed ACK (40 ms on Linux).
	for (const c of clients) {
		let sock = (c.xmpp as unknown as { socket?: unknown }).socket;
		while (sock && typeof sock === "object") {
			const s = sock as { setNoDelay?: (on: boolean) => void; socket?: unknown };
			s.setNoDelay?.(true);
			sock = s.socket;
		}
	}
	const mixes: Record<string, number[]> = {
		"XMPP: newest page (empty <before/>)": [],
		"XMPP: the page before it (<before>id)": [],
	};
	let results = 0;
	const page = async (c: (typeof clients)[number], before: string) => {
		const n0 = c.stanzas.length;
		const answer = await c.xmpp.iqCaller.request(
			x(
				"iq",
				{ type: "set" },
				x(
					"query",
					{ xmlns: "urn:xmpp:mam:2", queryid: "q" },
					x(
						"set",
						{ xmlns: "http://jabber.org/protocol/rsm" },
						x("max", {}, "50"),
						x("before", {}, before),
					),
				),
			),
			30_000,
		);
		results += c.stanzas.slice(n0).filter((st) => st.name === "message").length;
		c.stanzas.length = 0;
		return answer.getChild("fin")?.getChild("set")?.getChildText("first") ?? "";
	};
	try {
		for (let i = 0; i < 20; i++) await page(clients[i % 10] as (typeof clients)[number], "");
		results = 0;
		for (let n = 0; n < XMPP_QUERIES; n++) {
			const c = clients[Math.floor(Math.random() * 10)] as (typeof clients)[number];
			let t = performance.now();
			const first = await page(c, "");
			mixes["XMPP: newest page (empty <before/>)"]?.push(performance.now() - t);
			t = performance.now();
			await page(c, first);
			mixes["XMPP: the page before it (<before>id)"]?.push(performance.now() - t);
		}
	} finally {
		for (const c of clients) await c.xmpp.stop().catch(() => {});
		await ts.stop();
	}
	return { mixes, perPage: results / (2 * XMPP_QUERIES) };
}

async function main() {
	const which = backends.length ? backends : ["sqlite", "postgres"];
	for (const name of which) {
		const dir = mkdtempSync(join(tmpdir(), "parley-bench-mam-"));
		const schema = `parley_bench_mam_${process.pid}`;
		const b: StorageBackend =
			name === "sqlite"
				? new SqliteBackend(join(dir, "parley.db"))
				: new PostgresBackend({ url: PG_URL, schema });
		try {
			console.log(`\n## ${name}: ${(USERS * PER_USER).toLocaleString()} messages, ${USERS} users`);
			const secs = await fill(b);
			console.log(
				`fill: ${secs.toFixed(1)} s (${Math.round((USERS * PER_USER) / secs)} appends/s)`,
			);
			if (name === "postgres" && args.includes("--vacuum")) {
				// What autovacuum's insert-triggered run (PostgreSQL 13+) does on a live server:
				// the visibility map lets counts use index-only scans.
				const c = new pg.Client({ connectionString: PG_URL });
				await c.connect();
				await c.query(`VACUUM ANALYZE "${schema}".parley_archive`);
				await c.end();
				console.log("VACUUM ANALYZE after the fill");
			}
			if (name === "sqlite") {
				const size = statSync(join(dir, "parley.db")).size;
				console.log(`file: ${(size / 2 ** 20).toFixed(0)} MiB`);
			}
			const { mixes, sent, results } = await measure(b);
			await b.close();
			const xm = await overXmpp(
				name === "sqlite"
					? { backend: "sqlite", path: "parley.db" }
					: { backend: "postgres", url: PG_URL, schema },
				dir,
			);
			for (const [k, v] of Object.entries(xm.mixes)) {
				mixes[k] = v;
				results[k] = xm.perPage * v.length;
			}
			console.log(
				`${QUERIES} queries per mix in process, ${XMPP_QUERIES} per XMPP mix; 50 messages a page (${sent} results sent in process)`,
			);
			console.log("| query | p50 ms | p95 ms | p99 ms | max ms | messages/page |");
			console.log("| --- | --- | --- | --- | --- | --- |");
			for (const [mix, xs] of Object.entries(mixes)) {
				// --xmpp-queries 0 leaves the XMPP mixes empty: nothing to print for them.
				if (!xs.length) continue;
				console.log(
					`| ${mix} | ${pct(xs, 50).toFixed(2)} | ${pct(xs, 95).toFixed(2)} | ${pct(xs, 99).toFixed(2)} | ${Math.max(...xs).toFixed(2)} | ${((results[mix] ?? 0) / xs.length).toFixed(1)} |`,
				);
			}
		} finally {
			await b.close();
			rmSync(dir, { recursive: true, force: true });
			if (name === "postgres") {
				const c = new pg.Client({ connectionString: PG_URL });
				await c.connect();
				await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
				await c.end();
			}
		}
	}
}

await main();
