/**
 * Issue 15, "a web admin page served by Parley … tested in a real Chromium … without any
 * external CDN": the page of src/admin/web/ on the admin listener, driven in headless Chromium
 * (Debian's /usr/bin/chromium through playwright-core, test/helpers/converse.ts). An admin logs
 * in through the form, sees the state `running`, adds a user and sees it listed, creates an
 * invitation and sees its landing URL, makes a backup and sees it listed, then breaks the
 * configuration file and clicks reload: the state `running_misconfigured` and the error with
 * its line and key; the fixed file and reload bring back `running`. Every request to a host
 * other than 127.0.0.1 is refused and fails the test (no CDN), and so does any console error
 * (a Content-Security-Policy violation is one). A screenshot goes to /tmp/parley-admin-web.png.
 *
 * Skips when Chromium is missing (CI installs it: .ci/run).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { supervisedBackupCommands } from "../../src/admin/supervised-backups.ts";
import { loadConfigFile } from "../../src/core/config/load.ts";
import { type AdminHarness, baseToml, startAdmin } from "../helpers/admin.ts";
import { launchChromium, refuseNetwork, skipWithoutChromium as skip } from "../helpers/converse.ts";
import { provideSelfSignedCertificate } from "../helpers/tls.ts";
import { waitFor } from "../helpers/wait.ts";

/** Safety net for each wait in the browser; a healthy run needs a few seconds in all. */
const TIMEOUT = 20_000;
const SCREENSHOT = "/tmp/parley-admin-web.png";

test("the page is served in every state, with a strict CSP, while the API routes answer 503", async () => {
	// Not started: `stopped`, which serves only the always-served routes.
	const h = await startAdmin({ deferStart: true });
	try {
		assert.equal((await h.request("GET", "/status")).body.state, "stopped");
		assert.equal((await h.request("GET", "/users")).status, 503);
		for (const [path, type] of [
			["/", "text/html"],
			["/ui/", "text/html"],
			["/ui/app.js", "text/javascript"],
			["/ui/style.css", "text/css"],
		] as const) {
			const res = await fetch(`http://127.0.0.1:${h.api.port}${path}`);
			assert.equal(res.status, 200, path);
			assert.ok(res.headers.get("content-type")?.startsWith(type), path);
			const csp = res.headers.get("content-security-policy") ?? "";
			assert.match(csp, /default-src 'self'/, path);
			assert.match(csp, /script-src 'self'(;|$)/, `${path}: no inline script`);
		}
		const missing = await fetch(`http://127.0.0.1:${h.api.port}/ui/nothing.js`);
		assert.equal(missing.status, 404);
		const html = await (await fetch(`http://127.0.0.1:${h.api.port}/`)).text();
		assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, "no inline script element");
		assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, "nothing from another origin");
	} finally {
		await h.close();
	}
});

