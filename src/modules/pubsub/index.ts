/**
 * Publish-Subscribe (XEP-0060) as the module of a component:
 *
 *     [components."pubsub.example.org"]
 *     type = "pubsub"
 *
 * The rules live in PubSubService (service.ts), the IQ syntax in protocol.ts; this module
 * builds one service for the component's domain, loads its nodes from the component's stores
 * and claims the stanzas addressed to the domain. In a cluster (issue 16) each pubsub node is
 * owned by one cluster node (`pubsubUnitOf` names it for the router) and loaded there when first
 * needed; requests that read every node are answered from storage.
 */
import type { OwnedUnits } from "../../core/contracts.ts";
import { HANDLED } from "../../core/events.ts";
import { defineModule, type ModuleApi } from "../../core/modules/define.ts";
import { ModuleError } from "../../core/modules/manager.ts";
import type { StanzaEvent } from "../../core/router.ts";
import type { Element } from "../../xml/element.ts";
import { findForm, formValues, parseBoolean } from "../../xmpp/data-form.ts";
import type { JID } from "../../xmpp/jid.ts";
import { NS_DISCO_INFO, NS_DISCO_ITEMS } from "../../xmpp/ns.ts";
import { resultFor } from "../../xmpp/stanza.ts";
import { hostDiscoInfo } from "../disco.ts";
import { SERVICE_NODE_DEFAULTS } from "./defaults.ts";
import { discoItems, nodeInfo } from "./disco.ts";
import {
	NS_PUBSUB,
	NS_PUBSUB_OWNER,
	NS_SUBSCRIBE_AUTH,
	PUBSUB_FEATURES,
	pubsubError,
} from "./ns.ts";
import { pubsubIqHandler } from "./protocol.ts";
import { rosterRelation } from "./relation.ts";
import { PubSubService, type ServiceHooks } from "./service.ts";
import { type NodeStore, ServiceNodeStore } from "./store.ts";

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
		const store = new ServiceNodeStore(api.keyval("pubsub_nodes"), api.map("pubsub_items"));
		const clustered = core.config.cluster.enabled;
		// Names this node claimed lately (a stanza named them): their leases are kept for one
		// node_timeout even while no such node exists, so a create racing a renewal keeps it.
		const touched = new Map<string, number>();
		const holdMs = core.config.cluster.node_timeout * 1000;
		const hooks: ServiceHooks = {
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
			store,
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
		};
		const service = new PubSubService(
			clustered
				? {
						...hooks,
						lazy: {
							loadNode: (name) => store.loadOne(name),
							// §8.1.2: an instant node is owned by the node that makes its name.
							async claim(name) {
								touched.set(name, Date.now());
								const cluster = core.cluster;
								if (!cluster?.owners) return;
								if ((await cluster.owners.ownerOf(host, name, true)) !== cluster.node)
									throw pubsubError("conflict", undefined, `node ${name} exists`);
							},
						},
					}
				: hooks,
		);
		if (clustered) {
			// Issue 16: each pubsub node is owned by one cluster node at a time (a lease, as a MUC
			// room); the router reads the node's name from the payload and passes the stanza to
			// its owner, which reads the node from storage when it claims it. Requests that name no
			// node are answered by the node they reach: from storage when they span every node.
			const placement: OwnedUnits = {
				unitOf: pubsubUnitOf,
				holds: (name) => service.nodes.has(name) || Date.now() - (touched.get(name) ?? 0) < holdMs,
				lost: (name) => {
					touched.delete(name);
					void service.forget(name);
				},
			};
			host.placement = placement;
			api.onUnload(() => {
				if (host.placement === placement) delete host.placement;
			});
		}
		/**
		 * The service that answers `e`: in a cluster, with the node it names loaded (this node owns
		 * it: the router saw to that), or for a get that names none (§5.6, §5.7, XEP-0030 items of
		 * the root) every node's state as storage has it, since other nodes own most of them.
		 */
		const serviceFor = async (e: StanzaEvent): Promise<PubSubService> => {
			if (!clustered) return service;
			const name = pubsubUnitOf(e.to, e.stanza);
			if (name !== null) {
				touched.set(name, Date.now());
				await service.ensure(name);
				return service;
			}
			if (e.stanza.name === "iq" && e.stanza.attrs.type === "get") {
				const snapshot = new PubSubService({ ...hooks, store: readOnly(store) });
				await snapshot.load();
				return snapshot;
			}
			return service;
		};
		await service.load();

		// §5.1: a pubsub service and what it implements.
		api.addIdentity({ category: "pubsub", type: "service", name: cfg.name });
		api.addFeature(NS_PUBSUB);
		for (const f of PUBSUB_FEATURES) api.addFeature(f);

		const answer = pubsubIqHandler(api, core, serviceFor);
		for (const ns of [NS_PUBSUB, NS_PUBSUB_OWNER])
			for (const type of ["get", "set"]) api.hook(`iq-${type}/host/${ns}:pubsub`, answer);

		// XEP-0030 on the service, its nodes (§5.3) and their items (§5.5).
		api.hook(`iq-get/host/${NS_DISCO_INFO}:query`, async (e: StanzaEvent) => {
			const node = (e.stanza.elements()[0] as Element).attrs.node;
			const info =
				node === undefined
					? hostDiscoInfo(host)
					: await nodeInfo(await serviceFor(e), e.from, node);
			api.reply(e.origin, resultFor(e.stanza, info));
			return HANDLED;
		});
		api.hook(`iq-get/host/${NS_DISCO_ITEMS}:query`, async (e: StanzaEvent) => {
			const node = (e.stanza.elements()[0] as Element).attrs.node;
			const items = await discoItems(await serviceFor(e), e.from, node);
			api.reply(e.origin, resultFor(e.stanza, items));
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
				await (await serviceFor(e)).authorize(e.from, node, subscriber, allow);
			return HANDLED;
		});
	},
});

/**
 * The pubsub node a stanza to the service is about (issue 16: the unit of its lease), or null:
 * the first child of `<pubsub/>` names it (XEP-0060 §§6-8 `node`), XEP-0030 queries carry it
 * (§5.3, §5.5), and an owner's answer to a subscription request has it in its form (§8.6.2).
 * One child lookup per level; a request without a node (create an instant node, §8.1.2; every
 * subscription or affiliation, §5.6, §5.7; the root's disco) gets null.
 */
export function pubsubUnitOf(to: JID, stanza: Element): string | null {
	if (to.local || to.resource) return null;
	if (stanza.name === "iq") {
		const type = stanza.attrs.type;
		if (type !== "get" && type !== "set") return null;
		const payload = stanza.elements()[0];
		if (!payload) return null;
		if (payload.name === "pubsub" && (payload.ns === NS_PUBSUB || payload.ns === NS_PUBSUB_OWNER))
			return payload.elements()[0]?.attrs.node || null;
		if (payload.name === "query" && (payload.ns === NS_DISCO_INFO || payload.ns === NS_DISCO_ITEMS))
			return payload.attrs.node || null;
		return null;
	}
	if (stanza.name === "message") {
		const form = findForm(stanza, NS_SUBSCRIBE_AUTH);
		return form ? formValues(form).get("pubsub#node")?.[0] || null : null;
	}
	return null;
}

/** The service's store for answers read from storage: every node's meta, nothing written. */
function readOnly(store: ServiceNodeStore): NodeStore {
	const refuse = () => Promise.reject(new Error("pubsub: a read from storage does not write"));
	return {
		load: () => store.loadMetas(),
		saveMeta: refuse,
		deleteNode: refuse,
		putItem: refuse,
		deleteItems: refuse,
	};
}
