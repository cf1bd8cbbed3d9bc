/**
 * IP addresses as configured (lists of addresses and CIDR ranges: `limits.exempt_ips`,
 * `http.trusted_proxies`, the register module's allow and block lists) and as sockets report
 * them (IPv4 clients on a dual-stack listener appear as `::ffff:a.b.c.d`).
 */
import net from "node:net";

/** `::ffff:a.b.c.d` (an IPv4 client on an IPv6 socket) as `a.b.c.d`; anything else as it is. */
export function normalizeIp(ip: string): string {
	return ip.startsWith("::ffff:") && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

/**
 * Whether an address (as a socket reports it) is one of `entries` ("127.0.0.1", "10.0.0.0/8",
 * "::1"). Throws on a malformed entry, naming it.
 */
export function addressMatcher(entries: readonly string[]): (ip: string) => boolean {
	if (entries.length === 0) return () => false;
	const list = new net.BlockList();
	for (const entry of entries) {
		const [addr = "", bits, extra] = entry.split("/");
		const family = net.isIPv6(addr) ? "ipv6" : net.isIPv4(addr) ? "ipv4" : null;
		const maxBits = family === "ipv6" ? 128 : 32;
		if (
			!family ||
			extra !== undefined ||
			(bits !== undefined && (!/^\d+$/.test(bits) || Number(bits) > maxBits))
		)
			throw new Error(`"${entry}" is not an IP address or CIDR range`);
		if (bits === undefined) list.addAddress(addr, family);
		else list.addSubnet(addr, Number(bits), family);
	}
	return (address) => {
		const ip = normalizeIp(address);
		const family = net.isIPv6(ip) ? "ipv6" : net.isIPv4(ip) ? "ipv4" : null;
		return family !== null && list.check(ip, family);
	};
}
