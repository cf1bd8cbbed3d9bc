/**
 * XEP-0133 service administration commands about who is online: send an announcement to the
 * online users of a host (§4.23, `#announce`) and count them (§4.15, `#get-online-users-num`).
 * Argument and result names are XEP-0133's field vars, so the ad-hoc forms are its forms.
 */
import { z } from "zod";
import { defineCommand } from "../../core/commands.ts";
import { x } from "../../xml/element.ts";
import { targetHost } from "./host.ts";

const hostArg = z.string().optional().describe("the virtual host (default: the first one)");

export const announce = defineCommand({
	name: "announce",
	description: "Send Announcement to Online Users",
	args: z.object({
		host: hostArg,
		subject: z.string().optional().describe("Subject"),
		// XEP-0133 §4.23: the body is a text-multi field named announcement.
		announcement: z.string().min(1).meta({ xdata: "text-multi" }).describe("Announcement"),
	}),
	role: "admin",
	http: { method: "POST", path: "/announce" },
	adhoc: "http://jabber.org/protocol/admin#announce",
	async run(ctx, args) {
		const host = targetHost(ctx, args.host);
		// Sharded registry: the sessions on other nodes are looked up first (their bare JIDs from
		// the host's set in Redis), so that they are in `host.sessions` below.
		const cluster = ctx.core.cluster;
		const jids = await cluster?.onlineJids?.(host);
		if (jids) await cluster?.resolveAll?.(new Set(jids.map((j) => j.slice(0, j.indexOf("/")))));
		let sent = 0;
		// §4.23: to every online user: each bound session of the host gets a headline-free
		// normal message from the server (Prosody and ejabberd send the same).
		for (const resources of host.sessions.values()) {
			for (const session of resources.values()) {
				if (!session.jid) continue;
				session.send(
					x(
						"message",
						{ from: host.name, to: session.jid.toString(), type: "normal" },
						args.subject ? x("subject", null, args.subject) : undefined,
						x("body", null, args.announcement),
					),
				);
				sent++;
			}
		}
		host.log.info({ actor: ctx.actor, sessions: sent }, "announcement sent");
		return { sessions: sent };
	},
});

export const onlineUsersNum = defineCommand({
	name: "users.online.count",
	description: "Get Number of Online Users",
	args: z.object({ host: hostArg }),
	role: "admin",
	http: { method: "GET", path: "/users/online/count" },
	adhoc: "http://jabber.org/protocol/admin#get-online-users-num",
	async run(ctx, args) {
		const host = targetHost(ctx, args.host);
		// §4.15: users, not sessions: an account with two resources counts once.
		const counted = await ctx.core.cluster?.onlineCounts?.(host);
		if (counted) return { onlineusersnum: counted.users };
		let n = 0;
		for (const resources of host.sessions.values()) if (resources.size > 0) n++;
		return { onlineusersnum: n };
	},
});
