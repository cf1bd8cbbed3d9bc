/**
 * HTTP File Upload (XEP-0363) end to end: upload components (`[components."upload.localhost"]
 * type = "upload"`) on a real server, slots asked for over real XMPP sockets, files PUT and
 * fetched over Parley's own HTTP listener with fetch and raw requests, and slixmpp's own
 * xep_0363 plugin doing the whole thing as a client does. Section numbers are XEP-0363 1.1's.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { Redis } from "ioredis";
import type { Element } from "../../src/xml/element.ts";
import { type ChildNode, spawnChildNode, testCluster } from "../helpers/cluster-node.ts";
import { freePort } from "../helpers/prosody.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { redisSkip, TEST_REDIS_URL } from "../helpers/services.ts";
import { StanzaReader } from "../helpers/stanza-reader.ts";
import { waitFor } from "../helpers/wait.ts";
import { login } from "../helpers/xmpp-raw-login.ts";
import { connectUser, errorOf, iq, type User } from "../helpers/xmpp-user.ts";

const NS = "urn:xmpp:http:upload:0";
const DISCO_INFO = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS = "http://jabber.org/protocol/disco#items";
const STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";

/** The main service: generous limits. */
const MAIN = "upload.localhost";
/** 1000 bytes a file, 2500 stored per user. */
const QUOTA = "quota.localhost";
/** 2500 bytes a day per user. */
const DAILY = "daily.localhost";
/** Slots valid for 0.2 s. */
const BRIEF = "brief.localhost";
/** Files kept 1 s, swept every 0.2 s. */
const SHORT = "short.localhost";
/** Open to the users of elsewhere.test too. */
const SHARED = "shared.localhost";
/** 2500 bytes a day per client address, whatever the account; no per-user limit. */
const IPDAY = "ipday.localhost";
/** One upload at a time per client address. */
const IPONE = "ipone.localhost";
const ELSEWHERE = "elsewhere.test";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";
const hasSlixmpp =
	spawnSync(PYTHON, ["-c", "import slixmpp, aiohttp"], { stdio: "ignore" }).status === 0;

function uploadConfig(port: number, components: Record<string, Record<string, unknown>>) {
	return {
		auth: { require_encryption: false, allow_plain_without_tls: true },
		hosts: { localhost: {}, [ELSEWHERE]: {} },
		listeners: { http: { address: "127.0.0.1", port } },
		components: Object.fromEntries(
			Object.entries(components).map(([domain, c]) => [
				domain,
				{ type: "upload", url_base: `http://127.0.0.1:${port}/upload/${domain}`, ...c },
			]),
		),
	} as never;
}

interface SlotUrls {
	put: string;
	get: string;
}

async function requestSlot(
	u: User,
	service: string,
	filename: string,
	size: number | string,
	type?: string,
): Promise<Element> {
	const ct = type === undefined ? "" : ` content-type='${type}'`;
	return iq(
		u,
		"get",
		service,
		`<request xmlns='${NS}' filename='${filename}' size='${size}'${ct}/>`,
	);
}

async function slot(
	u: User,
	service: string,
	filename: string,
	size: number,
	type?: string,
): Promise<SlotUrls> {
	const r = await requestSlot(u, service, filename, size, type);
	assert.equal(r.attrs.type, "result", r.toString());
	const s = r.getChild("slot", NS);
	const put = s?.getChild("put")?.attrs.url;
	const get = s?.getChild("get")?.attrs.url;
	assert.ok(put && get, r.toString());
	return { put, get };
}

function put(
	url: string,
	body: Buffer | string,
	type: string,
	headers: Record<string, string> = {},
) {
	return fetch(url, { method: "PUT", body, headers: { "content-type": type, ...headers } });
}

/** Uploads `body` to `service` and returns the GET URL. */
async function upload(u: User, service: string, name: string, body: Buffer, type: string) {
	const s = await slot(u, service, name, body.length, type);
	const res = await put(s.put, body, type);
	assert.equal(res.status, 201, await res.text());
	return s.get;
}

/** A PUT with http.request, from `localAddress` (another loopback address is another client). */
function putFrom(
	localAddress: string,
	url: string,
	body: Buffer,
	type: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
	return new Promise((resolve, reject) => {
		const req = http.request(
			url,
			{
				method: "PUT",
				localAddress,
				headers: { "content-type": type, "content-length": body.length },
			},
			(res) => {
				let text = "";
				res.setEncoding("utf8");
				res.on("data", (d: string) => {
					text += d;
				});
				res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
			},
		);
		// A refused PUT may be answered before its body is sent, and the connection closed.
		req.on("error", reject);
		req.end(body);
	});
}

