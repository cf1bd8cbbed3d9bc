/**
 * Real-time block lists (RTBL, https://xmppbl.org/dev): a XEP-0060 node whose item ids are the
 * SHA-256 (hex) of bare JIDs or domains, published by trusted operators. A host subscribes to
 * each configured node (XEP-0060 §6.1), fetches its items (§6.5) and follows its notifications
 * (§7.1.2 publish, §7.2.2.1 retract, §7.5 purge). The ids of every list are kept in the host's
 * `rtbl` store, so a restart filters from its first stanza, before the service answers (the
 * start-up gap ejabberd #4050 left open).
 */
import { createHash } from "node:crypto";
import type { Element } from "../../xml/element.ts";
import { x } from "../../xml/element.ts";
import type { JID } from "../../xmpp/jid.ts";

export const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
export const NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event";
export const RTBL_STORE = "rtbl";

export interface RtblSource {
	/** The pubsub service, e.g. `xmppbl.org`. */
	service: string;
	/** The node, e.g. `muc_bans_sha256`. */
	node: string;
}

export const sha256 = (s: string): string => createHash("sha256").update(s).digest("hex");

/** The hashes a JID is listed under: its bare JID and its domain (mod_muc_rtbl's rule). */
export function hashesOf(jid: JID): string[] {
	return jid.local ? [sha256(jid.bareString), sha256(jid.domain)] : [sha256(jid.domain)];
}

/** The ids of the `<item/>`s of an `<items/>` answer or notification. */
export function itemIds(items: Element | undefined, child: "item" | "retract"): string[] {
	return (items?.getChildren(child) ?? [])
		.map((i) => i.attrs.id ?? "")
		.filter((id) => /^[0-9a-f]{64}$/i.test(id))
		.map((id) => id.toLowerCase());
}

export const subscribeIq = (s: RtblSource, from: string, id: string): Element =>
	x(
		"iq",
		{ type: "set", id, from, to: s.service },
		x("pubsub", { xmlns: NS_PUBSUB }, x("subscribe", { node: s.node, jid: from })),
	);

export const itemsIq = (s: RtblSource, from: string, id: string): Element =>
	x(
		"iq",
		{ type: "get", id, from, to: s.service },
		x("pubsub", { xmlns: NS_PUBSUB }, x("items", { node: s.node })),
	);

/** The key of a source in the `rtbl` store. */
export const sourceKey = (s: RtblSource): string => `${s.node}@${s.service}`;
