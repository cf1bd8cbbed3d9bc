/**
 * Rosters and subscriptions end to end (RFC 6121 §2, §3), with a real client library for the
 * happy paths and raw sockets for the error cases; shared roster groups; across hosts.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type XmlElement, xml } from "@xmpp/client";
import { DEFAULT_HOST_MODULES } from "../../src/core/config/schema.ts";
import { setSharedGroup } from "../../src/modules/shared-roster.ts";
import type { RawClient } from "../helpers/raw.ts";
import { iq } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";
import { type XmppConnection, connect as xmppConnect } from "../helpers/xmpp-client.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

let t: TestServer;

const USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivan", "judy"];

before(async () => {
	t = await startTestServer({
		config: {
			auth: { require_encryption: false, allow_plain_without_tls: true },
			hosts: {
				"a.example": {
					modules: [...DEFAULT_HOST_MODULES, "shared_roster"],
					module_options: {
						shared_roster: { groups: { Staff: ["ivan@a.example", "judy@a.example"] } },
					},
				},
				"b.example": {},
				"small.example": { module_options: { roster: { max_items: 2 } } },
			},
		},
		users: [
			...USERS.map((u) => [`${u}@a.example`, "pw"] as [string, string]),
			["bob@b.example", "pw"],
			["sam@small.example", "pw"],
		],
	});
});
after(() => t.stop());

type Conn = XmppConnection;

const connect = (user: string, domain = "a.example", resource = "r1"): Promise<Conn> =>
	xmppConnect(`xmpp://127.0.0.1:${t.port}`, user, "pw", { domain, resource });

const rosterQuery = (attrs: Record<string, string> = {}, ...children: XmlElement[]) =>
	xml("query", { xmlns: "jabber:iq:roster", ...attrs }, ...children);

async function rosterGet(c: Conn, ver?: string): Promise<XmlElement> {
	return c.xmpp.iqCaller.request(
		xml(
			"iq",
			{ type: "get", id: `g${Math.random()}` },
			rosterQuery(ver === undefined ? {} : { ver }),
		),
	);
}

function items(result: XmlElement): Map<string, XmlElement> {
	const m = new Map<string, XmlElement>();
	const q = result.getChild("query", "jabber:iq:roster");
	for (const c of q?.children ?? [])
		if (typeof c !== "string" && c.name === "item") m.set(c.attrs.jid as string, c);
	return m;
}

function pushFor(c: Conn, jid: string, pred: (item: XmlElement) => boolean = () => true) {
	return () =>
		c.stanzas.find((s) => {
			if (!s.is("iq") || s.attrs.type !== "set") return false;
			const item = s.getChild("query", "jabber:iq:roster")?.getChild("item");
			return item?.attrs.jid === jid && pred(item);
		});
}

const presenceFrom = (c: Conn, from: string, type?: string) => () =>
	c.stanzas.find((s) => s.is("presence") && s.attrs.from === from && s.attrs.type === type);

/** A full mutual subscription between two clients (RFC 6121 §3.1, both directions). */
async function befriend(a: Conn, aJid: string, b: Conn, bJid: string): Promise<void> {
	await a.xmpp.send(xml("presence", { to: bJid, type: "subscribe" }));
	await waitFor(presenceFrom(b, aJid, "subscribe"), "subscribe at b");
	await b.xmpp.send(xml("presence", { to: aJid, type: "subscribed" }));
	await b.xmpp.send(xml("presence", { to: aJid, type: "subscribe" }));
	await waitFor(presenceFrom(a, bJid, "subscribe"), "subscribe at a");
	await a.xmpp.send(xml("presence", { to: bJid, type: "subscribed" }));
	await waitFor(
		pushFor(a, bJid, (i) => i.attrs.subscription === "both"),
		"both at a",
	);
	await waitFor(
		pushFor(b, aJid, (i) => i.attrs.subscription === "both"),
		"both at b",
	);
}

