/**
 * SCRAM credentials (RFC 5802 §3, RFC 7677): what Parley stores instead of a password.
 *
 * An account keeps, per hash, the salt, the iteration count, StoredKey and ServerKey. Neither the
 * password nor SaltedPassword (which is password-equivalent for SCRAM) is ever stored.
 *
 * PBKDF2 runs through the async `crypto.pbkdf2`, i.e. on libuv's thread pool, so a high iteration
 * count never blocks the event loop.
 */
import { hash as oneShotHash, pbkdf2, randomBytes, timingSafeEqual } from "node:crypto";
import saslprep from "@mongodb-js/saslprep";

export type ScramHash = "SHA-1" | "SHA-256";

export interface ScramCredential {
	/** base64 */
	salt: string;
	iterations: number;
	/** base64 of H(HMAC(SaltedPassword, "Client Key")) */
	storedKey: string;
	/** base64 of HMAC(SaltedPassword, "Server Key") */
	serverKey: string;
	/**
	 * Milliseconds since the epoch when a XEP-0480 upgrade task added this credential to an
	 * account that lacked the hash (src/auth/upgrade.ts); absent for credentials made from a
	 * password. FAST tokens (fast.ts) leave such credentials out of their fingerprint, so an
	 * upgrade does not expire them.
	 */
	upgraded?: number;
}

/**
 * What an account stores: one credential per hash. Accounts made or changed by Parley have
 * both; an imported one (XEP-0227 from a server that kept only SCRAM-SHA-1) may lack one, which
 * a XEP-0480 upgrade task can add.
 */
export type StoredCredentials = { [H in ScramHash]?: ScramCredential };

/** Both hashes: what a password gives. */
export type AllCredentials = { [H in ScramHash]: ScramCredential };

export const SCRAM_HASHES: readonly ScramHash[] = ["SHA-256", "SHA-1"];

/** Node's digest name and output length for each SCRAM hash (RFC 5802 §4, RFC 7677 §2). */
export const SCRAM_HASH_INFO: { readonly [H in ScramHash]: { node: string; length: number } } = {
	"SHA-1": { node: "sha1", length: 20 },
	"SHA-256": { node: "sha256", length: 32 },
};

/** Salt length used for new credentials. */
export const SALT_BYTES = 16;

/** Block size of SHA-1 and SHA-256, in bytes (RFC 2104 §2 "B"). */
const HMAC_BLOCK = 64;

/**
 * RFC 2104 HMAC, built on the one-shot `crypto.hash`: H((K ^ opad) || H((K ^ ipad) || data)).
 * Same output as `createHmac`, about 4× cheaper per call on Node 24, where `createHmac` spends
 * most of its time turning the key Buffer into a KeyObject. No branch depends on key bytes.
 */
export function hmac(hash: ScramHash, key: Buffer, data: Buffer | string): Buffer {
	const alg = SCRAM_HASH_INFO[hash].node;
	const k = key.length > HMAC_BLOCK ? oneShotHash(alg, key, "buffer") : key;
	const msg = typeof data === "string" ? Buffer.from(data, "utf8") : data;
	const inner = Buffer.allocUnsafe(HMAC_BLOCK + msg.length);
	const outer = Buffer.allocUnsafe(HMAC_BLOCK + SCRAM_HASH_INFO[hash].length);
	for (let i = 0; i < HMAC_BLOCK; i++) {
		const b = i < k.length ? (k[i] as number) : 0;
		inner[i] = b ^ 0x36;
		outer[i] = b ^ 0x5c;
	}
	msg.copy(inner, HMAC_BLOCK);
	oneShotHash(alg, inner, "buffer").copy(outer, HMAC_BLOCK);
	return oneShotHash(alg, outer, "buffer");
}

export function digest(hash: ScramHash, data: Buffer): Buffer {
	return oneShotHash(SCRAM_HASH_INFO[hash].node, data, "buffer");
}

export function xor(a: Buffer, b: Buffer): Buffer {
	if (a.length !== b.length) throw new RangeError("xor: length mismatch");
	const out = Buffer.alloc(a.length);
	for (let i = 0; i < a.length; i++) out[i] = (a[i] ?? 0) ^ (b[i] ?? 0);
	return out;
}

