/**
 * Publish-Subscribe (XEP-0060) as the module of a component:
 *
 *     [components."pubsub.example.org"]
 *     type = "pubsub"
 *
 * The rules live in PubSubService (service.ts), the IQ syntax in protocol.ts; this module
 * builds one service for the component's domain, loads its nodes from the component's stores
 * and claims the stanzas addressed to the domain.
 */
import { HANDLED } from "../../core/events.ts";
import { defineModule, type ModuleApi } from "../../core/modules/define.ts";
import { ModuleError } from "../../core/modules/manager.ts";
import type { StanzaEvent } from "../../core/router.ts";
import type { Element } from "../../xml/element.ts";
import { findForm, formValues, parseBoolean } from "../../xmpp/data-form.ts";
import { NS_DISCO_INFO, NS_DISCO_ITEMS } from "../../xmpp/ns.ts";
import { resultFor } from "../../xmpp/stanza.ts";
import { hostDiscoInfo } from "../disco.ts";
import { SERVICE_NODE_DEFAULTS } from "./defaults.ts";
import { discoItems, nodeInfo } from "./disco.ts";
import { NS_PUBSUB, NS_PUBSUB_OWNER, NS_SUBSCRIBE_AUTH, PUBSUB_FEATURES } from "./ns.ts";
import { pubsubIqHandler } from "./protocol.ts";
import { rosterRelation } from "./relation.ts";
import { PubSubService } from "./service.ts";
import { ServiceNodeStore } from "./store.ts";

export default defineModule({
	name: "pubsub",
	description: 'XEP-0060 Publish-Subscribe service (a component: [components."x"] type = "pubsub")',
	async load(api: ModuleApi) {
		const host = api.host;
		const cfg = host.component;
		if (host.kind !== "component" || !cfg || cfg.type !== "pubsub")
			throw new ModuleError(
				`pubsub runs on a component domain: [components."pubsub.${host.name}"] type = "pubsub"`,
			);
		const core = host.server;
		const derived = host.name.slice(host.name.indexOf(".") + 1);
		const parentHost = cfg.parent_host ?? (core.hosts.has(derived) ? derived : undefined);
		const admins = new Set(cfg.admins);
		const service = new PubSubService({
			pepOwner: null,
			jid: host.name,
			defaults: {
				...SERVICE_NODE_DEFAULTS,
				max_items: cfg.default_max_items,
				max_payload_size: cfg.max_payload_size,
			},
			limits: {
				maxItems: cfg.max_items,
				maxPayloadSize: cfg.max_payload_size,
				maxNodes: cfg.max_nodes,
				maxSubscriptionsPerNode: cfg.max_subscriptions_per_node,
			},
			store: new ServiceNodeStore(api.keyval("pubsub_nodes"), api.map("pubsub_items")),
			isAdmin: (bare) => admins.has(bare),
			// §8.1.1: the service's node_creation policy.
			mayCreate(actor) {
				if (admins.has(actor.bareString)) return true;
				if (cfg.node_creation === "anyone") return true;
				if (cfg.node_creation === "local")
					return parentHost ? actor.domain === parentHost : core.hosts.has(actor.domain);
				return false;
			},
			relation: (owner, requester) => rosterRelation(core, owner, requester),
			send: (stanza) => void api.send(stanza),
		});
		await service.load();

		// §5.1: a pubsub service and what it implements.
		api.addIdentity({ category: "pubsub", type: "service", name: cfg.name });
		api.addFeature(NS_PUBSUB);
		for (const f of PUBSUB_FEATURES) api.addFeature(f);

		const answer = pubsubIqHandler(api, core, async () => service);
		for (const ns of [NS_PUBSUB, NS_PUBSUB_OWNER])
			for (const type of ["get", "set"]) api.hook(`iq-${type}/host/${ns}:pubsub`, answer);

		// XEP-0030 on the service, its nodes (§5.3) and their items (§5.5).
		api.hook(`iq-get/host/${NS_DISCO_INFO}:query`, async (e: StanzaEvent) => {
			const node = (e.stanza.elements()[0] as Element).attrs.node;
			const info = node === undefined ? hostDiscoInfo(host) : await nodeInfo(service, e.from, node);
			api.reply(e.origin, resultFor(e.stanza, info));
			return HANDLED;
		});
		api.hook(`iq-get/host/${NS_DISCO_ITEMS}:query`, async (e: StanzaEvent) => {
			const node = (e.stanza.elements()[0] as Element).attrs.node;
			api.reply(e.origin, resultFor(e.stanza, await discoItems(service, e.from, node)));
			return HANDLED;
		});

		// §8.6.2: an owner approves or denies a pending subscription by submitting the form.
		api.hook("message/host", async (e: StanzaEvent) => {
			const form = findForm(e.stanza, NS_SUBSCRIBE_AUTH);
			if (form?.attrs.type !== "submit") return HANDLED;
			const values = formValues(form);
			const node = values.get("pubsub#node")?.[0];
			const subscriber = values.get("pubsub#subscriber_jid")?.[0];
			const allow = parseBoolean(values.get("pubsub#allow")?.[0] ?? "") ?? false;
			if (node !== undefined && subscriber !== undefined)
				await service.authorize(e.from, node, subscriber, allow);
			return HANDLED;
		});
	},
});
