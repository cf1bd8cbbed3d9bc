/**
 * Presence of a user's own sessions (RFC 6121 §4.2, §4.4, §4.5): availability and priority of
 * each resource, broadcast among the account's resources, and unavailable presence when a
 * session ends. Subscriptions and broadcast to contacts build on this (roster module).
 */
import { HANDLED } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { StanzaEvent } from "../core/router.ts";
import type { Session } from "../core/session.ts";
import { type Element, x } from "../xml/element.ts";

/** RFC 6121 §4.7.2.3: an integer in -128..127; missing or invalid means 0. */
export function presencePriority(presence: Element): number {
	const text = presence.getChildText("priority");
	if (text === undefined) return 0;
	const n = Number.parseInt(text.trim(), 10);
	if (!Number.isFinite(n)) return 0;
	return Math.max(-128, Math.min(127, n));
}

export default defineModule({
	name: "presence",
	description: "RFC 6121 presence of a user's own resources",
	load(api) {
		const host = api.host;
		const others = (session: Session) =>
			host.sessionsOf(session.jid?.local ?? "").filter((s) => s !== session && s.available);

		api.hook("presence/self", ({ stanza, origin }: StanzaEvent) => {
			// Only broadcast presence (no 'to') is about the session's own availability.
			if (!origin || stanza.attrs.to !== undefined) return;
			const type = stanza.attrs.type;
			if (type === undefined) {
				const initial = !origin.available;
				origin.available = true;
				origin.priority = presencePriority(stanza);
				origin.presence = stanza;
				// RFC 6121 §4.2.2 / §4.4.2: to all of the user's available resources,
				// including the one that sent it.
				for (const s of others(origin)) s.send(stanza.clone());
				origin.send(stanza.clone());
				if (initial) {
					// RFC 6121 §4.2.2: the new resource learns about the account's other resources.
					for (const s of others(origin)) if (s.presence) origin.send(s.presence.clone());
				}
				return HANDLED;
			}
			if (type === "unavailable") {
				// RFC 6121 §4.5.2.
				const wasAvailable = origin.available;
				origin.available = false;
				origin.presence = null;
				if (wasAvailable) for (const s of others(origin)) s.send(stanza.clone());
				return HANDLED;
			}
			return undefined;
		});

		// RFC 6121 §4.5.2: a session that ends without saying so is broadcast as unavailable.
		api.hook("session/closed", ({ session }: { session: Session }) => {
			if (!session.available || !session.jid) return;
			session.available = false;
			const unavailable = x("presence", { type: "unavailable", from: session.jid.toString() });
			for (const s of others(session)) s.send(unavailable.clone());
		});
	},
});