test("RFC 6121 §2.3, §2.1.6, §2.6: add an item, push to interested resources, versioning", async () => {
	const a1 = await connect("alice", "a.example", "one");
	const a2 = await connect("alice", "a.example", "two");
	try {
		// §2.6.1: the versioning stream feature; §3.4.1: pre-approval feature.
		assert.match(a1.features, /urn:xmpp:features:rosterver/);
		assert.match(a1.features, /urn:xmpp:features:pre-approval/);
		// §2.6.3: a client that supports versioning gets the version with its roster.
		const first = await rosterGet(a1, "");
		const ver0 = first.getChild("query", "jabber:iq:roster")?.attrs.ver;
		assert.ok(ver0, "§2.6.3 ver attribute on the roster result");
		// a2 becomes interested too (§2.1.6). It sent no 'ver' (§2.6.2: it does not version),
		// and still gets the version, like every roster result (§2.1.1, §2.1.3's example).
		const plain = await rosterGet(a2);
		assert.equal(plain.getChild("query", "jabber:iq:roster")?.attrs.ver, ver0);
		const res = await a1.xmpp.iqCaller.request(
			xml(
				"iq",
				{ type: "set", id: "s1" },
				rosterQuery(
					{},
					xml("item", { jid: "nurse@a.example", name: "Nurse" }, xml("group", {}, "Servants")),
				),
			),
		);
		assert.equal(res.attrs.type, "result"); // §2.3.2
		// §2.3.2: pushed to every interested resource, including the sender.
		const p1 = await waitFor(pushFor(a1, "nurse@a.example"), "push to one");
		const p2 = await waitFor(pushFor(a2, "nurse@a.example"), "push to two");
		const item = p2.getChild("query")?.getChild("item");
		assert.equal(item?.attrs.subscription, "none");
		assert.equal(item?.attrs.name, "Nurse");
		assert.equal(item?.getChildText("group"), "Servants");
		const pushVer = p1.getChild("query")?.attrs.ver;
		assert.ok(pushVer && pushVer !== ver0, "§2.6.3: the push carries the new version");
		assert.equal(p2.getChild("query")?.attrs.ver, pushVer, "to a2 as well");

		// §2.6.3: when the client's version is current, the result is empty.
		const same = await rosterGet(a1, pushVer);
		assert.equal(same.getChild("query"), undefined);
		// An old version gets the whole roster with the current version.
		const full = await rosterGet(a1, ver0);
		assert.equal(full.getChild("query")?.attrs.ver, pushVer);
		assert.ok(items(full).has("nurse@a.example"));

		// §2.4: update the name and groups.
		await a1.xmpp.iqCaller.request(
			xml(
				"iq",
				{ type: "set", id: "s2" },
				rosterQuery({}, xml("item", { jid: "nurse@a.example", name: "N" })),
			),
		);
		const got = items(await rosterGet(a1)).get("nurse@a.example");
		assert.equal(got?.attrs.name, "N");
		assert.equal(got?.getChild("group"), undefined);
	} finally {
		await a1.xmpp.stop();
		await a2.xmpp.stop();
	}
});

