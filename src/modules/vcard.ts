/**
 * vcard-temp (XEP-0054): each account's vCard, stored by the server and served on the
 * account's behalf, plus the XEP-0153 avatar hash in the account's broadcast presence.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import type { Session } from "../core/contracts.ts";
import { HANDLED, Priority } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { StanzaEvent } from "../core/router.ts";
import { type Element, x } from "../xml/element.ts";
import { parseDocument } from "../xml/parser.ts";
import { StanzaError } from "../xmpp/errors.ts";
import { resultFor } from "../xmpp/stanza.ts";

export const NS_VCARD = "vcard-temp";
export const NS_VCARD_UPDATE = "vcard-temp:x:update";

const options = z.strictObject({
	/**
	 * Largest vCard accepted, in bytes of XML. XEP-0153 §5 asks for small avatars (8 KiB
	 * recommended); 128 KiB leaves room for a generous photo in base64 and stays well under
	 * the 256 KiB stanza limit.
	 */
	max_bytes: z.number().int().min(1024).default(131_072),
});

/**
 * XEP-0153 §4.1: the avatar hash is the hex SHA-1 of the image data (PHOTO/BINVAL decoded
 * from base64). "" when the vCard has no photo (an empty <photo/> says "no avatar"), null
 * when the photo is not inline (EXTVAL) or its data is empty.
 */
export function avatarHash(vcard: Element): string | null {
	const photo = vcard.getChild("PHOTO");
	if (!photo) return "";
	const binval = photo.getChildText("BINVAL")?.replace(/\s+/g, "");
	if (!binval) return null;
	return createHash("sha1").update(Buffer.from(binval, "base64")).digest("hex");
}

/**
 * `vcard/changed` on the host's bus, after an account set its vCard (XEP-0054 §3.2): XEP-0398
 * conversion (src/modules/pep/) publishes its photo as a XEP-0084 avatar.
 */
export interface VCardChangedEvent {
	user: string;
	vcard: Element;
}

/** The store holding each account's vCard as XML text (user = localpart). */
export const VCARD_STORE = "vcard";

/** A stored vCard back into an element; limits generous enough for anything we accepted. */
export function parseStoredVCard(xml: string): Element {
	return parseDocument(xml, { maxStanzaBytes: Buffer.byteLength(xml) + 1, maxDepth: 64 });
}

export default defineModule({
	name: "vcard",
	description: "XEP-0054 vcard-temp and XEP-0153 avatar hashes in presence",
	options,
	load(api) {
		const host = api.host;
		const store = api.keyval<string>(VCARD_STORE);
		// Avatar hash per user, valid while the stored XML is the same string.
		const hashes = new Map<string, { xml: string; hash: string | null }>();

		api.addFeature(NS_VCARD);

		const hashOf = async (user: string): Promise<string | null | undefined> => {
			const xml = await store.get(user);
			if (xml === undefined) {
				hashes.delete(user);
				return undefined;
			}
			const cached = hashes.get(user);
			if (cached?.xml === xml) return cached.hash;
			let hash: string | null;
			try {
				hash = avatarHash(parseStoredVCard(xml));
			} catch (err) {
				api.log.warn({ err, user }, "stored vCard does not parse");
				hash = null;
			}
			hashes.set(user, { xml, hash });
			return hash;
		};

		// XEP-0054 §3.1 (own vCard) and §3.3 (another user's): the server answers for the
		// bare JID. A get without 'to' is addressed to the sender's own account (RFC 6120 §10.3).
		api.hook(`iq-get/bare/${NS_VCARD}:vCard`, async ({ stanza, origin, from, to }: StanzaEvent) => {
			const own = from.bare.equals(to);
			const xml = await store.get(to.local);
			if (xml === undefined) {
				if (own) {
					// §3.1: no vCard yet -> an empty one.
					api.reply(origin, resultFor(stanza, x("vCard", { xmlns: NS_VCARD })));
					return HANDLED;
				}
				// §3.3: the same error whether the user or the vCard is missing, so replies
				// cannot be used to harvest accounts (RFC 6121 §8.5.1 uses the same condition).
				throw new StanzaError("service-unavailable");
			}
			api.reply(origin, resultFor(stanza, parseStoredVCard(xml)));
			return HANDLED;
		});

		// XEP-0054 §3.2: a user publishes their own vCard; nobody else may.
		api.hook(`iq-set/bare/${NS_VCARD}:vCard`, async ({ stanza, origin, from, to }: StanzaEvent) => {
			if (!from.bare.equals(to))
				throw new StanzaError("forbidden", "only the owner may set a vCard");
			const vcard = stanza.elements()[0] as Element;
			const stored = vcard.clone();
			stored.attrs = {};
			for (const [k, v] of Object.entries(vcard.attrs)) {
				// Keep prefix declarations children may need; drop stray attributes.
				if (k.startsWith("xmlns:")) stored.attrs[k] = v;
			}
			const xml = stored.toString();
			const size = Buffer.byteLength(xml);
			if (size > api.options.max_bytes) {
				throw new StanzaError(
					"not-acceptable",
					`the vCard is ${size} bytes; this server accepts at most ${api.options.max_bytes}`,
				);
			}
			await store.set(to.local, xml);
			await host.events.fire<VCardChangedEvent>("vcard/changed", { user: to.local, vcard: stored });
			api.reply(origin, resultFor(stanza));
			return HANDLED;
		});

		// XEP-0153 §4.2 (and §4.3 for a server acting for clients that do not): broadcast presence
		// carries the avatar hash. Added before the presence module broadcasts it, without
		// claiming it; a client that includes its own update element is left alone.
		api.hook(
			"pre-presence/bare",
			async ({ stanza, origin }: StanzaEvent) => {
				if (!origin?.jid || stanza.attrs.to !== undefined || stanza.attrs.type !== undefined)
					return undefined;
				if (stanza.getChild("x", NS_VCARD_UPDATE)) return undefined;
				const hash = await hashOf(origin.jid.local);
				if (hash === undefined || hash === null) return undefined;
				stanza.append(
					x("x", { xmlns: NS_VCARD_UPDATE }, hash ? x("photo", null, hash) : x("photo")),
				);
				return undefined;
			},
			Priority.TRANSFORM,
		);

		api.hook("session/closed", ({ session }: { session: Session }) => {
			const user = session.jid?.local;
			if (user !== undefined && !host.sessions.has(user)) hashes.delete(user);
		});
	},
});
