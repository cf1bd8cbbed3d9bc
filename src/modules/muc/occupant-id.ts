/**
 * Occupant identifiers (XEP-0421, urn:xmpp:occupant-id:0): a stable, opaque id per user and
 * room that clients use to tell occupants apart across nickname changes and rejoins, and that
 * moderation (XEP-0425) and retraction (XEP-0424) name.
 */
import { createHmac, randomBytes } from "node:crypto";
import type { Json, KeyValStore } from "../../storage/types.ts";
import { Element, type Node, x } from "../../xml/element.ts";

export const NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0";

/** The keyval store and key of the service's secret (one per MUC component). */
export const KEY_STORE = "muc_keys";
const KEY_NAME = "occupant-id";

/**
 * XEP-0421 §4: the id is the same for one user in one room every time (rejoins, restarts: the
 * key persists) and reveals nothing of the real JID: an HMAC-SHA-256, keyed with the service's
 * secret, of the occupant's bare JID. The room's JID goes in too (§6, Security Considerations:
 * the same user is not linkable across rooms by its id).
 */
export function occupantId(key: Buffer, room: string, bare: string): string {
	return createHmac("sha256", key).update(room).update("\0").update(bare).digest("base64url");
}

export function occupantIdElement(id: string): Element {
	return x("occupant-id", { xmlns: NS_OCCUPANT_ID, id });
}

/**
 * XEP-0421 §4 (and §6, spoofing): the room removes every occupant-id a client put in a stanza
 * before adding its own, not only the first (ejabberd's bug was to strip one).
 */
export function withoutOccupantIds(children: readonly Node[]): Node[] {
	return children.filter(
		(c) => typeof c === "string" || c.name !== "occupant-id" || c.ns !== NS_OCCUPANT_ID,
	);
}

/** The id an archived or broadcast message carries (the room's own, added after stripping). */
export function occupantIdOf(msg: Element): string | undefined {
	for (const c of msg.children)
		if (c instanceof Element && c.name === "occupant-id" && c.ns === NS_OCCUPANT_ID)
			return c.attrs.id;
	return undefined;
}

/** The service's secret: read from storage (the module's `muc_keys`), or made and stored. */
export async function loadKey(store: KeyValStore<Json>): Promise<Buffer> {
	const stored = (await store.get(KEY_NAME)) as { key?: unknown } | undefined;
	if (typeof stored?.key === "string" && stored.key.length > 0)
		return Buffer.from(stored.key, "base64");
	const key = randomBytes(32);
	await store.set(KEY_NAME, { key: key.toString("base64") });
	return key;
}
