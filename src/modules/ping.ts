/** XEP-0199 XMPP Ping: the server answers pings addressed to it. */
import { HANDLED } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { StanzaEvent } from "../core/router.ts";
import { NS_PING } from "../xmpp/ns.ts";
import { resultFor } from "../xmpp/stanza.ts";

export default defineModule({
	name: "ping",
	description: "XEP-0199 XMPP Ping",
	load(api) {
		api.addFeature(NS_PING);
		// XEP-0199 §4.2 (client-to-server ping): answer with an empty result.
		api.hook("iq-get/host/urn:xmpp:ping:ping", ({ stanza, origin }: StanzaEvent) => {
			api.reply(origin, resultFor(stanza));
			return HANDLED;
		});
		// A ping to one's own bare JID is answered by the server on the account's behalf
		// (RFC 6120 §10.5.3.2 lets the server handle IQs to bare JIDs).
		api.hook("iq-get/bare/urn:xmpp:ping:ping", ({ stanza, origin, from, to }: StanzaEvent) => {
			if (!from.bare.equals(to)) return;
			api.reply(origin, resultFor(stanza));
			return HANDLED;
		});
	},
});