/** Constant-time comparison that also tolerates different lengths (which are not secret). */
export function safeEqual(a: Buffer, b: Buffer): boolean {
	return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * RFC 4013 SASLprep of a password before PBKDF2 (RFC 5802 §2.2 Normalize()). Throws on
 * prohibited output (RFC 4013 §2.3) or bidi violations (§2.4).
 *
 * Unassigned code points are allowed (the "query" profile, RFC 3454 §7) on purpose, for both
 * storing and checking: SASLprep's tables are frozen at Unicode 3.2, so emoji and every later
 * script would otherwise be refused as passwords, and SCRAM clients that normalise as a query or
 * not at all would then compute a different SaltedPassword than a stricter server.
 */
export function saslprepPassword(password: string): string {
	return saslprep(password, { allowUnassigned: true });
}

function pbkdf2Async(
	hash: ScramHash,
	password: string,
	salt: Buffer,
	iterations: number,
): Promise<Buffer> {
	const info = SCRAM_HASH_INFO[hash];
	return new Promise((resolve, reject) => {
		pbkdf2(password, salt, iterations, info.length, info.node, (err, key) => {
			if (err) reject(err);
			else resolve(key);
		});
	});
}

/** RFC 5802 §3: SaltedPassword := Hi(Normalize(password), salt, i). Runs on the thread pool. */
export async function saltedPassword(
	hash: ScramHash,
	password: string,
	salt: Buffer,
	iterations: number,
): Promise<Buffer> {
	if (!Number.isSafeInteger(iterations) || iterations < 1) {
		throw new RangeError(`invalid SCRAM iteration count: ${iterations}`);
	}
	return pbkdf2Async(hash, saslprepPassword(password), salt, iterations);
}

/** RFC 5802 §3: StoredKey and ServerKey from SaltedPassword. */
export function keysFromSaltedPassword(
	hash: ScramHash,
	salted: Buffer,
): { storedKey: Buffer; serverKey: Buffer } {
	const clientKey = hmac(hash, salted, "Client Key");
	return { storedKey: digest(hash, clientKey), serverKey: hmac(hash, salted, "Server Key") };
}

export async function deriveCredential(
	hash: ScramHash,
	password: string,
	iterations: number,
	salt?: Buffer,
): Promise<ScramCredential> {
	const s = salt ?? randomBytes(SALT_BYTES);
	const salted = await saltedPassword(hash, password, s, iterations);
	const { storedKey, serverKey } = keysFromSaltedPassword(hash, salted);
	return {
		salt: s.toString("base64"),
		iterations,
		storedKey: storedKey.toString("base64"),
		serverKey: serverKey.toString("base64"),
	};
}

/** Both hashes, each with its own fresh random 16-byte salt. */
export async function deriveAllCredentials(
	password: string,
	iterations: number,
): Promise<AllCredentials> {
	const [sha1, sha256] = await Promise.all([
		deriveCredential("SHA-1", password, iterations),
		deriveCredential("SHA-256", password, iterations),
	]);
	return { "SHA-1": sha1, "SHA-256": sha256 };
}

function hashOfCredential(cred: ScramCredential): ScramHash | null {
	const len = Buffer.from(cred.storedKey, "base64").length;
	for (const h of SCRAM_HASHES) if (SCRAM_HASH_INFO[h].length === len) return h;
	return null;
}

/**
 * Checks a plaintext password (from PLAIN, RFC 4616) against a stored credential. The hash is
 * told by the StoredKey's length. Timing-safe comparison; false (never a throw) for a password
 * that SASLprep refuses or a damaged credential.
 */
export async function verifyPassword(cred: ScramCredential, password: string): Promise<boolean> {
	const hash = hashOfCredential(cred);
	if (hash === null) return false;
	let salted: Buffer;
	try {
		salted = await saltedPassword(
			hash,
			password,
			Buffer.from(cred.salt, "base64"),
			cred.iterations,
		);
	} catch {
		return false;
	}
	const { storedKey } = keysFromSaltedPassword(hash, salted);
	return safeEqual(storedKey, Buffer.from(cred.storedKey, "base64"));
}
