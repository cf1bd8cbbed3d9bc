/**
 * Accounts of one host. An account is its SCRAM credentials for SHA-1 and SHA-256 (so both
 * mechanisms can always be offered) and nothing reversible: the password itself is never
 * stored (RFC 5802 §2.2, RFC 7677).
 */
import type { KeyValStore, StorageBackend } from "../storage/types.ts";
import { prepLocalpart } from "../xmpp/jid.ts";
import { credentialFingerprint } from "./fast.ts";
import {
	deriveAllCredentials,
	type ScramCredential,
	type ScramHash,
	type StoredCredentials,
} from "./scram.ts";
import { VerifiedPasswordCache } from "./verified-cache.ts";

export interface AccountRecord {
	[key: string]: unknown;
	scram: StoredCredentials;
	created: number;
}

export class AccountError extends Error {
	readonly code: "exists" | "not-found" | "invalid-username" | "invalid-password" | "not-allowed";
	constructor(code: AccountError["code"], message: string) {
		super(message);
		this.code = code;
	}
}

export interface AccountOptions {
	/**
	 * An anonymous host's accounts (RFC 4505, XEP-0175): none is stored, none can be created,
	 * and a (random) username exists exactly while `live` says it has a session.
	 */
	live?: (username: string) => boolean;
	/** Told after an account and its data were deleted (the server fires `account/deleted`). */
	deleted?: (username: string) => Promise<void>;
}

export class AccountManager {
	readonly host: string;
	readonly #store: KeyValStore;
	/** Accounts with a role other than the default `user`: username → role (only `admin`). */
	readonly #roles: KeyValStore<AccountRole>;
	/** Disabled accounts (issue 19): username → true. They cannot log in. */
	readonly #disabled: KeyValStore<boolean>;
	readonly #storage: StorageBackend;
	readonly #iterations: number;
	readonly #live: ((username: string) => boolean) | undefined;
	readonly #deleted: ((username: string) => Promise<void>) | undefined;
	/** Recent successful PLAIN verifications on this host (see verified-cache.ts). */
	readonly verifiedPasswords = new VerifiedPasswordCache();

	constructor(
		storage: StorageBackend,
		host: string,
		iterations: number,
		options: AccountOptions = {},
	) {
		this.host = host;
		this.#storage = storage;
		this.#store = storage.keyval(host, "accounts");
		// Its own store, so listing the admins reads only them; the account's removal
		// (`deleteUser`) removes the role with everything else.
		this.#roles = storage.keyval<AccountRole>(host, "account_roles");
		this.#disabled = storage.keyval<boolean>(host, "account_disabled");
		this.#iterations = iterations;
		this.#live = options.live;
		this.#deleted = options.deleted;
	}

	/** Accounts are sessions (an anonymous host): nothing is stored, nothing can be created. */
	get anonymous(): boolean {
		return this.#live !== undefined;
	}

	/** Prepares a username as a JID localpart (RFC 7622 §3.3); throws AccountError. */
	static prepUsername(username: string): string {
		try {
			return prepLocalpart(username);
		} catch {
			throw new AccountError("invalid-username", `"${username}" is not a valid username`);
		}
	}

