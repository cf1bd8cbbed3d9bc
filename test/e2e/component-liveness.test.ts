/**
 * A XEP-0114 component whose connection vanishes (no FIN, no RST, nothing read) is found by a
 * XEP-0199 ping it never answers (issue 21, src/component/stream.ts): its stream ends, the
 * messages written to it since its last answer go back to their senders with
 * `remote-server-timeout` (RFC 6120 §8.3.3.17) instead of being lost without a word, and its
 * domain is unavailable until it connects again. The vanishing is real: a TCP relay between
 * the component and the server stops moving bytes (test/helpers/vanishing-relay.ts).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, test } from "node:test";
import type { Element } from "../../src/xml/element.ts";
import { RawClient } from "../helpers/raw.ts";
import { answerPings } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { StanzaReader } from "../helpers/stanza-reader.ts";
import { startVanishingRelay, type VanishingRelay } from "../helpers/vanishing-relay.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

const GATEWAY = "gateway.localhost";
const SECRET = "gateway-secret";
const STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";
const condition = (el: Element) => el.getChild("error")?.getChildByNs(STANZAS)?.name;

let t: TestServer;
let relay: VanishingRelay;

before(async () => {
	t = await startTestServer({
		config: {
			auth: { require_encryption: false, allow_plain_without_tls: true },
			sessions: { idle_ping: 1, ping_timeout: 1 },
			components: { [GATEWAY]: { type: "external" as const, secret: SECRET } },
		},
		users: [["alice@localhost", "alice-pw"]],
	});
	relay = await startVanishingRelay(t.componentPort);
});
after(async () => {
	await t?.stop();
	await relay?.close();
});

test("a vanished component is dropped and what it may not have read bounces (issue 21)", async () => {
	const comp = await RawClient.connect(relay.port);
	comp.send(
		`<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='${GATEWAY}'>`,
	);
	const header = await comp.waitFor(/<stream:stream[^>]*>/);
	const id = /id='([^']+)'/.exec(header)?.[1] ?? "";
	const mark = comp.received.length;
	comp.send(
		`<handshake>${createHash("sha1")
			.update(id + SECRET)
			.digest("hex")}</handshake>`,
	);
	await comp.waitFor("<handshake/>", mark);
	const compReader = new StanzaReader(comp);

	const alice = await login(t.port, "alice", "alice-pw", { resource: "r", mechanism: "PLAIN" });
	const ar = new StanzaReader(alice);
	// alice answers the server's own pings, so she stays (idle_ping is 1 s here).
	answerPings(alice);
	try {
		// While it answers, the component stays: the server's ping is answered with an error, and
		// an error proves the component reads as well as a result would (XEP-0199 §4.3).
		const p = compReader.mark();
		const ping = await compReader.wait(
			(el) => el.is("iq") && el.getChild("ping", "urn:xmpp:ping") !== undefined,
			p,
			"the server's ping to the component",
		);
		assert.equal(ping.attrs.to, GATEWAY);
		comp.send(
			`<iq type='error' id='${ping.attrs.id}' from='${GATEWAY}' to='${ping.attrs.from}'><error type='cancel'><service-unavailable xmlns='${STANZAS}'/></error></iq>`,
		);
		const m0 = compReader.mark();
		alice.send(`<message to='user@${GATEWAY}' id='m0' type='chat'><body>0</body></message>`);
		await compReader.wait((el) => el.attrs.id === "m0", m0, "m0 at the component");

		relay.vanish();
		const a = ar.mark();
		alice.send(`<message to='user@${GATEWAY}' id='m1' type='chat'><body>1</body></message>`);
		const bounced = await ar.wait(
			(el) => el.is("message") && el.attrs.id === "m1" && el.attrs.type === "error",
			a,
			"m1 back as an error",
		);
		assert.equal(condition(bounced), "remote-server-timeout");
		// The component is gone: the domain answers for it (XEP-0114, no component connected).
		const b = ar.mark();
		alice.send(`<message to='user@${GATEWAY}' id='m2' type='chat'><body>2</body></message>`);
		const after2 = await ar.wait((el) => el.attrs.id === "m2", b, "m2's error");
		assert.equal(after2.attrs.type, "error");
	} finally {
		alice.close();
		comp.close();
	}
});
