/**
 * A XEP-0060 publish-subscribe service: the nodes of one pubsub domain, or of one account
 * (XEP-0163 PEP, where the account is the owner of every node). It applies the rules of
 * §§5-8 (who may create, configure, publish, retract, subscribe, retrieve; every error of
 * those sections for what is implemented), keeps the state in memory and in its NodeStore,
 * and sends the notifications. The IQ syntax lives in protocol.ts; the module that owns a
 * service (src/modules/pubsub/index.ts, src/modules/pep/) supplies who may create nodes,
 * roster relations for the presence and roster access models, and extra recipients (PEP's
 * +notify contacts).
 *
 * Every operation runs alone (an async lock): two publishes to a service cannot interleave
 * between the change in memory and the write that makes it durable, and the IQ result goes
 * out after the write (what the server acknowledged is stored).
 */
import { randomUUID } from "node:crypto";
import { type Element, x } from "../../xml/element.ts";
import { parseDocument } from "../../xml/parser.ts";
import { PreparedStanza } from "../../xml/prepared.ts";
import type { JID } from "../../xmpp/jid.ts";
import {
	applyConfigForm,
	type ConfigLimits,
	checkPreconditions,
	configForm,
	type NodeConfig,
} from "./config.ts";
import {
	type Affiliation,
	type NodeMeta,
	PubSubNode,
	type StoredItem,
	type SubscriptionRecord,
} from "./node.ts";
import { NS_PUBSUB_EVENT, pubsubError } from "./ns.ts";
import type { LoadedNode, NodeStore } from "./store.ts";

/** How the requester stands in an owner's roster (RFC 6121 §2.1.2.5, §2.1.2.2 groups). */
export interface Relation {
	/** The requester is subscribed to the owner's presence (the owner's item is from/both). */
	subscribed: boolean;
	groups: string[];
}

export interface ServiceLimits extends ConfigLimits {
	maxNodes: number;
	maxSubscriptionsPerNode: number;
}

/**
 * An implicit recipient: a JID to route to, or a local session (anything with `send`) to write
 * to directly, with its full JID.
 */
export type Recipient = string | { jid: string; send(stanza: Element): void };

export interface ServiceHooks {
	/** The owner's account, bare, for PEP (XEP-0163); null for a service on its own domain. */
	readonly pepOwner: string | null;
	/** The address notifications come from: the service's domain, or the account (PEP). */
	readonly jid: string;
	readonly defaults: NodeConfig;
	readonly limits: ServiceLimits;
	readonly store: NodeStore;
	/** Service administrators: owners of every node (a service's `admins`). */
	isAdmin?(bare: string): boolean;
	/** §8.1.1: whether `actor` may create nodes on this service. */
	mayCreate(actor: JID): boolean;
	/** How `requester` stands in the roster of the local account `owner` (bare JID). */
	relation(owner: string, requester: JID): Promise<Relation>;
	/** Routes a stanza the service sends (notifications, authorization requests). */
	send(stanza: Element): void;
	/**
	 * After a change to a node's items is stored (outside the service's lock, before the IQ
	 * result): PEP's conversions (XEP-0398 avatars, XEP-0402 bookmarks) follow it there.
	 */
	changed?(change: NodeChange): Promise<void>;
	/**
	 * Full JIDs that get the node's notifications without an explicit subscription (PEP's
	 * +notify contacts and the owner's resources, XEP-0163 §4.3), deduplicated by the service.
	 */
	implicitRecipients?(node: PubSubNode): Promise<Iterable<Recipient>>;
	/**
	 * A cluster (issue 16): the service holds only the nodes this cluster node owns, each read
	 * from storage by {@link PubSubService.ensure} the first time it is needed, and nothing is
	 * loaded at start. `claim` makes this node the owner of an instant node's generated name
	 * (§8.1.2) before it is created.
	 */
	readonly lazy?: {
		loadNode(name: string): Promise<LoadedNode | undefined>;
		claim(name: string): Promise<void>;
	};
}

export interface NodeChange {
	node: string;
	actor: JID;
	published?: { id: string; payload: Element | undefined };
	retracted?: string[];
	/** Every item is gone (purge, or the node was deleted). */
	cleared?: boolean;
}

export interface ItemsQuery {
	max?: number;
	ids?: string[];
	/** XEP-0059 paging over the node's items, newest first. */
	rsm?: { max?: number; after?: string; before?: string; index?: number };
}

export interface ItemsPage {
	items: StoredItem[];
	/** For RSM: total count and whether paging applies. */
	count: number;
	firstIndex: number;
}

/** C0 controls and DEL: kept out of node names and item ids ("\n" separates them in storage). */
function hasControl(s: string): boolean {
	for (let i = 0; i < s.length; i++) {
		const c = s.charCodeAt(i);
		if (c < 0x20 || c === 0x7f) return true;
	}
	return false;
}
const PARSE_LIMITS = { maxDepth: 64 };

