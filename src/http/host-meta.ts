/**
 * XEP-0156 §3: HTTP discovery of the BOSH and WebSocket endpoints through host-meta (RFC 6415),
 * as XRD (XML) and as JSON.
 */
import { escapeAttr } from "../xml/element.ts";

export const REL_WEBSOCKET = "urn:xmpp:alt-connections:websocket";
export const REL_BOSH = "urn:xmpp:alt-connections:xbosh";

export interface Link {
	rel: string;
	href: string;
}

/** The endpoints as seen by a client that reached us at `origin` ("https://host:port"). */
export function endpointLinks(
	origin: { secure: boolean; host: string },
	paths: { websocket?: string; bosh?: string },
): Link[] {
	const links: Link[] = [];
	if (paths.bosh !== undefined)
		links.push({
			rel: REL_BOSH,
			href: `${origin.secure ? "https" : "http"}://${origin.host}${paths.bosh}`,
		});
	if (paths.websocket !== undefined)
		links.push({
			rel: REL_WEBSOCKET,
			href: `${origin.secure ? "wss" : "ws"}://${origin.host}${paths.websocket}`,
		});
	return links;
}

/** RFC 6415 §3 XRD document. */
export function hostMetaXml(links: Link[]): string {
	let s =
		"<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n";
	for (const l of links) s += `  <Link rel="${escapeAttr(l.rel)}" href="${escapeAttr(l.href)}"/>\n`;
	return `${s}</XRD>\n`;
}

/** RFC 6415 Appendix A JRD document. */
export function hostMetaJson(links: Link[]): string {
	return JSON.stringify({ links });
}
