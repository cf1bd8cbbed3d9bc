/**
 * The XEP-0060 IQ syntax: a `<pubsub/>` (§5-§7, namespace pubsub) or `<pubsub/>` in pubsub#owner
 * (§8) request, turned into a PubSubService call, and its result. Shared by the service on a
 * component domain and by PEP on accounts.
 */
import type { Core } from "../../core/contracts.ts";
import { HANDLED } from "../../core/events.ts";
import type { ModuleApi } from "../../core/modules/define.ts";
import type { StanzaEvent } from "../../core/router.ts";
import { type Element, x } from "../../xml/element.ts";
import { field, findForm, formValues, NS_DATA, parseBoolean } from "../../xmpp/data-form.ts";
import type { JID } from "../../xmpp/jid.ts";
import { resultFor } from "../../xmpp/stanza.ts";
import { checkPublishOptionsForm, configForm } from "./config.ts";
import { AFFILIATIONS, type Affiliation } from "./node.ts";
import {
	NS_NODE_CONFIG,
	NS_PUBSUB,
	NS_PUBSUB_OWNER,
	NS_RSM,
	NS_SUBSCRIBE_OPTIONS,
	pubsubError,
} from "./ns.ts";
import type { ItemsQuery, PubSubService } from "./service.ts";

export interface PubsubRequest {
	service: PubSubService;
	iq: Element;
	actor: JID;
	parseJid(s: string): JID;
}

export interface PubsubAnswer {
	/** The IQ result's payload, if any. */
	payload?: Element;
	/** Runs after the result is sent (§6.1.7: the last item follows the subscription result). */
	after?: () => Promise<void>;
}

function unsupported(feature: string): never {
	throw pubsubError(
		"feature-not-implemented",
		"unsupported",
		`${feature} is not supported`,
		// §18.2: the feature attribute is the feature's short name (an NCName), not its URI.
		feature,
	);
}

function jidAttr(req: PubsubRequest, el: Element): JID {
	const s = el.attrs.jid;
	if (s === undefined) throw pubsubError("bad-request", "jid-required");
	try {
		return req.parseJid(s);
	} catch {
		throw pubsubError("bad-request", "invalid-jid");
	}
}

function optionsForm(deliver: boolean, type = "form"): Element {
	return x(
		"x",
		{ xmlns: NS_DATA, type },
		field("FORM_TYPE", "hidden", undefined, NS_SUBSCRIBE_OPTIONS),
		field("pubsub#deliver", "boolean", "Enable delivery?", deliver ? "1" : "0"),
	);
}

/** The pubsub#deliver value of a submitted subscribe_options form (§6.3.5). */
function deliverOf(form: Element | undefined): boolean | undefined {
	if (!form) return undefined;
	const values = formValues(form);
	const formType = values.get("FORM_TYPE")?.[0];
	if (formType !== undefined && formType !== NS_SUBSCRIBE_OPTIONS)
		throw pubsubError("bad-request", "invalid-options");
	const v = values.get("pubsub#deliver")?.[0];
	if (v === undefined) return undefined;
	const b = parseBoolean(v);
	if (b === undefined)
		throw pubsubError("bad-request", "invalid-options", "pubsub#deliver: not a boolean");
	return b;
}

function nonNegative(v: string | undefined, name: string): number | undefined {
	if (v === undefined) return undefined;
	const n = Number(v.trim());
	if (!Number.isInteger(n) || n < 0)
		throw pubsubError("bad-request", undefined, `${name}: not a number`);
	return n;
}

/**
 * The event handler both the component and PEP hook on `<pubsub/>` IQs: answers the request
 * with `service` (or with the service `serviceFor` gives for the addressee) and sends the
 * result, then whatever must follow it.
 */
export function pubsubIqHandler(
	api: Pick<ModuleApi, "reply">,
	core: Pick<Core, "jids">,
	serviceFor: (e: StanzaEvent) => Promise<PubSubService>,
): (e: StanzaEvent) => Promise<boolean> {
	return async (e) => {
		const { payload, after } = await handlePubsubIq({
			service: await serviceFor(e),
			iq: e.stanza,
			actor: e.from,
			parseJid: (s) => core.jids.parse(s),
		});
		api.reply(e.origin, resultFor(e.stanza, ...(payload ? [payload] : [])));
		if (after) await after();
		return HANDLED;
	};
}

