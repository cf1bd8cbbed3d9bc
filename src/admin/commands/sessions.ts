/**
 * Sessions (issue 15 "Users"): list the bound sessions, end one or all of an account's.
 * `session.list` is also XEP-0133 §4.20 get-online-users-list.
 */
import { z } from "zod";
import { CommandError, defineCommand } from "../../core/commands.ts";
import type { Session } from "../../core/contracts.ts";

function describe(s: Session) {
	return {
		jid: s.jid?.toString() ?? "",
		address: s.remoteAddress,
		secure: s.secure,
		available: s.available,
		...(s.node === undefined ? {} : { node: s.node }),
	};
}

export const sessionList = defineCommand({
	name: "session.list",
	description: "list the bound sessions of every host (or of one)",
	args: z.object({ host: z.string().optional().describe("only this host") }),
	role: "admin",
	http: { method: "GET", path: "/sessions" },
	adhoc: "http://jabber.org/protocol/admin#get-online-users-list",
	async run(ctx, args) {
		const host = args.host?.toLowerCase();
		if (host !== undefined && !ctx.core.hosts.has(host))
			throw new CommandError("not_found", `${args.host} is not a host of this server`);
		const out: ReturnType<typeof describe>[] = [];
		for (const [name, h] of ctx.core.hosts) {
			if (host !== undefined && name !== host) continue;
			for (const resources of h.sessions.values())
				for (const s of resources.values()) out.push(describe(s));
		}
		return { sessions: out };
	},
});

export const sessionKick = defineCommand({
	name: "session.kick",
	description: "end a session (full JID) or every session of an account (bare JID)",
	args: z.object({ jid: z.string().min(3).describe("user@host or user@host/resource") }),
	role: "admin",
	http: { method: "DELETE", path: "/sessions/:jid" },
	async run(ctx, args) {
		const slash = args.jid.indexOf("/");
		const bare = slash < 0 ? args.jid : args.jid.slice(0, slash);
		const resource = slash < 0 ? undefined : args.jid.slice(slash + 1);
		const at = bare.lastIndexOf("@");
		const host = ctx.core.hosts.get(bare.slice(at + 1).toLowerCase());
		if (at <= 0 || !host) throw new CommandError("not_found", `no session of ${args.jid}`);
		// Sessions on other nodes too (a sharded cluster registry looks them up).
		await ctx.core.cluster?.resolve?.(host, bare.slice(0, at).toLowerCase());
		const sessions = host
			.sessionsOf(bare.slice(0, at).toLowerCase())
			.filter((s) => resource === undefined || s.jid?.resource === resource);
		if (sessions.length === 0) throw new CommandError("not_found", `no session of ${args.jid}`);
		// RFC 6120 §4.9.3.14 policy-violation: an administrator ended it.
		for (const s of sessions) s.close("policy-violation", "an administrator ended this session");
		return { kicked: sessions.map((s) => s.jid?.toString() ?? "") };
	},
});
