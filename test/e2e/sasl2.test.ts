/**
 * Modern login end to end: XEP-0388 SASL2, XEP-0386 Bind 2 (with carbons, CSI and XEP-0198
 * enabled inline), XEP-0198 resumption inside SASL2, XEP-0484 FAST tokens and XEP-0474
 * downgrade protection. Raw clients over direct TLS check every element; xmpp.js 0.14, which
 * uses SASL2, Bind 2, FAST and inline resumption by itself, checks that a real client library
 * gets on with it. The RFC 6120 path is what every other test file exercises.
 */
import assert from "node:assert/strict";
import { createHash, createHmac, pbkdf2Sync, randomBytes, randomUUID } from "node:crypto";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import type tls from "node:tls";
import { client, xml } from "@xmpp/client";
import type { C2SStream } from "../../src/c2s/stream.ts";
import { RawClient } from "../helpers/raw.ts";
import { answerPings, online } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";
import { CLIENT_TIMEOUT_MS } from "../helpers/xmpp-client.ts";
import { befriend } from "../helpers/xmpp-user.ts";

const SASL2 = "urn:xmpp:sasl:2";
const SM = "urn:xmpp:sm:3";
const FAST = "urn:xmpp:fast:0";
const BIND2 = "urn:xmpp:bind:0";
const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64");
const unb64 = (s: string) => Buffer.from(s, "base64");
const pick = (re: RegExp, text: string) => {
	const m = re.exec(text);
	if (!m) throw new Error(`no ${re} in ${text}`);
	return m[1] as string;
};
/** The outcome of an exchange: the whole `<success>` or `<failure>` element. */
const OUTCOME = /<(success|failure) xmlns="urn:xmpp:sasl:2"[\s\S]*?<\/\1>/;

