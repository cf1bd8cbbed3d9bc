/**
 * `parley backup create|list|restore <id>|delete <id>` and `parley factory-reset`, with local
 * access to the configuration (src/admin/backup/manager.ts does the work). A backup may be made
 * while the server runs; a restore and a reset need it stopped (the admin API's supervisor does
 * both with a running server).
 */
import type { Command } from "commander";
import type { BackupInfo } from "../../admin/backup/manager.ts";
import { CommandError } from "../../core/commands.ts";
import { findConfigFile } from "../../core/config/load.ts";
import type { Config } from "../../core/config/schema.ts";
import { CliError, CONFIG_HELP, EXIT, loadConfig } from "../common.ts";
import { IN_USE, probeListeners } from "../ports.ts";

async function manager(opts: { config?: string }) {
	const { BackupManager, recoverRestore } = await import("../../admin/backup/manager.ts");
	const configPath = findConfigFile(opts.config).path;
	let config = loadConfig(opts.config);
	// A restore a crash interrupted is finished (or thrown away) before anything is read.
	if ((await recoverRestore(config, configPath)) === "completed") config = loadConfig(opts.config);
	return new BackupManager({ config, configPath });
}

/** CommandError (the manager's refusals) as the CLI's one-line failures. */
function cliFailure(err: unknown): never {
	if (err instanceof CommandError)
		throw new CliError(err.message, err.code === "not_found" ? EXIT.NOT_FOUND : EXIT.FAILURE);
	throw err;
}

/** A server listening on this configuration's ports holds the data: refuse to replace it. */
async function refuseWhileRunning(config: Config, what: string): Promise<void> {
	const busy = (await probeListeners(config)).filter((l) => l.problem === IN_USE);
	if (busy.length > 0)
		throw new CliError(
			`${what}: a server seems to run on this configuration (${busy.map((l) => `${l.address}:${l.port}`).join(", ")} in use): stop it first, or use the admin API`,
			EXIT.FAILURE,
		);
}

function line(b: BackupInfo): string {
	return `${b.id}  ${b.created}  ${b.archive.bytes} bytes  ${b.files} files  sha256:${b.archive.sha256}`;
}

export function addBackupCommands(program: Command): void {
	const backup = program
		.command("backup")
		.description("backups of the data and the configuration, and restore");
	backup
		.command("create")
		.description("write a backup to backup.dir (the server may keep running)")
		.option("-c, --config <file>", CONFIG_HELP)
		.action(async (opts: { config?: string }) => {
			const m = await manager(opts);
			const info = await m.create().catch(cliFailure);
			console.log(info.id);
			console.error(`parley: ${info.archive.file} (${info.archive.bytes} bytes)`);
		});
	backup
		.command("list")
		.description("list the backups, oldest first")
		.option("-c, --config <file>", CONFIG_HELP)
		.option("--json", "one JSON array")
		.action(async (opts: { config?: string; json?: boolean }) => {
			const list = await (await manager(opts)).list().catch(cliFailure);
			if (opts.json) console.log(JSON.stringify(list, null, 2));
			else for (const b of list) console.log(line(b));
		});
	backup
		.command("restore <id>")
		.description(
			"replace the data and the configuration file with a backup's (the server must be stopped)",
		)
		.option("-c, --config <file>", CONFIG_HELP)
		.option("--data-only", "keep the current configuration file")
		.action(async (id: string, opts: { config?: string; dataOnly?: boolean }) => {
			const config = loadConfig(opts.config);
			await refuseWhileRunning(config, "restore");
			const m = await manager(opts);
			await m.restore(id, { withConfig: !opts.dataOnly }).catch(cliFailure);
			console.log(`restored ${id}`);
		});
	backup
		.command("delete <id>")
		.description("delete a backup")
		.option("-c, --config <file>", CONFIG_HELP)
		.action(async (id: string, opts: { config?: string }) => {
			await (await manager(opts)).delete(id).catch(cliFailure);
		});
	program
		.command("factory-reset")
		.description(
			"erase all data and reset the configuration file to a template: run once for a token, again with --confirm",
		)
		.option("-c, --config <file>", CONFIG_HELP)
		.option("--confirm <token>", "the token the first run printed (valid five minutes)")
		.action(async (opts: { config?: string; confirm?: string }) => {
			const m = await manager(opts);
			if (opts.confirm === undefined) {
				const { token, expires } = await m.requestReset().catch(cliFailure);
				console.log(token);
				console.error(
					`parley: this erases every account, message and file under ${m.paths.dataDir}${m.paths.configPath ? ` and replaces ${m.paths.configPath}` : ""}. To go on, before ${expires}: parley factory-reset --confirm ${token}`,
				);
				return;
			}
			await refuseWhileRunning(loadConfig(opts.config), "factory reset");
			await m.confirmReset(opts.confirm).catch(cliFailure);
			console.log("factory reset done: the server needs a configuration");
		});
}
