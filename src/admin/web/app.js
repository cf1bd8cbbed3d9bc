// Parley's web admin page (issue 15). One ES module, no framework: it calls the admin API on
// the same origin (docs/architecture.md "Admin API") with the bearer token that
// POST /auth/tokens issued, kept in sessionStorage (gone when the tab closes).

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "parley-admin-token";
const JID_KEY = "parley-admin-jid";
/** The phases a backup goes through (src/admin/backup/manager.ts BackupPhase), for the bar. */
const BACKUP_PHASES = ["database", "files", "config", "pack", "checksum", "verify"];

let token = sessionStorage.getItem(TOKEN_KEY);
let lastState = "";

/** An API error: the answer's `{code, message}` and status. */
class ApiError extends Error {
	constructor(status, body) {
		super(body?.message ?? `HTTP ${status}`);
		this.status = status;
		this.code = body?.code;
		this.body = body;
	}
}

/** A JSON call to the admin API; throws ApiError on a status >= 400. */
async function api(method, path, body) {
	const headers = {};
	if (token) headers.authorization = `Bearer ${token}`;
	const init = { method, headers };
	if (body !== undefined) {
		headers["content-type"] = "application/json";
		init.body = JSON.stringify(body);
	}
	const res = await fetch(path, init);
	const text = await res.text();
	let data = {};
	if (text) {
		try {
			data = JSON.parse(text);
		} catch {
			data = { message: text };
		}
	}
	if (res.status === 401 && token && path !== "/auth/tokens") logout("the session expired");
	if (!res.ok) throw new ApiError(res.status, data);
	return data;
}

function say(text) {
	$("message").textContent = text ?? "";
}

function fail(err) {
	say(err instanceof Error ? err.message : String(err));
}

/** A table row of text cells and, last, optional nodes (buttons). */
function row(cells, extra = []) {
	const tr = document.createElement("tr");
	for (const c of cells) {
		const td = document.createElement("td");
		if (c instanceof Node) td.append(c);
		else td.textContent = c ?? "";
		tr.append(td);
	}
	if (extra.length) {
		const td = document.createElement("td");
		td.append(...extra);
		tr.append(td);
	}
	return tr;
}

function button(label, onClick) {
	const b = document.createElement("button");
	b.type = "button";
	b.textContent = label;
	b.addEventListener("click", () => onClick(b));
	return b;
}

// -- state ---------------------------------------------------------------------------------

async function pollStatus() {
	try {
		const res = await fetch("/status");
		const s = await res.json();
		showStatus(s);
	} catch (err) {
		$("state").textContent = "unreachable";
		$("state").dataset.state = "unreachable";
		$("status-detail").textContent = String(err);
	}
}

function showStatus(s) {
	const state = $("state");
	state.textContent = s.state;
	state.dataset.state = s.state;
	$("since").textContent = s.since ? `since ${new Date(s.since).toLocaleString()}` : "";
	const parts = [];
	if (s.operation) parts.push(`operation: ${s.operation}`);
	if (Array.isArray(s.hosts) && s.hosts.length) parts.push(`hosts: ${s.hosts.join(", ")}`);
	if (typeof s.sessions === "number") parts.push(`sessions: ${s.sessions}`);
	if (Array.isArray(s.restartNeeded) && s.restartNeeded.length)
		parts.push(`waiting for a restart: ${s.restartNeeded.join(", ")}`);
	$("status-detail").textContent = parts.join(" · ");
	const err = $("state-error");
	err.hidden = !s.error;
	const e = s.error;
	err.textContent = !e
		? ""
		: typeof e === "string"
			? `Error: ${e}`
			: `Last error${e.operation ? ` (${e.operation})` : ""}: ${e.message ?? JSON.stringify(e)}`;
	const problems = Array.isArray(s.configErrors) ? s.configErrors : [];
	$("config-errors-box").hidden = problems.length === 0;
	const body = $("config-errors").tBodies[0];
	body.replaceChildren(
		...problems.map((p) =>
			row([p.file ?? "", p.line === undefined ? "" : String(p.line), p.key ?? "", p.message]),
		),
	);
	// Back to a state that serves the API: refresh what the dashboard shows.
	if (s.state !== lastState) {
		const was = lastState;
		lastState = s.state;
		if (token && was && (s.state === "running" || s.state === "running_misconfigured"))
			refreshAll();
	}
}

