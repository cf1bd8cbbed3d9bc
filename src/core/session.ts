/**
 * What the router and the modules know of a client session, whatever carries it (TCP, TLS,
 * later WebSocket and BOSH). A transport never appears here.
 */

import type { Element } from "../xml/element.ts";
import type { StreamErrorCondition } from "../xmpp/errors.ts";
import type { JID } from "../xmpp/jid.ts";
import type { Host } from "./host.ts";

export interface Session {
	readonly id: string;
	readonly host: Host;
	/** The full JID once a resource is bound (RFC 6120 §7). */
	readonly jid: JID | null;
	readonly remoteAddress: string;
	readonly secure: boolean;
	/** Sent initial presence and not yet unavailable (RFC 6121 §4.2, §4.5). */
	available: boolean;
	/** Priority of the last broadcast presence (RFC 6121 §4.7.2.3); meaningless unless available. */
	priority: number;
	/** The last available presence the client broadcast, as sent. */
	presence: Element | null;
	/** Requested the roster (RFC 6121 §2.1.6 "interested resource"). */
	interested: boolean;
	/** Per-session state for modules, keyed by module name (carbons on/off, CSI state, ...). */
	readonly data: Map<string, unknown>;
	send(stanza: Element): void;
	/** Ends the stream, with a stream error when a condition is given. */
	close(condition?: StreamErrorCondition, text?: string): void;
}

/**
 * `Session.data` of a local session: a Map that reports writes, so that a cluster node can
 * publish the flags other nodes read (carbons enabled, roster versioning, ...).
 */
export class SessionData extends Map<string, unknown> {
	readonly #changed: () => void;

	constructor(changed: () => void) {
		super();
		this.#changed = changed;
	}

	override set(key: string, value: unknown): this {
		const before = super.get(key);
		super.set(key, value);
		if (before !== value) this.#changed();
		return this;
	}

	override delete(key: string): boolean {
		const had = super.delete(key);
		if (had) this.#changed();
		return had;
	}

	override clear(): void {
		const had = this.size > 0;
		super.clear();
		if (had) this.#changed();
	}
}