export async function handlePubsubIq(req: PubsubRequest): Promise<PubsubAnswer> {
	const query = req.iq.elements()[0] as Element;
	const type = req.iq.attrs.type;
	const children = query.elements();
	const action = children[0];
	if (!action) throw pubsubError("bad-request", undefined, "the pubsub element names no action");
	if (query.ns === NS_PUBSUB_OWNER) return owner(req, type === "set", action, children);
	return type === "set" ? userSet(req, action, children) : userGet(req, action);
}

async function userSet(
	req: PubsubRequest,
	action: Element,
	children: Element[],
): Promise<PubsubAnswer> {
	const { service, actor } = req;
	const node = action.attrs.node;
	switch (action.name) {
		case "create": {
			// §8.1.3: the configure element rides along (create-and-configure).
			const configure = children.find((c) => c.name === "configure");
			const form = configure?.getChild("x", NS_DATA);
			if (form && form.attrs.type !== "submit" && form.attrs.type !== undefined)
				throw pubsubError("bad-request", undefined, "the configuration form must be submitted");
			const name = await service.create(actor, node, form);
			return {
				payload:
					node === undefined
						? x("pubsub", { xmlns: NS_PUBSUB }, x("create", { node: name }))
						: undefined,
			};
		}
		case "publish": {
			const items = action.getChildren("item");
			// §7.1.3.6 / multi-items: one item per publish request.
			if (items.length > 1)
				throw pubsubError("bad-request", "invalid-payload", "one item per publish");
			const item = items[0];
			const payloads = item?.elements() ?? [];
			const po = children.find((c) => c.name === "publish-options");
			const form = po?.getChild("x", NS_DATA);
			if (form) checkPublishOptionsForm(form);
			const id = await service.publish(
				actor,
				node,
				{
					id: item?.attrs.id,
					payload: payloads[0],
					extra: payloads.length > 1,
					absent: item === undefined,
				},
				form,
			);
			return {
				payload: x("pubsub", { xmlns: NS_PUBSUB }, x("publish", { node }, x("item", { id }))),
			};
		}
		case "retract": {
			const notify = parseBoolean(action.attrs.notify ?? "false") ?? false;
			const ids = action.getChildren("item").map((i) => i.attrs.id ?? "");
			if (ids.some((id) => id === "")) throw pubsubError("bad-request", "item-required");
			await service.retract(actor, node, ids, notify);
			return {};
		}
		case "subscribe": {
			const jid = jidAttr(req, action);
			const opts = children.find((c) => c.name === "options");
			const deliver = deliverOf(opts?.getChild("x", NS_DATA)) ?? true;
			const [key, sub] = await service.subscribe(actor, node, jid, deliver);
			return {
				payload: x(
					"pubsub",
					{ xmlns: NS_PUBSUB },
					x("subscription", { node, jid: key, subid: sub.subid, subscription: sub.state }),
				),
				after: sub.state === "subscribed" && node ? () => service.sendLastTo(node, key) : undefined,
			};
		}
		case "unsubscribe":
			await service.unsubscribe(actor, node, jidAttr(req, action), action.attrs.subid);
			return {};
		case "options": {
			const deliver = deliverOf(action.getChild("x", NS_DATA));
			if (deliver !== undefined)
				await service.setDeliver(actor, node, jidAttr(req, action), deliver, action.attrs.subid);
			return {};
		}
		default:
			unsupported(action.name);
	}
}

function rsmOf(pubsub: Element): ItemsQuery["rsm"] {
	const set = pubsub.getChild("set", NS_RSM);
	if (!set) return undefined;
	const before = set.getChild("before");
	return {
		max: nonNegative(set.getChildText("max"), "max"),
		after: set.getChildText("after"),
		before: before ? before.text() : undefined,
		index: nonNegative(set.getChildText("index"), "index"),
	};
}

