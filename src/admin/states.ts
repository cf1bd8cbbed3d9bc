/**
 * The admin API's states (issue 15): what the process is doing, named, each declaring which
 * groups of routes it serves and which states it may go to. The Supervisor (supervisor.ts)
 * changes state only through `TRANSITIONS`; the HTTP API (api.ts) answers a route its state
 * does not serve with 503, `Retry-After` and the state's name as the error code. The table is
 * in docs/architecture.md "Admin API".
 */

export const STATES = [
	"starting",
	"running",
	"running_misconfigured",
	"configuration_needed",
	"restarting",
	"start_failed",
	"backing_up",
	"restoring",
	"factory_resetting",
	"stopping",
	"stopped",
] as const;

export type StateName = (typeof STATES)[number];

/**
 * Groups of routes, as a state serves them:
 * - `always`: `GET /health`, `GET /status`, `GET /openapi.json`: every state;
 * - `reload`, `restart`: the lifecycle operations;
 * - `init`: `PUT /init/first-account`;
 * - `auth`: issuing and revoking tokens;
 * - `read`, `write`: the commands of the registry that read (GET) and change (the others).
 * Another part adds its routes to one of these groups (backups read under `read`).
 */
export type RouteGroup = "always" | "reload" | "restart" | "init" | "auth" | "read" | "write";

export interface StateSpec {
	/** The XMPP service accepts and serves clients in this state (`GET /health`). */
	readonly serving: boolean;
	/** A lifecycle operation runs (another one is refused with 409). */
	readonly busy: boolean;
	readonly routes: readonly RouteGroup[];
	/** Seconds a client should wait before asking again for a route the state does not serve. */
	readonly retryAfter: number;
	/** The states this one may go to. */
	readonly next: readonly StateName[];
}

const ALL: readonly RouteGroup[] = ["always", "reload", "restart", "init", "auth", "read", "write"];

export const STATE_SPECS: { readonly [S in StateName]: StateSpec } = {
	starting: {
		serving: false,
		busy: true,
		routes: ["always"],
		retryAfter: 5,
		next: ["running", "start_failed", "configuration_needed", "stopping"],
	},
	running: {
		serving: true,
		busy: false,
		routes: ALL,
		retryAfter: 0,
		next: [
			"running_misconfigured",
			"restarting",
			"backing_up",
			"restoring",
			"factory_resetting",
			"stopping",
		],
	},
	// The XMPP service runs on the last good configuration; the file on disk is invalid. A
	// restart would read that file, so it waits for a reload that validates.
	running_misconfigured: {
		serving: true,
		busy: false,
		routes: ["always", "reload", "init", "auth", "read", "write"],
		retryAfter: 30,
		next: ["running", "backing_up", "restoring", "factory_resetting", "stopping"],
	},
	// No XMPP service: there is no valid configuration to start from. A reload starts it.
	configuration_needed: {
		serving: false,
		busy: false,
		routes: ["always", "reload"],
		retryAfter: 30,
		next: ["starting", "restoring", "stopping"],
	},
	restarting: {
		serving: false,
		busy: true,
		routes: ["always"],
		retryAfter: 5,
		next: ["running", "start_failed", "configuration_needed", "stopping"],
	},
	// The XMPP service did not start; `status.error` says why. Reload or restart tries again.
	start_failed: {
		serving: false,
		busy: false,
		routes: ["always", "reload", "restart"],
		retryAfter: 30,
		next: ["starting", "restarting", "configuration_needed", "restoring", "stopping"],
	},
	// XMPP keeps serving while a backup is taken; nothing that writes runs meanwhile.
	backing_up: {
		serving: true,
		busy: true,
		routes: ["always", "auth", "read"],
		retryAfter: 10,
		next: ["running", "running_misconfigured", "start_failed", "stopping"],
	},
	restoring: {
		serving: false,
		busy: true,
		routes: ["always"],
		retryAfter: 10,
		next: ["running", "running_misconfigured", "start_failed", "configuration_needed", "stopping"],
	},
	factory_resetting: {
		serving: false,
		busy: true,
		routes: ["always"],
		retryAfter: 10,
		next: ["running", "start_failed", "configuration_needed", "stopping"],
	},
	stopping: {
		serving: false,
		busy: true,
		routes: ["always"],
		retryAfter: 5,
		next: ["stopped"],
	},
	stopped: {
		serving: false,
		busy: false,
		routes: ["always"],
		retryAfter: 60,
		next: [],
	},
};

/** Whether `state` serves routes of `group`. */
export function serves(state: StateName, group: RouteGroup): boolean {
	return STATE_SPECS[state].routes.includes(group);
}
