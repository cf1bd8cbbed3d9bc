/**
 * The services every client asks for, end to end over real sockets: vcard-temp (XEP-0054)
 * with avatar hashes in presence (XEP-0153), Private XML Storage (XEP-0049), Last Activity
 * (XEP-0012), Entity Time (XEP-0202), Software Version (XEP-0092), Contact Addresses
 * (XEP-0157) and the server's Entity Capabilities (XEP-0115).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, test } from "node:test";
import { type XmlElement, xml } from "@xmpp/client";
import { request } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { connect as xmppConnect } from "../helpers/xmpp-client.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

let t: TestServer;

before(async () => {
	t = await startTestServer({
		config: {
			auth: { require_encryption: false, allow_plain_without_tls: true },
			hosts: {
				localhost: {
					module_options: {
						vcard: { max_bytes: 4096 },
						contact_info: {
							admin: ["xmpp:admin@localhost", "mailto:admin@example.org"],
							abuse: ["mailto:abuse@example.org"],
						},
					},
				},
			},
		},
		users: [
			["alice@localhost", "alice-pw"],
			["bob@localhost", "bob-pw"],
			["carol@localhost", "carol-pw"],
			["dave@localhost", "dave-pw"],
		],
	});
});
after(() => t.stop());

const connect = (user: string, resource = "r") =>
	login(t.port, user, `${user}-pw`, { resource, mechanism: "PLAIN" });

const isResult = (reply: string) => /^<iq[^>]*type="result"/.test(reply);
const condition = (reply: string) =>
	/<([a-z-]+) xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/.exec(reply)?.[1];

// --- vcard-temp ---

test("XEP-0054 §3.1: an account without a vCard gets an empty one", async () => {
	const c = await connect("carol");
	try {
		const reply = await request(c, "get", "<vCard xmlns='vcard-temp'/>");
		assert.ok(isResult(reply), reply);
		assert.match(reply, /<vCard xmlns="vcard-temp"\/>/);
	} finally {
		c.end();
	}
});

test("XEP-0054 §3.2/§3.3: set own vCard, read it back, others read it through the bare JID", async () => {
	const alice = await connect("alice");
	const bob = await connect("bob");
	try {
		const set = await request(
			alice,
			"set",
			"<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><NICKNAME>al &amp; co</NICKNAME></vCard>",
		);
		assert.ok(isResult(set), `§3.2 set: ${set}`);
		const own = await request(alice, "get", "<vCard xmlns='vcard-temp'/>");
		assert.match(own, /<FN>Alice Liddell<\/FN>/, "§3.1: own vCard as stored");
		assert.match(own, /<NICKNAME>al &amp; co<\/NICKNAME>/);
		const other = await request(bob, "get", "<vCard xmlns='vcard-temp'/>", "alice@localhost");
		assert.ok(isResult(other), other);
		assert.match(other, /from="alice@localhost"/, "§3.3: the server answers for the bare JID");
		assert.match(other, /<FN>Alice Liddell<\/FN>/, "§3.3: another user's vCard");
	} finally {
		alice.end();
		bob.end();
	}
});

test("XEP-0054 §3.3: the same error for a missing vCard and a missing user", async () => {
	const bob = await connect("bob");
	try {
		const noVcard = await request(bob, "get", "<vCard xmlns='vcard-temp'/>", "dave@localhost");
		const noUser = await request(bob, "get", "<vCard xmlns='vcard-temp'/>", "nobody@localhost");
		assert.equal(condition(noVcard), "service-unavailable");
		assert.equal(condition(noUser), "service-unavailable");
	} finally {
		bob.end();
	}
});

test("XEP-0054 §3.2: nobody may set another user's vCard (forbidden)", async () => {
	const bob = await connect("bob");
	try {
		const reply = await request(
			bob,
			"set",
			"<vCard xmlns='vcard-temp'><FN>Mallory</FN></vCard>",
			"carol@localhost",
		);
		assert.equal(condition(reply), "forbidden");
		const carol = await request(bob, "get", "<vCard xmlns='vcard-temp'/>", "carol@localhost");
		assert.doesNotMatch(carol, /Mallory/, "nothing was stored");
	} finally {
		bob.end();
	}
});

test("XEP-0054: a vCard over the size limit is refused with not-acceptable, the old one stays", async () => {
	const alice = await connect("alice");
	try {
		const huge = "x".repeat(5000);
		const reply = await request(
			alice,
			"set",
			`<vCard xmlns='vcard-temp'><DESC>${huge}</DESC></vCard>`,
		);
		assert.equal(condition(reply), "not-acceptable", "RFC 6120 §8.3.3.9");
		assert.match(reply, /<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">[^<]*4096/);
		const own = await request(alice, "get", "<vCard xmlns='vcard-temp'/>");
		assert.match(own, /Alice Liddell/);
	} finally {
		alice.end();
	}
});

test("XEP-0153 §4.2: broadcast presence carries the SHA-1 of the vCard photo", async () => {
	const image = Buffer.from("not really a PNG, but bytes all the same \x00\x01\x02");
	const hash = createHash("sha1").update(image).digest("hex");
	const dave = await connect("dave");
	try {
		const set = await request(
			dave,
			"set",
			`<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>${image.toString("base64")}</BINVAL></PHOTO></vCard>`,
		);
		assert.ok(isResult(set), set);
		const mark = dave.received.length;
		dave.send("<presence><show>chat</show></presence>");
		const echo = await dave.waitFor(/<presence[\s\S]*?<\/presence>/, mark);
		assert.match(
			echo,
			new RegExp(`<x xmlns="vcard-temp:x:update"><photo>${hash}</photo></x>`),
			"§4.2: update element with the hex SHA-1 of the image data",
		);
		// A client that says it itself is left alone (§4.2 makes it the client's job first).
		const mark2 = dave.received.length;
		dave.send("<presence><x xmlns='vcard-temp:x:update'><photo>abc</photo></x></presence>");
		const echo2 = await dave.waitFor(/<presence[\s\S]*?<\/presence>/, mark2);
		assert.equal(echo2.match(/vcard-temp:x:update/g)?.length, 1, echo2);
		assert.match(echo2, /<photo>abc<\/photo>/);
	} finally {
		dave.end();
	}
});

// --- Private XML Storage ---

test("XEP-0049 §2.3: store a fragment, read it back; an unknown one comes back empty", async () => {
	const alice = await connect("alice");
	try {
		const set = await request(
			alice,
			"set",
			"<query xmlns='jabber:iq:private'><prefs xmlns='test:prefs'><nick>Al</nick></prefs></query>",
		);
		assert.ok(isResult(set), set);
		const got = await request(
			alice,
			"get",
			"<query xmlns='jabber:iq:private'><prefs xmlns='test:prefs'/></query>",
		);
		assert.match(got, /<prefs xmlns="test:prefs"><nick>Al<\/nick><\/prefs>/);
		const none = await request(
			alice,
			"get",
			"<query xmlns='jabber:iq:private'><other xmlns='test:none'/></query>",
		);
		assert.ok(isResult(none), none);
		assert.match(none, /<other xmlns="test:none"\/>/);
	} finally {
		alice.end();
	}
});

test("XEP-0049 §2.3/§3: reserved namespaces and empty queries are not-acceptable", async () => {
	const alice = await connect("alice");
	try {
		for (const child of [
			"<vCard xmlns='vcard-temp'><FN>x</FN></vCard>",
			"<x xmlns='jabber:x:data'/>",
			"<q xmlns='http://jabber.org/protocol/disco#info'/>",
			"<plain/>",
		]) {
			const reply = await request(
				alice,
				"set",
				`<query xmlns='jabber:iq:private'>${child}</query>`,
			);
			assert.equal(condition(reply), "not-acceptable", `§3 reserved: ${child}`);
		}
		const empty = await request(alice, "get", "<query xmlns='jabber:iq:private'/>");
		assert.equal(condition(empty), "not-acceptable", "§2.3: at least one child element");
	} finally {
		alice.end();
	}
});

test("XEP-0030 §3.1: the server's disco#info lists jabber:iq:private (XEP-0049)", async () => {
	// poezio reads the host's features to choose a bookmark storage: without this one it
	// says "No remote bookmark storage available" and keeps none.
	const alice = await connect("alice");
	try {
		const info = await request(
			alice,
			"get",
			"<query xmlns='http://jabber.org/protocol/disco#info'/>",
			"localhost",
		);
		assert.ok(isResult(info), info);
		assert.match(info, /<feature var="jabber:iq:private"\/>/);
	} finally {
		alice.end();
	}
});

test("XEP-0049 §3: another user's private data is forbidden", async () => {
	const bob = await connect("bob");
	try {
		const get = await request(
			bob,
			"get",
			"<query xmlns='jabber:iq:private'><prefs xmlns='test:prefs'/></query>",
			"alice@localhost",
		);
		assert.equal(condition(get), "forbidden");
		assert.doesNotMatch(get, /<nick>/);
		const set = await request(
			bob,
			"set",
			"<query xmlns='jabber:iq:private'><prefs xmlns='test:prefs'/></query>",
			"alice@localhost",
		);
		assert.equal(condition(set), "forbidden");
	} finally {
		bob.end();
	}
});

// --- Last Activity ---

test("XEP-0012 §5: the server answers with its uptime in seconds", async () => {
	const alice = await connect("alice");
	try {
		const reply = await request(alice, "get", "<query xmlns='jabber:iq:last'/>", "localhost");
		assert.match(reply, /<query xmlns="jabber:iq:last" seconds="\d+"\/>/);
	} finally {
		alice.end();
	}
});

test("XEP-0012 §4: forbidden without a subscription; service-unavailable for no such user", async () => {
	const alice = await connect("alice");
	try {
		const reply = await request(alice, "get", "<query xmlns='jabber:iq:last'/>", "carol@localhost");
		assert.equal(condition(reply), "forbidden");
		const nobody = await request(
			alice,
			"get",
			"<query xmlns='jabber:iq:last'/>",
			"nobody@localhost",
		);
		assert.equal(condition(nobody), "service-unavailable", "RFC 6121 §8.5.1");
	} finally {
		alice.end();
	}
});

test("XEP-0012 §4: a subscriber sees 0 while online, then the time and status of the logout", async () => {
	const alice = await connect("alice");
	const bob = await connect("bob");
	try {
		for (const [c, jid] of [
			[alice, "alice@localhost/r"],
			[bob, "bob@localhost/r"],
		] as const) {
			c.send("<presence/>");
			await c.waitFor(`<presence from="${jid}"`);
		}
		// RFC 6121 §3.1: alice subscribes to bob, bob approves: alice may see bob's presence.
		alice.send("<presence to='bob@localhost' type='subscribe'/>");
		await bob.waitFor(/type="subscribe"/);
		const mark = alice.received.length;
		bob.send("<presence to='alice@localhost' type='subscribed'/>");
		await alice.waitFor(/type="subscribed"/, mark);
		const online = await request(alice, "get", "<query xmlns='jabber:iq:last'/>", "bob@localhost");
		assert.match(online, /seconds="0"/, "§4: an available resource means 0");
		bob.send("<presence type='unavailable'><status>gone fishing</status></presence>");
		bob.send("</stream:stream>");
		await bob.waitClosed();
		const after = await request(alice, "get", "<query xmlns='jabber:iq:last'/>", "bob@localhost");
		assert.match(after, /<query xmlns="jabber:iq:last" seconds="\d+">gone fishing<\/query>/);
	} finally {
		alice.end();
		bob.end();
	}
});

// --- Entity Time and Software Version, with a real client library ---

async function xmppClient(user: string) {
	const { xmpp } = await xmppConnect(`xmpp://127.0.0.1:${t.port}`, user, `${user}-pw`, {
		resource: "lib",
	});
	return xmpp;
}

test("XEP-0202 §3-4: tzo is a TZD and utc a UTC DateTime (XEP-0082 §3)", async () => {
	const xmpp = await xmppClient("carol");
	try {
		const reply: XmlElement = await xmpp.iqCaller.get(
			xml("time", { xmlns: "urn:xmpp:time" }),
			"localhost",
		);
		const tzo = reply.getChildText("tzo") ?? "";
		const utc = reply.getChildText("utc") ?? "";
		assert.match(tzo, /^(Z|[+-]\d\d:\d\d)$/, "XEP-0082 §3 TZD");
		assert.match(utc, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, "XEP-0082 §3.2 DateTime in UTC");
		const skew = Math.abs(Date.parse(utc) - Date.now());
		assert.ok(skew < 60_000, `utc is the current time (off by ${skew} ms)`);
	} finally {
		await xmpp.stop();
	}
});

test("XEP-0092 §2: name and version, no os unless configured (§4 security)", async () => {
	const xmpp = await xmppClient("carol");
	try {
		const reply: XmlElement = await xmpp.iqCaller.get(
			xml("query", { xmlns: "jabber:iq:version" }),
			"localhost",
		);
		assert.equal(reply.getChildText("name"), "Parley");
		assert.match(reply.getChildText("version") ?? "", /^\d+\.\d+\.\d+/);
		assert.equal(reply.getChild("os"), undefined);
	} finally {
		await xmpp.stop();
	}
});

// --- Contact addresses and caps ---

test("XEP-0157 §3: contact addresses in a serverinfo form on the host's disco#info", async () => {
	const xmpp = await xmppClient("carol");
	try {
		const info: XmlElement = await xmpp.iqCaller.get(
			xml("query", { xmlns: "http://jabber.org/protocol/disco#info" }),
			"localhost",
		);
		const form = info.getChild("x", "jabber:x:data");
		assert.ok(form, "XEP-0128 §2: an extended info form");
		assert.equal(form.attrs.type, "result");
		const fields = form.children.filter((c): c is XmlElement => typeof c !== "string");
		const values = (v: string) =>
			fields
				.find((f) => f.attrs.var === v)
				?.children.filter((c): c is XmlElement => typeof c !== "string")
				.map((c) => c.getText());
		assert.deepEqual(values("FORM_TYPE"), ["http://jabber.org/network/serverinfo"]);
		assert.deepEqual(values("admin-addresses"), [
			"xmpp:admin@localhost",
			"mailto:admin@example.org",
		]);
		assert.deepEqual(values("abuse-addresses"), ["mailto:abuse@example.org"]);
		assert.equal(values("sales-addresses"), undefined, "unconfigured kinds are left out");
	} finally {
		await xmpp.stop();
	}
});

/** XEP-0115 §5.1, written again from the spec over the XML text of a disco#info result. */
function recomputeVer(info: string): string {
	const attr = (el: string, name: string) => new RegExp(`\\s${name}="([^"]*)"`).exec(el)?.[1] ?? "";
	const decodeXml = (s: string) =>
		s
			.replace(/&lt;/g, "<")
			.replace(/&gt;/g, ">")
			.replace(/&quot;/g, '"')
			.replace(/&apos;/g, "'")
			.replace(/&amp;/g, "&");
	const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
	const identities = [...info.matchAll(/<identity[^>]*>/g)].map((m) => ({
		category: decodeXml(attr(m[0], "category")),
		type: decodeXml(attr(m[0], "type")),
		lang: decodeXml(attr(m[0], "xml:lang")),
		name: decodeXml(attr(m[0], "name")),
	}));
	identities.sort(
		(a, b) => byBytes(a.category, b.category) || byBytes(a.type, b.type) || byBytes(a.lang, b.lang),
	);
	let s = identities.map((i) => `${i.category}/${i.type}/${i.lang}/${i.name}<`).join("");
	const features = [...info.matchAll(/<feature var="([^"]*)"/g)].map((m) =>
		decodeXml(m[1] as string),
	);
	s += features
		.sort(byBytes)
		.map((f) => `${f}<`)
		.join("");
	const forms = [...info.matchAll(/<x xmlns="jabber:x:data"[\s\S]*?<\/x>/g)].map((m) => {
		const fields = [...m[0].matchAll(/<field[^>]*var="([^"]*)"[^>]*>([\s\S]*?)<\/field>/g)].map(
			(f) => ({
				var: decodeXml(f[1] as string),
				values: [...(f[2] as string).matchAll(/<value>([^<]*)<\/value>/g)].map((v) =>
					decodeXml(v[1] as string),
				),
			}),
		);
		return {
			type: fields.find((f) => f.var === "FORM_TYPE")?.values[0] ?? "",
			fields: fields.filter((f) => f.var !== "FORM_TYPE"),
		};
	});
	forms.sort((a, b) => byBytes(a.type, b.type));
	for (const form of forms) {
		s += `${form.type}<`;
		for (const f of form.fields.sort((a, b) => byBytes(a.var, b.var))) {
			s += `${f.var}<${f.values
				.sort(byBytes)
				.map((v) => `${v}<`)
				.join("")}`;
		}
	}
	return createHash("sha1").update(s).digest("base64");
}