test("RFC 6121 §3.1: subscribe, approve, presence flows; §2.5 removal cancels both ways", async () => {
	const alice = await connect("alice");
	const bob = await connect("bob");
	try {
		await rosterGet(alice);
		await rosterGet(bob);
		await bob.xmpp.send(xml("presence", {}, xml("status", {}, "bob here")));
		await alice.xmpp.send(xml("presence"));
		// §3.1.2: outbound subscribe: push with ask="subscribe", stanza stamped with bare JIDs.
		await alice.xmpp.send(xml("presence", { to: "bob@a.example/r1", type: "subscribe" }));
		await waitFor(
			pushFor(alice, "bob@a.example", (i) => i.attrs.ask === "subscribe"),
			"ask push",
		);
		const req = await waitFor(presenceFrom(bob, "alice@a.example", "subscribe"), "request at bob");
		assert.equal(req.attrs.to, "bob@a.example"); // §3.1.2 / §3.1.3: bare 'to'
		// §3.1.5: bob approves: push subscription=from, alice gets subscribed, push to, and presence.
		await bob.xmpp.send(xml("presence", { to: "alice@a.example", type: "subscribed" }));
		await waitFor(
			pushFor(bob, "alice@a.example", (i) => i.attrs.subscription === "from"),
			"from",
		);
		await waitFor(presenceFrom(alice, "bob@a.example", "subscribed"), "subscribed at alice");
		await waitFor(
			pushFor(
				alice,
				"bob@a.example",
				(i) => i.attrs.subscription === "to" && i.attrs.ask === undefined,
			),
			"to push",
		);
		// §3.1.5: the contact's current presence follows the approval.
		const p = await waitFor(presenceFrom(alice, "bob@a.example/r1"), "bob presence at alice");
		assert.equal(p.getChildText("status"), "bob here");
		// §4.4.2: bob's later updates reach alice; alice's do not reach bob (no subscription).
		await bob.xmpp.send(xml("presence", {}, xml("show", {}, "away")));
		await waitFor(
			() => alice.stanzas.find((s) => s.is("presence") && s.getChildText("show") === "away"),
			"away at alice",
		);

		// §2.5.2: alice removes bob: unsubscribe goes to bob, bob's item becomes none.
		await alice.xmpp.iqCaller.request(
			xml(
				"iq",
				{ type: "set", id: "rm" },
				rosterQuery({}, xml("item", { jid: "bob@a.example", subscription: "remove" })),
			),
		);
		await waitFor(
			pushFor(alice, "bob@a.example", (i) => i.attrs.subscription === "remove"),
			"remove push",
		);
		await waitFor(presenceFrom(bob, "alice@a.example", "unsubscribe"), "unsubscribe at bob");
		await waitFor(
			pushFor(bob, "alice@a.example", (i) => i.attrs.subscription === "none"),
			"none at bob",
		);
		assert.equal(items(await rosterGet(alice)).has("bob@a.example"), false);
	} finally {
		await alice.xmpp.stop();
		await bob.xmpp.stop();
	}
});

test("RFC 6121 §3.1.3: a request to an offline contact is stored and delivered at next login", async () => {
	const dave = await connect("dave");
	await rosterGet(dave);
	await dave.xmpp.send(xml("presence"));
	await dave.xmpp.send(
		xml("presence", { to: "erin@a.example", type: "subscribe" }, xml("status", {}, "hi erin")),
	);
	await waitFor(
		pushFor(dave, "erin@a.example", (i) => i.attrs.ask === "subscribe"),
		"ask",
	);
	await dave.xmpp.stop();
	for (let round = 0; round < 2; round++) {
		// Delivered again on every new available resource until answered.
		const erin = await connect("erin");
		await erin.xmpp.send(xml("presence"));
		const req = await waitFor(presenceFrom(erin, "dave@a.example", "subscribe"), "stored request");
		assert.equal(req.getChildText("status"), "hi erin"); // the complete stanza is kept
		await erin.xmpp.stop();
	}
	// §3.2.2: denying it removes the stored request.
	const erin = await connect("erin");
	await erin.xmpp.send(xml("presence", { to: "dave@a.example", type: "unsubscribed" }));
	await erin.xmpp.stop();
	const erin2 = await connect("erin");
	await erin2.xmpp.send(xml("presence"));
	// Stanzas are handled in order (RFC 6120 §10.1): once the roster result is back, any
	// re-delivery triggered by the initial presence has been sent.
	await rosterGet(erin2);
	assert.equal(presenceFrom(erin2, "dave@a.example", "subscribe")(), undefined);
	await erin2.xmpp.stop();
});

test("RFC 6121 §3.4: pre-approval, then the request is approved without asking", async () => {
	const frank = await connect("frank");
	const gina = await connect("gina");
	try {
		await rosterGet(frank);
		await frank.xmpp.send(xml("presence"));
		// §3.4.1: subscribed before any request: not routed, pushed with approved="true".
		await frank.xmpp.send(xml("presence", { to: "gina@a.example", type: "subscribed" }));
		await waitFor(
			pushFor(frank, "gina@a.example", (i) => i.attrs.approved === "true"),
			"approved push",
		);
		await rosterGet(gina);
		// §3.4.2: gina's request is approved by frank's server at once.
		await gina.xmpp.send(xml("presence", { to: "frank@a.example", type: "subscribe" }));
		await waitFor(presenceFrom(gina, "frank@a.example", "subscribed"), "auto subscribed");
		await waitFor(
			pushFor(frank, "gina@a.example", (i) => i.attrs.subscription === "from"),
			"from",
		);
		assert.equal(presenceFrom(frank, "gina@a.example", "subscribe")(), undefined);
	} finally {
		await frank.xmpp.stop();
		await gina.xmpp.stop();
	}
});

