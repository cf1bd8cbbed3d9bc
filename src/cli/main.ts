/**
 * The `parley` command. Exit codes scripts can rely on (also in the README):
 *   0 success · 1 runtime failure · 2 usage error · 3 invalid configuration
 *   4 account not found · 5 account already exists · 6 check failed
 *
 * One file per command group in commands/; what they share is in common.ts.
 */

import { Command, CommanderError } from "commander";
import pkg from "../../package.json" with { type: "json" };
import { addAdminCommands } from "./commands/admin.ts";
import { addBackupCommands } from "./commands/backup.ts";
import { addCheckCommand } from "./commands/check.ts";
import { addClusterCommands } from "./commands/cluster.ts";
import { addExportImportCommands } from "./commands/export-import.ts";
import { addPushCommand } from "./commands/push.ts";
import { addReportCommands } from "./commands/report.ts";
import { addS2SCommand } from "./commands/s2s.ts";
import { addServeCommand } from "./commands/serve.ts";
import { addStorageCommands } from "./commands/storage.ts";
import { addUserCommands } from "./commands/user.ts";
import { CliError, EXIT } from "./common.ts";

export function buildProgram(): Command {
	const program = new Command("parley")
		.description("Parley, an XMPP server")
		.version(pkg.version)
		.exitOverride()
		.showHelpAfterError();

	addServeCommand(program);
	addCheckCommand(program);
	addUserCommands(program);
	addStorageCommands(program);
	addExportImportCommands(program);
	addS2SCommand(program);
	addPushCommand(program);
	addAdminCommands(program);
	addBackupCommands(program);
	addReportCommands(program);
	addClusterCommands(program);
	return program;
}

export async function main(argv: string[]): Promise<number> {
	const program = buildProgram();
	try {
		await program.parseAsync(argv, { from: "user" });
		return EXIT.OK;
	} catch (err) {
		if (err instanceof CommanderError) {
			// --help and --version end through here with exit code 0.
			return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
		}
		if (err instanceof CliError) {
			console.error(`parley: ${err.message}`);
			return err.exitCode;
		}
		console.error(`parley: ${(err as Error).stack ?? err}`);
		return EXIT.FAILURE;
	}
}
