/**
 * Invitations (XEP-0401 Easy User Onboarding, XEP-0445 pre-authenticated registration), as
 * admin commands: create, list and revoke (HTTP `POST/GET/DELETE /invites`, the CLI, ad-hoc);
 * `urn:xmpp:invite#create-account` is `invite.create` for a host's admins and
 * `urn:xmpp:invite#invite` is `invite.contact` for every account (XEP-0401 §3).
 *
 * The result carries XEP-0401's fields: `uri` (the `xmpp:` URI a client opens), `landing-url`
 * (the page on the HTTP listener that tells a newcomer which app to install) and `expire`.
 */
import { z } from "zod";
import { AccountManager } from "../../auth/accounts.ts";
import { type Invite, InviteStore, inviteUri } from "../../auth/invites.ts";
import { type CommandContext, CommandError, defineCommand } from "../../core/commands.ts";
import type { Core, Host } from "../../core/contracts.ts";
import { targetHost } from "./host.ts";

const hostArg = z.string().optional().describe("the virtual host (default: the first one)");

/** The invitations of a host, in its storage. */
export function invitesOf(host: Host): InviteStore {
	return new InviteStore(host.keyval<Invite>("invites"));
}

/** `<base>/invite/<token>`: the configured base URL, else the host on the HTTP(S) port. */
export function landingUrl(core: Core, host: string, token: string): string {
	const cfg = core.config;
	let base = cfg.invites.base_url.replace(/\/+$/, "");
	if (!base) {
		const l = cfg.listeners;
		base = l.https.enabled
			? `https://${host}${l.https.port === 443 ? "" : `:${l.https.port}`}`
			: `http://${host}${l.http.port === 80 ? "" : `:${l.http.port}`}`;
	}
	return `${base}/invite/${encodeURIComponent(token)}`;
}

/** What every surface shows of an invitation. */
function describe(core: Core, host: Host, invite: Invite) {
	return {
		token: invite.token,
		type: invite.type,
		uri: inviteUri(invite, host.name),
		"landing-url": landingUrl(core, host.name, invite.token),
		// XEP-0082 date-time.
		expire: new Date(invite.expires).toISOString(),
		register: invite.register,
		username: invite.username,
		roster: invite.roster ? `${invite.roster}@${host.name}` : undefined,
		max_uses: invite.max_uses,
		uses: invite.uses,
		used_by: invite.used_by,
		creator: invite.creator,
	};
}

/** The local account a JID or username names on `host`, which must exist. */
async function localAccount(host: Host, who: string): Promise<string> {
	let local = who;
	if (who.includes("@")) {
		const [l, d] = who.split("@") as [string, string];
		if (d !== host.name)
			throw new CommandError("invalid_argument", `${who} is not an account of ${host.name}`);
		local = l;
	}
	if (!(await host.accounts.exists(local)))
		throw new CommandError("not_found", `no account ${local}@${host.name}`);
	return local;
}

/** The actor's username on `host`, when the actor is one of its accounts. */
function actorOn(ctx: CommandContext, host: Host): string | undefined {
	const at = ctx.actor.lastIndexOf("@");
	if (at <= 0 || ctx.actor.slice(at + 1) !== host.name) return undefined;
	return ctx.actor.slice(0, at);
}

export const inviteCreate = defineCommand({
	name: "invite.create",
	description: "Create a new account invitation",
	args: z.object({
		host: hostArg,
		username: z.string().optional().describe("Username reserved for the newcomer (optional)"),
		uses: z
			.number()
			.int()
			.min(0)
			.default(1)
			.describe("How many accounts it may create (0: any number until it expires)"),
		ttl: z.number().int().positive().optional().describe("Seconds until it expires"),
		roster_subscription: z
			.boolean()
			.default(false)
			.meta({ var: "roster-subscription" })
			.describe("Add the new user and me to each other's contacts"),
		inviter: z
			.string()
			.optional()
			.describe("An account the new user is added to the contacts of, both ways"),
	}),
	role: "admin",
	http: { method: "POST", path: "/invites", status: 201 },
	adhoc: "urn:xmpp:invite#create-account",
	async run(ctx, args) {
		const host = targetHost(ctx, args.host);
		let roster: string | undefined;
		if (args.inviter !== undefined) roster = await localAccount(host, args.inviter);
		else if (args.roster_subscription) {
			roster = actorOn(ctx, host);
			if (!roster)
				throw new CommandError("invalid_argument", "roster-subscription needs an inviter account");
		}
		let username: string | undefined;
		if (args.username?.trim()) {
			try {
				username = AccountManager.prepUsername(args.username.trim());
			} catch (err) {
				throw new CommandError("invalid_argument", `username: ${(err as Error).message}`);
			}
			if (await host.accounts.exists(username))
				throw new CommandError("conflict", `${username}@${host.name} already exists`);
		}
		const invite = await invitesOf(host).create({
			type: "account",
			username,
			roster,
			creator: ctx.actor,
			max_uses: args.uses,
			ttl: args.ttl ?? ctx.core.config.invites.ttl,
		});
		host.log.info({ actor: ctx.actor, uses: args.uses, roster }, "invitation created");
		return describe(ctx.core, host, invite);
	},
});

export const inviteContact = defineCommand({
	name: "invite.contact",
	description: "Create new contact invite",
	args: z.object({ host: hostArg }),
	role: "user",
	http: { method: "POST", path: "/invites/contact", status: 201 },
	adhoc: "urn:xmpp:invite#invite",
	async run(ctx, args) {
		const host = targetHost(ctx, args.host);
		const me = actorOn(ctx, host);
		if (!me)
			throw new CommandError(
				"invalid_argument",
				`a contact invitation needs an account of ${host.name} to come from`,
			);
		// XEP-0401 §3: registration with it only where the server allows users to invite.
		const register =
			ctx.core.config.invites.allow_user_invites || (await host.accounts.role(me)) === "admin";
		const invite = await invitesOf(host).create({
			type: "contact",
			register,
			roster: me,
			creator: ctx.actor,
			max_uses: 1,
			ttl: ctx.core.config.invites.ttl,
		});
		return describe(ctx.core, host, invite);
	},
});

export const inviteList = defineCommand({
	name: "invite.list",
	description: "List invitations",
	args: z.object({ host: hostArg }),
	role: "admin",
	http: { method: "GET", path: "/invites" },
	adhoc: "urn:parley:admin:invite-list",
	async run(ctx, args) {
		const host = targetHost(ctx, args.host);
		const now = Date.now();
		const invites = (await invitesOf(host).list()).map((i) => ({
			...describe(ctx.core, host, i),
			valid: InviteStore.check(i, now) === null,
		}));
		return { invites };
	},
});

export const inviteRevoke = defineCommand({
	name: "invite.revoke",
	description: "Revoke an invitation",
	args: z.object({ host: hostArg, token: z.string().min(1).describe("The invitation's token") }),
	role: "admin",
	http: { method: "DELETE", path: "/invites/:token", status: 204 },
	adhoc: "urn:parley:admin:invite-revoke",
	async run(ctx, args) {
		const host = targetHost(ctx, args.host);
		if (!(await invitesOf(host).revoke(args.token)))
			throw new CommandError("not_found", "no such invitation");
		host.log.info({ actor: ctx.actor }, "invitation revoked");
		return undefined;
	},
});
