/** Small helpers for building replies. */
import { type Element, type Node, x } from "../xml/element.ts";
import { NS_CLIENT } from "./ns.ts";

/** An IQ result for `iq` (RFC 6120 §8.2.3): same id, to/from swapped, optional payload. */
export function resultFor(iq: Element, ...payload: Node[]): Element {
	return x(
		"iq",
		{ type: "result", id: iq.attrs.id, to: iq.attrs.from, from: iq.attrs.to },
		...payload,
	);
}

/**
 * A stanza read from a stream whose content namespace is `streamNs` (`jabber:server`,
 * `jabber:component:accept`), moved into `jabber:client`, the namespace Parley holds stanzas
 * in (RFC 6120 §4.8.3: the server translates): the stanza and each child in `streamNs`; other
 * namespaces stay as they are.
 */
export function intoClientNs(el: Element, streamNs: string): Element {
	if (el.ns === streamNs) el.ns = NS_CLIENT;
	for (const c of el.children) if (typeof c !== "string") intoClientNs(c, streamNs);
	return el;
}
