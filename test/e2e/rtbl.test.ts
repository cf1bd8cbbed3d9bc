/**
 * Real-time block lists (issue 19) end to end: the list is a XEP-0060 node of this server's own
 * pubsub component (`pubsub.localhost`), published and retracted by an admin over a real socket
 * (not a second server over s2s); the host subscribes to it as xmppbl.org's lists are used. A
 * listed user's join, groupchat and private messages are refused in rooms where it is
 * unaffiliated (mod_muc_rtbl's rule), its messages to users who have not added it bounce, a
 * retraction unblocks, and a restart keeps the list when the service is gone.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { DEFAULT_HOST_MODULES } from "../../src/core/config/schema.ts";
import { sha256 } from "../../src/modules/spam/rtbl.ts";
import type { Element } from "../../src/xml/element.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { StanzaReader } from "../helpers/stanza-reader.ts";
import { waitFor } from "../helpers/wait.ts";
import { login } from "../helpers/xmpp-raw-login.ts";
import { befriend, connectUser, errorOf, iq, type User } from "../helpers/xmpp-user.ts";

const PUBSUB = "pubsub.localhost";
const MUC = "conference.localhost";
const NODE = "muc_bans_sha256";
const SPAMMER = "spammer@example.net";
const HASH = sha256(SPAMMER);
const dataDir = mkdtempSync(join(tmpdir(), "parley-rtbl-"));

const config = (withPubsub: boolean) => ({
	auth: { require_encryption: false, allow_plain_without_tls: true },
	hosts: {
		localhost: {
			modules: [...DEFAULT_HOST_MODULES],
			module_options: {
				spam: {
					rtbl: [
						{ service: PUBSUB, node: NODE },
						// A second list, of domains, for strangers only (xmppbl.org's spam_source_domains).
						{ service: PUBSUB, node: "spam_source_domains", applies_to: ["strangers"] },
					],
				},
			},
		},
		"example.net": {},
		"other.example": {},
	},
	components: {
		[MUC]: { type: "muc" as const },
		[PUBSUB]: { type: "pubsub" as const, enabled: withPubsub, admins: ["admin@localhost"] },
	},
});
const users: [string, string][] = [
	["admin@localhost", "admin-pw"],
	["owner@localhost", "owner-pw"],
	["bob@localhost", "bob-pw"],
	["carol@localhost", "carol-pw"],
	[SPAMMER, "spammer-pw"],
	["x@other.example", "x-pw"],
];

let t: TestServer;
before(async () => {
	t = await startTestServer({ config: config(true), users, storage: "sqlite", dataDir });
});
after(async () => {
	await t?.stop();
	rmSync(dataDir, { recursive: true, force: true });
});

const listIn = async (server: TestServer) =>
	(await server.server.hosts
		.get("localhost")
		?.keyval<{ ids: string[] }>("rtbl")
		.get(`${NODE}@${PUBSUB}`)) ?? null;

async function spammer(server: TestServer, resource: string): Promise<User> {
	const c = await login(server.port, "spammer", "spammer-pw", {
		resource,
		host: "example.net",
		mechanism: "PLAIN",
	});
	return { c, r: new StanzaReader(c), jid: `${SPAMMER}/${resource}`, bare: SPAMMER };
}
async function loginAt(server: TestServer, user: string, resource: string): Promise<User> {
	return connectUser(server.port, user, resource);
}

/** Enters room/nick (XEP-0045 §7.2.1); the self-presence (status 110) or an error presence. */
async function enter(u: User, occupant: string): Promise<Element> {
	const mark = u.r.mark();
	u.c.send(`<presence to='${occupant}'><x xmlns='http://jabber.org/protocol/muc'/></presence>`);
	return u.r.wait(
		(el) =>
			el.is("presence") &&
			el.attrs.from === occupant &&
			(el.attrs.type === "error" ||
				(el.getChild("x", "http://jabber.org/protocol/muc#user")?.getChildren("status") ?? []).some(
					(s) => s.attrs.code === "110",
				)),
		mark,
		`presence from ${occupant}`,
	);
}

const publish = (id: string) =>
	`<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='${NODE}'><item id='${id}'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'/></item></publish></pubsub>`;
const retract = (id: string) =>
	`<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='${NODE}' notify='true'><item id='${id}'/></retract></pubsub>`;

