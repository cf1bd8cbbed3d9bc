/**
 * Issue 15, backups: a backup taken while @xmpp/client clients chat is a consistent snapshot,
 * and the round trip is exact: backup on one instance, restore on a fresh one through the
 * `backup.restore` command (its sessions end with `system-shutdown`, RFC 6120 §4.9.3.22, and
 * the server starts again on the restored configuration), and `parley export` (XEP-0227) of
 * both prints the same document.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type XmlElement, xml } from "@xmpp/client";
import {
	BackupManager,
	type BackupProgress,
	CONFIG_TEMPLATE,
} from "../../src/admin/backup/manager.ts";
import { backupCommands, createBackupCommands } from "../../src/admin/commands/backup.ts";
import { CommandError } from "../../src/core/commands.ts";
import { loadConfigFile } from "../../src/core/config/load.ts";
import type { AnyAdminCommand, Core } from "../../src/core/contracts.ts";
import { exportPie } from "../../src/storage/xep0227.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect, type XmppConnection } from "../helpers/xmpp-client.ts";

const BIN = fileURLToPath(new URL("../../bin/parley.js", import.meta.url));
const CONFIG = `[server]
data_dir = "./data"
[hosts.localhost]
[storage]
backend = "sqlite"
[listeners.c2s]
address = "127.0.0.1"
port = 0
[listeners.c2s_direct_tls]
address = "127.0.0.1"
port = 0
[listeners.http]
address = "127.0.0.1"
port = 0
[listeners.https]
address = "127.0.0.1"
port = 0
[listeners.s2s]
enabled = false
`;

const dirs: string[] = [];
const servers: TestServer[] = [];
const clients: XmppConnection[] = [];
after(async () => {
	for (const c of clients) await c.xmpp.stop().catch(() => {});
	for (const s of servers) await s.stop().catch(() => {});
	for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function instanceDir(): string {
	const dir = mkdtempSync(join(tmpdir(), "parley-backup-"));
	dirs.push(dir);
	writeFileSync(join(dir, "parley.toml"), CONFIG);
	mkdirSync(join(dir, "data"));
	return dir;
}

async function start(dir: string, users: [string, string][] = []): Promise<TestServer> {
	const config = loadConfigFile(join(dir, "parley.toml"));
	const s = await startTestServer({
		config,
		storage: "sqlite",
		dataDir: config.server.data_dir,
		users,
	});
	servers.push(s);
	return s;
}

async function login(s: TestServer, user: string, password: string): Promise<XmppConnection> {
	const c = await connect(`xmpp://127.0.0.1:${s.port}`, user, password);
	clients.push(c);
	return c;
}

function parleyExport(dir: string): Promise<string> {
	return new Promise((resolve, reject) => {
		const child = spawn(process.execPath, [BIN, "export", "--config", join(dir, "parley.toml")], {
			env: { ...process.env, PARLEY_CONFIG: "" },
			stdio: ["ignore", "pipe", "inherit"],
		});
		let out = "";
		child.stdout.setEncoding("utf8").on("data", (d: string) => {
			out += d;
		});
		child.on("error", reject);
		child.on("exit", (code) =>
			code === 0 ? resolve(out) : reject(new Error(`parley export exited ${code}`)),
		);
	});
}

/** The numbers of the offline messages to carol ("n=12") in a XEP-0227 export. */
function offlineNumbers(pie: string): number[] {
	return [...pie.matchAll(/<body>n=(\d+)<\/body>/g)].map((m) => Number(m[1]));
}

const USERS: [string, string][] = [
	["alice@localhost", "alice-pw"],
	["bob@localhost", "bob-pw"],
	["carol@localhost", "carol-pw"],
];