/** The file's id: the GET URL's second to last path segment. */
const idOf = (url: string) => new URL(url).pathname.split("/").at(-2) as string;

describe("XEP-0363 HTTP File Upload", () => {
	let t: TestServer;
	let port: number;
	let alice: User;
	let bob: User;
	let eve: User;
	before(async () => {
		port = await freePort();
		t = await startTestServer({
			config: uploadConfig(port, {
				[MAIN]: { max_file_size: 10_485_760 },
				[QUOTA]: { max_file_size: 1000, quota: 2500, daily_quota: 0 },
				[DAILY]: { max_file_size: 1000, quota: 0, daily_quota: 2500 },
				[BRIEF]: { slot_lifetime: 0.2 },
				[SHORT]: { expire_after: 1, cleanup_interval: 0.2 },
				[SHARED]: { allowed_domains: ["localhost", ELSEWHERE] },
				[IPDAY]: { max_file_size: 10_000, quota: 0, daily_quota: 0, ip_daily_quota: 2500 },
				[IPONE]: { ip_max_uploads: 1 },
			}),
			users: [
				["alice@localhost", "alice-pw"],
				["bob@localhost", "bob-pw"],
				[`eve@${ELSEWHERE}`, "eve-pw"],
			],
		});
		alice = await connectUser(t.port, "alice");
		bob = await connectUser(t.port, "bob");
		const c = await login(t.port, "eve", "eve-pw", {
			host: ELSEWHERE,
			resource: "r",
			mechanism: "PLAIN",
		});
		eve = { c, r: new StanzaReader(c), jid: `eve@${ELSEWHERE}/r`, bare: `eve@${ELSEWHERE}` };
	});
	after(async () => {
		for (const u of [alice, bob, eve]) u?.c.end();
		await t?.stop();
	});

	test("§2-§3: listed under the parent host; store/file identity, the feature and max-file-size", async () => {
		const items = await iq(alice, "get", "localhost", `<query xmlns='${DISCO_ITEMS}'/>`);
		const jids = items
			.getChild("query")
			?.getChildren("item")
			.map((i) => i.attrs.jid);
		assert.ok(jids?.includes(MAIN), items.toString());
		const info = await iq(alice, "get", MAIN, `<query xmlns='${DISCO_INFO}'/>`);
		const q = info.getChild("query", DISCO_INFO) as Element;
		assert.deepEqual(
			q.getChildren("identity").map((i) => [i.attrs.category, i.attrs.type]),
			[["store", "file"]],
		);
		assert.ok(q.getChildren("feature").some((f) => f.attrs.var === NS));
		// XEP-0128: the form whose FORM_TYPE is the namespace gives max-file-size.
		const form = q.getChild("x", "jabber:x:data") as Element;
		const value = (v: string) =>
			form
				.getChildren("field")
				.find((f) => f.attrs.var === v)
				?.getChild("value")
				?.text();
		assert.equal(value("FORM_TYPE"), NS);
		assert.equal(value("max-file-size"), "10485760");
	});

	test("§4-§5: a slot, a PUT (201) and a GET of the same bytes with safe headers", async () => {
		const body = randomBytes(70_000);
		const s = await slot(alice, MAIN, "report 2024 (final).pdf", body.length, "application/pdf");
		assert.ok(s.put.startsWith(`http://127.0.0.1:${port}/upload/${MAIN}/`), s.put);
		assert.ok(s.get.endsWith("/report%202024%20(final).pdf"), s.get);
		const res = await put(s.put, body, "application/pdf");
		assert.equal(res.status, 201);
		const got = await fetch(s.get);
		assert.equal(got.status, 200);
		assert.deepEqual(Buffer.from(await got.arrayBuffer()), body);
		assert.equal(got.headers.get("content-type"), "application/pdf");
		assert.equal(got.headers.get("content-length"), String(body.length));
		assert.equal(got.headers.get("x-content-type-options"), "nosniff");
		assert.match(got.headers.get("content-security-policy") ?? "", /default-src 'none'/);
		assert.match(got.headers.get("content-security-policy") ?? "", /sandbox/);
		// Not an image, video or audio: a download, never rendered on the service's origin.
		assert.equal(
			got.headers.get("content-disposition"),
			`attachment; filename="report 2024 (final).pdf"; filename*=UTF-8''report%202024%20%28final%29.pdf`,
		);
		assert.equal(got.headers.get("accept-ranges"), "bytes");
	});

	test("§5: images, video and audio are inline; HTML and SVG are downloads", async () => {
		const cases: [string, string, string][] = [
			["a.png", "image/png", "inline"],
			["a.mp4", "video/mp4", "inline"],
			["a.ogg", "audio/ogg", "inline"],
			["a.html", "text/html", "attachment"],
			["a.svg", "image/svg+xml", "attachment"],
		];
		for (const [name, type, disposition] of cases) {
			const url = await upload(alice, MAIN, name, Buffer.from("<x/>"), type);
			const res = await fetch(url);
			await res.arrayBuffer();
			assert.equal(res.headers.get("content-type"), type);
			assert.ok(res.headers.get("content-disposition")?.startsWith(`${disposition};`), type);
		}
	});

	test("HEAD, Range (206, suffix, open-ended), 416 and If-None-Match (304)", async () => {
		const body = randomBytes(10_000);
		const url = await upload(alice, MAIN, "clip.webm", body, "video/webm");
		const head = await fetch(url, { method: "HEAD" });
		assert.equal(head.status, 200);
		assert.equal(head.headers.get("content-length"), "10000");
		assert.equal(head.headers.get("content-type"), "video/webm");
		assert.equal((await head.arrayBuffer()).byteLength, 0);

		// RFC 9110 §14: what a video player's seeking asks for.
		const ranges: [string, number, number][] = [
			["bytes=100-199", 100, 199],
			["bytes=9000-", 9000, 9999],
			["bytes=-500", 9500, 9999],
			["bytes=9990-20000", 9990, 9999],
		];
		for (const [range, start, end] of ranges) {
			const res = await fetch(url, { headers: { range } });
			assert.equal(res.status, 206, range);
			assert.equal(res.headers.get("content-range"), `bytes ${start}-${end}/10000`);
			assert.equal(res.headers.get("content-length"), String(end - start + 1));
			assert.deepEqual(Buffer.from(await res.arrayBuffer()), body.subarray(start, end + 1));
		}
		const beyond = await fetch(url, { headers: { range: "bytes=10000-" } });
		assert.equal(beyond.status, 416);
		assert.equal(beyond.headers.get("content-range"), "bytes */10000");
		await beyond.arrayBuffer();
		// If-Range naming another version: the whole file.
		const other = await fetch(url, { headers: { range: "bytes=0-9", "if-range": '"other"' } });
		assert.equal(other.status, 200);
		assert.equal((await other.arrayBuffer()).byteLength, 10_000);

		const etag = head.headers.get("etag") ?? "";
		assert.ok(etag);
		const cached = await fetch(url, { headers: { "if-none-match": etag } });
		assert.equal(cached.status, 304);
	});

	test("CORS: the preflight of a PUT, and Access-Control-Allow-Origin on PUT and GET", async () => {
		const s = await slot(alice, MAIN, "web.txt", 5, "text/plain");
		const origin = "https://web.example";
		const pre = await fetch(s.put, {
			method: "OPTIONS",
			headers: {
				origin,
				"access-control-request-method": "PUT",
				"access-control-request-headers": "content-type",
			},
		});
		assert.equal(pre.status, 204);
		assert.equal(pre.headers.get("access-control-allow-origin"), "*");
		assert.match(pre.headers.get("access-control-allow-methods") ?? "", /\bPUT\b/);
		assert.match(pre.headers.get("access-control-allow-headers") ?? "", /content-type/i);
		const res = await put(s.put, "hello", "text/plain", { origin });
		assert.equal(res.status, 201);
		assert.equal(res.headers.get("access-control-allow-origin"), "*");
		const got = await fetch(s.get, { headers: { origin } });
		assert.equal(got.headers.get("access-control-allow-origin"), "*");
		assert.match(got.headers.get("access-control-expose-headers") ?? "", /Content-Range/);
		assert.equal(await got.text(), "hello");
	});

	test("§4.4 file-too-large with the maximum; bad requests", async () => {
		const r = await requestSlot(alice, MAIN, "big.iso", 10_485_761, "application/octet-stream");
		assert.equal(r.attrs.type, "error");
		assert.deepEqual(errorOf(r), { condition: "not-acceptable", app: "file-too-large" });
		assert.equal(r.getChild("error")?.attrs.type, "modify");
		assert.equal(
			r.getChild("error")?.getChild("file-too-large", NS)?.getChild("max-file-size")?.text(),
			"10485760",
		);
		for (const [name, size, type] of [
			["a.txt", "many", undefined],
			["", "10", undefined],
			["a.txt", "-1", undefined],
			["a.txt", "10", "not a type"],
		] as const) {
			const bad = await requestSlot(alice, MAIN, name, size, type);
			assert.equal(errorOf(bad).condition, "bad-request", bad.toString());
		}
	});

	test("§4: only users of the parent host by default (forbidden); allowed_domains opens it", async () => {
		const r = await requestSlot(eve, MAIN, "a.txt", 10, "text/plain");
		assert.equal(errorOf(r).condition, "forbidden");
		assert.equal(r.getChild("error")?.attrs.type, "auth");
		assert.match(r.getChild("error")?.getChild("text", STANZAS)?.text() ?? "", /localhost/);
		const s = await slot(eve, SHARED, "a.txt", 5, "text/plain");
		assert.equal((await put(s.put, "howdy", "text/plain")).status, 201);
	});

	test("§4.4: the per-user quota is resource-constraint (wait) with a retry stamp", async () => {
		// Slots count as soon as they are handed out, so that many at once cannot pass the quota.
		await upload(bob, QUOTA, "1.bin", randomBytes(1000), "application/octet-stream");
		await slot(bob, QUOTA, "2.bin", 1000);
		const r = await requestSlot(bob, QUOTA, "3.bin", 1000);
		assert.deepEqual(errorOf(r), { condition: "resource-constraint", app: "retry" });
		assert.equal(r.getChild("error")?.attrs.type, "wait");
		assert.match(r.getChild("error")?.getChild("text", STANZAS)?.text() ?? "", /Quota reached/);
		assert.ok(
			Date.parse(r.getChild("error")?.getChild("retry", NS)?.attrs.stamp ?? "") > Date.now(),
		);
		// Another user has a quota of their own; a smaller file still fits.
		await slot(alice, QUOTA, "3.bin", 1000);
		await slot(bob, QUOTA, "small.bin", 500);
	});

	test("§4.4: the daily quota, with a retry stamp a day after the oldest upload", async () => {
		const first = Date.now();
		await upload(bob, DAILY, "1.bin", randomBytes(1000), "application/octet-stream");
		await upload(bob, DAILY, "2.bin", randomBytes(1000), "application/octet-stream");
		const r = await requestSlot(bob, DAILY, "3.bin", 1000);
		assert.deepEqual(errorOf(r), { condition: "resource-constraint", app: "retry" });
		assert.match(r.getChild("error")?.getChild("text", STANZAS)?.text() ?? "", /Daily quota/);
		const stamp = Date.parse(r.getChild("error")?.getChild("retry", NS)?.attrs.stamp ?? "");
		assert.ok(
			stamp >= first + 86_400_000 - 1000 && stamp <= Date.now() + 86_400_000,
			String(stamp),
		);
	});

	test("§5: the PUT is checked: token, slot expiry, size, type, one upload per slot", async () => {
		const s = await slot(alice, MAIN, "x.txt", 5, "text/plain");
		const u = new URL(s.put);
		const token = u.searchParams.get("token") ?? "";
		const text = async (r: Response) => `${r.status} ${await r.text()}`;
		// No token, a tampered one, a token for another id.
		assert.match(await text(await put(s.get, "hello", "text/plain")), /^403 /);
		u.searchParams.set("token", `${token.slice(0, -2)}AA`);
		assert.match(await text(await put(u.toString(), "hello", "text/plain")), /^403 /);
		const other = await slot(alice, MAIN, "y.txt", 5, "text/plain");
		const swapped = new URL(s.put);
		swapped.searchParams.set("token", new URL(other.put).searchParams.get("token") ?? "");
		assert.match(await text(await put(swapped.toString(), "hello", "text/plain")), /^403 /);
		// Content-Length other than the slot's size; Content-Type other than the slot's.
		assert.match(await text(await put(s.put, "hello!", "text/plain")), /^413 /);
		assert.match(await text(await put(s.put, "hell", "text/plain")), /^400 /);
		assert.match(await text(await put(s.put, "hello", "image/png")), /^415 /);
		// Parameters of the type do not matter.
		assert.match(await text(await put(s.put, "hello", "text/plain; charset=utf-8")), /^201 /);
		assert.match(await text(await put(s.put, "hello", "text/plain")), /^409 /);
		assert.equal(await (await fetch(s.get)).text(), "hello");
		// A slot used after its lifetime (slot_lifetime = 0.2 s).
		const brief = await slot(alice, BRIEF, "late.txt", 5, "text/plain");
		// The slot was made before its answer arrived: 0.2 s after that, it has expired.
		const answered = Date.now();
		await waitFor(() => Date.now() > answered + 250, "the slot's lifetime");
		const late = await put(brief.put, "hello", "text/plain");
		assert.equal(late.status, 403);
		assert.match(await late.text(), /expired/);
		assert.equal((await fetch(brief.get)).status, 404);
		// Unknown files.
		assert.equal((await fetch(`http://127.0.0.1:${port}/upload/${MAIN}/nothing/x`)).status, 404);
		assert.equal(
			(await fetch(`http://127.0.0.1:${port}/upload/${MAIN}/AAAAAAAAAAAAAAAAAAAAAA/x`)).status,
			404,
		);
		assert.equal(
			(await fetch(`http://127.0.0.1:${port}/upload/nowhere.localhost/AAAAAAAAAAAAAAAAAAAAAA/x`))
				.status,
			404,
		);
	});

	test("an upload cut off midway leaves nothing, and the slot can be used again", async () => {
		const s = await slot(alice, MAIN, "cut.bin", 100_000);
		const dir = join(t.dataDir, "upload", MAIN);
		await new Promise<void>((resolve) => {
			const req = http.request(s.put, {
				method: "PUT",
				headers: { "content-type": "application/octet-stream", "content-length": 100_000 },
			});
			req.on("error", () => resolve());
			req.write(randomBytes(50_000), () => {
				// The server has the first half in its part file; then the connection dies.
				setTimeout(() => req.destroy(), 50);
			});
			req.on("close", () => resolve());
		});
		await waitFor(() => !readdirSync(dir).some((f) => f.endsWith(".part")), "the part to go");
		const body = randomBytes(100_000);
		assert.equal((await put(s.put, body, "application/octet-stream")).status, 201);
		assert.deepEqual(Buffer.from(await (await fetch(s.get)).arrayBuffer()), body);
	});

	test("per client address: bytes in 24 hours over several accounts (429 + Retry-After, 413); another address is not counted", async () => {
		const type = "application/octet-stream";
		await upload(alice, IPDAY, "a.bin", randomBytes(1000), type);
		await upload(bob, IPDAY, "b.bin", randomBytes(1000), type);
		// The slot is fine for bob (no per-user limit here); the address has sent 2000 of 2500.
		const s = await slot(bob, IPDAY, "c.bin", 1000, type);
		const body = randomBytes(1000);
		const refused = await putFrom("127.0.0.1", s.put, body, type);
		assert.equal(refused.status, 429, refused.text);
		assert.match(refused.text, /daily upload limit/);
		// RFC 6585 §4 / RFC 9110 §10.2.3: when the first 1000 bytes leave the 24-hour window.
		const retry = Number(refused.headers["retry-after"]);
		assert.ok(retry > 0 && retry <= 86_400, String(refused.headers["retry-after"]));
		assert.equal((await fetch(s.get)).status, 404);
		// The same slot URL from another address is that address's bytes.
		const other = await putFrom("127.0.0.2", s.put, body, type);
		assert.equal(other.status, 201, other.text);
		assert.deepEqual(Buffer.from(await (await fetch(s.get)).arrayBuffer()), body);
		// More than the address may send in a day, ever: 413.
		const big = await slot(alice, IPDAY, "big.bin", 3000, type);
		const tooBig = await putFrom("127.0.0.3", big.put, randomBytes(3000), type);
		assert.equal(tooBig.status, 413, tooBig.text);
		// A refused upload counted nothing: 127.0.0.3 can still send 2500 bytes.
		const fits = await slot(alice, IPDAY, "fits.bin", 2500, type);
		assert.equal((await putFrom("127.0.0.3", fits.put, randomBytes(2500), type)).status, 201);
	});

	test("per client address: uploads at once (429 while one is in progress)", async () => {
		const type = "application/octet-stream";
		const dir = join(t.dataDir, "upload", IPONE);
		const first = await slot(alice, IPONE, "slow.bin", 2000, type);
		const half = randomBytes(1000);
		const rest = randomBytes(1000);
		let done: Promise<number> = Promise.resolve(0);
		const req = http.request(first.put, {
			method: "PUT",
			localAddress: "127.0.0.1",
			headers: { "content-type": type, "content-length": 2000 },
		});
		done = new Promise((resolve, reject) => {
			req.on("response", (res) => {
				res.resume();
				resolve(res.statusCode ?? 0);
			});
			req.on("error", reject);
		});
		req.write(half);
		await waitFor(
			() => readdirSync(dir).some((f) => f.endsWith(".part")),
			"the first upload to start",
		);
		const second = await slot(bob, IPONE, "b.bin", 10, type);
		const busy = await putFrom("127.0.0.1", second.put, randomBytes(10), type);
		assert.equal(busy.status, 429, busy.text);
		assert.match(busy.text, /at once/);
		assert.equal(busy.headers["retry-after"], undefined);
		// Another address is not held back.
		assert.equal((await putFrom("127.0.0.2", second.put, randomBytes(10), type)).status, 201);
		req.end(rest);
		assert.equal(await done, 201);
		assert.deepEqual(
			Buffer.from(await (await fetch(first.get)).arrayBuffer()),
			Buffer.concat([half, rest]),
		);
		// Once it ended, the address may upload again.
		const third = await slot(bob, IPONE, "c.bin", 10, type);
		assert.equal((await putFrom("127.0.0.1", third.put, randomBytes(10), type)).status, 201);
	});

	test("uploaded files expire and the sweep deletes them (expire_after = 1 s)", async () => {
		const url = await upload(alice, SHORT, "old.txt", Buffer.from("soon gone"), "text/plain");
		const file = join(t.dataDir, "upload", SHORT, idOf(url));
		await waitFor(() => !existsSync(file) && !existsSync(`${file}.json`), "the sweep", 15_000);
		assert.equal((await fetch(url)).status, 404);
	});

	test("a deleted account's files go with it: links stop working, a new account of that name starts with an empty quota", async () => {
		const host = t.server.hosts.get("localhost");
		assert.ok(host);
		await host.accounts.create("dave", "dave-pw");
		let dave = await connectUser(t.port, "dave");
		const mine = [
			await upload(dave, MAIN, "a.txt", Buffer.from("dave's a"), "text/plain"),
			await upload(dave, QUOTA, "b.bin", randomBytes(1000), "application/octet-stream"),
			await upload(dave, QUOTA, "c.bin", randomBytes(1000), "application/octet-stream"),
		];
		const kept = await upload(alice, MAIN, "alice.txt", Buffer.from("alice's"), "text/plain");
		dave.c.end();
		await host.accounts.delete("dave");
		for (const url of mine) {
			assert.equal((await fetch(url)).status, 404, url);
			const service = new URL(url).pathname.split("/")[2] as string;
			assert.equal(existsSync(join(t.dataDir, "upload", service, idOf(url))), false, url);
		}
		assert.equal((await fetch(kept)).status, 200, "another user's file stays");
		// 2 × 1000 bytes again fit the 2500-byte quota only if the old two no longer count.
		await host.accounts.create("dave", "dave-pw");
		dave = await connectUser(t.port, "dave");
		await upload(dave, QUOTA, "d.bin", randomBytes(1000), "application/octet-stream");
		await upload(dave, QUOTA, "e.bin", randomBytes(1000), "application/octet-stream");
		dave.c.end();
	});
});