describe("SASL2, Bind 2, FAST", () => {
	let t: TestServer;
	const clients: RawClient[] = [];
	const logLines: Record<string, unknown>[] = [];

	before(async () => {
		t = await startTestServer({
			config: {
				auth: { require_encryption: false, allow_plain_without_tls: true },
				// Many short connections from one address, some failing on purpose: no throttling here.
				limits: { connections_per_ip: 1000, sasl_failures_per_ip: 1000 },
			},
			users: ["alice", "bob", "carol", "dave", "erin"].map(
				(u) => [`${u}@localhost`, `pw-${u}`] as [string, string],
			),
			log: new Writable({
				write(chunk, _enc, done) {
					for (const line of String(chunk).split("\n"))
						if (line) logLines.push(JSON.parse(line) as Record<string, unknown>);
					done();
				},
			}),
		});
		await befriend(t.server, "alice@localhost", "bob@localhost");
	});
	after(async () => {
		for (const c of clients) c.end();
		await t.stop();
	});

	const host = () =>
		t.server.hosts.get("localhost") as NonNullable<ReturnType<typeof t.server.hosts.get>>;

	/** A direct TLS (XEP-0368) stream, opened, with its first features read. */
	async function tlsStream(): Promise<{ c: RawClient; features: string }> {
		const c = await RawClient.connect(t.tlsPort, { tls: true });
		clients.push(c);
		c.open();
		const features = await c.waitFor("</stream:features>");
		return { c, features };
	}

	/** `<authenticate>` with PLAIN; `inner` goes inside (user agent, bind, fast ...). */
	async function plain(c: RawClient, user: string, pw: string, inner = ""): Promise<string> {
		const mark = c.received.length;
		c.send(
			`<authenticate xmlns='${SASL2}' mechanism='PLAIN'><initial-response>${b64(`\0${user}\0${pw}`)}</initial-response>${inner}</authenticate>`,
		);
		return pick(
			/(<(?:success|failure)[\s\S]*?<\/(?:success|failure)>)/,
			await c.waitFor(OUTCOME, mark),
		);
	}

	/** HT-* with `token` (draft-schmaus-kitten-sasl-ht §3): one message, mutual authentication. */
	async function ht(
		c: RawClient,
		user: string,
		token: string,
		opts: { mech?: string; cb?: Buffer; inner?: string; fast?: string } = {},
	): Promise<string> {
		const mark = c.received.length;
		const mac = createHmac("sha256", token)
			.update(Buffer.concat([Buffer.from("Initiator"), opts.cb ?? Buffer.alloc(0)]))
			.digest();
		c.send(
			`<authenticate xmlns='${SASL2}' mechanism='${opts.mech ?? "HT-SHA-256-NONE"}'><initial-response>${b64(Buffer.concat([Buffer.from(`${user}\0`), mac]))}</initial-response>${opts.inner ?? ua(UA_FAST)}<fast xmlns='${FAST}' ${opts.fast ?? ""}/></authenticate>`,
		);
		return pick(
			/(<(?:success|failure)[\s\S]*?<\/(?:success|failure)>)/,
			await c.waitFor(OUTCOME, mark),
		);
	}

	const UA_FAST = randomUUID();
	const ua = (id: string, software = "AwesomeXMPP") =>
		`<user-agent id='${id}'><software>${software}</software><device>Kiva's Phone</device></user-agent>`;
	const tokenOf = (success: string) => {
		const tag = pick(/(<token xmlns="urn:xmpp:fast:0"[^>]*\/>)/, success);
		return { token: pick(/token="([^"]+)"/, tag), expiry: new Date(pick(/expiry="([^"]+)"/, tag)) };
	};

	test("XEP-0388 §2.1, XEP-0386 §4.1, XEP-0198 §6, XEP-0484 §3.1: <authentication/> after TLS only, with the RFC 6120 mechanisms and the inline features", async () => {
		// §4 (Security Considerations): SASL2 only after TLS. Plain TCP before STARTTLS: not offered.
		const plainTcp = await RawClient.connect(t.port);
		clients.push(plainTcp);
		plainTcp.open();
		const before = await plainTcp.waitFor("</stream:features>");
		assert.match(before, /<mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl">/);
		assert.doesNotMatch(before, /urn:xmpp:sasl:2/);

		const { features } = await tlsStream();
		const legacy = pick(/<mechanisms[^>]*>([\s\S]*?)<\/mechanisms>/, features);
		const auth = pick(
			/(<authentication xmlns="urn:xmpp:sasl:2">[\s\S]*?<\/authentication>)/,
			features,
		);
		// The same mechanisms as RFC 6120 SASL, in the same order.
		assert.equal(
			pick(/^((?:<mechanism>[^<]*<\/mechanism>)+)/, auth.replace(/^<authentication[^>]*>/, "")),
			legacy,
		);
		assert.deepEqual(
			[...legacy.matchAll(/<mechanism>([^<]+)</g)].map((m) => m[1]),
			["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"],
		);
		// XEP-0480 §2.1's <upgrade/> tasks follow <inline/> (test/e2e/sasl2-upgrade.test.ts).
		const inline = pick(
			/<inline>([\s\S]*)<\/inline>(?:<upgrade [^>]*>[^<]*<\/upgrade>)*<\/authentication>/,
			auth,
		);
		// XEP-0386 §4.1: Bind 2 and what it can enable: carbons (the carbons module), CSI, SM.
		assert.match(
			inline,
			/^<bind xmlns="urn:xmpp:bind:0"><inline><feature var="urn:xmpp:carbons:2"\/><feature var="urn:xmpp:csi:0"\/><feature var="urn:xmpp:sm:3"\/><\/inline><\/bind>/,
		);
		// XEP-0198 §6.2: resumption inside SASL2.
		assert.match(inline, /<sm xmlns="urn:xmpp:sm:3"\/>/);
		// XEP-0484 §3.1: FAST, a mechanism with channel binding first, one without.
		assert.match(
			inline,
			/<fast xmlns="urn:xmpp:fast:0"><mechanism>HT-SHA-256-EXPR<\/mechanism><mechanism>HT-SHA-256-ENDP<\/mechanism><mechanism>HT-SHA-256-NONE<\/mechanism><\/fast>/,
		);
	});

	test("XEP-0388 §2.3, §2.6.1: PLAIN with a user agent; <success/> names the bare JID and new features follow without a stream restart; RFC 6120 binding then; §3.8 a second <authenticate/> is a stream error", async () => {
		const { c } = await tlsStream();
		const mark = c.received.length;
		const success = await plain(c, "alice", "pw-alice", ua(randomUUID()));
		assert.equal(
			success,
			`<success xmlns="${SASL2}"><authorization-identifier>alice@localhost</authorization-identifier></success>`,
		);
		// §2.6.1: features at once, on the same stream (no second header).
		const after = await c.waitFor("</stream:features>", mark);
		assert.doesNotMatch(after, /<stream:stream/);
		assert.match(after, /<bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"\/>/);
		assert.match(after, /<sm xmlns="urn:xmpp:sm:3"\/>/);
		assert.doesNotMatch(after, /<mechanisms|<authentication/);
		const m2 = c.received.length;
		c.send(
			"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>legacy</resource></bind></iq>",
		);
		assert.match(await c.waitFor("</iq>", m2), /<jid>alice@localhost\/legacy<\/jid>/);
		// The log says how the client logged in, as for RFC 6120 SASL.
		assert.ok(
			logLines.some(
				(l) =>
					l.msg === "authenticated" &&
					l.user === "alice" &&
					l.sasl2 === true &&
					l.software === "AwesomeXMPP",
			),
		);
		c.send(
			`<authenticate xmlns='${SASL2}' mechanism='PLAIN'><initial-response>${b64("\0alice\0pw-alice")}</initial-response></authenticate>`,
		);
		await c.waitFor(/<stream:error>/, m2);
		await c.waitClosed();
	});

	test("XEP-0388 §2.6.2: <failure/> with the RFC 6120 condition and text; nothing changed, so the client tries again; unknown mechanisms are refused", async () => {
		const { c } = await tlsStream();
		assert.equal(
			await plain(c, "bob", "wrong"),
			`<failure xmlns="${SASL2}"><not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-sasl"/></failure>`,
		);
		let mark = c.received.length;
		c.send(`<authenticate xmlns='${SASL2}' mechanism='X-UNKNOWN'/>`);
		assert.match(
			await c.waitFor(OUTCOME, mark),
			/<failure xmlns="urn:xmpp:sasl:2"><invalid-mechanism xmlns="urn:ietf:params:xml:ns:xmpp-sasl"\/><text xml:lang="en">X-UNKNOWN is not offered<\/text><\/failure>/,
		);
		// A FAST mechanism without <fast/> is no password mechanism (XEP-0484 §3.3).
		mark = c.received.length;
		c.send(
			`<authenticate xmlns='${SASL2}' mechanism='HT-SHA-256-NONE'><initial-response>${b64("bob\0x")}</initial-response></authenticate>`,
		);
		assert.match(await c.waitFor(OUTCOME, mark), /<invalid-mechanism /);
		// §2.2: strict base64.
		mark = c.received.length;
		c.send(
			`<authenticate xmlns='${SASL2}' mechanism='PLAIN'><initial-response>%%%</initial-response></authenticate>`,
		);
		assert.match(await c.waitFor(OUTCOME, mark), /<incorrect-encoding /);
		// §2.3 abort.
		mark = c.received.length;
		c.send(`<abort xmlns='${SASL2}'/>`);
		assert.match(await c.waitFor(OUTCOME, mark), /<aborted /);
		assert.match(await plain(c, "bob", "pw-bob"), /^<success/);
		assert.ok(
			logLines.some(
				(l) =>
					l.msg === "authentication failed" &&
					l.user === "bob" &&
					l.sasl2 === true &&
					l.counted === true,
			),
			"the failure is logged and counted as for RFC 6120 SASL",
		);
	});

	test("XEP-0388 §2.4 challenges and responses, XEP-0474 §5.1: SCRAM-SHA-256 with h= over the offered mechanisms and channel binding types; v= checks out", async () => {
		const { c, features } = await tlsStream();
		const mechs = [
			...pick(/<authentication[^>]*>([\s\S]*?)<inline>/, features).matchAll(/<mechanism>([^<]+)</g),
		].map((m) => m[1] as string);
		const cbs = [...features.matchAll(/<channel-binding type="([^"]+)"/g)].map(
			(m) => m[1] as string,
		);
		assert.deepEqual(cbs, ["tls-exporter", "tls-server-end-point"]);
		const ssdp = createHash("sha256")
			.update(`${[...mechs].sort().join("\x1e")}\x1f${[...cbs].sort().join("\x1e")}`)
			.digest("base64");
		const cnonce = randomBytes(12).toString("base64url");
		const first = `n=carol,r=${cnonce}`;
		let mark = c.received.length;
		c.send(
			`<authenticate xmlns='${SASL2}' mechanism='SCRAM-SHA-256'><initial-response>${b64(`n,,${first}`)}</initial-response>${ua(randomUUID())}</authenticate>`,
		);
		const serverFirst = unb64(
			pick(
				/<challenge xmlns="urn:xmpp:sasl:2">([^<]+)<\/challenge>/,
				await c.waitFor("</challenge>", mark),
			),
		).toString();
		assert.match(serverFirst, /^r=[^,]+,s=[^,]+,i=\d+,h=[^,]+$/);
		assert.equal(
			pick(/,h=([^,]+)$/, serverFirst),
			ssdp,
			"XEP-0474: the hash of what we were offered",
		);
		const nonce = pick(/r=([^,]+)/, serverFirst);
		const salted = pbkdf2Sync(
			"pw-carol",
			unb64(pick(/s=([^,]+)/, serverFirst)),
			Number(pick(/i=(\d+)/, serverFirst)),
			32,
			"sha256",
		);
		const clientKey = createHmac("sha256", salted).update("Client Key").digest();
		const storedKey = createHash("sha256").update(clientKey).digest();
		const withoutProof = `c=${b64("n,,")},r=${nonce}`;
		const authMessage = `${first},${serverFirst},${withoutProof}`;
		const sig = createHmac("sha256", storedKey).update(authMessage).digest();
		const proof = Buffer.from(clientKey.map((b, i) => b ^ (sig[i] as number)));
		mark = c.received.length;
		c.send(
			`<response xmlns='${SASL2}'>${b64(`${withoutProof},p=${proof.toString("base64")}`)}</response>`,
		);
		const success = pick(/(<success[\s\S]*?<\/success>)/, await c.waitFor(OUTCOME, mark));
		const serverKey = createHmac("sha256", salted).update("Server Key").digest();
		const v = createHmac("sha256", serverKey).update(authMessage).digest("base64");
		assert.equal(
			success,
			`<success xmlns="${SASL2}"><additional-data>${b64(`v=${v}`)}</additional-data><authorization-identifier>carol@localhost</authorization-identifier></success>`,
		);
	});

	test("XEP-0386 §4.2: Bind 2 with a tag, carbons, stream management and CSI inactive; <bound/> in the <success/>, a full JID, features without binding; the same client again gets the same resource and replaces its old session", async () => {
		const { c } = await tlsStream();
		const id = randomUUID();
		const request = `${ua(id)}<bind xmlns='${BIND2}'><tag>AwesomeXMPP</tag><enable xmlns='urn:xmpp:carbons:2'/><enable xmlns='${SM}' resume='true'/><inactive xmlns='urn:xmpp:csi:0'/></bind>`;
		const mark = c.received.length;
		const success = await plain(c, "alice", "pw-alice", request);
		const jid = pick(/<authorization-identifier>([^<]+)</, success);
		// §4.2.1: "<tag>/<server-generated id>"; the user-agent id never shows.
		assert.match(jid, /^alice@localhost\/AwesomeXMPP\/[A-Za-z0-9_-]{12}$/);
		assert.ok(!jid.includes(id));
		// XEP-0198 §6.1: the <enabled/> inside <bound/>.
		assert.match(
			success,
			/<bound xmlns="urn:xmpp:bind:0"><enabled xmlns="urn:xmpp:sm:3" id="[^"]+" resume="true" max="\d+"\/><\/bound><\/success>$/,
		);
		const features = await c.waitFor("</stream:features>", mark);
		assert.doesNotMatch(features, /xmpp-bind|xmpp-session|<sm /);
		assert.match(features, /<csi xmlns="urn:xmpp:csi:0"\/>/);
		const resource = jid.slice("alice@localhost/".length);
		const session = host().sessions.get("alice")?.get(resource) as C2SStream;
		assert.ok(session, "bound");
		assert.equal(session.data.get("carbons"), true, "XEP-0280 enabled inline");
		// XEP-0352: inactive from the start: a contact's presence is held.
		c.send("<presence/>");
		await waitFor(() => session.available, "alice available");
		const bob = await online(t.port, "bob", "desk");
		clients.push(bob);
		await waitFor(() => session.csiHeld.held >= 1, "bob's presence held");
		assert.doesNotMatch(c.received, /from="bob@localhost\/desk"/);
		// The stream works: <r/> is answered (stream management on), stanzas flow.
		let m = c.received.length;
		c.send(`<r xmlns='${SM}'/>`);
		await c.waitFor(/<a xmlns="urn:xmpp:sm:3" h="1"\/>/, m);
		// Same user agent, same tag: the same resource (§4.2.1 stability); the old session goes.
		const again = await tlsStream();
		m = c.received.length;
		const success2 = await plain(
			again.c,
			"alice",
			"pw-alice",
			`${ua(id)}<bind xmlns='${BIND2}'><tag>AwesomeXMPP</tag></bind>`,
		);
		assert.equal(pick(/<authorization-identifier>([^<]+)</, success2), jid);
		await c.waitFor(/<stream:error><conflict /, m);
		// Another installation: another resource.
		const other = await tlsStream();
		const success3 = await plain(
			other.c,
			"alice",
			"pw-alice",
			`${ua(randomUUID())}<bind xmlns='${BIND2}'><tag>AwesomeXMPP</tag></bind>`,
		);
		assert.notEqual(pick(/<authorization-identifier>([^<]+)</, success3), jid);
		// No tag: the server's id alone.
		const bare = await tlsStream();
		assert.match(
			pick(
				/<authorization-identifier>([^<]+)</,
				await plain(bare.c, "alice", "pw-alice", `<bind xmlns='${BIND2}'/>`),
			),
			/^alice@localhost\/[A-Za-z0-9_-]{12}$/,
		);
	});

	test("XEP-0198 §6.2: <resume/> inside <authenticate/>: <resumed/> in the <success/> with the old full JID, no features, what was not acknowledged sent again; a failed one gives <failed/> and Bind 2 goes on", async () => {
		const { c } = await tlsStream();
		const success = await plain(
			c,
			"dave",
			"pw-dave",
			`<bind xmlns='${BIND2}'><tag>Phone</tag><enable xmlns='${SM}' resume='true'/></bind>`,
		);
		const jid = pick(/<authorization-identifier>([^<]+)</, success);
		const previd = pick(/<enabled xmlns="urn:xmpp:sm:3" id="([^"]+)"/, success);
		answerPings(c);
		const erin = await online(t.port, "erin", "pc");
		clients.push(erin);
		erin.send(
			`<message to='${jid}' type='chat' id='r1'><body>while you were away</body></message>`,
		);
		await c.waitFor("while you were away");
		// The connection breaks without a closing tag: the session hibernates.
		c.socket.destroy();
		const resource = jid.split("/").slice(1).join("/");
		await waitFor(
			() => (host().sessions.get("dave")?.get(resource) as C2SStream | undefined)?.hibernating,
			"hibernating",
		);
		const { c: back } = await tlsStream();
		const mark = back.received.length;
		back.send(
			`<authenticate xmlns='${SASL2}' mechanism='PLAIN'><initial-response>${b64("\0dave\0pw-dave")}</initial-response><resume xmlns='${SM}' previd='${previd}' h='0'/><bind xmlns='${BIND2}'><tag>Phone</tag></bind></authenticate>`,
		);
		const text = await back.waitFor(/while you were away/, mark);
		assert.match(
			text,
			new RegExp(
				`^<success xmlns="urn:xmpp:sasl:2"><authorization-identifier>${jid.replace(/[/.]/g, "\\$&")}</authorization-identifier><resumed xmlns="urn:xmpp:sm:3" previd="${previd}" h="0"/></success><message`,
			),
		);
		// §6.2: "stream features MUST NOT be sent in this case".
		assert.doesNotMatch(text, /stream:features/);
		// Unknown previd: <failed/> in the <success/>, then a new session from the <bind/>.
		const { c: fresh } = await tlsStream();
		const m2 = fresh.received.length;
		fresh.send(
			`<authenticate xmlns='${SASL2}' mechanism='PLAIN'><initial-response>${b64("\0dave\0pw-dave")}</initial-response><resume xmlns='${SM}' previd='bm9wZW5vcGVub3Blbm9wZW5vcGU' h='3'/><bind xmlns='${BIND2}'><tag>Phone</tag></bind></authenticate>`,
		);
		const s2 = pick(/(<success[\s\S]*?<\/success>)/, await fresh.waitFor(OUTCOME, m2));
		assert.match(
			s2,
			/^<success xmlns="urn:xmpp:sasl:2"><authorization-identifier>dave@localhost\/Phone\/[A-Za-z0-9_-]{12}<\/authorization-identifier><failed xmlns="urn:xmpp:sm:3"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/><\/failed><bound xmlns="urn:xmpp:bind:0"\/><\/success>$/,
		);
		await fresh.waitFor("</stream:features>", m2);
	});

	test("XEP-0484 §3.2-§3.5: a token for the user agent and mechanism; HT-SHA-256-NONE and -EXPR logins with mutual authentication; bound to its mechanism; count replays refused; rotation keeps the old token until the new one is used; invalidation", async () => {
		// §3.2: a token on request, bound to the mechanism asked for.
		let { c } = await tlsStream();
		const issued = await plain(
			c,
			"bob",
			"pw-bob",
			`${ua(UA_FAST)}<request-token xmlns='${FAST}' mechanism='HT-SHA-256-NONE'/>`,
		);
		const first = tokenOf(issued);
		assert.match(first.token, /^secret-token:fast-[A-Za-z0-9_-]{43}$/);
		const days = (first.expiry.getTime() - Date.now()) / 86_400_000;
		assert.ok(days > 20.9 && days <= 21, `expires in 21 days (${days})`);

		// §3.3: the token logs in; the server proves it knows it too (HT "Responder").
		({ c } = await tlsStream());
		const ok = await ht(c, "bob", first.token, { inner: `${ua(UA_FAST)}<bind xmlns='${BIND2}'/>` });
		const responder = createHmac("sha256", first.token).update("Responder").digest("base64");
		assert.match(
			ok,
			new RegExp(
				`^<success xmlns="urn:xmpp:sasl:2"><additional-data>${responder.replace(/[+/]/g, "\\$&")}</additional-data><authorization-identifier>bob@localhost/`,
			),
		);
		assert.doesNotMatch(ok, /<token/, "not due for rotation");
		assert.ok(logLines.some((l) => l.msg === "authenticated" && l.mech === "HT-SHA-256-NONE"));

		// §3.4: bound to its mechanism, to its user agent.
		({ c } = await tlsStream());
		assert.match(await ht(c, "bob", first.token, { mech: "HT-SHA-256-ENDP" }), /<not-authorized /);
		({ c } = await tlsStream());
		assert.match(await ht(c, "bob", first.token, { inner: ua(randomUUID()) }), /<not-authorized /);
		// §4.1: no user agent, no FAST.
		({ c } = await tlsStream());
		assert.match(
			await ht(c, "bob", first.token, { inner: "" }),
			/<malformed-request [\s\S]*FAST needs a &lt;user-agent id&gt;/,
		);

		// §3.3 count: each one higher than the last.
		({ c } = await tlsStream());
		assert.match(await ht(c, "bob", first.token, { fast: "count='3'" }), /^<success/);
		({ c } = await tlsStream());
		assert.match(await ht(c, "bob", first.token, { fast: "count='3'" }), /<not-authorized /);
		({ c } = await tlsStream());
		assert.match(await ht(c, "bob", first.token, { fast: "count='4'" }), /^<success/);

		// Channel binding: HT-SHA-256-EXPR with this connection's tls-exporter data.
		({ c } = await tlsStream());
		const exprToken = tokenOf(
			await plain(
				c,
				"bob",
				"pw-bob",
				`${ua(UA_FAST)}<request-token xmlns='${FAST}' mechanism='HT-SHA-256-EXPR'/>`,
			),
		);
		({ c } = await tlsStream());
		const cb = (c.socket as tls.TLSSocket).exportKeyingMaterial(
			32,
			"EXPORTER-Channel-Binding",
			Buffer.alloc(0),
		);
		const expr = await ht(c, "bob", exprToken.token, { mech: "HT-SHA-256-EXPR", cb });
		assert.match(
			expr,
			new RegExp(
				`<additional-data>${createHmac("sha256", exprToken.token)
					.update(Buffer.concat([Buffer.from("Responder"), cb]))
					.digest("base64")
					.replace(/[+/]/g, "\\$&")}<`,
			),
		);
		// The same token with another connection's binding data is refused.
		({ c } = await tlsStream());
		assert.match(
			await ht(c, "bob", exprToken.token, { mech: "HT-SHA-256-EXPR", cb }),
			/<not-authorized /,
		);

		// §3.4 rotation: an old token gets a new one; the old stays valid until the new is used.
		const store = host().map<{ issued: number }>("fast_tokens");
		const keys = [...(await store.getAll("bob")).entries()];
		for (const [k, rec] of keys)
			await store.set("bob", k, { ...rec, issued: Date.now() - 2 * 86_400_000 } as never);
		({ c } = await tlsStream());
		const rotated = await ht(c, "bob", exprToken.token, {
			mech: "HT-SHA-256-EXPR",
			cb: (c.socket as tls.TLSSocket).exportKeyingMaterial(
				32,
				"EXPORTER-Channel-Binding",
				Buffer.alloc(0),
			),
		});
		const next = tokenOf(rotated);
		assert.notEqual(next.token, exprToken.token);
		const withCb = async (token: string) => {
			const s = await tlsStream();
			return ht(s.c, "bob", token, {
				mech: "HT-SHA-256-EXPR",
				cb: (s.c.socket as tls.TLSSocket).exportKeyingMaterial(
					32,
					"EXPORTER-Channel-Binding",
					Buffer.alloc(0),
				),
			});
		};
		// The client did not get (or keep) the new token and logs in with the old one: that still
		// works, and it is handed a newer token, which replaces the unused one (§3.4 SHOULD).
		const again = await withCb(exprToken.token);
		assert.match(again, /^<success/, "the old token until a new one is used");
		const newest = tokenOf(again);
		assert.match(await withCb(next.token), /<not-authorized /, "the unused token was replaced");
		assert.match(await withCb(newest.token), /^<success/);
		assert.match(
			await withCb(exprToken.token),
			/<not-authorized /,
			"gone once a newer one was used",
		);

		// §3.5 invalidation: logged in, then the token is gone; no new token unless asked.
		({ c } = await tlsStream());
		const inv = await ht(c, "bob", newest.token, {
			mech: "HT-SHA-256-EXPR",
			cb: (c.socket as tls.TLSSocket).exportKeyingMaterial(
				32,
				"EXPORTER-Channel-Binding",
				Buffer.alloc(0),
			),
			fast: "invalidate='true'",
		});
		assert.match(inv, /^<success/);
		assert.doesNotMatch(inv, /<token/);
		assert.match(await withCb(newest.token), /<not-authorized /);
	});

	test("XEP-0484 §4.2: a password change revokes the tokens (credentials-expired, the client falls back to its password); a deleted account's tokens are gone", async () => {
		let { c } = await tlsStream();
		const ua1 = randomUUID();
		const tok = tokenOf(
			await plain(
				c,
				"carol",
				"pw-carol",
				`${ua(ua1)}<request-token xmlns='${FAST}' mechanism='HT-SHA-256-NONE'/>`,
			),
		);
		({ c } = await tlsStream());
		assert.match(await ht(c, "carol", tok.token, { inner: ua(ua1) }), /^<success/);
		await host().accounts.setPassword("carol", "pw-carol-2");
		({ c } = await tlsStream());
		assert.match(await ht(c, "carol", tok.token, { inner: ua(ua1) }), /<credentials-expired /);
		// Not counted against the address: an honest client with an old token.
		assert.ok(
			logLines.some(
				(l) =>
					l.msg === "authentication failed" &&
					l.condition === "credentials-expired" &&
					l.counted === false,
			),
		);
		({ c } = await tlsStream());
		const tok2 = tokenOf(
			await plain(
				c,
				"carol",
				"pw-carol-2",
				`${ua(ua1)}<request-token xmlns='${FAST}' mechanism='HT-SHA-256-NONE'/>`,
			),
		);
		await host().accounts.delete("carol");
		assert.equal(
			(await host().map("fast_tokens").getAll("carol")).size,
			0,
			"removed with the account",
		);
		({ c } = await tlsStream());
		assert.match(await ht(c, "carol", tok2.token, { inner: ua(ua1) }), /<not-authorized /);
	});

	test("xmpp.js 0.14 (STARTTLS): SASL2 with Bind 2 and stream management inline, a FAST token it then logs in with, and resumption inside SASL2 after its socket is cut", async (ctx) => {
		await host()
			.accounts.create("xjs", "pw-xjs")
			.catch(() => undefined);
		const userAgent = xml("user-agent", { id: randomUUID() }, xml("software", {}, "parley-test"));
		type Fast = {
			fetch(): Promise<{ token: string; mechanism: string } | undefined>;
			save(t: unknown): Promise<void>;
		};
		type Sm = { enabled: boolean; id: string; on(e: string, f: () => void): void };
		// Stopped whatever happens: a client left running keeps the test file from ending.
		const made: { stop(): Promise<unknown>; reconnect: { stop(): void } }[] = [];
		ctx.after(async () => {
			for (const x of made) {
				x.reconnect.stop();
				await x.stop().catch(() => undefined);
			}
		});
		const make = () => {
			const x = client({
				service: `xmpp://localhost:${t.port}`,
				domain: "localhost",
				username: "xjs",
				password: "pw-xjs",
				userAgent,
			} as never);
			x.on("error", () => {});
			(x as unknown as { timeout: number }).timeout = CLIENT_TIMEOUT_MS;
			made.push(x);
			return x as typeof x & {
				fast: Fast;
				streamManagement: Sm;
				socket: { socket: { destroy(): void } };
			};
		};
		const first = make();
		first.reconnect.stop();
		const jid = (await first.start()).toString();
		// No tag (xmpp.js sends its resource option as the tag): the server's id alone.
		assert.match(jid, /^xjs@localhost\/[A-Za-z0-9_-]{12}$/);
		assert.equal(first.streamManagement.enabled, true, "XEP-0198 enabled inside Bind 2");
		assert.ok(first.streamManagement.id);
		const token = await first.fast.fetch();
		assert.equal(token?.mechanism, "HT-SHA-256-NONE", "xmpp.js asked for a token (XEP-0484 §3.2)");
		// Resumption: the socket is cut, xmpp.js reconnects and sends <resume/> in <authenticate/>.
		await first.send(xml("presence"));
		const bob = await online(t.port, "bob", "watch");
		clients.push(bob);
		const got: string[] = [];
		first.on("stanza", (s: { is(n: string): boolean; attrs: Record<string, string> }) => {
			if (s.is("message")) got.push(s.attrs.id as string);
		});
		bob.send(`<message to='${jid}' type='chat' id='x1'><body>one</body></message>`);
		await waitFor(() => got.includes("x1"), "x1");
		let resumed = false;
		first.streamManagement.on("resumed", () => {
			resumed = true;
		});
		(first.reconnect as unknown as { start(): void }).start();
		first.socket.socket.destroy();
		bob.send(`<message to='${jid}' type='chat' id='x2'><body>two</body></message>`);
		await waitFor(() => got.includes("x2"), "x2", 20_000);
		// xmpp.js may hand over the resent x2 before it emits "resumed" (the server had resumed).
		await waitFor(() => resumed, "resumed inside SASL2");
		assert.deepEqual(got, ["x1", "x2"], "each once");
		assert.equal(first.jid?.toString(), jid, "the same session");
		assert.ok(logLines.some((l) => l.msg === "session resumed" && l.jid === jid));
		// The next login with that token, as the same app restarting: HT-SHA-256-NONE, no
		// password; the same installation gets the same resource and replaces its old session.
		first.reconnect.stop();
		const second = make();
		second.reconnect.stop();
		await second.fast.save(token);
		const jid2 = (await second.start()).toString();
		assert.ok(
			logLines.some(
				(l) => l.msg === "authenticated" && l.user === "xjs" && l.mech === "HT-SHA-256-NONE",
			),
		);
		assert.equal(jid2, jid, "XEP-0386 §4.2.1: stable for the same user agent");
		await second.stop();
		await first.stop().catch(() => undefined);
	});
});

