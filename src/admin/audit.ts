/**
 * The audit log (issue 15): one line per admin action — who, what, when, on what, the result —
 * in the server's log with `audit: true` so it can be filtered out of the rest (`jq
 * 'select(.audit)'`). No secret is ever written: the line carries the action's name and its
 * target JID, never a request body, header, password or token.
 */
import type { Logger } from "../core/log.ts";

export interface AuditEntry {
	/** The admin's bare JID, `cli` (the operator at the machine), `loopback`, or `anonymous`. */
	actor: string;
	/** The command or route: `user.add`, `lifecycle.reload`, `auth.token.issue`... */
	action: string;
	/** The account acted on, when the route names one. */
	target?: string | undefined;
	/** The HTTP status of the answer. */
	status: number;
	/** The client's address. */
	address?: string;
}

export class Audit {
	readonly #log: Logger;
	constructor(log: Logger) {
		this.#log = log.child({ audit: true });
	}

	action(entry: AuditEntry): void {
		const result = entry.status < 400 ? "ok" : "refused";
		this.#log.info(
			{
				actor: entry.actor,
				action: entry.action,
				...(entry.target === undefined ? {} : { target: entry.target }),
				result,
				status: entry.status,
				...(entry.address === undefined ? {} : { address: entry.address }),
				at: new Date().toISOString(),
			},
			"admin action",
		);
	}
}
