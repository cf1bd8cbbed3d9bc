/**
 * Push Notifications (XEP-0357) end to end, with a push app server of our own: an xmpp.js
 * XEP-0114 component that records what it is sent. Enable and disable (§5, §6), a notification
 * with the summary and the client's publish-options for an offline message and for a message to
 * a session waiting to be resumed (XEP-0198), nothing for a connected one, the registration
 * disabled when the app server says it is gone (§8), and the diagnostics `parley push` prints.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { XmlElement } from "@xmpp/client";
import { component, xml } from "@xmpp/component";
import type { C2SStream } from "../../src/c2s/stream.ts";
import type { RawClient } from "../helpers/raw.ts";
import { answerPings, iq, online } from "../helpers/raw-stanzas.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { startVanishingRelay, type VanishingRelay } from "../helpers/vanishing-relay.ts";
import { waitFor } from "../helpers/wait.ts";

const APP = "push.localhost";
const ROOMS = "rooms.localhost";
const BODIES = "bodies.localhost";
const SECRET = "component-secret";
const BIN = fileURLToPath(new URL("../../bin/parley.js", import.meta.url));

const enable = (node: string, secret = "s3cr3t") =>
	`<iq type='set' id='en-${node}'><enable xmlns='urn:xmpp:push:0' jid='${APP}' node='${node}'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='secret'><value>${secret}</value></field></x></enable></iq>`;

/** The form fields of a notification's summary or of its publish-options. */
function fields(x: XmlElement | undefined): Record<string, string> {
	const out: Record<string, string> = {};
	for (const f of x?.getChildren("field") ?? [])
		out[f.attrs.var as string] = f.getChildText("value") ?? "";
	return out;
}