describe("the web admin page in headless Chromium (issue 15)", { skip }, () => {
	let h: AdminHarness;
	let browser: Browser;
	let context: BrowserContext;
	let page: Page;
	let network: { external: string[]; images: string[] };
	const consoleErrors: string[] = [];

	before(async () => {
		h = await startAdmin({
			commands: (supervisor, config) => supervisedBackupCommands(supervisor, () => config),
		});
		const first = await h.request("PUT", "/init/first-account", {
			body: { jid: "root@localhost", password: "root-pw" },
		});
		assert.equal(first.status, 201);
		browser = await launchChromium(TIMEOUT);
		context = await browser.newContext();
		context.setDefaultTimeout(TIMEOUT);
		network = await refuseNetwork(context);
		page = await context.newPage();
		page.on("console", (m) => {
			// An error answer of the API (401 for a wrong password, 404 for /metrics where it is
			// not served, 422 for a bad configuration) is logged by Chromium; the page handles it.
			if (m.type() === "error" && !m.text().startsWith("Failed to load resource"))
				consoleErrors.push(m.text());
		});
		page.on("pageerror", (e) => consoleErrors.push(e.message));
	});

	after(async () => {
		await page?.screenshot({ path: SCREENSHOT, fullPage: true }).catch(() => undefined);
		await browser?.close();
		await h?.close();
	});

	/** The API's own view, to check what the page shows against. */
	let token = "";
	const api = async (path: string) => {
		token ||= await h.token("root@localhost", "root-pw");
		const r = await h.request("GET", path, { token });
		assert.equal(r.status, 200, JSON.stringify(r.body));
		return r.body as unknown;
	};

	test("log in, see running; add a user, an invitation, a backup; a bad config and its fix through reload", async () => {
		const res = await page.goto(`http://127.0.0.1:${h.api.port}/`);
		assert.equal(res?.status(), 200);
		assert.match(res?.headers()["content-security-policy"] ?? "", /default-src 'self'/);

		// The state shows before login (GET /status needs no token).
		await page.locator('#state[data-state="running"]').waitFor();
		assert.ok(await page.locator("#dashboard").isHidden(), "no dashboard before login");

		// A wrong password: the form says so.
		await page.fill("#login [name=jid]", "root@localhost");
		await page.fill("#login [name=password]", "wrong");
		await page.click("#login [type=submit]");
		await page.locator("#login-error", { hasText: "wrong JID or password" }).waitFor();

		await page.fill("#login [name=password]", "root-pw");
		await page.click("#login [type=submit]");
		await page.locator("#dashboard").waitFor({ state: "visible" });
		assert.ok(await page.evaluate(() => sessionStorage.getItem("parley-admin-token")));
		await page.locator('#users tr[data-jid="root@localhost"]').waitFor();
		// GET /metrics (loopback: no token needed) feeds the metrics panel.
		await page.locator('#metrics dt[data-figure="sessions"]').waitFor();
		await page.locator('#metrics dt[data-figure="logins"]').waitFor();

		// Users: add one, see it listed with its role, as the API has it.
		await page.fill("#user-add [name=jid]", "alice@localhost");
		await page.fill("#user-add [name=password]", "alice-pw");
		await page.click("#user-add [type=submit]");
		const alice = page.locator('#users tr[data-jid="alice@localhost"]');
		await alice.waitFor();
		assert.equal(await alice.locator("select").inputValue(), "user");
		assert.deepEqual((await api("/users")) as unknown, {
			users: [
				{ jid: "alice@localhost", role: "user" },
				{ jid: "root@localhost", role: "admin" },
			].sort((a, b) => (a.jid < b.jid ? -1 : 1)),
		});
		// Set her role from the page.
		await alice.locator("select").selectOption("admin");
		// The page re-reads the list after the change: wait for the API to have it.
		await waitFor(async () => {
			const { users } = (await api("/users")) as { users: { jid: string; role: string }[] };
			return users.find((u) => u.jid === "alice@localhost")?.role === "admin";
		}, "alice made an admin through the page");

		// Invitations: create one, see its landing URL, the one the API lists.
		await page.click("#invite-create [type=submit]");
		const link = page.locator("#invite-new-url a");
		await link.waitFor();
		const url = await link.textContent();
		const { invites } = (await api("/invites")) as { invites: { "landing-url": string }[] };
		assert.equal(invites.length, 1);
		assert.equal(url, invites[0]?.["landing-url"]);
		assert.match(url ?? "", /\/invite\/[^/]+$/);
		await page.locator("#invites tbody tr", { hasText: url ?? "" }).waitFor();

		// Backups: make one, see the bar's end and the backup listed.
		assert.equal(await page.locator("#backups tbody tr").count(), 0);
		const answer = page.waitForResponse(
			(r) => new URL(r.url()).pathname === "/backups" && r.request().method() === "POST",
		);
		await page.click("#backup-create");
		// The server streams the progress (Server-Sent Events) to a page that asks for it.
		assert.match((await answer).headers()["content-type"] ?? "", /^text\/event-stream/);
		await page.locator("#backup-phase", { hasText: /^done/ }).waitFor();
		const backups = (await api("/backups")) as { id: string }[] | { backups: { id: string }[] };
		const list = Array.isArray(backups) ? backups : backups.backups;
		assert.equal(list.length, 1);
		const backupRow = page.locator("#backups tbody tr", { hasText: list[0]?.id ?? "?" });
		await backupRow.waitFor();
		// Download: the archive the API describes, byte for byte (fetched with the token).
		const described = (await api(`/backups/${list[0]?.id}`)) as {
			archive: { bytes: number; sha256: string };
		};
		const [download] = await Promise.all([
			page.waitForEvent("download"),
			backupRow.locator("button", { hasText: "Download" }).click(),
		]);
		assert.equal(download.suggestedFilename(), `${list[0]?.id}.tar.gz`);
		const saved = await readFile((await download.path()) as string);
		assert.equal(saved.length, described.archive.bytes);
		assert.equal(createHash("sha256").update(saved).digest("hex"), described.archive.sha256);
		// Delete, confirmed: gone from the page and from the API.
		page.once("dialog", (d) => void d.accept());
		await backupRow.locator("button", { hasText: "Delete" }).click();
		await backupRow.waitFor({ state: "detached" });
		const after = (await api("/backups")) as { id: string }[] | { backups: { id: string }[] };
		assert.equal((Array.isArray(after) ? after : after.backups).length, 0);

		// A configuration that does not validate: reload shows the error with its line.
		h.write('[limits]\nstanza_size = "big"\n');
		await page.click("#reload");
		await page.locator('#state[data-state="running_misconfigured"]').waitFor();
		const line = baseToml(h.dir).split("\n").length + 1;
		const problem = page.locator("#config-errors tbody tr");
		await problem.waitFor();
		assert.deepEqual(await problem.locator("td").allTextContents(), [
			h.config,
			String(line),
			"limits.stanza_size",
			'limits.stanza_size: expected an integer >= 1024, got "big"',
		]);
		await page.screenshot({
			path: SCREENSHOT.replace(".png", "-misconfigured.png"),
			fullPage: true,
		});

		// Fixed: reload, back to running, no error shown.
		h.write("[limits]\nstanza_size = 300000\n");
		await page.click("#reload");
		await page.locator('#state[data-state="running"]').waitFor();
		await page.locator("#config-errors-box").waitFor({ state: "hidden" });

		assert.deepEqual(network.external, [], "no request leaves 127.0.0.1");
		assert.deepEqual(network.images, []);
		assert.deepEqual(consoleErrors, [], "no console error (a CSP violation would be one)");
	});

	test("the backup's progress bar reads a text/event-stream answer: phases, the final backup, an error", async () => {
		// The server's stream (Server-Sent Events on POST /backups: `progress` events, then
		// `result` or `error`) stood in for by the browser's router, to see each kind of event
		// land, an error included, which the real backup above cannot be made to give.
		const accepts: string[] = [];
		let body = "";
		const backups = (u: URL) => u.pathname === "/backups";
		await page.route(backups, (route) => {
			if (route.request().method() !== "POST") return route.fallback();
			accepts.push(route.request().headers().accept ?? "");
			return route.fulfill({
				status: 200,
				headers: { "content-type": "text/event-stream", "cache-control": "no-store" },
				body,
			});
		});
		body = [
			'event: progress\ndata: {"phase":"database","bytes":0}\n\n',
			'event: progress\ndata: {"phase":"pack","bytes":2048}\n\n',
			'event: result\ndata: {"id":"20261207T000000Z-stream","created":"2026-12-07T00:00:00Z","archive":{"file":"x","bytes":4096,"sha256":"00"}}\n\n',
		].join("");
		await page.click("#backup-create");
		await page.locator("#backup-phase", { hasText: "done: 20261207T000000Z-stream" }).waitFor();
		assert.deepEqual(
			await page.locator("#backup-progress").evaluate((el) => {
				const bar = el as unknown as { value: number; max: number };
				return [bar.value, bar.max];
			}),
			[1, 1],
		);
		await page.locator("#backup-create:not([disabled])").waitFor();

		body = 'event: error\ndata: {"code":"conflict","message":"a restore is under way"}\n\n';
		await page.click("#backup-create");
		await page
			.locator("#backup-phase", { hasText: "backup failed: a restore is under way" })
			.waitFor();
		assert.deepEqual(accepts, ["text/event-stream", "text/event-stream"]);
		await page.unroute(backups);
		assert.deepEqual(consoleErrors, []);
	});

	test("remove a user, revoke an invitation, restart; the token survives a page reload; the metrics panel", async () => {
		// Remove alice: the page asks first.
		page.once("dialog", (d) => void d.accept());
		await page
			.locator('#users tr[data-jid="alice@localhost"] button', { hasText: "Remove" })
			.click();
		await page.locator('#users tr[data-jid="alice@localhost"]').waitFor({ state: "detached" });
		assert.deepEqual(await api("/users"), { users: [{ jid: "root@localhost", role: "admin" }] });

		// Revoke the invitation.
		await page.locator("#invites tbody tr button", { hasText: "Revoke" }).click();
		await page.locator("#invites tbody tr").waitFor({ state: "detached" });
		assert.deepEqual(((await api("/invites")) as { invites: unknown[] }).invites, []);

		// Restart: a new Server instance, back to running.
		const before = h.supervisor.server;
		await page.click("#restart");
		await page.locator("#lifecycle-result", { hasText: "restart: running" }).waitFor();
		assert.ok(h.supervisor.server && h.supervisor.server !== before, "a new Server instance");

		// The metrics (GET /metrics, Prometheus text) stood in for by the browser's router: the
		// panel sums the families of src/core/metrics.ts and splits them by one label.
		const metrics = (u: URL) => u.pathname === "/metrics";
		await page.route(metrics, (route) =>
			route.fulfill({
				status: 200,
				headers: { "content-type": "text/plain; version=0.0.4" },
				body: [
					"# HELP parley_sessions Bound client sessions",
					"# TYPE parley_sessions gauge",
					'parley_sessions{transport="tcp"} 2',
					'parley_sessions{transport="websocket"} 1',
					'parley_stanzas_received_total{stream="c2s",kind="message"} 10',
					'parley_stanzas_received_total{stream="c2s",kind="iq"} 5',
					'parley_auth_total{mechanism="SCRAM-SHA-256",result="success"} 3',
					'parley_auth_total{mechanism="PLAIN",result="failure"} 1',
					"process_resident_memory_bytes 1e8",
					"",
				].join("\n"),
			}),
		);
		// A reload of the page: the token is in sessionStorage, the dashboard comes back.
		await page.reload();
		await page.locator("#dashboard").waitFor({ state: "visible" });
		await page.locator('#metrics dt[data-figure="sessions"]').waitFor();
		const dt = await page.locator("#metrics dt").allTextContents();
		const dd = await page.locator("#metrics dd").allTextContents();
		assert.deepEqual(Object.fromEntries(dt.map((k, n) => [k, dd[n]])), {
			logins: "4",
			"logins: failure": "1",
			"logins: success": "3",
			sessions: "3",
			"sessions: tcp": "2",
			"sessions: websocket": "1",
			"stanzas received": "15",
			"stanzas received: c2s": "15",
		});
		await page.unroute(metrics);
		assert.deepEqual(consoleErrors, []);
	});
});

