/**
 * Token buckets by key (issue 19: room message and join rates). Each key may spend `burst`
 * tokens at once and gets `rate` tokens back per second. Keys whose bucket is full again are
 * forgotten on the next sweep, so a flood of distinct keys costs memory only while it lasts;
 * `maxKeys` bounds even that (the oldest key goes first).
 *
 * Written here rather than taken from npm: a bucket is a dozen lines, and the packages that
 * offer one (limiter, rate-limiter-flexible) bring timers, stores and promises this needs none of.
 */
export class RateLimiter {
	readonly #rate: number;
	readonly #burst: number;
	readonly #maxKeys: number;
	readonly #buckets = new Map<string, { tokens: number; at: number }>();

	constructor(opts: { rate: number; burst: number; maxKeys?: number }) {
		this.#rate = opts.rate;
		this.#burst = opts.burst;
		this.#maxKeys = opts.maxKeys ?? 100_000;
	}

	/** Takes one token for `key`: false when there is none left (the caller refuses). */
	take(key: string, now = Date.now()): boolean {
		let b = this.#buckets.get(key);
		if (b) {
			b.tokens = Math.min(this.#burst, b.tokens + ((now - b.at) / 1000) * this.#rate);
			b.at = now;
		} else {
			if (this.#buckets.size >= this.#maxKeys) {
				const oldest = this.#buckets.keys().next().value;
				if (oldest !== undefined) this.#buckets.delete(oldest);
			}
			b = { tokens: this.#burst, at: now };
			this.#buckets.set(key, b);
		}
		if (b.tokens < 1) return false;
		b.tokens -= 1;
		return true;
	}

	/** Forgets the keys whose bucket has filled up again. */
	sweep(now = Date.now()): void {
		for (const [key, b] of this.#buckets)
			if (b.tokens + ((now - b.at) / 1000) * this.#rate >= this.#burst) this.#buckets.delete(key);
	}

	get size(): number {
		return this.#buckets.size;
	}
}
