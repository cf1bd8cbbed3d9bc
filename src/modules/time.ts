/** XEP-0202 Entity Time of the server. */
import { HANDLED } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { StanzaEvent } from "../core/router.ts";
import { x } from "../xml/element.ts";
import { NS_TIME } from "../xmpp/ns.ts";
import { resultFor } from "../xmpp/stanza.ts";

export default defineModule({
	name: "time",
	description: "XEP-0202 Entity Time",
	load(api) {
		api.addFeature(NS_TIME);
		api.hook("iq-get/host/urn:xmpp:time:time", ({ stanza, origin }: StanzaEvent) => {
			// XEP-0202 §4: tzo and utc (XEP-0082 DateTime, UTC with 'Z').
			const utc = `${new Date().toISOString().slice(0, 19)}Z`;
			api.reply(
				origin,
				resultFor(
					stanza,
					x("time", { xmlns: NS_TIME }, x("tzo", null, "+00:00"), x("utc", null, utc)),
				),
			);
			return HANDLED;
		});
	},
});