test("RFC 6121 §8.5.1: a subscribe to an account that does not exist is answered unsubscribed", async () => {
	const hank = await connect("hank");
	try {
		await rosterGet(hank);
		await hank.xmpp.send(xml("presence", { to: "nobody@a.example", type: "subscribe" }));
		await waitFor(presenceFrom(hank, "nobody@a.example", "unsubscribed"), "unsubscribed");
		// §3.2.3: the pending-out state is cleared.
		const item = items(await rosterGet(hank)).get("nobody@a.example");
		assert.equal(item?.attrs.ask, undefined);
		assert.equal(item?.attrs.subscription, "none");
	} finally {
		await hank.xmpp.stop();
	}
});

test("RFC 6121 §3 across virtual hosts: alice@a.example and bob@b.example", async () => {
	const alice = await connect("alice", "a.example", "x");
	const bob = await connect("bob", "b.example", "y");
	try {
		await rosterGet(alice);
		await rosterGet(bob);
		await alice.xmpp.send(xml("presence"));
		await bob.xmpp.send(xml("presence"));
		await befriend(alice, "alice@a.example", bob, "bob@b.example");
		// §4.2.2 / §3.1.5: each sees the other's presence.
		await waitFor(presenceFrom(alice, "bob@b.example/y"), "bob presence");
		await waitFor(presenceFrom(bob, "alice@a.example/x"), "alice presence");
	} finally {
		await alice.xmpp.stop();
		await bob.xmpp.stop();
	}
});

test("shared roster groups: members see each other with subscription both, no requests", async () => {
	const ivan = await connect("ivan");
	const judy = await connect("judy");
	try {
		const r = items(await rosterGet(ivan));
		const j = r.get("judy@a.example");
		assert.equal(j?.attrs.subscription, "both"); // RFC 6121 §2.1.2.5 value for shared items
		assert.equal(j?.getChildText("group"), "Staff");
		await judy.xmpp.send(xml("presence"));
		await ivan.xmpp.send(xml("presence"));
		// RFC 6121 §4.2.2 broadcast and §4.3 probe answers, without subscription stanzas.
		await waitFor(presenceFrom(ivan, "judy@a.example/r1"), "judy presence at ivan");
		await waitFor(presenceFrom(judy, "ivan@a.example/r1"), "ivan presence at judy");

		// Runtime change (admin API): carol joins a new group; ivan gets a push (§2.1.6) and
		// carol's... carol is offline, so only the roster push.
		const host = t.server.hosts.get("a.example");
		assert.ok(host);
		assert.equal(
			await setSharedGroup(host, "Ops", { members: ["ivan@a.example", "carol@a.example"] }),
			true,
		);
		await waitFor(
			pushFor(ivan, "carol@a.example", (i) => i.attrs.subscription === "both"),
			"carol push",
		);
		assert.equal(
			items(await rosterGet(ivan))
				.get("carol@a.example")
				?.getChildText("group"),
			"Ops",
		);
		await setSharedGroup(host, "Ops", null);
		await waitFor(
			pushFor(ivan, "carol@a.example", (i) => i.attrs.subscription === "remove"),
			"removed",
		);
	} finally {
		await ivan.xmpp.stop();
		await judy.xmpp.stop();
	}
});

// --- error cases over raw sockets ---

/** A roster set with `body` over a raw socket; resolves to the answer. */
const rawIq = (c: RawClient, id: string, body: string): Promise<string> =>
	iq(c, id, `<iq type='set' id='${id}'><query xmlns='jabber:iq:roster'>${body}</query></iq>`);

