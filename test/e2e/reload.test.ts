/**
 * Issue 15, "Reload and restart": `Server.reload` applies a new configuration without dropping
 * a connected session. One server, a TCP client (xmpp.js over STARTTLS) and a WebSocket client
 * (xmpp.js over wss://) that chat after every step: a host added (its users log in), a host
 * removed (its streams end with `host-gone`, RFC 6120 §4.9.3.6), a module unloaded and loaded
 * (disco and the IQ answer follow, XEP-0030 / XEP-0092), a module option changed (XEP-0157 form),
 * the certificate files replaced (new handshakes show the new certificate), log level and a
 * limit changed, a component added and removed; what cannot apply in place is reported.
 */
import assert from "node:assert/strict";
import { createHash, randomUUID, X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import tls from "node:tls";
import { xml } from "@xmpp/client";
import { generate } from "selfsigned";
import { type Config, configSchema } from "../../src/core/config/schema.ts";
import { NS_DISCO_INFO, NS_DISCO_ITEMS } from "../../src/xmpp/ns.ts";
import { RawClient } from "../helpers/raw.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { StanzaReader } from "../helpers/stanza-reader.ts";
import { trustCertificates } from "../helpers/tls.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect, type XmppConnection } from "../helpers/xmpp-client.ts";
import { login } from "../helpers/xmpp-raw-login.ts";
import { errorOf, iq, type User } from "../helpers/xmpp-user.ts";

const NS_VERSION = "jabber:iq:version";
const NS_CONTACT = "http://jabber.org/network/serverinfo";

let t: TestServer;
let certDir: string;
const files = () => ({ cert: join(certDir, "server.crt"), key: join(certDir, "server.key") });
let alice: XmppConnection;
let bob: XmppConnection;

/**
 * Writes a certificate for the test's hosts over the configured files, with a subject of its
 * own (test/helpers/tls.ts explains why), trusts it and returns its SHA-256 fingerprint.
 */
async function writeCertificate(): Promise<string> {
	const now = Date.now();
	const pems = await generate([{ name: "commonName", value: `parley reload ${randomUUID()}` }], {
		keyType: "ec",
		curve: "P-256",
		algorithm: "sha256",
		notBeforeDate: new Date(now - 3600 * 1000),
		notAfterDate: new Date(now + 365 * 24 * 3600 * 1000),
		extensions: [
			{ name: "basicConstraints", cA: false },
			{ name: "extKeyUsage", serverAuth: true, clientAuth: true },
			{
				name: "subjectAltName",
				altNames: ["localhost", "new.test", "gone.test"].map((value) => ({
					type: 2 as const,
					value,
				})),
			},
		],
	});
	writeFileSync(files().key, pems.private, { mode: 0o600 });
	writeFileSync(files().cert, pems.cert);
	trustCertificates([files().cert]);
	return new X509Certificate(pems.cert).fingerprint256;
}

/** The running configuration with `change` applied, validated as a loaded file would be. */
function changed(change: (raw: Config) => void): Config {
	const raw = structuredClone(t.server.config);
	change(raw);
	return configSchema.parse(raw);
}

const hostTable = () => configSchema.parse({ hosts: { x: {} } }).hosts.x as Config["hosts"][string];

/** A raw client logged in over STARTTLS, with a parsed view of what it receives. */
async function rawUser(user: string, host: string, password: string): Promise<User> {
	const c = await login(t.port, user, password, { host, starttls: true, resource: "raw" });
	return { c, r: new StanzaReader(c), jid: `${user}@${host}/raw`, bare: `${user}@${host}` };
}

let seq = 0;
/** Alice (TCP) and Bob (WebSocket) are still online and a message goes each way. */
async function stillChatting(): Promise<void> {
	assert.equal(alice.xmpp.status, "online", "the TCP client kept its session");
	assert.equal(bob.xmpp.status, "online", "the WebSocket client kept its session");
	for (const [from, to, toJid] of [
		[alice, bob, "bob@localhost/ws"],
		[bob, alice, "alice@localhost/tcp"],
	] as const) {
		const id = `m${++seq}`;
		await from.xmpp.send(
			xml("message", { to: toJid, type: "chat", id }, xml("body", {}, `after reload ${seq}`)),
		);
		await waitFor(
			() => to.stanzas.find((s) => s.is("message") && s.attrs.id === id),
			`message ${id} to ${toJid}`,
		);
	}
}

/** The host's disco#info features (XEP-0030 §3.1). */
async function features(u: User, host: string): Promise<string[]> {
	const answer = await iq(u, "get", host, `<query xmlns='${NS_DISCO_INFO}'/>`);
	return (
		answer
			.getChild("query", NS_DISCO_INFO)
			?.getChildren("feature")
			.map((f) => f.attrs.var ?? "") ?? []
	);
}

/** The SHA-256 fingerprint a new TLS handshake on `port` shows (SNI `servername`, or none). */
function handshakeFingerprint(port: number, servername?: string): Promise<string> {
	return new Promise((resolve, reject) => {
		const s = tls.connect(
			{ port, host: "127.0.0.1", rejectUnauthorized: false, ...(servername && { servername }) },
			() => {
				const fp = s.getPeerX509Certificate()?.fingerprint256 ?? "";
				s.destroy();
				resolve(fp);
			},
		);
		s.once("error", reject);
	});
}

/** The fingerprint a new STARTTLS negotiation on the c2s port shows (RFC 6120 §5). */
async function starttlsFingerprint(): Promise<string> {
	const c = await RawClient.connect(t.port);
	try {
		c.open("localhost");
		await c.waitFor("</stream:features>");
		const mark = c.received.length;
		c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
		await c.waitFor("<proceed", mark);
		await c.startTls("localhost");
		return (c.socket as tls.TLSSocket).getPeerX509Certificate()?.fingerprint256 ?? "";
	} finally {
		c.socket.destroy();
	}
}

let firstFingerprint = "";

before(async () => {
	certDir = mkdtempSync(join(tmpdir(), "parley-reload-certs-"));
	firstFingerprint = await writeCertificate();
	t = await startTestServer({
		config: {
			tls: files(),
			hosts: { localhost: {}, "gone.test": {} },
			// XEP-0368 for servers: a third kind of TLS listener whose certificate a reload replaces.
			listeners: { s2s_direct_tls: { enabled: true, address: "127.0.0.1", port: 0 } },
		},
		users: [
			["alice@localhost", "alice-pw"],
			["bob@localhost", "bob-pw"],
			["erin@localhost", "erin-pw"],
			["dave@gone.test", "dave-pw"],
		],
	});
	alice = await connect(`xmpp://127.0.0.1:${t.port}`, "alice", "alice-pw", { resource: "tcp" });
	bob = await connect(`wss://localhost:${t.httpsPort}/xmpp-websocket`, "bob", "bob-pw", {
		resource: "ws",
	});
	await stillChatting();
});

after(async () => {
	await alice?.xmpp.stop();
	await bob?.xmpp.stop();
	await t.stop();
	rmSync(certDir, { recursive: true, force: true });
});

test("a host added by a reload: its users log in and reach the others; nobody is disconnected", async () => {
	await assert.rejects(
		login(t.port, "carol", "carol-pw", { host: "new.test", starttls: true }),
		/host-unknown/,
		"RFC 6120 §4.9.3.6: not served before the reload",
	);
	const report = await t.server.reload(
		changed((c) => {
			c.hosts["new.test"] = hostTable();
		}),
	);
	assert.deepEqual(report, { applied: ["hosts.new.test"], restartNeeded: [] });
	await t.server.hosts.get("new.test")?.accounts.create("carol", "carol-pw");
	const carol = await rawUser("carol", "new.test", "carol-pw");
	try {
		const mark = alice.stanzas.length;
		carol.c.send(
			"<message to='alice@localhost/tcp' type='chat' id='from-carol'><body>hi</body></message>",
		);
		const got = await waitFor(
			() => alice.stanzas.slice(mark).find((s) => s.attrs.id === "from-carol"),
			"carol's message",
		);
		assert.equal(got.attrs.from, "carol@new.test/raw", "RFC 6120 §8.1.2.1: stamped by the server");
		await stillChatting();
	} finally {
		carol.c.end();
	}
});

test("a host removed by a reload: its streams end with host-gone, its users can no longer log in, the others chat on", async () => {
	const dave = await login(t.port, "dave", "dave-pw", { host: "gone.test", starttls: true });
	const report = await t.server.reload(
		changed((c) => {
			delete c.hosts["gone.test"];
		}),
	);
	assert.deepEqual(report, { applied: ["hosts.gone.test"], restartNeeded: [] });
	// RFC 6120 §4.9.3.6 host-gone: "no longer serviced by the receiving entity".
	await dave.waitFor(/<stream:error><host-gone xmlns=['"]urn:ietf:params:xml:ns:xmpp-streams['"]/);
	await waitFor(() => dave.closed, "dave's connection to close");
	assert.equal(t.server.hosts.has("gone.test"), false);
	await assert.rejects(
		login(t.port, "dave", "dave-pw", { host: "gone.test", starttls: true }),
		/host-unknown/,
	);
	await stillChatting();
});

test("a module removed from a host's list and added back: disco and the IQ answer follow (XEP-0030, XEP-0092)", async () => {
	const erin = await rawUser("erin", "localhost", "erin-pw");
	try {
		assert.ok((await features(erin, "localhost")).includes(NS_VERSION));
		const without = await t.server.reload(
			changed((c) => {
				const h = c.hosts.localhost as Config["hosts"][string];
				h.modules = h.modules.filter((m) => m !== "version");
			}),
		);
		assert.deepEqual(without, { applied: ["hosts.localhost.modules"], restartNeeded: [] });
		assert.ok(!(await features(erin, "localhost")).includes(NS_VERSION));
		const refused = await iq(erin, "get", "localhost", `<query xmlns='${NS_VERSION}'/>`);
		assert.equal(refused.attrs.type, "error");
		// RFC 6120 §8.3.3.19: an IQ nobody serves.
		assert.equal(errorOf(refused).condition, "service-unavailable");

		await t.server.reload(
			changed((c) => {
				(c.hosts.localhost as Config["hosts"][string]).modules.push("version");
			}),
		);
		assert.ok((await features(erin, "localhost")).includes(NS_VERSION));
		const answer = await iq(erin, "get", "localhost", `<query xmlns='${NS_VERSION}'/>`);
		assert.equal(answer.attrs.type, "result");
		assert.ok(answer.getChild("query", NS_VERSION)?.getChild("name"));
		await stillChatting();
	} finally {
		erin.c.end();
	}
});

test("a module's options changed: the module is loaded again with them (XEP-0157 form in disco#info)", async () => {
	const erin = await rawUser("erin", "localhost", "erin-pw");
	const addresses = async () => {
		const answer = await iq(erin, "get", "localhost", `<query xmlns='${NS_DISCO_INFO}'/>`);
		const form = answer
			.getChild("query", NS_DISCO_INFO)
			?.getChildren("x", "jabber:x:data")
			.find((x) =>
				x
					.getChildren("field")
					.some((f) => f.attrs.var === "FORM_TYPE" && f.getChildText("value") === NS_CONTACT),
			);
		return (
			form
				?.getChildren("field")
				.find((f) => f.attrs.var === "admin-addresses")
				?.getChildren("value")
				.map((v) => v.text()) ?? []
		);
	};
	try {
		assert.deepEqual(await addresses(), []);
		const report = await t.server.reload(
			changed((c) => {
				(c.hosts.localhost as Config["hosts"][string]).module_options.contact_info = {
					admin: ["mailto:admin@localhost"],
				};
			}),
		);
		assert.deepEqual(report, {
			applied: ["hosts.localhost.module_options.contact_info"],
			restartNeeded: [],
		});
		assert.deepEqual(await addresses(), ["mailto:admin@localhost"]);
		await stillChatting();
	} finally {
		erin.c.end();
	}
});

test("module options a module refuses: the reload fails and changes nothing", async () => {
	const before = t.server.config;
	await assert.rejects(
		t.server.reload(
			changed((c) => {
				(c.hosts.localhost as Config["hosts"][string]).module_options.contact_info = {
					admin: ["not a uri"],
				};
				c.log.level = "debug";
			}),
		),
		/hosts\."localhost"\.module_options\.contact_info: admin\.0: must be a URI/,
	);
	assert.equal(t.server.config, before);
	assert.notEqual(t.server.log.level, "debug");
	await stillChatting();
});

test("certificate files replaced in place: new handshakes (direct TLS, STARTTLS, HTTPS, with and without SNI) show the new certificate", async () => {
	assert.equal(await handshakeFingerprint(t.tlsPort, "localhost"), firstFingerprint);
	const renewed = await writeCertificate();
	assert.notEqual(renewed, firstFingerprint);
	// The same configuration: only the files changed (a renewal).
	const report = await t.server.reload(changed(() => {}));
	assert.deepEqual(report, { applied: ["certificates"], restartNeeded: [] });
	assert.equal(await handshakeFingerprint(t.tlsPort, "localhost"), renewed);
	assert.equal(await handshakeFingerprint(t.tlsPort), renewed, "without SNI: the default one");
	assert.equal(await handshakeFingerprint(t.httpsPort, "localhost"), renewed);
	assert.equal(await handshakeFingerprint(t.httpsPort), renewed);
	const s2sPort = t.server.port("s2s_direct_tls");
	assert.equal(await handshakeFingerprint(s2sPort, "localhost"), renewed);
	assert.equal(await handshakeFingerprint(s2sPort), renewed);
	assert.equal(await starttlsFingerprint(), renewed);
	// The clients' TLS sessions are the ones they had.
	await stillChatting();
	// A reload that finds nothing new says so.
	assert.deepEqual(await t.server.reload(changed(() => {})), { applied: [], restartNeeded: [] });
});

test("a certificate file that does not load: the reload fails and the old certificate stays", async () => {
	const current = await handshakeFingerprint(t.tlsPort, "localhost");
	const broken = join(certDir, "broken.crt");
	writeFileSync(broken, "not a certificate");
	await assert.rejects(
		t.server.reload(
			changed((c) => {
				c.tls.cert = broken;
			}),
		),
		/broken\.crt is not a PEM certificate/,
	);
	assert.equal(await handshakeFingerprint(t.tlsPort, "localhost"), current);
	await stillChatting();
});

test("the server's name changes in place: the host's server/im identity shows it (XEP-0030 §3.1)", async () => {
	const erin = await rawUser("erin", "localhost", "erin-pw");
	const identity = async () =>
		(await iq(erin, "get", "localhost", `<query xmlns='${NS_DISCO_INFO}'/>`))
			.getChild("query", NS_DISCO_INFO)
			?.getChildren("identity")
			.find((i) => i.attrs.category === "server")?.attrs.name;
	try {
		assert.equal(await identity(), "Parley");
		const report = await t.server.reload(
			changed((c) => {
				c.server.name = "Renamed";
			}),
		);
		assert.deepEqual(report, { applied: ["server.name"], restartNeeded: [] });
		assert.equal(await identity(), "Renamed");
	} finally {
		erin.c.end();
	}
});

test("log level and connection limit change in place: a new connection over the new limit is refused", async () => {
	const report = await t.server.reload(
		changed((c) => {
			c.log.level = "fatal";
			c.limits.connections_per_ip = 2;
			c.limits.exempt_ips = [];
		}),
	);
	assert.deepEqual(report, {
		applied: ["log.level", "limits.connections_per_ip", "limits.exempt_ips"],
		restartNeeded: [],
	});
	assert.equal(t.server.log.level, "fatal");
	// Loopback is no longer exempt, so connections from now on count (Alice's and Bob's, made
	// while it was, do not): two more are accepted, a third is closed at once.
	const held = [await RawClient.connect(t.port), await RawClient.connect(t.port)];
	for (const c of held) {
		c.open();
		await c.waitFor("</stream:features>");
	}
	const third = await RawClient.connect(t.port);
	await waitFor(() => third.closed, "the connection over the limit to be closed");
	assert.equal(third.received, "");
	for (const c of held) c.end();
	await stillChatting();
	await t.server.reload(
		changed((c) => {
			c.log.level = "silent";
			c.limits.connections_per_ip = 32;
			c.limits.exempt_ips = ["127.0.0.1", "::1"];
		}),
	);
	const fourth = await login(t.port, "erin", "erin-pw", { starttls: true });
	fourth.end();
});

test("a component added and removed: the parent host's disco#items follow, the service answers then is gone", async () => {
	const erin = await rawUser("erin", "localhost", "erin-pw");
	const items = async () =>
		(await iq(erin, "get", "localhost", `<query xmlns='${NS_DISCO_ITEMS}'/>`))
			.getChild("query", NS_DISCO_ITEMS)
			?.getChildren("item")
			.map((i) => i.attrs.jid) ?? [];
	try {
		assert.deepEqual(await items(), []);
		const added = await t.server.reload(
			changed((c) => {
				c.components["rooms.localhost"] = configSchema.parse({
					components: { "rooms.localhost": { type: "muc" } },
				}).components["rooms.localhost"] as Config["components"][string];
			}),
		);
		assert.deepEqual(added, { applied: ["components.rooms.localhost"], restartNeeded: [] });
		assert.deepEqual(await items(), ["rooms.localhost"]);
		const info = await iq(erin, "get", "rooms.localhost", `<query xmlns='${NS_DISCO_INFO}'/>`);
		assert.equal(
			info.getChild("query", NS_DISCO_INFO)?.getChild("identity")?.attrs.category,
			"conference",
		);
		const removed = await t.server.reload(
			changed((c) => {
				delete c.components["rooms.localhost"];
			}),
		);
		assert.deepEqual(removed, { applied: ["components.rooms.localhost"], restartNeeded: [] });
		assert.deepEqual(await items(), []);
		const gone = await iq(erin, "get", "rooms.localhost", `<query xmlns='${NS_DISCO_INFO}'/>`);
		assert.equal(gone.attrs.type, "error");
		await stillChatting();
	} finally {
		erin.c.end();
	}
});

test("what cannot change in place is reported as needing a restart, and the listeners stay as they are", async () => {
	const report = await t.server.reload(
		changed((c) => {
			c.listeners.c2s.port = 1;
			c.storage.path = "elsewhere.sqlite";
			c.auth.scram_iterations = 8192;
		}),
	);
	assert.deepEqual(report.applied, []);
	assert.deepEqual(report.restartNeeded.sort(), [
		"auth.scram_iterations",
		"listeners.c2s",
		"storage.path",
	]);
	assert.notEqual(t.server.port("c2s"), 1);
	await stillChatting();
});

test("every built-in module's unload removes what its load registered (handlers, features, identities, forms)", async () => {
	const report = await t.server.reload(
		changed((c) => {
			c.hosts["empty.test"] = { ...hostTable(), modules: [] };
		}),
	);
	assert.deepEqual(report.applied, ["hosts.empty.test"]);
	const host = t.server.hosts.get("empty.test");
	assert.ok(host);
	const blank = {
		handlers: host.events.size,
		features: [...host.features],
		accountFeatures: [...host.accountFeatures],
		identities: structuredClone(host.identities),
		accountIdentities: structuredClone(host.accountIdentities),
		extensions: host.extensions.length,
	};
	const hostModules = [
		"disco",
		"ping",
		"presence",
		"roster",
		"shared_roster",
		"time",
		"version",
		"vcard",
		"private",
		"last",
		"contact_info",
		"caps",
		"register",
		"motd",
		"external_services",
		"offline",
		"carbons",
		"blocking",
		"mam",
		"pep",
		"push",
	];
	for (const m of hostModules) await host.modules.load(m);
	assert.deepEqual(host.modules.loaded, hostModules);
	assert.ok(host.events.size > 50);
	await host.modules.unloadAll();
	assert.deepEqual(
		{
			handlers: host.events.size,
			features: [...host.features],
			accountFeatures: [...host.accountFeatures],
			identities: structuredClone(host.identities),
			accountIdentities: structuredClone(host.accountIdentities),
			extensions: host.extensions.length,
		},
		blank,
	);
	// A MUC service hooks every host's bus (a session that ends leaves its rooms): its unload
	// takes those handlers away too, including those on a host a reload added after it.
	const localhost = t.server.hosts.get("localhost");
	assert.ok(localhost);
	const onLocalhost = localhost.events.size;
	await t.server.reload(
		changed((c) => {
			c.components["muc.test"] = configSchema.parse({
				components: { "muc.test": { type: "muc" } },
			}).components["muc.test"] as Config["components"][string];
		}),
	);
	await t.server.reload(
		changed((c) => {
			c.hosts["later.test"] = { ...hostTable(), modules: [] };
		}),
	);
	const later = t.server.hosts.get("later.test");
	assert.ok(later);
	// The core's own handler (cluster/sm-abandon) is there on every host, modules or not.
	assert.equal(
		later.events.size,
		blank.handlers + 2,
		"session/closed and session/remote-closed for the MUC",
	);
	await t.server.reload(
		changed((c) => {
			delete c.components["muc.test"];
		}),
	);
	assert.equal(later.events.size, blank.handlers);
	assert.equal(localhost.events.size, onLocalhost);
});

test("reloads one after another while messages flow: none is lost, none is reordered, the last configuration is in force", async () => {
	const n = 200;
	const first = `burst-${Date.now()}-`;
	const sending = (async () => {
		for (let i = 0; i < n; i++)
			await alice.xmpp.send(
				xml(
					"message",
					{ to: "bob@localhost/ws", type: "chat", id: `${first}${i}` },
					xml("body", {}, `${i}`),
				),
			);
	})();
	const withHost = changed((c) => {
		c.hosts["burst.test"] = hostTable();
	});
	const withOptions = changed((c) => {
		(c.hosts.localhost as Config["hosts"][string]).module_options.contact_info = {
			admin: ["mailto:burst@localhost"],
		};
	});
	// Asked for at once: they run one at a time, in the order asked.
	const [a, b] = await Promise.all([t.server.reload(withHost), t.server.reload(withOptions)]);
	await sending;
	assert.deepEqual(a.applied, ["hosts.burst.test"]);
	assert.deepEqual(b.applied.sort(), [
		"hosts.burst.test",
		"hosts.localhost.module_options.contact_info",
	]);
	assert.equal(t.server.config, withOptions);
	assert.equal(t.server.hosts.has("burst.test"), false, "the second file has no burst.test");
	const got = await waitFor(() => {
		const ids = bob.stanzas
			.filter((s) => s.is("message") && s.attrs.id?.startsWith(first))
			.map((s) => Number(s.attrs.id?.slice(first.length)));
		return ids.length >= n && ids;
	}, "every message of the burst");
	assert.deepEqual(got, [...Array(n).keys()]);
	await stillChatting();
});

test("stop while a reload is under way: the reload finishes, then everything stops; later reloads are refused", async () => {
	const other = await startTestServer();
	const next = structuredClone(other.server.config);
	next.hosts["late.test"] = hostTable();
	next.components["rooms.late.test"] = configSchema.parse({
		components: { "rooms.late.test": { type: "muc" } },
	}).components["rooms.late.test"] as Config["components"][string];
	const reloading = other.server.reload(configSchema.parse(next));
	const stopping = other.stop();
	const report = await reloading;
	await stopping;
	// The self-signed certificate is made again to name the new host too (as at start).
	assert.deepEqual(report.applied, [
		"hosts.late.test",
		"components.rooms.late.test",
		"certificates",
	]);
	assert.equal(other.server.hosts.size, 0);
	assert.equal(other.server.components.size, 0);
	await assert.rejects(other.server.reload(next), /cannot reload a server that is stopped/);
});

test("an external component (XEP-0114) changed then removed: restarted with system-shutdown, then host-gone, then host-unknown", async () => {
	const secret = "gw-secret";
	const other = await startTestServer({
		config: { components: { "gw.localhost": { type: "external", secret } } },
	});
	const connectComponent = async () => {
		const c = await RawClient.connect(other.componentPort);
		c.send(
			"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='gw.localhost'>",
		);
		const header = await c.waitFor(/<stream:stream[^>]*>/);
		const id = /id='([^']+)'/.exec(header)?.[1] ?? "";
		const mark = c.received.length;
		c.send(
			`<handshake>${createHash("sha1")
				.update(id + secret)
				.digest("hex")}</handshake>`,
		);
		await c.waitFor(/<handshake\/>|<stream:error>/, mark);
		return c;
	};
	const reconfigured = (change: (raw: Config) => void) => {
		const raw = structuredClone(other.server.config);
		change(raw);
		return configSchema.parse(raw);
	};
	try {
		const first = await connectComponent();
		assert.match(first.received, /<handshake\/>/);
		const renamed = await other.server.reload(
			reconfigured((c) => {
				const gw = c.components["gw.localhost"];
				if (gw?.type === "external") gw.name = "Gateway";
			}),
		);
		assert.deepEqual(renamed.applied, ["components.gw.localhost"]);
		// Its service started again: the link it had ends (RFC 6120 §4.9.3.22), a new one works.
		await first.waitFor(/<system-shutdown /);
		const second = await connectComponent();
		assert.match(second.received, /<handshake\/>/);
		const removed = await other.server.reload(
			reconfigured((c) => {
				delete c.components["gw.localhost"];
			}),
		);
		assert.deepEqual(removed.applied, ["components.gw.localhost"]);
		// RFC 6120 §4.9.3.6, then §4.9.3.7 for a domain that is not served (XEP-0114 §3).
		await second.waitFor(/<host-gone /);
		const third = await RawClient.connect(other.componentPort);
		third.send(
			"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='gw.localhost'>",
		);
		await third.waitFor(/<host-unknown /);
	} finally {
		await other.stop();
	}
});
