/**
 * XEP-0050 Ad-Hoc Commands on a host, serving the admin command registry (`core.commands`,
 * src/core/commands.ts): every command with an `adhoc` node is offered, so the XEP-0133
 * service administration commands and XEP-0401's invitation commands are the same
 * definitions the HTTP API and the CLI run.
 *
 * - Discovery (§3.1, §3.2, §3.3): `http://jabber.org/protocol/commands` on the host's
 *   disco#info; disco#items on that node lists the commands the requester may run (an admin
 *   command only to an admin of this host); disco#info on a command's node answers with the
 *   `automation/command-node` identity.
 * - Execution (§3.4): `execute` opens a session (a `sessionid`) and answers with the form of
 *   the command's arguments (status `executing`, one stage: `<actions execute='complete'>`); the
 *   submitted form (`complete`, `execute` or `next`) runs it and the result comes back as a form
 *   of type `result` (status `completed`); `cancel` ends a session (status `canceled`). A
 *   command without arguments runs at once. `prev` has no stage to go back to (bad-action).
 * - Errors (§6): a `CommandError` is an IQ error with the mapped condition and, echoed inside
 *   the `<command/>`, a `<note type='error'/>` with its message.
 */
import type { z } from "zod";
import { type AnyAdminCommand, CommandError, type CommandErrorCode } from "../../core/commands.ts";
import type { Host } from "../../core/contracts.ts";
import { HANDLED } from "../../core/events.ts";
import { defineModule } from "../../core/modules/define.ts";
import type { StanzaEvent } from "../../core/router.ts";
import { type Element, x } from "../../xml/element.ts";
import { findForm, formValues, NS_DATA } from "../../xmpp/data-form.ts";
import { StanzaError, type StanzaErrorCondition } from "../../xmpp/errors.ts";
import type { JID } from "../../xmpp/jid.ts";
import { NS_DISCO_INFO, NS_DISCO_ITEMS } from "../../xmpp/ns.ts";
import { resultFor } from "../../xmpp/stanza.ts";
import { argsForm, argsFromForm, HOST_ARG, resultForm } from "./forms.ts";

export const NS_COMMANDS = "http://jabber.org/protocol/commands";
/** XEP-0133 §3: the FORM_TYPE of service administration forms. */
export const NS_ADMIN = "http://jabber.org/protocol/admin";

/** How long an unfinished command session is kept (XEP-0050 §4.2 leaves it to the server). */
const SESSION_TTL_MS = 10 * 60_000;

interface CommandSession {
	node: string;
	/** The full JID that opened it: only it may continue it (XEP-0050 §4.2). */
	owner: string;
	expires: number;
}

/** XEP-0133 forms carry its FORM_TYPE (§3); other commands are named by their node. */
export function formTypeOf(node: string): string {
	return node.startsWith(`${NS_ADMIN}#`) ? NS_ADMIN : node;
}

/** Whether `from` may see and run `cmd` on `host`: `user` any account of the host, `admin` its admins. */
export async function mayRun(host: Host, cmd: AnyAdminCommand, from: JID): Promise<boolean> {
	// Commands are for the host's own accounts (XEP-0133 §5: the service decides who is an admin).
	if (from.domain !== host.name || !from.local) return false;
	// A guest of an anonymous host has no account to act for (XEP-0175): nothing to run.
	if (host.config.authentication === "anonymous") return false;
	if (cmd.role === "user") return true;
	return (await host.accounts.role(from.local)) === "admin";
}

const ERROR_CONDITIONS: Record<CommandErrorCode, StanzaErrorCondition> = {
	invalid_argument: "bad-request",
	not_found: "item-not-found",
	conflict: "conflict",
	forbidden: "forbidden",
	unavailable: "service-unavailable",
	internal: "internal-server-error",
};

/** XEP-0050 §6: the application conditions, in its namespace. */
function commandError(
	condition: StanzaErrorCondition,
	app:
		| "malformed-action"
		| "bad-action"
		| "bad-payload"
		| "bad-sessionid"
		| "session-expired"
		| null,
	text?: string,
): StanzaError {
	return new StanzaError(condition, text, {
		appCondition: app ? x(app, { xmlns: NS_COMMANDS }) : undefined,
	});
}

