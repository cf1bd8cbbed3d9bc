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
});
