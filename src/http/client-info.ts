/**
 * Who is really on the other end of an HTTP request. Behind a reverse proxy the socket's peer
 * is the proxy; its X-Forwarded-For/-Proto/-Host (read by fastify's trustProxy) and RFC 7239
 * `Forwarded` headers are believed only when the peer is listed in `http.trusted_proxies`,
 * otherwise anyone could claim any address (and dodge the per-IP limits).
 */
import { addressMatcher, normalizeIp } from "../security/addresses.ts";

/** `http.trusted_proxies` as a test of an address. */
export function trustedProxies(entries: readonly string[]): (address: string) => boolean {
	try {
		return addressMatcher(entries);
	} catch (e) {
		throw new Error(`http.trusted_proxies: ${(e as Error).message}`);
	}
}

export { normalizeIp };

export interface ForwardedElement {
	for?: string;
	proto?: string;
	host?: string;
}

/**
 * RFC 7239 §4: the `Forwarded` header's last element is the one the nearest proxy added, so
 * it is the only one we can believe when just that proxy is trusted.
 */
export function parseForwarded(header: string): ForwardedElement | null {
	const elements = header.split(",");
	const last = elements[elements.length - 1];
	if (!last?.trim()) return null;
	const out: ForwardedElement = {};
	for (const pair of last.split(";")) {
		const eq = pair.indexOf("=");
		if (eq < 0) continue;
		const key = pair.slice(0, eq).trim().toLowerCase();
		let value = pair.slice(eq + 1).trim();
		// RFC 7239 §4: values may be quoted-strings (IPv6 addresses and ports must be).
		if (value.startsWith('"') && value.endsWith('"') && value.length >= 2)
			value = value.slice(1, -1).replace(/\\(.)/g, "$1");
		if (key === "for" || key === "proto" || key === "host") out[key] = value;
	}
	if (out.for !== undefined) out.for = forwardedNode(out.for);
	return out;
}

/** RFC 7239 §6: a node is an IP (IPv6 in brackets), optionally with a port, or obfuscated. */
function forwardedNode(node: string): string {
	if (node.startsWith("[")) {
		const end = node.indexOf("]");
		return end > 0 ? node.slice(1, end) : node;
	}
	const colon = node.indexOf(":");
	return colon >= 0 && node.indexOf(":", colon + 1) < 0 ? node.slice(0, colon) : node;
}

/** A Host header value we are willing to put into a URL (RFC 3986 reg-name / IP literal, port). */
export function isSafeHost(host: string): boolean {
	return /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/.test(host);
}
