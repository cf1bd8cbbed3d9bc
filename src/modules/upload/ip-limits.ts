/**
 * What one client address may PUT to an upload service (issue 14): uploads at once, and bytes
 * in any 24 hours. The per-user quotas (index.ts) bound an account; these bound an address, so
 * that many accounts, or a slot URL handed around, cannot upload without limit. Neither
 * Prosody's mod_http_file_share nor ejabberd's mod_http_upload has such a limit (their bounds
 * are per user and global), so the defaults are generous: they stop a flood, not a busy NAT.
 *
 * IPv6 addresses count by their /64, the block one subscriber usually gets; IPv4 by address.
 * On one node, kept in the memory of the process that serves the HTTP requests (a restart
 * forgets it). In a cluster, counted in Redis for all nodes ({@link ClusterIpUploadLimits}):
 * an address cannot get N times its quota by spreading its PUTs over N nodes.
 */
import net from "node:net";
import type { ClusterCounterApi, CounterWindow } from "../../core/contracts.ts";
import type { Logger } from "../../core/log.ts";

const DAY = 86_400_000;

export interface IpLimitOptions {
	/** Uploads in progress from one address at once; 0 = unlimited. */
	maxUploads: number;
	/** Bytes one address may upload in any 24 hours; 0 = unlimited. */
	dailyBytes: number;
	now?: () => number;
}

/** Ends an upload: called once with the bytes received (all of them, even on failure). */
export type UploadEnd = (received: number) => void;

/** What the HTTP side asks before a PUT (one node's memory, or the cluster's counters). */
export interface UploadLimiter {
	begin(ip: string, size: number): IpRefusal | UploadEnd | Promise<IpRefusal | UploadEnd>;
	prune(): void;
}

/** Why an upload may not start, and what to answer. */
export type IpRefusal =
	| { status: 413; reason: string }
	| { status: 429; reason: string; retryAfter?: number };

interface Usage {
	active: number;
	/** Bytes received, by when the upload ended (oldest first). */
	done: { when: number; bytes: number }[];
	/** Bytes reserved by the uploads in progress. */
	reserved: number;
}

/** The key an address counts under: the address, or an IPv6 address's /64. */
export function ipKey(ip: string): string {
	if (!net.isIPv6(ip)) return ip;
	// Expand "::" so that the first four groups are the /64 (an IPv4 tail is two groups).
	const groups = (part: string) =>
		part === "" ? [] : part.split(":").flatMap((g) => (g.includes(".") ? ["0", "0"] : [g]));
	const [head = "", tail] = ip.toLowerCase().split("::");
	const h = groups(head);
	const t = groups(tail ?? "");
	const all =
		tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
	return `${all
		.slice(0, 4)
		.map((g) => g.replace(/^0+(?=.)/, ""))
		.join(":")}::/64`;
}

export class IpUploadLimits implements UploadLimiter {
	readonly #o: IpLimitOptions;
	readonly #now: () => number;
	readonly #by = new Map<string, Usage>();

	constructor(o: IpLimitOptions) {
		this.#o = o;
		this.#now = o.now ?? Date.now;
	}

