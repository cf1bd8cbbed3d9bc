/** Node configurations a node starts from when its creator does not say. */
import type { NodeConfig } from "./config.ts";

/** A node on a pubsub service (XEP-0060 §16.4.4 defaults, as Prosody's mod_pubsub has them). */
export const SERVICE_NODE_DEFAULTS: NodeConfig = {
	title: "",
	description: "",
	type: "",
	access_model: "open",
	roster_groups_allowed: [],
	publish_model: "publishers",
	max_items: 256,
	persist_items: true,
	deliver_payloads: true,
	deliver_notifications: true,
	notify_retract: true,
	notify_delete: true,
	notify_config: false,
	notify_sub: false,
	send_last_published_item: "never",
	notification_type: "headline",
	max_payload_size: 65_536,
	itemreply: "owner",
};

/**
 * A PEP node (XEP-0163 §4.x, §6): contacts subscribed to the account's presence may read it,
 * one item, the last one sent when a contact comes online.
 */
export const PEP_NODE_DEFAULTS: NodeConfig = {
	...SERVICE_NODE_DEFAULTS,
	access_model: "presence",
	max_items: 1,
	send_last_published_item: "on_sub_and_presence",
};
