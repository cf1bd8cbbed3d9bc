/**
 * Presence end to end (RFC 6121 §4): broadcast to subscribers, probes, unavailable on
 * disconnect and on stream errors, directed presence and its clean-up, delivery of presence to
 * a bare JID, negative priority.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { xml } from "@xmpp/client";
import type { RawClient } from "../helpers/raw.ts";
import { iq } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";
import { type XmppConnection, connect as xmppConnect } from "../helpers/xmpp-client.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

let t: TestServer;
const USERS = ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"];

before(async () => {
	t = await startTestServer({
		config: {
			auth: { require_encryption: false, allow_plain_without_tls: true },
			hosts: { "a.example": {}, "b.example": {} },
		},
		users: [
			...USERS.map((u) => [`${u}@a.example`, "pw"] as [string, string]),
			["q1@b.example", "pw"],
		],
	});
});
after(() => t.stop());

type Conn = XmppConnection;

async function connect(user: string, domain = "a.example", resource = "r1"): Promise<Conn> {
	const c = await xmppConnect(`xmpp://127.0.0.1:${t.port}`, user, "pw", { domain, resource });
	// Interested in the roster (RFC 6121 §2.1.6), so subscription stanzas and pushes arrive.
	await c.xmpp.iqCaller.request(
		xml("iq", { type: "get", id: "r0" }, xml("query", { xmlns: "jabber:iq:roster" })),
	);
	return c;
}

const presenceFrom = (c: Conn, from: string, type?: string) => () =>
	c.stanzas.find((s) => s.is("presence") && s.attrs.from === from && s.attrs.type === type);

/** Mutual subscription using pre-approval (RFC 6121 §3.4) to keep the exchange short. */
async function befriend(a: Conn, aJid: string, b: Conn, bJid: string): Promise<void> {
	await a.xmpp.send(xml("presence", { to: bJid, type: "subscribed" }));
	await b.xmpp.send(xml("presence", { to: aJid, type: "subscribed" }));
	await a.xmpp.send(xml("presence", { to: bJid, type: "subscribe" }));
	await b.xmpp.send(xml("presence", { to: aJid, type: "subscribe" }));
	const both = (c: Conn, jid: string) => () =>
		c.stanzas.find(
			(s) =>
				s.is("iq") &&
				s.getChild("query", "jabber:iq:roster")?.getChild("item")?.attrs.jid === jid &&
				s.getChild("query", "jabber:iq:roster")?.getChild("item")?.attrs.subscription === "both",
		);
	await waitFor(both(a, bJid), "both at a");
	await waitFor(both(b, aJid), "both at b");
}

test("RFC 6121 §4.2.2 initial presence broadcast, §4.3 probes, §4.4 updates", async () => {
	const p1 = await connect("p1");
	const p2 = await connect("p2");
	try {
		await befriend(p1, "p1@a.example", p2, "p2@a.example");
		await p2.xmpp.send(xml("presence", {}, xml("status", {}, "p2 online")));
		// A second resource of p1 comes online later.
		const p1b = await connect("p1", "a.example", "second");
		try {
			await p1b.xmpp.send(xml("presence", {}, xml("priority", {}, "5")));
			// §4.2.2: the contact gets the new resource's initial presence.
			await waitFor(presenceFrom(p2, "p1@a.example/second"), "initial presence at p2");
			// §4.3: the probe on p1's behalf returns p2's current presence to the new resource.
			const probed = await waitFor(presenceFrom(p1b, "p2@a.example/r1"), "probe answer");
			assert.equal(probed.getChildText("status"), "p2 online");
			// §4.4.2: an update reaches subscribers.
			await p1b.xmpp.send(xml("presence", {}, xml("show", {}, "dnd")));
			await waitFor(
				() => p2.stanzas.find((s) => s.is("presence") && s.getChildText("show") === "dnd"),
				"update at p2",
			);
			// §4.5.2: explicit unavailable presence, with its status, reaches subscribers.
			await p1b.xmpp.send(xml("presence", { type: "unavailable" }, xml("status", {}, "bye")));
			const gone = await waitFor(
				presenceFrom(p2, "p1@a.example/second", "unavailable"),
				"unavailable at p2",
			);
			assert.equal(gone.getChildText("status"), "bye");
		} finally {
			await p1b.xmpp.stop();
		}
	} finally {
		await p1.xmpp.stop();
		await p2.xmpp.stop();
	}
});

