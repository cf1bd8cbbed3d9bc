/**
 * Node configuration (XEP-0060 §8.2, the pubsub#node_config form of §16.4.4): its typed form,
 * the form an owner fills in, how a submitted form or publish-options (§7.1.5) apply to it, and
 * the pubsub#meta-data form of node disco#info (§5.4).
 */
import { type Element, x } from "../../xml/element.ts";
import { field, formValues, NS_DATA, parseBoolean } from "../../xmpp/data-form.ts";
import { NS_META_DATA, NS_NODE_CONFIG, NS_PUBLISH_OPTIONS, pubsubError } from "./ns.ts";

export type AccessModel = "open" | "presence" | "roster" | "authorize" | "whitelist";
export type PublishModel = "publishers" | "subscribers" | "open";
export type SendLastPublished = "never" | "on_sub" | "on_sub_and_presence";

export const ACCESS_MODELS: readonly AccessModel[] = [
	"open",
	"presence",
	"roster",
	"authorize",
	"whitelist",
];
const PUBLISH_MODELS: readonly PublishModel[] = ["publishers", "subscribers", "open"];
const SEND_LAST: readonly SendLastPublished[] = ["never", "on_sub", "on_sub_and_presence"];

export type NodeConfig = {
	title: string;
	description: string;
	/** pubsub#type: the payload namespace (XEP-0060 §16.4.4). */
	type: string;
	access_model: AccessModel;
	roster_groups_allowed: string[];
	publish_model: PublishModel;
	/** "max" is the service's own limit (XEP-0060 §7.1.2 / config-node-max). */
	max_items: number | "max";
	persist_items: boolean;
	deliver_payloads: boolean;
	deliver_notifications: boolean;
	notify_retract: boolean;
	notify_delete: boolean;
	notify_config: boolean;
	notify_sub: boolean;
	send_last_published_item: SendLastPublished;
	notification_type: "normal" | "headline";
	/** Bytes of one item's payload. */
	max_payload_size: number;
	itemreply: "owner" | "publisher";
};

/** The service's bounds a configuration is checked against. */
export interface ConfigLimits {
	/** What "max" means, and the highest number allowed. */
	maxItems: number;
	maxPayloadSize: number;
}

const b = (v: boolean) => (v ? "1" : "0");

/** §8.2.1 (Example 125): the configuration form, filled with `c`. */
export function configForm(c: NodeConfig, limits: ConfigLimits, type = "form"): Element {
	return x(
		"x",
		{ xmlns: NS_DATA, type },
		field("FORM_TYPE", "hidden", undefined, NS_NODE_CONFIG),
		field("pubsub#title", "text-single", "A friendly name for the node", c.title),
		field("pubsub#description", "text-single", "A description of the node", c.description),
		field("pubsub#type", "text-single", "The type of node data (its namespace)", c.type),
		field(
			"pubsub#access_model",
			"list-single",
			"Who may subscribe and retrieve items",
			c.access_model,
			ACCESS_MODELS.map((m) => [m, m]),
		),
		field(
			"pubsub#roster_groups_allowed",
			"list-multi",
			"Roster groups allowed to subscribe",
			c.roster_groups_allowed,
		),
		field(
			"pubsub#publish_model",
			"list-single",
			"Who may publish",
			c.publish_model,
			PUBLISH_MODELS.map((m) => [m, m]),
		),
		field(
			"pubsub#max_items",
			"text-single",
			`Items to keep (1-${limits.maxItems}, or max)`,
			String(c.max_items),
		),
		field("pubsub#persist_items", "boolean", "Persist items to storage", b(c.persist_items)),
		field("pubsub#deliver_payloads", "boolean", "Deliver payloads", b(c.deliver_payloads)),
		field(
			"pubsub#deliver_notifications",
			"boolean",
			"Deliver event notifications",
			b(c.deliver_notifications),
		),
		field("pubsub#notify_retract", "boolean", "Notify when items are removed", b(c.notify_retract)),
		field("pubsub#notify_delete", "boolean", "Notify when the node is deleted", b(c.notify_delete)),
		field(
			"pubsub#notify_config",
			"boolean",
			"Notify when the configuration changes",
			b(c.notify_config),
		),
		field("pubsub#notify_sub", "boolean", "Notify owners of new subscribers", b(c.notify_sub)),
		field(
			"pubsub#send_last_published_item",
			"list-single",
			"When to send the last published item",
			c.send_last_published_item,
			SEND_LAST.map((m) => [m, m]),
		),
		field(
			"pubsub#notification_type",
			"list-single",
			"Message type of notifications",
			c.notification_type,
			[
				["normal", "normal"],
				["headline", "headline"],
			],
		),
		field(
			"pubsub#max_payload_size",
			"text-single",
			`Maximum payload size in bytes (up to ${limits.maxPayloadSize})`,
			String(c.max_payload_size),
		),
		field("pubsub#itemreply", "list-single", "Whom replies to items go to", c.itemreply, [
			["owner", "owner"],
			["publisher", "publisher"],
		]),
	);
}

function oneOf<T extends string>(v: string, allowed: readonly T[], name: string): T {
	if ((allowed as readonly string[]).includes(v)) return v as T;
	throw pubsubError("not-acceptable", undefined, `${name}: one of ${allowed.join(", ")}`);
}

function bool(v: string, name: string): boolean {
	const parsed = parseBoolean(v);
	if (parsed === undefined)
		throw pubsubError("not-acceptable", undefined, `${name}: not a boolean`);
	return parsed;
}

