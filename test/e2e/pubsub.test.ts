/**
 * Publish-Subscribe (XEP-0060) end to end: a real server with pubsub components
 * (`[components."pubsub.localhost"] type = "pubsub"`), real sockets, stanzas parsed with the
 * server's parser; one test with xmpp.js. Every error is checked for its stanza error condition
 * and its pubsub#errors application condition (§§6-8, §12). Each test names the section it
 * checks; section numbers are those of XEP-0060 1.30 (errors §12, features §11, the
 * pubsub#node_config registry §17.4.4, implementation notes §13).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join as pathJoin } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import type { Element } from "../../src/xml/element.ts";
import type { RawClient } from "../helpers/raw.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { StanzaReader } from "../helpers/stanza-reader.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect as xmppConnect } from "../helpers/xmpp-client.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

const PUBSUB = "http://jabber.org/protocol/pubsub";
const OWNER = "http://jabber.org/protocol/pubsub#owner";
const EVENT = "http://jabber.org/protocol/pubsub#event";
const ERRORS = "http://jabber.org/protocol/pubsub#errors";
const NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config";
const PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options";
const SUB_OPTIONS = "http://jabber.org/protocol/pubsub#subscribe_options";
const SUB_AUTH = "http://jabber.org/protocol/pubsub#subscribe_authorization";
const META_DATA = "http://jabber.org/protocol/pubsub#meta-data";
const RSM = "http://jabber.org/protocol/rsm";
const DISCO_INFO = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS = "http://jabber.org/protocol/disco#items";
const DATA = "jabber:x:data";
const STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const ROSTER = "jabber:iq:roster";

/** The service under test. */
const SERVICE = "pubsub.localhost";
/** A second service with small limits (max_items = "max", max_payload_size). */
const SMALL = "small.localhost";
/** A service that holds two nodes (§8.1.1 max-nodes-exceeded). */
const TINY = "tiny.localhost";
/** A host whose users are not local to the services (node_creation = "local"). */
const ELSEWHERE = "elsewhere.test";

const USERS = ["alice", "bob", "carol", "dave", "eve"];
const baseConfig = {
	auth: { require_encryption: false, allow_plain_without_tls: true },
	hosts: { localhost: {}, [ELSEWHERE]: {} },
	components: {
		[SERVICE]: { type: "pubsub" as const },
		[SMALL]: {
			type: "pubsub" as const,
			max_items: 5,
			default_max_items: 3,
			max_payload_size: 200,
			max_subscriptions_per_node: 2,
		},
		[TINY]: { type: "pubsub" as const, max_nodes: 2 },
	},
};
const allUsers = [
	...USERS.map((u) => [`${u}@localhost`, `${u}-pw`] as [string, string]),
	[`mallory@${ELSEWHERE}`, "mallory-pw"] as [string, string],
];

interface User {
	c: RawClient;
	r: StanzaReader;
	/** Full JID. */
	jid: string;
	bare: string;
}

let seq = 0;
const nextId = () => `t${++seq}`;
/** A node name no other test uses. */
const fresh = (what: string) => `${what}-${++seq}`;

async function connect(t: TestServer, user: string, host = "localhost"): Promise<User> {
	const resource = `r${++seq}`;
	const c = await login(t.port, user, `${user}-pw`, { resource, mechanism: "PLAIN", host });
	const u = {
		c,
		r: new StanzaReader(c),
		jid: `${user}@${host}/${resource}`,
		bare: `${user}@${host}`,
	};
	// RFC 6121 §4.2: available, so that messages to the bare JID (§8.6.1 requests) reach it.
	const m = u.r.mark();
	c.send("<presence/>");
	await u.r.wait((el) => el.is("presence") && el.attrs.from === u.jid, m, "own presence");
	return u;
}

/** Sends an IQ and waits for its answer. */
async function iq(
	u: User,
	type: "get" | "set",
	body: string,
	to: string | null = SERVICE,
): Promise<Element> {
	const id = nextId();
	const mark = u.r.mark();
	u.c.send(`<iq type='${type}' id='${id}'${to ? ` to='${to}'` : ""}>${body}</iq>`);
	return u.r.wait((el) => el.is("iq") && el.attrs.id === id, mark, `answer to iq ${id}`);
}

const ps = (body: string) => `<pubsub xmlns='${PUBSUB}'>${body}</pubsub>`;
const own = (body: string) => `<pubsub xmlns='${OWNER}'>${body}</pubsub>`;

function form(
	formType: string,
	fields: Record<string, string | string[]>,
	type = "submit",
): string {
	const f = Object.entries(fields)
		.map(
			([k, v]) =>
				`<field var='${k}'>${(Array.isArray(v) ? v : [v]).map((s) => `<value>${s}</value>`).join("")}</field>`,
		)
		.join("");
	return `<x xmlns='${DATA}' type='${type}'><field var='FORM_TYPE' type='hidden'><value>${formType}</value></field>${f}</x>`;
}

function assertResult(el: Element): void {
	assert.equal(el.attrs.type, "result", el.toString());
}

/** The stanza error condition and the pubsub#errors condition (RFC 6120 §8.3, XEP-0060 §14). */
function assertError(el: Element, condition: string, app?: string): void {
	assert.equal(el.attrs.type, "error", el.toString());
	const error = el.getChild("error") as Element;
	assert.equal(error.getChildByNs(STANZAS)?.name, condition, el.toString());
	assert.equal(error.getChildByNs(ERRORS)?.name, app, el.toString());
}

/** §8.1.1 / §8.1.3: creates `node`, configured with `config` when given. */
async function create(u: User, node: string, config?: Record<string, string | string[]>) {
	const configure = config ? `<configure>${form(NODE_CONFIG, config)}</configure>` : "";
	const r = await iq(u, "set", ps(`<create node='${node}'/>${configure}`));
	assertResult(r);
	return r;
}

async function configure(u: User, node: string, config: Record<string, string | string[]>) {
	return iq(u, "set", own(`<configure node='${node}'>${form(NODE_CONFIG, config)}</configure>`));
}

/** §7.1.1: publishes one item; returns the answer. */
function publish(u: User, node: string, id?: string, payload = "<entry xmlns='urn:test'/>") {
	const idAttr = id === undefined ? "" : ` id='${id}'`;
	return iq(u, "set", ps(`<publish node='${node}'><item${idAttr}>${payload}</item></publish>`));
}

async function subscribe(u: User, node: string, jid = u.jid): Promise<Element> {
	return iq(u, "set", ps(`<subscribe node='${node}' jid='${jid}'/>`));
}

async function items(u: User, node: string, inner = "", attrs = ""): Promise<Element> {
	return iq(u, "get", ps(`<items node='${node}'${attrs}>${inner}</items>`));
}

/** The item ids of an items result (§6.5.2), in document order. */
const itemIds = (r: Element) =>
	(r.getChild("pubsub", PUBSUB)?.getChild("items")?.getChildren("item") ?? []).map(
		(i) => i.attrs.id,
	);

/** The `<event/>` child of a notification (§7.1.2.1) of `node`, or undefined. */
function eventOf(el: Element, node?: string): Element | undefined {
	if (!el.is("message") || el.attrs.from !== SERVICE) return undefined;
	const ev = el.getChild("event", EVENT);
	const inner = ev?.elements()[0];
	if (!inner || (node !== undefined && inner.attrs.node !== node)) return undefined;
	return inner;
}

const waitEvent = (u: User, mark: number, node: string, what: string) =>
	u.r.wait((el) => eventOf(el, node) !== undefined, mark, what);

/** Form values of a data form (XEP-0004). */
function values(x: Element | undefined): Map<string, string[]> {
	const out = new Map<string, string[]>();
	for (const f of x?.getChildren("field") ?? [])
		out.set(
			f.attrs.var as string,
			f.getChildren("value").map((v) => v.text()),
		);
	return out;
}

/** The node's configuration as an owner reads it (§8.2.1). */
async function configOf(u: User, node: string): Promise<Map<string, string[]>> {
	const r = await iq(u, "get", own(`<configure node='${node}'/>`));
	assertResult(r);
	return values(r.getChild("pubsub", OWNER)?.getChild("configure")?.getChild("x", DATA));
}

/**
 * Orders what the service sent `u` so far: `owner` publishes to a node `u` is subscribed to
 * (`marker`), and `u` waits for that notification; the service's notifications are routed in
 * order, so anything sent to `u` before is in by then. Returns the notifications since `mark`
 * that came before the marker.
 */