test("RFC 6121 §4.5.2: unavailable presence on disconnect and on a stream error", async () => {
	const p3 = await connect("p3");
	const p4 = await connect("p4");
	try {
		await befriend(p3, "p3@a.example", p4, "p4@a.example");
		await p4.xmpp.send(xml("presence"));
		// The connection just drops.
		let raw: RawClient = await login(t.port, "p3", "pw", { host: "a.example", resource: "raw" });
		raw.send("<presence/>");
		await waitFor(presenceFrom(p4, "p3@a.example/raw"), "raw online");
		raw.end();
		await waitFor(presenceFrom(p4, "p3@a.example/raw", "unavailable"), "unavailable on drop");

		// A stream error (RFC 6120 §4.9.3.9 invalid-from) ends the session.
		p4.stanzas.length = 0;
		raw = await login(t.port, "p3", "pw", { host: "a.example", resource: "raw2" });
		raw.send("<presence/>");
		await waitFor(presenceFrom(p4, "p3@a.example/raw2"), "raw2 online");
		raw.send("<message from='mallory@evil.example' to='p4@a.example'><body>x</body></message>");
		await raw.waitFor("invalid-from");
		await waitFor(presenceFrom(p4, "p3@a.example/raw2", "unavailable"), "unavailable on error");
		raw.end();
	} finally {
		await p3.xmpp.stop();
		await p4.xmpp.stop();
	}
});