async function lifecycle(what) {
	const out = $("lifecycle-result");
	out.textContent = `${what}…`;
	try {
		const r = await api("POST", `/lifecycle/${what}`);
		out.textContent = `${what}: ${r.state}`;
	} catch (err) {
		out.textContent =
			err.code === "config_invalid"
				? `${what}: the configuration does not validate (see the errors above)`
				: `${what} failed: ${err.message}`;
	}
	await pollStatus();
}

// -- login ---------------------------------------------------------------------------------

function showLoggedIn() {
	const on = Boolean(token);
	$("login-panel").hidden = on;
	$("dashboard").hidden = !on;
	$("who").hidden = !on;
	$("who-jid").textContent = sessionStorage.getItem(JID_KEY) ?? "";
	if (on) refreshAll();
}

function logout(why) {
	const old = token;
	token = null;
	sessionStorage.removeItem(TOKEN_KEY);
	sessionStorage.removeItem(JID_KEY);
	if (old && !why)
		fetch("/auth/tokens/current", {
			method: "DELETE",
			headers: { authorization: `Bearer ${old}` },
		}).catch(() => undefined);
	say(why ?? "");
	showLoggedIn();
}

async function login(ev) {
	ev.preventDefault();
	const form = ev.target;
	const jid = form.jid.value.trim();
	$("login-error").textContent = "";
	try {
		const r = await api("POST", "/auth/tokens", { jid, password: form.password.value });
		token = r.token;
		sessionStorage.setItem(TOKEN_KEY, token);
		sessionStorage.setItem(JID_KEY, jid);
		form.reset();
		say("");
		showLoggedIn();
	} catch (err) {
		$("login-error").textContent = err.message;
	}
}

// -- metrics -------------------------------------------------------------------------------

/** The figures the dashboard shows: metric name (src/core/metrics.ts), title, label to split by. */
const FIGURES = {
	parley_sessions: ["sessions", "transport"],
	parley_stanzas_received_total: ["stanzas received", "stream"],
	parley_stanzas_sent_total: ["stanzas sent", "stream"],
	parley_auth_total: ["logins", "result"],
};

/** Each figure's total and its split by one label, from the Prometheus text format. */
function metricFigures(text) {
	const sums = new Map();
	const add = (key, v) => sums.set(key, (sums.get(key) ?? 0) + v);
	for (const line of text.split("\n")) {
		// A family with no sample yet (no session so far) still shows, as 0.
		const declared = /^# TYPE (\S+)/.exec(line);
		if (declared && FIGURES[declared[1]]) add(FIGURES[declared[1]][0], 0);
		if (!line || line.startsWith("#")) continue;
		const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
		const figure = m && FIGURES[m[1]];
		if (!figure) continue;
		const v = Number(m[3]);
		if (!Number.isFinite(v)) continue;
		const [title, label] = figure;
		add(title, v);
		const l = new RegExp(`(?:^|,)\\s*${label}="([^"]*)"`).exec(m[2] ?? "");
		if (l?.[1]) add(`${title}: ${l[1]}`, v);
	}
	return sums;
}

async function refreshMetrics() {
	const headers = token ? { authorization: `Bearer ${token}` } : {};
	try {
		const res = await fetch("/metrics", { headers });
		if (!res.ok) {
			$("metrics-panel").hidden = true;
			return;
		}
		const sums = metricFigures(await res.text());
		const dl = $("metrics");
		dl.replaceChildren();
		for (const [name, value] of [...sums].sort(([a], [b]) => (a < b ? -1 : 1))) {
			const dt = document.createElement("dt");
			dt.textContent = name;
			dt.dataset.figure = name;
			const dd = document.createElement("dd");
			dd.textContent = String(value);
			dl.append(dt, dd);
		}
		$("metrics-panel").hidden = sums.size === 0;
	} catch {
		$("metrics-panel").hidden = true;
	}
}

// -- users ---------------------------------------------------------------------------------

