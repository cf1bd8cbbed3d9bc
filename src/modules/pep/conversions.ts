/**
 * What PEP keeps in step with older protocols, as Prosody's mod_vcard_legacy and
 * mod_bookmarks do, so clients of either kind see the same avatar and the same bookmarks:
 *
 * - XEP-0398: a XEP-0084 avatar (metadata + data nodes) and the vCard's PHOTO (XEP-0054,
 *   XEP-0153), both ways.
 * - XEP-0402 §5.3 (#compat): Bookmarks 2 items and XEP-0048 bookmarks in private XML storage
 *   (XEP-0049), both ways; XEP-0048 bookmarks published to PEP (#compat-pep) flow into both.
 *
 * Pure conversions here; pep/index.ts applies them when either side changes.
 */
import { createHash } from "node:crypto";
import { type Element, x } from "../../xml/element.ts";
import { field, NS_DATA } from "../../xmpp/data-form.ts";
import { NS_PUBLISH_OPTIONS } from "../pubsub/ns.ts";

export const NS_AVATAR_DATA = "urn:xmpp:avatar:data";
export const NS_AVATAR_METADATA = "urn:xmpp:avatar:metadata";
export const NS_VCARD_CONVERSION = "urn:xmpp:pep-vcard-conversion:0";
export const NS_BOOKMARKS2 = "urn:xmpp:bookmarks:1";
export const NS_BOOKMARKS_LEGACY = "storage:bookmarks";

/** XEP-0402 §3 / XEP-0084 §4: the node configuration each publication asks for. */
export function publishOptions(fields: Record<string, string>): Element {
	return x(
		"x",
		{ xmlns: NS_DATA, type: "submit" },
		field("FORM_TYPE", "hidden", undefined, NS_PUBLISH_OPTIONS),
		Object.entries(fields).map(([k, v]) => field(k, "text-single", undefined, v)),
	);
}

/** XEP-0402 §3: whitelist, every item kept, nothing sent on presence. */
export const BOOKMARKS_OPTIONS = {
	"pubsub#persist_items": "true",
	"pubsub#max_items": "max",
	"pubsub#send_last_published_item": "never",
	"pubsub#access_model": "whitelist",
};

// ---------------------------------------------------------------------------------------------
// Avatars (XEP-0084 <-> XEP-0054 PHOTO, XEP-0398)

export interface Avatar {
	/** Hex SHA-1 of the image (XEP-0084 §4.2 item id; XEP-0153 hash). */
	id: string;
	type: string;
	base64: string;
	bytes: number;
}

/** The inline photo of a vCard, or null when it has none (or only an EXTVAL). */
export function vcardPhoto(vcard: Element): Avatar | null {
	const photo = vcard.getChild("PHOTO");
	const base64 = photo?.getChildText("BINVAL")?.replace(/\s+/g, "");
	if (!photo || !base64) return null;
	const data = Buffer.from(base64, "base64");
	if (data.length === 0) return null;
	return {
		id: createHash("sha1").update(data).digest("hex"),
		type: photo.getChildText("TYPE")?.trim() || "image/png",
		base64,
		bytes: data.length,
	};
}

/** XEP-0084 §4.2: the metadata item naming an avatar whose data is in the data node. */
export function avatarMetadata(a: Avatar | null): Element {
	return x(
		"metadata",
		{ xmlns: NS_AVATAR_METADATA },
		a ? x("info", { id: a.id, type: a.type, bytes: String(a.bytes) }) : undefined,
	);
}

/** The avatar a metadata item names with its data in PEP (no `url`), if any. */
export function metadataInfo(metadata: Element | undefined): { id: string; type: string } | null {
	const info = metadata?.getChildren("info").find((i) => i.attrs.id && !i.attrs.url);
	return info ? { id: info.attrs.id as string, type: info.attrs.type ?? "image/png" } : null;
}

/** The vCard with its PHOTO replaced (or removed when `avatar` is null). */
export function withPhoto(
	vcard: Element,
	avatar: { type: string; base64: string } | null,
): Element {
	const out = vcard.clone();
	out.removeChildren("PHOTO");
	if (avatar)
		out.append(x("PHOTO", null, x("TYPE", null, avatar.type), x("BINVAL", null, avatar.base64)));
	return out;
}

// ---------------------------------------------------------------------------------------------
// Bookmarks (XEP-0402 <-> XEP-0048)

const truthy = (v: string | undefined) => v === "true" || v === "1";

/** XEP-0048 §3.2 conferences as XEP-0402 §3 items: room JID -> `<conference/>`. */
export function legacyToBookmarks(storage: Element): Map<string, Element> {
	const out = new Map<string, Element>();
	for (const c of storage.getChildren("conference")) {
		const jid = c.attrs.jid;
		if (!jid) continue;
		const nick = c.getChildText("nick");
		const password = c.getChildText("password");
		out.set(
			jid,
			x(
				"conference",
				{
					xmlns: NS_BOOKMARKS2,
					name: c.attrs.name,
					autojoin: truthy(c.attrs.autojoin) ? "true" : "false",
				},
				nick ? x("nick", null, nick) : undefined,
				password ? x("password", null, password) : undefined,
			),
		);
	}
	return out;
}

/**
 * XEP-0402 items back into a XEP-0048 `<storage/>`; `keep` are the other children of the
 * stored one (`<url/>` bookmarks), which XEP-0402 has no place for.
 */
export function bookmarksToLegacy(items: [string, Element][], keep: Element[]): Element {
	return x(
		"storage",
		{ xmlns: NS_BOOKMARKS_LEGACY },
		items.map(([jid, c]) => {
			const nick = c.getChildText("nick");
			const password = c.getChildText("password");
			return x(
				"conference",
				{ jid, name: c.attrs.name, autojoin: truthy(c.attrs.autojoin) ? "true" : "false" },
				nick ? x("nick", null, nick) : undefined,
				password ? x("password", null, password) : undefined,
			);
		}),
		keep.map((k) => k.clone()),
	);
}

/** Two `<conference/>` items say the same (attributes and children, not their order). */
export function sameBookmark(a: Element | undefined, b: Element | undefined): boolean {
	if (!a || !b) return a === b;
	const norm = (c: Element) =>
		JSON.stringify([
			c.attrs.name ?? "",
			truthy(c.attrs.autojoin),
			c.getChildText("nick") ?? "",
			c.getChildText("password") ?? "",
		]);
	return norm(a) === norm(b);
}