test("XEP-0115 §6.3: caps in the stream features after authentication, ver per §5.1", async () => {
	const alice = await connect("alice");
	try {
		// The features after SASL (RFC 6120 §6.4.6) are the last ones before the bind result.
		const features = alice.received.slice(alice.received.lastIndexOf("<stream:features>"));
		const c = /<c xmlns="http:\/\/jabber.org\/protocol\/caps"[^>]*\/>/.exec(features)?.[0];
		assert.ok(c, `no caps in ${features}`);
		assert.match(c, /hash="sha-1"/);
		const ver = /ver="([^"]*)"/.exec(c)?.[1] as string;
		const node = /node="([^"]*)"/.exec(c)?.[1] as string;
		const info = await request(
			alice,
			"get",
			"<query xmlns='http://jabber.org/protocol/disco#info'/>",
			"localhost",
		);
		assert.equal(ver, recomputeVer(info), "§5.1: ver is the hash of the server's disco#info");
		// §6.2: disco#info on node#ver is answered with the same identity and features.
		const byNode = await request(
			alice,
			"get",
			`<query xmlns='http://jabber.org/protocol/disco#info' node='${node}#${ver}'/>`,
			"localhost",
		);
		assert.ok(isResult(byNode), byNode);
		assert.match(byNode, new RegExp(`node="${node}#${ver.replace(/[+/=]/g, "\\$&")}"`));
		assert.equal(recomputeVer(byNode), ver);
	} finally {
		alice.end();
	}
});

test("XEP-0115 §5.1: the ver follows the features when a module is unloaded and loaded again", async () => {
	const verOf = async (): Promise<string> => {
		const c = await connect("alice");
		try {
			const features = c.received.slice(c.received.lastIndexOf("<stream:features>"));
			return (
				/<c xmlns="http:\/\/jabber.org\/protocol\/caps"[^>]*ver="([^"]*)"/.exec(features)?.[1] ?? ""
			);
		} finally {
			c.end();
		}
	};
	const host = t.server.hosts.get("localhost");
	const before = await verOf();
	await host?.modules.unload("ping");
	try {
		const without = await verOf();
		assert.notEqual(without, before, "urn:xmpp:ping left disco#info, so the hash changes");
	} finally {
		await host?.modules.load("ping");
	}
	assert.equal(await verOf(), before);
});
