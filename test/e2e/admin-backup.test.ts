/**
 * Issue 15: backups and restores through the admin API run in the Supervisor's states
 * (src/admin/supervised-backups.ts): `POST /backups` in `backing_up`, `PUT
 * /backups/{id}/restore` in `restoring` with the XMPP service stopped around it (a new Server
 * instance afterwards), both back to `running`; an account made after the backup is gone after
 * the restore. The backup itself is BackupManager's (test/e2e/backup*.test.ts test it).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, test } from "node:test";
import type { StateName } from "../../src/admin/states.ts";
import { supervisedBackupCommands } from "../../src/admin/supervised-backups.ts";
import { type AdminHarness, startAdmin } from "../helpers/admin.ts";

let h: AdminHarness;
let token: string;
const transitions: StateName[] = [];

before(async () => {
	h = await startAdmin({
		commands: (supervisor, config) => supervisedBackupCommands(supervisor, () => config),
	});
	h.supervisor.onTransition((state) => transitions.push(state));
	await h.request("PUT", "/init/first-account", {
		body: { jid: "root@localhost", password: "root-pw" },
	});
	token = await h.token("root@localhost", "root-pw");
});
after(() => h.close());

test("POST /backups runs in backing_up, then running; PUT /backups/{id}/restore in restoring, a new server, then running", async () => {
	const made = await h.request("POST", "/backups", { token });
	assert.equal(made.status, 201, JSON.stringify(made.body));
	assert.deepEqual(transitions, ["backing_up", "running"]);
	const id = made.body.id as string;
	assert.ok(id);

	// After the backup: an account the restore will take away.
	assert.equal(
		(await h.request("POST", "/users", { token, body: { jid: "late@localhost", password: "pw" } }))
			.status,
		201,
	);
	const before = h.supervisor.server;
	const restored = await h.request("PUT", `/backups/${id}/restore`, {
		token,
		body: { config: false },
	});
	assert.equal(restored.status, 200, JSON.stringify(restored.body));
	assert.deepEqual(transitions, ["backing_up", "running", "restoring", "running"]);
	assert.ok(h.supervisor.server && h.supervisor.server !== before, "a new Server instance");
	// The token was issued before the backup: it is in the restored storage.
	const users = await h.request("GET", "/users", { token });
	assert.equal(users.status, 200, JSON.stringify(users.body));
	assert.deepEqual(users.body.users, [{ jid: "root@localhost", role: "admin" }]);
	const audit = h.lines.filter((l) => l.audit === true).map((l) => `${l.action} ${l.status}`);
	assert.ok(
		audit.includes("backup.create 201") && audit.includes("backup.restore 200"),
		audit.join(),
	);
});

/** Server-Sent Events (text/event-stream) read from a fetch response: [event, data] pairs. */
async function events(res: Response): Promise<[string, Record<string, unknown>][]> {
	const text = await res.text();
	return text
		.split("\n\n")
		.filter((block) => block.trim() !== "")
		.map((block) => {
			const event = /^event: (.*)$/m.exec(block)?.[1] ?? "message";
			const data = /^data: (.*)$/m.exec(block)?.[1] ?? "{}";
			return [event, JSON.parse(data) as Record<string, unknown>];
		});
}

test("issue 15: POST /backups with Accept: text/event-stream streams each phase, then the result; the archive downloads with its SHA-256", async () => {
	const res = await fetch(`http://127.0.0.1:${h.api.port}/backups`, {
		method: "POST",
		headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" },
	});
	assert.equal(res.status, 200);
	assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
	const got = await events(res);
	const phases = got.filter(([e]) => e === "progress").map(([, d]) => d.phase);
	for (const phase of ["database", "pack", "checksum", "done"])
		assert.ok(phases.includes(phase), `${phase} in ${phases.join()}`);
	const [last, result] = got.at(-1) ?? [];
	assert.equal(last, "result", JSON.stringify(got));
	const id = result?.id as string;
	const archive = result?.archive as { bytes: number; sha256: string };
	assert.ok(id && archive);

	const dl = await fetch(`http://127.0.0.1:${h.api.port}/backups/${id}/download`, {
		headers: { authorization: `Bearer ${token}` },
	});
	assert.equal(dl.status, 200);
	assert.equal(dl.headers.get("content-type"), "application/gzip");
	const bytes = Buffer.from(await dl.arrayBuffer());
	assert.equal(bytes.length, archive.bytes);
	assert.equal(createHash("sha256").update(bytes).digest("hex"), archive.sha256);
	assert.equal(
		dl.headers.get("repr-digest"),
		`sha-256=:${Buffer.from(archive.sha256, "hex").toString("base64")}:`,
	);
	// Without a token: 401; an unknown backup: 404, as JSON.
	assert.equal((await fetch(`http://127.0.0.1:${h.api.port}/backups/${id}/download`)).status, 401);
	const missing = await h.request("GET", "/backups/parley-20200101T000000Z-abcdef/download", {
		token,
	});
	assert.equal(missing.status, 404);
	assert.equal(missing.body.code, "not_found");

	// A refusal inside the stream is an error event: an unknown backup to restore.
	const bad = await fetch(
		`http://127.0.0.1:${h.api.port}/backups/parley-20200101T000000Z-abcdef/restore`,
		{
			method: "PUT",
			headers: {
				authorization: `Bearer ${token}`,
				accept: "text/event-stream",
				"content-type": "application/json",
			},
			body: "{}",
		},
	);
	const badEvents = await events(bad);
	assert.deepEqual(badEvents.at(-1)?.[0], "error");
	assert.equal(badEvents.at(-1)?.[1].code, "not_found");
	assert.equal(h.supervisor.state, "running");
});

test("issue 15: GET /metrics is the running server's Prometheus text, without a token on loopback", async () => {
	const res = await fetch(`http://127.0.0.1:${h.api.port}/metrics`);
	assert.equal(res.status, 200);
	assert.match(res.headers.get("content-type") ?? "", /^text\/plain/);
	const text = await res.text();
	assert.match(text, /^# TYPE parley_\w+/m);
	assert.match(text, /parley_sessions\{transport="tcp"\} \d+/);
});

test("issue 15: factory reset over HTTP in two steps: a confirmation token, then 205 Reset Content with no body; every account is gone", async () => {
	const asked = await h.request("POST", "/factory-reset", { token });
	assert.equal(asked.status, 200, JSON.stringify(asked.body));
	const confirm = asked.body.token as string;
	assert.ok(confirm);
	const res = await fetch(`http://127.0.0.1:${h.api.port}/factory-reset`, {
		method: "PUT",
		headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
		body: JSON.stringify({ token: confirm }),
	});
	assert.equal(res.status, 205);
	assert.equal(await res.text(), "");
	assert.notEqual(h.supervisor.state, "factory_resetting");
	// The old token went with the data.
	assert.notEqual((await h.request("GET", "/users", { token })).status, 200);
});
