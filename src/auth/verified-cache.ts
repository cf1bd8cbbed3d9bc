/**
 * A bounded memory of recent successful PLAIN verifications (RFC 4616), so that an account that
 * logs in again with the same password skips PBKDF2 (4096+ iterations on the thread pool).
 *
 * What is kept per account is a tag, HMAC-SHA-256 under a random key made for this cache only,
 * over the stored credential's identity (salt, iteration count, StoredKey) and the password. It
 * is not the password and cannot be turned back into it without the key, and it is never
 * written anywhere. A lookup recomputes the tag and compares it in constant time, so:
 *
 * - another password for the same account misses (and goes through PBKDF2 as before);
 * - a changed password (new salt and StoredKey, from this server or the CLI sharing the
 *   database) misses, because the credential read for the login differs from the one tagged;
 * - a deleted account has no credential, so nothing is looked up at all.
 *
 * Only successes are added (by the caller, after PBKDF2 proved the password); failures never
 * are. Entries are evicted least recently used first, beyond `max`, and expire after `ttlMs`.
 *
 * Trade-off, stated: someone who can read this process's memory could test password guesses
 * against a tag at the cost of one HMAC instead of PBKDF2. That reader could as well read the
 * plaintext passwords that PLAIN carries through the same memory at every login.
 */
import { randomBytes } from "node:crypto";
import { hmac, type ScramCredential, safeEqual } from "./scram.ts";

export interface VerifiedCacheOptions {
	/** Most accounts remembered (least recently used dropped first). Default 10000. */
	max?: number;
	/** How long a verification is trusted, in milliseconds. Default one hour. */
	ttlMs?: number;
	/** Clock, for tests. */
	now?: () => number;
}

interface Entry {
	tag: Buffer;
	expires: number;
}

export class VerifiedPasswordCache {
	readonly #key = randomBytes(32);
	readonly #entries = new Map<string, Entry>();
	readonly #max: number;
	readonly #ttlMs: number;
	readonly #now: () => number;

	constructor(options: VerifiedCacheOptions = {}) {
		this.#max = options.max ?? 10_000;
		this.#ttlMs = options.ttlMs ?? 3_600_000;
		this.#now = options.now ?? Date.now;
	}

	get size(): number {
		return this.#entries.size;
	}

	#tag(username: string, cred: ScramCredential, password: string): Buffer {
		// Length-prefixed fields: no two different inputs give the same byte string.
		const parts: Buffer[] = [];
		for (const part of [username, cred.salt, String(cred.iterations), cred.storedKey, password]) {
			const b = Buffer.from(part, "utf8");
			const len = Buffer.allocUnsafe(4);
			len.writeUInt32BE(b.length);
			parts.push(len, b);
		}
		return hmac("SHA-256", this.#key, Buffer.concat(parts));
	}

	/** True iff this exact password was verified for this exact credential, recently. */
	has(username: string, cred: ScramCredential, password: string): boolean {
		// The tag is computed whether or not the account has an entry, so a wrong password takes
		// the same time for an account that logged in recently and for one that did not.
		const tag = this.#tag(username, cred, password);
		const e = this.#entries.get(username);
		if (e === undefined) return false;
		if (e.expires <= this.#now()) {
			this.#entries.delete(username);
			return false;
		}
		if (!safeEqual(tag, e.tag)) return false;
		// Most recently used goes last (Map keeps insertion order).
		this.#entries.delete(username);
		this.#entries.set(username, e);
		return true;
	}

	/** Call only after the password was proven against `cred` the slow way. */
	add(username: string, cred: ScramCredential, password: string): void {
		if (this.#max <= 0) return;
		this.#entries.delete(username);
		this.#entries.set(username, {
			tag: this.#tag(username, cred, password),
			expires: this.#now() + this.#ttlMs,
		});
		while (this.#entries.size > this.#max) {
			const oldest = this.#entries.keys().next().value as string;
			this.#entries.delete(oldest);
		}
	}

	/** Forget an account (its password changed or it was deleted). */
	delete(username: string): void {
		this.#entries.delete(username);
	}
}