async function eventsBefore(owner: User, u: User, marker: string, mark: number) {
	const r = await publish(owner, marker);
	assertResult(r);
	const id = r.getChild("pubsub", PUBSUB)?.getChild("publish")?.getChild("item")?.attrs.id;
	const m = await u.r.wait(
		(el) => eventOf(el, marker)?.getChild("item")?.attrs.id === id,
		mark,
		"the marker notification",
	);
	const got = u.r.since(mark);
	return got.slice(0, got.indexOf(m)).filter((el) => eventOf(el) !== undefined);
}

/** A marker node owned by `owner` with `u` subscribed (see eventsBefore). */
async function markerFor(owner: User, u: User): Promise<string> {
	const marker = fresh("marker");
	await create(owner, marker);
	assertResult(await subscribe(u, marker));
	return marker;
}

describe("XEP-0060 Publish-Subscribe service", () => {
	let t: TestServer;
	let open: User[] = [];
	const user = async (name: string, host = "localhost") => {
		const u = await connect(t, name, host);
		open.push(u);
		return u;
	};

	before(async () => {
		t = await startTestServer({ config: baseConfig, users: allUsers });
	});
	afterEach(() => {
		for (const u of open) u.c.end();
		open = [];
	});
	after(async () => {
		await t?.stop();
	});

	// --- discovery (§5) ---

	test("XEP-0030 §4.1: the parent host's disco#items lists the pubsub service", async () => {
		const a = await user("alice");
		const r = await iq(a, "get", `<query xmlns='${DISCO_ITEMS}'/>`, "localhost");
		const jids = (r.getChild("query", DISCO_ITEMS)?.getChildren("item") ?? []).map(
			(i) => i.attrs.jid,
		);
		assert.ok(jids.includes(SERVICE), r.toString());
	});

	test("§5.1: the service is a pubsub/service entity with the pubsub features (§11)", async () => {
		const a = await user("alice");
		const r = await iq(a, "get", `<query xmlns='${DISCO_INFO}'/>`);
		assertResult(r);
		const q = r.getChild("query", DISCO_INFO) as Element;
		const ids = q.getChildren("identity").map((i) => `${i.attrs.category}/${i.attrs.type}`);
		assert.ok(ids.includes("pubsub/service"), r.toString());
		const features = q.getChildren("feature").map((f) => f.attrs.var);
		for (const f of [
			PUBSUB,
			`${PUBSUB}#create-nodes`,
			`${PUBSUB}#instant-nodes`,
			`${PUBSUB}#create-and-configure`,
			`${PUBSUB}#publish`,
			`${PUBSUB}#publish-options`,
			`${PUBSUB}#subscribe`,
			`${PUBSUB}#retrieve-items`,
			`${PUBSUB}#retract-items`,
			`${PUBSUB}#delete-nodes`,
			`${PUBSUB}#purge-nodes`,
			`${PUBSUB}#access-whitelist`,
			`${PUBSUB}#publish-only-affiliation`,
		])
			assert.ok(features.includes(f), `${f} in ${features.join(" ")}`);
		// §8.7 get-pending (XEP-0050) is not implemented; §4.3 last-published would make
		// on_sub_and_presence the default, and nodes here default to never.
		for (const f of [`${PUBSUB}#get-pending`, `${PUBSUB}#last-published`])
			assert.ok(!features.includes(f), `${f} is not advertised`);
	});

	test("§5.2, §5.3, §5.4, §5.5: disco#items lists nodes; node disco#info is pubsub/leaf with meta-data; node disco#items lists items", async () => {
		const a = await user("alice");
		const node = fresh("disco");
		await create(a, node, { "pubsub#title": "Disco node", "pubsub#description": "for disco" });
		assertResult(await publish(a, node, "first"));
		assertResult(await publish(a, node, "second"));

		const list = await iq(a, "get", `<query xmlns='${DISCO_ITEMS}'/>`);
		const listed = (list.getChild("query", DISCO_ITEMS)?.getChildren("item") ?? []).find(
			(i) => i.attrs.node === node,
		);
		assert.ok(listed, list.toString());
		assert.equal(listed.attrs.jid, SERVICE);
		assert.equal(listed.attrs.name, "Disco node");

		const info = await iq(a, "get", `<query xmlns='${DISCO_INFO}' node='${node}'/>`);
		assertResult(info);
		const q = info.getChild("query", DISCO_INFO) as Element;
		assert.equal(q.attrs.node, node);
		const id = q.getChild("identity") as Element;
		assert.equal(`${id.attrs.category}/${id.attrs.type}`, "pubsub/leaf");
		const meta = values(q.getChild("x", DATA));
		assert.deepEqual(meta.get("FORM_TYPE"), [META_DATA]);
		assert.deepEqual(meta.get("pubsub#title"), ["Disco node"]);
		assert.deepEqual(meta.get("pubsub#description"), ["for disco"]);
		assert.deepEqual(meta.get("pubsub#owner"), ["alice@localhost"]);
		assert.deepEqual(meta.get("pubsub#access_model"), ["open"]);

		const its = await iq(a, "get", `<query xmlns='${DISCO_ITEMS}' node='${node}'/>`);
		assertResult(its);
		const names = (its.getChild("query", DISCO_ITEMS)?.getChildren("item") ?? []).map((i) => [
			i.attrs.jid,
			i.attrs.name,
		]);
		assert.deepEqual(names.sort(), [
			[SERVICE, "first"],
			[SERVICE, "second"],
		]);

		// §5.3: a node that does not exist.
		const none = await iq(a, "get", `<query xmlns='${DISCO_INFO}' node='no-such-node'/>`);
		assertError(none, "item-not-found");
	});

	// --- node creation (§8.1) ---

	test("§8.1.1: create a named node; creating it again is conflict", async () => {
		const a = await user("alice");
		const node = fresh("named");
		const r = await create(a, node);
		// §8.1.1: the result may be empty when the node is the one requested.
		const created = r.getChild("pubsub", PUBSUB)?.getChild("create");
		if (created) assert.equal(created.attrs.node, node);
		const again = await iq(a, "set", ps(`<create node='${node}'/>`));
		assertError(again, "conflict");
		const aff = await iq(a, "get", ps(`<affiliations node='${node}'/>`));
		assertResult(aff);
		assert.equal(
			aff.getChild("pubsub", PUBSUB)?.getChild("affiliations")?.getChild("affiliation")?.attrs
				.affiliation,
			"owner",
			"§8.1.1: the creator is the owner",
		);
	});

	test("§8.1.1: an instant node gets a generated name, returned in the result", async () => {
		const a = await user("alice");
		const r = await iq(a, "set", ps("<create/>"));
		assertResult(r);
		const name = r.getChild("pubsub", PUBSUB)?.getChild("create")?.attrs.node;
		assert.ok(name, r.toString());
		assertResult(await publish(a, name, "x"));
		assert.deepEqual(itemIds(await items(a, name)), ["x"]);
	});

	test("§8.1.3: create-and-configure applies the submitted node_config form", async () => {
		const a = await user("alice");
		const node = fresh("configured");
		await create(a, node, {
			"pubsub#title": "Configured",
			"pubsub#max_items": "7",
			"pubsub#access_model": "whitelist",
			"pubsub#notification_type": "normal",
		});
		const c = await configOf(a, node);
		assert.deepEqual(c.get("pubsub#title"), ["Configured"]);
		assert.deepEqual(c.get("pubsub#max_items"), ["7"]);
		assert.deepEqual(c.get("pubsub#access_model"), ["whitelist"]);
		assert.deepEqual(c.get("pubsub#notification_type"), ["normal"]);
		// §8.1.3: a value the service cannot accept fails the creation (not-acceptable), and no node is made.
		const bad = fresh("badconfig");
		const r = await iq(
			a,
			"set",
			ps(
				`<create node='${bad}'/><configure>${form(NODE_CONFIG, { "pubsub#access_model": "everyone" })}</configure>`,
			),
		);
		// §8.1.2: an access model the service does not offer.
		assertError(r, "not-acceptable", "unsupported-access-model");
		assertError(await items(a, bad), "item-not-found");
	});

	test("§8.1.1: node_creation = local: a user of another host is forbidden; publishing to a missing node is item-not-found (§7.1.3.3)", async () => {
		const m = await user("mallory", ELSEWHERE);
		assertError(await iq(m, "set", ps(`<create node='${fresh("foreign")}'/>`)), "forbidden");
		assertError(await iq(m, "set", ps("<create/>")), "forbidden");
		assertError(await publish(m, fresh("foreign")), "item-not-found");
	});

	test("§8.1.1: beyond max_nodes, not-allowed with max-nodes-exceeded", async () => {
		const a = await user("alice");
		for (const n of ["one", "two"])
			assertResult(await iq(a, "set", ps(`<create node='${n}'/>`), TINY));
		const r = await iq(a, "set", ps("<create node='three'/>"), TINY);
		assertError(r, "not-allowed", "max-nodes-exceeded");
		// §7.1.4: neither does auto-create (publishing to a missing node) go beyond it.
		const auto = await iq(
			a,
			"set",
			ps("<publish node='three'><item id='x'><entry xmlns='urn:test'/></item></publish>"),
			TINY,
		);
		assertError(auto, "not-allowed", "max-nodes-exceeded");
	});

	// --- configuration (§8.2, §8.3) ---

	test("§8.2.1, §8.2.3.2: the owner gets the configuration form; others are forbidden", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const node = fresh("conf");
		await create(a, node);
		const c = await configOf(a, node);
		assert.deepEqual(c.get("FORM_TYPE"), [NODE_CONFIG]);
		for (const f of [
			"pubsub#access_model",
			"pubsub#publish_model",
			"pubsub#max_items",
			"pubsub#notification_type",
			"pubsub#send_last_published_item",
		])
			assert.ok(c.has(f), f);
		assertError(await iq(b, "get", own(`<configure node='${node}'/>`)), "forbidden");
		assertError(await configure(b, node, { "pubsub#title": "taken over" }), "forbidden");
		// §8.2.3.5: no such node.
		assertError(await iq(a, "get", own("<configure node='no-such-node'/>")), "item-not-found");
	});

	test("§8.2.4: the owner submits a configuration; §8.2.5.2: a bad value is not-acceptable and changes nothing", async () => {
		const a = await user("alice");
		const node = fresh("reconf");
		await create(a, node);
		assertResult(
			await configure(a, node, { "pubsub#title": "New title", "pubsub#max_items": "3" }),
		);
		let c = await configOf(a, node);
		assert.deepEqual(c.get("pubsub#title"), ["New title"]);
		assert.deepEqual(c.get("pubsub#max_items"), ["3"]);
		assertError(
			await configure(a, node, { "pubsub#access_model": "everyone" }),
			"not-acceptable",
			"unsupported-access-model",
		);
		const bads: Record<string, string>[] = [
			{ "pubsub#max_items": "0" },
			{ "pubsub#max_items": "many" },
			{ "pubsub#persist_items": "perhaps" },
			{ "pubsub#title": "Bad", "pubsub#notification_type": "loud" },
		];
		for (const bad of bads) assertError(await configure(a, node, bad), "not-acceptable");
		c = await configOf(a, node);
		assert.deepEqual(
			c.get("pubsub#title"),
			["New title"],
			"a failed configuration changes nothing",
		);
	});

	test("§8.3: the default node configuration", async () => {
		const a = await user("alice");
		const r = await iq(a, "get", own("<default/>"));
		assertResult(r);
		const c = values(r.getChild("pubsub", OWNER)?.getChild("default")?.getChild("x", DATA));
		assert.deepEqual(c.get("FORM_TYPE"), [NODE_CONFIG]);
		assert.deepEqual(c.get("pubsub#access_model"), ["open"]);
		assert.deepEqual(c.get("pubsub#publish_model"), ["publishers"]);
		assert.deepEqual(c.get("pubsub#max_items"), ["256"]);
	});

	// --- delete and purge (§8.4, §8.5) ---

	test("§8.4: delete with redirect: subscribers get <delete><redirect uri/></delete>; the node is gone; others are forbidden", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const node = fresh("doomed");
		await create(a, node);
		assertResult(await subscribe(b, node));
		assertError(await iq(b, "set", own(`<delete node='${node}'/>`)), "forbidden");
		const mark = b.r.mark();
		const uri = `xmpp:${SERVICE}?;node=elsewhere`;
		assertResult(
			await iq(a, "set", own(`<delete node='${node}'><redirect uri='${uri}'/></delete>`)),
		);
		const ev = eventOf(await waitEvent(b, mark, node, "the delete notification"), node) as Element;
		assert.equal(ev.name, "delete");
		assert.equal(ev.getChild("redirect")?.attrs.uri, uri);
		assertError(await items(a, node), "item-not-found");
		assertError(await iq(a, "set", own(`<delete node='${node}'/>`)), "item-not-found");
	});

	test("§8.5: purge removes every item; subscribers get <purge/>", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const node = fresh("purged");
		await create(a, node);
		for (const id of ["1", "2", "3"]) assertResult(await publish(a, node, id));
		assertResult(await subscribe(b, node));
		assertError(await iq(b, "set", own(`<purge node='${node}'/>`)), "forbidden");
		const mark = b.r.mark();
		assertResult(await iq(a, "set", own(`<purge node='${node}'/>`)));
		const ev = eventOf(await waitEvent(b, mark, node, "the purge notification"), node) as Element;
		assert.equal(ev.name, "purge");
		assert.deepEqual(itemIds(await items(a, node)), []);
	});

	// --- publishing (§7.1) ---

	test("§7.1.1, §7.1.2: publish with and without an item id; the result carries the id; subscribers get the payload", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const node = fresh("pub");
		await create(a, node);
		assertResult(await subscribe(b, node));
		let mark = b.r.mark();
		const r = await publish(a, node, "given", "<entry xmlns='urn:test'>one</entry>");
		assertResult(r);
		const pub = r.getChild("pubsub", PUBSUB)?.getChild("publish") as Element;
		assert.equal(pub.attrs.node, node);
		assert.equal(pub.getChild("item")?.attrs.id, "given");
		let ev = eventOf(await waitEvent(b, mark, node, "the notification"), node) as Element;
		assert.equal(ev.name, "items");
		assert.equal(ev.getChild("item")?.attrs.id, "given");
		assert.equal(ev.getChild("item")?.getChild("entry", "urn:test")?.text(), "one");

		mark = b.r.mark();
		const r2 = await publish(a, node, undefined, "<entry xmlns='urn:test'>two</entry>");
		assertResult(r2);
		const generated = r2.getChild("pubsub", PUBSUB)?.getChild("publish")?.getChild("item")
			?.attrs.id;
		assert.ok(generated, `§7.1.2: the service returns the id it made: ${r2}`);
		ev = eventOf(await waitEvent(b, mark, node, "the second notification"), node) as Element;
		assert.equal(ev.getChild("item")?.attrs.id, generated);
		assert.deepEqual(itemIds(await items(a, node)), [generated, "given"]);
	});

	test("§7.1.3 (note): republishing an item id replaces the item", async () => {
		const a = await user("alice");
		const node = fresh("replace");
		await create(a, node);
		assertResult(await publish(a, node, "same", "<entry xmlns='urn:test'>old</entry>"));
		assertResult(await publish(a, node, "other"));
		assertResult(await publish(a, node, "same", "<entry xmlns='urn:test'>new</entry>"));
		const r = await items(a, node);
		assert.deepEqual(itemIds(r), ["same", "other"], "the republished item is the newest");
		const it = r.getChild("pubsub", PUBSUB)?.getChild("items")?.getChild("item") as Element;
		assert.equal(it.getChild("entry", "urn:test")?.text(), "new");
	});

	test('§7.1.2.5 max_items: the oldest items go; "max" is the service\'s limit', async () => {
		const a = await user("alice");
		const node = fresh("trim");
		await create(a, node, { "pubsub#max_items": "2" });
		for (const id of ["a", "b", "c"]) assertResult(await publish(a, node, id));
		assert.deepEqual(itemIds(await items(a, node)), ["c", "b"]);
		// Lowering max_items trims what is there.
		assertResult(await configure(a, node, { "pubsub#max_items": "1" }));
		assert.deepEqual(itemIds(await items(a, node)), ["c"]);

		// SMALL: max_items = 5 is the service's limit; the default is 3.
		const small = fresh("max");
		assertResult(
			await iq(
				a,
				"set",
				ps(
					`<create node='${small}'/><configure>${form(NODE_CONFIG, { "pubsub#max_items": "max" })}</configure>`,
				),
				SMALL,
			),
		);
		for (const id of ["1", "2", "3", "4", "5", "6"])
			assertResult(
				await iq(
					a,
					"set",
					ps(`<publish node='${small}'><item id='${id}'><x xmlns='urn:test'/></item></publish>`),
					SMALL,
				),
			);
		const r = await iq(a, "get", ps(`<items node='${small}'/>`), SMALL);
		assert.deepEqual(itemIds(r), ["6", "5", "4", "3", "2"]);
		// config-node-max: more than the service allows is not-acceptable.
		const conf = await iq(
			a,
			"set",
			own(
				`<configure node='${small}'>${form(NODE_CONFIG, { "pubsub#max_items": "6" })}</configure>`,
			),
			SMALL,
		);
		assertError(conf, "not-acceptable");
	});

	test("§7.1.3.5: a payload over pubsub#max_payload_size is not-acceptable with payload-too-big", async () => {
		const a = await user("alice");
		const node = fresh("small-payload");
		await create(a, node, { "pubsub#max_payload_size": "64" });
		const big = `<entry xmlns='urn:test'>${"x".repeat(100)}</entry>`;
		assertError(await publish(a, node, "big", big), "not-acceptable", "payload-too-big");
		assertResult(await publish(a, node, "small", "<entry xmlns='urn:test'>ok</entry>"));
		assert.deepEqual(itemIds(await items(a, node)), ["small"]);
		// The service's max_payload_size bounds what a node may set.
		assertError(
			await configure(a, node, { "pubsub#max_payload_size": "1000000" }),
			"not-acceptable",
		);
		// SMALL: max_payload_size = 200 is every node's default there.
		const small = fresh("small-default");
		assertResult(await iq(a, "set", ps(`<create node='${small}'/>`), SMALL));
		const onSmall = (body: string) =>
			iq(
				a,
				"set",
				ps(
					`<publish node='${small}'><item><entry xmlns='urn:test'>${body}</entry></item></publish>`,
				),
				SMALL,
			);
		assertError(await onSmall("y".repeat(300)), "not-acceptable", "payload-too-big");
		assertResult(await onSmall("y".repeat(100)));
	});

	test("§7.1.3.6, §7.1.3.7: item-required, payload-required, invalid-payload (two payloads, or not the node's pubsub#type)", async () => {
		const a = await user("alice");
		const node = fresh("strict");
		await create(a, node, { "pubsub#type": "urn:test" });
		assertError(
			await iq(a, "set", ps(`<publish node='${node}'/>`)),
			"bad-request",
			"item-required",
		);
		assertError(
			await iq(a, "set", ps(`<publish node='${node}'><item id='empty'/></publish>`)),
			"bad-request",
			"payload-required",
		);
		assertError(
			await publish(a, node, "two", "<entry xmlns='urn:test'/><entry xmlns='urn:test'/>"),
			"bad-request",
			"invalid-payload",
		);
		assertError(
			await publish(a, node, "other-ns", "<entry xmlns='urn:other'/>"),
			"bad-request",
			"invalid-payload",
		);
		assertResult(await publish(a, node, "right-ns", "<entry xmlns='urn:test'/>"));
		assert.deepEqual(itemIds(await items(a, node)), ["right-ns"]);
		// A publish names its node (nodeid-required, §12).
		assertError(await iq(a, "set", ps("<publish/>")), "bad-request", "nodeid-required");
	});

	test("§7.1.3.7, §7.1.2.2: a transient notification-only node takes no item (item-forbidden) and notifies without payload; §7.2.3.5, §8.5.3.3: nothing to retract or purge", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const node = fresh("transient");
		await create(a, node, { "pubsub#persist_items": "0", "pubsub#deliver_payloads": "false" });
		assertResult(await subscribe(b, node));
		assertError(await publish(a, node, "x"), "bad-request", "item-forbidden");
		const mark = b.r.mark();
		assertResult(await iq(a, "set", ps(`<publish node='${node}'/>`)));
		const ev = eventOf(await waitEvent(b, mark, node, "the notification"), node) as Element;
		assert.equal(ev.name, "items");
		const item = ev.getChild("item");
		assert.ok(item?.attrs.id, ev.toString());
		assert.deepEqual(item.elements(), [], "§7.1.2.2: no payload");
		const unsupported = (r: Element, feature: string) => {
			assertError(r, "feature-not-implemented", "unsupported");
			assert.equal(r.getChild("error")?.getChildByNs(ERRORS)?.attrs.feature, feature, r.toString());
		};
		unsupported(
			await iq(a, "set", ps(`<retract node='${node}'><item id='${item.attrs.id}'/></retract>`)),
			"persistent-items",
		);
		unsupported(await iq(a, "set", own(`<purge node='${node}'/>`)), "persistent-items");
		// §12: a request the service does not know names the feature by its short name.
		unsupported(await iq(a, "get", ps(`<frobnicate node='${node}'/>`)), "frobnicate");
	});

	test("§8.2.5.3: pubsub#notify_config: subscribers get <configuration/>, with the form when payloads are delivered", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const node = fresh("notify-config");
		await create(a, node, { "pubsub#notify_config": "1" });
		assertResult(await subscribe(b, node));
		let mark = b.r.mark();
		assertResult(await configure(a, node, { "pubsub#title": "Renamed" }));
		let ev = eventOf(
			await waitEvent(b, mark, node, "the configuration notification"),
			node,
		) as Element;
		assert.equal(ev.name, "configuration");
		const f = values(ev.getChild("x", DATA));
		assert.deepEqual(f.get("FORM_TYPE"), [NODE_CONFIG]);
		assert.deepEqual(f.get("pubsub#title"), ["Renamed"]);
		mark = b.r.mark();
		assertResult(await configure(a, node, { "pubsub#deliver_payloads": "0" }));
		ev = eventOf(await waitEvent(b, mark, node, "a notification-only one"), node) as Element;
		assert.equal(ev.name, "configuration");
		assert.deepEqual(ev.elements(), [], "notification-only: an empty <configuration/>");
	});

	test("§17.4.4 pubsub#notify_sub: owners are told of new subscribers and of those who leave (§8.8.4 form)", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const node = fresh("notify-sub");
		await create(a, node, { "pubsub#notify_sub": "1" });
		let mark = a.r.mark();
		assertResult(await subscribe(b, node));
		let ev = eventOf(await waitEvent(a, mark, node, "the new subscriber"), node) as Element;
		assert.deepEqual(
			[ev.name, ev.attrs.jid, ev.attrs.subscription],
			["subscription", b.jid, "subscribed"],
		);
		mark = a.r.mark();
		assertResult(await iq(b, "set", ps(`<unsubscribe node='${node}' jid='${b.jid}'/>`)));
		ev = eventOf(await waitEvent(a, mark, node, "the leaving subscriber"), node) as Element;
		assert.deepEqual(
			[ev.name, ev.attrs.jid, ev.attrs.subscription],
			["subscription", b.jid, "none"],
		);
	});

	test("§7.1.3.1: publishing without the publisher affiliation is forbidden; §7.2.3.1: so is retracting", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const node = fresh("guarded");
		await create(a, node);
		assertResult(await publish(a, node, "mine"));
		assertError(await publish(b, node, "theirs"), "forbidden");
		assertError(
			await iq(b, "set", ps(`<retract node='${node}'><item id='mine'/></retract>`)),
			"forbidden",
		);
		assert.deepEqual(itemIds(await items(a, node)), ["mine"]);
		// §7.2.3.2: no such item.
		assertError(
			await iq(a, "set", ps(`<retract node='${node}'><item id='nope'/></retract>`)),
			"item-not-found",
		);
		// §7.2.3.4: no item id, bad-request with item-required.
		assertError(
			await iq(a, "set", ps(`<retract node='${node}'><item/></retract>`)),
			"bad-request",
			"item-required",
		);
	});

	test("§7.2.2.1: retract with notify='true' sends <retract id/> to subscribers", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const node = fresh("retract");
		await create(a, node, { "pubsub#notify_retract": "0" });
		assertResult(await publish(a, node, "gone"));
		assertResult(await publish(a, node, "kept"));
		assertResult(await subscribe(b, node));
		const mark = b.r.mark();
		assertResult(
			await iq(a, "set", ps(`<retract node='${node}' notify='true'><item id='gone'/></retract>`)),
		);
		const ev = eventOf(await waitEvent(b, mark, node, "the retract notification"), node) as Element;
		assert.equal(ev.name, "items");
		assert.deepEqual(
			ev.getChildren("retract").map((r) => r.attrs.id),
			["gone"],
		);
		assert.deepEqual(itemIds(await items(a, node)), ["kept"]);
	});

	test("§7.1 publish_model: open lets anyone publish; subscribers lets subscribers only", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const openNode = fresh("open-pub");
		await create(a, openNode, { "pubsub#publish_model": "open" });
		assertResult(await publish(b, openNode, "from-bob"));
		const subNode = fresh("sub-pub");
		await create(a, subNode, { "pubsub#publish_model": "subscribers" });
		assertError(await publish(b, subNode, "early"), "forbidden");
		assertResult(await subscribe(b, subNode));
		assertResult(await publish(b, subNode, "late"));
		assert.deepEqual(itemIds(await items(a, subNode)), ["late"]);
	});

	// --- retrieving items (§6.5) ---

	test("§6.5.2, §6.5.7, §6.5.8: all items newest first, the newest N with max_items, items by id", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const node = fresh("retrieve");
		await create(a, node);
		for (const id of ["i1", "i2", "i3", "i4"])
			assertResult(await publish(a, node, id, `<entry xmlns='urn:test'>${id}</entry>`));
		assert.deepEqual(itemIds(await items(b, node)), ["i4", "i3", "i2", "i1"]);
		assert.deepEqual(itemIds(await items(b, node, "", " max_items='2'")), ["i4", "i3"]);
		const byId = await items(b, node, "<item id='i2'/><item id='i1'/>");
		assert.deepEqual(itemIds(byId).sort(), ["i1", "i2"]);
		const one = byId.getChild("pubsub", PUBSUB)?.getChild("items")?.getChildren("item") ?? [];
		assert.ok(one.every((i) => i.getChild("entry", "urn:test")?.text() === i.attrs.id));
		// §6.5.9.11: no such node.
		assertError(await items(b, "no-such-node"), "item-not-found");
	});

	test("§6.5.4, XEP-0059 §2: items are paged with <set><max/><after/></set>, with count, first and last", async () => {
		const a = await user("alice");
		const node = fresh("rsm");
		await create(a, node);
		for (const id of ["p1", "p2", "p3", "p4", "p5"]) assertResult(await publish(a, node, id));
		const page = async (set: string) => {
			const r = await iq(
				a,
				"get",
				`<pubsub xmlns='${PUBSUB}'><items node='${node}'/><set xmlns='${RSM}'>${set}</set></pubsub>`,
			);
			assertResult(r);
			const s = r.getChild("pubsub", PUBSUB)?.getChild("set", RSM) as Element;
			assert.ok(s, `XEP-0059 §2.1: the result carries <set/>: ${r}`);
			return {
				ids: itemIds(r),
				count: s.getChildText("count"),
				first: s.getChildText("first"),
				index: s.getChild("first")?.attrs.index,
				last: s.getChildText("last"),
			};
		};
		const p1 = await page("<max>2</max>");
		assert.deepEqual(p1, { ids: ["p5", "p4"], count: "5", first: "p5", index: "0", last: "p4" });
		const p2 = await page(`<max>2</max><after>${p1.last}</after>`);
		assert.deepEqual(p2, { ids: ["p3", "p2"], count: "5", first: "p3", index: "2", last: "p2" });
		const p3 = await page(`<max>2</max><after>${p2.last}</after>`);
		assert.deepEqual(p3.ids, ["p1"]);
		assert.equal(p3.count, "5");
		// XEP-0059 §2.6: <max>0</max> asks for the count only.
		const c = await page("<max>0</max>");
		assert.deepEqual(c.ids, []);
		assert.equal(c.count, "5");
		// XEP-0059 §2.5: the last page with an empty <before/>.
		const lastPage = await page("<max>2</max><before/>");
		assert.deepEqual(lastPage.ids, ["p2", "p1"]);
	});

	// --- subscriptions (§6.1-§6.4) ---

	test("§6.1.1, §6.2.1: subscribe and unsubscribe; §6.1.3.1 another's JID is invalid-jid; §6.2.3.2 not-subscribed", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const node = fresh("subs");
		await create(a, node);
		const marker = await markerFor(a, b);
		const r = await subscribe(b, node);
		assertResult(r);
		const sub = r.getChild("pubsub", PUBSUB)?.getChild("subscription") as Element;
		assert.equal(sub.attrs.node, node);
		assert.equal(sub.attrs.jid, b.jid);
		assert.equal(sub.attrs.subscription, "subscribed");
		assert.ok(sub.attrs.subid, "§6.1.2: a subid");
		// §5.6: bob's subscriptions list it.
		const mine = await iq(b, "get", ps("<subscriptions/>"));
		assert.ok(
			(
				mine.getChild("pubsub", PUBSUB)?.getChild("subscriptions")?.getChildren("subscription") ??
				[]
			).some((s) => s.attrs.node === node && s.attrs.jid === b.jid),
			mine.toString(),
		);
		assertError(await subscribe(b, node, "carol@localhost"), "bad-request", "invalid-jid");
		assertError(await subscribe(b, "no-such-node"), "item-not-found");
		assertResult(await iq(b, "set", ps(`<unsubscribe node='${node}' jid='${b.jid}'/>`)));
		const mark = b.r.mark();
		assertResult(await publish(a, node, "after-unsubscribe"));
		assert.deepEqual(
			await eventsBefore(a, b, marker, mark),
			[],
			"no notification after unsubscribing",
		);
		assertError(
			await iq(b, "set", ps(`<unsubscribe node='${node}' jid='${b.jid}'/>`)),
			"unexpected-request",
			"not-subscribed",
		);
		// §6.2.3.3: unsubscribing someone else is forbidden.
		assertResult(await subscribe(a, node));
		assertError(
			await iq(b, "set", ps(`<unsubscribe node='${node}' jid='${a.jid}'/>`)),
			"forbidden",
		);
		// §6.2.3.4: no such node; §6.2.3.5: a subid that is not the subscription's.
		assertError(
			await iq(b, "set", ps(`<unsubscribe node='no-such-node' jid='${b.jid}'/>`)),
			"item-not-found",
		);
		assertError(
			await iq(a, "set", ps(`<unsubscribe node='${node}' jid='${a.jid}' subid='not-it'/>`)),
			"not-acceptable",
			"invalid-subid",
		);
	});

	test("§6.1.3.9: beyond max_subscriptions_per_node, policy-violation with too-many-subscriptions", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const c = await user("carol");
		const node = fresh("crowded");
		assertResult(await iq(a, "set", ps(`<create node='${node}'/>`), SMALL));
		for (const u of [a, b])
			assertResult(await iq(u, "set", ps(`<subscribe node='${node}' jid='${u.jid}'/>`), SMALL));
		const r = await iq(c, "set", ps(`<subscribe node='${node}' jid='${c.jid}'/>`), SMALL);
		assertError(r, "policy-violation", "too-many-subscriptions");
		// §6.1.6: subscribing again returns the current subscription, and counts nothing new.
		const again = await iq(b, "set", ps(`<subscribe node='${node}' jid='${b.jid}'/>`), SMALL);
		assertResult(again);
		assert.equal(
			again.getChild("pubsub", PUBSUB)?.getChild("subscription")?.attrs.subscription,
			"subscribed",
		);
	});

	test("§6.3: subscription options get and set; pubsub#deliver=0 stops notifications; §6.4 default options", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const node = fresh("options");
		await create(a, node);
		const marker = await markerFor(a, b);
		assertResult(await subscribe(b, node));
		const got = await iq(b, "get", ps(`<options node='${node}' jid='${b.jid}'/>`));
		assertResult(got);
		const opts = values(got.getChild("pubsub", PUBSUB)?.getChild("options")?.getChild("x", DATA));
		assert.deepEqual(opts.get("FORM_TYPE"), [SUB_OPTIONS]);
		assert.deepEqual(opts.get("pubsub#deliver"), ["1"]);
		assertResult(
			await iq(
				b,
				"set",
				ps(
					`<options node='${node}' jid='${b.jid}'>${form(SUB_OPTIONS, { "pubsub#deliver": "0" })}</options>`,
				),
			),
		);
		let mark = b.r.mark();
		assertResult(await publish(a, node, "muted"));
		assert.deepEqual(
			await eventsBefore(a, b, marker, mark),
			[],
			"pubsub#deliver=0: no notification",
		);
		assertResult(
			await iq(
				b,
				"set",
				ps(
					`<options node='${node}' jid='${b.jid}'>${form(SUB_OPTIONS, { "pubsub#deliver": "true" })}</options>`,
				),
			),
		);
		mark = b.r.mark();
		assertResult(await publish(a, node, "heard"));
		const ev = eventOf(await waitEvent(b, mark, node, "the notification"), node) as Element;
		assert.equal(ev.getChild("item")?.attrs.id, "heard");
		// §6.3.4.1: options of someone else's subscription.
		assertError(await iq(b, "get", ps(`<options node='${node}' jid='${a.jid}'/>`)), "forbidden");
		// §6.3.4.2: options of no subscription.
		assertError(
			await iq(a, "get", ps(`<options node='${node}' jid='${a.jid}'/>`)),
			"unexpected-request",
			"not-subscribed",
		);
		const def = await iq(b, "get", ps("<default/>"));
		assertResult(def);
		const d = values(def.getChild("pubsub", PUBSUB)?.getChild("default")?.getChild("x", DATA));
		assert.deepEqual(d.get("FORM_TYPE"), [SUB_OPTIONS]);
	});

	test("§6.1.7: send_last_published_item = on_sub: the last item follows the subscription result", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const node = fresh("last");
		await create(a, node, { "pubsub#send_last_published_item": "on_sub" });
		assertResult(await publish(a, node, "older"));
		assertResult(await publish(a, node, "newest", "<entry xmlns='urn:test'>latest</entry>"));
		const mark = b.r.mark();
		const r = await subscribe(b, node);
		assertResult(r);
		const m = await waitEvent(b, mark, node, "the last published item");
		const got = b.r.since(mark);
		assert.ok(got.indexOf(r) < got.indexOf(m), "§6.1.7: after the subscription result");
		const ev = eventOf(m, node) as Element;
		assert.deepEqual(
			ev.getChildren("item").map((i) => i.attrs.id),
			["newest"],
		);
		assert.equal(ev.getChild("item")?.getChild("entry", "urn:test")?.text(), "latest");
		assert.ok(m.getChild("delay", "urn:xmpp:delay"), "XEP-0203 delay on an item sent later");
	});

	// --- access models (§4.5, §6.1.3, §6.5.9) ---

	test("§4.5, §6.1.3.2, §6.5.9.6: presence access needs a presence subscription to the owner (presence-subscription-required)", async () => {
		const a = await user("alice");
		const c = await user("carol");
		const node = fresh("presence");
		await create(a, node, { "pubsub#access_model": "presence" });
		assertResult(await publish(a, node, "p"));
		assertError(await subscribe(c, node), "not-authorized", "presence-subscription-required");
		assertError(await items(c, node), "not-authorized", "presence-subscription-required");
		// RFC 6121 §3.1: carol asks for alice's presence, alice approves: alice's item is "from".
		let mark = a.r.mark();
		c.c.send(`<presence to='${a.bare}' type='subscribe'/>`);
		await a.r.wait(
			(el) => el.is("presence") && el.attrs.type === "subscribe" && el.attrs.from === c.bare,
			mark,
			"the subscription request",
		);
		mark = c.r.mark();
		a.c.send(`<presence to='${c.bare}' type='subscribed'/>`);
		await c.r.wait(
			(el) => el.is("presence") && el.attrs.type === "subscribed" && el.attrs.from === a.bare,
			mark,
			"the approval",
		);
		const roster = await iq(a, "get", `<query xmlns='${ROSTER}'/>`, null);
		const item = roster
			.getChild("query", ROSTER)
			?.getChildren("item")
			.find((i) => i.attrs.jid === c.bare);
		assert.equal(item?.attrs.subscription, "from", roster.toString());
		assertResult(await subscribe(c, node));
		assert.deepEqual(itemIds(await items(c, node)), ["p"]);
	});

	test("§4.5, §6.1.3.3, §6.5.9.7: roster access needs an allowed roster group (not-in-roster-group)", async () => {
		const a = await user("alice");
		const d = await user("dave");
		const node = fresh("roster");
		await create(a, node, {
			"pubsub#access_model": "roster",
			"pubsub#roster_groups_allowed": ["Friends"],
		});
		assertError(await subscribe(d, node), "not-authorized", "not-in-roster-group");
		assertResult(
			await iq(
				a,
				"set",
				`<query xmlns='${ROSTER}'><item jid='${d.bare}'><group>Colleagues</group></item></query>`,
				null,
			),
		);
		assertError(await subscribe(d, node), "not-authorized", "not-in-roster-group");
		assertError(await items(d, node), "not-authorized", "not-in-roster-group");
		assertResult(
			await iq(
				a,
				"set",
				`<query xmlns='${ROSTER}'><item jid='${d.bare}'><group>Friends</group></item></query>`,
				null,
			),
		);
		assertResult(await subscribe(d, node));
		assertResult(await items(d, node));
	});

	test("§6.1.4, §8.6, §13.14: authorize: pending, the owner gets the approval form, submits it, the subscriber is told", async () => {
		const a = await user("alice");
		const e = await user("eve");
		const node = fresh("authorize");
		await create(a, node, { "pubsub#access_model": "authorize" });
		assertResult(await publish(a, node, "secret"));
		const aMark = a.r.mark();
		const r = await subscribe(e, node);
		assertResult(r);
		const sub = r.getChild("pubsub", PUBSUB)?.getChild("subscription") as Element;
		assert.equal(sub.attrs.subscription, "pending", "§6.1.4: pending");
		// §6.5.9.3: a pending subscription is not a subscription: no items.
		assertError(await items(e, node), "not-authorized", "not-subscribed");
		// §6.1.3.7: asking again while pending.
		assertError(await subscribe(e, node), "not-authorized", "pending-subscription");
		// §8.6.1: the owner is asked with a subscribe_authorization form.
		const ask = await a.r.wait(
			(el) => el.is("message") && el.attrs.from === SERVICE && !!el.getChild("x", DATA),
			aMark,
			"the authorization request",
		);
		const f = values(ask.getChild("x", DATA));
		assert.deepEqual(f.get("FORM_TYPE"), [SUB_AUTH]);
		assert.deepEqual(f.get("pubsub#node"), [node]);
		assert.deepEqual(f.get("pubsub#subscriber_jid"), [e.jid]);
		// §8.8.1: the owner sees the pending subscription.
		const subs = await iq(a, "get", own(`<subscriptions node='${node}'/>`));
		const pending = subs
			.getChild("pubsub", OWNER)
			?.getChild("subscriptions")
			?.getChildren("subscription")
			.find((s) => s.attrs.jid === e.jid);
		assert.equal(pending?.attrs.subscription, "pending");
		// §8.6: only an owner's answer counts: the subscriber approving itself changes nothing.
		e.c.send(
			`<message to='${SERVICE}' id='self-approve'>${form(SUB_AUTH, {
				"pubsub#node": node,
				"pubsub#subscriber_jid": e.jid,
				"pubsub#allow": "true",
			})}</message>`,
		);
		assertError(await items(e, node), "not-authorized", "not-subscribed");
		// §8.6: the owner approves.
		const eMark = e.r.mark();
		a.c.send(
			`<message to='${SERVICE}' id='approve'>${form(SUB_AUTH, {
				"pubsub#subid": f.get("pubsub#subid")?.[0] ?? "",
				"pubsub#node": node,
				"pubsub#subscriber_jid": e.jid,
				"pubsub#allow": "true",
			})}</message>`,
		);
		const ev = eventOf(
			await waitEvent(e, eMark, node, "the subscription notification"),
			node,
		) as Element;
		assert.equal(ev.name, "subscription");
		assert.equal(ev.attrs.subscription, "subscribed");
		assert.equal(ev.attrs.jid, e.jid);
		assert.deepEqual(itemIds(await items(e, node)), ["secret"]);
	});

	test("§8.6, §13.14: a subscription the owner denies is gone, and the subscriber is told", async () => {
		const a = await user("alice");
		const e = await user("eve");
		const node = fresh("deny");
		await create(a, node, { "pubsub#access_model": "authorize" });
		const aMark = a.r.mark();
		assertResult(await subscribe(e, node));
		const ask = await a.r.wait(
			(el) => el.is("message") && el.attrs.from === SERVICE && !!el.getChild("x", DATA),
			aMark,
			"the authorization request",
		);
		const f = values(ask.getChild("x", DATA));
		const eMark = e.r.mark();
		a.c.send(
			`<message to='${SERVICE}'>${form(SUB_AUTH, {
				"pubsub#subid": f.get("pubsub#subid")?.[0] ?? "",
				"pubsub#node": node,
				"pubsub#subscriber_jid": e.jid,
				"pubsub#allow": "false",
			})}</message>`,
		);
		const ev = eventOf(await waitEvent(e, eMark, node, "the denial"), node) as Element;
		assert.equal(ev.attrs.subscription, "none");
		const subs = await iq(a, "get", own(`<subscriptions node='${node}'/>`));
		assert.deepEqual(
			subs.getChild("pubsub", OWNER)?.getChild("subscriptions")?.getChildren("subscription"),
			[],
		);
	});

	test("§4.5, §6.1.3.4, §6.5.9.8: whitelist: not-allowed with closed-node until the owner makes one a member", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const node = fresh("whitelist");
		await create(a, node, { "pubsub#access_model": "whitelist" });
		assertResult(await publish(a, node, "w"));
		assertError(await subscribe(b, node), "not-allowed", "closed-node");
		assertError(await items(b, node), "not-allowed", "closed-node");
		assertResult(
			await iq(
				a,
				"set",
				own(
					`<affiliations node='${node}'><affiliation jid='${b.bare}' affiliation='member'/></affiliations>`,
				),
			),
		);
		assertResult(await subscribe(b, node));
		assert.deepEqual(itemIds(await items(b, node)), ["w"]);
		// §5.7: bob's affiliations list it.
		const affs = await iq(b, "get", ps("<affiliations/>"));
		assert.ok(
			(
				affs.getChild("pubsub", PUBSUB)?.getChild("affiliations")?.getChildren("affiliation") ?? []
			).some((x) => x.attrs.node === node && x.attrs.affiliation === "member"),
			affs.toString(),
		);
	});

	test("§4.1, §6.1.3.8, §6.5.9.10: an outcast is forbidden to subscribe or retrieve, and loses its subscription", async () => {
		const a = await user("alice");
		const c = await user("carol");
		const node = fresh("outcast");
		await create(a, node);
		assertResult(await publish(a, node, "o"));
		assertResult(await subscribe(c, node));
		assertResult(
			await iq(
				a,
				"set",
				own(
					`<affiliations node='${node}'><affiliation jid='${c.bare}' affiliation='outcast'/></affiliations>`,
				),
			),
		);
		assertError(await subscribe(c, node), "forbidden");
		assertError(await items(c, node), "forbidden");
		assertError(await publish(c, node, "no"), "forbidden");
		const subs = await iq(a, "get", own(`<subscriptions node='${node}'/>`));
		assert.deepEqual(
			subs.getChild("pubsub", OWNER)?.getChild("subscriptions")?.getChildren("subscription"),
			[],
		);
	});

	// --- owner management (§8.8, §8.9) ---

	test("§8.8.1, §8.8.2, §8.8.4: the owner reads and sets subscriptions; the entity is told; others are forbidden", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const e = await user("eve");
		const node = fresh("manage-subs");
		await create(a, node);
		assertResult(await subscribe(b, node));
		let r = await iq(a, "get", own(`<subscriptions node='${node}'/>`));
		assertResult(r);
		let subs =
			r.getChild("pubsub", OWNER)?.getChild("subscriptions")?.getChildren("subscription") ?? [];
		assert.deepEqual(
			subs.map((s) => [s.attrs.jid, s.attrs.subscription]),
			[[b.jid, "subscribed"]],
		);
		assert.ok(subs[0]?.attrs.subid);
		assertError(await iq(b, "get", own(`<subscriptions node='${node}'/>`)), "forbidden");
		assertError(
			await iq(
				b,
				"set",
				own(
					`<subscriptions node='${node}'><subscription jid='${e.jid}' subscription='subscribed'/></subscriptions>`,
				),
			),
			"forbidden",
		);
		const eMark = e.r.mark();
		assertResult(
			await iq(
				a,
				"set",
				own(
					`<subscriptions node='${node}'><subscription jid='${e.jid}' subscription='subscribed'/><subscription jid='${b.jid}' subscription='none'/></subscriptions>`,
				),
			),
		);
		const ev = eventOf(await waitEvent(e, eMark, node, "§8.8.4 notification"), node) as Element;
		assert.equal(ev.name, "subscription");
		assert.equal(ev.attrs.subscription, "subscribed");
		r = await iq(a, "get", own(`<subscriptions node='${node}'/>`));
		subs =
			r.getChild("pubsub", OWNER)?.getChild("subscriptions")?.getChildren("subscription") ?? [];
		assert.deepEqual(
			subs.map((s) => [s.attrs.jid, s.attrs.subscription]),
			[[e.jid, "subscribed"]],
		);
		const mark = e.r.mark();
		assertResult(await publish(a, node, "to-eve"));
		await waitEvent(e, mark, node, "a notification on the subscription the owner made");
	});

	test("§8.9.1, §8.9.2: the owner reads and sets affiliations; a publisher may publish, retract and purge (§4.1); the last owner stays", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const node = fresh("manage-affs");
		await create(a, node);
		assertError(await iq(b, "get", own(`<affiliations node='${node}'/>`)), "forbidden");
		assertError(
			await iq(
				b,
				"set",
				own(
					`<affiliations node='${node}'><affiliation jid='${b.bare}' affiliation='owner'/></affiliations>`,
				),
			),
			"forbidden",
		);
		assertError(await publish(b, node, "before"), "forbidden");
		assertResult(
			await iq(
				a,
				"set",
				own(
					`<affiliations node='${node}'><affiliation jid='${b.bare}' affiliation='publisher'/></affiliations>`,
				),
			),
		);
		const r = await iq(a, "get", own(`<affiliations node='${node}'/>`));
		assertResult(r);
		const affs = (
			r.getChild("pubsub", OWNER)?.getChild("affiliations")?.getChildren("affiliation") ?? []
		)
			.map((x) => [x.attrs.jid, x.attrs.affiliation])
			.sort();
		assert.deepEqual(affs, [
			["alice@localhost", "owner"],
			["bob@localhost", "publisher"],
		]);
		assertResult(await publish(b, node, "by-bob"));
		// §7.2.1: a publisher may retract any item.
		assertResult(await publish(a, node, "by-alice"));
		assertResult(await iq(b, "set", ps(`<retract node='${node}'><item id='by-alice'/></retract>`)));
		// §4.1 (Table 4): a publisher may purge.
		assertResult(await iq(b, "set", own(`<purge node='${node}'/>`)));
		assert.deepEqual(itemIds(await items(a, node)), []);
		// §8.9.2.4: removing the only owner is refused.
		assertError(
			await iq(
				a,
				"set",
				own(
					`<affiliations node='${node}'><affiliation jid='${a.bare}' affiliation='none'/></affiliations>`,
				),
			),
			"not-acceptable",
		);
		const still = await iq(a, "get", own(`<affiliations node='${node}'/>`));
		assertResult(still);
	});

	test("§4.1: publish-only may publish but not subscribe or retrieve items (forbidden), on a whitelist node as on an open one", async () => {
		const a = await user("alice");
		const d = await user("dave");
		const node = fresh("publish-only");
		await create(a, node, { "pubsub#access_model": "whitelist" });
		assertResult(
			await iq(
				a,
				"set",
				own(
					`<affiliations node='${node}'><affiliation jid='${d.bare}' affiliation='publish-only'/></affiliations>`,
				),
			),
		);
		assertResult(await publish(d, node, "dropped"));
		assertError(await items(d, node), "forbidden");
		assertError(await subscribe(d, node), "forbidden");
		assert.deepEqual(itemIds(await items(a, node)), ["dropped"]);
		// §4.1: publish-only may retract its own items only.
		assertResult(await publish(a, node, "owners"));
		assertError(
			await iq(d, "set", ps(`<retract node='${node}'><item id='owners'/></retract>`)),
			"forbidden",
		);
		assertResult(await iq(d, "set", ps(`<retract node='${node}'><item id='dropped'/></retract>`)));
		const open = fresh("publish-only-open");
		await create(a, open);
		assertResult(
			await iq(
				a,
				"set",
				own(
					`<affiliations node='${open}'><affiliation jid='${d.bare}' affiliation='publish-only'/></affiliations>`,
				),
			),
		);
		assertResult(await publish(d, open, "in"));
		assertError(await items(d, open), "forbidden");
		assertError(await subscribe(d, open), "forbidden");
	});

	test("§17.4.4 pubsub#notification_type: headline by default, normal when configured", async () => {
		const a = await user("alice");
		const b = await user("bob");
		const node = fresh("types");
		await create(a, node);
		assertResult(await subscribe(b, node));
		let mark = b.r.mark();
		assertResult(await publish(a, node, "h"));
		let m = await waitEvent(b, mark, node, "a headline notification");
		assert.equal(m.attrs.type, "headline");
		assertResult(await configure(a, node, { "pubsub#notification_type": "normal" }));
		mark = b.r.mark();
		assertResult(await publish(a, node, "n"));
		m = await waitEvent(b, mark, node, "a normal notification");
		assert.ok(m.attrs.type === undefined || m.attrs.type === "normal", m.toString());
	});

	// --- publish-options (§7.1.5) ---

	test("§7.1.5: publish-options create a missing node with those options", async () => {
		const a = await user("alice");
		const node = fresh("po-create");
		const r = await iq(
			a,
			"set",
			ps(
				`<publish node='${node}'><item id='current'><entry xmlns='urn:test'/></item></publish><publish-options>${form(PUBLISH_OPTIONS, { "pubsub#access_model": "whitelist", "pubsub#max_items": "1", "pubsub#persist_items": "true" })}</publish-options>`,
			),
		);
		assertResult(r);
		const c = await configOf(a, node);
		assert.deepEqual(c.get("pubsub#access_model"), ["whitelist"]);
		assert.deepEqual(c.get("pubsub#max_items"), ["1"]);
		assert.deepEqual(itemIds(await items(a, node)), ["current"]);
	});

	test('§7.1.5: on an existing node, options that differ are conflict with precondition-not-met; matching ones ("1" for "true") pass', async () => {
		const a = await user("alice");
		const node = fresh("po-check");
		await create(a, node, { "pubsub#access_model": "presence" });
		const withOptions = (id: string, fields: Record<string, string>) =>
			iq(
				a,
				"set",
				ps(
					`<publish node='${node}'><item id='${id}'><entry xmlns='urn:test'/></item></publish><publish-options>${form(PUBLISH_OPTIONS, fields)}</publish-options>`,
				),
			);
		assertError(
			await withOptions("x", { "pubsub#access_model": "open" }),
			"conflict",
			"precondition-not-met",
		);
		assertError(
			await withOptions("y", { "pubsub#persist_items": "false" }),
			"conflict",
			"precondition-not-met",
		);
		assertResult(
			await withOptions("z", { "pubsub#access_model": "presence", "pubsub#persist_items": "1" }),
		);
		assertResult(await withOptions("w", { "pubsub#persist_items": "true" }));
		assert.deepEqual(
			itemIds(await items(a, node)),
			["w", "z"],
			"the failed publishes stored nothing",
		);
		// §7.1.5: a form of another FORM_TYPE is bad-request with invalid-options... per §7.1.5 Example.
		const wrong = await iq(
			a,
			"set",
			ps(
				`<publish node='${node}'><item id='v'><entry xmlns='urn:test'/></item></publish><publish-options>${form(NODE_CONFIG, { "pubsub#access_model": "presence" })}</publish-options>`,
			),
		);
		assertError(wrong, "bad-request", "invalid-options");
	});

	// --- a real client library ---

	test("@xmpp/client: an xmpp.js client creates a node and publishes; another xmpp.js client gets the notification (§7.1.2)", async () => {
		const alice = await xmppConnect(`xmpp://127.0.0.1:${t.port}`, "alice", "alice-pw", {
			resource: "js",
		});
		const bob = await xmppConnect(`xmpps://localhost:${t.tlsPort}`, "bob", "bob-pw", {
			resource: "js",
		});
		try {
			const { xml } = await import("@xmpp/client");
			const node = fresh("xmppjs");
			await alice.xmpp.iqCaller.set(
				xml("pubsub", { xmlns: PUBSUB }, xml("create", { node })),
				SERVICE,
			);
			const sub = await bob.xmpp.iqCaller.set(
				xml("pubsub", { xmlns: PUBSUB }, xml("subscribe", { node, jid: bob.jid })),
				SERVICE,
			);
			assert.equal(sub.getChild("subscription")?.attrs.subscription, "subscribed");
			const res = await alice.xmpp.iqCaller.set(
				xml(
					"pubsub",
					{ xmlns: PUBSUB },
					xml(
						"publish",
						{ node },
						xml("item", { id: "js1" }, xml("entry", { xmlns: "urn:test" }, "from xmpp.js")),
					),
				),
				SERVICE,
			);
			assert.equal(res.getChild("publish")?.getChild("item")?.attrs.id, "js1");
			const m = await waitFor(
				() =>
					bob.stanzas.find(
						(s) =>
							s.is("message") &&
							s.attrs.from === SERVICE &&
							s.getChild("event", EVENT)?.getChild("items")?.attrs.node === node,
					),
				"the notification",
			);
			const it = m.getChild("event", EVENT)?.getChild("items")?.getChild("item");
			assert.equal(it?.attrs.id, "js1");
			assert.equal(it?.getChildText("entry", "urn:test"), "from xmpp.js");
		} finally {
			await alice.xmpp.stop();
			await bob.xmpp.stop();
		}
	});
});

