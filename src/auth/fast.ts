/**
 * XEP-0484 Fast Authentication Streamlining Tokens: the HT-SHA-256-* SASL mechanisms
 * (draft-schmaus-kitten-sasl-ht) and the tokens they check, kept in a map store of the host
 * (`fast_tokens`: user -> one record per client installation and slot).
 *
 * A token belongs to one account, one client installation (the SASL2 `<user-agent id>`) and one
 * mechanism (§3.4: "Servers MUST bind tokens to the mechanism selected by the client"). Each
 * client has two slots (§5.1): "new", where a freshly issued token waits, and "cur", the token
 * last used; a login with the new token moves it to "cur" (dropping the older one), so a client
 * that never received a rotated token still logs in with the one it has.
 *
 * A token is also bound to the account's stored credential (a hash of it): a password change
 * makes every earlier token fail with credentials-expired (§4.2), and a deleted account has no
 * credential and no tokens (the store is the user's, removed with the account).
 *
 * The token itself is stored: HT-* proves possession with an HMAC keyed by it, so the server
 * needs it (as Prosody's mod_sasl2_fast does). It is 256 random bits, worth nothing elsewhere.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { MapStore } from "../storage/types.ts";
import type { ChannelBindingType } from "./channel-binding.ts";
import type { SaslContext, SaslFailure, SaslMechanism, SaslStep } from "./sasl.ts";
import type { StoredCredentials } from "./scram.ts";

/** The HT mechanisms with SHA-256, and the channel binding type each one uses (null: none). */
const HT_MECHANISMS: Record<string, ChannelBindingType | "tls-unique" | null> = {
	"HT-SHA-256-EXPR": "tls-exporter",
	"HT-SHA-256-UNIQ": "tls-unique",
	"HT-SHA-256-ENDP": "tls-server-end-point",
	"HT-SHA-256-NONE": null,
};

/** The FAST mechanisms this connection can do: those with channel binding first (§3.1). */
export function offeredFastMechanisms(
	ctx: Pick<SaslContext, "secure" | "channelBinding">,
): string[] {
	const types: readonly string[] = ctx.secure ? (ctx.channelBinding?.types() ?? []) : [];
	return Object.entries(HT_MECHANISMS)
		.filter(([, cb]) => cb === null || types.includes(cb))
		.map(([name]) => name);
}

/** One stored token (a JSON record of the map store). */
export type TokenRecord = {
	token: string;
	mechanism: string;
	/** Milliseconds since the epoch. */
	issued: number;
	expires: number;
	/** Hash of the account's stored credential when the token was issued. */
	cred: string;
	/** The highest `<fast count>` seen with this token (replay protection, §3.4). */
	count?: number;
};

export interface FastOptions {
	/** Milliseconds a token is valid. */
	lifetime: number;
	/** Milliseconds after which using a token gets the client a new one (§3.4 rotation). */
	rotation: number;
	now?: () => number;
}

/** Ties a token to the credential it was issued under; a password change gives another value. */
export function credentialFingerprint(creds: StoredCredentials): string {
	// A credential added by a XEP-0480 upgrade task is the same password's: left out, so that
	// the upgrade does not expire the account's tokens (a password change replaces all).
	const key = (c: StoredCredentials[keyof StoredCredentials]) =>
		c && c.upgraded === undefined ? c.storedKey : undefined;
	return createHash("sha256")
		.update(JSON.stringify([key(creds["SHA-256"]), key(creds["SHA-1"])]))
		.digest("base64url")
		.slice(0, 22);
}

const hmac256 = (key: string, data: Buffer) => createHmac("sha256", key).update(data).digest();

export type TokenCheck =
	| { ok: true; responder: Buffer; rotate: boolean }
	| { ok: false; condition: "not-authorized" | "credentials-expired"; reason: string };

/** The tokens of one host. */
export class FastTokens {
	readonly #store: MapStore<TokenRecord>;
	readonly #opts: FastOptions;

	constructor(store: MapStore<TokenRecord>, opts: FastOptions) {
		this.#store = store;
		this.#opts = opts;
	}

