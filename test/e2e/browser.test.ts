/**
 * Issue 5, "proven in a real browser": Converse.js (the npm package's own dist build, served from
 * this process) runs in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
 * and logs in to Parley over WebSocket (RFC 7395) and over BOSH (XEP-0124/XEP-0206). alice types a
 * message into Converse's chat box; bob, an xmpp.js client over direct TLS, receives it and
 * replies; the reply must show up in Converse's chat view. A guest does the same in Converse's
 * anonymous mode (`authentication: 'anonymous'`, the guest domain as `jid`; issue 20).
 *
 * The page is served from another origin than Parley's HTTP listener, and Parley allows exactly
 * that origin (`http.cors_origins`): the browser's CORS preflight (BOSH) and Origin header
 * (WebSocket) go through the real checks. Any request to a host other than 127.0.0.1 is refused
 * and fails the test: the client must work with no network.
 *
 * Skips when Chromium is missing (CI installs it: .ci/run). A screenshot and Converse's console
 * log of each run are written to this file's own temporary directory, removed at the end when
 * every test passed; after a failure it is kept and its path printed, to look at what happened.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Browser } from "playwright-core";
import {
	launchChromium,
	refuseNetwork,
	skipWithoutChromium as skip,
	startStaticServer,
} from "../helpers/converse.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect } from "../helpers/xmpp-client.ts";

const GUEST = "guest.localhost";

/** Safety net for each wait; a healthy run needs a few seconds in all. */
const TIMEOUT = 20_000;

/** What harness.js puts on `window`; only ever touched inside page.evaluate. */
interface Harness {
	connected: boolean;
	api: {
		user: { jid(): string; logout(): Promise<unknown> };
		connection: { isType(type: string): boolean };
		bookmarks: { set(attrs: object): Promise<unknown> };
		chats: {
			open(jid: string, attrs?: object, force?: boolean): Promise<unknown>;
			get(jid: string): Promise<{
				messages: { findWhere(q: object): { get(k: string): unknown } | undefined };
			} | null>;
		};
	};
}
/** The page's global object (the project's tsconfig has no DOM lib). */
type PageGlobal = { parley: Harness };

/** bob: xmpp.js over direct TLS, collecting every stanza. */
async function startBob(t: TestServer) {
	const { xmpp, jid, stanzas } = await connect(
		`xmpps://localhost:${t.tlsPort}`,
		"bob",
		"bob-secret",
		{
			resource: "desk",
			// xmpp.js gives up on the stream opening after 2 s, too short on a busy CI machine with a
			// browser running.
			timeout: TIMEOUT,
		},
	);
	const write = (xmpp as unknown as { write(s: string): Promise<void> }).write.bind(xmpp);
	await write("<presence xmlns='jabber:client'/>");
	return { jid, stanzas, write, stop: () => xmpp.stop() };
}

