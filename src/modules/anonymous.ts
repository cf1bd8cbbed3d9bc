/**
 * The limits of an anonymous host (`authentication = "anonymous"`, RFC 4505 / XEP-0175), loaded
 * by the server on every such host whatever its `modules` list says. The login itself is the
 * ANONYMOUS mechanism (src/auth/sasl.ts) and the session caps are checked by the stream
 * (src/c2s/features.ts `guestLimit`); what a guest may do once bound is decided here:
 *
 * - No federation unless `anonymous.allow_s2s`: a stanza from a guest to a domain that is not
 *   served here is refused with `not-allowed` (RFC 6120 §8.3.3.10), as Prosody's
 *   mod_auth_anonymous does by default (its core answers "Communication with remote domains is
 *   not enabled"). Rooms on local MUC services and local users stay reachable.
 * - With `anonymous.allow_local_users = false`, guests reach only rooms and other services
 *   (components) and server JIDs: a stanza to `user@host` on any host of this server is refused
 *   with `not-allowed` too (except errors and results, which answer something).
 * - No offline storage: a message to a guest with no available resource bounces with
 *   `service-unavailable` (RFC 6121 §8.5.2.2.1 allows it; a gone guest is an account that does
 *   not exist, §8.5.1, which the router answers the same way).
 * - Nothing outlives the session: when a guest's last session ends, everything stored for it on
 *   this host (roster, vCard, private XML, last activity, ...) is deleted. The host's stores
 *   live in memory anyway (storage routing, `memory_hosts`), so a crash or restart leaves
 *   nothing behind either.
 */
import type { Session } from "../core/contracts.ts";
import { HANDLED, Priority } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { StanzaEvent } from "../core/router.ts";
import { StanzaError } from "../xmpp/errors.ts";
import type { JID } from "../xmpp/jid.ts";

export default defineModule({
	name: "anonymous",
	description: "limits of an anonymous host: no federation, no offline storage, no data kept",
	load(api) {
		const host = api.host;
		const server = host.server;
		const limits = host.config.anonymous;

		// What a guest may not address: other domains (unless allow_s2s), and users of this
		// server's hosts other than itself (unless allow_local_users). One handler, checked before
		// any module sees the stanza.
		const refused = (from: JID, to: JID): string | undefined => {
			const target = server.local(to.domain);
			if (!target) return limits.allow_s2s ? undefined : "guests cannot reach other domains";
			if (limits.allow_local_users || target.kind !== "host" || !to.local) return undefined;
			// A guest's own account (its roster, vCard, private storage) stays its own business.
			return to.bare.equals(from.bare) ? undefined : "guests here may only talk in rooms";
		};
		if (!limits.allow_s2s || !limits.allow_local_users) {
			const guard = ({ stanza, from, to }: StanzaEvent) => {
				const why = refused(from, to);
				if (why === undefined) return undefined;
				const type = stanza.attrs.type;
				// Errors are never answered with errors (RFC 6120 §8.3.1); results carry nothing.
				if (type === "error" || (stanza.name === "iq" && type === "result")) return HANDLED;
				api.log.info({ from: from.toString(), to: to.toString(), why }, "guest stanza refused");
				throw new StanzaError("not-allowed", why);
			};
			for (const kind of ["message", "presence", "iq"])
				for (const dest of ["host", "bare", "full"])
					api.hook(`pre-${kind}/${dest}`, guard, Priority.SECURITY);
		}

		// Before the offline module (which would store it): never kept for a guest.
		api.hook(
			"message/offline",
			() => {
				throw new StanzaError("service-unavailable");
			},
			Priority.SECURITY,
		);

		// After every other module's handler (last activity, presence), so nothing is written
		// back once the data is gone.
		api.hook(
			"session/closed",
			async ({ session }: { session: Session }) => {
				const user = session.jid?.local;
				if (!user || host.sessions.has(user)) return;
				try {
					await server.storage.deleteUser(host.name, user);
					api.log.debug({ user }, "guest data deleted");
				} catch (err) {
					api.log.error({ err, user }, "deleting a guest's data failed");
				}
			},
			Priority.LATE - 1,
		);
	},
});