/**
 * XEP-0386 §4.2 with `sessions.on_resource_conflict`, which RFC 6120 binding follows too
 * (test/e2e/stream.test.ts): the server makes the resource up from the client's `<tag>` and
 * its `<user-agent id>`, so a conflict means the same client installation logging in again.
 */
describe("Bind 2 and sessions.on_resource_conflict", () => {
	const servers: TestServer[] = [];
	const clients: RawClient[] = [];
	after(async () => {
		for (const c of clients) c.end();
		for (const s of servers) await s.stop();
	});

	async function server(policy?: "replace" | "refuse" | "rename"): Promise<TestServer> {
		const s = await startTestServer({
			config: {
				auth: { require_encryption: false, allow_plain_without_tls: true },
				...(policy ? { sessions: { on_resource_conflict: policy } } : {}),
			},
			users: [["alice@localhost", "pw"]],
		});
		servers.push(s);
		return s;
	}

	/** A direct TLS stream, PLAIN over SASL2 with a user agent and a Bind 2 request. */
	async function login(
		s: TestServer,
		agent: string,
		tag: string,
		into?: RawClient,
		extra = "",
	): Promise<{ c: RawClient; outcome: string; jid: string | undefined }> {
		let c = into;
		if (!c) {
			c = await RawClient.connect(s.tlsPort, { tls: true });
			clients.push(c);
			c.open();
			await c.waitFor("</stream:features>");
		}
		const mark = c.received.length;
		c.send(
			`<authenticate xmlns='${SASL2}' mechanism='PLAIN'><initial-response>${b64("\0alice\0pw")}</initial-response><user-agent id='${agent}'><software>AwesomeXMPP</software></user-agent><bind xmlns='${BIND2}'><tag>${tag}</tag></bind>${extra}</authenticate>`,
		);
		const outcome = pick(
			/(<(?:success|failure)[\s\S]*?<\/(?:success|failure)>)/,
			await c.waitFor(OUTCOME, mark),
		);
		return { c, outcome, jid: /<authorization-identifier>([^<]+)</.exec(outcome)?.[1] };
	}

	const sessionsOf = (s: TestServer) => [
		...(s.server.hosts.get("localhost")?.sessions.get("alice")?.keys() ?? []),
	];

	test('"replace" (the default): the same client\'s earlier sessions go, under its tag and under another; other clients stay', async () => {
		const s = await server();
		const agent = randomUUID();
		const a = await login(s, agent, "Phone");
		const other = await login(s, randomUUID(), "Phone");
		assert.match(a.outcome, /<bound xmlns="urn:xmpp:bind:0"\/>/);
		// §4.2: "terminate any earlier sessions from the same client", whatever their tag.
		let mark = a.c.received.length;
		const b = await login(s, agent, "Phone-beta");
		assert.notEqual(a.jid, b.jid, "another tag, another resource (§4.2.1)");
		await a.c.waitFor(/<stream:error><conflict /, mark);
		// The same client and tag as the first: the same resource, and b goes.
		mark = b.c.received.length;
		const again = await login(s, agent, "Phone");
		assert.equal(again.jid, a.jid, "§4.2.1: stable for the same user agent and tag");
		await b.c.waitFor(/<stream:error><conflict /, mark);
		await waitFor(() => sessionsOf(s).length === 2, "two sessions left");
		assert.doesNotMatch(other.c.received, /<stream:error>/);
		assert.deepEqual(
			sessionsOf(s).sort(),
			[again.jid, other.jid].map((j) => (j as string).slice("alice@localhost/".length)).sort(),
		);
	});

	test('"refuse": the same client\'s login fails with temporary-auth-failure and <conflict/>, nothing changes, and the old session stays', async () => {
		const s = await server("refuse");
		const agent = randomUUID();
		const a = await login(s, agent, "Phone");
		assert.ok(a.jid);
		const b = await login(s, agent, "Phone");
		// XEP-0388 §2.6.2: the RFC 6120 §6.5 condition, an application-specific one, a text.
		assert.match(
			b.outcome,
			/^<failure xmlns="urn:xmpp:sasl:2"><temporary-auth-failure xmlns="urn:ietf:params:xml:ns:xmpp-sasl"\/><conflict xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"\/><text xml:lang="en">[^<]+<\/text><\/failure>$/,
		);
		assert.doesNotMatch(a.c.received, /<stream:error>/);
		assert.deepEqual(sessionsOf(s), [(a.jid as string).slice("alice@localhost/".length)]);
		// §2.6: not authenticated, the stream as it was: another attempt on it may succeed,
		// here as another client installation, which is no conflict.
		const retry = await login(s, randomUUID(), "Phone", b.c);
		assert.match(retry.outcome, /^<success /);
		assert.notEqual(retry.jid, a.jid);
		// Another tag of the same client is no conflict either, and ends nothing under "refuse".
		const tagged = await login(s, agent, "Desktop");
		assert.match(tagged.outcome, /^<success /);
		assert.doesNotMatch(a.c.received, /<stream:error>/);
		// With a <resume/> that fails (XEP-0198 §6.2 inside SASL2), the login is not refused:
		// the <failed/> and a resource of its own, as "rename" would give.
		const resumeFailed = await login(
			s,
			agent,
			"Phone",
			undefined,
			`<resume xmlns='${SM}' previd='no-such-session' h='0'/>`,
		);
		assert.match(resumeFailed.outcome, /^<success /);
		assert.match(resumeFailed.outcome, /<failed xmlns="urn:xmpp:sm:3"><item-not-found /);
		assert.match(resumeFailed.outcome, /<bound xmlns="urn:xmpp:bind:0"\/>/);
		assert.match(
			resumeFailed.jid as string,
			new RegExp(`^${(a.jid as string).replaceAll("/", "\\/")}\\.[0-9a-f]{8}$`),
		);
		assert.doesNotMatch(a.c.received, /<stream:error>/);
		resumeFailed.c.end();
		// Once the old session has gone, the client gets its resource again.
		a.c.end();
		await waitFor(
			() => !sessionsOf(s).includes((a.jid as string).slice("alice@localhost/".length)),
			"the old session to go",
		);
		const later = await login(s, agent, "Phone");
		assert.equal(later.jid, a.jid);
	});

	test('"rename": the same client\'s new session gets a resource of its own; the old one stays', async () => {
		const s = await server("rename");
		const agent = randomUUID();
		const a = await login(s, agent, "Phone");
		const b = await login(s, agent, "Phone");
		assert.match(b.outcome, /^<success /);
		assert.match(b.outcome, /<bound xmlns="urn:xmpp:bind:0"\/>/);
		// RFC 6120 binding's rename: the resource and a random suffix; still a full JID (XEP-0388 §2.6.1).
		assert.match(
			b.jid as string,
			new RegExp(`^${(a.jid as string).replaceAll("/", "\\/")}\\.[0-9a-f]{8}$`),
		);
		assert.doesNotMatch(a.c.received, /<stream:error>/);
		assert.equal(sessionsOf(s).length, 2);
	});
});
