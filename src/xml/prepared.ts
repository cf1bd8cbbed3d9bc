/**
 * A stanza sent to many recipients that differ only in `to` (a XEP-0045 groupchat message or
 * presence to every occupant). The payload is built and serialised once; each recipient gets
 * a light `Element` that shares the children and writes the cached text around its own `to`,
 * so the cost per recipient is one small object and a string concatenation instead of a deep
 * clone and a full serialisation.
 *
 * The addressed elements are ordinary Elements for everything that reads them (a transport
 * that walks children, `clone()`); they must not be modified after being handed out, since
 * their children are shared. Every transport serialises a stanza with `toString(contextNs)`,
 * which is where the cache is used.
 */
import { type Attrs, Element, escapeAttr } from "./element.ts";

export class PreparedStanza {
	readonly name: string;
	readonly ns: string | null;
	/** Attributes without `to`. */
	readonly attrs: Readonly<Attrs>;
	readonly children: Element["children"];
	/** contextNs -> [text before the value of `to`, text after it]. */
	#cache: Map<string | null, [string, string]> | null = null;

	constructor(el: Element) {
		this.name = el.name;
		this.ns = el.ns;
		const attrs: Attrs = {};
		for (const k in el.attrs) if (k !== "to") attrs[k] = el.attrs[k] as string;
		this.attrs = attrs;
		this.children = el.children;
	}

	/** The stanza addressed to `to`. */
	to(to: string): Element {
		return new AddressedStanza(this, to);
	}

	/** The serialised form around `to`, for one namespace context. */
	parts(contextNs: string | null): [string, string] {
		this.#cache ??= new Map();
		let p = this.#cache.get(contextNs);
		if (!p) {
			// Serialise a copy whose `to` is a marker, then split around it: the same code writes
			// the cached text as writes any other element, so the two cannot drift apart.
			const marker = "\u0000to\u0000";
			const probe = new Element(this.name, this.ns, { ...this.attrs, to: marker }, this.children);
			const text = probe.toString(contextNs);
			const i = text.indexOf(marker);
			p = [text.slice(0, i), text.slice(i + marker.length)];
			this.#cache.set(contextNs, p);
		}
		return p;
	}
}

class AddressedStanza extends Element {
	readonly #prepared: PreparedStanza;

	constructor(prepared: PreparedStanza, to: string) {
		super(prepared.name, prepared.ns, { ...prepared.attrs, to }, prepared.children);
		this.#prepared = prepared;
	}

	override toString(contextNs: string | null = null): string {
		const to = this.attrs.to;
		// Only the `to` that was given at creation is cached around; anything else falls back.
		if (to === undefined || this.children !== this.#prepared.children)
			return super.toString(contextNs);
		const [head, tail] = this.#prepared.parts(contextNs);
		return head + escapeAttr(to) + tail;
	}
}
