/** `parley export` and `parley import`: a host's data as XEP-0227 XML. */
import type { Command } from "commander";
import {
	CliError,
	CONFIG_HELP,
	EXIT,
	loadConfig,
	readStdinLines,
	storageFailure,
	withStorage,
} from "../common.ts";

/** Issue 4: `export`, `import`. */
export function addExportImportCommands(program: Command): void {
	program
		.command("export [host]")
		.description(
			"write a host's data (every host's without one) as XEP-0227 XML to standard output",
		)
		.option("-c, --config <file>", CONFIG_HELP)
		.action(async (host: string | undefined, opts: { config?: string }) => {
			const config = loadConfig(opts.config);
			if (host && !config.hosts[host])
				throw new CliError(`${host} is not a host in the configuration`, EXIT.USAGE);
			const { exportPie } = await import("../../storage/xep0227.ts");
			await withStorage(config, async (storage) => {
				const xml = await exportPie(storage, host ? [host] : Object.keys(config.hosts), {
					warn: (m) => console.error(`parley: warning: ${m}`),
				}).catch(storageFailure);
				process.stdout.write(xml);
			});
		});
	program
		.command("import <file>")
		.description('load a XEP-0227 XML file ("-": standard input) into the configured hosts')
		.option("-c, --config <file>", CONFIG_HELP)
		.action(async (file: string, opts: { config?: string }) => {
			const config = loadConfig(opts.config);
			const { readFileSync } = await import("node:fs");
			const xml = file === "-" ? (await readStdinLines()).join("\n") : readFileSync(file, "utf8");
			const { importPie } = await import("../../storage/xep0227.ts");
			await withStorage(config, async (storage) => {
				const stats = await importPie(storage, xml, {
					hosts: Object.keys(config.hosts),
					iterations: config.auth.scram_iterations,
					warn: (m) => console.error(`parley: warning: ${m}`),
				}).catch(storageFailure);
				console.log(`imported ${stats.users} users`);
				if (stats.skipped.length)
					throw new CliError(`not imported: ${stats.skipped.join(", ")}`, EXIT.FAILURE);
			});
		});
}
