/** `parley storage migrate|copy`: the database schema, and moving data between backends. */
import type { Command } from "commander";
import { resolveDataPath } from "../../core/config/load.ts";
import type { StorageBackend } from "../../storage/types.ts";
import { CONFIG_HELP, loadConfig, storageFailure } from "../common.ts";

/** Issue 4: `storage migrate`, `storage copy` (`export` and `import` are in export-import.ts). */
export function addStorageCommands(program: Command): void {
	const storage = program.command("storage").description("storage schema and moving data");
	storage
		.command("migrate")
		.description("bring the database schema to this version (the server also does it on start)")
		.option("-c, --config <file>", CONFIG_HELP)
		.option("--dry-run", "only show what would be done")
		.action(async (opts: { config?: string; dryRun?: boolean }) => {
			const config = loadConfig(opts.config);
			const { describePlan, migrateStorage } = await import("../../storage/migrations/index.ts");
			const plan = await migrateStorage(config.storage, resolveDataPath(config, "."), {
				dryRun: opts.dryRun === true,
			}).catch(storageFailure);
			console.log(describePlan(plan));
		});
	storage
		.command("copy")
		.description(
			"copy every store of every host: --from/--to sqlite:<file> or postgres://…[?schema=s]",
		)
		.option("-c, --config <file>", CONFIG_HELP)
		.requiredOption("--from <storage>", "source, e.g. sqlite:parley.sqlite")
		.requiredOption("--to <storage>", "target, e.g. postgres://parley@127.0.0.1/parley")
		.action(async (opts: { config?: string; from: string; to: string }) => {
			const config = loadConfig(opts.config);
			const { copyStorage, openBackendSpec } = await import("../../storage/copy.ts");
			const dataDir = resolveDataPath(config, ".");
			let from: StorageBackend | undefined;
			let to: StorageBackend | undefined;
			try {
				from = openBackendSpec(opts.from, dataDir);
				to = openBackendSpec(opts.to, dataDir);
				const s = await copyStorage(from, to);
				console.log(
					`copied ${s.keyval} keyval values, ${s.map} map entries, ${s.archive} archive items` +
						(s.skipped ? ` (${s.skipped} archive items already there)` : ""),
				);
			} catch (err) {
				storageFailure(err);
			} finally {
				await from?.close();
				await to?.close();
			}
		});
}