describe("XEP-0363 across a restart", () => {
	test("files, their metadata, the quota index and outstanding slots survive", async () => {
		const dataDir = mkdtempSync(join(tmpdir(), "parley-upload-"));
		const port = await freePort();
		const config = uploadConfig(port, { [QUOTA]: { max_file_size: 1000, quota: 1500 } });
		const start = () =>
			startTestServer({
				config,
				storage: "sqlite",
				dataDir,
				...(existsSync(join(dataDir, "parley.sqlite"))
					? {}
					: { users: [["alice@localhost", "alice-pw"]] as [string, string][] }),
			});
		try {
			let t = await start();
			let alice = await connectUser(t.port, "alice");
			const body = randomBytes(1000);
			const url = await upload(alice, QUOTA, "kept.bin", body, "application/octet-stream");
			const later = await slot(alice, QUOTA, "later.txt", 5, "text/plain");
			alice.c.end();
			await t.stop();

			t = await start();
			try {
				alice = await connectUser(t.port, "alice");
				const got = await fetch(url);
				assert.equal(got.status, 200);
				assert.equal(got.headers.get("content-type"), "application/octet-stream");
				assert.equal(
					createHash("sha256")
						.update(Buffer.from(await got.arrayBuffer()))
						.digest("hex"),
					createHash("sha256").update(body).digest("hex"),
				);
				// The index kept the 1000 bytes: 1000 more would pass the 1500 quota.
				const r = await requestSlot(alice, QUOTA, "more.bin", 1000);
				assert.equal(errorOf(r).condition, "resource-constraint", r.toString());
				// The component's secret is stored: a slot from before the restart still works.
				assert.equal((await put(later.put, "hello", "text/plain")).status, 201);
				alice.c.end();
			} finally {
				await t.stop();
			}
		} finally {
			rmSync(dataDir, { recursive: true, force: true });
		}
	});
});

