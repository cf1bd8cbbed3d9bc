/**
 * Where a PubSub service keeps its nodes, through the storage contract (src/storage/types.ts),
 * so they survive restarts on every backend and move with `parley storage copy`.
 *
 * - A service on a component domain: keyval `pubsub_nodes` (user = node name) for each node's
 *   configuration, affiliations and subscriptions, map `pubsub_items` (user = node name, key =
 *   item id) for its items.
 * - An account's PEP service (XEP-0163): keyval `pep` (user = the account's localpart) holds
 *   every node's meta in one value, map `pep_items` (same user, key = node + "\n" + item id)
 *   the items, so deleting the account (StorageBackend.deleteUser) removes both.
 */
import type { Json, KeyValStore, MapStore } from "../../storage/types.ts";
import type { NodeMeta, StoredItem } from "./node.ts";

export interface LoadedNode {
	meta: NodeMeta;
	items: StoredItem[];
}

export interface NodeStore {
	load(): Promise<Map<string, LoadedNode>>;
	saveMeta(node: string, meta: NodeMeta): Promise<void>;
	deleteNode(node: string, itemIds: Iterable<string>): Promise<void>;
	putItem(node: string, item: StoredItem): Promise<void>;
	deleteItems(node: string, ids: Iterable<string>): Promise<void>;
}

/** Node names are kept free of control characters, so "\n" separates them from item ids. */
const SEP = "\n";

// The stores hold JSON written by this file only; the casts restore its shapes.
export class ServiceNodeStore implements NodeStore {
	readonly #nodes: KeyValStore;
	readonly #items: MapStore;

	constructor(nodes: KeyValStore, items: MapStore) {
		this.#nodes = nodes;
		this.#items = items;
	}

	async load(): Promise<Map<string, LoadedNode>> {
		const out = new Map<string, LoadedNode>();
		for (const name of await this.#nodes.users()) {
			const meta = (await this.#nodes.get(name)) as NodeMeta | undefined;
			if (!meta) continue;
			const items = [...(await this.#items.getAll(name)).values()] as StoredItem[];
			out.set(name, { meta, items });
		}
		return out;
	}

	/** One node with its items, or undefined when it is not stored (a cluster's owner, lazily). */
	async loadOne(name: string): Promise<LoadedNode | undefined> {
		const meta = (await this.#nodes.get(name)) as NodeMeta | undefined;
		if (!meta) return undefined;
		const items = [...(await this.#items.getAll(name)).values()] as StoredItem[];
		return { meta, items };
	}

	/** Every node's meta without its items (a cluster's answers over all nodes, from storage). */
	async loadMetas(): Promise<Map<string, LoadedNode>> {
		const out = new Map<string, LoadedNode>();
		for (const name of await this.#nodes.users()) {
			const meta = (await this.#nodes.get(name)) as NodeMeta | undefined;
			if (meta) out.set(name, { meta, items: [] });
		}
		return out;
	}

	saveMeta(node: string, meta: NodeMeta): Promise<void> {
		return this.#nodes.set(node, meta as unknown as Json);
	}

	async deleteNode(node: string): Promise<void> {
		await this.#items.deleteAll(node);
		await this.#nodes.set(node, undefined);
	}

	putItem(node: string, item: StoredItem): Promise<void> {
		return this.#items.set(node, item.id, item);
	}

	async deleteItems(node: string, ids: Iterable<string>): Promise<void> {
		await Promise.all([...ids].map((id) => this.#items.set(node, id, undefined)));
	}
}

type AccountMeta = { nodes: Record<string, NodeMeta> };

export class AccountNodeStore implements NodeStore {
	readonly #meta: KeyValStore;
	readonly #items: MapStore;
	readonly #user: string;
	/** The stored meta of every node, rewritten whole on each change (it is small). */
	#nodes: Record<string, NodeMeta> = {};

	/** Called after each write (a cluster tells the other nodes to forget their copy). */
	readonly #changed: () => void;

	constructor(meta: KeyValStore, items: MapStore, user: string, changed: () => void = () => {}) {
		this.#meta = meta;
		this.#items = items;
		this.#user = user;
		this.#changed = changed;
	}

	async load(): Promise<Map<string, LoadedNode>> {
		const stored = (await this.#meta.get(this.#user)) as AccountMeta | undefined;
		this.#nodes = { ...(stored?.nodes ?? {}) };
		const out = new Map<string, LoadedNode>();
		for (const [name, meta] of Object.entries(this.#nodes)) out.set(name, { meta, items: [] });
		if (out.size === 0) return out;
		for (const [key, value] of await this.#items.getAll(this.#user)) {
			const at = key.indexOf(SEP);
			out.get(key.slice(0, at))?.items.push(value as StoredItem);
		}
		return out;
	}

	async #write(): Promise<void> {
		const nodes = this.#nodes;
		const value = Object.keys(nodes).length ? ({ nodes } as unknown as Json) : undefined;
		await this.#meta.set(this.#user, value);
		this.#changed();
	}

	saveMeta(node: string, meta: NodeMeta): Promise<void> {
		this.#nodes[node] = meta;
		return this.#write();
	}

	async deleteNode(node: string, itemIds: Iterable<string>): Promise<void> {
		await this.deleteItems(node, itemIds);
		delete this.#nodes[node];
		await this.#write();
	}

	async putItem(node: string, item: StoredItem): Promise<void> {
		await this.#items.set(this.#user, node + SEP + item.id, item);
		this.#changed();
	}

	async deleteItems(node: string, ids: Iterable<string>): Promise<void> {
		const keys = [...ids].map((id) => node + SEP + id);
		await Promise.all(keys.map((key) => this.#items.set(this.#user, key, undefined)));
		if (keys.length) this.#changed();
	}
}