/** XEP-0060 §4.3 / §14: a node name the service accepts. */
export function checkNodeName(name: string): void {
	if (name === "" || name.length > 1024 || hasControl(name))
		throw pubsubError(
			"not-acceptable",
			undefined,
			"node names are 1 to 1024 characters, no control characters",
		);
}

/** §12: feature-not-implemented with <unsupported feature='...'/>. */
function unsupported(feature: string): never {
	throw pubsubError(
		"feature-not-implemented",
		"unsupported",
		`${feature} is not supported here`,
		feature,
	);
}

export class PubSubService {
	readonly hooks: ServiceHooks;
	readonly nodes = new Map<string, PubSubNode>();
	#ready: Promise<void> | null = null;
	#queue: Promise<unknown> = Promise.resolve();
	/** Parsed payloads, so a notification fanned out or an item fetched often is parsed once. */
	readonly #parsed = new WeakMap<StoredItem, Element>();

	constructor(hooks: ServiceHooks) {
		this.hooks = hooks;
	}

	/** Loads the nodes from storage once (lazy: none, {@link ensure} loads each). */
	load(): Promise<void> {
		if (this.hooks.lazy) this.#ready ??= Promise.resolve();
		this.#ready ??= this.hooks.store.load().then((loaded) => {
			for (const [name, node] of loaded) this.#adopt(name, node);
		});
		return this.#ready;
	}

	#adopt(name: string, { meta, items }: LoadedNode): void {
		// Stored configurations are completed with today's defaults (an import from another
		// server, or a key added since the node was stored).
		const config = { ...this.hooks.defaults, ...meta.config };
		this.nodes.set(name, new PubSubNode(name, { ...meta, config }, items));
	}

	/** Lazy: the names whose state was read from storage since this node claimed them. */
	readonly #loaded = new Set<string>();

	/**
	 * Lazy (a cluster node that owns `name`): reads the node's configuration, affiliations,
	 * subscriptions and items from storage the first time after the claim. Queued like every
	 * operation, so it never interleaves with one.
	 */
	ensure(name: string): Promise<void> {
		const lazy = this.hooks.lazy;
		if (!lazy || this.#loaded.has(name)) return Promise.resolve();
		return this.run(async () => {
			if (this.#loaded.has(name)) return;
			const stored = await lazy.loadNode(name);
			if (stored && !this.nodes.has(name)) this.#adopt(name, stored);
			this.#loaded.add(name);
		});
	}

	/** Lazy: this node no longer owns `name` (lease released or lost); its state is dropped. */
	forget(name: string): Promise<void> {
		return this.run(() => {
			this.nodes.delete(name);
			this.#loaded.delete(name);
		});
	}

	/** Runs `fn` after every operation queued before it, so operations never interleave. */
	run<T>(fn: () => Promise<T> | T): Promise<T> {
		const next = this.#queue.then(async () => {
			await this.load();
			return fn();
		});
		this.#queue = next.catch(() => undefined);
		return next;
	}

	// ------------------------------------------------------------------------------------------
	// Who may do what (§4.1 affiliations, §4.5 access models)

	affiliationOf(node: PubSubNode, actor: JID): Affiliation {
		const bare = actor.bareString;
		// XEP-0163 §4.1: the account owner owns every node of their PEP service.
		if (this.hooks.pepOwner === bare || this.hooks.isAdmin?.(bare)) return "owner";
		return node.affiliation(bare);
	}

	#node(name: string | undefined): PubSubNode {
		if (name === undefined || name === "") throw pubsubError("bad-request", "nodeid-required");
		const node = this.nodes.get(name);
		if (!node) throw pubsubError("item-not-found", undefined, `no node ${name}`);
		return node;
	}

	/** The accounts whose rosters decide the presence and roster access models. */
	#rosterOwners(node: PubSubNode): string[] {
		return this.hooks.pepOwner ? [this.hooks.pepOwner] : node.owners();
	}

	async #relations(node: PubSubNode, actor: JID): Promise<Relation> {
		const out: Relation = { subscribed: false, groups: [] };
		for (const owner of this.#rosterOwners(node)) {
			const r = await this.hooks.relation(owner, actor);
			out.subscribed ||= r.subscribed;
			out.groups.push(...r.groups);
		}
		return out;
	}

	#subscriptionOf(node: PubSubNode, actor: JID): [string, SubscriptionRecord] | undefined {
		const full = actor.toString();
		const bare = actor.bareString;
		const subs = node.meta.subscriptions;
		if (subs[full]) return [full, subs[full]];
		if (subs[bare]) return [bare, subs[bare]];
		return undefined;
	}

	/**
	 * §6.5.9 (retrieve items) and §6.1.3 (subscribe): the access model's verdict for `actor`.
	 * `subscribing`: an authorize node lets anyone ask (the owner decides); the other errors
	 * are the same.
	 */
	async checkAccess(node: PubSubNode, actor: JID, subscribing = false): Promise<void> {
		const aff = this.affiliationOf(node, actor);
		if (aff === "outcast")
			throw pubsubError("forbidden", undefined, "you are banned from this node");
		// §4.1 (Table 4): publish-only may neither subscribe nor retrieve items, whatever the access model.
		if (aff === "publish-only")
			throw pubsubError("forbidden", undefined, "publish-only: you may publish, not read");
		if (aff === "owner" || aff === "publisher" || aff === "member") return;
		const c = node.config;
		switch (c.access_model) {
			case "open":
				return;
			case "presence":
				if ((await this.#relations(node, actor)).subscribed) return;
				throw pubsubError("not-authorized", "presence-subscription-required");
			case "roster": {
				const { groups } = await this.#relations(node, actor);
				if (groups.some((g) => c.roster_groups_allowed.includes(g))) return;
				throw pubsubError("not-authorized", "not-in-roster-group");
			}
			case "authorize":
				if (subscribing) return;
				if (this.#subscriptionOf(node, actor)?.[1].state === "subscribed") return;
				throw pubsubError("not-authorized", "not-subscribed");
			case "whitelist":
				throw pubsubError("not-allowed", "closed-node");
		}
	}

	async canAccess(node: PubSubNode, actor: JID): Promise<boolean> {
		try {
			await this.checkAccess(node, actor);
			return true;
		} catch {
			return false;
		}
	}

	#requireOwner(node: PubSubNode, actor: JID): void {
		if (this.affiliationOf(node, actor) !== "owner")
			throw pubsubError("forbidden", undefined, "only an owner of the node may do this");
	}

	#effectiveMax(c: NodeConfig): number {
		const max = this.hooks.limits.maxItems;
		return c.max_items === "max" ? max : Math.min(c.max_items, max);
	}

	// ------------------------------------------------------------------------------------------
	// Node lifecycle (§8.1-§8.5)

	/** §8.1: creates a node (instant node when `name` is undefined) and returns its name. */
	create(
		actor: JID,
		name: string | undefined,
		form?: Element,
		publishOptions?: Element,
	): Promise<string> {
		return this.run(() => this.#create(actor, name, form, publishOptions));
	}

	async #create(
		actor: JID,
		name: string | undefined,
		form?: Element,
		options?: Element,
	): Promise<string> {
		if (
			this.hooks.pepOwner ? actor.bareString !== this.hooks.pepOwner : !this.hooks.mayCreate(actor)
		)
			throw pubsubError("forbidden", undefined, "you may not create nodes here");
		const nodeName = name ?? randomUUID();
		checkNodeName(nodeName);
		// §8.1.2: an instant node's name is made here; in a cluster this node takes its lease.
		if (name === undefined) await this.hooks.lazy?.claim(nodeName);
		if (this.nodes.has(nodeName))
			throw pubsubError("conflict", undefined, `node ${nodeName} exists`);
		if (this.nodes.size >= this.hooks.limits.maxNodes)
			throw pubsubError(
				"not-allowed",
				"max-nodes-exceeded",
				`at most ${this.hooks.limits.maxNodes} nodes`,
			);
		let config: NodeConfig = {
			...this.hooks.defaults,
			roster_groups_allowed: [...this.hooks.defaults.roster_groups_allowed],
		};
		if (form) config = applyConfigForm(config, form, this.hooks.limits);
		if (options) config = applyConfigForm(config, options, this.hooks.limits);
		const meta: NodeMeta = { config, affiliations: {}, subscriptions: {}, created: Date.now() };
		if (!this.hooks.pepOwner) meta.affiliations[actor.bareString] = "owner";
		const node = new PubSubNode(nodeName, meta);
		await this.hooks.store.saveMeta(nodeName, meta);
		this.nodes.set(nodeName, node);
		return nodeName;
	}

	/** §8.2: the node's configuration, owners only. */
	getConfig(actor: JID, name: string | undefined): Promise<NodeConfig> {
		return this.run(() => {
			const node = this.#node(name);
			this.#requireOwner(node, actor);
			return node.config;
		});
	}

	/** §8.2.4: applies a submitted form; notifies subscribers when pubsub#notify_config. */
	configure(actor: JID, name: string | undefined, form: Element): Promise<void> {
		return this.run(async () => {
			const node = this.#node(name);
			this.#requireOwner(node, actor);
			const next = applyConfigForm(node.config, form, this.hooks.limits);
			node.meta = { ...node.meta, config: next };
			await this.#trim(node);
			await this.hooks.store.saveMeta(node.name, node.meta);
			// §8.2.5.3: with payloads, the notification carries the new configuration.
			if (next.notify_config)
				await this.#notify(
					node,
					x(
						"configuration",
						{ node: node.name },
						next.deliver_payloads ? configForm(next, this.hooks.limits, "result") : undefined,
					),
				);
		});
	}

	/** §8.4: deletes a node; subscribers learn it with the redirect, if any. */
	#deleteRun(actor: JID, name: string | undefined, redirect?: string): Promise<void> {
		return this.run(async () => {
			const node = this.#node(name);
			this.#requireOwner(node, actor);
			const event = x(
				"delete",
				{ node: node.name },
				redirect ? x("redirect", { uri: redirect }) : undefined,
			);
			if (node.config.notify_delete) await this.#notify(node, event);
			this.nodes.delete(node.name);
			await this.hooks.store.deleteNode(node.name, node.items.keys());
		});
	}

	/** §8.5: removes every item. */
	#purgeRun(actor: JID, name: string | undefined): Promise<void> {
		return this.run(async () => {
			const node = this.#node(name);
			// §4.1 (Table 4): publishers may purge too.
			if (this.affiliationOf(node, actor) !== "publisher") this.#requireOwner(node, actor);
			// §8.5.3.3: a node that keeps no items has nothing to purge.
			if (!node.config.persist_items) unsupported("persistent-items");
			const ids = [...node.items.keys()];
			node.items.clear();
			await this.hooks.store.deleteItems(node.name, ids);
			await this.#notify(node, x("purge", { node: node.name }));
		});
	}

	// The operations that change items tell `hooks.changed` once their change is stored.

	async publish(
		actor: JID,
		name: string | undefined,
		item: { id?: string; payload?: Element; extra?: boolean; absent?: boolean },
		options?: Element,
	): Promise<string> {
		const id = await this.#publishRun(actor, name, item, options);
		await this.hooks.changed?.({
			node: name as string,
			actor,
			published: { id, payload: item.payload },
		});
		return id;
	}

	async retract(
		actor: JID,
		name: string | undefined,
		ids: string[],
		notify: boolean,
	): Promise<void> {
		await this.#retractRun(actor, name, ids, notify);
		await this.hooks.changed?.({ node: name as string, actor, retracted: ids });
	}

	async purge(actor: JID, name: string | undefined): Promise<void> {
		await this.#purgeRun(actor, name);
		await this.hooks.changed?.({ node: name as string, actor, cleared: true });
	}

	async delete(actor: JID, name: string | undefined, redirect?: string): Promise<void> {
		await this.#deleteRun(actor, name, redirect);
		await this.hooks.changed?.({ node: name as string, actor, cleared: true });
	}

	// ------------------------------------------------------------------------------------------
	// Items (§7.1, §7.2, §6.5)

	/**
	 * §7.1: publishes one item and returns its id. A node that does not exist is created with
	 * `options` when the actor may create nodes (§7.1.4 auto-create; XEP-0163 §3); on an
	 * existing node `options` are preconditions (§7.1.5).
	 */
	#publishRun(
		actor: JID,
		name: string | undefined,
		item: { id?: string; payload?: Element; extra?: boolean; absent?: boolean },
		options?: Element,
	): Promise<string> {
		return this.run(async () => {
			if (name === undefined || name === "") throw pubsubError("bad-request", "nodeid-required");
			let node = this.nodes.get(name);
			if (!node) {
				const mayCreate = this.hooks.pepOwner
					? actor.bareString === this.hooks.pepOwner
					: this.hooks.mayCreate(actor);
				if (!mayCreate) throw pubsubError("item-not-found", undefined, `no node ${name}`);
				await this.#create(actor, name, undefined, options);
				node = this.nodes.get(name) as PubSubNode;
			} else if (options) {
				checkPreconditions(node.config, options, this.hooks.limits);
			}
			return this.#publish(node, actor, item);
		});
	}

	async #publish(
		node: PubSubNode,
		actor: JID,
		item: { id?: string; payload?: Element; extra?: boolean; absent?: boolean },
	): Promise<string> {
		const aff = this.affiliationOf(node, actor);
		const c = node.config;
		let allowed = aff === "owner" || aff === "publisher" || aff === "publish-only";
		if (!allowed && aff !== "outcast") {
			if (c.publish_model === "open") allowed = true;
			else if (c.publish_model === "subscribers")
				allowed = this.#subscriptionOf(node, actor)?.[1].state === "subscribed";
		}
		// XEP-0163 §3: only the account owner publishes to a PEP node.
		if (this.hooks.pepOwner && actor.bareString !== this.hooks.pepOwner) allowed = false;
		if (!allowed) throw pubsubError("forbidden", undefined, "you may not publish to this node");
		// §7.1.3.7: a persistent node needs an item; a transient notification-only node takes none.
		if (item.absent && c.persist_items)
			throw pubsubError("bad-request", "item-required", "this node keeps items: publish one");
		if (!item.absent && !c.persist_items && !c.deliver_payloads)
			throw pubsubError("bad-request", "item-forbidden", "this node takes no items");
		// §7.1.3.6: one payload at most, in the node's pubsub#type namespace when it has one.
		if (item.extra) throw pubsubError("bad-request", "invalid-payload", "one payload per item");
		if (item.payload && c.type !== "" && item.payload.ns !== c.type)
			throw pubsubError("bad-request", "invalid-payload", `payloads of this node are ${c.type}`);
		const needsPayload = c.persist_items || c.deliver_payloads;
		if (!item.payload && needsPayload)
			throw pubsubError("bad-request", "payload-required", "this node needs a payload in the item");
		const xml = item.payload ? item.payload.toString() : "";
		if (Buffer.byteLength(xml) > c.max_payload_size)
			throw pubsubError(
				"not-acceptable",
				"payload-too-big",
				`payloads are limited to ${c.max_payload_size} bytes`,
			);
		const id = item.id || randomUUID();
		if (item.id !== undefined && (id.length > 1024 || hasControl(id)))
			throw pubsubError(
				"bad-request",
				undefined,
				"item ids are 1 to 1024 characters, no control characters",
			);
		const stored: StoredItem = { id, publisher: actor.toString(), t: node.nextTime(), xml };
		if (item.payload) this.#parsed.set(stored, item.payload);
		node.items.delete(id);
		node.items.set(id, stored);
		// The new item and the ones it pushes out are written together (one commit where the
		// backend groups concurrent writes).
		const drop = this.#overflow(node);
		await Promise.all([
			c.persist_items ? this.hooks.store.putItem(node.name, stored) : undefined,
			drop.length ? this.hooks.store.deleteItems(node.name, drop) : undefined,
		]);
		await this.#notify(
			node,
			x("items", { node: node.name }, this.itemElement(node, stored, c.deliver_payloads)),
		);
		return id;
	}

	/** §7.1.2: drops the oldest items beyond max_items. */
	async #trim(node: PubSubNode): Promise<void> {
		const drop = this.#overflow(node);
		if (drop.length) await this.hooks.store.deleteItems(node.name, drop);
	}

	/** The oldest items beyond max_items, removed from memory; the caller deletes them. */
	#overflow(node: PubSubNode): string[] {
		const max = this.#effectiveMax(node.config);
		const drop: string[] = [];
		if (node.items.size <= max) return drop;
		for (const id of node.items.keys()) {
			if (node.items.size - drop.length <= max) break;
			drop.push(id);
		}
		for (const id of drop) node.items.delete(id);
		return drop;
	}

	/** §7.2: deletes items; notifies with `<retract/>` when asked or configured. */
	#retractRun(actor: JID, name: string | undefined, ids: string[], notify: boolean): Promise<void> {
		return this.run(async () => {
			const node = this.#node(name);
			if (ids.length === 0) throw pubsubError("bad-request", "item-required");
			// §7.2.3.5: a node that keeps no items has none to retract.
			if (!node.config.persist_items) unsupported("persistent-items");
			const aff = this.affiliationOf(node, actor);
			for (const id of ids) {
				const item = node.items.get(id);
				if (!item) throw pubsubError("item-not-found", undefined, `no item ${id}`);
				const own = item.publisher.split("/")[0] === actor.bareString;
				const allowed = aff === "owner" || aff === "publisher" || (aff === "publish-only" && own);
				if (!allowed)
					throw pubsubError("forbidden", undefined, "you may not retract items of this node");
			}
			for (const id of ids) node.items.delete(id);
			await this.hooks.store.deleteItems(node.name, ids);
			if (notify || node.config.notify_retract)
				await this.#notify(
					node,
					x(
						"items",
						{ node: node.name },
						ids.map((id) => x("retract", { id })),
					),
				);
		});
	}

	/** §6.5: items the actor may see, newest first. */
	items(
		actor: JID,
		name: string | undefined,
		q: ItemsQuery,
	): Promise<{ node: PubSubNode; page: ItemsPage }> {
		return this.run(async () => {
			const node = this.#node(name);
			await this.checkAccess(node, actor);
			let list = [...node.items.values()].reverse();
			if (q.ids?.length) {
				const wanted = new Set(q.ids);
				list = list.filter((i) => wanted.has(i.id));
			}
			if (q.max !== undefined) list = list.slice(0, q.max);
			const count = list.length;
			let firstIndex = 0;
			if (q.rsm) {
				const { after, before, index } = q.rsm;
				let start = 0;
				let end = list.length;
				if (after !== undefined) {
					const at = list.findIndex((i) => i.id === after);
					if (at < 0) throw pubsubError("item-not-found", undefined, `no item ${after}`);
					start = at + 1;
				}
				if (before !== undefined && before !== "") {
					const at = list.findIndex((i) => i.id === before);
					if (at < 0) throw pubsubError("item-not-found", undefined, `no item ${before}`);
					end = at;
				}
				if (index !== undefined) start = index;
				const max = q.rsm.max ?? list.length;
				// XEP-0059 §2.5: `<before/>` (empty or an id) asks for the page just before.
				if (before !== undefined) start = Math.max(start, end - max);
				else end = Math.min(end, start + max);
				firstIndex = start;
				list = list.slice(start, end);
			}
			return { node, page: { items: list, count, firstIndex } };
		});
	}

	/** The `<item/>` of a notification or a retrieval, with or without its payload. */
	itemElement(node: PubSubNode, item: StoredItem, payload = true): Element {
		const publisher = node.config.itemreply === "publisher" ? item.publisher : undefined;
		return x("item", { id: item.id, publisher }, payload ? this.payloadOf(item) : undefined);
	}

	/** The payload as an element (parsed once per stored item). */
	payloadOf(item: StoredItem): Element | undefined {
		if (item.xml === "") return undefined;
		let el = this.#parsed.get(item);
		if (!el) {
			el = parseDocument(item.xml, {
				maxStanzaBytes: Buffer.byteLength(item.xml) + 1,
				...PARSE_LIMITS,
			});
			this.#parsed.set(item, el);
		}
		return el.clone();
	}

	// ------------------------------------------------------------------------------------------
	// Subscriptions (§6.1-§6.4) and their management by owners (§8.6-§8.8)

	subscribe(
		actor: JID,
		name: string | undefined,
		jid: JID,
		deliver = true,
	): Promise<[string, SubscriptionRecord]> {
		return this.run(async () => {
			const node = this.#node(name);
			// §6.1.3.1: one may subscribe only oneself (any resource of one's bare JID).
			if (!jid.bare.equals(actor.bare)) throw pubsubError("bad-request", "invalid-jid");
			await this.checkAccess(node, actor, true);
			const key = jid.toString();
			const existing = node.meta.subscriptions[key];
			// §6.1.3.7: a pending subscription is not asked for again.
			if (existing?.state === "pending")
				throw pubsubError("not-authorized", "pending-subscription");
			if (existing) return [key, existing];
			// §6.1.3.9: too many subscriptions is policy-violation.
			if (Object.keys(node.meta.subscriptions).length >= this.hooks.limits.maxSubscriptionsPerNode)
				throw pubsubError("policy-violation", "too-many-subscriptions");
			const aff = this.affiliationOf(node, actor);
			const pending =
				node.config.access_model === "authorize" &&
				aff !== "owner" &&
				aff !== "publisher" &&
				aff !== "member";
			const sub: SubscriptionRecord = {
				subid: randomUUID(),
				state: pending ? "pending" : "subscribed",
				deliver,
			};
			node.meta.subscriptions[key] = sub;
			await this.hooks.store.saveMeta(node.name, node.meta);
			if (pending) this.#askOwners(node, key, sub);
			else this.#tellOwners(node, key, sub.state);
			return [key, sub];
		});
	}

	/** §6.1.7: the last published item, to a new subscriber, when the node says so. */
	sendLastTo(nodeName: string, to: string): Promise<void> {
		return this.run(() => {
			const node = this.nodes.get(nodeName);
			if (node && node.config.send_last_published_item !== "never") this.sendLast(node, to);
		});
	}

	/** §8.6.1: owners are asked to approve a pending subscription with a data form. */
	#askOwners(node: PubSubNode, jid: string, sub: SubscriptionRecord): void {
		const owners = this.hooks.pepOwner ? [this.hooks.pepOwner] : node.owners();
		const form = x(
			"x",
			{ xmlns: "jabber:x:data", type: "form" },
			x("title", null, "PubSub subscriber request"),
			x(
				"instructions",
				null,
				`To approve this entity's subscription request, allow it; otherwise deny it.`,
			),
			x(
				"field",
				{ var: "FORM_TYPE", type: "hidden" },
				x("value", null, "http://jabber.org/protocol/pubsub#subscribe_authorization"),
			),
			x("field", { var: "pubsub#subid", type: "hidden" }, x("value", null, sub.subid)),
			x(
				"field",
				{ var: "pubsub#node", type: "text-single", label: "Node ID" },
				x("value", null, node.name),
			),
			x(
				"field",
				{ var: "pubsub#subscriber_jid", type: "jid-single", label: "Subscriber Address" },
				x("value", null, jid),
			),
			x(
				"field",
				{
					var: "pubsub#allow",
					type: "boolean",
					label: "Allow this JID to subscribe to this pubsub node?",
				},
				x("value", null, "false"),
			),
		);
		for (const owner of owners)
			this.hooks.send(
				x("message", { from: this.hooks.jid, to: owner, id: randomUUID() }, form.clone()),
			);
	}

	/** §8.6.2: an owner's answer to an authorization request. */
	authorize(actor: JID, name: string, subscriber: string, allow: boolean): Promise<void> {
		return this.run(async () => {
			const node = this.#node(name);
			this.#requireOwner(node, actor);
			const sub = node.meta.subscriptions[subscriber];
			if (sub?.state !== "pending" || !sub)
				throw pubsubError("unexpected-request", "not-subscribed");
			if (allow) sub.state = "subscribed";
			else delete node.meta.subscriptions[subscriber];
			await this.hooks.store.saveMeta(node.name, node.meta);
			// §8.6.2: the subscriber learns the outcome.
			this.#sendEvent(
				node,
				subscriber,
				x("subscription", {
					node: node.name,
					jid: subscriber,
					subscription: allow ? "subscribed" : "none",
					subid: allow ? sub.subid : undefined,
				}),
			);
		});
	}

	/** §6.2: ends a subscription. */
	unsubscribe(actor: JID, name: string | undefined, jid: JID, subid?: string): Promise<void> {
		return this.run(async () => {
			const node = this.#node(name);
			const owner = this.affiliationOf(node, actor) === "owner";
			// §6.2.3.3: unsubscribing another entity is forbidden (invalid-jid is §6.1.3.1's, for subscribe).
			if (!owner && !jid.bare.equals(actor.bare)) throw pubsubError("forbidden");
			const key = jid.toString();
			const sub = node.meta.subscriptions[key];
			if (!sub) throw pubsubError("unexpected-request", "not-subscribed");
			if (subid !== undefined && subid !== sub.subid)
				throw pubsubError("not-acceptable", "invalid-subid");
			delete node.meta.subscriptions[key];
			await this.hooks.store.saveMeta(node.name, node.meta);
			this.#tellOwners(node, key, "none");
		});
	}

	/**
	 * pubsub#notify_sub (XEP-0060 §16.4.4): owners learn of new subscribers and of those who
	 * leave, with the subscription notification of §8.8.4.
	 */
	#tellOwners(node: PubSubNode, jid: string, state: string): void {
		if (!node.config.notify_sub) return;
		const owners = this.hooks.pepOwner ? [this.hooks.pepOwner] : node.owners();
		for (const owner of owners)
			this.#sendEvent(
				node,
				owner,
				x("subscription", { node: node.name, jid, subscription: state }),
			);
	}

	/** §6.3: a subscription's options (only pubsub#deliver is offered). */
	subscription(
		actor: JID,
		name: string | undefined,
		jid: JID,
		subid?: string,
	): Promise<[PubSubNode, SubscriptionRecord]> {
		return this.run(() => this.#ownSubscription(actor, name, jid, subid));
	}

	/** §6.3.4: the subscription `actor` may see (its own, or any for an owner), checked. */
	#ownSubscription(
		actor: JID,
		name: string | undefined,
		jid: JID,
		subid?: string,
	): [PubSubNode, SubscriptionRecord] {
		const node = this.#node(name);
		const owner = this.affiliationOf(node, actor) === "owner";
		if (!owner && !jid.bare.equals(actor.bare)) throw pubsubError("forbidden");
		const sub = node.meta.subscriptions[jid.toString()];
		if (!sub) throw pubsubError("unexpected-request", "not-subscribed");
		if (subid !== undefined && subid !== sub.subid)
			throw pubsubError("not-acceptable", "invalid-subid");
		return [node, sub];
	}

	setDeliver(
		actor: JID,
		name: string | undefined,
		jid: JID,
		deliver: boolean,
		subid?: string,
	): Promise<void> {
		return this.run(async () => {
			const [node, sub] = this.#ownSubscription(actor, name, jid, subid);
			sub.deliver = deliver;
			await this.hooks.store.saveMeta(node.name, node.meta);
		});
	}

	/** §5.6: the actor's own subscriptions, on one node or all. */
	subscriptionsOf(
		actor: JID,
		name?: string,
	): Promise<{ node: string; jid: string; sub: SubscriptionRecord }[]> {
		return this.run(() => {
			const nodes = name !== undefined ? [this.#node(name)] : [...this.nodes.values()];
			const out: { node: string; jid: string; sub: SubscriptionRecord }[] = [];
			for (const node of nodes)
				for (const [jid, sub] of Object.entries(node.meta.subscriptions))
					if (jid === actor.bareString || jid.startsWith(`${actor.bareString}/`))
						out.push({ node: node.name, jid, sub });
			return out;
		});
	}

	/** §5.7: the actor's affiliations, on one node or all. */
	affiliationsOf(actor: JID, name?: string): Promise<{ node: string; affiliation: Affiliation }[]> {
		return this.run(() => {
			const nodes = name !== undefined ? [this.#node(name)] : [...this.nodes.values()];
			return nodes
				.map((node) => ({ node: node.name, affiliation: this.affiliationOf(node, actor) }))
				.filter((a) => a.affiliation !== "none");
		});
	}

	/** §8.8.1: every subscription of a node, owners only. */
	allSubscriptions(actor: JID, name: string | undefined): Promise<[string, SubscriptionRecord][]> {
		return this.run(() => {
			const node = this.#node(name);
			this.#requireOwner(node, actor);
			return Object.entries(node.meta.subscriptions);
		});
	}

	/** §8.8.2: owners set subscription states; each changed entity is told (§8.8.4). */
	setSubscriptions(
		actor: JID,
		name: string | undefined,
		changes: [string, "none" | "subscribed" | "pending"][],
	): Promise<void> {
		return this.run(async () => {
			const node = this.#node(name);
			this.#requireOwner(node, actor);
			for (const [jid, state] of changes) {
				if (state === "none") delete node.meta.subscriptions[jid];
				else {
					const sub = node.meta.subscriptions[jid];
					if (sub) sub.state = state;
					else node.meta.subscriptions[jid] = { subid: randomUUID(), state, deliver: true };
				}
			}
			await this.hooks.store.saveMeta(node.name, node.meta);
			for (const [jid, state] of changes)
				this.#sendEvent(
					node,
					jid,
					x("subscription", {
						node: node.name,
						jid,
						subscription: state,
						subid: node.meta.subscriptions[jid]?.subid,
					}),
				);
		});
	}

	/** §8.9.1: every affiliation of a node, owners only. */
	allAffiliations(actor: JID, name: string | undefined): Promise<[string, Affiliation][]> {
		return this.run(() => {
			const node = this.#node(name);
			this.#requireOwner(node, actor);
			const list = Object.entries(node.meta.affiliations);
			if (this.hooks.pepOwner) list.unshift([this.hooks.pepOwner, "owner"]);
			return list;
		});
	}

	/** §8.9.2: owners set affiliations; an outcast loses its subscriptions (§4.1). */
	setAffiliations(
		actor: JID,
		name: string | undefined,
		changes: [string, Affiliation][],
	): Promise<void> {
		return this.run(async () => {
			const node = this.#node(name);
			this.#requireOwner(node, actor);
			const next = { ...node.meta.affiliations };
			for (const [jid, aff] of changes) {
				// XEP-0163: the account stays the owner of its PEP nodes.
				if (this.hooks.pepOwner === jid)
					throw pubsubError("not-acceptable", undefined, "the account owns its PEP nodes");
				if (aff === "none") delete next[jid];
				else next[jid] = aff;
			}
			// §8.9.2.4: a node keeps at least one owner.
			if (!this.hooks.pepOwner && !Object.values(next).includes("owner"))
				throw pubsubError("not-acceptable", undefined, "a node needs at least one owner");
			node.meta.affiliations = next;
			for (const [jid, aff] of changes) {
				if (aff !== "outcast") continue;
				for (const key of Object.keys(node.meta.subscriptions))
					if (key === jid || key.startsWith(`${jid}/`)) delete node.meta.subscriptions[key];
			}
			await this.hooks.store.saveMeta(node.name, node.meta);
		});
	}

	// ------------------------------------------------------------------------------------------
	// Notifications (§7.1.2, §7.2.2, §8.2.5, §8.4.2, §8.5.2)

	#sendEvent(node: PubSubNode, to: string, payload: Element, last = false): void {
		const type = node.config.notification_type === "headline" ? "headline" : undefined;
		const message = x(
			"message",
			{ from: this.hooks.jid, to, type, id: randomUUID() },
			x("event", { xmlns: NS_PUBSUB_EVENT }, payload),
		);
		// XEP-0060 §6.1.7: a last published item sent later carries a delay stamp (XEP-0203).
		if (last) {
			const item = node.last;
			if (item)
				message.append(
					x("delay", {
						xmlns: "urn:xmpp:delay",
						stamp: new Date(item.t).toISOString(),
						from: this.hooks.jid,
					}),
				);
		}
		this.hooks.send(message);
	}

	/**
	 * Sends `payload` to every subscriber that wants notifications, and to implicit recipients.
	 * The notification is built and serialised once (PreparedStanza, as MUC fan-out does) with
	 * one id for all its copies; a recipient that comes with a session is written to directly,
	 * the others go through the router.
	 */
	async #notify(node: PubSubNode, payload: Element): Promise<void> {
		if (!node.config.deliver_notifications) return;
		const routed = new Set<string>();
		for (const [jid, sub] of Object.entries(node.meta.subscriptions))
			if (sub.state === "subscribed" && sub.deliver) routed.add(jid);
		const direct = new Map<string, Exclude<Recipient, string>>();
		if (this.hooks.implicitRecipients) {
			for (const r of await this.hooks.implicitRecipients(node)) {
				const jid = typeof r === "string" ? r : r.jid;
				// A resource whose bare JID is subscribed already gets it through the bare JID.
				const slash = jid.indexOf("/");
				if (routed.has(jid) || (slash > 0 && routed.has(jid.slice(0, slash)))) continue;
				if (typeof r === "string") routed.add(r);
				else direct.set(jid, r);
			}
		}
		if (routed.size === 0 && direct.size === 0) return;
		const type = node.config.notification_type === "headline" ? "headline" : undefined;
		const message = x(
			"message",
			{ from: this.hooks.jid, type, id: randomUUID() },
			x("event", { xmlns: NS_PUBSUB_EVENT }, payload),
		);
		const prepared = new PreparedStanza(message);
		for (const [jid, r] of direct) r.send(prepared.to(jid));
		for (const to of routed) {
			const copy = message.clone();
			copy.attrs.to = to;
			this.hooks.send(copy);
		}
	}

	/** The last item of a node as a notification to one recipient (XEP-0163 §4.3.2). */
	sendLast(node: PubSubNode, to: string): void {
		const last = node.last;
		if (!last || !node.config.deliver_notifications) return;
		this.#sendEvent(
			node,
			to,
			x("items", { node: node.name }, this.itemElement(node, last, node.config.deliver_payloads)),
			true,
		);
	}
}
