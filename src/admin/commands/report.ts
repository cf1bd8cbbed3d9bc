/**
 * Admin commands over the XEP-0377 report queue the `spam` module fills (src/modules/spam/):
 * `report.list` shows the reports of one host or all, `report.resolve` closes one with a note.
 */
import { z } from "zod";
import { CommandError, defineCommand } from "../../core/commands.ts";
import type { Core, Host } from "../../core/contracts.ts";
import { REPORT_STORE, type StoredReport } from "../../modules/spam/reports.ts";

function hostsOf(core: Core, host: string | undefined): Host[] {
	if (host === undefined) return [...core.hosts.values()];
	const h = core.hosts.get(host);
	if (!h) throw new CommandError("not_found", `no host ${host}`);
	return [h];
}

async function reportsOf(h: Host): Promise<(StoredReport & { host: string })[]> {
	const store = h.keyval<StoredReport>(REPORT_STORE);
	const out: (StoredReport & { host: string })[] = [];
	for (const id of await store.users()) {
		const r = await store.get(id);
		if (r) out.push({ ...r, host: h.name });
	}
	return out;
}

export const reportList = defineCommand({
	name: "report.list",
	description: "List XEP-0377 spam and abuse reports, newest first",
	role: "admin",
	http: { method: "GET", path: "/reports" },
	adhoc: "urn:parley:admin:report-list",
	args: z.object({
		host: z.string().optional().describe("Only this host's reports"),
		status: z.enum(["open", "resolved", "all"]).default("open").describe("Which reports"),
		jid: z.string().optional().describe("Only reports about this JID"),
	}),
	async run(ctx, args) {
		const all: (StoredReport & { host: string })[] = [];
		for (const h of hostsOf(ctx.core, args.host ?? ctx.host)) all.push(...(await reportsOf(h)));
		return all
			.filter((r) => args.status === "all" || r.status === args.status)
			.filter((r) => args.jid === undefined || r.jid === args.jid)
			.sort((a, b) => b.when - a.when);
	},
});

export const reportResolve = defineCommand({
	name: "report.resolve",
	description: "Close a XEP-0377 report, with what was done",
	role: "admin",
	http: { method: "POST", path: "/reports/:id/resolve" },
	adhoc: "urn:parley:admin:report-resolve",
	args: z.object({
		id: z.string().min(1).describe("The report's id (report.list)"),
		resolution: z.string().max(1000).default("").describe("What was done, for the record"),
	}),
	async run(ctx, args) {
		for (const h of hostsOf(ctx.core, ctx.host)) {
			const store = h.keyval<StoredReport>(REPORT_STORE);
			const r = await store.get(args.id);
			if (!r) continue;
			const resolved: StoredReport = {
				...r,
				status: "resolved",
				resolution: args.resolution,
				resolvedBy: ctx.actor,
				resolvedAt: Date.now(),
			};
			await store.set(args.id, resolved);
			// The spam module recounts its open reports (its queue limit).
			await h.events.fire("spam/report-resolved", { id: args.id });
			return { ...resolved, host: h.name };
		}
		throw new CommandError("not_found", `no report ${args.id}`);
	},
});

export const reportCommands = [reportList, reportResolve];