describe("the web admin page of a server that could not start (issue 15)", { skip }, () => {
	test("configuration_needed: the errors with their line, no login possible, Reload from loopback brings it up", async () => {
		const h = await startAdmin({ extra: '[limits]\nstanza_size = "big"\n' });
		const browser = await launchChromium(TIMEOUT);
		try {
			assert.equal(h.supervisor.state, "configuration_needed");
			const context = await browser.newContext();
			context.setDefaultTimeout(TIMEOUT);
			const network = await refuseNetwork(context);
			const page = await context.newPage();
			await page.goto(`http://127.0.0.1:${h.api.port}/`);
			await page.locator('#state[data-state="configuration_needed"]').waitFor();
			const line = baseToml(h.dir).split("\n").length + 1;
			const problem = page.locator("#config-errors tbody tr");
			await problem.waitFor();
			assert.deepEqual((await problem.locator("td").allTextContents()).slice(0, 3), [
				h.config,
				String(line),
				"limits.stanza_size",
			]);
			// No server runs, so no account can be checked: the login form says why.
			await page.fill("#login [name=jid]", "root@localhost");
			await page.fill("#login [name=password]", "root-pw");
			await page.click("#login [type=submit]");
			await page.locator("#login-error", { hasText: "configuration needed" }).waitFor();

			// The operator fixes the file and clicks Reload (no token: loopback may).
			h.write("[limits]\nstanza_size = 300000\n");
			await provideSelfSignedCertificate(loadConfigFile(h.config));
			await page.click("#reload");
			await page.locator('#state[data-state="running"]').waitFor();
			await page.locator("#config-errors-box").waitFor({ state: "hidden" });
			assert.deepEqual(network.external, []);
		} finally {
			await browser.close();
			await h.close();
		}
	});
});
