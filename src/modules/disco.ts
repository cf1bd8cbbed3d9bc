/**
 * XEP-0030 Service Discovery: disco#info and disco#items on the server and on accounts.
 * Features and identities come from the modules loaded on the host (ModuleApi.addFeature).
 */

import type { Host } from "../core/contracts.ts";
import { HANDLED } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { StanzaEvent } from "../core/router.ts";
import { type Element, x } from "../xml/element.ts";
import { StanzaError } from "../xmpp/errors.ts";
import { NS_DISCO_INFO, NS_DISCO_ITEMS } from "../xmpp/ns.ts";
import { resultFor } from "../xmpp/stanza.ts";
import { hasFrom, loadRosterItem } from "./roster.ts";

/** The host's disco#info query (XEP-0030 §3.1); caps (XEP-0115) hashes exactly this. */
export function hostDiscoInfo(host: Host, node?: string): Element {
	const features = [...new Set([NS_DISCO_INFO, NS_DISCO_ITEMS, ...host.features.keys()])].sort();
	return x(
		"query",
		{ xmlns: NS_DISCO_INFO, node },
		host.identities.map((i) => x("identity", { category: i.category, type: i.type, name: i.name })),
		features.map((f) => x("feature", { var: f })),
		host.extensions.map((e) => e.clone()),
	);
}

export default defineModule({
	name: "disco",
	description: "XEP-0030 Service Discovery",
	load(api) {
		const host = api.host;
		api.hook(
			"iq-get/host/http://jabber.org/protocol/disco#info:query",
			({ stanza, origin }: StanzaEvent) => {
				const node = (stanza.elements()[0] as Element).attrs.node;
				// XEP-0030 §3.1: a node we do not know is item-not-found.
				if (node !== undefined) throw new StanzaError("item-not-found");
				api.reply(origin, resultFor(stanza, hostDiscoInfo(host, node)));
				return HANDLED;
			},
		);
		api.hook(
			"iq-get/host/http://jabber.org/protocol/disco#items:query",
			({ stanza, origin }: StanzaEvent) => {
				const node = (stanza.elements()[0] as Element).attrs.node;
				if (node !== undefined) throw new StanzaError("item-not-found");
				// XEP-0030 §4.1: the services under this host (components such as a XEP-0045 MUC
				// service), as Prosody lists its subdomain components.
				const items = [...host.discoItems.values()].map((i) =>
					x("item", { jid: i.jid, name: i.name }),
				);
				api.reply(origin, resultFor(stanza, x("query", { xmlns: NS_DISCO_ITEMS }, items)));
				return HANDLED;
			},
		);
		/**
		 * XEP-0030 §3.1 and RFC 6121 §8.5.1: the server answers for accounts' bare JIDs. The
		 * account itself and the contacts subscribed to its presence (from/both, as Prosody's
		 * mod_disco does) see its identities and features; others get service-unavailable,
		 * which does not reveal whether the account exists.
		 */
		const mayDiscover = async ({ from, to }: StanzaEvent): Promise<boolean> => {
			if (!(await host.accounts.exists(to.local))) return false;
			if (from.bare.equals(to)) return true;
			const item = await loadRosterItem(host, to.local, from.bareString);
			return hasFrom(item?.subscription);
		};
		api.hook(
			"iq-get/bare/http://jabber.org/protocol/disco#info:query",
			async (event: StanzaEvent) => {
				const { stanza, origin } = event;
				if (!(await mayDiscover(event))) throw new StanzaError("service-unavailable");
				const features = [
					...new Set([NS_DISCO_INFO, NS_DISCO_ITEMS, ...host.accountFeatures.keys()]),
				].sort();
				api.reply(
					origin,
					resultFor(
						stanza,
						x(
							"query",
							{ xmlns: NS_DISCO_INFO },
							x("identity", { category: "account", type: "registered" }),
							host.accountIdentities.map((i) =>
								x("identity", { category: i.category, type: i.type, name: i.name }),
							),
							features.map((f) => x("feature", { var: f })),
						),
					),
				);
				return HANDLED;
			},
		);
		api.hook(
			"iq-get/bare/http://jabber.org/protocol/disco#items:query",
			async (event: StanzaEvent) => {
				if (!(await mayDiscover(event))) throw new StanzaError("service-unavailable");
				api.reply(event.origin, resultFor(event.stanza, x("query", { xmlns: NS_DISCO_ITEMS })));
				return HANDLED;
			},
		);
	},
});
