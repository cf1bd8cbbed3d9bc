/**
 * Per-session module state for local sessions (the `Session` contract is in contracts.ts).
 */

/**
 * `Session.data` of a local session: a Map that reports writes, so that a cluster node can
 * publish the flags other nodes read (carbons enabled, roster versioning, ...).
 */
export class SessionData extends Map<string, unknown> {
	readonly #changed: () => void;

	constructor(changed: () => void) {
		super();
		this.#changed = changed;
	}

	override set(key: string, value: unknown): this {
		const before = super.get(key);
		super.set(key, value);
		if (before !== value) this.#changed();
		return this;
	}

	override delete(key: string): boolean {
		const had = super.delete(key);
		if (had) this.#changed();
		return had;
	}

	override clear(): void {
		const had = this.size > 0;
		super.clear();
		if (had) this.#changed();
	}
}