test("RFC 6121 §2.3.3 and §2.5.3: roster set errors", async () => {
	const c = await login(t.port, "carol", "pw", { host: "a.example" });
	try {
		// §2.3.3: more than one item is bad-request.
		assert.match(
			await rawIq(c, "e1", "<item jid='x@a.example'/><item jid='y@a.example'/>"),
			/<bad-request/,
		);
		// §2.3.3: duplicate groups are bad-request.
		assert.match(
			await rawIq(c, "e2", "<item jid='x@a.example'><group>G</group><group>G</group></item>"),
			/<bad-request/,
		);
		// §2.3.3: an empty group is not-acceptable.
		assert.match(
			await rawIq(c, "e3", "<item jid='x@a.example'><group></group></item>"),
			/<not-acceptable/,
		);
		// RFC 6120 §8.3.3.8: a malformed JID.
		assert.match(await rawIq(c, "e4", "<item jid='a@b@c'/>"), /<jid-malformed/);
		// §2.1.2.3: the jid attribute is required.
		assert.match(await rawIq(c, "e5", "<item name='x'/>"), /<bad-request/);
		// §2.5.3: removing an item that is not there.
		assert.match(
			await rawIq(c, "e6", "<item jid='ghost@a.example' subscription='remove'/>"),
			/<item-not-found/,
		);
		// Nothing was stored by the failed sets.
		const mark = c.received.length;
		c.send("<iq type='get' id='g1'><query xmlns='jabber:iq:roster'/></iq>");
		const got = await c.waitFor(/id=["']g1["'][\s\S]*?(<\/iq>|\/>)/, mark);
		assert.doesNotMatch(got, /x@a\.example/);
		// §2.1.2.5: a subscription value other than "remove" is ignored in a roster set.
		assert.match(
			await rawIq(c, "e7", "<item jid='z@a.example' subscription='both'/>"),
			/type=["']result/,
		);
		const mark2 = c.received.length;
		c.send("<iq type='get' id='g2'><query xmlns='jabber:iq:roster'/></iq>");
		assert.match(
			await c.waitFor(/id=["']g2["'][\s\S]*?<\/iq>/, mark2),
			/jid="z@a.example"[^>]*subscription="none"/,
		);
		// RFC 6121 §2.3.3 forbidden: another account's roster.
		const mark3 = c.received.length;
		c.send("<iq type='get' id='g3' to='bob@a.example'><query xmlns='jabber:iq:roster'/></iq>");
		assert.match(await c.waitFor(/id=["']g3["'][\s\S]*?<\/iq>/, mark3), /<forbidden/);
	} finally {
		c.end();
	}
});

test("roster size limit (module option max_items): not-allowed with a text", async () => {
	const c = await login(t.port, "sam", "pw", { host: "small.example" });
	try {
		assert.match(await rawIq(c, "m1", "<item jid='a@small.example'/>"), /type=["']result/);
		assert.match(await rawIq(c, "m2", "<item jid='b@small.example'/>"), /type=["']result/);
		const r = await rawIq(c, "m3", "<item jid='c@small.example'/>");
		assert.match(r, /<not-allowed/);
		assert.match(r, /<text[^>]*>roster is full/);
		// Outbound subscribe that would add an item is refused too (RFC 6121 §3.1.2 + limit).
		const mark = c.received.length;
		c.send("<presence to='d@small.example' type='subscribe'/>");
		assert.match(
			await c.waitFor(/<presence[^>]*type=["']error[\s\S]*?<\/presence>/, mark),
			/<not-allowed/,
		);
	} finally {
		c.end();
	}
});

test("self-subscription is ignored and a malformed 'to' is jid-malformed (RFC 6120 §8.3.3.8)", async () => {
	const c = await login(t.port, "hank", "pw", { host: "a.example" });
	try {
		c.send("<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>");
		await c.waitFor(/id=["']r0/);
		const mark = c.received.length;
		c.send("<presence to='hank@a.example' type='subscribe'/>");
		c.send("<presence to='a@b@c' type='subscribe' id='bad'/>");
		const got = await c.waitFor(/<presence[^>]*id=["']bad["'][\s\S]*?<\/presence>/, mark);
		assert.match(got, /<jid-malformed/);
		// No roster push for the self-subscription (Prosody's behaviour; RFC 6121 has no rule).
		assert.doesNotMatch(c.received.slice(mark), /jid="hank@a.example"/);
	} finally {
		c.end();
	}
});
