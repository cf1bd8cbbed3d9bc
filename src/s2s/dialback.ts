/**
 * Server Dialback (XEP-0220): the key an originating server sends and its authoritative server
 * checks. Keys follow XEP-0185 §3, so any node that shares the host's secret (every node of a
 * cluster reads it from the same storage) can verify them without keeping state.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";

/**
 * XEP-0185 §3: HMAC-SHA256 keyed with SHA-256 of the secret, over
 * "Receiving Server, space, Originating Server, space, Stream ID", in lower-case hex.
 */
export function dialbackKey(
	secret: Buffer,
	receiving: string,
	originating: string,
	streamId: string,
): string {
	const key = createHash("sha256").update(secret).digest("hex");
	return createHmac("sha256", key).update(`${receiving} ${originating} ${streamId}`).digest("hex");
}

/** Compares a received key with the expected one in constant time. */
export function keysMatch(received: string, expected: string): boolean {
	const a = Buffer.from(received.trim(), "utf8");
	const b = Buffer.from(expected, "utf8");
	return a.length === b.length && timingSafeEqual(a, b);
}
