/** XEP-0092 Software Version of the server. */
import { z } from "zod";
import pkg from "../../package.json" with { type: "json" };
import { HANDLED } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { StanzaEvent } from "../core/router.ts";
import { x } from "../xml/element.ts";
import { NS_VERSION } from "../xmpp/ns.ts";
import { resultFor } from "../xmpp/stanza.ts";

const options = z.strictObject({
	/** Reveal the operating system; off by default (XEP-0092 §4 security considerations). */
	show_os: z.boolean().default(false),
});

export default defineModule({
	name: "version",
	description: "XEP-0092 Software Version",
	options,
	load(api) {
		api.addFeature(NS_VERSION);
		api.hook("iq-get/host/jabber:iq:version:query", ({ stanza, origin }: StanzaEvent) => {
			api.reply(
				origin,
				resultFor(
					stanza,
					x(
						"query",
						{ xmlns: NS_VERSION },
						x("name", null, "Parley"),
						x("version", null, pkg.version),
						api.options.show_os ? x("os", null, `${process.platform} ${process.arch}`) : undefined,
					),
				),
			);
			return HANDLED;
		});
	},
});