test("a listed user is refused in rooms and by strangers; a retraction unblocks (RTBL, XEP-0060 §7.1, §7.2)", async () => {
	const admin = await loginAt(t, "admin", "a");
	const created = await iq(
		admin,
		"set",
		PUBSUB,
		`<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='${NODE}'/></pubsub>`,
	);
	assert.equal(created.attrs.type, "result", created.toString());
	// The host subscribed and fetched the (empty) list once the node existed.
	await waitFor(async () => (await listIn(t)) !== null, "the first fetch of the list");

	// A room with the owner in it, and a member the spammer is not.
	const owner = await loginAt(t, "owner", "o");
	const self = await enter(owner, `lobby@${MUC}/owner`);
	assert.notEqual(self.attrs.type, "error", self.toString());
	const cfg = await iq(
		owner,
		"set",
		`lobby@${MUC}`,
		"<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query>",
	);
	assert.equal(cfg.attrs.type, "result", cfg.toString());

	// Published: the host hears it through its subscription (a notification, §7.1.2.1).
	const t0 = performance.now();
	assert.equal((await iq(admin, "set", PUBSUB, publish(HASH))).attrs.type, "result");
	await waitFor(async () => (await listIn(t))?.ids.includes(HASH), "the notification");
	const publishedMs = performance.now() - t0;

	const s = await spammer(t, "s1");
	// MUC: join refused (XEP-0045 §7.2.7's forbidden, as for a banned user).
	const refused = await enter(s, `lobby@${MUC}/spam`);
	assert.equal(refused.attrs.type, "error", refused.toString());
	assert.equal(errorOf(refused).condition, "forbidden");
	// MUC: groupchat and private messages refused too.
	const m1 = s.r.mark();
	s.c.send(`<message to='lobby@${MUC}' type='groupchat' id='g1'><body>buy</body></message>`);
	const g = await s.r.wait((el) => el.is("message") && el.attrs.id === "g1", m1, "groupchat error");
	assert.equal(errorOf(g).condition, "forbidden");
	const m2 = s.r.mark();
	s.c.send(`<message to='lobby@${MUC}/owner' type='chat' id='p1'><body>buy</body></message>`);
	const p = await s.r.wait((el) => el.is("message") && el.attrs.id === "p1", m2, "PM error");
	assert.equal(errorOf(p).condition, "forbidden");

	// Strangers: bob has not added the spammer (bounced); carol has (delivered).
	await befriend(t.server, "carol@localhost", SPAMMER);
	const bob = await loginAt(t, "bob", "b");
	const carol = await loginAt(t, "carol", "c");
	for (const u of [bob, carol]) {
		const m = u.r.mark();
		u.c.send("<presence/>");
		await u.r.wait((el) => el.is("presence") && el.attrs.from === u.jid, m, "own presence");
	}
	const m3 = s.r.mark();
	s.c.send("<message to='bob@localhost' type='chat' id='c1'><body>buy</body></message>");
	const bounced = await s.r.wait((el) => el.is("message") && el.attrs.id === "c1", m3, "bounce");
	assert.equal(errorOf(bounced).condition, "policy-violation");
	const mc = carol.r.mark();
	s.c.send("<message to='carol@localhost' type='chat' id='c2'><body>hi carol</body></message>");
	const toCarol = await carol.r.wait((el) => el.is("message") && el.attrs.id === "c2", mc, "carol");
	assert.equal(toCarol.getChildText("body"), "hi carol");

	// Retracted (§7.2.2.1 notification): unblocked, the join succeeds.
	const t1 = performance.now();
	assert.equal((await iq(admin, "set", PUBSUB, retract(HASH))).attrs.type, "result");
	await waitFor(async () => !(await listIn(t))?.ids.includes(HASH), "the retraction");
	const retractedMs = performance.now() - t1;
	const joined = await enter(s, `lobby@${MUC}/spam`);
	assert.notEqual(joined.attrs.type, "error", joined.toString());
	console.log(
		`# rtbl: listed ${publishedMs.toFixed(1)} ms after publish, unlisted ${retractedMs.toFixed(1)} ms after retract`,
	);

	// Listed again for the restart test.
	assert.equal((await iq(admin, "set", PUBSUB, publish(HASH))).attrs.type, "result");
	await waitFor(async () => (await listIn(t))?.ids.includes(HASH), "listed again");
	for (const u of [admin, owner, s, bob, carol]) u.c.end();
});

test("several lists: a domain list for strangers bounces its users' messages but lets them join rooms", async () => {
	const admin = await loginAt(t, "admin", "a2");
	const created = await iq(
		admin,
		"set",
		PUBSUB,
		"<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='spam_source_domains'/></pubsub>",
	);
	assert.equal(created.attrs.type, "result", created.toString());
	const domains = async () =>
		(await t.server.hosts
			.get("localhost")
			?.keyval<{ ids: string[] }>("rtbl")
			.get(`spam_source_domains@${PUBSUB}`)) ?? null;
	await waitFor(async () => (await domains()) !== null, "the domain list fetched");
	const hash = sha256("other.example");
	const pub = await iq(
		admin,
		"set",
		PUBSUB,
		`<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='spam_source_domains'><item id='${hash}'><report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'/></item></publish></pubsub>`,
	);
	assert.equal(pub.attrs.type, "result", pub.toString());
	await waitFor(async () => (await domains())?.ids.includes(hash), "the domain listed");
	const c = await login(t.port, "x", "x-pw", {
		resource: "x",
		host: "other.example",
		mechanism: "PLAIN",
	});
	const xu: User = { c, r: new StanzaReader(c), jid: "x@other.example/x", bare: "x@other.example" };
	const bob = await loginAt(t, "bob", "b2");
	const m = xu.r.mark();
	xu.c.send("<message to='bob@localhost' type='chat' id='d1'><body>buy</body></message>");
	const bounced = await xu.r.wait((el) => el.is("message") && el.attrs.id === "d1", m, "bounce");
	assert.equal(
		errorOf(bounced).condition,
		"policy-violation",
		"the domain's hash is on a strangers list",
	);
	// The list does not apply to rooms: x joins the lobby.
	const joined = await enter(xu, `lobby@${MUC}/x`);
	assert.notEqual(joined.attrs.type, "error", joined.toString());
	for (const u of [admin, xu, bob]) u.c.end();
});

test("the list survives a restart while its service is unreachable (persisted, rtbl store)", async () => {
	await t.stop();
	// The pubsub component is gone: only the stored list can refuse the spammer now.
	t = await startTestServer({ config: config(false), users: [], storage: "sqlite", dataDir });
	const owner = await loginAt(t, "owner", "o2");
	const self = await enter(owner, `lobby2@${MUC}/owner`);
	assert.notEqual(self.attrs.type, "error", self.toString());
	await iq(
		owner,
		"set",
		`lobby2@${MUC}`,
		"<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query>",
	);
	const s = await spammer(t, "s2");
	const refused = await enter(s, `lobby2@${MUC}/spam`);
	assert.equal(errorOf(refused).condition, "forbidden", refused.toString());
	owner.c.end();
	s.c.end();
});