describe("slixmpp's xep_0363 plugin", {
	skip: hasSlixmpp ? false : "python3-slixmpp (and aiohttp) is not installed",
}, () => {
	test("discovers the service, uploads with PUT and downloads the same bytes with GET", async () => {
		const port = await freePort();
		const t = await startTestServer({
			config: uploadConfig(port, { [MAIN]: { max_file_size: 5_000_000 } }),
			users: [["alice@localhost", "alice-pw"]],
		});
		try {
			const r = await run(
				PYTHON,
				[
					"test/clients/slixmpp_upload.py",
					"localhost",
					String(t.port),
					"alice",
					"alice-pw",
					"300000",
				],
				{ encoding: "utf8", timeout: 120_000 },
			).catch((e: { stdout?: string; stderr?: string }) => e);
			const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
			const result = JSON.parse(line || "{}") as Record<string, unknown>;
			assert.equal(result.error, undefined, `${line}\n${r.stderr ?? ""}`);
			assert.equal(result.service, MAIN);
			assert.equal(result.max_file_size, 5_000_000);
			assert.match(
				String(result.url),
				new RegExp(`^http://127\\.0\\.0\\.1:${port}/upload/${MAIN}/[^/]+/photo\\.jpg$`),
			);
			assert.equal(result.status, 200);
			assert.equal(result.content_type, "image/jpeg");
			assert.equal(result.received, result.sent);
		} finally {
			await t.stop();
		}
	});
});