async function refreshUsers() {
	const { users = [] } = await api("GET", "/users");
	$("users").tBodies[0].replaceChildren(
		...users.map((u) => {
			const select = document.createElement("select");
			select.setAttribute("aria-label", `role of ${u.jid}`);
			for (const r of ["user", "admin"]) select.append(new Option(r, r, false, r === u.role));
			select.addEventListener("change", () =>
				api("PUT", `/users/${encodeURIComponent(u.jid)}/role`, { role: select.value })
					.then(refreshUsers)
					.catch((err) => {
						fail(err);
						refreshUsers().catch(fail);
					}),
			);
			const tr = row(
				[u.jid, select],
				[
					button("Remove", () => {
						if (!confirm(`Remove ${u.jid} and all its data?`)) return;
						api("DELETE", `/users/${encodeURIComponent(u.jid)}`)
							.then(refreshUsers)
							.catch(fail);
					}),
				],
			);
			tr.dataset.jid = u.jid;
			return tr;
		}),
	);
}

async function addUser(ev) {
	ev.preventDefault();
	const f = ev.target;
	try {
		await api("POST", "/users", {
			jid: f.jid.value.trim(),
			password: f.password.value,
			role: f.role.value,
		});
		f.reset();
		say("");
		await refreshUsers();
	} catch (err) {
		fail(err);
	}
}

// -- invitations ---------------------------------------------------------------------------

function link(url) {
	const a = document.createElement("a");
	a.href = url;
	a.textContent = url;
	a.target = "_blank";
	a.rel = "noreferrer";
	return a;
}

async function refreshInvites() {
	const { invites = [] } = await api("GET", "/invites");
	$("invites").tBodies[0].replaceChildren(
		...invites.map((i) =>
			row(
				[
					link(i["landing-url"]),
					`${i.uses ?? 0} / ${i.max_uses === 0 ? "∞" : (i.max_uses ?? 1)}`,
					`${new Date(i.expire).toLocaleString()}${i.valid === false ? " (no longer valid)" : ""}`,
				],
				[
					button("Revoke", () =>
						api("DELETE", `/invites/${encodeURIComponent(i.token)}`)
							.then(refreshInvites)
							.catch(fail),
					),
				],
			),
		),
	);
}

async function createInvite(ev) {
	ev.preventDefault();
	const f = ev.target;
	const body = { uses: Number(f.uses.value || 1) };
	if (f.hours.value) body.ttl = Math.round(Number(f.hours.value) * 3600);
	try {
		const i = await api("POST", "/invites", body);
		$("invite-new-url").replaceChildren(link(i["landing-url"]));
		$("invite-new").hidden = false;
		say("");
		await refreshInvites();
	} catch (err) {
		fail(err);
	}
}

// -- backups -------------------------------------------------------------------------------

