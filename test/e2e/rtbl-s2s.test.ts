/**
 * Real-time block lists across federation (issue 19): server A (a.example) follows a block list
 * that server B (b.example) publishes on its pubsub component, over real s2s streams (static
 * routes, Server Dialback, as test/e2e/s2s.test.ts). A user of B that B's list names cannot join
 * a room on A; once B retracts the entry, the join succeeds.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sha256 } from "../../src/modules/spam/rtbl.ts";
import type { Element } from "../../src/xml/element.ts";
import { freePort } from "../helpers/pg-cluster.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { StanzaReader } from "../helpers/stanza-reader.ts";
import { waitFor } from "../helpers/wait.ts";
import { login } from "../helpers/xmpp-raw-login.ts";
import { errorOf, iq, type User } from "../helpers/xmpp-user.ts";

const NODE = "muc_bans_sha256";
const LIST = "pubsub.b.example";
const MUC = "conference.a.example";
let a: TestServer;
let b: TestServer;

before(async () => {
	const [aS2s, bS2s] = await Promise.all([freePort(), freePort()]);
	const auth = { require_encryption: false, allow_plain_without_tls: true };
	a = await startTestServer({
		config: {
			auth,
			hosts: {
				"a.example": { module_options: { spam: { rtbl: [{ service: LIST, node: NODE }] } } },
			},
			components: { [MUC]: { type: "muc" as const } },
			listeners: { s2s: { enabled: true, address: "127.0.0.1", port: aS2s } },
			s2s: { routes: { "b.example": `127.0.0.1:${bS2s}`, [LIST]: `127.0.0.1:${bS2s}` } },
		},
		users: [["owner@a.example", "owner-pw"]],
	});
	b = await startTestServer({
		config: {
			auth,
			hosts: { "b.example": {} },
			components: { [LIST]: { type: "pubsub" as const, admins: ["admin@b.example"] } },
			listeners: { s2s: { enabled: true, address: "127.0.0.1", port: bS2s } },
			s2s: { routes: { "a.example": `127.0.0.1:${aS2s}`, [MUC]: `127.0.0.1:${aS2s}` } },
		},
		users: [
			["admin@b.example", "admin-pw"],
			["spammer@b.example", "spammer-pw"],
		],
	});
});
after(async () => {
	await a?.stop();
	await b?.stop();
});

async function user(t: TestServer, name: string, domain: string): Promise<User> {
	const c = await login(t.port, name, `${name}-pw`, {
		resource: "r",
		host: domain,
		mechanism: "PLAIN",
	});
	return { c, r: new StanzaReader(c), jid: `${name}@${domain}/r`, bare: `${name}@${domain}` };
}

async function enter(u: User, occupant: string): Promise<Element> {
	const m = u.r.mark();
	u.c.send(`<presence to='${occupant}'><x xmlns='http://jabber.org/protocol/muc'/></presence>`);
	return u.r.wait(
		(el) => el.is("presence") && el.attrs.from === occupant,
		m,
		`presence from ${occupant}`,
	);
}

const listOnA = async () =>
	(await a.server.hosts
		.get("a.example")
		?.keyval<{ ids: string[] }>("rtbl")
		.get(`${NODE}@${LIST}`)) ?? null;

test("a list published on another server over s2s refuses a join, and its retraction unblocks", async () => {
	const admin = await user(b, "admin", "b.example");
	const create = await iq(
		admin,
		"set",
		LIST,
		`<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='${NODE}'/></pubsub>`,
	);
	assert.equal(create.attrs.type, "result", create.toString());
	// A subscribes over s2s and fetches the (empty) list once the node exists.
	await waitFor(async () => (await listOnA()) !== null, "A's first fetch over s2s", 60_000);
	const hash = sha256("spammer@b.example");
	const t0 = performance.now();
	const pub = await iq(
		admin,
		"set",
		LIST,
		`<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='${NODE}'><item id='${hash}'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'/></item></publish></pubsub>`,
	);
	assert.equal(pub.attrs.type, "result", pub.toString());
	await waitFor(async () => (await listOnA())?.ids.includes(hash), "the notification over s2s");
	const listedMs = performance.now() - t0;

	const owner = await user(a, "owner", "a.example");
	await enter(owner, `lobby@${MUC}/owner`);
	const cfg = await iq(
		owner,
		"set",
		`lobby@${MUC}`,
		"<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query>",
	);
	assert.equal(cfg.attrs.type, "result", cfg.toString());

	const spammer = await user(b, "spammer", "b.example");
	const refused = await enter(spammer, `lobby@${MUC}/spam`);
	assert.equal(errorOf(refused).condition, "forbidden", refused.toString());

	const ret = await iq(
		admin,
		"set",
		LIST,
		`<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='${NODE}' notify='true'><item id='${hash}'/></retract></pubsub>`,
	);
	assert.equal(ret.attrs.type, "result", ret.toString());
	const t1 = performance.now();
	await waitFor(async () => !(await listOnA())?.ids.includes(hash), "the retraction over s2s");
	console.log(
		`# rtbl over s2s: listed ${listedMs.toFixed(1)} ms after publish, unlisted ${(performance.now() - t1).toFixed(1)} ms after retract`,
	);
	const joined = await enter(spammer, `lobby@${MUC}/spam`);
	assert.notEqual(joined.attrs.type, "error", joined.toString());
	for (const u of [admin, owner, spammer]) u.c.end();
});