describe("backups while clients chat, and the round trip", { timeout: 120_000 }, () => {
	test("a backup taken during chat traffic holds a consistent prefix of it", async () => {
		const dirA = instanceDir();
		const a = await start(dirA, USERS);
		const alice = await login(a, "alice", "alice-pw");
		const bob = await login(a, "bob", "bob-pw");
		// Available (RFC 6121 §4.2): a message to bob's bare JID reaches this session.
		await bob.xmpp.send(xml("presence"));
		await waitFor(
			() => bob.stanzas.some((st: XmlElement) => st.is("presence") && st.attrs.from === bob.jid),
			"bob's own presence back (RFC 6121 §4.2.2)",
		);
		// Alice writes to bob (online) and carol (offline: each message is stored, XEP-0160).
		let sent = 0;
		let chatting = true;
		const chat = (async () => {
			while (chatting) {
				sent++;
				await alice.xmpp.send(
					xml("message", { to: "carol@localhost", type: "chat" }, xml("body", {}, `n=${sent}`)),
				);
				await alice.xmpp.send(
					xml("message", { to: "bob@localhost", type: "chat" }, xml("body", {}, `n=${sent}`)),
				);
				await new Promise((r) => setTimeout(r, 1));
			}
		})();
		const stored = async () => offlineNumbers(await exportPie(a.server.storage, ["localhost"]));
		await waitFor(async () => (await stored()).length >= 20, "20 stored messages");

		const phases: BackupProgress["phase"][] = [];
		const configPath = join(dirA, "parley.toml");
		const manager = new BackupManager({ config: a.server.config, configPath });
		const info = await manager.create((p) => phases.push(p.phase));
		const sentAtEnd = sent;
		await waitFor(() => sent >= sentAtEnd + 20, "20 messages after the backup");
		chatting = false;
		await chat;
		await waitFor(
			() =>
				bob.stanzas.filter((s: XmlElement) => s.is("message") && s.getChildText("body")).length >=
				sent,
			"bob to get every message",
			60_000,
		);
		assert.deepEqual(
			[...new Set(phases)],
			["database", "files", "config", "pack", "checksum", "done"],
		);

		// Restored on another instance (stopped): the offline messages are 1..k, no gap.
		const dirC = instanceDir();
		mkdirSync(join(dirC, "backups"));
		copyFileSync(info.archive.file, join(dirC, "backups", `${info.id}.tar.gz`));
		copyFileSync(
			join(dirA, "backups", `${info.id}.json`),
			join(dirC, "backups", `${info.id}.json`),
		);
		const c = new BackupManager({
			config: loadConfigFile(join(dirC, "parley.toml")),
			configPath: join(dirC, "parley.toml"),
		});
		await c.restore(info.id);
		const restored = offlineNumbers(await parleyExport(dirC));
		console.error(`# ${restored.length} of ${sent} messages in the backup taken during traffic`);
		assert.ok(restored.length >= 20, `${restored.length} messages in the backup`);
		assert.ok(
			restored.length < sent,
			`the backup (${restored.length}) was taken mid-traffic (${sent})`,
		);
		assert.deepEqual(
			restored,
			restored.map((_, i) => i + 1),
		);
	});

	test("restore on a fresh instance: sessions get system-shutdown, exports are identical", async () => {
		const dirA = instanceDir();
		const a = await start(dirA, USERS);
		const alice = await login(a, "alice", "alice-pw");
		await login(a, "bob", "bob-pw");
		for (let n = 1; n <= 30; n++) {
			await alice.xmpp.send(
				xml("message", { to: "carol@localhost", type: "chat" }, xml("body", {}, `n=${n}`)),
			);
			await alice.xmpp.send(
				xml(
					"iq",
					{ type: "set", id: `r${n}` },
					xml(
						"query",
						{ xmlns: "jabber:iq:roster" },
						xml("item", { jid: `friend${n}@example.net`, name: `Friend ${n}` }),
					),
				),
			);
		}
		await waitFor(
			async () => offlineNumbers(await exportPie(a.server.storage, ["localhost"])).length === 30,
			"30 stored messages",
		);
		const info = await new BackupManager({
			config: a.server.config,
			configPath: join(dirA, "parley.toml"),
		}).create();
		const exportA = await parleyExport(dirA);
		assert.equal(offlineNumbers(exportA).length, 30);
		assert.match(exportA, /friend30@example\.net/);

		// A fresh instance with its own account and a client on it.
		const dirB = instanceDir();
		let b = await start(dirB, [["dave@localhost", "dave-pw"]]);
		const dave = await login(b, "dave", "dave-pw");
		const streamErrors: string[] = [];
		dave.xmpp.on("element", (el: XmlElement) => {
			if (el.name === "stream:error")
				streamErrors.push(el.children.map((ch) => (ch as XmlElement).name).join());
		});
		mkdirSync(join(dirB, "backups"));
		copyFileSync(info.archive.file, join(dirB, "backups", `${info.id}.tar.gz`));
		copyFileSync(
			join(dirA, "backups", `${info.id}.json`),
			join(dirB, "backups", `${info.id}.json`),
		);

		// The command as the admin API runs it; the supervisor's part is played here.
		const commands = createBackupCommands({
			configPath: () => join(dirB, "parley.toml"),
			whileStopped: async (_core, fn) => {
				await b.server.stop();
				const result = await fn();
				b = await start(dirB);
				return result;
			},
		});
		const restore = commands.find((cmd) => cmd.name === "backup.restore");
		assert.ok(restore);
		const core: Core = b.server;
		await restore.run({ core, actor: "cli" }, restore.args.parse({ id: info.id }));

		assert.deepEqual(
			streamErrors.map((e) => e.split(",")[0]),
			["system-shutdown"],
		);
		assert.equal(await parleyExport(dirB), exportA);
		// The restored accounts log in on the new server; the fresh instance's are gone.
		await login(b, "alice", "alice-pw");
		await assert.rejects(connect(`xmpp://127.0.0.1:${b.port}`, "dave", "dave-pw"));
	});

	test("the commands: routes, progress, refusals without a supervisor, factory reset", async () => {
		assert.deepEqual(
			backupCommands.map((c) => [c.name, c.http.method, c.http.path, c.role]),
			[
				["backup.create", "POST", "/backups", "admin"],
				["backup.list", "GET", "/backups", "admin"],
				["backup.get", "GET", "/backups/:id", "admin"],
				["backup.delete", "DELETE", "/backups/:id", "admin"],
				["backup.restore", "PUT", "/backups/:id/restore", "admin"],
				["factory-reset.request", "POST", "/factory-reset", "admin"],
				["factory-reset.confirm", "PUT", "/factory-reset", "admin"],
			],
		);
		const dir = instanceDir();
		let s = await start(dir, [["alice@localhost", "alice-pw"]]);
		const alice = await login(s, "alice", "alice-pw");
		const progress: string[] = [];
		let stops = 0;
		const byName = (list: readonly AnyAdminCommand[], name: string) => {
			const c = list.find((x) => x.name === name);
			assert.ok(c, name);
			return (args: Record<string, unknown> = {}) =>
				c.run({ core: s.server, actor: "cli" }, c.args.parse(args));
		};
		const bare = (name: string) =>
			byName(createBackupCommands({ configPath: () => join(dir, "parley.toml") }), name);
		const supervised = (name: string) =>
			byName(
				createBackupCommands({
					configPath: () => join(dir, "parley.toml"),
					onProgress: (_core, p) => progress.push(p.phase),
					whileStopped: async (_core, fn) => {
						stops++;
						await s.server.stop();
						const result = await fn();
						// The supervisor's "configuration needed": no server on the template.
						if (readFileSync(join(dir, "parley.toml"), "utf8") !== CONFIG_TEMPLATE)
							s = await start(dir);
						return result;
					},
				}),
				name,
			);

		const info = (await supervised("backup.create")()) as { id: string };
		assert.equal(progress.at(-1), "done");
		assert.deepEqual(
			((await bare("backup.list")()) as { id: string }[]).map((b) => b.id),
			[info.id],
		);
		// Without a supervisor to stop the service, nothing is stopped and nothing restored.
		await assert.rejects(bare("backup.restore")({ id: info.id }), (err: unknown) => {
			assert.ok(err instanceof CommandError);
			assert.equal(err.code, "unavailable");
			return true;
		});
		// An unknown backup is refused before the service stops.
		await assert.rejects(
			supervised("backup.restore")({ id: "parley-20990101T000000Z-abcdef" }),
			/no backup/,
		);
		assert.equal(stops, 0);
		assert.equal(s.server.state, "running");
		assert.ok(alice.xmpp.status === "online", "alice's session is still there");

		const { token } = (await supervised("factory-reset.request")()) as { token: string };
		assert.deepEqual(await supervised("factory-reset.confirm")({ token }), {
			configurationNeeded: true,
		});
		assert.equal(stops, 1);
		assert.equal(readFileSync(join(dir, "parley.toml"), "utf8"), CONFIG_TEMPLATE);
		await assert.rejects(connect(`xmpp://127.0.0.1:${s.port}`, "alice", "alice-pw"));
	});
});
