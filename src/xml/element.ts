/**
 * The in-memory form of an XML element, shared by the parser, the router and every module.
 *
 * Namespaces are resolved: `name` is the local name and `ns` the namespace URI. `ns === null`
 * means "inherit from wherever this element is written" and is used for elements built by the
 * server (a `<message/>` built by a module takes the stream's default namespace). Elements that
 * come out of the parser always carry their resolved namespace.
 *
 * `attrs` holds attributes as written (prefixed ones such as `xml:lang` keep their prefix) and
 * any `xmlns:prefix` declarations, so that re-serialised XML keeps meaning the same thing. It
 * never holds the default `xmlns` declaration: that is `ns`.
 */
export type Attrs = Record<string, string>;
export type Node = Element | string;

export class Element {
	name: string;
	ns: string | null;
	attrs: Attrs;
	children: Node[];

	constructor(name: string, ns: string | null, attrs: Attrs, children: Node[]) {
		this.name = name;
		this.ns = ns;
		this.attrs = attrs;
		this.children = children;
	}

	attr(name: string): string | undefined {
		return this.attrs[name];
	}

	is(name: string, ns?: string): boolean {
		return this.name === name && (ns === undefined || this.ns === ns);
	}

	/** First child element with this local name (and namespace, when given). */
	getChild(name: string, ns?: string): Element | undefined {
		for (const c of this.children) {
			if (typeof c !== "string" && c.name === name && (ns === undefined || c.ns === ns)) return c;
		}
		return undefined;
	}

	getChildren(name?: string, ns?: string): Element[] {
		const out: Element[] = [];
		for (const c of this.children) {
			if (typeof c === "string") continue;
			if (name !== undefined && c.name !== name) continue;
			if (ns !== undefined && c.ns !== ns) continue;
			out.push(c);
		}
		return out;
	}

	/** Child elements only (no text nodes). */
	elements(): Element[] {
		return this.getChildren();
	}

	/** First child element in namespace `ns`, whatever its name. */
	getChildByNs(ns: string): Element | undefined {
		for (const c of this.children) if (typeof c !== "string" && c.ns === ns) return c;
		return undefined;
	}

	/** Concatenated text of the direct text children. */
	text(): string {
		let s = "";
		for (const c of this.children) if (typeof c === "string") s += c;
		return s;
	}

	getChildText(name: string, ns?: string): string | undefined {
		return this.getChild(name, ns)?.text();
	}

	append(...nodes: Node[]): this {
		for (const n of nodes) {
			// A prefixed element's namespace is its prefix's, not the default one its children take.
			if (typeof n !== "string" && n.ns === null && this.ns !== null && !this.name.includes(":"))
				inheritNs(n, this.ns);
			this.children.push(n);
		}
		return this;
	}

	removeChildren(name: string, ns?: string): this {
		this.children = this.children.filter(
			(c) => typeof c === "string" || c.name !== name || (ns !== undefined && c.ns !== ns),
		);
		return this;
	}

	/** Deep copy: stanzas fanned out to several recipients are copied before `to`/`from` change. */
	clone(): Element {
		return new Element(
			this.name,
			this.ns,
			Object.assign(Object.create(null) as Attrs, this.attrs),
			this.children.map((c) => (typeof c === "string" ? c : c.clone())),
		);
	}

	/** Serialise. `contextNs` is the default namespace in force where the element is written. */
	toString(contextNs: string | null = null): string {
		return serialize(this, contextNs);
	}
}

function inheritNs(el: Element, ns: string): void {
	el.ns = ns;
	for (const c of el.children) if (typeof c !== "string" && c.ns === null) inheritNs(c, ns);
}

/**
 * Build an element: `x("iq", { type: "result", id }, x("query", { xmlns: NS_DISCO_INFO }))`.
 * An `xmlns` attribute sets the namespace; children without one take their parent's.
 * Attributes whose value is undefined are left out, so optional ones can be passed directly.
 */
export function x(
	name: string,
	attrs?: Record<string, string | undefined> | null,
	...children: (Node | Node[] | undefined | null | false)[]
): Element {
	let ns: string | null = null;
	const a: Attrs = {};
	if (attrs) {
		for (const k in attrs) {
			const v = attrs[k];
			if (v === undefined) continue;
			if (k === "xmlns") ns = v;
			else a[k] = v;
		}
	}
	const el = new Element(name, ns, a, []);
	for (const c of children) {
		if (c === undefined || c === null || c === false) continue;
		if (Array.isArray(c)) el.append(...c);
		else el.append(c);
	}
	return el;
}

// The test patterns are not global: a global RegExp keeps lastIndex between .test() calls.
const NEEDS_TEXT_ESCAPE = /[&<>]/;
const NEEDS_ATTR_ESCAPE = /[&<>"']/;
const ESCAPE_TEXT = /[&<>]/g;
const ESCAPE_ATTR = /[&<>"']/g;
const ENTITIES: Record<string, string> = {
	"&": "&amp;",
	"<": "&lt;",
	">": "&gt;",
	'"': "&quot;",
	"'": "&apos;",
};

export function escapeText(s: string): string {
	return NEEDS_TEXT_ESCAPE.test(s) ? s.replace(ESCAPE_TEXT, (c) => ENTITIES[c] as string) : s;
}

export function escapeAttr(s: string): string {
	return NEEDS_ATTR_ESCAPE.test(s) ? s.replace(ESCAPE_ATTR, (c) => ENTITIES[c] as string) : s;
}

function serialize(el: Element, contextNs: string | null): string {
	let s = `<${el.name}`;
	let ns = contextNs;
	const attrs = el.attrs;
	if (el.ns !== null) {
		const colon = el.name.indexOf(":");
		if (colon > 0) {
			// A prefixed name (XEP-0220's <db:result/>) is in the namespace of its prefix: that is
			// what is declared, and the default namespace stays for the children (XEP-0220 §2.4's
			// <error/> is jabber:server). ejabberd reads `<db:result xmlns='jabber:server:dialback'>`
			// as an unknown element and answers bad-request.
			const decl = `xmlns:${el.name.slice(0, colon)}`;
			if (attrs[decl] === undefined) s += ` ${decl}="${escapeAttr(el.ns)}"`;
		} else if (el.ns !== contextNs) {
			s += ` xmlns="${escapeAttr(el.ns)}"`;
			ns = el.ns;
		}
	}
	for (const k in attrs) s += ` ${k}="${escapeAttr(attrs[k] as string)}"`;
	const children = el.children;
	if (children.length === 0) return `${s}/>`;
	s += ">";
	for (const c of children) s += typeof c === "string" ? escapeText(c) : serialize(c, ns);
	return `${s}</${el.name}>`;
}
