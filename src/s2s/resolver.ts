/**
 * Where to connect for a remote domain (RFC 6120 §3.2.1): static routes from the config first,
 * then `_xmpps-server._tcp` (XEP-0368, direct TLS) and `_xmpp-server._tcp` SRV records ordered by
 * priority and weight (RFC 2782), then the domain itself on port 5269 (§3.2.2 fallback).
 */
import { promises as dns } from "node:dns";

export interface Target {
	host: string;
	port: number;
	/** XEP-0368: TLS from the first byte instead of STARTTLS. */
	directTls: boolean;
}

export interface Resolver {
	/** Targets to try in order; empty when the domain says it offers no XMPP service. */
	resolve(domain: string): Promise<Target[]>;
}

interface Srv {
	name: string;
	port: number;
	priority: number;
	weight: number;
}

/** DNS lookups, as `Resolver` needs them (tests replace it). */
export interface SrvLookup {
	resolveSrv(name: string): Promise<Srv[]>;
}

export class S2SResolver implements Resolver {
	readonly #routes: Record<string, string>;
	readonly #dns: SrvLookup;

	constructor(routes: Record<string, string>, lookup: SrvLookup = dns) {
		this.#routes = routes;
		this.#dns = lookup;
	}

	async resolve(domain: string): Promise<Target[]> {
		const route = this.#routes[domain];
		if (route !== undefined) return [parseRoute(route)];
		const [tls, plain] = await Promise.all([
			this.#srv(`_xmpps-server._tcp.${domain}`),
			this.#srv(`_xmpp-server._tcp.${domain}`),
		]);
		// RFC 2782: a single record whose target is "." means the service is not offered here.
		const refused = (r: Srv[] | null) =>
			r?.length === 1 && (r[0]?.name === "." || r[0]?.name === "");
		if (refused(tls) && refused(plain)) return [];
		const records = [
			...(refused(tls) ? [] : (tls ?? []).map((r) => ({ r, directTls: true }))),
			...(refused(plain) ? [] : (plain ?? []).map((r) => ({ r, directTls: false }))),
		];
		if (records.length === 0) return [{ host: domain, port: 5269, directTls: false }];
		return orderSrv(records).map(({ r, directTls }) => ({
			host: r.name.replace(/\.$/, ""),
			port: r.port,
			directTls,
		}));
	}

	async #srv(name: string): Promise<Srv[] | null> {
		try {
			return await this.#dns.resolveSrv(name);
		} catch {
			// ENOTFOUND / ENODATA: no such records. Other failures look the same to the caller,
			// which falls back to the domain's own address as RFC 6120 §3.2.2 says.
			return null;
		}
	}
}

/** `host:port`, `[v6]:port`, or either after `tls:` for XEP-0368 direct TLS. */
export function parseRoute(route: string): Target {
	const directTls = route.startsWith("tls:");
	const rest = directTls ? route.slice(4) : route;
	const colon = rest.lastIndexOf(":");
	let host = rest.slice(0, colon);
	if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
	return { host, port: Number(rest.slice(colon + 1)), directTls };
}

/**
 * RFC 2782: lowest priority first; within a priority, a weighted random order. XEP-0368 §3:
 * direct TLS and STARTTLS records are merged by the same rule; on a tie direct TLS comes first.
 */
function orderSrv<T extends { r: Srv; directTls: boolean }>(records: T[]): T[] {
	const byPriority = new Map<number, T[]>();
	for (const rec of records) {
		const list = byPriority.get(rec.r.priority) ?? [];
		list.push(rec);
		byPriority.set(rec.r.priority, list);
	}
	const out: T[] = [];
	for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
		const pool = byPriority.get(priority) ?? [];
		while (pool.length > 0) {
			const total = pool.reduce((sum, rec) => sum + rec.r.weight, 0);
			let pick = 0;
			if (total > 0) {
				let n = Math.random() * total;
				pick = pool.length - 1;
				for (let i = 0; i < pool.length; i++) {
					n -= pool[i]?.r.weight ?? 0;
					if (n < 0) {
						pick = i;
						break;
					}
				}
			} else {
				const tls = pool.findIndex((rec) => rec.directTls);
				pick = Math.max(tls, 0);
			}
			out.push(...pool.splice(pick, 1));
		}
	}
	return out;
}
