/** One node's state (XEP-0060 §4): configuration, affiliations, subscriptions and items. */
import type { NodeConfig } from "./config.ts";

export type Affiliation = "owner" | "publisher" | "publish-only" | "member" | "none" | "outcast";
export const AFFILIATIONS: readonly Affiliation[] = [
	"owner",
	"publisher",
	"publish-only",
	"member",
	"none",
	"outcast",
];

/** §4.2: `unconfigured` is not used: subscriptions need no configuration here. */
export type SubscriptionState = "subscribed" | "pending";

export type SubscriptionRecord = {
	subid: string;
	state: SubscriptionState;
	/** pubsub#deliver of the subscription options (§6.3). */
	deliver: boolean;
	/** pubsub#include_body is not offered; digests neither. */
};

/** What is stored of a node apart from its items. */
export type NodeMeta = {
	config: NodeConfig;
	/** Bare JID -> affiliation; "none" is not stored. */
	affiliations: Record<string, Affiliation>;
	/** Subscribed JID (bare or full, as subscribed) -> subscription. */
	subscriptions: Record<string, SubscriptionRecord>;
	created: number;
};

export type StoredItem = {
	id: string;
	/** The publisher's full JID (§7.1.2 `publisher` attribute). */
	publisher: string;
	/** Order of publication: milliseconds, strictly increasing within a node. */
	t: number;
	/** The payload as XML text; "" for an item without payload (§7.1.3.6 transient nodes). */
	xml: string;
};

export class PubSubNode {
	readonly name: string;
	meta: NodeMeta;
	/** Oldest first; republishing an id moves it to the end (it is the newest then). */
	readonly items = new Map<string, StoredItem>();

	constructor(name: string, meta: NodeMeta, items: StoredItem[] = []) {
		this.name = name;
		this.meta = meta;
		for (const item of [...items].sort((a, b) => a.t - b.t)) this.items.set(item.id, item);
	}

	get config(): NodeConfig {
		return this.meta.config;
	}

	/** Newest item, for send_last_published_item (§6.1.7) and PEP presence (XEP-0163 §4.3). */
	get last(): StoredItem | undefined {
		let last: StoredItem | undefined;
		for (const item of this.items.values()) last = item;
		return last;
	}

	/** The next publication time: now, or just after the newest item if the clock went back. */
	nextTime(): number {
		const last = this.last?.t ?? 0;
		return Math.max(Date.now(), last + 1);
	}

	affiliation(bare: string): Affiliation {
		return this.meta.affiliations[bare] ?? "none";
	}

	owners(): string[] {
		return Object.entries(this.meta.affiliations)
			.filter(([, a]) => a === "owner")
			.map(([j]) => j);
	}

	publishers(): string[] {
		return Object.entries(this.meta.affiliations)
			.filter(([, a]) => a === "publisher" || a === "owner")
			.map(([j]) => j);
	}
}
