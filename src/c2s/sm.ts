/**
 * Stream Management (XEP-0198, urn:xmpp:sm:3): the counts, the queue of stanzas the client has
 * not acknowledged, and the resumption token of one client stream. The stream (stream.ts) does
 * the protocol; this is its bookkeeping, kept apart so the rules read in one place.
 *
 * Counts are modulo 2^32 (§4: "h" wraps). `inbound` is the number of stanzas from the client
 * handled since `<enable/>`; `outbound` the number sent to it. The queue holds what was sent and
 * not yet acknowledged, oldest first; an `<a h/>` from the client drops what it covers.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { Element } from "../xml/element.ts";

export const NS_SM = "urn:xmpp:sm:3";

/** Past this many unacknowledged stanzas the server asks for an acknowledgement (§4 `<r/>`). */
export const REQUEST_EVERY = 5;

const MOD = 2 ** 32;

/** The resumption id (§5): the resource it resumes and 128 random bits, base64url. */
export function makeResumptionId(resource: string): { id: string; secret: Buffer } {
	const secret = randomBytes(16);
	const id = Buffer.concat([secret, Buffer.from(resource, "utf8")]).toString("base64url");
	return { id, secret };
}

/** The resource a resumption id names, or null for one that cannot be ours. */
export function resourceOf(id: string): string | null {
	const raw = Buffer.from(id, "base64url");
	if (raw.length <= 16 || raw.toString("base64url") !== id) return null;
	return raw.subarray(16).toString("utf8");
}

export class StreamManagement {
	/** Stanzas handled from the client since `<enable/>` (mod 2^32). */
	inbound = 0;
	/** Stanzas sent to the client since `<enable/>` (mod 2^32). */
	outbound = 0;
	readonly unacked: Element[] = [];
	/** An `<r/>` is out and not yet answered. */
	requested = false;
	readonly resumable: boolean;
	readonly id: string | undefined;
	/** Seconds a broken connection's session waits to be resumed. */
	readonly max: number;
	readonly #secret: Buffer | undefined;

	constructor(opts: { resume: boolean; resource: string; max: number }) {
		this.resumable = opts.resume;
		this.max = opts.max;
		if (opts.resume) {
			const { id, secret } = makeResumptionId(opts.resource);
			this.id = id;
			this.#secret = secret;
		}
	}

	/** Whether `id` is this stream's resumption id (constant time). */
	matches(id: string): boolean {
		if (!this.id || !this.#secret) return false;
		const raw = Buffer.from(id, "base64url");
		if (raw.length < 16) return false;
		return timingSafeEqual(raw.subarray(0, 16), this.#secret) && id === this.id;
	}

	handled(): void {
		this.inbound = (this.inbound + 1) % MOD;
	}

	sent(stanza: Element): void {
		this.outbound = (this.outbound + 1) % MOD;
		this.unacked.push(stanza);
	}

	/**
	 * The client acknowledged `h` stanzas in all (§4). Returns false when `h` is more than was
	 * sent (§4 "handled-count-too-high"), true otherwise.
	 */
	ack(h: number): boolean {
		const base = (this.outbound - this.unacked.length + MOD) % MOD;
		const count = (h - base + MOD) % MOD;
		if (count > this.unacked.length) return false;
		this.unacked.splice(0, count);
		return true;
	}
}

/** A count attribute (`h`): an integer from 0 to 2^32 - 1, or null. */
export function parseCount(v: string | undefined): number | null {
	if (v === undefined || !/^\d{1,10}$/.test(v)) return null;
	const n = Number(v);
	return n < MOD ? n : null;
}
