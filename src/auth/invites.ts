/**
 * Invitations (XEP-0401 account and contact invitations, XEP-0445 pre-authenticated
 * registration): one-time or multi-use tokens with an expiry, kept in the host's storage
 * (keyval store `invites`, one entry per token), so a backup, a restart or another cluster node
 * sees the same ones.
 *
 * An invitation is for an account (`account`: register on the host, maybe with a reserved
 * username) or for a contact (`contact`: XEP-0379 roster subscription with the inviter, which
 * may also allow registering, `register`). `roster` names the local account the newcomer is
 * subscribed with both ways once registered.
 *
 * A use is claimed before the account is created and given back when creating fails
 * (`claim` / `release`), so a one-time token never creates two accounts: claims through one
 * `InviteStore` run one at a time. (Two cluster nodes claiming the same last use at the same
 * moment could both pass; the store has no compare-and-set.)
 */
import { randomBytes } from "node:crypto";
import type { KeyValStore } from "../storage/types.ts";

/** XEP-0445 §3 and XEP-0379 §3: the namespace of the `<preauth token='...'/>` element. */
export const NS_PARS = "urn:xmpp:pars:0";

export type InviteType = "account" | "contact";

export type Invite = {
	token: string;
	type: InviteType;
	/** Whether the token lets a newcomer register an account (always for `account`). */
	register: boolean;
	/** The username reserved for the newcomer, if any (XEP-0445 §2.1). */
	username?: string;
	/** The local account (username) the newcomer is subscribed with both ways, if any. */
	roster?: string;
	/** Who created it: a bare JID, or `cli`. */
	creator: string;
	/** Uses allowed; 0: unlimited until it expires. */
	max_uses: number;
	uses: number;
	/** The accounts created with it. */
	used_by: string[];
	/** Milliseconds since the epoch. */
	created: number;
	expires: number;
};

export interface NewInvite {
	type: InviteType;
	register?: boolean;
	username?: string;
	roster?: string;
	creator: string;
	max_uses?: number;
	/** Seconds until it expires. */
	ttl: number;
}

/** Why a token cannot be used now. */
export type InviteRefusal = "unknown" | "expired" | "used";

export class InviteStore {
	readonly #store: KeyValStore<Invite>;
	#queue: Promise<unknown> = Promise.resolve();

	constructor(store: KeyValStore<Invite>) {
		this.#store = store;
	}

	/** A new invitation with a fresh random token (144 bits, URL-safe). */
	async create(opts: NewInvite): Promise<Invite> {
		const now = Date.now();
		const invite: Invite = {
			token: randomBytes(18).toString("base64url"),
			type: opts.type,
			register: opts.type === "account" || opts.register === true,
			creator: opts.creator,
			max_uses: opts.max_uses ?? 1,
			uses: 0,
			used_by: [],
			created: now,
			expires: now + opts.ttl * 1000,
		};
		if (opts.username !== undefined) invite.username = opts.username;
		if (opts.roster !== undefined) invite.roster = opts.roster;
		await this.#store.set(invite.token, invite);
		return invite;
	}

	/** The invitation, whatever its state (listing, the landing page). */
	async get(token: string): Promise<Invite | undefined> {
		if (!token) return undefined;
		return this.#store.get(token);
	}

	/** Every invitation, expired and used-up ones included until they are purged. */
	async list(): Promise<Invite[]> {
		const out: Invite[] = [];
		for (const token of await this.#store.users()) {
			const invite = await this.#store.get(token);
			if (invite) out.push(invite);
		}
		return out.sort((a, b) => a.created - b.created);
	}

	async revoke(token: string): Promise<boolean> {
		if (!(await this.#store.get(token))) return false;
		await this.#store.set(token, undefined);
		return true;
	}

	/** Whether the invitation can be used now, or why not. */
	static check(invite: Invite | undefined, now = Date.now()): InviteRefusal | null {
		if (!invite) return "unknown";
		if (invite.expires <= now) return "expired";
		if (invite.max_uses > 0 && invite.uses >= invite.max_uses) return "used";
		return null;
	}

	/** Takes one use of a token valid for registration; null (and why) when it cannot. */
	claim(token: string): Promise<Invite | InviteRefusal> {
		return this.#serial(async () => {
			const invite = await this.get(token);
			const refusal = InviteStore.check(invite);
			if (refusal || !invite) return refusal ?? "unknown";
			if (!invite.register) return "unknown";
			invite.uses++;
			await this.#store.set(token, invite);
			return invite;
		});
	}

	/**
	 * XEP-0379: counts one use of a contact invitation of `inviter` (a username) by `who` (a
	 * bare JID) for a roster subscription; false when the token is not such a valid invitation.
	 */
	useForRoster(token: string, inviter: string, who: string): Promise<boolean> {
		return this.#serial(async () => {
			const invite = await this.get(token);
			if (InviteStore.check(invite) || !invite || invite.roster !== inviter) return false;
			invite.uses++;
			invite.used_by.push(who);
			await this.#store.set(token, invite);
			return true;
		});
	}

	/** Gives back a claimed use (the account could not be created). */
	release(token: string): Promise<void> {
		return this.#serial(async () => {
			const invite = await this.get(token);
			if (!invite) return;
			invite.uses = Math.max(0, invite.uses - 1);
			await this.#store.set(token, invite);
		});
	}

	/** Records the account a claimed use created. */
	recordUse(token: string, username: string): Promise<void> {
		return this.#serial(async () => {
			const invite = await this.get(token);
			if (!invite) return;
			invite.used_by.push(username);
			await this.#store.set(token, invite);
		});
	}

	/** Removes invitations expired more than `graceMs` ago. */
	async purge(graceMs = 0): Promise<number> {
		let n = 0;
		const limit = Date.now() - graceMs;
		for (const invite of await this.list()) {
			if (invite.expires <= limit) {
				await this.#store.set(invite.token, undefined);
				n++;
			}
		}
		return n;
	}

	#serial<T>(fn: () => Promise<T>): Promise<T> {
		const run = this.#queue.then(fn);
		this.#queue = run.catch(() => {});
		return run;
	}
}

/**
 * The XMPP URI of an invitation (XEP-0401 §4, XEP-0147): `xmpp:host?register;preauth=TOKEN`
 * (or `xmpp:user@host?register;...` with a reserved name) for an account, and
 * `xmpp:inviter@host?roster;preauth=TOKEN` for a contact, with `;ibr=y` when it also lets the
 * newcomer register.
 */
export function inviteUri(invite: Invite, host: string): string {
	const token = encodeURIComponent(invite.token);
	if (invite.type === "contact" && invite.roster) {
		return `xmpp:${invite.roster}@${host}?roster;preauth=${token}${invite.register ? ";ibr=y" : ""}`;
	}
	const who = invite.username ? `${invite.username}@${host}` : host;
	return `xmpp:${who}?register;preauth=${token}`;
}
