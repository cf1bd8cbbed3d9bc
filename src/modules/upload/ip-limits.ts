/**
 * What one client address may PUT to an upload service (issue 14): uploads at once, and bytes
 * in any 24 hours. The per-user quotas (index.ts) bound an account; these bound an address, so
 * that many accounts, or a slot URL handed around, cannot upload without limit. Neither
 * Prosody's mod_http_file_share nor ejabberd's mod_http_upload has such a limit (their bounds
 * are per user and global), so the defaults are generous: they stop a flood, not a busy NAT.
 *
 * IPv6 addresses count by their /64, the block one subscriber usually gets; IPv4 by address.
 * Kept in the memory of the process that serves the HTTP requests: a restart forgets it, and
 * each cluster node counts what it receives.
 */
import net from "node:net";

const DAY = 86_400_000;

export interface IpLimitOptions {
	/** Uploads in progress from one address at once; 0 = unlimited. */
	maxUploads: number;
	/** Bytes one address may upload in any 24 hours; 0 = unlimited. */
	dailyBytes: number;
	now?: () => number;
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

export class IpUploadLimits {
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