function integer(v: string, name: string, min: number, max: number): number {
	const n = Number(v.trim());
	if (!Number.isInteger(n) || n < min || n > max)
		throw pubsubError("not-acceptable", undefined, `${name}: an integer from ${min} to ${max}`);
	return n;
}

/**
 * One field's value as the configuration holds it, or undefined for a field that is not part
 * of the configuration. A value the service cannot accept is `not-acceptable` (§8.2.5.3).
 */
function parseField(
	name: string,
	values: string[],
	limits: ConfigLimits,
): [keyof NodeConfig, NodeConfig[keyof NodeConfig]] | undefined {
	const v = values[0] ?? "";
	const key = name.startsWith("pubsub#") ? name.slice(7) : "";
	switch (key) {
		case "title":
		case "description":
		case "type":
			if (v.length > 1024) throw pubsubError("not-acceptable", undefined, `${name}: too long`);
			return [key, v];
		case "access_model":
			// §8.1.2: an access model the service does not offer is unsupported-access-model.
			if (!(ACCESS_MODELS as readonly string[]).includes(v))
				throw pubsubError(
					"not-acceptable",
					"unsupported-access-model",
					`${name}: one of ${ACCESS_MODELS.join(", ")}`,
				);
			return [key, v as AccessModel];
		case "roster_groups_allowed":
			return [key, values.slice(0, 100)];
		case "publish_model":
			return [key, oneOf(v, PUBLISH_MODELS, name)];
		case "max_items":
			return [key, v.trim() === "max" ? "max" : integer(v, name, 1, limits.maxItems)];
		case "persist_items":
		case "deliver_payloads":
		case "deliver_notifications":
		case "notify_retract":
		case "notify_delete":
		case "notify_config":
		case "notify_sub":
			return [key, bool(v, name)];
		case "send_last_published_item":
			return [key, oneOf(v, SEND_LAST, name)];
		case "notification_type":
			return [key, oneOf(v, ["normal", "headline"] as const, name)];
		case "max_payload_size":
			return [key, integer(v, name, 1, limits.maxPayloadSize)];
		case "itemreply":
			return [key, oneOf(v, ["owner", "publisher"] as const, name)];
		default:
			return undefined;
	}
}

/**
 * §8.2.4 / §8.1.3: a submitted pubsub#node_config form applied to `current`. Fields left out
 * keep their value; fields the service does not know are ignored (XEP-0004 §3.2).
 */
export function applyConfigForm(
	current: NodeConfig,
	form: Element,
	limits: ConfigLimits,
): NodeConfig {
	const values = formValues(form);
	const formType = values.get("FORM_TYPE")?.[0];
	// §7.1.5: publish-options that create a node configure it like a node_config form.
	if (formType !== undefined && formType !== NS_NODE_CONFIG && formType !== NS_PUBLISH_OPTIONS)
		throw pubsubError("bad-request", undefined, `FORM_TYPE must be ${NS_NODE_CONFIG}`);
	if (form.attrs.type === "cancel") return current;
	const next: NodeConfig = { ...current };
	for (const [name, vals] of values) {
		const parsed = parseField(name, vals, limits);
		if (parsed) (next as unknown as Record<string, unknown>)[parsed[0]] = parsed[1];
	}
	return next;
}

function same(a: unknown, b: unknown): boolean {
	if (Array.isArray(a) && Array.isArray(b))
		return a.length === b.length && [...a].sort().join("\n") === [...b].sort().join("\n");
	return a === b;
}

/**
 * XEP-0060 §7.1.5: publish-options are preconditions on an existing node: each field must
 * match the node's configuration (compared as typed values, so "1" and "true" agree), else
 * `conflict` with `precondition-not-met`. A field that is not part of the configuration cannot
 * be met either.
 */
export function checkPreconditions(
	config: NodeConfig,
	options: Element,
	limits: ConfigLimits,
): void {
	for (const [name, vals] of formValues(options)) {
		if (name === "FORM_TYPE") continue;
		let parsed: ReturnType<typeof parseField>;
		try {
			parsed = parseField(name, vals, limits);
		} catch {
			parsed = undefined;
		}
		if (!parsed || !same(config[parsed[0]], parsed[1]))
			throw pubsubError(
				"conflict",
				"precondition-not-met",
				`${name} does not match the node's configuration`,
			);
	}
}

/** §7.1.5: publish-options must be a pubsub#publish-options form. */
export function checkPublishOptionsForm(options: Element): void {
	const formType = formValues(options).get("FORM_TYPE")?.[0];
	if (options.ns !== NS_DATA || formType !== NS_PUBLISH_OPTIONS)
		throw pubsubError("bad-request", "invalid-options", `FORM_TYPE must be ${NS_PUBLISH_OPTIONS}`);
}

/** §5.4 (Example 10): node meta-data in node disco#info. */
export function metaDataForm(c: NodeConfig, owners: string[], publishers: string[]): Element {
	return x(
		"x",
		{ xmlns: NS_DATA, type: "result" },
		field("FORM_TYPE", "hidden", undefined, NS_META_DATA),
		field("pubsub#title", "text-single", undefined, c.title),
		field("pubsub#description", "text-single", undefined, c.description),
		field("pubsub#type", "text-single", undefined, c.type),
		field("pubsub#access_model", "list-single", undefined, c.access_model),
		field("pubsub#publish_model", "list-single", undefined, c.publish_model),
		field("pubsub#max_items", "text-single", undefined, String(c.max_items)),
		field("pubsub#owner", "jid-multi", undefined, owners),
		field("pubsub#publisher", "jid-multi", undefined, publishers),
	);
}
