/**
 * XEP-0388 §2.6.3 tasks with XEP-0480 SASL Upgrade Tasks (§3, SCRAM): an account that has only
 * SCRAM-SHA-1 keys (as an import from a server that kept no others leaves it) gets SCRAM-SHA-256
 * during a SASL2 login, without the password crossing the wire. A raw client over direct TLS
 * computes SCRAM and the SaltedPassword itself with the helpers of src/auth/scram.ts.
 */
import assert from "node:assert/strict";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import {
	digest,
	hmac,
	keysFromSaltedPassword,
	type ScramHash,
	type StoredCredentials,
	saltedPassword,
	xor,
} from "../../src/auth/scram.ts";
import type { Json } from "../../src/storage/types.ts";
import { RawClient } from "../helpers/raw.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";

const SASL2 = "urn:xmpp:sasl:2";
const UPGRADE = "urn:xmpp:sasl:upgrade:0";
const SCRAM_UPGRADE = "urn:xmpp:scram-upgrade:0";
const FAST = "urn:xmpp:fast:0";
const BIND2 = "urn:xmpp:bind:0";
const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64");
const unb64 = (s: string) => Buffer.from(s, "base64");
const pick = (re: RegExp, text: string) => {
	const m = re.exec(text);
	if (!m) throw new Error(`no ${re} in ${text}`);
	return m[1] as string;
};
/** What ends a step of the exchange: a challenge, a continue, task data, success or failure. */
const STEP =
	/<(challenge|continue|task-data|success|failure) xmlns="urn:xmpp:sasl:2"(?:\/>|[\s\S]*?<\/\1>)/;