async function userGet(req: PubsubRequest, action: Element): Promise<PubsubAnswer> {
	const { service, actor } = req;
	const node = action.attrs.node;
	switch (action.name) {
		case "items": {
			const ids = action
				.getChildren("item")
				.map((i) => i.attrs.id ?? "")
				.filter((id) => id !== "");
			const pubsub = req.iq.elements()[0] as Element;
			const q: ItemsQuery = {
				max: nonNegative(action.attrs.max_items, "max_items"),
				ids,
				rsm: rsmOf(pubsub),
			};
			const { node: n, page } = await service.items(actor, node, q);
			const out = x(
				"pubsub",
				{ xmlns: NS_PUBSUB },
				x(
					"items",
					{ node },
					page.items.map((i) => service.itemElement(n, i)),
				),
			);
			if (q.rsm) {
				const first = page.items[0];
				const last = page.items.at(-1);
				out.append(
					x(
						"set",
						{ xmlns: NS_RSM },
						first ? x("first", { index: String(page.firstIndex) }, first.id) : undefined,
						last ? x("last", null, last.id) : undefined,
						x("count", null, String(page.count)),
					),
				);
			}
			return { payload: out };
		}
		case "subscriptions": {
			const subs = await service.subscriptionsOf(actor, node);
			return {
				payload: x(
					"pubsub",
					{ xmlns: NS_PUBSUB },
					x(
						"subscriptions",
						{ node },
						subs.map((s) =>
							x("subscription", {
								node: s.node,
								jid: s.jid,
								subid: s.sub.subid,
								subscription: s.sub.state,
							}),
						),
					),
				),
			};
		}
		case "affiliations": {
			const affs = await service.affiliationsOf(actor, node);
			return {
				payload: x(
					"pubsub",
					{ xmlns: NS_PUBSUB },
					x(
						"affiliations",
						{ node },
						affs.map((a) => x("affiliation", { node: a.node, affiliation: a.affiliation })),
					),
				),
			};
		}
		case "options": {
			const jid = jidAttr(req, action);
			const [, sub] = await service.subscription(actor, node, jid, action.attrs.subid);
			return {
				payload: x(
					"pubsub",
					{ xmlns: NS_PUBSUB },
					x("options", { node, jid: action.attrs.jid, subid: sub.subid }, optionsForm(sub.deliver)),
				),
			};
		}
		case "default":
			// §6.4: the default subscription options.
			return { payload: x("pubsub", { xmlns: NS_PUBSUB }, x("default", null, optionsForm(true))) };
		default:
			unsupported(action.name);
	}
}

async function owner(
	req: PubsubRequest,
	set: boolean,
	action: Element,
	children: Element[],
): Promise<PubsubAnswer> {
	const { service, actor } = req;
	const node = action.attrs.node;
	const limits = service.hooks.limits;
	const wrap = (...c: Element[]) => x("pubsub", { xmlns: NS_PUBSUB_OWNER }, c);
	switch (`${set ? "set" : "get"} ${action.name}`) {
		case "get configure": {
			const config = await service.getConfig(actor, node);
			return { payload: wrap(x("configure", { node }, configForm(config, limits))) };
		}
		case "set configure": {
			const form = action.getChild("x", NS_DATA) ?? findForm(action, NS_NODE_CONFIG);
			if (!form) throw pubsubError("bad-request", undefined, "a configuration form is required");
			await service.configure(actor, node, form);
			return {};
		}
		case "get default":
			return { payload: wrap(x("default", null, configForm(service.hooks.defaults, limits))) };
		case "set delete":
			await service.delete(actor, node, action.getChild("redirect")?.attrs.uri);
			return {};
		case "set purge":
			await service.purge(actor, node);
			return {};
		case "get subscriptions": {
			const subs = await service.allSubscriptions(actor, node);
			return {
				payload: wrap(
					x(
						"subscriptions",
						{ node },
						subs.map(([jid, s]) =>
							x("subscription", { jid, subscription: s.state, subid: s.subid }),
						),
					),
				),
			};
		}
		case "set subscriptions": {
			const changes: [string, "none" | "subscribed" | "pending"][] = [];
			for (const s of action.getChildren("subscription")) {
				const jid = jidAttr(req, s).toString();
				const state = s.attrs.subscription;
				if (state !== "none" && state !== "subscribed" && state !== "pending")
					throw pubsubError("bad-request", undefined, "subscription: none, subscribed or pending");
				changes.push([jid, state]);
			}
			await service.setSubscriptions(actor, node, changes);
			return {};
		}
		case "get affiliations": {
			const affs = await service.allAffiliations(actor, node);
			return {
				payload: wrap(
					x(
						"affiliations",
						{ node },
						affs.map(([jid, a]) => x("affiliation", { jid, affiliation: a })),
					),
				),
			};
		}
		case "set affiliations": {
			const changes: [string, Affiliation][] = [];
			for (const a of action.getChildren("affiliation")) {
				const jid = jidAttr(req, a).bareString;
				const aff = a.attrs.affiliation as Affiliation;
				if (!AFFILIATIONS.includes(aff))
					throw pubsubError("bad-request", undefined, `affiliation: ${AFFILIATIONS.join(", ")}`);
				changes.push([jid, aff]);
			}
			await service.setAffiliations(actor, node, changes);
			return {};
		}
		default:
			void children;
			unsupported(action.name);
	}
}
