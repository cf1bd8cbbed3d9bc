/**
 * Accounts (issue 15 "Users"): list, add, remove, change a password, set a role. `user.add`,
 * `user.remove` and `user.password` are also XEP-0133 ad-hoc commands (§4.1 add-user, §4.2
 * delete-user, §4.7 change-user-password).
 */
import { z } from "zod";
import { CommandError, defineCommand } from "../../core/commands.ts";
import { accountError, resolveAccount } from "../accounts.ts";

/** XEP-0133 §4.1-§4.7 name the account's field `accountjid`: the ad-hoc form uses that name. */
const jid = z
	.string()
	.min(3)
	.describe("the account's bare JID, user@host")
	.meta({ var: "accountjid" });
const password = z.string().min(1).max(1024).describe("the new password");
const role = z.enum(["admin", "user"]).describe("admin: may run every admin command");

export const userList = defineCommand({
	name: "user.list",
	description: "list the accounts of every host (or of one) with their roles",
	args: z.object({ host: z.string().optional().describe("only this host") }),
	role: "admin",
	http: { method: "GET", path: "/users" },
	async run(ctx, args) {
		const out: { jid: string; role: "admin" | "user" }[] = [];
		for (const [name, host] of ctx.core.hosts) {
			if (args.host !== undefined && name !== args.host.toLowerCase()) continue;
			if (host.accounts.anonymous) continue;
			const admins = new Set(await host.accounts.admins());
			for (const user of await host.accounts.list())
				out.push({ jid: `${user}@${name}`, role: admins.has(user) ? "admin" : "user" });
		}
		if (args.host !== undefined && !ctx.core.hosts.has(args.host.toLowerCase()))
			throw new CommandError("not_found", `${args.host} is not a host of this server`);
		return { users: out };
	},
});

export const userAdd = defineCommand({
	name: "user.add",
	description: "create an account",
	args: z.object({ jid, password, role: role.default("user") }),
	role: "admin",
	http: { method: "POST", path: "/users", status: 201 },
	adhoc: "http://jabber.org/protocol/admin#add-user",
	async run(ctx, args) {
		const a = resolveAccount(ctx.core, args.jid);
		try {
			await a.accounts.create(a.user, args.password);
			if (args.role === "admin") await a.accounts.setRole(a.user, "admin");
		} catch (err) {
			throw accountError(err);
		}
		return { jid: a.jid, role: args.role };
	},
});

export const userRemove = defineCommand({
	name: "user.remove",
	description: "delete an account and everything stored for it; its sessions end",
	args: z.object({ jid }),
	role: "admin",
	http: { method: "DELETE", path: "/users/:jid", status: 204 },
	adhoc: "http://jabber.org/protocol/admin#delete-user",
	async run(ctx, args) {
		const a = resolveAccount(ctx.core, args.jid);
		try {
			await a.accounts.delete(a.user);
		} catch (err) {
			throw accountError(err);
		}
		// RFC 6120 §4.9.3.12 not-authorized: the account is gone, so are its sessions (those on
		// other nodes too: a sharded cluster registry looks them up).
		const h = ctx.core.hosts.get(a.host);
		if (h) await ctx.core.cluster?.resolve?.(h, a.user);
		for (const s of h?.sessionsOf(a.user) ?? [])
			s.close("not-authorized", "the account was deleted");
		return undefined;
	},
});

export const userPassword = defineCommand({
	name: "user.password",
	description: "set an account's password",
	args: z.object({ jid, password }),
	role: "admin",
	http: { method: "PUT", path: "/users/:jid/password", status: 204 },
	adhoc: "http://jabber.org/protocol/admin#change-user-password",
	async run(ctx, args) {
		const a = resolveAccount(ctx.core, args.jid);
		try {
			await a.accounts.setPassword(a.user, args.password);
		} catch (err) {
			throw accountError(err);
		}
		return undefined;
	},
});

export const userRole = defineCommand({
	name: "user.role",
	description: "make an account an admin or a user",
	args: z.object({ jid, role }),
	role: "admin",
	http: { method: "PUT", path: "/users/:jid/role" },
	async run(ctx, args) {
		const a = resolveAccount(ctx.core, args.jid);
		try {
			await a.accounts.setRole(a.user, args.role);
		} catch (err) {
			throw accountError(err);
		}
		return { jid: a.jid, role: args.role };
	},
});
