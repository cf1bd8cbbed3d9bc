/**
 * Private XML Storage (XEP-0049): a user stores XML fragments on their own account, keyed by
 * the fragment's root element name and namespace, and nobody else can read or change them.
 */
import { z } from "zod";
import { HANDLED } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { StanzaEvent } from "../core/router.ts";
import { type Element, x } from "../xml/element.ts";
import { parseDocument } from "../xml/parser.ts";
import { StanzaError } from "../xmpp/errors.ts";
import { resultFor } from "../xmpp/stanza.ts";

export const NS_PRIVATE = "jabber:iq:private";

const options = z.strictObject({
	/** Bytes of XML one user may keep in private storage, all fragments together. */
	max_bytes: z.number().int().min(1024).default(262_144),
});

/**
 * XEP-0049 §2.3: namespaces beginning with 'jabber:' or 'http://jabber.org/', and
 * 'vcard-temp', are reserved; a fragment without a namespace of its own inherits
 * 'jabber:iq:private' and is reserved too.
 */
export function isReservedNamespace(ns: string | null): boolean {
	if (!ns) return true;
	return ns.startsWith("jabber:") || ns.startsWith("http://jabber.org/") || ns === "vcard-temp";
}

/** The store: one map entry per (user, fragmentKey), the fragment as XML text. */
export const PRIVATE_STORE = "private";

/**
 * `private/changed` on the host's bus after an account stored fragments (XEP-0049 §2.2):
 * XEP-0402 compatibility (src/modules/pep/) follows `storage:bookmarks` there.
 */
export interface PrivateChangedEvent {
	user: string;
	fragments: Element[];
}

/** The storage key of a fragment: its root element's name and namespace. */
export function fragmentKey(el: Element): string {
	return `${el.name} ${el.ns ?? ""}`;
}

/**
 * A copy of a fragment that can be parsed on its own: prefix declarations made on the query
 * or the IQ (the parser keeps them where they were written) are copied onto it.
 */
function standalone(fragment: Element, iq: Element): Element {
	const copy = fragment.clone();
	const query = iq.elements()[0];
	for (const holder of [query, iq]) {
		for (const [k, v] of Object.entries(holder?.attrs ?? {})) {
			if (k.startsWith("xmlns:") && copy.attrs[k] === undefined) copy.attrs[k] = v;
		}
	}
	return copy;
}

export default defineModule({
	name: "private",
	description: "XEP-0049 Private XML Storage",
	options,
	load(api) {
		// One map entry per (user, "name namespace"), the fragment as XML text.
		const store = api.map<string>(PRIVATE_STORE);
		// XEP-0030 §3.1: the server lists what it supports. Clients look for it there before
		// they use private storage: poezio (0.14) keeps no remote bookmarks without it, as
		// Prosody's mod_private advertises it on the host.
		api.addFeature(NS_PRIVATE);

		/** XEP-0049 §3: only the owner, addressing their own account (or no one), may use it. */
		const checkOwner = ({ from, to }: StanzaEvent) => {
			if (!from.bare.equals(to)) throw new StanzaError("forbidden", "private data is private");
		};

		const fragmentsOf = (stanza: Element): Element[] => {
			const query = stanza.elements()[0] as Element;
			const children = query.elements();
			// XEP-0049 §2.3: at least one child element with a proper namespace.
			if (children.length === 0)
				throw new StanzaError("not-acceptable", "name the element to store or retrieve");
			for (const c of children) {
				if (isReservedNamespace(c.ns))
					throw new StanzaError("not-acceptable", `the namespace ${c.ns ?? "(none)"} is reserved`);
			}
			return children;
		};

		api.hook(`iq-get/bare/${NS_PRIVATE}:query`, async (event: StanzaEvent) => {
			checkOwner(event);
			const { stanza, origin, to } = event;
			const children = fragmentsOf(stanza);
			// XEP-0049 §2.3: a client MUST NOT query more than one namespace in one get.
			if (new Set(children.map((c) => c.ns)).size > 1)
				throw new StanzaError("bad-request", "ask for one namespace at a time");
			const found: Element[] = [];
			for (const c of children) {
				const xml = await store.get(to.local, fragmentKey(c));
				found.push(
					xml === undefined
						? // Nothing stored: the empty element asked for comes back (as Prosody does).
							x(c.name, { xmlns: c.ns ?? undefined })
						: parseDocument(xml, { maxStanzaBytes: Buffer.byteLength(xml) + 1, maxDepth: 64 }),
				);
			}
			origin?.send(resultFor(stanza, x("query", { xmlns: NS_PRIVATE }, found)));
			return HANDLED;
		});

		api.hook(`iq-set/bare/${NS_PRIVATE}:query`, async (event: StanzaEvent) => {
			checkOwner(event);
			const { stanza, origin, to } = event;
			const children = fragmentsOf(stanza);
			const existing = await store.getAll(to.local);
			const updates = new Map<string, string>();
			for (const c of children) updates.set(fragmentKey(c), standalone(c, stanza).toString());
			let total = 0;
			for (const [k, v] of existing) if (!updates.has(k)) total += Buffer.byteLength(v);
			for (const v of updates.values()) total += Buffer.byteLength(v);
			if (total > api.options.max_bytes) {
				throw new StanzaError(
					"not-acceptable",
					`private storage is limited to ${api.options.max_bytes} bytes per account`,
				);
			}
			for (const [k, v] of updates) await store.set(to.local, k, v);
			await api.host.events.fire<PrivateChangedEvent>("private/changed", {
				user: to.local,
				fragments: children,
			});
			origin?.send(resultFor(stanza));
			return HANDLED;
		});
	},
});
