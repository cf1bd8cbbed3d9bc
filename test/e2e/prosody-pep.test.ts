/**
 * PEP (XEP-0163) across federation with a real Prosody 0.12 (test/helpers/prosody.ts): a Prosody
 * user who wants tune notifications (XEP-0115 caps with +notify, verified by Parley over s2s)
 * gets a Parley user's tunes; a Parley user gets a Prosody user's; a Prosody user reads a Parley
 * user's OMEMO device list (open access) without being subscribed. Skipped without Prosody.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { xml } from "@xmpp/client";
import { publishTune, TUNE, tuneEvent, wantNotifications } from "../helpers/pep.ts";
import { freePort } from "../helpers/pg-cluster.ts";
import { type ProsodyServer, prosodySkip, startProsody } from "../helpers/prosody.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { testCa } from "../helpers/test-ca.ts";
import { trustCertificates } from "../helpers/tls.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect, type XmppConnection } from "../helpers/xmpp-client.ts";

const PARLEY = "parley.test";
const PUBSUB = "http://jabber.org/protocol/pubsub";

describe("PEP across federation with Prosody", { skip: prosodySkip }, () => {
	let prosody: ProsodyServer;
	let parley: TestServer;
	let paul: XmppConnection;
	let pam: XmppConnection;

	before(async () => {
		prosody = await startProsody({
			domain: "prosody.test",
			users: [["pam", "pam-pw"]],
			modules: ["pep"],
		});
		const s2sPort = await freePort();
		parley = await startTestServer({
			config: {
				hosts: { [PARLEY]: {} },
				listeners: { s2s: { enabled: true, address: "127.0.0.1", port: s2sPort } },
				s2s: { routes: { "prosody.test": `${prosody.address}:${prosody.s2sPort}` } },
			},
			users: [["paul@parley.test", "paul-pw"]],
		});
		prosody.setRoute(PARLEY, "127.0.0.1", s2sPort);
		trustCertificates([(await testCa()).certPath]);
		paul = await connect(`xmpp://localhost:${parley.port}`, "paul", "paul-pw", {
			domain: PARLEY,
			resource: "p",
		});
		pam = await connect(`xmpp://localhost:${prosody.c2sPort}`, "pam", "pam-pw", {
			domain: "prosody.test",
			resource: "q",
		});
		await paul.xmpp.send(xml("presence"));
		await pam.xmpp.send(xml("presence"));
		// A mutual subscription (RFC 6121 §3.1): each asks, the other approves.
		for (const [a, b, bJid, aJid] of [
			[paul, pam, "pam@prosody.test", "paul@parley.test"],
			[pam, paul, "paul@parley.test", "pam@prosody.test"],
		] as const) {
			await a.xmpp.send(xml("presence", { to: bJid, type: "subscribe" }));
			await waitFor(
				() =>
					b.stanzas.find(
						(s) => s.is("presence") && s.attrs.type === "subscribe" && s.attrs.from === aJid,
					),
				`${bJid} to get the request`,
				20_000,
			);
			await b.xmpp.send(xml("presence", { to: aJid, type: "subscribed" }));
			// §3.1.5: the approver's server sends its available presence (Prosody 0.12 pushes the
			// roster instead of passing the "subscribed" itself on to the client).
			await waitFor(
				() =>
					a.stanzas.find(
						(s) =>
							s.is("presence") &&
							s.attrs.type === undefined &&
							s.attrs.from?.startsWith(`${bJid}/`),
					),
				`${aJid} to see ${bJid} available`,
				20_000,
			);
		}
	});
	after(async () => {
		await paul?.xmpp.stop();
		await pam?.xmpp.stop();
		await parley?.stop();
		await prosody?.stop();
	});

	test("XEP-0163 §4.3: a Prosody contact that +notifies tunes gets a Parley user's tune; the last one comes on presence", async () => {
		const first = await publishTune(paul, "before pam came");
		assert.equal(first.attrs.type, "result");
		await wantNotifications(pam, [TUNE]);
		// §4.3.2: Parley learned pam's caps over s2s and sent the last item.
		await tuneEvent(pam, "paul@parley.test", "before pam came");
		await publishTune(paul, "live");
		await tuneEvent(pam, "paul@parley.test", "live");
	});

	test("and the other way: Prosody's PEP notifies a Parley user, asking Parley's client for its caps", async () => {
		await wantNotifications(paul, [TUNE]);
		await publishTune(pam, "from prosody");
		await tuneEvent(paul, "pam@prosody.test", "from prosody");
	});

	test("XEP-0384's open device list is read from Prosody by a remote user (XEP-0060 §6.5 over s2s)", async () => {
		const list = xml(
			"list",
			{ xmlns: "eu.siacs.conversations.axolotl" },
			xml("device", { id: "77" }),
		);
		const form = xml(
			"x",
			{ xmlns: "jabber:x:data", type: "submit" },
			xml(
				"field",
				{ var: "FORM_TYPE", type: "hidden" },
				xml("value", {}, `${PUBSUB}#publish-options`),
			),
			xml("field", { var: "pubsub#access_model" }, xml("value", {}, "open")),
		);
		const node = "eu.siacs.conversations.axolotl.devicelist";
		await paul.xmpp.iqCaller.request(
			xml(
				"iq",
				{ type: "set" },
				xml(
					"pubsub",
					{ xmlns: PUBSUB },
					xml("publish", { node }, xml("item", { id: "current" }, list)),
					xml("publish-options", {}, form),
				),
			),
			20_000,
		);
		const got = await pam.xmpp.iqCaller.request(
			xml(
				"iq",
				{ type: "get", to: "paul@parley.test" },
				xml("pubsub", { xmlns: PUBSUB }, xml("items", { node })),
			),
			20_000,
		);
		const device = got
			.getChild("pubsub")
			?.getChild("items")
			?.getChild("item")
			?.getChild("list")
			?.getChild("device");
		assert.equal(device?.attrs.id, "77");
	});
});