describe("XEP-0060 persistence", () => {
	test("§4.3 persistent items: nodes, configuration, affiliations, subscriptions and items survive a restart", async () => {
		const dataDir = mkdtempSync(pathJoin(tmpdir(), "parley-pubsub-"));
		const node = "kept";
		try {
			let t = await startTestServer({
				config: baseConfig,
				users: allUsers,
				storage: "sqlite",
				dataDir,
			});
			let a = await connect(t, "alice");
			let b = await connect(t, "bob");
			await create(a, node, {
				"pubsub#title": "Kept",
				"pubsub#access_model": "whitelist",
				"pubsub#max_items": "5",
			});
			assertResult(
				await iq(
					a,
					"set",
					own(
						`<affiliations node='${node}'><affiliation jid='${b.bare}' affiliation='member'/></affiliations>`,
					),
				),
			);
			const bobJid = "bob@localhost/kept";
			assertResult(await subscribe(b, node, b.bare));
			assertResult(await publish(a, node, "one", "<entry xmlns='urn:test'>1</entry>"));
			assertResult(await publish(a, node, "two", "<entry xmlns='urn:test'>2</entry>"));
			a.c.end();
			b.c.end();
			await t.server.stop();

			t = await startTestServer({ config: baseConfig, storage: "sqlite", dataDir });
			try {
				a = await connect(t, "alice");
				b = await connect(t, "bob");
				void bobJid;
				const c = await configOf(a, node);
				assert.deepEqual(c.get("pubsub#title"), ["Kept"]);
				assert.deepEqual(c.get("pubsub#access_model"), ["whitelist"]);
				assert.deepEqual(c.get("pubsub#max_items"), ["5"]);
				const affs = await iq(a, "get", own(`<affiliations node='${node}'/>`));
				assert.deepEqual(
					(
						affs.getChild("pubsub", OWNER)?.getChild("affiliations")?.getChildren("affiliation") ??
						[]
					)
						.map((x) => [x.attrs.jid, x.attrs.affiliation])
						.sort(),
					[
						["alice@localhost", "owner"],
						["bob@localhost", "member"],
					],
				);
				const subs = await iq(a, "get", own(`<subscriptions node='${node}'/>`));
				assert.deepEqual(
					(
						subs
							.getChild("pubsub", OWNER)
							?.getChild("subscriptions")
							?.getChildren("subscription") ?? []
					).map((s) => [s.attrs.jid, s.attrs.subscription]),
					[["bob@localhost", "subscribed"]],
				);
				const r = await items(b, node);
				assert.deepEqual(itemIds(r), ["two", "one"]);
				assert.equal(
					r
						.getChild("pubsub", PUBSUB)
						?.getChild("items")
						?.getChild("item")
						?.getChild("entry", "urn:test")
						?.text(),
					"2",
				);
				// The kept subscription still delivers (to the bare JID: bob is available).
				const mark = b.r.mark();
				assertResult(await publish(a, node, "three"));
				const ev = eventOf(
					await waitEvent(b, mark, node, "a notification after the restart"),
					node,
				);
				assert.equal(ev?.getChild("item")?.attrs.id, "three");
				a.c.end();
				b.c.end();
			} finally {
				await t.server.stop();
			}
		} finally {
			rmSync(dataDir, { recursive: true, force: true });
		}
	});
});