describe("Converse.js in headless Chromium (issue 5)", { skip }, () => {
	let t: TestServer;
	let site: http.Server;
	let siteOrigin: string;
	let browser: Browser;
	const missing: string[] = [];
	/** Screenshots and console logs of this run. */
	let outDir: string;
	let failed = false;

	before(async () => {
		outDir = mkdtempSync(join(tmpdir(), "parley-converse-"));
		site = await startStaticServer(missing);
		siteOrigin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
		t = await startTestServer({
			users: [
				["alice@localhost", "alice-secret"],
				["bob@localhost", "bob-secret"],
			],
			config: {
				// ws:// and http:// on loopback, as behind a TLS-terminating proxy but without one:
				// SASL must then be SCRAM (PLAIN stays TLS-only, the default).
				auth: { require_encryption: false },
				// Only the page's origin: the browser's CORS preflight and WebSocket Origin are checked.
				http: { cors_origins: [siteOrigin] },
				// Guest access (issue 20): Converse's anonymous mode logs in here.
				hosts: { localhost: {}, [GUEST]: { authentication: "anonymous" } },
			},
		});
		browser = await launchChromium(TIMEOUT);
	});

	after(async () => {
		await browser?.close();
		await t?.stop();
		site?.close();
		if (!outDir) return;
		if (failed) console.log(`# converse: screenshots and console logs kept in ${outDir}`);
		else rmSync(outDir, { recursive: true, force: true });
	});

	test("alice reloads the page: Converse resumes her session over WebSocket (XEP-0198) and goes on chatting", async () => {
		const endpoint = `ws://127.0.0.1:${t.httpPort}/xmpp-websocket`;
		const context = await browser.newContext();
		const { external } = await refuseNetwork(context);
		const page = await context.newPage();
		const frames: string[] = [];
		page.on("websocket", (ws) => {
			ws.on("framesent", (f) => frames.push(`-> ${String(f.payload)}`));
			ws.on("framereceived", (f) => frames.push(`<- ${String(f.payload)}`));
		});
		let bob: Awaited<ReturnType<typeof startBob>> | undefined;
		try {
			bob = await startBob(t);
			const query = new URLSearchParams({
				transport: "websocket",
				url: endpoint,
				jid: "alice@localhost",
				password: "alice-secret",
			});
			await page.goto(`${siteOrigin}/?${query}`, { timeout: TIMEOUT });
			const connected = async () => {
				const h = await page.evaluateHandle(() => (globalThis as unknown as PageGlobal).parley);
				await page.waitForFunction((p) => p.connected, h, { timeout: TIMEOUT });
				return h;
			};
			const first = await (await connected()).evaluate((p) => p.api.user.jid());
			const resource = first.split("/")[1] as string;
			const sessions = t.server.hosts.get("localhost")?.sessions;
			await page.reload({ timeout: TIMEOUT });
			const h = await connected();
			assert.ok(
				frames.some((f) => f.startsWith("<- <resumed ")),
				"Converse resumed the session it kept in sessionStorage",
			);
			// Converse picks a new resource after the reload and writes it into 'from'; the server
			// overrides it (RFC 6120 §8.1.2.1) instead of ending the stream with invalid-from.
			// page.evaluate has no timeout of its own: on a closed stream the promise never settles.
			let timer: NodeJS.Timeout | undefined;
			await Promise.race([
				h.evaluate(async (p, jid) => {
					await p.api.chats.open(jid, {}, true);
				}, "bob@localhost"),
				new Promise((_, reject) => {
					timer = setTimeout(() => reject(new Error("Converse never opened the chat")), TIMEOUT);
				}),
			]).finally(() => clearTimeout(timer));
			const textarea = page.locator("textarea.chat-textarea");
			await textarea.waitFor({ state: "visible", timeout: TIMEOUT });
			await textarea.fill("still here after the reload");
			await textarea.press("Enter");
			const m = await waitFor(
				() =>
					bob?.stanzas.find(
						(s) => s.is("message") && s.getChildText("body") === "still here after the reload",
					),
				"bob to receive what alice typed after the reload",
				TIMEOUT,
			);
			assert.equal(m.attrs.from, first, "the resumed session's full JID");
			assert.deepEqual([...(sessions?.get("alice")?.keys() ?? [])], [resource]);
			assert.deepEqual(
				frames.filter((f) => f.includes("<stream:error")),
				[],
				"no stream error",
			);
			await h.evaluate(async (p) => {
				await p.api.user.logout();
			});
			assert.deepEqual(external, [], "no request left 127.0.0.1");
		} catch (err) {
			failed = true;
			writeFileSync(join(outDir, "reload-websocket.log"), `${frames.join("\n")}\n`);
			throw err;
		} finally {
			await context.close();
			await bob?.stop();
		}
	});

	const runs = [
		["websocket", "alice"],
		["bosh", "alice"],
		["websocket", "guest"],
	] as const;
	for (const [transport, who] of runs) {
		const guest = who === "guest";
		const name = guest
			? `a guest in Converse's anonymous mode over ${transport} chats with bob (XEP-0175, RFC 4505)`
			: `alice in Converse over ${transport} chats with bob`;
		test(name, async () => {
			const path = transport === "websocket" ? "/xmpp-websocket" : "/http-bind";
			const endpoint = `${transport === "websocket" ? "ws" : "http"}://127.0.0.1:${t.httpPort}${path}`;
			missing.length = 0;
			const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
			// No network: anything not on loopback is refused and remembered (images apart: the
			// login page's sponsor logos).
			const { external, images } = await refuseNetwork(context);
			const page = await context.newPage();
			const log: string[] = [];
			const t0 = Date.now();
			/** Steps in the console log, with the time since the test started (for reading only). */
			const step = (what: string) => log.push(`[test] +${Date.now() - t0} ms: ${what}`);
			page.on("console", (m) => log.push(`[${m.type()}] ${m.text()}`));
			page.on("pageerror", (e) => log.push(`[pageerror] ${e.stack ?? e.message}`));
			// What actually went over the wire, per transport.
			const sockets: string[] = [];
			const frames: string[] = [];
			page.on("websocket", (ws) => {
				sockets.push(ws.url());
				ws.on("framesent", (f) => frames.push(String(f.payload)));
			});
			const boshBodies: string[] = [];
			page.on("request", (r) => {
				if (r.method() === "POST" && r.url() === endpoint) boshBodies.push(r.postData() ?? "");
			});
			const logFile = join(outDir, `${who}-${transport}.log`);
			const shot = join(outDir, `${who}-${transport}.png`);
			let bob: Awaited<ReturnType<typeof startBob>> | undefined;
			try {
				bob = await startBob(t);
				const toBob = bob.stanzas;
				const query = new URLSearchParams(
					guest
						? // Converse's anonymous mode: the domain as jid, no password.
							{ transport, url: endpoint, jid: GUEST, authentication: "anonymous" }
						: { transport, url: endpoint, jid: "alice@localhost", password: "alice-secret" },
				);
				step("loading the page");
				await page.goto(`${siteOrigin}/?${query}`, { timeout: TIMEOUT });
				// harness.js sets window.parley synchronously, before Converse starts.
				const h = await page.evaluateHandle(() => (globalThis as unknown as PageGlobal).parley);
				await page.waitForFunction((p) => p.connected, h, { timeout: TIMEOUT });
				step("Converse is connected");
				const aliceJid = await h.evaluate((p) => p.api.user.jid());
				// RFC 6120 §7: a bound resource; a guest's local part is the server's choice.
				const bound = (
					guest ? /^([0-9a-f]{32})@guest\.localhost\/(.+)$/ : /^(alice)@localhost\/(.+)$/
				).exec(aliceJid);
				assert.ok(bound, `Converse bound a resource: ${aliceJid}`);
				const [, local, resource] = bound as unknown as [string, string, string];
				const sessions = t.server.hosts.get(guest ? GUEST : "localhost")?.sessions;
				assert.ok(sessions?.get(local)?.get(resource), "the server has the bound session");
				assert.equal(
					await h.evaluate((p, k) => p.api.connection.isType(k), transport),
					true,
					`Converse is connected over ${transport}`,
				);

				// The login went over the transport under test, with SCRAM (no PLAIN without TLS).
				const wire = transport === "websocket" ? frames : boshBodies;
				if (transport === "websocket") {
					assert.deepEqual(sockets, [endpoint], "one WebSocket, to Parley's endpoint");
					assert.equal(boshBodies.length, 0, "no BOSH request");
				} else {
					assert.equal(sockets.length, 0, "no WebSocket");
					assert.ok(boshBodies.length >= 3, "BOSH requests: session, auth, bind...");
				}
				const auth = wire.find((s) => s.includes("<auth "));
				assert.ok(auth, "Converse sent SASL <auth/>");
				if (guest) assert.match(auth, /mechanism=["']ANONYMOUS["']/, "the guest host's only one");
				else assert.match(auth, /mechanism=["']SCRAM-SHA-(1|256|512)["']/, "SCRAM over plain HTTP");

				if (!guest && transport === "websocket") {
					// XEP-0402: Converse sees `urn:xmpp:bookmarks:1#compat` on the account and
					// publishes a bookmark as a Bookmarks 2 item; the server keeps XEP-0048's copy in
					// private XML in step (§5.3), for clients that still read that.
					step("bookmarking a room");
					await h.evaluate(async (p) => {
						await p.api.bookmarks.set({
							jid: "den@conference.localhost",
							name: "The den",
							autojoin: false,
							nick: "alice",
						});
					});
					const pep = await waitFor(
						() =>
							t.server.hosts
								.get("localhost")
								?.keyval("pep")
								.get("alice")
								.then((v) =>
									JSON.stringify(v ?? null).includes("urn:xmpp:bookmarks:1") ? v : undefined,
								),
						"Converse's Bookmarks 2 node",
						TIMEOUT,
					);
					assert.match(JSON.stringify(pep), /"access_model":"whitelist"/, "XEP-0402 §3: whitelist");
					const legacy = await waitFor(
						() =>
							t.server.hosts
								.get("localhost")
								?.map<string>("private")
								.get("alice", "storage storage:bookmarks"),
						"the XEP-0048 copy",
						TIMEOUT,
					);
					assert.match(legacy, /jid="den@conference\.localhost"/);
					assert.match(legacy, /<nick>alice<\/nick>/);
				}

				step("opening the chat");
				// alice opens a chat with bob and types into Converse's message box.
				await h.evaluate(async (p, jid) => {
					await p.api.chats.open(jid, {}, true);
				}, "bob@localhost");
				const textarea = page.locator("textarea.chat-textarea");
				await textarea.waitFor({ state: "visible", timeout: TIMEOUT });
				const hello = `Hello Bob over ${transport}, from Converse & café <ok>`;
				await textarea.fill(hello);
				await textarea.press("Enter");

				step("message typed");
				// Converse writes to bob's bare JID: delivered to his one available resource
				// (RFC 6121 §8.5.2.1.1).
				const m1 = await waitFor(
					() => toBob.find((s) => s.is("message") && s.getChildText("body") === hello),
					"bob to receive Converse's message",
					TIMEOUT,
				);
				// RFC 6120 §8.1.2.1: the server stamps the sender's full JID.
				assert.equal(m1.attrs.from, aliceJid);
				assert.equal(m1.attrs.type, "chat");

				step("bob received it");
				// bob answers alice's full JID; Converse shows it (RFC 6121 §8.5.3.1).
				const reply = `Hi Alice, bob here (${transport}) & <ok>`;
				await bob.write(
					`<message xmlns='jabber:client' to='${aliceJid}' type='chat' id='reply-${transport}'><body>${reply
						.replaceAll("&", "&amp;")
						.replaceAll("<", "&lt;")}</body></message>`,
				);
				await page
					.locator(".chat-msg__text", { hasText: reply })
					.waitFor({ state: "visible", timeout: TIMEOUT });
				step("reply shown");
				const sender = await h.evaluate(
					async (p, [jid, body]) =>
						(await p.api.chats.get(jid))?.messages.findWhere({ body })?.get("sender") ?? null,
					["bob@localhost", reply] as const,
				);
				assert.equal(sender, "them", "Converse stored bob's reply as received");
				// Our own message is shown too, i.e. Converse considered it sent.
				await page
					.locator(".chat-msg__text", { hasText: hello })
					.waitFor({ state: "visible", timeout: TIMEOUT });
				await page.screenshot({ path: shot });

				step("logging out");
				// Logging out ends the session on the server (RFC 7395 §3.6 <close/>, XEP-0124 §12).
				await h.evaluate(async (p) => {
					await p.api.user.logout();
				});
				await waitFor(
					() => (sessions?.get(local)?.get(resource) ? undefined : true),
					"the session to end after logout",
					TIMEOUT,
				);

				step("session gone");
				assert.deepEqual(external, [], "no request left 127.0.0.1");
				assert.deepEqual(missing, [], "the page found every file it asked for");
			} catch (err) {
				failed = true;
				await page.screenshot({ path: shot }).catch(() => {});
				throw err;
			} finally {
				log.push(`[test] refused (off loopback): ${external.join(" ") || "none"}`);
				log.push(`[test] refused images (off loopback): ${images.join(" ") || "none"}`);
				log.push(`[test] not found on the page server: ${missing.join(" ") || "none"}`);
				writeFileSync(logFile, `${log.join("\n")}\n`);
				await context.close();
				await bob?.stop();
			}
		});
	}
});
