/**
 * Runs one restore in a child process and kills itself with SIGKILL at a named step of it
 * (test/e2e/backup.test.ts: kill -9 at several points of a restore).
 *
 *   node test/helpers/restore-child.ts <config file> <backup id> <step>
 *
 * With "factory-reset" for the id, a factory reset (request and confirm) instead.
 */
import { BackupManager } from "../../src/admin/backup/manager.ts";
import { loadConfigFile } from "../../src/core/config/load.ts";

const [configPath, id, killAt] = process.argv.slice(2) as [string, string, string];
const manager = new BackupManager({
	config: loadConfigFile(configPath),
	configPath,
	step: (name) => {
		if (name === killAt) process.kill(process.pid, "SIGKILL");
	},
});
if (id === "factory-reset") await manager.confirmReset((await manager.requestReset()).token);
else await manager.restore(id);
// Reached only when the step named is not one of the restore's.
process.exitCode = 3;