test("RFC 6121 §4.6: directed presence, and unavailable to its recipients on going offline", async () => {
	// p6 has no subscription with p5 at all.
	const p6 = await connect("p6");
	try {
		await p6.xmpp.send(xml("presence"));
		const raw = await login(t.port, "p5", "pw", { host: "a.example", resource: "d" });
		raw.send("<presence/>");
		// §4.6.2: directed presence to a bare JID reaches the available resources.
		raw.send("<presence to='p6@a.example'><status>just for you</status></presence>");
		const got = await waitFor(presenceFrom(p6, "p5@a.example/d"), "directed presence");
		assert.equal(got.getChildText("status"), "just for you");
		// §4.6.3: the recipient learns the sender went offline.
		raw.end();
		await waitFor(presenceFrom(p6, "p5@a.example/d", "unavailable"), "unavailable to recipient");

		// §4.6.4: after directed unavailable, going offline sends nothing more to that entity.
		p6.stanzas.length = 0;
		const raw2 = await login(t.port, "p5", "pw", { host: "a.example", resource: "d2" });
		raw2.send("<presence/>");
		raw2.send("<presence to='p6@a.example/r1'/>");
		await waitFor(presenceFrom(p6, "p5@a.example/d2"), "directed presence 2");
		raw2.send("<presence to='p6@a.example/r1' type='unavailable'/>");
		await waitFor(presenceFrom(p6, "p5@a.example/d2", "unavailable"), "directed unavailable");
		p6.stanzas.length = 0;
		raw2.send("<presence type='unavailable'/>");
		// p5's next stanza is handled after its unavailable broadcast (RFC 6120 §10.1), and p6's
		// own round trip then flushes anything written to p6 before.
		const mark = raw2.received.length;
		raw2.send("<iq type='get' id='sync'><query xmlns='jabber:iq:roster'/></iq>");
		await raw2.waitFor(/id=["']sync/, mark);
		await p6.xmpp.iqCaller.request(
			xml("iq", { type: "get", id: "sync6" }, xml("query", { xmlns: "jabber:iq:roster" })),
		);
		assert.equal(presenceFrom(p6, "p5@a.example/d2", "unavailable")(), undefined);
		raw2.end();
	} finally {
		await p6.xmpp.stop();
	}
});

test("RFC 6121 §8.5.2.1.2 / §4.7.2.3: presence to a bare JID reaches every available resource, negative priority included", async () => {
	const p7 = await connect("p7", "a.example", "pos");
	const p7neg = await connect("p7", "a.example", "neg");
	try {
		await p7.xmpp.send(xml("presence"));
		await p7neg.xmpp.send(xml("presence", {}, xml("priority", {}, "-1")));
		const sender = await login(t.port, "p8", "pw", { host: "a.example" });
		sender.send("<presence to='p7@a.example'/>");
		sender.send("<message to='p7@a.example' type='chat' id='m1'><body>hi</body></message>");
		const fromP8 = (c: Conn) => () =>
			c.stanzas.find((s) => s.is("presence") && s.attrs.from?.startsWith("p8@a.example/"));
		await waitFor(fromP8(p7), "presence at positive resource");
		await waitFor(fromP8(p7neg), "presence at negative resource");
		// §4.7.2.3 / §8.5.2.1.1: the message only goes to the non-negative resource.
		await waitFor(
			() => p7.stanzas.find((s) => s.is("message") && s.attrs.id === "m1"),
			"message at positive",
		);
		// The server wrote to every target before handling this later IQ (RFC 6120 §10.1).
		await p7neg.xmpp.iqCaller.request(
			xml("iq", { type: "get", id: "sync" }, xml("query", { xmlns: "jabber:iq:roster" })),
		);
		assert.equal(
			p7neg.stanzas.find((s) => s.is("message") && s.attrs.id === "m1"),
			undefined,
		);
		sender.end();
	} finally {
		await p7.xmpp.stop();
		await p7neg.xmpp.stop();
	}
});

test("RFC 6121 §4 across hosts; §3.2.2 cancelling a subscription sends unavailable", async () => {
	const a = await connect("p8", "a.example", "h");
	const b = await connect("q1", "b.example", "h");
	try {
		await a.xmpp.send(xml("presence"));
		await b.xmpp.send(xml("presence"));
		await befriend(a, "p8@a.example", b, "q1@b.example");
		await waitFor(presenceFrom(a, "q1@b.example/h"), "q1 presence at p8");
		await waitFor(presenceFrom(b, "p8@a.example/h"), "p8 presence at q1");
		// §3.2.2: q1 cancels p8's subscription: p8 sees q1 go unavailable.
		await b.xmpp.send(xml("presence", { to: "p8@a.example", type: "unsubscribed" }));
		await waitFor(presenceFrom(a, "q1@b.example/h", "unavailable"), "unavailable after cancel");
		await waitFor(presenceFrom(a, "q1@b.example", "unsubscribed"), "unsubscribed delivered");
	} finally {
		await a.xmpp.stop();
		await b.xmpp.stop();
	}
});

test("RFC 6121 §4.5.2: unavailable presence comes back to the resource that sent it; XEP-0012 §4 then reports its status", async () => {
	// Prosody's lastactivity.scs scenario, over a raw socket, plus a second resource.
	const other = await login(t.port, "p9", "pw", { host: "a.example", resource: "other" });
	const raw = await login(t.port, "p9", "pw", { host: "a.example", resource: "leaver" });
	try {
		other.send("<presence/>");
		await other.waitFor('<presence from="p9@a.example/other"');
		raw.send("<presence><status>Hello</status></presence>");
		// §4.2.2: initial presence goes to all available resources, the sender included.
		await raw.waitFor(/<presence from="p9@a.example\/leaver"><status>Hello<\/status><\/presence>/);
		const mark = raw.received.length;
		const markOther = other.received.length;
		raw.send("<presence type='unavailable'><status>Goodbye</status></presence>");
		// §4.5.2: "to all of the user's available resources (as well as to the resource that
		// generated the unavailable presence in the first place)", with its full XML.
		const back =
			/<presence[^>]*type="unavailable"[^>]*>\s*<status>Goodbye<\/status>\s*<\/presence>/;
		const text = await raw.waitFor(back, mark);
		assert.match(
			(back.exec(text) as RegExpExecArray)[0],
			/from="p9@a\.example\/leaver"/,
			"from the sender's full JID",
		);
		assert.doesNotMatch((back.exec(text) as RegExpExecArray)[0], /\bto=/, "no 'to'");
		await other.waitFor(back, markOther);
		// XEP-0012 §4: the account is still online through "other": 0 seconds.
		const online = await iq(
			raw,
			"l1",
			"<iq type='get' id='l1'><query xmlns='jabber:iq:last'/></iq>",
		);
		assert.match(online, /<query xmlns="jabber:iq:last" seconds="0"\/>/);
		// Once the last available resource leaves, its status is the account's (Prosody's scenario:
		// the query on the same stream, right after the unavailable presence).
		other.send("<presence type='unavailable'><status>Goodbye</status></presence>");
		await other.waitFor(
			/type="unavailable"[^>]*>\s*<status>Goodbye<\/status>[\s\S]*type="unavailable"[^>]*>\s*<status>Goodbye/,
			markOther,
		);
		const last = await iq(
			other,
			"l2",
			"<iq type='get' id='l2'><query xmlns='jabber:iq:last'/></iq>",
		);
		assert.match(last, /<query xmlns="jabber:iq:last" seconds="\d+">Goodbye<\/query>/);
	} finally {
		raw.end();
		other.end();
	}
});