	#now(): number {
		return this.#opts.now?.() ?? Date.now();
	}

	/** The store key of a client's slot; the user-agent id itself is not stored. */
	static key(userAgent: string, slot: "new" | "cur"): string {
		return `${createHash("sha256").update(userAgent).digest("base64url")}:${slot}`;
	}

	/**
	 * A new token for this client in its "new" slot (§3.2), replacing one issued earlier and
	 * never used (§3.4: "SHOULD invalidate any tokens previously generated that have not been
	 * used").
	 */
	async issue(
		user: string,
		userAgent: string,
		mechanism: string,
		creds: StoredCredentials,
	): Promise<{ token: string; expiry: Date }> {
		const issued = this.#now();
		const rec: TokenRecord = {
			token: `secret-token:fast-${randomBytes(32).toString("base64url")}`,
			mechanism,
			issued,
			expires: issued + this.#opts.lifetime,
			cred: credentialFingerprint(creds),
		};
		await this.#store.set(user, FastTokens.key(userAgent, "new"), rec);
		return { token: rec.token, expiry: new Date(rec.expires) };
	}

	/** Removes both of a client's tokens (§3.5 invalidation). */
	async revoke(user: string, userAgent: string): Promise<void> {
		await this.#store.set(user, FastTokens.key(userAgent, "new"), undefined);
		await this.#store.set(user, FastTokens.key(userAgent, "cur"), undefined);
	}

	/**
	 * Checks the client's `HMAC(token, "Initiator" || cb-data)` against its "new" slot, then
	 * its "cur" slot (§5.1), in constant time; then expiry, the credential and the replay count.
	 */
	async check(opts: {
		user: string;
		userAgent: string;
		mechanism: string;
		proof: Buffer;
		cbData: Buffer;
		creds: StoredCredentials | null;
		count: number | null;
		invalidate: boolean;
	}): Promise<TokenCheck> {
		const { user, userAgent, mechanism, proof } = opts;
		const initiator = Buffer.concat([Buffer.from("Initiator"), opts.cbData]);
		for (const slot of ["new", "cur"] as const) {
			const key = FastTokens.key(userAgent, slot);
			const rec = await this.#store.get(user, key);
			if (!rec || rec.mechanism !== mechanism) continue;
			const expected = hmac256(rec.token, initiator);
			if (proof.length !== expected.length || !timingSafeEqual(proof, expected)) continue;
			const now = this.#now();
			if (rec.expires <= now) {
				await this.#store.set(user, key, undefined);
				return { ok: false, condition: "credentials-expired", reason: "FAST token expired" };
			}
			if (!opts.creds || credentialFingerprint(opts.creds) !== rec.cred) {
				// The password changed (or the account is gone) since the token was issued.
				await this.revoke(user, userAgent);
				return {
					ok: false,
					condition: "credentials-expired",
					reason: "FAST token issued before the password changed",
				};
			}
			if (opts.count !== null) {
				// §3.4: a count not above one already processed is a replay.
				if (rec.count !== undefined && opts.count <= rec.count) {
					return { ok: false, condition: "not-authorized", reason: "FAST count replayed" };
				}
				rec.count = opts.count;
			}
			if (opts.invalidate) {
				await this.revoke(user, userAgent);
			} else if (slot === "new") {
				// The new token is in use: it becomes the current one, the older one is gone (§3.4).
				await this.#store.set(user, FastTokens.key(userAgent, "cur"), rec);
				await this.#store.set(user, key, undefined);
			} else if (opts.count !== null) {
				await this.#store.set(user, key, rec);
			}
			const responder = hmac256(rec.token, Buffer.concat([Buffer.from("Responder"), opts.cbData]));
			return {
				ok: true,
				responder,
				rotate: !opts.invalidate && now - rec.issued >= this.#opts.rotation,
			};
		}
		return { ok: false, condition: "not-authorized", reason: "no matching FAST token" };
	}
}

/** What a FAST login brings besides the SASL context: the client and its `<fast/>` element. */
export interface FastLogin {
	tokens: FastTokens;
	/** The SASL2 `<user-agent id>`: tokens are per client installation (§4.1). */
	userAgent: string;
	/** `<fast count>`, or null. */
	count: number | null;
	/** `<fast invalidate='true'>`: log in and drop the token (§3.5). */
	invalidate: boolean;
}

