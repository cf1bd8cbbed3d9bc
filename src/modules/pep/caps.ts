/**
 * What contacts' clients want to be notified of (XEP-0163 §4.3 "filtered notifications"): the
 * features behind an entity capabilities hash (XEP-0115), learned by asking the client once per
 * hash and verifying the answer (§5.4: a hash that does not match its disco#info is not
 * trusted), then kept in memory and in the host's `caps` store, so other nodes of a cluster
 * and the next start know it too.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "../../core/log.ts";
import type { KeyValStore } from "../../storage/types.ts";
import { type Element, x } from "../../xml/element.ts";
import { NS_DISCO_INFO } from "../../xmpp/ns.ts";
import { capsVer, NS_CAPS } from "../caps.ts";

export interface CapsRef {
	node: string;
	ver: string;
}

/** §4: the caps of a presence; only SHA-1 hashes (the one every client sends) are used. */
export function capsOf(presence: Element | null | undefined): CapsRef | undefined {
	const c = presence?.getChild("c", NS_CAPS);
	if (c?.attrs.hash !== "sha-1" || !c) return undefined;
	const { node, ver } = c.attrs;
	if (!node || !ver || ver.length > 100) return undefined;
	return { node, ver };
}

const MAX_REMEMBERED = 10_000;
const QUERY_TIMEOUT_MS = 60_000;

export class CapsCache {
	readonly #known = new Map<string, ReadonlySet<string>>();
	readonly #store: KeyValStore<string[]>;
	readonly #send: (stanza: Element) => void;
	readonly #log: Logger;
	/** ver -> what to do once it is known; one query per ver at a time. */
	readonly #waiting = new Map<string, { since: number; callbacks: (() => void)[] }>();
	/** Hashes the store did not know, with when it was asked (forgotten by `sweep`). */
	readonly #missing = new Map<string, number>();
	/** IQ id -> the ver it asks about. */
	readonly #asked = new Map<string, { ver: string; since: number }>();

	/** Told when a newly verified hash is in the store (the cluster tells the other nodes). */
	readonly #stored: (ver: string) => void;

	constructor(
		store: KeyValStore<string[]>,
		send: (stanza: Element) => void,
		log: Logger,
		stored: (ver: string) => void = () => {},
	) {
		this.#store = store;
		this.#send = send;
		this.#log = log;
		this.#stored = stored;
	}

	/** The features behind `ver`, if already known in memory. */
	known(ver: string): ReadonlySet<string> | undefined {
		return this.#known.get(ver);
	}

	/**
	 * The features behind `ver` from memory or, failing that, from the store (another cluster
	 * node, or an earlier run, learned them).
	 */
	async features(ver: string): Promise<ReadonlySet<string> | undefined> {
		const known = this.#known.get(ver);
		if (known) return known;
		// A hash nobody could verify is not looked up again at every notification.
		if (this.#missing.has(ver)) return undefined;
		const stored = await this.#store.get(ver);
		if (!stored) {
			if (this.#missing.size >= MAX_REMEMBERED) this.#missing.clear();
			this.#missing.set(ver, Date.now());
			return undefined;
		}
		const features = new Set(stored);
		this.#remember(ver, features);
		return features;
	}

	#remember(ver: string, features: ReadonlySet<string>): void {
		if (this.#known.size >= MAX_REMEMBERED) this.#known.clear();
		this.#known.set(ver, features);
	}

	/**
	 * Makes sure `ver` gets known: from the store, else by asking `to` (a full JID that sent
	 * it) from `from`. `then` runs once it is known (not when it cannot be learned).
	 */
	async learn(ref: CapsRef, from: string, to: string, then: () => void): Promise<void> {
		if (this.#known.has(ref.ver)) return then();
		const waiting = this.#waiting.get(ref.ver);
		if (waiting) {
			waiting.callbacks.push(then);
			return;
		}
		this.#waiting.set(ref.ver, { since: Date.now(), callbacks: [then] });
		const stored = await this.#store.get(ref.ver);
		if (stored) return this.#learned(ref.ver, new Set(stored));
		const id = `caps-${randomUUID()}`;
		this.#asked.set(id, { ver: ref.ver, since: Date.now() });
		this.#send(
			x(
				"iq",
				{ type: "get", id, from, to },
				x("query", { xmlns: NS_DISCO_INFO, node: `${ref.node}#${ref.ver}` }),
			),
		);
	}

	#learned(ver: string, features: ReadonlySet<string>): void {
		this.#missing.delete(ver);
		this.#remember(ver, features);
		const waiting = this.#waiting.get(ver);
		this.#waiting.delete(ver);
		for (const fn of waiting?.callbacks ?? []) fn();
	}

	/**
	 * An IQ result or error that may answer one of our queries; true when it did. A disco#info
	 * result for `node#ver` is verified against the hash even when another node of the cluster
	 * asked: the check needs no state.
	 */
	async answer(iq: Element): Promise<boolean> {
		const id = iq.attrs.id ?? "";
		const asked = this.#asked.get(id);
		if (!asked && !id.startsWith("caps-")) return false;
		this.#asked.delete(id);
		const query = iq.getChild("query", NS_DISCO_INFO);
		const ver = asked?.ver ?? query?.attrs.node?.split("#").pop();
		if (!ver) return true;
		if (iq.attrs.type !== "result" || !query) {
			this.#waiting.delete(ver);
			return true;
		}
		// XEP-0115 §5.4 step 3-6: only a hash that matches the answer is trusted.
		if (capsVer(query) !== ver) {
			this.#log.debug({ from: iq.attrs.from, ver }, "caps hash does not match its disco#info");
			this.#waiting.delete(ver);
			return true;
		}
		const features = query.getChildren("feature").map((f) => f.attrs.var ?? "");
		await this.#store.set(ver, features);
		this.#learned(ver, new Set(features));
		this.#stored(ver);
		return true;
	}

	/** Another cluster node stored `ver`: look it up again when it is next needed. */
	storedElsewhere(ver: string): void {
		this.#missing.delete(ver);
	}

	/** Forgets queries nobody answered, so their ver can be asked again. */
	sweep(now = Date.now()): void {
		for (const [id, a] of this.#asked) if (now - a.since > QUERY_TIMEOUT_MS) this.#asked.delete(id);
		for (const [ver, w] of this.#waiting)
			if (now - w.since > QUERY_TIMEOUT_MS) this.#waiting.delete(ver);
		for (const [ver, since] of this.#missing)
			if (now - since > QUERY_TIMEOUT_MS) this.#missing.delete(ver);
	}
}
