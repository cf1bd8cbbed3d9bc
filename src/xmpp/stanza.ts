/** Small helpers for building replies. */
import { type Element, type Node, x } from "../xml/element.ts";

/** An IQ result for `iq` (RFC 6120 §8.2.3): same id, to/from swapped, optional payload. */
export function resultFor(iq: Element, ...payload: Node[]): Element {
	return x(
		"iq",
		{ type: "result", id: iq.attrs.id, to: iq.attrs.from, from: iq.attrs.to },
		...payload,
	);
}
