/**
 * A session bound on another node of the cluster, as this node sees it: a replica of what the
 * owning node published (presence, priority, roster interest, module flags). It sits in
 * `host.sessions` beside the local sessions, so the router and the modules address it like any
 * other session; sending to it or closing it goes to its node through the cluster link.
 */

import type { Host, Session } from "../core/contracts.ts";
import type { Element } from "../xml/element.ts";
import type { StreamErrorCondition } from "../xmpp/errors.ts";
import type { JID } from "../xmpp/jid.ts";

/** What a node publishes about one of its sessions (the registry entry, JSON). */
export interface SessionEntry {
	/** Owning node. */
	node: string;
	/** Per node, increasing: a replica keeps the newest state it saw. */
	seq: number;
	/** Session id (unique in the cluster: a random UUID). */
	id: string;
	host: string;
	/** Full JID. */
	jid: string;
	addr: string;
	secure: boolean;
	available: boolean;
	priority: number;
	/** The last broadcast available presence, serialized; "" when none. */
	presence: string;
	interested: boolean;
	/** Module flags that other nodes read (carbons enabled, roster versioning, ...). */
	data: Record<string, string | number | boolean>;
	/**
	 * On the entry that makes a session unavailable: what its node had applied of the other
	 * nodes' registry changes when it sent the unavailable presence, the highest `seq` per node
	 * (see `session/remote-unavailable`, src/cluster/link.ts). On a later entry of a session that
	 * stays available: the same, when it changed (a new presence, see `session/remote-presence`).
	 */
	seen?: Record<string, number>;
}

export interface RemoteLink {
	forward(session: RemoteSession, stanza: Element): void;
	closeRemote(session: RemoteSession, condition?: StreamErrorCondition, text?: string): void;
}

export class RemoteSession implements Session {
	readonly id: string;
	readonly host: Host;
	readonly jid: JID;
	readonly node: string;
	remoteAddress: string;
	secure: boolean;
	available = false;
	priority = 0;
	presence: Element | null = null;
	/** The entry's presence text that `presence` was parsed from (an unchanged one is not parsed again). */
	presenceText = "";
	interested = false;
	readonly data = new Map<string, unknown>();
	/** Sequence number of the entry this replica reflects. */
	seq = 0;
	readonly shownTo = new Set<Session>();
	readonly #link: RemoteLink;

	constructor(entry: SessionEntry, host: Host, jid: JID, link: RemoteLink) {
		this.id = entry.id;
		this.node = entry.node;
		this.host = host;
		this.jid = jid;
		this.remoteAddress = entry.addr;
		this.secure = entry.secure;
		this.#link = link;
	}

	send(stanza: Element): void {
		this.#link.forward(this, stanza);
	}

	close(condition?: StreamErrorCondition, text?: string): void {
		this.#link.closeRemote(this, condition, text);
	}
}
