/**
 * Which host a command acts on: its `host` argument (HTTP, CLI) or the host it was sent to
 * (ad-hoc, `CommandContext.host`). An admin of one host acts on that host only.
 */
import { type CommandContext, CommandError } from "../../core/commands.ts";
import type { Host } from "../../core/contracts.ts";

export function targetHost(ctx: CommandContext, name: string | undefined): Host {
	const wanted = name ?? ctx.host ?? ctx.core.defaultHost;
	if (ctx.host !== undefined && wanted !== ctx.host)
		throw new CommandError("forbidden", `an admin of ${ctx.host} cannot act on ${wanted}`);
	const host = ctx.core.hosts.get(wanted);
	if (!host) throw new CommandError("not_found", `no host ${wanted}`);
	return host;
}