	async exists(username: string): Promise<boolean> {
		if (this.#live) return this.#live(username);
		return (await this.#store.get(username)) !== undefined;
	}

	async getCredentials(username: string): Promise<StoredCredentials | null> {
		if (this.#live) return null;
		const rec = (await this.#store.get(username)) as AccountRecord | undefined;
		return rec ? rec.scram : null;
	}

	async create(username: string, password: string): Promise<string> {
		this.#refuseAnonymous();
		const user = AccountManager.prepUsername(username);
		checkPassword(password);
		if (await this.exists(user))
			throw new AccountError("exists", `${user}@${this.host} already exists`);
		const scram = await this.#derive(password);
		const rec = { scram, created: Date.now() };
		await this.#store.set(user, rec as unknown as AccountRecord as never);
		return user;
	}

	async setPassword(username: string, password: string): Promise<void> {
		this.#refuseAnonymous();
		const user = AccountManager.prepUsername(username);
		checkPassword(password);
		const rec = (await this.#store.get(user)) as AccountRecord | undefined;
		if (!rec) throw new AccountError("not-found", `${user}@${this.host} does not exist`);
		rec.scram = await this.#derive(password);
		await this.#store.set(user, rec as never);
		// The new credential would miss anyway; forget the old tag at once.
		this.verifiedPasswords.delete(user);
	}

	/**
	 * Adds a credential for a hash the account lacks (a XEP-0480 upgrade task, upgrade.ts).
	 * `seen` is the credentials the login was checked against: when they changed meanwhile (a
	 * password change), or the hash is there by now, nothing is written and false is returned.
	 * Like `setPassword`, a read then a write: the stores have no compare-and-set.
	 */
	async addCredential(
		username: string,
		hash: ScramHash,
		cred: ScramCredential,
		seen: StoredCredentials,
	): Promise<boolean> {
		this.#refuseAnonymous();
		const rec = (await this.#store.get(username)) as AccountRecord | undefined;
		if (!rec || rec.scram[hash] !== undefined) return false;
		if (credentialFingerprint(rec.scram) !== credentialFingerprint(seen)) return false;
		rec.scram = { ...rec.scram, [hash]: cred };
		await this.#store.set(username, rec as never);
		return true;
	}

	/** Removes the account and everything stored for it on this host. */
	async delete(username: string): Promise<void> {
		const user = AccountManager.prepUsername(username);
		if (!(await this.exists(user)))
			throw new AccountError("not-found", `${user}@${this.host} does not exist`);
		await this.#storage.deleteUser(this.host, user);
		await this.#store.set(user, undefined);
		this.verifiedPasswords.delete(user);
		await this.#deleted?.(user);
	}

	#refuseAnonymous(): void {
		if (this.#live)
			throw new AccountError(
				"not-allowed",
				`${this.host} is an anonymous host: it has no accounts`,
			);
	}

	async #derive(password: string): Promise<StoredCredentials> {
		try {
			return await deriveAllCredentials(password, this.#iterations);
		} catch (err) {
			// SASLprep (RFC 4013) refuses some passwords, e.g. ones with control characters.
			throw new AccountError(
				"invalid-password",
				`the password is not allowed: ${(err as Error).message}`,
			);
		}
	}

	list(): Promise<string[]> {
		return this.#store.users();
	}

	/** The account's role (issue 15): `admin` may run every admin command, `user` none. */
	async role(username: string): Promise<AccountRole> {
		return (await this.#roles.get(AccountManager.prepUsername(username))) ?? "user";
	}

	async setRole(username: string, role: AccountRole): Promise<void> {
		const user = AccountManager.prepUsername(username);
		if (!(await this.exists(user)))
			throw new AccountError("not-found", `${user}@${this.host} does not exist`);
		await this.#roles.set(user, role === "admin" ? "admin" : undefined);
	}

	/** Whether an admin disabled the account (RFC 6120 §6.5.1 account-disabled at login). */
	async isDisabled(username: string): Promise<boolean> {
		if (this.#live) return false;
		return (await this.#disabled.get(username)) === true;
	}

	async setDisabled(username: string, disabled: boolean): Promise<void> {
		const user = AccountManager.prepUsername(username);
		if (!(await this.exists(user)))
			throw new AccountError("not-found", `${user}@${this.host} does not exist`);
		await this.#disabled.set(user, disabled ? true : undefined);
	}

	/** The usernames with the `admin` role, sorted. */
	async admins(): Promise<string[]> {
		return this.#roles.users();
	}
}

export type AccountRole = "admin" | "user";

function checkPassword(password: string): void {
	if (password.length === 0) throw new AccountError("invalid-password", "the password is empty");
	if (Buffer.byteLength(password) > 1024)
		throw new AccountError("invalid-password", "the password is longer than 1024 bytes");
}
