/**
 * The backup commands (commands/backup.ts, BackupManager in backup/) run by the Supervisor
 * (issue 15): a backup in `backing_up` (XMPP serves, nothing writes through the API), a restore
 * in `restoring` and a confirmed factory reset in `factory_resetting`, the XMPP service stopped
 * around them and started again on the configuration read again. Each takes the lifecycle
 * slot, so a second one meanwhile gets 409 naming it; a failure leaves a named state.
 */
import type { AnyAdminCommand } from "../core/commands.ts";
import { createBackupCommands } from "./commands/backup.ts";
import type { Supervisor } from "./supervisor.ts";

type StoppedOperation = { state: "restoring" | "factory_resetting"; name: string };

const RESTORE: StoppedOperation = { state: "restoring", name: "restore" };
const RESET: StoppedOperation = { state: "factory_resetting", name: "factory-reset" };

export function supervisedBackupCommands(
	supervisor: Supervisor,
	configPath: () => string | undefined,
): AnyAdminCommand[] {
	// Which operation the next `whileStopped` is: a restore unless a reset's confirm set it.
	let next = RESTORE;
	const commands = createBackupCommands({
		configPath,
		onProgress: (_core, progress) => supervisor.reportProgress(progress),
		whileStopped: (_core, fn) =>
			supervisor.runOperation(next.state, next.name, async (ctx) => {
				await ctx.stopServer();
				try {
					return await fn();
				} finally {
					// A configuration that does not start leaves configuration_needed or
					// start_failed (runOperation settles it); the operation itself succeeded.
					await ctx.startServer().catch(() => undefined);
				}
			}),
	});
	return commands.map((c): AnyAdminCommand => {
		if (c.name === "backup.create")
			return {
				...c,
				run: (ctx, args) => supervisor.runOperation("backing_up", "backup", () => c.run(ctx, args)),
			};
		if (c.name === "factory-reset.confirm")
			return {
				...c,
				run: async (ctx, args) => {
					next = RESET;
					try {
						return await c.run(ctx, args);
					} finally {
						next = RESTORE;
					}
				},
			};
		return c;
	});
}