describe("SASL2 tasks: XEP-0480 SCRAM upgrades", () => {
	let t: TestServer;
	const clients: RawClient[] = [];

	before(async () => {
		t = await startTestServer({
			config: {
				auth: { require_encryption: false, allow_plain_without_tls: true },
				limits: { connections_per_ip: 1000, sasl_failures_per_ip: 1000 },
			},
			users: [
				["alice@localhost", "pw-alice"],
				["bob@localhost", "pw-bob"],
				["carol@localhost", "pw-carol"],
				["dave@localhost", "pw-dave"],
			],
		});
		// What an import from a server that stored only SCRAM-SHA-1 leaves.
		for (const user of ["alice", "carol", "dave"]) await dropHash(user, "SHA-256");
	});
	after(async () => {
		for (const c of clients) c.end();
		await t.stop();
	});

	const accounts = () => t.server.storage.keyval("localhost", "accounts");
	async function dropHash(user: string, hash: ScramHash) {
		const rec = (await accounts().get(user)) as unknown as { scram: StoredCredentials };
		delete rec.scram[hash];
		await accounts().set(user, rec as unknown as Json);
	}
	const credsOf = async (user: string) =>
		((await accounts().get(user)) as unknown as { scram: StoredCredentials }).scram;

	async function tlsStream(): Promise<{ c: RawClient; features: string }> {
		const c = await RawClient.connect(t.tlsPort, { tls: true });
		clients.push(c);
		c.open();
		return { c, features: await c.waitFor("</stream:features>") };
	}

	/** Sends `xml` and returns the next step element the server answers with. */
	async function exchange(c: RawClient, xml: string): Promise<string> {
		const mark = c.received.length;
		c.send(xml);
		const m = STEP.exec(await c.waitFor(STEP, mark));
		return m?.[0] ?? "";
	}

	/**
	 * A SCRAM login over SASL2 (RFC 5802 §3 computed here); `inner` goes in `<authenticate>`.
	 * Returns what follows the client-final-message, and whether the server's v= was right.
	 */
	async function scram(
		c: RawClient,
		user: string,
		password: string,
		hash: ScramHash,
		inner = "",
	): Promise<{ outcome: string; verified: boolean | null }> {
		const first = `n=${user},r=${randomBytes(12).toString("base64url")}`;
		const challenge = await exchange(
			c,
			`<authenticate xmlns='${SASL2}' mechanism='SCRAM-${hash}'><initial-response>${b64(`n,,${first}`)}</initial-response>${inner}</authenticate>`,
		);
		if (!challenge.startsWith("<challenge")) return { outcome: challenge, verified: null };
		const serverFirst = unb64(pick(/>([^<]+)</, challenge)).toString();
		const salted = await saltedPassword(
			hash,
			password,
			unb64(pick(/s=([^,]+)/, serverFirst)),
			Number(pick(/i=(\d+)/, serverFirst)),
		);
		const clientKey = hmac(hash, salted, "Client Key");
		const withoutProof = `c=${b64("n,,")},r=${pick(/r=([^,]+)/, serverFirst)}`;
		const authMessage = `${first},${serverFirst},${withoutProof}`;
		const proof = xor(clientKey, hmac(hash, digest(hash, clientKey), authMessage));
		const outcome = await exchange(
			c,
			`<response xmlns='${SASL2}'>${b64(`${withoutProof},p=${proof.toString("base64")}`)}</response>`,
		);
		const data = /<additional-data>([^<]+)</.exec(outcome)?.[1];
		const v = hmac(hash, keysFromSaltedPassword(hash, salted).serverKey, authMessage);
		return {
			outcome,
			verified: data === undefined ? null : unb64(data).toString() === `v=${b64(v)}`,
		};
	}

	/** XEP-0480 §3: the task for `hash`, answered with SaltedPassword of `password`. */
	async function runTask(c: RawClient, hash: ScramHash, password: string) {
		const data = await exchange(c, `<next xmlns='${SASL2}' task='UPGR-SCRAM-${hash}'/>`);
		const salt = pick(/<salt xmlns="urn:xmpp:scram-upgrade:0" iterations="\d+">([^<]+)</, data);
		const iterations = Number(pick(/iterations="(\d+)"/, data));
		const salted = await saltedPassword(hash, password, unb64(salt), iterations);
		const outcome = await exchange(
			c,
			`<task-data xmlns='${SASL2}'><hash xmlns='${SCRAM_UPGRADE}'>${b64(salted)}</hash></task-data>`,
		);
		return { data, salt, iterations, outcome };
	}

	const upgrade = (hash: ScramHash) => `<upgrade xmlns='${UPGRADE}'>UPGR-SCRAM-${hash}</upgrade>`;
	const ua = (id: string) => `<user-agent id='${id}'><software>AwesomeXMPP</software></user-agent>`;

	test("XEP-0480 §2.1: <upgrade/> tasks in SASL2's <authentication/>, the same for every stream; RFC 6120 SASL unchanged", async () => {
		const { features } = await tlsStream();
		const auth = pick(
			/(<authentication xmlns="urn:xmpp:sasl:2">[\s\S]*?<\/authentication>)/,
			features,
		);
		assert.match(
			auth,
			/<\/inline><upgrade xmlns="urn:xmpp:sasl:upgrade:0">UPGR-SCRAM-SHA-256<\/upgrade><upgrade xmlns="urn:xmpp:sasl:upgrade:0">UPGR-SCRAM-SHA-1<\/upgrade><\/authentication>$/,
		);
		// §2.1: never a -PLUS task. RFC 6120's <mechanisms/> has no upgrades.
		assert.doesNotMatch(auth, /UPGR-[^<]*-PLUS/);
		assert.doesNotMatch(pick(/(<mechanisms[\s\S]*?<\/mechanisms>)/, features), /upgrade/);
		// It says nothing about an account: a stream from someone else sees the same list.
		const c = await RawClient.connect(t.tlsPort, { tls: true });
		clients.push(c);
		c.send(
			`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='bob@localhost' to='localhost' version='1.0'>`,
		);
		const bobs = await c.waitFor("</stream:features>");
		assert.equal(pick(/(<authentication[\s\S]*?<\/authentication>)/, bobs), auth);
	});

	test("XEP-0388 §2.6.3 / XEP-0480 §3: SCRAM-SHA-1 login, <continue/> with the task, <next/>, salt and SaltedPassword in <task-data/>; then <success/> with the bind; SCRAM-SHA-256 works from then on", async () => {
		// Without the keys, SCRAM-SHA-256 cannot succeed (RFC 5802: nothing to check against).
		const before = await tlsStream();
		const refused = await scram(before.c, "alice", "pw-alice", "SHA-256");
		assert.match(refused.outcome, /^<failure xmlns="urn:xmpp:sasl:2"><not-authorized /);
		const sha1 = (await credsOf("alice"))["SHA-1"];

		const { c } = await tlsStream();
		const agent = randomUUID();
		const login = await scram(
			c,
			"alice",
			"pw-alice",
			"SHA-1",
			`${ua(agent)}${upgrade("SHA-256")}<bind xmlns='${BIND2}'><tag>Phone</tag></bind><request-token xmlns='${FAST}' mechanism='HT-SHA-256-NONE'/>`,
		);
		// §2.6.3: the mechanism's additional data (SCRAM's v=) in the <continue/>, one task.
		assert.match(
			login.outcome,
			/^<continue xmlns="urn:xmpp:sasl:2"><additional-data>[^<]+<\/additional-data><tasks><task>UPGR-SCRAM-SHA-256<\/task><\/tasks><text>[^<]+<\/text><\/continue>$/,
		);
		assert.equal(login.verified, true, "the server proved it knows SCRAM-SHA-1's keys");
		// XEP-0386 §4.2: the bind waits for the tasks; nothing is bound yet.
		assert.equal(t.server.hosts.get("localhost")?.sessions.get("alice"), undefined);
		const task = await runTask(c, "SHA-256", "pw-alice");
		assert.equal(task.iterations, 4096, "auth.scram_iterations");
		assert.equal(unb64(task.salt).length, 16, "a fresh 16-byte salt");
		// XEP-0388 §2.6.1: a full JID once bound, the <bound/>, the FAST token; no additional
		// data (it went with the <continue/>).
		assert.match(
			task.outcome,
			/^<success xmlns="urn:xmpp:sasl:2"><authorization-identifier>alice@localhost\/Phone\/[^<]+<\/authorization-identifier><bound xmlns="urn:xmpp:bind:0"\/><token xmlns="urn:xmpp:fast:0" [^>]+\/><\/success>$/,
		);
		await c.waitFor(/<\/success><stream:features>[\s\S]*<\/stream:features>/);
		// Stored: StoredKey and ServerKey of the SaltedPassword for that salt; SHA-1 untouched.
		const creds = await credsOf("alice");
		assert.deepEqual(creds["SHA-1"], sha1);
		const salted = await saltedPassword("SHA-256", "pw-alice", unb64(task.salt), 4096);
		const keys = keysFromSaltedPassword("SHA-256", salted);
		assert.equal(creds["SHA-256"]?.salt, task.salt);
		assert.equal(creds["SHA-256"]?.storedKey, b64(keys.storedKey));
		assert.equal(creds["SHA-256"]?.serverKey, b64(keys.serverKey));

		// SCRAM-SHA-256 now, over SASL2 and over RFC 6120 SASL alike.
		const after = await tlsStream();
		const ok = await scram(after.c, "alice", "pw-alice", "SHA-256");
		assert.match(ok.outcome, /^<success /);
		assert.equal(ok.verified, true);
		const wrong = await tlsStream();
		assert.match(
			(await scram(wrong.c, "alice", "not-the-password", "SHA-256")).outcome,
			/<not-authorized /,
		);
		// The token issued with the upgrade works (its credential fingerprint is the account's).
		const token = pick(/token="([^"]+)"/, task.outcome);
		const ht = await tlsStream();
		const mac = createHmac("sha256", token).update("Initiator").digest();
		const fastLogin = await exchange(
			ht.c,
			`<authenticate xmlns='${SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>${b64(Buffer.concat([Buffer.from("alice\0"), mac]))}</initial-response>${ua(agent)}<fast xmlns='${FAST}'/></authenticate>`,
		);
		assert.match(fastLogin, /^<success /);
		// Asked again, with the hash now there: no task, straight to <success/>.
		const again = await tlsStream();
		const plain = await scram(again.c, "alice", "pw-alice", "SHA-1", upgrade("SHA-256"));
		assert.match(plain.outcome, /^<success xmlns="urn:xmpp:sasl:2"><additional-data>/);
	});

	test("a FAST token issued before an upgrade still works after it; a FAST login runs no upgrade", async () => {
		// carol: SHA-1 only. A token first (PLAIN login over SASL2).
		const agent = randomUUID();
		const first = await tlsStream();
		const issued = await exchange(
			first.c,
			`<authenticate xmlns='${SASL2}' mechanism='PLAIN'><initial-response>${b64("\0carol\0pw-carol")}</initial-response>${ua(agent)}<request-token xmlns='${FAST}' mechanism='HT-SHA-256-NONE'/></authenticate>`,
		);
		const token = pick(/token="([^"]+)"/, issued);
		const htLogin = async (inner = "") => {
			const { c } = await tlsStream();
			const mac = createHmac("sha256", token).update("Initiator").digest();
			return exchange(
				c,
				`<authenticate xmlns='${SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>${b64(Buffer.concat([Buffer.from("carol\0"), mac]))}</initial-response>${ua(agent)}<fast xmlns='${FAST}'/>${inner}</authenticate>`,
			);
		};
		// A token proves no password: the upgrade asked for is not run, the login succeeds.
		assert.match(await htLogin(upgrade("SHA-256")), /^<success /);
		assert.equal((await credsOf("carol"))["SHA-256"], undefined);
		// PLAIN with the upgrade: the task, then success.
		const { c } = await tlsStream();
		const cont = await exchange(
			c,
			`<authenticate xmlns='${SASL2}' mechanism='PLAIN'><initial-response>${b64("\0carol\0pw-carol")}</initial-response>${upgrade("SHA-256")}</authenticate>`,
		);
		assert.match(cont, /^<continue xmlns="urn:xmpp:sasl:2"><tasks><task>UPGR-SCRAM-SHA-256</);
		assert.match((await runTask(c, "SHA-256", "pw-carol")).outcome, /^<success /);
		assert.ok((await credsOf("carol"))["SHA-256"]?.upgraded);
		// XEP-0480 §4 (business rules) keeps the old keys; the token issued before still works.
		assert.match(await htLogin(), /^<success /);
		// A password change replaces every credential, upgraded or not, and expires the token.
		await t.server.hosts.get("localhost")?.accounts.setPassword("carol", "new-pw");
		assert.match(await htLogin(), /<credentials-expired /);
	});

	test("tasks that go wrong: an upgrade not offered, the wrong <next/>, a hash of the wrong size, <abort/>; the stream stays unauthenticated and nothing is stored", async () => {
		const { c } = await tlsStream();
		// XEP-0388 §2.3: an upgrade not offered fails the authentication at once.
		const unknown = await exchange(
			c,
			`<authenticate xmlns='${SASL2}' mechanism='PLAIN'><initial-response>${b64("\0dave\0pw-dave")}</initial-response><upgrade xmlns='${UPGRADE}'>UPGR-SCRAM-SHA-256-PLUS</upgrade></authenticate>`,
		);
		assert.match(unknown, /^<failure xmlns="urn:xmpp:sasl:2"><invalid-mechanism /);
		const start = () =>
			exchange(
				c,
				`<authenticate xmlns='${SASL2}' mechanism='PLAIN'><initial-response>${b64("\0dave\0pw-dave")}</initial-response>${upgrade("SHA-256")}<bind xmlns='${BIND2}'/></authenticate>`,
			);
		// A task other than the one offered.
		assert.match(await start(), /^<continue /);
		assert.match(
			await exchange(c, `<next xmlns='${SASL2}' task='UPGR-SCRAM-SHA-1'/>`),
			/^<failure xmlns="urn:xmpp:sasl:2"><malformed-request /,
		);
		// A SaltedPassword of SHA-1's size for a SHA-256 task.
		assert.match(await start(), /^<continue /);
		await exchange(c, `<next xmlns='${SASL2}' task='UPGR-SCRAM-SHA-256'/>`);
		assert.match(
			await exchange(
				c,
				`<task-data xmlns='${SASL2}'><hash xmlns='${SCRAM_UPGRADE}'>${b64(randomBytes(20))}</hash></task-data>`,
			),
			/^<failure xmlns="urn:xmpp:sasl:2"><malformed-request /,
		);
		// The client gives up.
		assert.match(await start(), /^<continue /);
		assert.match(
			await exchange(c, `<abort xmlns='${SASL2}'/>`),
			/^<failure xmlns="urn:xmpp:sasl:2"><aborted /,
		);
		assert.equal((await credsOf("dave"))["SHA-256"], undefined);
		assert.equal(t.server.hosts.get("localhost")?.sessions.get("dave"), undefined);
		// XEP-0388 §2.6.2: nothing changed, so the same stream can log in, here without upgrade.
		const done = await exchange(
			c,
			`<authenticate xmlns='${SASL2}' mechanism='PLAIN'><initial-response>${b64("\0dave\0pw-dave")}</initial-response><bind xmlns='${BIND2}'/></authenticate>`,
		);
		assert.match(
			done,
			/^<success xmlns="urn:xmpp:sasl:2"><authorization-identifier>dave@localhost\//,
		);
		// §3.8: after a <continue/>, another <authenticate/> is a stream error.
		const other = await tlsStream();
		assert.match(
			await exchange(
				other.c,
				`<authenticate xmlns='${SASL2}' mechanism='PLAIN'><initial-response>${b64("\0dave\0pw-dave")}</initial-response>${upgrade("SHA-256")}</authenticate>`,
			),
			/^<continue /,
		);
		const mark = other.c.received.length;
		other.c.send(
			`<authenticate xmlns='${SASL2}' mechanism='PLAIN'><initial-response>${b64("\0dave\0pw-dave")}</initial-response></authenticate>`,
		);
		await other.c.waitFor(/<stream:error><policy-violation /, mark);
	});
});