describe("XEP-0363 in a cluster", { skip: redisSkip }, () => {
	test("ip_max_uploads and ip_daily_quota count an address's PUTs on every node; a killed node's uploads in progress stop counting, what it received does not", async () => {
		const prefix = `parley-test-uplimit-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
		const [portA, portB, c2sB] = [await freePort(), await freePort(), await freePort()];
		const limits = { ip_max_uploads: 1, ip_daily_quota: 150_000 };
		const a = await startTestServer({
			storage: "sqlite",
			config: {
				...(uploadConfig(portA, { [MAIN]: limits }) as object),
				cluster: testCluster(prefix, "up-a"),
			} as never,
			users: [["alice@localhost", "alice-pw"]],
		});
		// Node B: a `parley serve` process on A's data directory (SQLite and upload files).
		let node: ChildNode | null = spawnChildNode({
			dataDir: a.dataDir,
			port: c2sB,
			httpPort: portB,
			prefix,
			node: "up-b",
			extra: [
				`[components.${JSON.stringify(MAIN)}]`,
				'type = "upload"',
				`url_base = "http://127.0.0.1:${portA}/upload/${MAIN}"`,
				`ip_max_uploads = ${limits.ip_max_uploads}`,
				`ip_daily_quota = ${limits.ip_daily_quota}`,
			],
		});
		const r = new Redis(TEST_REDIS_URL);
		const type = "application/octet-stream";
		const onB = (url: string) => url.replace(`:${portA}/`, `:${portB}/`);
		let hanging: http.ClientRequest | null = null;
		try {
			const alice = await connectUser(a.port, "alice");
			await waitFor(
				() =>
					fetch(`http://127.0.0.1:${portB}/`).then(
						() => true,
						() => undefined,
					),
				"node B's HTTP listener",
				20_000,
			).catch((err: Error) => {
				throw new Error(`${err.message}; node B said: ${node?.output()}`);
			});
			// 60 000 bytes received by node B count for the address everywhere.
			const one = await slot(alice, MAIN, "one.bin", 60_000);
			const first = await putFrom("127.0.0.1", onB(one.put), randomBytes(60_000), type);
			assert.equal(first.status, 201, first.text);
			// An upload in progress on node B: its count is node B's share of the counter.
			const hang = await slot(alice, MAIN, "hang.bin", 50_000);
			const req = http.request(onB(hang.put), {
				method: "PUT",
				localAddress: "127.0.0.1",
				headers: { "content-type": type, "content-length": 50_000 },
			});
			hanging = req;
			req.on("error", () => {});
			req.write(randomBytes(10_000));
			await waitFor(
				async () => (await r.hget(`${prefix}:c:upload:${MAIN}:n:127.0.0.1`, "up-b")) === "1",
				"node B's upload counted",
			);
			// ip_max_uploads = 1 holds on node A too (RFC 6585 §4: 429).
			const three = await slot(alice, MAIN, "three.bin", 30_000);
			const body3 = randomBytes(30_000);
			const refused = await putFrom("127.0.0.1", three.put, body3, type);
			assert.equal(refused.status, 429, refused.text);
			assert.match(refused.text, /too many uploads from this address at once/);
			// Node B dies mid-upload: the leader (A) releases its share; the same PUT then passes.
			node.child.kill("SIGKILL");
			node = null;
			await waitFor(
				async () =>
					(await putFrom("127.0.0.1", three.put, body3, type)).status === 201 || undefined,
				"the upload admitted once node B is declared dead",
				20_000,
			);
			// What node B received still counts: 60 000 + 30 000 + 70 000 > 150 000 a day.
			const four = await slot(alice, MAIN, "four.bin", 70_000);
			const daily = await putFrom("127.0.0.1", four.put, randomBytes(70_000), type);
			assert.equal(daily.status, 429, daily.text);
			assert.match(daily.text, /daily upload limit/);
			// RFC 9110 §10.2.3: when node B's 60 000 bytes leave the 24-hour window.
			const retry = Number(daily.headers["retry-after"]);
			assert.ok(retry > 86_000 && retry <= 87_000, String(daily.headers["retry-after"]));
			alice.c.end();
		} finally {
			hanging?.destroy();
			node?.child.kill("SIGKILL");
			await a.stop();
			const keys = await r.keys(`${prefix}:*`);
			if (keys.length) await r.del(...keys);
			await r.quit();
		}
	});

	test("a slot from the leader is PUT through another node's listener; both serve the file", async () => {
		const prefix = `parley-test-upload-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
		const [portA, portB] = [await freePort(), await freePort()];
		const node = (name: string, httpPort: number) => ({
			...(uploadConfig(httpPort, { [MAIN]: {} }) as object),
			// The URLs name node A's listener; node B's is reached by rewriting them.
			components: {
				[MAIN]: { type: "upload", url_base: `http://127.0.0.1:${portA}/upload/${MAIN}` },
			},
			cluster: testCluster(prefix, name),
		});
		const a = await startTestServer({
			storage: "sqlite",
			config: node("node-a", portA) as never,
			users: [["alice@localhost", "alice-pw"]],
		});
		const b = await startTestServer({
			storage: "sqlite",
			dataDir: a.dataDir,
			config: node("node-b", portB) as never,
		});
		try {
			assert.equal(a.server.cluster?.leader, true);
			assert.equal(b.server.cluster?.leader, false);
			// The client is on node B: its slot request goes to the leader, A.
			const alice = await connectUser(b.port, "alice");
			const body = randomBytes(50_000);
			const s = await slot(alice, MAIN, "across.bin", body.length);
			const onB = (url: string) => url.replace(`:${portA}/`, `:${portB}/`);
			assert.equal((await put(onB(s.put), body, "application/octet-stream")).status, 201);
			for (const url of [s.get, onB(s.get)]) {
				const got = await fetch(url);
				assert.equal(got.status, 200, url);
				assert.deepEqual(Buffer.from(await got.arrayBuffer()), body);
			}
			alice.c.end();
		} finally {
			await b.stop();
			await a.stop();
			const r = new Redis(TEST_REDIS_URL);
			const keys = await r.keys(`${prefix}:*`);
			if (keys.length) await r.del(...keys);
			await r.quit();
		}
	});
});
