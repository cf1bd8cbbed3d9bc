/**
 * The storage contract as node:test tests. Every backend's test file calls
 * `storageContract(name, make)`; `make` must return a fresh, empty backend each time.
 * One file per store kind; this entry runs them all.
 */
import { describe } from "node:test";
import { archiveContract } from "./archive.ts";
import { backendContract } from "./backend.ts";
import { keyvalContract } from "./keyval.ts";
import { mapContract } from "./map.ts";
import { type MakeBackend, withBackendFrom } from "./support.ts";

/** `skip`: false, or why this backend's contract is skipped (its server is not reachable). */
export function storageContract(
	name: string,
	make: MakeBackend,
	skip: string | false = false,
): void {
	const withBackend = withBackendFrom(make);
	describe(`storage contract: ${name}`, { skip }, () => {
		keyvalContract(withBackend);
		mapContract(withBackend);
		archiveContract(withBackend);
		backendContract(withBackend, make);
	});
}
