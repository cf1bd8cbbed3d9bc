/**
 * Issue 15, "Reload and restart" through the admin API while clients chat: a TCP client (xmpp.js
 * over STARTTLS) and a WebSocket client (xmpp.js over wss://) send each other messages without
 * pause while `POST /lifecycle/reload` applies a good configuration (a host added, the log
 * level changed), then a bad one (the API goes `running_misconfigured` with the file, line and
 * key in `/status`; XMPP runs on the old configuration), then the fixed one (`running`). No
 * session drops, every message arrives. A restart afterwards is a new Server instance.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { xml } from "@xmpp/client";
import { type AdminHarness, baseToml, startAdmin } from "../helpers/admin.ts";
import { trustServerCertificates } from "../helpers/tls.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect, type XmppConnection } from "../helpers/xmpp-client.ts";

let h: AdminHarness;
let token: string;
let alice: XmppConnection;
let bob: XmppConnection;
const dropped: string[] = [];

before(async () => {
	h = await startAdmin();
	assert.equal(
		(
			await h.request("PUT", "/init/first-account", {
				body: { jid: "root@localhost", password: "root-pw" },
			})
		).status,
		201,
	);
	token = await h.token("root@localhost", "root-pw");
	for (const [jid, password] of [
		["alice@localhost", "alice-pw"],
		["bob@localhost", "bob-pw"],
	])
		assert.equal(
			(await h.request("POST", "/users", { token, body: { jid, password } })).status,
			201,
		);
	const server = h.supervisor.server;
	assert.ok(server);
	trustServerCertificates(server);
	alice = await connect(`xmpp://127.0.0.1:${server.port("c2s")}`, "alice", "alice-pw", {
		resource: "tcp",
	});
	bob = await connect(`wss://localhost:${server.port("https")}/xmpp-websocket`, "bob", "bob-pw", {
		resource: "ws",
	});
	for (const [name, c] of [
		["alice", alice],
		["bob", bob],
	] as const)
		c.xmpp.on("offline", () => dropped.push(name));
});

after(async () => {
	await alice?.xmpp.stop().catch(() => undefined);
	await bob?.xmpp.stop().catch(() => undefined);
	await h?.close();
});

test("reload good -> bad -> fixed while two clients chat: no session dropped, no message lost", async () => {
	let running = true;
	let sent = 0;
	// Both directions, one message after another, until the reloads are done.
	const chat = (async () => {
		while (running) {
			const n = sent++;
			const [from, to] = n % 2 === 0 ? [alice, bob] : [bob, alice];
			await from.xmpp.send(
				xml("message", { to: to.jid, type: "chat", id: `m${n}` }, xml("body", {}, `hello ${n}`)),
			);
			await new Promise((r) => setImmediate(r));
		}
	})();
	const waitSent = async (n: number) => waitFor(() => sent >= n, `${n} messages sent`);

	await waitSent(20);
	// Good: a host added, the log level changed.
	h.write('[hosts."second.example"]\n');
	const good = await h.request("POST", "/lifecycle/reload", { token });
	assert.equal(good.status, 200, JSON.stringify(good.body));
	assert.equal(good.body.state, "running");
	assert.ok(
		(good.body.applied as string[]).includes("hosts.second.example"),
		JSON.stringify(good.body),
	);
	assert.ok(h.supervisor.server?.hosts.has("second.example"));

	await waitSent(sent + 20);
	// Bad: the file does not validate; XMPP runs on, the API says what is wrong and where.
	h.write('[hosts."second.example"]\n[limits]\nstanza_size = "big"\n');
	const bad = await h.request("POST", "/lifecycle/reload", { token });
	assert.equal(bad.status, 422, JSON.stringify(bad.body));
	assert.equal(bad.body.code, "config_invalid");
	const status = await h.request("GET", "/status");
	assert.equal(status.body.state, "running_misconfigured");
	const line = baseToml(h.dir).split("\n").length + 2;
	assert.deepEqual(status.body.configErrors, [
		{
			file: h.config,
			line,
			key: "limits.stanza_size",
			message: 'limits.stanza_size: expected an integer >= 1024, got "big"',
		},
	]);
	assert.equal((await h.request("GET", "/health")).status, 200, "XMPP still serves");
	assert.ok(h.supervisor.server?.hosts.has("second.example"), "the last good configuration holds");
	// Commands still work on the running server.
	assert.equal((await h.request("GET", "/sessions", { token })).status, 200);

	await waitSent(sent + 20);
	// Fixed: back to running.
	h.write('[hosts."second.example"]\n[limits]\nstanza_size = 300000\n');
	const fixed = await h.request("POST", "/lifecycle/reload", { token });
	assert.equal(fixed.status, 200, JSON.stringify(fixed.body));
	assert.equal(fixed.body.state, "running");
	assert.deepEqual((await h.request("GET", "/status")).body.configErrors, []);

	await waitSent(sent + 20);
	running = false;
	await chat;
	const total = sent;
	const received = (c: XmppConnection) =>
		new Set(c.stanzas.filter((s) => s.is("message")).map((s) => s.attrs.id as string));
	await waitFor(
		() => received(alice).size + received(bob).size >= total,
		`all ${total} messages delivered`,
	);
	for (let n = 0; n < total; n++)
		assert.ok((n % 2 === 0 ? received(bob) : received(alice)).has(`m${n}`), `m${n} lost`);
	assert.deepEqual(dropped, [], "no session dropped");
	assert.equal(alice.xmpp.status, "online");
	assert.equal(bob.xmpp.status, "online");
	// The audit log has the three reloads with their results.
	const reloads = h.lines.filter((l) => l.audit === true && l.action === "lifecycle.reload");
	assert.deepEqual(
		reloads.map((l) => l.status),
		[200, 422, 200],
	);
});

test("POST /lifecycle/restart: a new Server instance in this process, accounts kept", async () => {
	const before = h.supervisor.server;
	const r = await h.request("POST", "/lifecycle/restart", { token });
	assert.equal(r.status, 200, JSON.stringify(r.body));
	assert.equal(r.body.state, "running");
	const after = h.supervisor.server;
	assert.ok(after && after !== before, "a new instance");
	assert.equal(before?.state, "stopped");
	const users = await h.request("GET", "/users?host=localhost", { token });
	assert.equal(users.status, 200, "the token, in storage, survives the restart");
	assert.equal((users.body.users as unknown[]).length, 3);
});
