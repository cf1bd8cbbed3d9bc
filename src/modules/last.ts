/**
 * Last Activity (XEP-0012): the server's uptime, and for an account, the seconds since its
 * last resource went away together with the status it left with. Queries to a full JID are
 * the client's business and the router delivers them.
 */

import type { Host, Session } from "../core/contracts.ts";
import { HANDLED, Priority } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { StanzaEvent } from "../core/router.ts";
import { x } from "../xml/element.ts";
import { StanzaError } from "../xmpp/errors.ts";
import type { JID } from "../xmpp/jid.ts";
import { resultFor } from "../xmpp/stanza.ts";
import { hasFrom, loadRoster } from "./roster.ts";

export const NS_LAST = "jabber:iq:last";

/** Session data key: the session has sent available presence at least once. */
const WAS_AVAILABLE = "last.was-available";

/** What is stored per account in keyval "last". */
interface LastRecord {
	[key: string]: string | number;
	/** Milliseconds since the epoch. */
	when: number;
	status: string;
}

/**
 * XEP-0012 §4: may `requester` see `owner`'s last activity? Only someone allowed to see the
 * account's presence, "normally via a presence subscription": the owner themselves, or a
 * contact with a subscription from/both in the owner's roster (RFC 6121 §3), shared roster
 * groups included (they take part in `loadRoster`).
 */
export async function mayViewPresence(host: Host, owner: JID, requester: JID): Promise<boolean> {
	if (owner.equals(requester.bare)) return true;
	const { items } = await loadRoster(host, owner.local);
	return hasFrom(items.get(requester.bare.toString())?.subscription);
}

export default defineModule({
	name: "last",
	description: "XEP-0012 Last Activity",
	load(api) {
		const host = api.host;
		const store = api.keyval<LastRecord>("last");
		const started = Date.now();
		/** user -> the write of a logout that is under way. */
		const writing = new Map<string, Promise<void>>();
		const seconds = (since: number) => String(Math.max(0, Math.floor((Date.now() - since) / 1000)));

		api.addFeature(NS_LAST);

		// XEP-0012 §5: a query to a server gives its uptime.
		api.hook(`iq-get/host/${NS_LAST}:query`, ({ stanza, origin }: StanzaEvent) => {
			api.reply(
				origin,
				resultFor(stanza, x("query", { xmlns: NS_LAST, seconds: seconds(started) })),
			);
			return HANDLED;
		});

		// XEP-0012 §4: a query to an account's bare JID is answered by its server.
		api.hook(`iq-get/bare/${NS_LAST}:query`, async ({ stanza, origin, from, to }: StanzaEvent) => {
			// RFC 6121 §8.5.1: no such account -> service-unavailable.
			if (!(await host.accounts.exists(to.local))) throw new StanzaError("service-unavailable");
			if (!(await mayViewPresence(host, to, from))) throw new StanzaError("forbidden");
			// §4: with an available resource the answer is 0 seconds.
			if (host.sessionsOf(to.local).some((s) => s.available)) {
				api.reply(origin, resultFor(stanza, x("query", { xmlns: NS_LAST, seconds: "0" })));
				return HANDLED;
			}
			// A logout being recorded (Prosody's lastactivity.scs asks right after its own
			// unavailable presence, on the same stream) is waited for, so the answer has its status.
			await writing.get(to.local);
			const rec = await store.get(to.local);
			// Never logged out since we started keeping track: nothing to tell.
			if (!rec) throw new StanzaError("item-not-found");
			api.reply(
				origin,
				resultFor(
					stanza,
					x("query", { xmlns: NS_LAST, seconds: seconds(rec.when) }, rec.status || undefined),
				),
			);
			return HANDLED;
		});

		// The status a resource leaves with is the one in its unavailable presence (§4: "the
		// status message of the last unavailable presence"); remembered until the session ends.
		api.hook(
			"pre-presence/bare",
			({ stanza, origin }: StanzaEvent) => {
				if (!origin || stanza.attrs.to !== undefined) return undefined;
				if (stanza.attrs.type === "unavailable") {
					origin.data.set("last", stanza.getChildText("status") ?? "");
					const user = origin.jid?.local;
					const write = recordIfLast(origin).catch((err: unknown) =>
						api.log.error({ err }, "recording last activity failed"),
					);
					// The broadcast does not wait for storage; a query does (see below).
					if (user !== undefined) {
						writing.set(user, write);
						void write.then(() => {
							if (writing.get(user) === write) writing.delete(user);
						});
					}
				} else if (stanza.attrs.type === undefined) {
					origin.data.delete("last");
					origin.data.set(WAS_AVAILABLE, true);
				}
				return undefined;
			},
			Priority.TRANSFORM,
		);

		/** Records the logout once no other resource of the account is available. */
		const recordIfLast = async (session: Session) => {
			const user = session.jid?.local;
			if (user === undefined) return;
			const others = host.sessionsOf(user).filter((s) => s !== session && s.available);
			if (others.length) return;
			const status = session.data.get("last");
			await store.set(user, { when: Date.now(), status: typeof status === "string" ? status : "" });
		};

		// A session that never sent available presence (a bot, a client that only fetches
		// something) was never online as far as contacts can tell (§4 counts available
		// resources): its end is no logout to record, and it costs no storage write.
		api.hook("session/closed", async ({ session }: { session: Session }) => {
			if (session.data.get(WAS_AVAILABLE) !== true) return;
			try {
				await recordIfLast(session);
			} catch (err) {
				api.log.error({ err }, "recording last activity failed");
			}
		});
	},
});
