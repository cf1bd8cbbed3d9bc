/**
 * XEP-0114 external components, the module side:
 *
 *     [components."gateway.example.org"]
 *     type = "external"
 *     secret = "..."
 *
 * The component is a Host of kind "component" (src/core/host.ts); this module claims every
 * stanza the router delivers to its domain (and to its subdomains with `subdomains = true`:
 * `Core.local` finds the component for them) and writes it to the connected component. The
 * connection itself is the component listener's (src/component/): after a good handshake it
 * fires `component/connect` on this component's bus, and this module keeps the link.
 *
 * One connection per component: a second one while the first is up is refused with `conflict`,
 * as Prosody does by default. While none is connected, stanzas to the domain bounce with
 * `service-unavailable` (RFC 6120 §8.3.3.19), type "wait" since it is temporary (Prosody too).
 * In a cluster the components run on the leader (the router passes their stanzas there), so a
 * component is only accepted on the leader.
 */
import type { ComponentConnectEvent, ComponentLink } from "../core/contracts.ts";
import { HANDLED } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import { ModuleError } from "../core/modules/manager.ts";
import type { StanzaEvent } from "../core/router.ts";
import { StanzaError } from "../xmpp/errors.ts";

export default defineModule({
	name: "external_component",
	description: 'XEP-0114 external component (a component: [components."x"] type = "external")',
	load(api) {
		const host = api.host;
		const cfg = host.component;
		if (host.kind !== "component" || cfg?.type !== "external")
			throw new ModuleError(
				`external_component runs on a component domain: [components."gateway.${host.name}"] type = "external"`,
			);
		let link: ComponentLink | null = null;

		api.hook("component/connect", (e: ComponentConnectEvent) => {
			const cluster = host.server.cluster;
			if (link) {
				// Prosody's default (component_conflict_resolve = "kick_new"): the running
				// connection stays, the new one gets a `conflict` stream error.
				e.refused = { condition: "conflict", text: `${host.name} is already connected` };
			} else if (cluster && !cluster.leader) {
				e.refused = {
					condition: "policy-violation",
					text: `components run on the cluster's leader (${cluster.leaderNode}); connect there`,
				};
			} else {
				link = e.link;
				api.log.info({ ip: link.remoteAddress }, "external component connected");
			}
			return HANDLED;
		});
		api.hook("component/disconnect", (e: ComponentConnectEvent) => {
			if (link !== e.link) return undefined;
			link = null;
			api.log.info({ ip: e.link.remoteAddress }, "external component disconnected");
			return HANDLED;
		});

		const forward = ({ stanza }: StanzaEvent) => {
			if (!link)
				throw new StanzaError("service-unavailable", `${host.name} is not connected`, {
					type: "wait",
				});
			link.send(stanza);
			return HANDLED;
		};
		// Every stanza for the domain, whatever its payload: no iq-<type>/... event is hooked, so
		// IQs reach `iq/<dest>` (disco included: the component answers its own).
		for (const kind of ["message", "presence", "iq"])
			for (const dest of ["host", "bare", "full"]) api.hook(`${kind}/${dest}`, forward);

		api.onUnload(() => {
			link?.close("system-shutdown", "the component's module is unloaded");
			link = null;
		});
	},
});