export default defineModule({
	name: "adhoc",
	description: "XEP-0050 Ad-Hoc Commands (XEP-0133 service administration, XEP-0401 invitations)",
	load(api) {
		const host = api.host;
		const sessions = new Map<string, CommandSession>();
		let next = 0;
		api.every(60_000, () => {
			const now = Date.now();
			for (const [id, s] of sessions) if (s.expires <= now) sessions.delete(id);
		});

		/** The commands offered over XMPP, by node. */
		const byNode = (): Map<string, AnyAdminCommand> => {
			const out = new Map<string, AnyAdminCommand>();
			for (const c of host.server.commands) if (c.adhoc) out.set(c.adhoc, c);
			return out;
		};

		// §3.1: support is announced as a feature of the host.
		api.addFeature(NS_COMMANDS);

		// §3.2: the list of commands is the disco#items of the commands node. Hooked above the
		// disco module, which knows no nodes; other nodes fall through to it.
		api.hook(
			`iq-get/host/${NS_DISCO_ITEMS}:query`,
			async ({ stanza, origin, from }: StanzaEvent) => {
				const node = (stanza.elements()[0] as Element).attrs.node;
				if (node !== NS_COMMANDS) return undefined;
				const items: Element[] = [];
				for (const [n, cmd] of byNode()) {
					// Not listed to whoever may not run it (XEP-0050 §3.2 leaves it to the responder).
					if (await mayRun(host, cmd, from))
						items.push(x("item", { jid: host.name, node: n, name: cmd.description }));
				}
				api.reply(origin, resultFor(stanza, x("query", { xmlns: NS_DISCO_ITEMS, node }, items)));
				return HANDLED;
			},
			10,
		);

		// §3.3: a command node's disco#info: the command-node identity, commands and data forms.
		api.hook(
			`iq-get/host/${NS_DISCO_INFO}:query`,
			async ({ stanza, origin, from }: StanzaEvent) => {
				const node = (stanza.elements()[0] as Element).attrs.node;
				if (node === undefined) return undefined;
				if (node === NS_COMMANDS) {
					api.reply(
						origin,
						resultFor(
							stanza,
							x(
								"query",
								{ xmlns: NS_DISCO_INFO, node },
								x("identity", { category: "automation", type: "command-list" }),
							),
						),
					);
					return HANDLED;
				}
				const cmd = byNode().get(node);
				if (!cmd) return undefined;
				// §3.3: a requester who may not run it is refused (forbidden), as §6 does for execution.
				if (!(await mayRun(host, cmd, from))) throw new StanzaError("forbidden");
				api.reply(
					origin,
					resultFor(
						stanza,
						x(
							"query",
							{ xmlns: NS_DISCO_INFO, node },
							x("identity", {
								category: "automation",
								type: "command-node",
								name: cmd.description,
							}),
							x("feature", { var: NS_COMMANDS }),
							x("feature", { var: NS_DATA }),
						),
					),
				);
				return HANDLED;
			},
			10,
		);

		api.hook(`iq-set/host/${NS_COMMANDS}:command`, async (ev: StanzaEvent) => {
			const { stanza, origin, from } = ev;
			const req = stanza.elements()[0] as Element;
			const node = req.attrs.node;
			const action = req.attrs.action ?? "execute";
			const reply = (status: string, sessionid: string, ...payload: (Element | undefined)[]) =>
				api.reply(
					origin,
					resultFor(
						stanza,
						x("command", { xmlns: NS_COMMANDS, node, sessionid, status }, ...payload),
					),
				);
			// §6: an unknown action is malformed-action.
			if (!["execute", "cancel", "complete", "next", "prev"].includes(action))
				throw commandError("bad-request", "malformed-action");
			const cmd = node === undefined ? undefined : byNode().get(node);
			// §6: item-not-found for a node that is no command.
			if (!cmd || node === undefined) throw new StanzaError("item-not-found");
			// §6: forbidden, the requester may not run this command.
			if (!(await mayRun(host, cmd, from))) throw new StanzaError("forbidden");

			let sessionid = req.attrs.sessionid;
			if (sessionid === undefined) {
				if (action !== "execute") throw commandError("bad-request", "bad-action");
				sessionid = `${Date.now().toString(36)}-${(next++).toString(36)}`;
				const asked = Object.keys(cmd.args.shape).filter((k) => k !== HOST_ARG);
				const submitted = findForm(req, formTypeOf(node)) ?? req.getChild("x", NS_DATA);
				if (asked.length > 0 && !submitted) {
					// §3.4: the first stage is the form; one stage, so `complete` is what follows.
					sessions.set(sessionid, {
						node,
						owner: from.toString(),
						expires: Date.now() + SESSION_TTL_MS,
					});
					reply(
						"executing",
						sessionid,
						x("actions", { execute: "complete" }, x("complete")),
						argsForm(cmd.args, formTypeOf(node), cmd.description),
					);
					return HANDLED;
				}
				// No arguments to ask for, or a form sent with the execute (Prosody allows both).
				await run(cmd, node, submitted, ev, sessionid, reply);
				return HANDLED;
			}

			const session = sessions.get(sessionid);
			// §6: bad-sessionid for a session that is not this requester's, session-expired when gone.
			if (!session || session.node !== node || session.owner !== from.toString()) {
				throw commandError("bad-request", "bad-sessionid");
			}
			if (session.expires <= Date.now()) {
				sessions.delete(sessionid);
				throw commandError("not-allowed", "session-expired");
			}
			if (action === "cancel") {
				// §3.4.3: the session ends, status canceled.
				sessions.delete(sessionid);
				reply("canceled", sessionid);
				return HANDLED;
			}
			// §3.4: one stage only, nothing to go back to.
			if (action === "prev") throw commandError("bad-request", "bad-action");
			const submitted = req.getChild("x", NS_DATA);
			if (!submitted) throw commandError("bad-request", "bad-payload", "the form is missing");
			sessions.delete(sessionid);
			await run(cmd, node, submitted, ev, sessionid, reply);
			return HANDLED;
		});

		const run = async (
			cmd: AnyAdminCommand,
			node: string,
			submitted: Element | undefined,
			{ from, stanza, origin }: StanzaEvent,
			sessionid: string,
			reply: (status: string, sessionid: string, ...payload: (Element | undefined)[]) => void,
		): Promise<void> => {
			const raw = submitted ? argsFromForm(cmd.args, formValues(submitted)) : {};
			if (HOST_ARG in cmd.args.shape) raw[HOST_ARG] = host.name;
			const parsed = (cmd.args as z.ZodObject).safeParse(raw);
			if (!parsed.success) {
				const text = parsed.error.issues
					.map((i) => `${i.path.join(".") || "form"}: ${i.message}`)
					.join("; ");
				// §6: bad-payload, the form does not fit the command.
				throw commandError("bad-request", "bad-payload", text);
			}
			let result: unknown;
			try {
				result = await cmd.run(
					{ core: host.server, actor: from.bareString, host: host.name },
					parsed.data,
				);
			} catch (err) {
				if (!(err instanceof CommandError)) throw err;
				const se = new StanzaError(ERROR_CONDITIONS[err.code], err.message);
				// §4.5: the note says why; it travels with the error, inside the echoed command.
				api.reply(
					origin,
					x(
						"iq",
						{ type: "error", id: stanza.attrs.id, to: stanza.attrs.from, from: stanza.attrs.to },
						x(
							"command",
							{ xmlns: NS_COMMANDS, node, sessionid, status: "canceled" },
							x("note", { type: "error" }, err.message),
						),
						se.toElement(),
					),
				);
				return;
			}
			api.log.info({ command: cmd.name, actor: from.bareString }, "ad-hoc command run");
			// §4.5: a note tells a client without forms support that it worked.
			const form = resultForm(result, formTypeOf(node), cmd.description);
			reply("completed", sessionid, form ?? x("note", { type: "info" }, "Done."));
		};
	},
});
