/**
 * Issue 15: backups and restores through the admin API run in the Supervisor's states
 * (src/admin/supervised-backups.ts): `POST /backups` in `backing_up`, `PUT
 * /backups/{id}/restore` in `restoring` with the XMPP service stopped around it (a new Server
 * instance afterwards), both back to `running`; an account made after the backup is gone after
 * the restore. The backup itself is BackupManager's (test/e2e/backup*.test.ts test it).
 */
import assert from "node:assert/strict";
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
