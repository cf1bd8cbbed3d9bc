import { addressMatcher } from "./addresses.ts";

/**
 * Per-IP limits on the c2s listeners: how many connections one address may hold, and how
 * fast it may fail SASL. A password-guessing loop is slowed down (each failure past the
 * allowance is answered later and later) rather than allowed to keep PBKDF2 busy.
 */
export class ConnectionLimiter {
	/** Open connections allowed per address; 0 means unlimited. A reload may change it. */
	max: number;
	/**
	 * Addresses never counted (`limits.exempt_ips`: a proxy or a load generator on this machine
	 * speaks for many clients). A reload may replace it.
	 */
	exempt: (ip: string) => boolean;
	/** Connections refused since the start (`parley_connections_refused_total`). */
	refused = 0;
	readonly #open = new Map<string, number>();

	constructor(max: number, exempt: readonly string[] = []) {
		this.max = max;
		this.exempt = addressMatcher(exempt);
	}

	/** Returns false when the address is at its limit; otherwise counts the connection. */
	acquire(ip: string): boolean {
		if (this.exempt(ip)) return true;
		const n = this.#open.get(ip) ?? 0;
		if (this.max > 0 && n >= this.max) {
			this.refused++;
			return false;
		}
		this.#open.set(ip, n + 1);
		return true;
	}

	release(ip: string): void {
		if (!this.#open.has(ip)) return; // exempt (or never counted)
		const n = (this.#open.get(ip) ?? 1) - 1;
		if (n > 0) this.#open.set(ip, n);
		else this.#open.delete(ip);
	}

	/**
	 * `acquire` as a lease whose `release` may be called more than once (by whichever of a
	 * connection's ends comes first: authentication, close); undefined when at the limit.
	 */
	lease(ip: string): Lease | undefined {
		if (!this.acquire(ip)) return undefined;
		let held = true;
		return {
			release: () => {
				if (!held) return;
				held = false;
				this.release(ip);
			},
		};
	}
}

/**
 * A lease from each limiter for a connection from `ip`, in order; undefined when one of them is
 * at its limit (the leases already taken are given back).
 */
export function leaseAll(ip: string, limiters: readonly ConnectionLimiter[]): Lease[] | undefined {
	const leases: Lease[] = [];
	for (const limiter of limiters) {
		const lease = limiter.lease(ip);
		if (!lease) {
			for (const l of leases) l.release();
			return undefined;
		}
		leases.push(lease);
	}
	return leases;
}

/** One connection's place in a {@link ConnectionLimiter}. */
export interface Lease {
	/** Gives the place back; later calls do nothing. */
	release(): void;
}

const WINDOW_MS = 60_000;
const MAX_DELAY_MS = 10_000;

export class AuthFailureTracker {
	/** Failures per minute per address that go unpunished; 0 switches the tracker off. */
	allowance: number;
	readonly #failures = new Map<string, number[]>();
	/** When the last attempt taken by `reserve` may run, per address. */
	readonly #turns = new Map<string, number>();
	readonly #now: () => number;

	/** `allowance` failures per minute per address go unpunished; 0 switches the tracker off. */
	constructor(allowance: number, now: () => number = Date.now) {
		this.allowance = allowance;
		this.#now = now;
	}

	#recent(ip: string): number[] {
		const now = this.#now();
		const list = (this.#failures.get(ip) ?? []).filter((t) => now - t < WINDOW_MS);
		if (list.length) this.#failures.set(ip, list);
		else this.#failures.delete(ip);
		return list;
	}

	recordFailure(ip: string): void {
		if (this.allowance === 0) return;
		const list = this.#recent(ip);
		list.push(this.#now());
		this.#failures.set(ip, list);
	}

	/** Failures recorded for this address in the last minute (diagnostics and tests). */
	failures(ip: string): number {
		return this.#recent(ip).length;
	}

	/**
	 * How long to hold the next SASL attempt from this address: nothing within the allowance,
	 * then doubling from one second per extra failure, capped at ten seconds.
	 */
	delayFor(ip: string): number {
		if (this.allowance === 0) return 0;
		const over = this.#recent(ip).length - this.allowance;
		if (over < 0) return 0;
		return Math.min(MAX_DELAY_MS, 1000 * 2 ** Math.min(over, 4));
	}

	/**
	 * Takes the next turn of `ip` for a SASL attempt: how long it must wait first. Past the
	 * allowance, attempts from one address are spaced by `delayFor` one after another, not each
	 * on its own: otherwise a guesser with `connections_per_ip` connections in parallel waits
	 * once per round and gets 32 guesses per 10 s instead of one.
	 */
	reserve(ip: string): number {
		const delay = this.delayFor(ip);
		if (delay === 0) return 0;
		const now = this.#now();
		const start = Math.max(now, this.#turns.get(ip) ?? 0);
		this.#turns.set(ip, start + delay);
		return start + delay - now;
	}

	/** Drops stale entries; called periodically so the map cannot grow without bound. */
	sweep(): void {
		for (const ip of [...this.#failures.keys()]) this.#recent(ip);
		const now = this.#now();
		for (const [ip, at] of this.#turns) if (at <= now) this.#turns.delete(ip);
	}
}