describe("XEP-0357 Push Notifications", () => {
	let t: TestServer;
	const published: XmlElement[] = [];
	/** Nodes the app server says are gone (item-not-found, type cancel). */
	const gone = new Set<string>();
	let app: ReturnType<typeof component>;
	const clients: RawClient[] = [];
	const relays: VanishingRelay[] = [];

	before(async () => {
		t = await startTestServer({
			storage: "sqlite",
			config: {
				auth: { require_encryption: false, allow_plain_without_tls: true },
				components: { [APP]: { type: "external", secret: SECRET }, [ROOMS]: { type: "muc" } },
				sessions: { idle_ping: 1, ping_timeout: 1 },
				// A host whose notifications carry the body, so a test can tell which message woke it.
				hosts: {
					localhost: {},
					[BODIES]: { module_options: { push: { include_body: true } } },
				},
			},
			users: [
				...["alice", "bob", "carol"].map((u) => [`${u}@localhost`, `pw-${u}`] as [string, string]),
				[`dave@${BODIES}`, "pw-dave"],
			],
		});
		app = component({
			service: `xmpp://127.0.0.1:${t.componentPort}`,
			domain: APP,
			password: SECRET,
		});
		app.reconnect.stop();
		app.on("error", () => {});
		app.on("stanza", (s: XmlElement) => {
			const publish = s
				.getChild("pubsub", "http://jabber.org/protocol/pubsub")
				?.getChild("publish");
			if (!s.is("iq") || s.attrs.type !== "set" || !publish) return;
			published.push(s);
			const node = publish.attrs.node as string;
			void app.send(
				gone.has(node)
					? xml(
							"iq",
							{ type: "error", id: s.attrs.id, to: s.attrs.from, from: APP },
							xml(
								"error",
								{ type: "cancel" },
								xml("item-not-found", { xmlns: "urn:ietf:params:xml:ns:xmpp-stanzas" }),
							),
						)
					: xml("iq", { type: "result", id: s.attrs.id, to: s.attrs.from, from: APP }),
			);
		});
		await app.start();
	});
	after(async () => {
		for (const c of clients) c.end();
		for (const r of relays) await r.close();
		await app?.stop().catch(() => {});
		await t.stop();
	});

	async function user(name: string, resource: string, port = t.port): Promise<RawClient> {
		const c = await online(port, name, resource, { password: `pw-${name}` });
		answerPings(c);
		clients.push(c);
		return c;
	}

	const pushesTo = (node: string) =>
		published.filter((s) => s.getChild("pubsub")?.getChild("publish")?.attrs.node === node);

	test("§5, §7: an offline message is pushed with the summary and the client's secret, no body; a connected session gets no push", async () => {
		const alice = await user("alice", "phone");
		const mark = alice.received.length;
		alice.send(enable("n-offline"));
		await alice.waitFor(
			/id="en-n-offline"[^>]*type="result"|type="result"[^>]*id="en-n-offline"/,
			mark,
		);
		const bob = await user("bob", "desk");
		// Connected: delivered, no push.
		bob.send(
			"<message to='alice@localhost' type='chat' id='m0'><body>you are here</body></message>",
		);
		await alice.waitFor(/you are here/, mark);
		alice.close();
		await waitFor(() => !t.server.hosts.get("localhost")?.sessions.get("alice"), "alice offline");
		bob.send(
			"<message to='alice@localhost' type='chat' id='m1'><body>secret text</body></message>",
		);
		const push = await waitFor(() => pushesTo("n-offline")[0], "the push");
		assert.equal(push.attrs.from, "alice@localhost");
		const notification = push
			.getChild("pubsub")
			?.getChild("publish")
			?.getChild("item")
			?.getChild("notification", "urn:xmpp:push:0");
		const summary = fields(notification?.getChild("x", "jabber:x:data"));
		assert.equal(summary.FORM_TYPE, "urn:xmpp:push:summary");
		assert.equal(summary["message-count"], "1");
		assert.equal(summary["last-message-sender"], "bob@localhost");
		assert.equal(summary["last-message-body"], undefined, "no body unless include_body");
		const po = fields(push.getChild("pubsub")?.getChild("publish-options")?.getChild("x"));
		assert.equal(po.secret, "s3cr3t");
		assert.equal(pushesTo("n-offline").length, 1, "only the offline one");
	});

	test("XEP-0198: a message to a session waiting to be resumed pushes the registration that session enabled", async () => {
		const relay = await startVanishingRelay(t.port);
		relays.push(relay);
		const carol = await user("carol", "mobile", relay.port);
		let mark = carol.received.length;
		carol.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
		await carol.waitFor(/<enabled/, mark);
		mark = carol.received.length;
		carol.send(enable("n-carol"));
		await carol.waitFor(/id="en-n-carol"/, mark);
		relay.vanish();
		const session = () =>
			t.server.hosts.get("localhost")?.sessions.get("carol")?.get("mobile") as
				| C2SStream
				| undefined;
		await waitFor(() => session()?.hibernating, "carol's session to hibernate", 20_000);
		const bob = await user("bob", "desk2");
		bob.send("<message to='carol@localhost' type='chat' id='h1'><body>wake up</body></message>");
		const push = await waitFor(() => pushesTo("n-carol")[0], "the push");
		assert.equal(
			fields(
				push
					.getChild("pubsub")
					?.getChild("publish")
					?.getChild("item")
					?.getChild("notification")
					?.getChild("x"),
			)["last-message-sender"],
			"bob@localhost",
		);
	});

	test("group chat (XEP-0045) to a session waiting to be resumed: a push for a mention of its nickname in that room and for a private message, none for other lines", async () => {
		const room = `lounge@${ROOMS}`;
		const bob = await user("bob", "desk3");
		let mark = bob.received.length;
		// §10.1.2: bob creates an instant room.
		bob.send(`<presence to='${room}/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>`);
		await bob.waitFor(/status code="201"/, mark);
		await iq(
			bob,
			"cr1",
			`<iq type='set' id='cr1' to='${room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`,
		);
		const relay = await startVanishingRelay(t.port);
		relays.push(relay);
		const dave = await online(relay.port, "dave", "mobile", { host: BODIES });
		answerPings(dave);
		clients.push(dave);
		mark = dave.received.length;
		dave.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
		await dave.waitFor(/<enabled/, mark);
		mark = dave.received.length;
		dave.send(enable("n-dave"));
		await dave.waitFor(/id="en-n-dave"/, mark);
		// Joined as "Dee", then §7.6 renamed to "Davy": the nickname that counts is the last.
		mark = dave.received.length;
		dave.send(`<presence to='${room}/Dee'><x xmlns='http://jabber.org/protocol/muc'/></presence>`);
		await dave.waitFor(/status code="110"/, mark);
		mark = dave.received.length;
		dave.send(`<presence to='${room}/Davy'/>`);
		await dave.waitFor(/status code="303"/, mark);
		relay.vanish();
		const session = () =>
			t.server.hosts.get(BODIES)?.sessions.get("dave")?.get("mobile") as C2SStream | undefined;
		await waitFor(() => session()?.hibernating, "dave's session to hibernate", 20_000);
		const say = (id: string, body: string, type = "groupchat", to = room) =>
			bob.send(`<message to='${to}' type='${type}' id='${id}'><body>${body}</body></message>`);
		say("g1", "nothing for anyone");
		say("g2", "the old nick Dee is not a mention");
		say("g3", "hey davy, look at this");
		say("p1", "a private word", "chat", `${room}/Davy`);
		say("g4", "DAVY: case does not matter");
		const summary = (p: XmlElement) =>
			fields(
				p
					.getChild("pubsub")
					?.getChild("publish")
					?.getChild("item")
					?.getChild("notification")
					?.getChild("x"),
			);
		const bodies = () => pushesTo("n-dave").map((p) => summary(p)["last-message-body"]);
		// Pushes go out in the order of the messages: once the last one's is here, all are.
		await waitFor(() => bodies().includes("DAVY: case does not matter"), "the last push");
		assert.deepEqual(bodies(), [
			"hey davy, look at this",
			"a private word",
			"DAVY: case does not matter",
		]);
		for (const p of pushesTo("n-dave")) assert.equal(summary(p)["last-message-sender"], room);
	});

	test("§8: an app server that answers item-not-found ends the registration; §6 disable; `parley push` says why", async () => {
		gone.add("n-gone");
		const alice = await user("alice", "again");
		let mark = alice.received.length;
		alice.send(enable("n-gone"));
		await alice.waitFor(/id="en-n-gone"/, mark);
		alice.close();
		await waitFor(() => !t.server.hosts.get("localhost")?.sessions.get("alice"), "alice offline");
		const bob = await user("bob", "desk3");
		bob.send("<message to='alice@localhost' type='chat' id='g1'><body>anyone?</body></message>");
		await waitFor(() => pushesTo("n-gone")[0], "the push");
		const regs = t.server.hosts.get("localhost")?.map("push");
		await waitFor(
			async () => !(await regs?.get("alice", `${APP}\nn-gone`)),
			"the registration to go",
		);
		// §6: disable the remaining one (n-offline) from a new session.
		const back = await user("alice", "desk");
		mark = back.received.length;
		back.send(`<iq type='set' id='dis'><disable xmlns='urn:xmpp:push:0' jid='${APP}'/></iq>`);
		await back.waitFor(/id="dis"/, mark);
		assert.equal((await regs?.getAll("alice"))?.size, 0);
		// The diagnostics, as an operator reads them (the server's SQLite file, shared with the CLI).
		const config = join(t.dataDir, "push-cli.toml");
		writeFileSync(
			config,
			`[server]\ndata_dir = ${JSON.stringify(t.dataDir)}\n[hosts."localhost"]\n`,
		);
		const out = await new Promise<string>((resolve) => {
			const child = spawn(process.execPath, [BIN, "push", "alice@localhost", "--config", config]);
			let s = "";
			child.stdout.setEncoding("utf8").on("data", (d: string) => {
				s += d;
			});
			child.on("close", () => resolve(s));
		});
		assert.match(out, /no push registration/);
		assert.match(out, /disabled .*n-gone.*item-not-found \(cancel\)/);
		assert.match(out, /sent .*n-offline.*message from bob@localhost/);
	});
});
