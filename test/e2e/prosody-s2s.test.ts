/**
 * Federation with a real Prosody (Debian's 0.12, test/helpers/prosody.ts) over Server Dialback
 * (XEP-0220) on loopback: a Parley domain and a Prosody domain exchange messages, subscriptions
 * and presence, IQs, and group chat in both directions. Skipped, saying why, without Prosody.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type XmlElement, xml } from "@xmpp/client";
import { freePort } from "../helpers/pg-cluster.ts";
import { type ProsodyServer, prosodySkip, startProsody } from "../helpers/prosody.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { testCa } from "../helpers/test-ca.ts";
import { trustCertificates } from "../helpers/tls.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect, type XmppConnection } from "../helpers/xmpp-client.ts";

const PARLEY = "parley.test";
const PARLEY_MUC = `conference.${PARLEY}`;
const MUC_USER = "http://jabber.org/protocol/muc#user";
const NS_DISCO_INFO = "http://jabber.org/protocol/disco#info";

/** XEP-0045 §7.2.3: an occupant's own presence carries status code 110. */
const isSelfPresence = (s: XmlElement, from: string) =>
	s.is("presence") &&
	s.attrs.from === from &&
	(s.getChild("x", MUC_USER)?.children ?? []).some(
		(c) => typeof c !== "string" && c.name === "status" && c.attrs.code === "110",
	);

