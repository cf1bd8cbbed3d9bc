import assert from "node:assert/strict";
import { after, test } from "node:test";
import pg from "pg";
import { postgresSkip, TEST_PG_URL } from "../../test/helpers/services.ts";
import { AccountManager } from "../auth/accounts.ts";
import { MemoryBackend } from "./memory.ts";
import { PostgresBackend } from "./postgres.ts";
import type { Json, StorageBackend } from "./types.ts";
import { exportPie, importPie } from "./xep0227.ts";

const PG_URL = TEST_PG_URL;
const schema = `parley_test_pie_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;

after(async () => {
	if (postgresSkip) return;
	const c = new pg.Client({ connectionString: PG_URL });
	await c.connect();
	await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
	await c.end();
});

const H = "a.example";

async function fill(b: StorageBackend): Promise<void> {
	const accounts = new AccountManager(b, H, 4096);
	await accounts.create("alice", "secret one");
	await accounts.create("bob", "secret two");
	await b.keyval(H, "roster").set("alice", {
		ver: 3,
		items: {
			"bob@a.example": { name: "Bob & co", groups: ["Friends", "Work"], subscription: "both" },
			"carol@b.example": { groups: [], subscription: "none", ask: true, approved: true },
		},
		pending: {
			"dave@c.example": "<presence xmlns='jabber:client' type='subscribe' from='dave@c.example'/>",
		},
	});
	await b
		.keyval(H, "vcard")
		.set(
			"alice",
			`<vCard xmlns="vcard-temp"><FN>Alice &lt;3</FN><NICKNAME>al 🎉</NICKNAME></vCard>`,
		);
	await b
		.map(H, "private")
		.set(
			"alice",
			"storage storage:bookmarks",
			`<storage xmlns="storage:bookmarks"><conference jid="room@muc.a.example" autojoin="true"/></storage>`,
		);
	await b
		.map(H, "private")
		.set("alice", "roster roster:delimiter", `<roster xmlns="roster:delimiter">::</roster>`);
	for (let i = 0; i < 3; i++) {
		await b.archive(H, "offline").append("bob", {
			value: {
				xml: `<message xmlns="jabber:client" from="alice@a.example/phone" to="bob@a.example" type="chat" id="m${i}"><body>hi ${i}</body></message>`,
			},
			with: "alice@a.example",
			when: 1_700_000_000_000 + i * 1000,
		});
	}
	// PEP (XEP-0163) nodes with their configuration, affiliations and items, in the layout of
	// src/modules/pubsub/store.ts.
	const config = (over: Record<string, Json>) => ({
		title: "",
		access_model: "presence",
		roster_groups_allowed: [],
		max_items: 1,
		persist_items: true,
		deliver_payloads: true,
		max_payload_size: 131072,
		...over,
	});
	await b.keyval(H, "pep").set("alice", {
		nodes: {
			"urn:xmpp:avatar:metadata": {
				config: config({}),
				affiliations: {},
				subscriptions: {},
				created: 1,
			},
			"urn:xmpp:bookmarks:1": {
				config: config({
					access_model: "whitelist",
					max_items: "max",
					roster_groups_allowed: ["a", "b"],
				}),
				affiliations: { "bob@a.example": "member" },
				subscriptions: { "bob@a.example/x": { subid: "s1", state: "subscribed", deliver: true } },
				created: 2,
			},
		},
	});
	const items = b.map(H, "pep_items");
	await items.set("alice", "urn:xmpp:avatar:metadata\nabc", {
		id: "abc",
		publisher: "alice@a.example/phone",
		t: 10,
		xml: `<metadata xmlns="urn:xmpp:avatar:metadata"><info id="abc" type="image/png" bytes="70"/></metadata>`,
	});
	for (const [i, room] of ["r1@muc.a.example", "r2@muc.a.example"].entries())
		await items.set("alice", `urn:xmpp:bookmarks:1\n${room}`, {
			id: room,
			publisher: "alice@a.example/phone",
			t: 20 + i,
			xml: `<conference xmlns="urn:xmpp:bookmarks:1" autojoin="true"/>`,
		});
	// XEP-0313 archive and preferences.
	const mam = b.archive(H, "mam");
	await mam.append("alice", {
		id: "sid-1",
		when: Date.UTC(2024, 0, 1, 12),
		with: "bob@a.example",
		value: {
			xml: `<message xmlns="jabber:client" from="bob@a.example/x" to="alice@a.example" type="chat"><body>hi alice</body></message>`,
		},
	});
	await mam.append("alice", {
		id: "sid-2",
		when: Date.UTC(2024, 0, 1, 12, 1),
		with: "carol@b.example",
		value: {
			xml: `<message xmlns="jabber:client" from="alice@a.example/y" to="carol@b.example" type="chat"><body>hi carol</body></message>`,
		},
	});
	await b.keyval(H, "mam_prefs").set("alice", {
		default: "roster",
		always: ["bob@a.example"],
		never: [],
	});
	// Another host's data stays out of a one-host export.
	await new AccountManager(b, "b.example", 4096).create("zed", "pw");
}

test("XEP-0227: export, import into another backend, export again: identical", {
	skip: postgresSkip,
}, async () => {
	const src = new MemoryBackend();
	const dst = new PostgresBackend({ url: PG_URL, schema });
	try {
		await fill(src);
		const warnings: string[] = [];
		const doc = await exportPie(src, [H], { warn: (m) => warnings.push(m) });
		assert.deepEqual(warnings, []);
		// XEP-0227 §2 credentials, one element per hash
		assert.match(doc, /<server-data xmlns="urn:xmpp:pie:0"><host jid="a\.example">/);
		assert.match(
			doc,
			/<scram-credentials xmlns="urn:xmpp:pie:0#scram" mechanism="SCRAM-SHA-256"><iter-count>4096<\/iter-count><salt>/,
		);
		assert.doesNotMatch(doc, /zed/);

		assert.match(
			doc,
			/<archive xmlns="urn:xmpp:pie:0#mam"><prefs xmlns="urn:xmpp:mam:2" default="roster">/,
		);
		assert.match(
			doc,
			/<result xmlns="urn:xmpp:mam:2" id="sid-1"><forwarded xmlns="urn:xmpp:forward:0"><delay xmlns="urn:xmpp:delay" stamp="2024-01-01T12:00:00.000Z"\/><message xmlns="jabber:client" from="bob@a.example\/x"/,
		);
		const stats = await importPie(dst, doc);
		assert.deepEqual(stats, { users: 2, skipped: [] });

		assert.equal(await exportPie(dst, [H]), doc);

		for (const user of ["alice", "bob"]) {
			assert.deepEqual(
				await dst.keyval(H, "accounts").get(user),
				await src.keyval(H, "accounts").get(user),
			);
			assert.deepEqual(
				await dst.keyval(H, "roster").get(user),
				await src.keyval(H, "roster").get(user),
			);
			assert.deepEqual(
				await dst.keyval(H, "vcard").get(user),
				await src.keyval(H, "vcard").get(user),
			);
			assert.deepEqual(
				await dst.map(H, "private").getAll(user),
				await src.map(H, "private").getAll(user),
			);
			assert.deepEqual(await dst.keyval(H, "pep").get(user), await src.keyval(H, "pep").get(user));
			// Items keep their order, id, publisher and payload; their stamps are new.
			const pepItems = async (b: StorageBackend) =>
				[...(await b.map(H, "pep_items").getAll(user)).entries()]
					.map(([k, v]) => [k, v as { t: number }] as const)
					.sort((a, c) => a[1].t - c[1].t)
					.map(([k, v]) => [k, { ...v, t: 0 }]);
			assert.deepEqual(await pepItems(dst), await pepItems(src));
			const strip = (items: { when: number; with: string; value: unknown }[]) =>
				items.map(({ when, with: w, value }) => ({ when, with: w, value }));
			assert.deepEqual(
				strip((await dst.archive(H, "offline").query(user)).items),
				strip((await src.archive(H, "offline").query(user)).items),
			);
			// XEP-0227 v1.1 archive: ids, times, peers and messages kept.
			assert.deepEqual(
				(await dst.archive(H, "mam").query(user)).items,
				(await src.archive(H, "mam").query(user)).items,
			);
			assert.deepEqual(
				await dst.keyval(H, "mam_prefs").get(user),
				await src.keyval(H, "mam_prefs").get(user),
			);
		}
		// Importing again adds no archived message twice (same ids).
		await importPie(dst, doc);
		assert.equal(await dst.archive(H, "mam").count("alice"), 2);
	} finally {
		await Promise.all([src.close(), dst.close()]);
	}
});

test("XEP-0227 import: plaintext passwords become SCRAM credentials; foreign documents are refused", async () => {
	const b = new MemoryBackend();
	try {
		const doc = `<server-data xmlns='urn:xmpp:pie:0'><host jid='${H}'><user name='juliet' password='s3cret'><unknown xmlns='x:y'/></user></host><host jid='other.example'><user name='x' password='y'/></host></server-data>`;
		assert.deepEqual(await importPie(b, doc, { hosts: [H], iterations: 4096 }), {
			users: 1,
			skipped: [],
		});
		const accounts = new AccountManager(b, H, 4096);
		const creds = await accounts.getCredentials("juliet");
		assert.ok(creds?.["SHA-256"]?.storedKey);
		assert.deepEqual(await b.keyval("other.example", "accounts").users(), []);
		await assert.rejects(importPie(b, "<foo xmlns='bar'/>"), /not a XEP-0227 document/);
	} finally {
		await b.close();
	}
});