function size(bytes) {
	if (typeof bytes !== "number") return "";
	if (bytes < 1024) return `${bytes} B`;
	if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
	return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

async function refreshBackups() {
	const r = await api("GET", "/backups");
	const list = Array.isArray(r) ? r : (r.backups ?? []);
	$("backups").tBodies[0].replaceChildren(
		...[...list].reverse().map((b) => {
			const tr = row(
				[b.id, new Date(b.created).toLocaleString(), size(b.archive?.bytes)],
				[
					button("Download", (btn) => downloadBackup(b.id, btn).catch(fail)),
					button("Delete", () => {
						if (!confirm(`Delete the backup ${b.id}?`)) return;
						api("DELETE", `/backups/${encodeURIComponent(b.id)}`)
							.then(refreshBackups)
							.catch(fail);
					}),
				],
			);
			tr.dataset.backup = b.id;
			return tr;
		}),
	);
}

/**
 * A backup's archive: fetched with the bearer token (a plain link could not carry it), then
 * handed to the browser as a file.
 */
async function downloadBackup(id, btn) {
	btn.disabled = true;
	try {
		const res = await fetch(`/backups/${encodeURIComponent(id)}/download`, {
			headers: { authorization: `Bearer ${token}` },
		});
		if (!res.ok) throw new Error(`download: ${res.status} ${(await res.json()).message ?? ""}`);
		const url = URL.createObjectURL(await res.blob());
		const a = document.createElement("a");
		a.href = url;
		a.download = `${id}.tar.gz`;
		document.body.append(a);
		a.click();
		a.remove();
		setTimeout(() => URL.revokeObjectURL(url), 60_000);
	} finally {
		btn.disabled = false;
	}
}

/** Reads a text/event-stream body: calls `onEvent(name, data)` for each event. */
async function readEvents(res, onEvent) {
	const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
	let buf = "";
	for (;;) {
		const { value, done } = await reader.read();
		if (value) buf += value;
		let cut = buf.search(/\r?\n\r?\n/);
		while (cut >= 0) {
			const block = buf.slice(0, cut);
			buf = buf.slice(cut).replace(/^\r?\n\r?\n/, "");
			let name = "message";
			const data = [];
			for (const line of block.split(/\r?\n/)) {
				if (line.startsWith("event:")) name = line.slice(6).trim();
				else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
			}
			if (data.length) {
				let parsed;
				try {
					parsed = JSON.parse(data.join("\n"));
				} catch {
					parsed = data.join("\n");
				}
				onEvent(name, parsed);
			}
			cut = buf.search(/\r?\n\r?\n/);
		}
		if (done) return;
	}
}

/** The backup an event carries (the final one), bare or wrapped; else undefined. */
function backupOf(name, data) {
	if (!data || typeof data !== "object") return undefined;
	const b = data.backup ?? data.result ?? data;
	if (
		b &&
		typeof b === "object" &&
		b.id &&
		(b.archive || /^(done|result|complete|end)$/.test(name))
	)
		return b;
	return undefined;
}

async function createBackup() {
	const btn = $("backup-create");
	const bar = $("backup-progress");
	const phase = $("backup-phase");
	btn.disabled = true;
	bar.hidden = false;
	bar.removeAttribute("value"); // indeterminate until the server tells more
	phase.textContent = "backing up…";
	try {
		const headers = {
			// A server without the stream ignores this and answers JSON.
			accept: "text/event-stream",
			"content-type": "application/json",
		};
		if (token) headers.authorization = `Bearer ${token}`;
		const res = await fetch("/backups", { method: "POST", headers, body: "{}" });
		const type = res.headers.get("content-type") ?? "";
		let result;
		let error;
		if (res.ok && type.startsWith("text/event-stream")) {
			await readEvents(res, (name, data) => {
				if (
					name === "error" ||
					(data && typeof data === "object" && data.code && data.message && !data.id)
				) {
					error = data.message ?? String(data);
				} else if (backupOf(name, data)) {
					result = backupOf(name, data);
				} else if (data && typeof data === "object" && data.phase) {
					const i = BACKUP_PHASES.indexOf(data.phase);
					if (i >= 0) {
						bar.max = BACKUP_PHASES.length;
						bar.value = i + 0.5;
					}
					phase.textContent = `${data.phase}${data.bytes ? ` (${size(data.bytes)})` : ""}`;
				}
			});
		} else {
			const text = await res.text();
			const data = text ? JSON.parse(text) : {};
			if (res.ok) result = data;
			else error = data.message ?? `HTTP ${res.status}`;
		}
		if (error) throw new Error(error);
		bar.max = 1;
		bar.value = 1;
		phase.textContent = result?.id ? `done: ${result.id}` : "done";
		await refreshBackups();
	} catch (err) {
		phase.textContent = `backup failed: ${err.message}`;
	} finally {
		btn.disabled = false;
		setTimeout(() => {
			bar.hidden = true;
		}, 1500);
	}
}

// -- wiring --------------------------------------------------------------------------------

function refreshAll() {
	for (const f of [refreshUsers, refreshInvites, refreshBackups, refreshMetrics])
		f().catch((err) => {
			// A state that does not serve the route (503): the state panel says why.
			if (err.status !== 503) fail(err);
		});
}

document.addEventListener("DOMContentLoaded", () => {
	$("login").addEventListener("submit", login);
	$("logout").addEventListener("click", () => logout());
	$("reload").addEventListener("click", () => lifecycle("reload"));
	$("restart").addEventListener("click", () => lifecycle("restart"));
	$("user-add").addEventListener("submit", addUser);
	$("invite-create").addEventListener("submit", createInvite);
	$("backup-create").addEventListener("click", createBackup);
	showLoggedIn();
	pollStatus();
	setInterval(pollStatus, 2000);
	setInterval(() => {
		if (token && !$("dashboard").hidden) refreshMetrics();
	}, 10000);
});