	/**
	 * Starts an upload of `size` bytes from `ip`, or says why not. On success the returned
	 * function must be called once with the bytes actually received (all of them, even when the
	 * upload failed midway: they were sent all the same).
	 */
	begin(ip: string, size: number): IpRefusal | ((received: number) => void) {
		const { maxUploads, dailyBytes } = this.#o;
		if (dailyBytes > 0 && size > dailyBytes)
			return {
				status: 413,
				reason: `the file is larger than what one address may upload in a day, ${dailyBytes} bytes`,
			};
		const key = ipKey(ip);
		const now = this.#now();
		const u = this.#usage(key, now);
		if (maxUploads > 0 && u.active >= maxUploads)
			// No Retry-After: nobody knows when one of the uploads in progress ends.
			return {
				status: 429,
				reason: `too many uploads from this address at once (at most ${maxUploads})`,
			};
		if (dailyBytes > 0) {
			let used = u.reserved + u.done.reduce((n, d) => n + d.bytes, 0);
			if (used + size > dailyBytes) {
				// RFC 9110 §10.2.3: when enough of what was sent leaves the 24-hour window.
				let at = now;
				for (const d of u.done) {
					if (used + size <= dailyBytes) break;
					used -= d.bytes;
					at = d.when + DAY;
				}
				return {
					status: 429,
					reason: `daily upload limit of this address reached (${dailyBytes} bytes in 24 hours)`,
					...(used + size <= dailyBytes
						? { retryAfter: Math.max(1, Math.ceil((at - now) / 1000)) }
						: {}),
				};
			}
		}
		u.active++;
		u.reserved += size;
		this.#by.set(key, u);
		let ended = false;
		return (received: number) => {
			if (ended) return;
			ended = true;
			const v = this.#by.get(key) ?? u;
			v.active--;
			v.reserved -= size;
			if (received > 0) v.done.push({ when: this.#now(), bytes: received });
			this.#by.set(key, v);
		};
	}

	/** Forgets what has left the window (called by the module's periodic sweep). */
	prune(): void {
		const now = this.#now();
		for (const key of [...this.#by.keys()]) this.#usage(key, now);
	}

	/** Addresses with something counted (for tests and memory checks). */
	get size(): number {
		return this.#by.size;
	}

	#usage(key: string, now: number): Usage {
		const u = this.#by.get(key) ?? { active: 0, done: [], reserved: 0 };
		const from = u.done.findIndex((d) => d.when > now - DAY);
		if (from !== 0) u.done.splice(0, from === -1 ? u.done.length : from);
		if (u.active === 0 && u.done.length === 0) this.#by.delete(key);
		else this.#by.set(key, u);
		return u;
	}
}

/**
 * {@link IpUploadLimits} for a cluster (issue 16): two counters per address in Redis
 * (src/cluster/counters.ts), `upload:<service>:n:<address>` for the uploads in progress and
 * `upload:<service>:b:<address>` for the bytes, that is the sizes of the uploads in progress
 * (each node's share, released by the leader when that node dies: its uploads died with it)
 * plus what was received, in 10-minute buckets kept for 24 hours (a dead node's uploads stay
 * counted). Each check-and-add is atomic, so two nodes cannot both admit the last upload. When
 * Redis does not answer, this node's own memory decides ({@link IpUploadLimits}).
 */
export class ClusterIpUploadLimits implements UploadLimiter {
	readonly #o: IpLimitOptions;
	readonly #counters: () => ClusterCounterApi | null | undefined;
	readonly #service: string;
	readonly #local: IpUploadLimits;
	readonly #log: Logger;
	readonly #window: CounterWindow = { ms: DAY, bucketMs: 600_000 };

	constructor(
		o: IpLimitOptions & {
			counters: () => ClusterCounterApi | null | undefined;
			service: string;
			log: Logger;
		},
	) {
		this.#o = o;
		this.#counters = o.counters;
		this.#service = o.service;
		this.#log = o.log;
		this.#local = new IpUploadLimits(o);
	}

	/** The counters of an address (its key: the address or the IPv6 /64). */
	counterNames(ip: string): { uploads: string; bytes: string } {
		const key = ipKey(ip);
		return {
			uploads: `upload:${this.#service}:n:${key}`,
			bytes: `upload:${this.#service}:b:${key}`,
		};
	}

	async begin(ip: string, size: number): Promise<IpRefusal | UploadEnd> {
		const { maxUploads, dailyBytes } = this.#o;
		const counters = this.#counters();
		if (!counters || (dailyBytes > 0 && size > dailyBytes)) return this.#local.begin(ip, size);
		const { uploads, bytes } = this.counterNames(ip);
		const window = this.#window;
		let counted = false;
		try {
			if (maxUploads > 0) {
				if ((await counters.tryAdd(uploads, 1, maxUploads)) !== true)
					return {
						status: 429,
						reason: `too many uploads from this address at once (at most ${maxUploads})`,
					};
				counted = true;
			}
			if (dailyBytes > 0) {
				const r = await counters.tryAdd(bytes, size, dailyBytes, { window });
				if (r !== true) {
					if (counted) await counters.release(uploads, 1);
					// RFC 9110 §10.2.3: when enough of what was received leaves the window (to the
					// bucket); none when uploads in progress alone are in the way.
					const now = Date.now();
					let used = r.total;
					let at: number | undefined;
					for (const s of r.spent) {
						if (used + size <= dailyBytes) break;
						used -= s.amount;
						at = s.at + window.bucketMs + window.ms;
					}
					return {
						status: 429,
						reason: `daily upload limit of this address reached (${dailyBytes} bytes in 24 hours)`,
						...(used + size <= dailyBytes && at !== undefined
							? { retryAfter: Math.max(1, Math.ceil((at - now) / 1000)) }
							: {}),
					};
				}
			}
		} catch (err) {
			this.#log.warn({ err }, "cluster: upload counters unreachable; counting on this node");
			if (counted) void counters.release(uploads, 1).catch(() => {});
			return this.#local.begin(ip, size);
		}
		let ended = false;
		return (received: number) => {
			if (ended) return;
			ended = true;
			const done = async () => {
				if (maxUploads > 0) await counters.release(uploads, 1);
				if (dailyBytes > 0) {
					await counters.spend(bytes, received, window);
					await counters.release(bytes, size, { window });
				}
			};
			done().catch((err: unknown) =>
				this.#log.warn({ err }, "cluster: an upload's counters were not updated"),
			);
		};
	}

	prune(): void {
		this.#local.prune();
	}
}
