/**
 * The admin API's bearer tokens (issue 15): 32 random bytes, given once to whoever asked, kept
 * only as their SHA-256 in storage (server-wide, store `admin_tokens` of host ""), with an
 * expiry; revocable by id. A token is issued for an admin account (`POST /auth/tokens` with
 * its password) or, by the CLI with local access to storage, for the operator (`cli`).
 * Whether its account is still an admin is checked at each request, not when it was issued.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { StorageBackend } from "../storage/types.ts";

/** Where tokens live: host "" is no XMPP domain, so no export or account removal touches it. */
const TOKEN_HOST = "";
const TOKEN_STORE = "admin_tokens";
/** Every token starts with it: a secret scanner (and a person) recognises one. */
const PREFIX = "parley_";
/** The actor of a token issued by the CLI for the operator at the machine. */
export const CLI_ACTOR = "cli";

interface TokenRecord {
	[key: string]: string | number;
	/** SHA-256 of the whole token, hex. */
	hash: string;
	/** The admin's bare JID, or `cli`. */
	jid: string;
	created: number;
	expires: number;
}

export interface TokenInfo {
	id: string;
	jid: string;
	created: string;
	expires: string;
}

export interface IssuedToken extends TokenInfo {
	/** The token itself: shown once, never stored. */
	token: string;
}

function sha256(text: string): string {
	return createHash("sha256").update(text).digest("hex");
}

/** The public id of a token: the first 16 hex digits of its hash (safe to log and list). */
function idOf(hash: string): string {
	return hash.slice(0, 16);
}

function info(id: string, r: TokenRecord): TokenInfo {
	return {
		id,
		jid: r.jid,
		created: new Date(r.created).toISOString(),
		expires: new Date(r.expires).toISOString(),
	};
}

export class TokenStore {
	readonly #storage: StorageBackend;
	constructor(storage: StorageBackend) {
		this.#storage = storage;
	}

	#store() {
		return this.#storage.keyval<TokenRecord>(TOKEN_HOST, TOKEN_STORE);
	}

	async issue(jid: string, lifetimeSeconds: number, now = Date.now()): Promise<IssuedToken> {
		const token = PREFIX + randomBytes(32).toString("base64url");
		const hash = sha256(token);
		const record: TokenRecord = { hash, jid, created: now, expires: now + lifetimeSeconds * 1000 };
		await this.#store().set(idOf(hash), record);
		return { token, ...info(idOf(hash), record) };
	}

	/** The token's id and account, or null when it is unknown, expired or revoked. */
	async verify(token: string, now = Date.now()): Promise<TokenInfo | null> {
		if (!token.startsWith(PREFIX) || token.length > 200) return null;
		const hash = sha256(token);
		const id = idOf(hash);
		const store = this.#store();
		const record = await store.get(id);
		if (!record) return null;
		if (!timingSafeEqual(Buffer.from(record.hash, "hex"), Buffer.from(hash, "hex"))) return null;
		if (record.expires <= now) {
			await store.set(id, undefined);
			return null;
		}
		return info(id, record);
	}

	async revoke(id: string): Promise<boolean> {
		const store = this.#store();
		if (!(await store.get(id))) return false;
		await store.set(id, undefined);
		return true;
	}

	/** The tokens that have not expired (ids, accounts and times; never the tokens). */
	async list(now = Date.now()): Promise<TokenInfo[]> {
		const store = this.#store();
		const out: TokenInfo[] = [];
		for (const id of await store.users()) {
			const r = await store.get(id);
			if (r && r.expires > now) out.push(info(id, r));
		}
		return out;
	}
}
