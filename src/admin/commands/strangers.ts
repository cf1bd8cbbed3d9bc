/**
 * The strangers policy (src/modules/spam/strangers.ts) for a user, and the messages it held for
 * review. A user runs these on their own account; an admin (or the CLI) on any account.
 */
import { z } from "zod";
import { type CommandContext, CommandError, defineCommand } from "../../core/commands.ts";
import type { Host } from "../../core/contracts.ts";
import { archivedStanza } from "../../modules/mam/protocol.ts";
import {
	NS_CONFERENCE,
	NS_MUC_USER,
	STRANGERS_HELD_STORE,
	type StrangersPolicyQuery,
	type StrangersRelease,
} from "../../modules/spam/strangers.ts";
import { tryParseJID } from "../../xmpp/jid.ts";

/** The account's host and localpart, when the actor may act on it. */
async function account(ctx: CommandContext, jid: string): Promise<{ host: Host; user: string }> {
	const parsed = tryParseJID(jid);
	const host = parsed?.local ? ctx.core.hosts.get(parsed.domain) : undefined;
	if (!parsed || !host) throw new CommandError("not_found", `no account ${jid}`);
	const actor = ctx.actor === "cli" ? null : tryParseJID(ctx.actor);
	const self = actor?.bareString === parsed.bareString;
	const admin =
		ctx.actor === "cli" ||
		(actor?.domain === host.name && (await host.accounts.role(actor.local)) === "admin");
	if (!self && !admin) throw new CommandError("forbidden", "only the account or an admin");
	if (!host.modules.isLoaded("spam"))
		throw new CommandError("unavailable", "spam module not loaded");
	return { host, user: parsed.local };
}

const jidArg = z.string().min(1).describe("The account (bare JID)");

export const strangersPolicy = defineCommand({
	name: "strangers.policy",
	description: "Show or set what an account gets from JIDs not in its roster",
	role: "user",
	http: { method: "POST", path: "/accounts/:jid/strangers" },
	adhoc: "urn:parley:strangers:policy",
	args: z.object({
		jid: jidArg,
		policy: z
			.enum(["allow", "hold", "bounce", "default"])
			.optional()
			.describe("allow, hold for review, bounce, or default (the server's); absent: show"),
	}),
	async run(ctx, args) {
		const { host, user } = await account(ctx, args.jid);
		const q: StrangersPolicyQuery = { user, set: args.policy };
		await host.events.fire("spam/strangers-policy", q);
		return { jid: `${user}@${host.name}`, policy: q.policy, own: q.own };
	},
});

export const strangersHeld = defineCommand({
	name: "strangers.held",
	description: "Messages and invitations from strangers held for an account's review",
	role: "user",
	http: { method: "GET", path: "/accounts/:jid/strangers/held" },
	adhoc: "urn:parley:strangers:held",
	args: z.object({ jid: jidArg }),
	async run(ctx, args) {
		const { host, user } = await account(ctx, args.jid);
		const page = await host.archive<{ xml: string }>(STRANGERS_HELD_STORE).query(user, {});
		return page.items.map((item) => {
			const m = archivedStanza(item);
			const invite =
				m?.getChild("x", NS_CONFERENCE)?.attrs.jid ??
				(m?.getChild("x", NS_MUC_USER)?.getChild("invite", NS_MUC_USER)
					? m?.attrs.from
					: undefined);
			return {
				id: item.id,
				when: item.when,
				from: item.with,
				body: m?.getChildText("body") ?? "",
				...(invite ? { invite: tryParseJID(invite)?.bareString ?? invite } : {}),
			};
		});
	},
});

async function release(ctx: CommandContext, jid: string, id: string, deliver: boolean) {
	const { host, user } = await account(ctx, jid);
	const q: StrangersRelease = { user, id, deliver };
	await host.events.fire("spam/strangers-release", q);
	if (!q.done) throw new CommandError("not_found", `no held message ${id}`);
	return { id, delivered: deliver };
}

export const strangersRelease = defineCommand({
	name: "strangers.release",
	description: "Deliver a held message from a stranger",
	role: "user",
	http: { method: "POST", path: "/accounts/:jid/strangers/held/:id/release" },
	adhoc: "urn:parley:strangers:release",
	args: z.object({ jid: jidArg, id: z.string().min(1).describe("strangers.held's id") }),
	run: (ctx, args) => release(ctx, args.jid, args.id, true),
});

export const strangersDiscard = defineCommand({
	name: "strangers.discard",
	description: "Discard a held message from a stranger",
	role: "user",
	http: { method: "DELETE", path: "/accounts/:jid/strangers/held/:id" },
	adhoc: "urn:parley:strangers:discard",
	args: z.object({ jid: jidArg, id: z.string().min(1).describe("strangers.held's id") }),
	run: (ctx, args) => release(ctx, args.jid, args.id, false),
});

export const strangersCommands = [
	strangersPolicy,
	strangersHeld,
	strangersRelease,
	strangersDiscard,
];
