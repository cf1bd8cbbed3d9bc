/** What the parts of the storage contract share: a fresh backend per test, a base time. */
import type { StorageBackend } from "../types.ts";

/** A fixed timestamp (ms) that test items are placed around. */
export const T = 1_700_000_000_000;

export type MakeBackend = () => Promise<StorageBackend> | StorageBackend;

/** Wraps a test body: runs it against a fresh backend and closes that backend afterwards. */
export type WithBackend = (fn: (b: StorageBackend) => Promise<void>) => () => Promise<void>;

export function withBackendFrom(make: MakeBackend): WithBackend {
	return (fn) => async () => {
		const b = await make();
		try {
			await fn(b);
		} finally {
			await b.close();
		}
	};
}
