/** Polling for tests: waits for a condition that no event announces. */

/**
 * Polls `fn` (which may be async) every 10 ms until it returns something other than undefined
 * or false, and returns that; throws after `ms` (a safety net for a hung test, not a timing
 * assertion).
 */
export async function waitFor<T>(
	fn: () => T | undefined | false | Promise<T | undefined | false>,
	what: string,
	ms = 10_000,
): Promise<T> {
	const deadline = Date.now() + ms;
	for (;;) {
		const v = await fn();
		if (v !== undefined && v !== false) return v;
		if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
		await new Promise((r) => setTimeout(r, 10));
	}
}
