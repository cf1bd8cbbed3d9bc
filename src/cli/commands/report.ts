/**
 * `parley report list|resolve`: the XEP-0377 reports the `spam` module queued (issue 19), read
 * from and written to the storage the server keeps them in (the `spam_reports` store of each
 * host), like `parley push`. The same operations are the `report.list` / `report.resolve`
 * admin commands (src/admin/commands/report.ts) for the admin API and ad-hoc surfaces.
 */
import type { Command } from "commander";
import { REPORT_STORE, type StoredReport } from "../../modules/spam/reports.ts";
import type { StorageBackend } from "../../storage/types.ts";
import { CliError, CONFIG_HELP, EXIT, loadConfig, withStorage } from "../common.ts";

async function allReports(
	storage: StorageBackend,
	hosts: string[],
): Promise<(StoredReport & { host: string })[]> {
	const out: (StoredReport & { host: string })[] = [];
	for (const host of hosts) {
		const store = storage.keyval<StoredReport>(host, REPORT_STORE);
		for (const id of await store.users()) {
			const r = await store.get(id);
			if (r) out.push({ ...r, host });
		}
	}
	return out.sort((a, b) => b.when - a.when);
}

export function addReportCommands(program: Command): void {
	const report = program
		.command("report")
		.description("spam and abuse reports users sent with a block (XEP-0377)");
	report
		.command("list")
		.description("list reports, newest first")
		.option("-c, --config <file>", CONFIG_HELP)
		.option("--host <domain>", "only this host's reports")
		.option("--status <status>", "open, resolved or all", "open")
		.option("--json", "print them as JSON")
		.action(async (opts: { config?: string; host?: string; status: string; json?: boolean }) => {
			const config = loadConfig(opts.config);
			if (!["open", "resolved", "all"].includes(opts.status))
				throw new CliError("--status is open, resolved or all", EXIT.USAGE);
			if (opts.host && !config.hosts[opts.host])
				throw new CliError(`"${opts.host}" is not a host in the configuration`, EXIT.USAGE);
			const hosts = opts.host ? [opts.host] : Object.keys(config.hosts);
			await withStorage(config, async (storage) => {
				const list = (await allReports(storage, hosts)).filter(
					(r) => opts.status === "all" || r.status === opts.status,
				);
				if (opts.json) {
					console.log(JSON.stringify(list));
					return;
				}
				if (list.length === 0) console.log("no reports");
				for (const r of list)
					console.log(
						`${r.id}  ${new Date(r.when).toISOString()}  ${r.status.padEnd(8)}  ${r.reason.replace("urn:xmpp:reporting:", "")}  ${r.jid}  by ${r.reporter}${r.text ? `  "${r.text}"` : ""}`,
					);
			});
		});
	report
		.command("resolve <id>")
		.description("close a report, saying what was done")
		.option("-c, --config <file>", CONFIG_HELP)
		.option("--note <text>", "what was done, for the record", "")
		.action(async (id: string, opts: { config?: string; note: string }) => {
			const config = loadConfig(opts.config);
			await withStorage(config, async (storage) => {
				for (const host of Object.keys(config.hosts)) {
					const store = storage.keyval<StoredReport>(host, REPORT_STORE);
					const r = await store.get(id);
					if (!r) continue;
					await store.set(id, {
						...r,
						status: "resolved",
						resolution: opts.note,
						resolvedBy: "cli",
						resolvedAt: Date.now(),
					});
					console.log(`resolved ${id}`);
					return;
				}
				throw new CliError(`no report ${id}`, EXIT.NOT_FOUND);
			});
		});
}
