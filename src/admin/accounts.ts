/**
 * Accounts as the admin layer sees them: a bare JID resolved to its host's AccountManager, the
 * admin check, password verification for token issuance, and the first admin (issue 15:
 * `PUT /init/first-account`, or `PARLEY_ADMIN_JID` / `PARLEY_ADMIN_PASSWORD` at start).
 */
import { AccountError, AccountManager } from "../auth/accounts.ts";
import { verifyPassword } from "../auth/scram.ts";
import { CommandError } from "../core/commands.ts";
import type { Core } from "../core/contracts.ts";

export interface ResolvedAccount {
	/** The prepared bare JID. */
	jid: string;
	user: string;
	host: string;
	accounts: AccountManager;
}

/** `user@host` of one of our hosts, or a CommandError (invalid_argument / not_found). */
export function resolveAccount(core: Core, jid: string): ResolvedAccount {
	const at = jid.lastIndexOf("@");
	if (at <= 0 || jid.includes("/"))
		throw new CommandError("invalid_argument", `"${jid}" is not a bare JID user@host`);
	const host = jid.slice(at + 1).toLowerCase();
	const h = core.hosts.get(host);
	if (!h) throw new CommandError("not_found", `${host} is not a host of this server`);
	let user: string;
	try {
		user = AccountManager.prepUsername(jid.slice(0, at));
	} catch (err) {
		throw accountError(err);
	}
	return { jid: `${user}@${host}`, user, host, accounts: h.accounts };
}

/** AccountError → CommandError with the code every surface maps. */
export function accountError(err: unknown): unknown {
	if (!(err instanceof AccountError)) return err;
	switch (err.code) {
		case "exists":
			return new CommandError("conflict", err.message);
		case "not-found":
			return new CommandError("not_found", err.message);
		case "not-allowed":
			return new CommandError("forbidden", err.message);
		default:
			return new CommandError("invalid_argument", err.message);
	}
}

/** Whether the account exists and has the admin role. */
export async function isAdmin(core: Core, jid: string): Promise<boolean> {
	try {
		const a = resolveAccount(core, jid);
		return (await a.accounts.exists(a.user)) && (await a.accounts.role(a.user)) === "admin";
	} catch {
		return false;
	}
}

/** The admins of every host, as bare JIDs. */
export async function allAdmins(core: Core): Promise<string[]> {
	const out: string[] = [];
	for (const [name, host] of core.hosts)
		for (const user of await host.accounts.admins()) out.push(`${user}@${name}`);
	return out;
}

/** Whether `password` is the account's (PBKDF2 as a login pays it; unknown account: false). */
export async function checkPassword(core: Core, jid: string, password: string): Promise<boolean> {
	let a: ResolvedAccount;
	try {
		a = resolveAccount(core, jid);
	} catch {
		return false;
	}
	const creds = await a.accounts.getCredentials(a.user);
	const cred = creds?.["SHA-256"] ?? creds?.["SHA-1"];
	if (!cred) return false;
	return verifyPassword(cred, password);
}

/**
 * Creates the first admin, or refuses with `conflict` while any admin exists. `fromEnvironment`
 * (the operator's `PARLEY_ADMIN_JID` at each start): idempotent, whoever else is admin; an
 * existing account is made admin and its password left alone.
 */
export async function createFirstAdmin(
	core: Core,
	jid: string,
	password: string,
	opts: { fromEnvironment?: boolean } = {},
): Promise<string> {
	const a = resolveAccount(core, jid);
	try {
		if (opts.fromEnvironment && (await a.accounts.exists(a.user))) {
			await a.accounts.setRole(a.user, "admin");
			return a.jid;
		}
		if (!opts.fromEnvironment && (await allAdmins(core)).length > 0)
			throw new CommandError("conflict", "an admin exists already; ask one of them");
		await a.accounts.create(a.user, password);
		await a.accounts.setRole(a.user, "admin");
		return a.jid;
	} catch (err) {
		throw accountError(err);
	}
}

/**
 * The admin the environment names (`PARLEY_ADMIN_JID`, `PARLEY_ADMIN_PASSWORD`), made at each
 * start if missing: what a container's first run needs. Idempotent; the password is used only
 * to create the account, never to change an existing one, and never logged.
 */
export async function adminFromEnvironment(
	core: Core,
	env: NodeJS.ProcessEnv,
): Promise<string | null> {
	const jid = env.PARLEY_ADMIN_JID;
	const password = env.PARLEY_ADMIN_PASSWORD;
	if (!jid || !password) return null;
	const made = await createFirstAdmin(core, jid, password, { fromEnvironment: true });
	core.log.info({ jid: made }, "admin account from PARLEY_ADMIN_JID");
	return made;
}
