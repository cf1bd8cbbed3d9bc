/**
 * Writing one element as a complete, self-contained XML fragment: a WebSocket message carries
 * exactly one (RFC 7395 §3.3.3) and a BOSH body's children sit in the httpbind namespace's
 * scope (XEP-0206 §6), so neither can lean on a `<stream:stream xmlns='jabber:client'>` header
 * the way TCP does.
 */
import type { Element } from "../xml/element.ts";
import { NS_CLIENT, NS_STREAMS } from "../xmpp/ns.ts";

/**
 * Serialises `el` with its namespace declared on the element itself: stanzas built by the
 * server (ns null) and parsed ones (jabber:client) get `xmlns='jabber:client'`, and
 * `stream:`-prefixed elements (features, errors) declare the streams prefix.
 */
export function standaloneXml(el: Element): string {
	if (el.ns !== null && el.ns !== NS_CLIENT) return el.toString(null);
	// Written in a jabber:client context the root carries no xmlns of its own, so the
	// declaration can go right after the name without copying or mutating the element.
	const inner = el.toString(NS_CLIENT);
	const decl = el.name.startsWith("stream:")
		? ` xmlns:stream="${NS_STREAMS}"`
		: ` xmlns="${NS_CLIENT}"`;
	return `<${el.name}${decl}${inner.slice(el.name.length + 1)}`;
}
