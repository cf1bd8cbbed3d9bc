/**
 * Probe answers (RFC 6121 §4.3.2): the contact's server answers a probe with the contact's
 * current presence only when the contact's roster says the requester is subscribed (from or
 * both); for none, to, pending-in or no item at all it reveals nothing. The subscription is read
 * afresh for every probe (one roster item from storage), so a change takes effect at once. Run
 * against both the in-memory and the SQLite backend, which read that one item differently.
 *
 * "Not answered" is asserted without timing: a ping sent right after the probe is answered
 * after the probe was handled (RFC 6120 §10.1 in-order processing), and a probe answer is
 * written to the requester's stream while the probe is handled.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { RawClient } from "../helpers/raw.ts";
import { iq, online as rawOnline } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";

const USERS = ["ann", "ben", "cat", "dan", "eve"];

for (const storage of ["memory", "sqlite"] as const) {
	describe(`probe answers (${storage} storage)`, () => {
		let t: TestServer;
		before(async () => {
			t = await startTestServer({
				storage,
				config: { auth: { require_encryption: false, allow_plain_without_tls: true } },
				users: USERS.map((u) => [`${u}@localhost`, `pw-${u}`] as [string, string]),
			});
		});
		after(() => t.stop());

		let seq = 0;
		/** Sends a probe from `c` to `to`, then a ping; returns what `c` received meanwhile. */
		async function probe(c: RawClient, to: string): Promise<string> {
			const mark = c.received.length;
			const id = `ping${++seq}`;
			c.send(`<presence type='probe' to='${to}'/>`);
			await iq(c, id, `<iq type='get' id='${id}'><ping xmlns='urn:xmpp:ping'/></iq>`);
			return c.received.slice(mark);
		}
		/** A presence from `from` with this type, or available (no type) when none is given. */
		const pres = (from: string, type?: string) =>
			`<presence(?=[^>]*\\sfrom="${from}")${type ? `(?=[^>]*\\stype="${type}")` : "(?![^>]*\\stype=)"}`;
		/** Available presence from `full`: a probe answer. */
		const answerFrom = (full: string) => new RegExp(pres(full));

		/** `from` subscribes to `to`'s presence and `to` approves (RFC 6121 §3.1). */
		async function subscribe(from: RawClient, fromJid: string, to: RawClient, toJid: string) {
			const mark = to.received.length;
			from.send(`<presence type='subscribe' to='${toJid}'/>`);
			await to.waitFor(new RegExp(pres(fromJid, "subscribe")), mark);
			const mark2 = from.received.length;
			to.send(`<presence type='subscribed' to='${fromJid}'/>`);
			await from.waitFor(new RegExp(pres(toJid, "subscribed")), mark2);
		}

		test("RFC 6121 §4.3.2: answered for from/both, not for none, to, pending-in or no item", async () => {
			const [ann, ben, cat, dan, eve] = await Promise.all(
				USERS.map((u) => rawOnline(t.port, u, u[0] as string)),
			);
			const c = { ann, ben, cat, dan, eve } as Record<string, RawClient>;
			try {
				// ann <-> ben: both. cat -> ann: ann's roster has cat with "from", cat's has ann
				// with "to".
				await subscribe(c.ben as RawClient, "ben@localhost", c.ann as RawClient, "ann@localhost");
				await subscribe(c.ann as RawClient, "ann@localhost", c.ben as RawClient, "ben@localhost");
				await subscribe(c.cat as RawClient, "cat@localhost", c.ann as RawClient, "ann@localhost");
				// dan: an item without subscription on ann's roster ("none"), and dan's request to
				// subscribe left pending (pending-in, §3.1.3), not approved.
				await iq(
					c.ann as RawClient,
					"add-dan",
					"<iq type='set' id='add-dan'><query xmlns='jabber:iq:roster'><item jid='dan@localhost'/></query></iq>",
				);
				const am = (c.ann as RawClient).received.length;
				(c.dan as RawClient).send("<presence type='subscribe' to='ann@localhost'/>");
				await (c.ann as RawClient).waitFor(new RegExp(pres("dan@localhost", "subscribe")), am);
				// ann's current presence, the one a probe answer carries (§4.3.2); her subscribers
				// get it first (§4.4.2), so it cannot pass for an answer below.
				const marks = [c.ben, c.cat].map((x) => (x as RawClient).received.length);
				(c.ann as RawClient).send("<presence><status>ann here</status></presence>");
				await (c.ben as RawClient).waitFor(/ann here/, marks[0]);
				await (c.cat as RawClient).waitFor(/ann here/, marks[1]);

				const fromAnn = answerFrom("ann@localhost/a");
				const toBen = await probe(c.ben as RawClient, "ann@localhost");
				assert.match(toBen, fromAnn, "both: answered");
				assert.match(toBen, /<presence[^>]*to="ben@localhost\/b"[^>]*>[\s\S]*ann here/);
				assert.match(await probe(c.cat as RawClient, "ann@localhost"), fromAnn, "from: answered");
				assert.doesNotMatch(
					await probe(c.dan as RawClient, "ann@localhost"),
					fromAnn,
					"none + pending-in: nothing revealed",
				);
				assert.doesNotMatch(
					await probe(c.eve as RawClient, "ann@localhost"),
					fromAnn,
					"no item: nothing revealed",
				);
				// cat's roster has ann with "to" only: cat is not sharing presence with ann.
				assert.doesNotMatch(
					await probe(c.ann as RawClient, "cat@localhost"),
					answerFrom("cat@localhost/c"),
					"to: nothing revealed",
				);

				// ann cancels cat's subscription (§3.2): the next probe reads the changed item. cat
				// gets the cancellation, then unavailable presence from ann (§3.2.2).
				const cm = (c.cat as RawClient).received.length;
				(c.ann as RawClient).send("<presence type='unsubscribed' to='cat@localhost'/>");
				await (c.cat as RawClient).waitFor(
					new RegExp(
						`${pres("ann@localhost", "unsubscribed")}[\\s\\S]*${pres("ann@localhost/a", "unavailable")}`,
					),
					cm,
				);
				assert.doesNotMatch(
					await probe(c.cat as RawClient, "ann@localhost"),
					fromAnn,
					"cancelled: nothing revealed",
				);
				// ann approves dan's pending request (§3.1.5): dan gets the approval, then ann's
				// current presence; dan's probes are answered from now on.
				const dm = (c.dan as RawClient).received.length;
				(c.ann as RawClient).send("<presence type='subscribed' to='dan@localhost'/>");
				await (c.dan as RawClient).waitFor(
					new RegExp(`${pres("ann@localhost", "subscribed")}[\\s\\S]*ann here`),
					dm,
				);
				assert.match(await probe(c.dan as RawClient, "ann@localhost"), fromAnn, "approved");
			} finally {
				for (const x of Object.values(c)) x.end();
			}
		});
	});
}