describe("federation with Prosody over dialback", { skip: prosodySkip }, () => {
	let prosody: ProsodyServer;
	let parley: TestServer;

	before(async () => {
		prosody = await startProsody({
			domain: "prosody.test",
			muc: "rooms.prosody.test",
			users: [["pam", "pam-pw"]],
		});
		const s2sPort = await freePort();
		const prosodyRoute = `${prosody.address}:${prosody.s2sPort}`;
		parley = await startTestServer({
			config: {
				hosts: { [PARLEY]: {} },
				components: { [PARLEY_MUC]: { type: "muc" } },
				listeners: { s2s: { enabled: true, address: "127.0.0.1", port: s2sPort } },
				s2s: { routes: { "prosody.test": prosodyRoute, "rooms.prosody.test": prosodyRoute } },
			},
			users: [["paul@parley.test", "paul-pw"]],
		});
		prosody.setRoute(PARLEY, "127.0.0.1", s2sPort);
		prosody.setRoute(PARLEY_MUC, "127.0.0.1", s2sPort);
		// The Prosody client checks Prosody's certificate, issued by the test CA.
		trustCertificates([(await testCa()).certPath]);
	});
	after(async () => {
		await parley?.stop();
		await prosody?.stop();
	});

	const paul = () =>
		connect(`xmpp://localhost:${parley.port}`, "paul", "paul-pw", {
			domain: PARLEY,
			resource: "p",
		});
	const pam = () =>
		connect(`xmpp://localhost:${prosody.c2sPort}`, "pam", "pam-pw", {
			domain: "prosody.test",
			resource: "q",
		});

	async function both<T>(
		fn: (paul: XmppConnection, pam: XmppConnection) => Promise<T>,
	): Promise<T> {
		const [a, b] = await Promise.all([paul(), pam()]);
		try {
			await a.xmpp.send(xml("presence"));
			await b.xmpp.send(xml("presence"));
			return await fn(a, b);
		} finally {
			await a.xmpp.stop();
			await b.xmpp.stop();
		}
	}

	test("chat both ways (RFC 6120 §10.4, RFC 6121 §5)", () =>
		both(async (a, b) => {
			await a.xmpp.send(
				xml(
					"message",
					{ to: "pam@prosody.test/q", type: "chat", id: "c1" },
					xml("body", {}, "hi pam"),
				),
			);
			const m = await waitFor(
				() => b.stanzas.find((s) => s.is("message") && s.attrs.id === "c1"),
				"pam to get paul's message",
				20_000,
			);
			assert.equal(m.attrs.from, "paul@parley.test/p");
			assert.equal(m.getChildText("body"), "hi pam");
			await b.xmpp.send(
				xml(
					"message",
					{ to: "paul@parley.test", type: "chat", id: "c2" },
					xml("body", {}, "hi paul"),
				),
			);
			const r = await waitFor(
				() => a.stanzas.find((s) => s.is("message") && s.attrs.id === "c2"),
				"paul to get pam's reply",
				20_000,
			);
			assert.equal(r.attrs.from, "pam@prosody.test/q");
		}));

	test("IQs both ways: each side pings the other server (XEP-0199)", () =>
		both(async (a, b) => {
			const fromParley = await a.xmpp.iqCaller.request(
				xml("iq", { type: "get", to: "prosody.test" }, xml("ping", { xmlns: "urn:xmpp:ping" })),
				20_000,
			);
			assert.equal(fromParley.attrs.type, "result");
			const fromProsody = await b.xmpp.iqCaller.request(
				xml("iq", { type: "get", to: PARLEY }, xml("ping", { xmlns: "urn:xmpp:ping" })),
				20_000,
			);
			assert.equal(fromProsody.attrs.type, "result");
			assert.equal(fromProsody.attrs.from, PARLEY);
		}));

	test("a subscription and presence across the two servers (RFC 6121 §3.1, §4.2)", () =>
		both(async (a, b) => {
			await a.xmpp.send(xml("presence", { to: "pam@prosody.test", type: "subscribe" }));
			await waitFor(
				() =>
					b.stanzas.find(
						(s) =>
							s.is("presence") &&
							s.attrs.type === "subscribe" &&
							s.attrs.from === "paul@parley.test",
					),
				"pam to get the request",
				20_000,
			);
			await b.xmpp.send(xml("presence", { to: "paul@parley.test", type: "subscribed" }));
			await waitFor(
				() =>
					a.stanzas.find(
						(s) =>
							s.is("presence") &&
							s.attrs.from === "pam@prosody.test/q" &&
							s.attrs.type === undefined,
					),
				"paul to see pam available",
				20_000,
			);
		}));

	test("Parley's user in a Prosody room, Prosody's user in a Parley room (XEP-0045 §7.2)", () =>
		both(async (a, b) => {
			await a.xmpp.send(
				xml(
					"presence",
					{ to: "lobby@rooms.prosody.test/paul" },
					xml("x", { xmlns: "http://jabber.org/protocol/muc" }),
				),
			);
			const self = await waitFor(
				() => a.stanzas.find((s) => isSelfPresence(s, "lobby@rooms.prosody.test/paul")),
				"paul's self-presence from Prosody's room",
				20_000,
			);
			assert.ok(self);
			await b.xmpp.send(
				xml(
					"presence",
					{ to: `hall@${PARLEY_MUC}/pam` },
					xml("x", { xmlns: "http://jabber.org/protocol/muc" }),
				),
			);
			await waitFor(
				() => b.stanzas.find((s) => isSelfPresence(s, `hall@${PARLEY_MUC}/pam`)),
				"pam's self-presence from Parley's room",
				20_000,
			);
			await b.xmpp.send(
				xml(
					"message",
					{ to: `hall@${PARLEY_MUC}`, type: "groupchat", id: "g1" },
					xml("body", {}, "hello hall"),
				),
			);
			const echo = await waitFor(
				() =>
					b.stanzas.find(
						(s) => s.is("message") && s.attrs.id === "g1" && s.attrs.type === "groupchat",
					),
				"pam's message back from Parley's room",
				20_000,
			);
			assert.equal(echo.attrs.from, `hall@${PARLEY_MUC}/pam`);
		}));

	test("disco#info and vCard queries cross both ways (XEP-0030, XEP-0054)", () =>
		both(async (a, b) => {
			const info = await a.xmpp.iqCaller.request(
				xml("iq", { type: "get", to: "prosody.test" }, xml("query", { xmlns: NS_DISCO_INFO })),
				20_000,
			);
			assert.equal(
				info.getChild("query", NS_DISCO_INFO)?.getChild("identity")?.attrs.category,
				"server",
			);
			const back = await b.xmpp.iqCaller.request(
				xml("iq", { type: "get", to: PARLEY }, xml("query", { xmlns: NS_DISCO_INFO })),
				20_000,
			);
			const features = (back.getChild("query", NS_DISCO_INFO)?.children ?? []).filter(
				(c) => typeof c !== "string" && c.name === "feature",
			);
			assert.ok(features.length > 0, "Parley's features reach Prosody's user");
			// Parley answers for its account's vCard (XEP-0054 §3.3), once there is one.
			await a.xmpp.iqCaller.request(
				xml("iq", { type: "set" }, xml("vCard", { xmlns: "vcard-temp" }, xml("FN", {}, "Paul P."))),
				20_000,
			);
			const vcard = await b.xmpp.iqCaller.request(
				xml("iq", { type: "get", to: "paul@parley.test" }, xml("vCard", { xmlns: "vcard-temp" })),
				20_000,
			);
			assert.equal(vcard.getChild("vCard", "vcard-temp")?.getChildText("FN"), "Paul P.");
		}));

	test("a message from Prosody to an offline Parley user is stored and delivered at login (XEP-0160)", async () => {
		const b = await pam();
		try {
			await b.xmpp.send(
				xml(
					"message",
					{ to: "paul@parley.test", type: "chat", id: "off1" },
					xml("body", {}, "later"),
				),
			);
			// A ping round trip on the same path orders it behind the message (RFC 6120 §10.1).
			await b.xmpp.iqCaller.request(
				xml("iq", { type: "get", to: PARLEY }, xml("ping", { xmlns: "urn:xmpp:ping" })),
				20_000,
			);
		} finally {
			await b.xmpp.stop();
		}
		const a = await paul();
		try {
			await a.xmpp.send(xml("presence"));
			const m = await waitFor(
				() => a.stanzas.find((s) => s.is("message") && s.attrs.id === "off1"),
				"the stored message",
				20_000,
			);
			assert.equal(m.attrs.from, "pam@prosody.test/q");
			assert.ok(m.getChild("delay", "urn:xmpp:delay"), "XEP-0203 delay stamp");
		} finally {
			await a.xmpp.stop();
		}
	});

	test("blocking a Prosody user: its messages do not arrive (XEP-0191 §3.2)", () =>
		both(async (a, b) => {
			await a.xmpp.iqCaller.request(
				xml(
					"iq",
					{ type: "set" },
					xml("block", { xmlns: "urn:xmpp:blocking" }, xml("item", { jid: "pam@prosody.test" })),
				),
				20_000,
			);
			await b.xmpp.send(
				xml(
					"message",
					{ to: "paul@parley.test/p", type: "chat", id: "blk1" },
					xml("body", {}, "x"),
				),
			);
			// XEP-0191 §3.5: a message from a blocked entity is answered service-unavailable.
			const err = await waitFor(
				() =>
					b.stanzas.find(
						(s) => s.is("message") && s.attrs.id === "blk1" && s.attrs.type === "error",
					),
				"the refusal",
				20_000,
			);
			assert.ok(err);
			assert.equal(
				a.stanzas.find((s) => s.attrs.id === "blk1"),
				undefined,
			);
			await a.xmpp.iqCaller.request(
				xml(
					"iq",
					{ type: "set" },
					xml("unblock", { xmlns: "urn:xmpp:blocking" }, xml("item", { jid: "pam@prosody.test" })),
				),
				20_000,
			);
		}));
	// Last: it restarts Prosody. Prosody ends its streams with system-shutdown when it stops.
	test("Prosody restarts: what it had read is not sent again; the messages after go on a new stream, each once (RFC 6120 §4.4, §10.1)", async () => {
		const a = await paul();
		try {
			await a.xmpp.send(xml("presence"));
			let b = await pam();
			await b.xmpp.send(xml("presence"));
			await a.xmpp.send(
				xml("message", { to: "pam@prosody.test/q", type: "chat", id: "pre" }, xml("body", {}, "1")),
			);
			await waitFor(
				() => b.stanzas.find((s) => s.is("message") && s.attrs.id === "pre"),
				"pam to get the first message",
				20_000,
			);
			await b.xmpp.stop();
			await prosody.halt();
			await a.xmpp.send(
				xml("message", { to: "pam@prosody.test", type: "chat", id: "down" }, xml("body", {}, "2")),
			);
			await waitFor(
				() => a.stanzas.find((s) => s.attrs.id === "down" && s.attrs.type === "error"),
				"the message sent while Prosody is down to come back",
				20_000,
			);
			// "pre" was read: sent again, it would have come back first, on the same failed stream.
			assert.deepEqual(
				a.stanzas.filter((s) => s.attrs.type === "error").map((s) => s.attrs.id),
				["down"],
			);
			await prosody.restart();
			b = await pam();
			try {
				await b.xmpp.send(xml("presence"));
				for (const id of ["after1", "after2", "after3"])
					await a.xmpp.send(
						xml("message", { to: "pam@prosody.test/q", type: "chat", id }, xml("body", {}, id)),
					);
				await waitFor(
					() => b.stanzas.find((s) => s.is("message") && s.attrs.id === "after3"),
					"pam to get the messages sent after the restart",
					20_000,
				);
				assert.deepEqual(
					b.stanzas
						.filter((s) => s.is("message") && /^(pre|down|after)/.test(s.attrs.id ?? ""))
						.map((s) => s.attrs.id),
					["after1", "after2", "after3"],
				);
			} finally {
				await b.xmpp.stop();
			}
		} finally {
			await a.xmpp.stop();
		}
	});
});