/**
 * HT-SHA-256-{NONE,ENDP,EXPR,UNIQ}: one message from the client, `authcid NUL
 * HMAC-SHA-256(token, "Initiator" || cb-data)`; the success data is `HMAC-SHA-256(token,
 * "Responder" || cb-data)` (mutual authentication).
 */
class HtMechanism implements SaslMechanism {
	readonly name: string;
	readonly #cbType: ChannelBindingType | "tls-unique" | null;
	readonly #ctx: SaslContext;
	readonly #fast: FastLogin;
	#done = false;
	/** Set on success: the token is old enough to be replaced (§3.4). */
	rotate = false;

	constructor(
		name: string,
		cbType: ChannelBindingType | "tls-unique" | null,
		ctx: SaslContext,
		fast: FastLogin,
	) {
		this.name = name;
		this.#cbType = cbType;
		this.#ctx = ctx;
		this.#fast = fast;
	}

	async step(input: Buffer | null): Promise<SaslStep> {
		if (this.#done) return fail("malformed-request", "HT is a single message");
		this.#done = true;
		if (!input) return fail("malformed-request", "HT needs an initial response");
		const nul = input.indexOf(0);
		if (nul <= 0 || input.length - nul - 1 !== 32) {
			return fail("malformed-request", "expected authcid NUL 32-byte HMAC");
		}
		const ctx = this.#ctx;
		let user: string;
		try {
			user = ctx.prepUsername(
				new TextDecoder("utf-8", { fatal: true }).decode(input.subarray(0, nul)),
			);
		} catch {
			return fail("not-authorized", undefined, { reason: "not a valid username" });
		}
		let cbData: Buffer = Buffer.alloc(0);
		if (this.#cbType !== null) {
			// tls-unique is undefined for TLS 1.3 and never offered (channel-binding.ts).
			const type = this.#cbType === "tls-unique" ? null : this.#cbType;
			const data = ctx.secure && type ? ctx.channelBinding?.data(type) : null;
			if (!data) {
				return fail("malformed-request", "unsupported-channel-binding-type", {
					throttle: false,
					reason: `${this.#cbType} is not available on this connection`,
					username: user,
				});
			}
			cbData = data;
		}
		let creds: StoredCredentials | null;
		let check: TokenCheck;
		try {
			creds = await ctx.getCredentials(user);
			check = await this.#fast.tokens.check({
				user,
				userAgent: this.#fast.userAgent,
				mechanism: this.name,
				proof: input.subarray(nul + 1),
				cbData,
				creds,
				count: this.#fast.count,
				invalidate: this.#fast.invalidate,
			});
		} catch {
			return fail("temporary-auth-failure", undefined, {
				throttle: false,
				warn: true,
				reason: "FAST tokens could not be read (storage error)",
				username: user,
			});
		}
		if (!check.ok) {
			// A token that does not match is a guess, counted like a wrong password; an expired
			// or revoked one is an honest client that falls back to its password (§4.1).
			return fail(check.condition, undefined, {
				throttle: check.condition === "not-authorized",
				reason: check.reason,
				username: user,
			});
		}
		this.rotate = check.rotate;
		return { kind: "success", data: check.responder, username: user };
	}
}

function fail(
	condition: SaslFailure["condition"],
	text?: string,
	extras: Partial<Omit<SaslFailure, "kind" | "condition" | "text">> = {},
): SaslFailure {
	return {
		kind: "failure",
		condition,
		throttle: true,
		reason: text ?? condition,
		...(text !== undefined && { text }),
		...extras,
	};
}

/** A FAST mechanism, or null when `name` is not one this connection offers. */
export function createFastMechanism(
	name: string,
	ctx: SaslContext,
	fast: FastLogin,
): (SaslMechanism & { rotate: boolean }) | null {
	if (!offeredFastMechanisms(ctx).includes(name)) return null;
	return new HtMechanism(name, HT_MECHANISMS[name] ?? null, ctx, fast);
}
