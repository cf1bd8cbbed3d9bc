/**
 * XEP-0012 §4 (Last Activity of an offline account) counts logouts of available resources only:
 * a session that never sent available presence ends without recording anything (and without a
 * storage write on every such login, which the login benchmark showed as an fsync per login).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { RawClient } from "../helpers/raw.ts";
import { iq } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { login } from "../helpers/xmpp-raw-login.ts";

let t: TestServer;

before(async () => {
	t = await startTestServer({
		config: { auth: { require_encryption: false, allow_plain_without_tls: true } },
		users: [["erin@localhost", "erin-pw"]],
	});
});
after(() => t.stop());

const connect = () => login(t.port, "erin", "erin-pw", { resource: "r", mechanism: "PLAIN" });

const ownLast = (c: RawClient, id: string): Promise<string> =>
	iq(c, id, `<iq type='get' id='${id}' to='erin@localhost'><query xmlns='jabber:iq:last'/></iq>`);

async function end(c: RawClient): Promise<void> {
	c.send("</stream:stream>");
	await c.waitClosed();
}

test("XEP-0012 §4: a session that was never available leaves no last activity; an available one does", async () => {
	// Log in and out without presence: nothing to record.
	await end(await connect());
	const probe = await connect();
	const none = await ownLast(probe, "l1");
	assert.match(none, /<item-not-found /, `no logout recorded yet: ${none}`);
	// Now be available, leave with a status: that logout is recorded (§4 seconds and status).
	probe.send("<presence/>");
	await probe.waitFor('<presence from="erin@localhost/r"');
	probe.send("<presence type='unavailable'><status>out</status></presence>");
	await end(probe);
	const again = await connect();
	try {
		const rec = await ownLast(again, "l2");
		assert.match(rec, /<query xmlns="jabber:iq:last" seconds="\d+">out<\/query>/);
	} finally {
		await end(again);
	}
});
