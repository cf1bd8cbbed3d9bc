/**
 * The backup, restore and factory-reset operations (issue 15), defined once for the admin API,
 * the CLI and ad-hoc commands (src/core/commands.ts). The work is the BackupManager's
 * (src/admin/backup/manager.ts); what these add is where the configuration file is and how the
 * XMPP service is stopped around a restore or a reset, which the process that runs the server
 * knows (the admin Supervisor's `runOperation`): {@link createBackupCommands} takes it. The
 * default, {@link backupCommands}, finds the file by the CLI's rule and refuses a restore or a
 * reset while it cannot stop the server.
 */
import { z } from "zod";
import { CommandError, defineCommand } from "../../core/commands.ts";
import { findConfigFile } from "../../core/config/load.ts";
import type { AnyAdminCommand, Core } from "../../core/contracts.ts";
import { BackupManager, type BackupProgress } from "../backup/manager.ts";

/** What the backup commands need from the process that runs the server. */
export interface BackupEnvironment {
	/** The configuration file `core` was started from; undefined: built-in defaults. */
	configPath(core: Core): string | undefined;
	/**
	 * Runs `fn` with the XMPP service on this data stopped (every session ended with
	 * `system-shutdown`, RFC 6120 §4.9.3.22) and starts it again afterwards, on the configuration
	 * read again. Absent: restore and factory reset are refused while the server runs.
	 */
	whileStopped?<T>(core: Core, fn: () => Promise<T>): Promise<T>;
	/** Progress of a backup or a restore (the admin API streams it as Server-Sent Events). */
	onProgress?(core: Core, progress: BackupProgress): void;
}

const backupId = z.string().min(1).describe("a backup's id, as backup.list shows it");

export function createBackupCommands(env: BackupEnvironment): AnyAdminCommand[] {
	const manager = (core: Core) =>
		new BackupManager({ config: core.config, configPath: env.configPath(core) });
	const progress = (core: Core) => (p: BackupProgress) => env.onProgress?.(core, p);
	const stopped = <T>(core: Core, what: string, fn: () => Promise<T>): Promise<T> => {
		if (!env.whileStopped)
			throw new CommandError(
				"unavailable",
				`${what} needs the XMPP service stopped: run it through the admin API's supervisor, or stop the server and use the parley command`,
			);
		return env.whileStopped(core, fn);
	};
	return [
		defineCommand({
			name: "backup.create",
			description: "make a backup of the data and the configuration while the server runs",
			args: z.object({}),
			role: "admin",
			http: { method: "POST", path: "/backups", status: 201 },
			run: (ctx) => manager(ctx.core).create(progress(ctx.core)),
		}),
		defineCommand({
			name: "backup.list",
			description: "list the backups, oldest first",
			args: z.object({}),
			role: "admin",
			http: { method: "GET", path: "/backups" },
			run: (ctx) => manager(ctx.core).list(),
		}),
		defineCommand({
			name: "backup.get",
			description: "describe one backup (its archive's path, size and SHA-256)",
			args: z.object({ id: backupId }),
			role: "admin",
			http: { method: "GET", path: "/backups/:id" },
			run: (ctx, args) => manager(ctx.core).get(args.id),
		}),
		defineCommand({
			name: "backup.delete",
			description: "delete a backup",
			args: z.object({ id: backupId }),
			role: "admin",
			http: { method: "DELETE", path: "/backups/:id", status: 204 },
			run: async (ctx, args) => {
				await manager(ctx.core).delete(args.id);
			},
		}),
		defineCommand({
			name: "backup.restore",
			description:
				"replace the data (and the configuration) with a backup's; sessions end, the server starts again",
			args: z.object({
				id: backupId,
				config: z
					.boolean()
					.default(true)
					.describe("restore the backup's configuration file too (false: the data only)"),
			}),
			role: "admin",
			http: { method: "PUT", path: "/backups/:id/restore" },
			run: async (ctx, args) => {
				const m = manager(ctx.core);
				// Checked before the service stops: a damaged or unknown backup costs no session.
				await m.get(args.id);
				return stopped(ctx.core, "a restore", () =>
					m.restore(args.id, { withConfig: args.config, onProgress: progress(ctx.core) }),
				);
			},
		}),
		defineCommand({
			name: "factory-reset.request",
			description: "step one of a factory reset: a confirmation token, valid five minutes",
			args: z.object({}),
			role: "admin",
			http: { method: "POST", path: "/factory-reset" },
			run: (ctx) => manager(ctx.core).requestReset(),
		}),
		defineCommand({
			name: "factory-reset.confirm",
			description:
				"step two: erase every account and message and reset the configuration to a template",
			args: z.object({ token: z.string().min(1) }),
			role: "admin",
			// Issue 15: 205 Reset Content, the operator's view of the server is to be reset.
			http: { method: "PUT", path: "/factory-reset", status: 205 },
			run: (ctx, args) =>
				stopped(ctx.core, "a factory reset", () => manager(ctx.core).confirmReset(args.token)),
		}),
	];
}

/** The configuration file by the `parley` command's rule (`PARLEY_CONFIG`, `./parley.toml`). */
export const backupCommands: readonly AnyAdminCommand[] = createBackupCommands({
	configPath: () => findConfigFile(undefined).path,
});
