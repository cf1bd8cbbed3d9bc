/** Service discovery of a PubSub service, its nodes and items (XEP-0060 §5.1-§5.5). */
import { type Element, x } from "../../xml/element.ts";
import type { JID } from "../../xmpp/jid.ts";
import { NS_DISCO_INFO, NS_DISCO_ITEMS } from "../../xmpp/ns.ts";
import { metaDataForm } from "./config.ts";
import { pubsubError } from "./ns.ts";
import type { PubSubService } from "./service.ts";

/**
 * §5.3-§5.4: disco#info of a node: identity pubsub/leaf and the meta-data form. A node the
 * requester may not see is answered like one that does not exist.
 */
export async function nodeInfo(service: PubSubService, actor: JID, name: string): Promise<Element> {
	return service.run(async () => {
		const node = service.nodes.get(name);
		if (!node || !(await service.canAccess(node, actor))) throw pubsubError("item-not-found");
		const owners = service.hooks.pepOwner ? [service.hooks.pepOwner] : node.owners();
		return x(
			"query",
			{ xmlns: NS_DISCO_INFO, node: name },
			x("identity", { category: "pubsub", type: "leaf" }),
			x("feature", { var: "http://jabber.org/protocol/pubsub" }),
			metaDataForm(node.config, owners, node.publishers()),
		);
	});
}

/**
 * §5.2 / §5.5: disco#items of the service (the nodes the requester may see) or of a node (its
 * items, by id).
 */
export async function discoItems(
	service: PubSubService,
	actor: JID,
	name: string | undefined,
): Promise<Element> {
	return service.run(async () => {
		const jid = service.hooks.jid;
		if (name === undefined) {
			const items: Element[] = [];
			for (const node of service.nodes.values())
				if (await service.canAccess(node, actor))
					items.push(x("item", { jid, node: node.name, name: node.config.title || undefined }));
			return x("query", { xmlns: NS_DISCO_ITEMS }, items);
		}
		const node = service.nodes.get(name);
		if (!node || !(await service.canAccess(node, actor))) throw pubsubError("item-not-found");
		return x(
			"query",
			{ xmlns: NS_DISCO_ITEMS, node: name },
			[...node.items.keys()].reverse().map((id) => x("item", { jid, name: id })),
		);
	});
}
