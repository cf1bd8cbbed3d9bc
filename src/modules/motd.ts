/**
 * Welcome message and message of the day, from the host's JID:
 *
 *   [hosts."example.org".module_options.motd]
 *   welcome = "Welcome to example.org!"   # once, to an account registered in-band (XEP-0077)
 *   motd = "Maintenance on Sunday."        # once per account each time the text changes
 *
 * Both are sent on the session's initial available presence (RFC 6121 §4.2), when the client
 * is ready for messages. What each account has seen is kept in keyval "motd".
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import type { Session } from "../core/contracts.ts";
import { Priority } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { StanzaEvent } from "../core/router.ts";
import { x } from "../xml/element.ts";
import type { AccountEvent } from "./register.ts";

const options = z.strictObject({
	welcome: z.string().default(""),
	motd: z.string().default(""),
});

interface MotdRecord {
	[key: string]: string | boolean;
	/** A welcome message is owed (set when the account was registered). */
	welcome: boolean;
	/** SHA-1 of the last message of the day the account was sent. */
	seen: string;
}

export default defineModule({
	name: "motd",
	description: "Welcome message for new accounts and message of the day",
	options,
	load(api) {
		const host = api.host;
		const store = api.keyval<MotdRecord>("motd");
		const { welcome, motd } = api.options;
		const motdHash = motd ? createHash("sha1").update(motd).digest("hex") : "";

		const message = (session: Session, text: string) =>
			x(
				"message",
				{ from: host.name, to: session.jid?.toString(), type: "normal" },
				x("body", null, text),
			);

		if (welcome) {
			api.hook("account/created", async ({ username }: AccountEvent) => {
				const rec = await store.get(username);
				await store.set(username, { welcome: true, seen: rec?.seen ?? "" });
			});
		}

		if (!welcome && !motd) return;

		const greet = async (session: Session) => {
			const user = session.jid?.local ?? "";
			const rec = await store.get(user);
			const owesWelcome = welcome !== "" && rec?.welcome === true;
			const owesMotd = motd !== "" && rec?.seen !== motdHash;
			if (!owesWelcome && !owesMotd) return;
			// Stored before sending: a message is never sent twice because a write failed.
			await store.set(user, { welcome: false, seen: motdHash || (rec?.seen ?? "") });
			if (owesWelcome) session.send(message(session, welcome));
			if (owesMotd) session.send(message(session, motd));
		};
		api.hook(
			"pre-presence/bare",
			async ({ stanza, origin }: StanzaEvent) => {
				// Only a session's initial broadcast presence (no 'to', no type, not yet available).
				if (!origin?.jid || origin.available) return undefined;
				if (stanza.attrs.to !== undefined || stanza.attrs.type !== undefined) return undefined;
				try {
					await greet(origin);
				} catch (err) {
					// A failed greeting must not cost the user their presence.
					api.log.error({ err }, "sending welcome / message of the day failed");
				}
				return undefined;
			},
			Priority.DEFAULT,
		);
	},
});
