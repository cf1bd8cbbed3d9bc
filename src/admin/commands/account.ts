/**
 * Account moderation (issue 19): disable an account (it cannot log in, RFC 6120 §6.5.1
 * account-disabled, and its open sessions end), enable it again, and let a quarantined new
 * account out (src/modules/spam/: it may then write to strangers and create rooms).
 */
import { z } from "zod";
import { AccountError } from "../../auth/accounts.ts";
import { type CommandContext, CommandError, defineCommand } from "../../core/commands.ts";
import type { Host } from "../../core/contracts.ts";
import type { QuarantineQuery } from "../../modules/spam/quarantine.ts";
import { tryParseJID } from "../../xmpp/jid.ts";

function accountOf(ctx: CommandContext, jid: string): { host: Host; user: string } {
	const parsed = tryParseJID(jid);
	const host = parsed?.local ? ctx.core.hosts.get(parsed.domain) : undefined;
	if (!parsed || !host) throw new CommandError("not_found", `no account ${jid}`);
	if (ctx.host !== undefined && ctx.host !== host.name)
		throw new CommandError("forbidden", `${jid} is not an account of ${ctx.host}`);
	return { host, user: parsed.local };
}

async function setDisabled(ctx: CommandContext, jid: string, disabled: boolean) {
	const { host, user } = accountOf(ctx, jid);
	try {
		await host.accounts.setDisabled(user, disabled);
	} catch (err) {
		if (err instanceof AccountError) throw new CommandError("not_found", err.message);
		throw err;
	}
	let closed = 0;
	// A sharded cluster registry (issue 16): the sessions on other nodes too.
	if (disabled) await host.server.cluster?.resolve?.(host, user);
	if (disabled)
		for (const s of host.sessionsOf(user)) {
			s.close("policy-violation", "this account has been disabled");
			closed++;
		}
	host.log.info(
		{ user, by: ctx.actor, disabled },
		disabled ? "account disabled" : "account enabled",
	);
	return { jid: `${user}@${host.name}`, disabled, sessionsClosed: closed };
}

const jidArg = z.string().min(1).describe("The account (bare JID)");
/** XEP-0133 §4.3/§4.4 name the field `accountjids`, so scripts written for it fill this one. */
const xep0133Jid = jidArg.meta({ var: "accountjids" });

export const accountDisable = defineCommand({
	name: "account.disable",
	description: "Disable an account: it cannot log in, and its sessions end",
	role: "admin",
	http: { method: "POST", path: "/accounts/:jid/disable" },
	adhoc: "http://jabber.org/protocol/admin#disable-user",
	args: z.object({ jid: xep0133Jid }),
	run: (ctx, args) => setDisabled(ctx, args.jid, true),
});

export const accountEnable = defineCommand({
	name: "account.enable",
	description: "Enable a disabled account again",
	role: "admin",
	http: { method: "POST", path: "/accounts/:jid/enable" },
	adhoc: "http://jabber.org/protocol/admin#reenable-user",
	args: z.object({ jid: xep0133Jid }),
	run: (ctx, args) => setDisabled(ctx, args.jid, false),
});

export const accountApprove = defineCommand({
	name: "account.approve",
	description: "Let a quarantined new account out of quarantine",
	role: "admin",
	http: { method: "POST", path: "/accounts/:jid/approve" },
	adhoc: "urn:parley:admin:account-approve",
	args: z.object({ jid: jidArg }),
	async run(ctx, args) {
		const { host, user } = accountOf(ctx, args.jid);
		const q: QuarantineQuery = { user, release: true };
		await host.events.fire("spam/quarantine", q);
		return { jid: `${user}@${host.name}`, quarantined: q.quarantined ?? false };
	},
});

export const accountCommands = [accountDisable, accountEnable, accountApprove];
