/**
 * Personal Eventing Protocol (XEP-0163) end to end over real sockets: auto-create, access
 * models, +notify filtering through entity capabilities (XEP-0115), the last item on presence,
 * publish-options as OMEMO (XEP-0384) uses them, limits, and persistence.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import type { Element } from "../../src/xml/element.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { postgresSkip, TEST_PG_URL } from "../helpers/services.ts";
import {
	availableWithCaps,
	befriend,
	connectUser,
	errorOf,
	iq,
	type User,
} from "../helpers/xmpp-user.ts";

const PUBSUB = "http://jabber.org/protocol/pubsub";
const EVENT = "http://jabber.org/protocol/pubsub#event";
const TUNE = "http://jabber.org/protocol/tune";
const DEVICELIST = "eu.siacs.conversations.axolotl.devicelist";
const BUNDLE = "eu.siacs.conversations.axolotl.bundles:1234";

const publishOptions = (fields: Record<string, string>) =>
	`<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>${PUBSUB}#publish-options</value></field>${Object.entries(
		fields,
	)
		.map(([k, v]) => `<field var='${k}'><value>${v}</value></field>`)
		.join("")}</x></publish-options>`;

const publish = (node: string, payload: string, id = "current", options = "") =>
	`<pubsub xmlns='${PUBSUB}'><publish node='${node}'><item id='${id}'>${payload}</item></publish>${options}</pubsub>`;

const tune = (title: string) => `<tune xmlns='${TUNE}'><title>${title}</title></tune>`;

const isEvent = (node: string, from: string) => (el: Element) =>
	el.is("message") &&
	el.attrs.from === from &&
	el.getChild("event", EVENT)?.getChild("items")?.attrs.node === node;

describe("XEP-0163 Personal Eventing Protocol", () => {
	let t: TestServer;
	const open: User[] = [];
	const user = async (name: string, resource = "r") => {
		const u = await connectUser(t.port, name, resource);
		open.push(u);
		return u;
	};

	before(async () => {
		t = await startTestServer({
			config: {
				auth: { require_encryption: false, allow_plain_without_tls: true },
				hosts: { localhost: { module_options: { pep: { max_nodes: 5 } } } },
			},
			users: ["alice", "bob", "carol", "dave", "erin"].map((u) => [`${u}@localhost`, `${u}-pw`]),
		});
		await befriend(t.server, "alice@localhost", "bob@localhost");
	});
	after(async () => {
		for (const u of open) u.c.end();
		await t.stop();
	});

	test("§1 / XEP-0060 §7.1.5: the account's disco#info has pubsub/pep and publish-options", async () => {
		const alice = await user("alice", "disco");
		const r = await iq(alice, "get", "", "<query xmlns='http://jabber.org/protocol/disco#info'/>");
		assert.equal(r.attrs.type, "result", r.toString());
		const q = r.getChild("query") as Element;
		assert.ok(
			q
				.getChildren("identity")
				.some((i) => i.attrs.category === "pubsub" && i.attrs.type === "pep"),
		);
		const features = q.getChildren("feature").map((f) => f.attrs.var);
		assert.ok(features.includes(`${PUBSUB}#publish-options`));
		assert.ok(features.includes(`${PUBSUB}#auto-create`));
	});

	test("§3 auto-create, presence access (§4.5): a contact reads, a stranger gets presence-subscription-required, only the owner publishes", async () => {
		const alice = await user("alice", "p1");
		const bob = await user("bob", "p1");
		const carol = await user("carol", "p1");
		const pub = await iq(alice, "set", "", publish(TUNE, tune("one"), "t1"));
		assert.equal(pub.attrs.type, "result", pub.toString());
		const got = await iq(
			bob,
			"get",
			"alice@localhost",
			`<pubsub xmlns='${PUBSUB}'><items node='${TUNE}'/></pubsub>`,
		);
		assert.equal(got.attrs.type, "result", got.toString());
		assert.equal(got.getChild("pubsub")?.getChild("items")?.getChild("item")?.attrs.id, "t1");
		const denied = await iq(
			carol,
			"get",
			"alice@localhost",
			`<pubsub xmlns='${PUBSUB}'><items node='${TUNE}'/></pubsub>`,
		);
		assert.deepEqual(errorOf(denied), {
			condition: "not-authorized",
			app: "presence-subscription-required",
		});
		const forged = await iq(bob, "set", "alice@localhost", publish(TUNE, tune("not mine")));
		assert.equal(errorOf(forged).condition, "forbidden", forged.toString());
	});

	test("§4.3: +notify filtering: the resource that asked gets the notification, the other does not", async () => {
		const alice = await user("alice", "n1");
		const bob1 = await user("bob", "wants");
		const bob2 = await user("bob", "nowant");
		await availableWithCaps(bob1, [TUNE]);
		await availableWithCaps(bob2, ["urn:example:other"]);
		// The caps are learned when the answer arrives: a round trip makes sure it was handled.
		await iq(bob1, "get", "localhost", "<ping xmlns='urn:xmpp:ping'/>");
		const m1 = bob1.r.mark();
		const m2 = bob2.r.mark();
		await iq(alice, "set", "", publish(TUNE, tune("two"), "t2"));
		const ev = await bob1.r.wait(isEvent(TUNE, "alice@localhost"), m1, "tune notification");
		assert.equal(ev.getChild("event", EVENT)?.getChild("items")?.getChild("item")?.attrs.id, "t2");
		// bob2 is a contact too; a round trip after the publish shows nothing came for it.
		await iq(bob2, "get", "localhost", "<ping xmlns='urn:xmpp:ping'/>");
		assert.equal(bob2.r.since(m2).filter(isEvent(TUNE, "alice@localhost")).length, 0);
	});

	test("§4.3.2: a contact coming online gets the last item of each node it wants", async () => {
		const alice = await user("alice", "l1");
		await iq(alice, "set", "", publish(TUNE, tune("latest"), "t3"));
		const bob = await user("bob", "late");
		const mark = await availableWithCaps(bob, [TUNE]);
		const ev = await bob.r.wait(isEvent(TUNE, "alice@localhost"), mark, "last tune");
		assert.equal(ev.getChild("event", EVENT)?.getChild("items")?.getChild("item")?.attrs.id, "t3");
		assert.ok(ev.getChild("delay", "urn:xmpp:delay"), "a last item carries its delay");
	});

	test("§4.3.1: the account's own new resource gets the last items it wants, and later notifications", async () => {
		const alice = await user("alice", "own1");
		await iq(alice, "set", "", publish(TUNE, tune("mine"), "own-1"));
		const second = await user("alice", "own2");
		const mark = await availableWithCaps(second, [TUNE]);
		const last = await second.r.wait(isEvent(TUNE, "alice@localhost"), mark, "own last tune");
		assert.equal(
			last.getChild("event", EVENT)?.getChild("items")?.getChild("item")?.attrs.id,
			"own-1",
		);
		const m2 = second.r.mark();
		await iq(alice, "set", "", publish(TUNE, tune("next"), "own-2"));
		const next = await second.r.wait(isEvent(TUNE, "alice@localhost"), m2, "own next tune");
		assert.equal(
			next.getChild("event", EVENT)?.getChild("items")?.getChild("item")?.attrs.id,
			"own-2",
		);
	});

	test("XEP-0384 with §7.1.5 publish-options: a device list and a bundle readable by a non-contact; preconditions hold", async () => {
		const alice = await user("alice", "omemo");
		const carol = await user("carol", "omemo");
		const list = `<list xmlns='eu.siacs.conversations.axolotl'><device id='1234'/></list>`;
		const r1 = await iq(
			alice,
			"set",
			"",
			publish(DEVICELIST, list, "current", publishOptions({ "pubsub#access_model": "open" })),
		);
		assert.equal(r1.attrs.type, "result", r1.toString());
		const bundle = `<bundle xmlns='eu.siacs.conversations.axolotl'><signedPreKeyPublic signedPreKeyId='1'>AAAA</signedPreKeyPublic></bundle>`;
		const r2 = await iq(
			alice,
			"set",
			"",
			publish(
				BUNDLE,
				bundle,
				"current",
				publishOptions({ "pubsub#access_model": "open", "pubsub#max_items": "max" }),
			),
		);
		assert.equal(r2.attrs.type, "result", r2.toString());
		for (const node of [DEVICELIST, BUNDLE]) {
			const got = await iq(
				carol,
				"get",
				"alice@localhost",
				`<pubsub xmlns='${PUBSUB}'><items node='${node}'/></pubsub>`,
			);
			assert.equal(got.attrs.type, "result", got.toString());
			assert.ok(got.getChild("pubsub")?.getChild("items")?.getChild("item")?.elements()[0], node);
		}
		// Same options again: met ("true"/"1" do not matter for booleans, nor "max" for max).
		const again = await iq(
			alice,
			"set",
			"",
			publish(DEVICELIST, list, "current", publishOptions({ "pubsub#access_model": "open" })),
		);
		assert.equal(again.attrs.type, "result", again.toString());
		// The tune node has access_model presence: asking for open is a precondition not met.
		const conflict = await iq(
			alice,
			"set",
			"",
			publish(TUNE, tune("x"), "t9", publishOptions({ "pubsub#access_model": "open" })),
		);
		assert.deepEqual(errorOf(conflict), { condition: "conflict", app: "precondition-not-met" });
	});

	test("XEP-0191 §3.2: a contact that blocked the account gets none of its notifications; unblocked, it does", async () => {
		await befriend(t.server, "alice@localhost", "dave@localhost");
		const alice = await user("alice", "b1");
		const dave = await user("dave", "b1");
		await availableWithCaps(dave, [TUNE]);
		const block = (verb: string) =>
			iq(
				dave,
				"set",
				"",
				`<${verb} xmlns='urn:xmpp:blocking'><item jid='alice@localhost'/></${verb}>`,
			);
		assert.equal((await block("block")).attrs.type, "result");
		const mark = dave.r.mark();
		await iq(alice, "set", "", publish(TUNE, tune("blocked"), "b-1"));
		await iq(dave, "get", "localhost", "<ping xmlns='urn:xmpp:ping'/>");
		assert.equal(dave.r.since(mark).filter(isEvent(TUNE, "alice@localhost")).length, 0);
		assert.equal((await block("unblock")).attrs.type, "result");
		const m2 = dave.r.mark();
		await iq(alice, "set", "", publish(TUNE, tune("unblocked"), "b-2"));
		await dave.r.wait(isEvent(TUNE, "alice@localhost"), m2, "the tune after unblocking");
	});

	test("XEP-0223: a whitelist node is the owner's alone: a contact that +notifies it gets closed-node and no notification", async () => {
		const PRIVATE = "urn:example:private-settings";
		const alice = await user("alice", "w1");
		const bob = await user("bob", "w1");
		await availableWithCaps(bob, [PRIVATE, TUNE]);
		await iq(bob, "get", "localhost", "<ping xmlns='urn:xmpp:ping'/>");
		const mark = bob.r.mark();
		const r = await iq(
			alice,
			"set",
			"",
			publish(
				PRIVATE,
				"<settings xmlns='urn:example:private-settings'/>",
				"current",
				publishOptions({ "pubsub#access_model": "whitelist", "pubsub#persist_items": "true" }),
			),
		);
		assert.equal(r.attrs.type, "result", r.toString());
		// A marker the contact does get: everything sent before it has arrived by then.
		await iq(alice, "set", "", publish(TUNE, tune("marker"), "w-marker"));
		await bob.r.wait(isEvent(TUNE, "alice@localhost"), mark, "the marker tune");
		assert.equal(bob.r.since(mark).filter(isEvent(PRIVATE, "alice@localhost")).length, 0);
		const denied = await iq(
			bob,
			"get",
			"alice@localhost",
			`<pubsub xmlns='${PUBSUB}'><items node='${PRIVATE}'/></pubsub>`,
		);
		assert.deepEqual(errorOf(denied), { condition: "not-allowed", app: "closed-node" });
		const mine = await iq(
			alice,
			"get",
			"",
			`<pubsub xmlns='${PUBSUB}'><items node='${PRIVATE}'/></pubsub>`,
		);
		assert.equal(mine.getChild("pubsub")?.getChild("items")?.getChild("item")?.attrs.id, "current");
	});

	test("owner configuration and node limits: max_nodes holds with not-allowed + max-nodes-exceeded", async () => {
		const dave = await user("dave", "lim");
		for (let i = 0; i < 5; i++) {
			const r = await iq(dave, "set", "", publish(`urn:example:n${i}`, "<x xmlns='urn:example'/>"));
			assert.equal(r.attrs.type, "result", r.toString());
		}
		const over = await iq(dave, "set", "", publish("urn:example:n5", "<x xmlns='urn:example'/>"));
		assert.deepEqual(errorOf(over), { condition: "not-allowed", app: "max-nodes-exceeded" });
		const items = await iq(
			dave,
			"get",
			"",
			"<query xmlns='http://jabber.org/protocol/disco#items'/>",
		);
		assert.equal(items.getChild("query")?.getChildren("item").length, 5);
	});

	test("an account removed takes its PEP nodes and items along; created again, it starts empty", async () => {
		const erin = await user("erin", "gone");
		await iq(erin, "set", "", publish(TUNE, tune("mine"), "e1"));
		const host = t.server.hosts.get("localhost");
		assert.ok(await host?.keyval("pep").get("erin"));
		erin.c.end();
		await host?.accounts.delete("erin");
		assert.equal(await host?.keyval("pep").get("erin"), undefined);
		assert.equal((await host?.map("pep_items").getAll("erin"))?.size, 0);
		await host?.accounts.create("erin", "erin-pw");
		const again = await user("erin", "again");
		const r = await iq(
			again,
			"get",
			"",
			`<pubsub xmlns='${PUBSUB}'><items node='${TUNE}'/></pubsub>`,
		);
		assert.equal(errorOf(r).condition, "item-not-found", r.toString());
	});

	test("payloads over the limit are not-acceptable + payload-too-big", async () => {
		const erin = await user("erin", "big");
		const big = `<data xmlns='urn:xmpp:avatar:data'>${"A".repeat(140_000)}</data>`;
		const r = await iq(erin, "set", "", publish("urn:xmpp:avatar:data", big, "abc"));
		assert.deepEqual(errorOf(r), { condition: "not-acceptable", app: "payload-too-big" });
	});
});

describe("XEP-0398 avatar conversion and XEP-0402 bookmarks compatibility", () => {
	let t: TestServer;
	const open: User[] = [];
	const user = async (name: string, resource = "r") => {
		const u = await connectUser(t.port, name, resource);
		open.push(u);
		return u;
	};
	// A 1x1 PNG.
	const PNG =
		"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
	const sha1 = (b64: string) => createHash("sha1").update(Buffer.from(b64, "base64")).digest("hex");
	const BM2 = "urn:xmpp:bookmarks:1";

	before(async () => {
		t = await startTestServer({
			config: { auth: { require_encryption: false, allow_plain_without_tls: true } },
			users: ["frank", "gina", "hank"].map((u) => [`${u}@localhost`, `${u}-pw`]),
		});
	});
	after(async () => {
		for (const u of open) u.c.end();
		await t.stop();
	});

	test("XEP-0398 §4: a vCard PHOTO is published as a XEP-0084 avatar (data and metadata)", async () => {
		const frank = await user("frank", "v");
		const set = await iq(
			frank,
			"set",
			"",
			`<vCard xmlns='vcard-temp'><FN>Frank</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>${PNG}</BINVAL></PHOTO></vCard>`,
		);
		assert.equal(set.attrs.type, "result", set.toString());
		const meta = await iq(
			frank,
			"get",
			"",
			`<pubsub xmlns='${PUBSUB}'><items node='urn:xmpp:avatar:metadata'/></pubsub>`,
		);
		const info = meta
			.getChild("pubsub")
			?.getChild("items")
			?.getChild("item")
			?.getChild("metadata")
			?.getChild("info");
		assert.equal(info?.attrs.id, sha1(PNG), meta.toString());
		assert.equal(info?.attrs.type, "image/png");
		const data = await iq(
			frank,
			"get",
			"",
			`<pubsub xmlns='${PUBSUB}'><items node='urn:xmpp:avatar:data'><item id='${sha1(PNG)}'/></items></pubsub>`,
		);
		assert.equal(
			data.getChild("pubsub")?.getChild("items")?.getChild("item")?.getChildText("data"),
			PNG,
		);
	});

	test("XEP-0398 §3: an avatar published with XEP-0084 shows in the vCard and in presence (XEP-0153)", async () => {
		const gina = await user("gina", "v");
		const id = sha1(PNG);
		const d = await iq(
			gina,
			"set",
			"",
			publish("urn:xmpp:avatar:data", `<data xmlns='urn:xmpp:avatar:data'>${PNG}</data>`, id),
		);
		assert.equal(d.attrs.type, "result", d.toString());
		const m = await iq(
			gina,
			"set",
			"",
			publish(
				"urn:xmpp:avatar:metadata",
				`<metadata xmlns='urn:xmpp:avatar:metadata'><info id='${id}' type='image/png' bytes='70'/></metadata>`,
				id,
			),
		);
		assert.equal(m.attrs.type, "result", m.toString());
		const vcard = await iq(gina, "get", "", "<vCard xmlns='vcard-temp'/>");
		assert.equal(
			vcard.getChild("vCard")?.getChild("PHOTO")?.getChildText("BINVAL"),
			PNG,
			vcard.toString(),
		);
		const mark = gina.r.mark();
		gina.c.send("<presence/>");
		const own = await gina.r.wait(
			(el) => el.is("presence") && el.attrs.from === gina.jid,
			mark,
			"own presence",
		);
		assert.equal(own.getChild("x", "vcard-temp:x:update")?.getChildText("photo"), id);
		// Disabling the avatar (XEP-0084 §4.4, empty metadata) removes the vCard photo.
		await iq(
			gina,
			"set",
			"",
			publish("urn:xmpp:avatar:metadata", "<metadata xmlns='urn:xmpp:avatar:metadata'/>", "off"),
		);
		const after = await iq(gina, "get", "", "<vCard xmlns='vcard-temp'/>");
		assert.equal(after.getChild("vCard")?.getChild("PHOTO"), undefined, after.toString());
	});

	test("XEP-0402 §5.3: XEP-0048 private bookmarks become Bookmarks 2 items and back", async () => {
		const hank = await user("hank", "b");
		const disco = await iq(
			hank,
			"get",
			"",
			"<query xmlns='http://jabber.org/protocol/disco#info'/>",
		);
		const features =
			disco
				.getChild("query")
				?.getChildren("feature")
				.map((f) => f.attrs.var) ?? [];
		assert.ok(features.includes(`${BM2}#compat`), disco.toString());
		const legacy = `<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'><conference jid='a@conference.localhost' name='A' autojoin='true'><nick>hank</nick></conference><conference jid='b@conference.localhost' name='B'/><url name='site' url='https://example.org'/></storage></query>`;
		assert.equal((await iq(hank, "set", "", legacy)).attrs.type, "result");
		const items = await iq(
			hank,
			"get",
			"",
			`<pubsub xmlns='${PUBSUB}'><items node='${BM2}'/></pubsub>`,
		);
		const got = items.getChild("pubsub")?.getChild("items")?.getChildren("item") ?? [];
		assert.deepEqual(
			got.map((i) => i.attrs.id).sort(),
			["a@conference.localhost", "b@conference.localhost"],
			items.toString(),
		);
		const a = got.find((i) => i.attrs.id === "a@conference.localhost")?.getChild("conference", BM2);
		assert.equal(a?.attrs.autojoin, "true");
		assert.equal(a?.getChildText("nick"), "hank");
		// XEP-0402 §3: the node is whitelist-only and keeps every item.
		const cfg = await iq(
			hank,
			"get",
			"",
			`<pubsub xmlns='${PUBSUB}#owner'><configure node='${BM2}'/></pubsub>`,
		);
		const value = (v: string) =>
			cfg
				.getChild("pubsub")
				?.getChild("configure")
				?.getChild("x")
				?.getChildren("field")
				.find((f) => f.attrs.var === v)
				?.getChildText("value");
		assert.equal(value("pubsub#access_model"), "whitelist");
		assert.equal(value("pubsub#max_items"), "max");
		// A Bookmarks 2 client adds one and removes one: the private copy follows.
		await iq(
			hank,
			"set",
			"",
			publish(
				BM2,
				`<conference xmlns='${BM2}' name='C' autojoin='true'/>`,
				"c@conference.localhost",
				publishOptions({
					"pubsub#access_model": "whitelist",
					"pubsub#max_items": "max",
					"pubsub#persist_items": "true",
					"pubsub#send_last_published_item": "never",
				}),
			),
		);
		await iq(
			hank,
			"set",
			"",
			`<pubsub xmlns='${PUBSUB}'><retract node='${BM2}' notify='true'><item id='b@conference.localhost'/></retract></pubsub>`,
		);
		const priv = await iq(
			hank,
			"get",
			"",
			"<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>",
		);
		const storage = priv.getChild("query")?.getChild("storage");
		assert.deepEqual(
			storage
				?.getChildren("conference")
				.map((c) => c.attrs.jid)
				.sort(),
			["a@conference.localhost", "c@conference.localhost"],
			priv.toString(),
		);
		assert.ok(storage?.getChild("url"), "URL bookmarks stay in the private copy");
	});
});

describe("PEP storage: nodes, configuration and items survive a restart", () => {
	const schema = `parley_test_pep_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
	after(async () => {
		if (postgresSkip) return;
		const c = new pg.Client({ connectionString: TEST_PG_URL });
		await c.connect();
		await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
		await c.end();
	});
	const cases = [
		["sqlite", { backend: "sqlite" as const }],
		["postgres", { backend: "postgres" as const, url: TEST_PG_URL, schema }],
	] as const;
	for (const [name, storage] of cases) {
		test(`${name}: an OMEMO device list with its open access model, and a tune, after a restart`, {
			skip: name === "postgres" ? postgresSkip : false,
		}, async () => {
			const dataDir = mkdtempSync(join(tmpdir(), "parley-pep-"));
			const config = {
				auth: { require_encryption: false, allow_plain_without_tls: true },
				storage,
			};
			try {
				let t = await startTestServer({
					config,
					storage: "sqlite",
					dataDir,
					users: [["ivy@localhost", "ivy-pw"]],
				});
				let ivy = await connectUser(t.port, "ivy", "one");
				const list = `<list xmlns='eu.siacs.conversations.axolotl'><device id='99'/></list>`;
				await iq(
					ivy,
					"set",
					"",
					publish(DEVICELIST, list, "current", publishOptions({ "pubsub#access_model": "open" })),
				);
				await iq(ivy, "set", "", publish(TUNE, tune("kept"), "k1"));
				ivy.c.end();
				await t.server.stop();
				t = await startTestServer({ config, storage: "sqlite", dataDir });
				try {
					ivy = await connectUser(t.port, "ivy", "two");
					const got = await iq(
						ivy,
						"get",
						"",
						`<pubsub xmlns='${PUBSUB}'><items node='${DEVICELIST}'/></pubsub>`,
					);
					assert.equal(
						got
							.getChild("pubsub")
							?.getChild("items")
							?.getChild("item")
							?.getChild("list")
							?.getChild("device")?.attrs.id,
						"99",
						got.toString(),
					);
					const tuneItems = await iq(
						ivy,
						"get",
						"",
						`<pubsub xmlns='${PUBSUB}'><items node='${TUNE}'/></pubsub>`,
					);
					assert.equal(
						tuneItems.getChild("pubsub")?.getChild("items")?.getChild("item")?.attrs.id,
						"k1",
					);
					// The access model chosen at publication is kept (a precondition still met).
					const again = await iq(
						ivy,
						"set",
						"",
						publish(DEVICELIST, list, "current", publishOptions({ "pubsub#access_model": "open" })),
					);
					assert.equal(again.attrs.type, "result", again.toString());
					ivy.c.end();
				} finally {
					await t.server.stop();
				}
			} finally {
				rmSync(dataDir, { recursive: true, force: true });
			}
		});
	}
});
