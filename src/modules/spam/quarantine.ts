/**
 * Quarantine for new accounts (issue 19; Prosody's "new accounts" roles and mod_muc_auto_role do
 * something alike): an account registered in-band (XEP-0077, `account/created`) gets a record in
 * the host's `quarantine` store. Until `quarantine_seconds` have passed or an admin approved it
 * (`account.approve`), it cannot send messages or invitations to JIDs that are not in its roster
 * nor create rooms on its host's MUC services.
 */
export const QUARANTINE_STORE = "quarantine";

/** `spam/quarantine`: is `user` quarantined; with `release`, let it out first. */
export interface QuarantineQuery {
	user: string;
	release?: boolean;
	quarantined?: boolean;
}

export interface QuarantineRecord {
	[key: string]: number;
	/** Milliseconds since the epoch: the end of the quarantine. */
	until: number;
}
