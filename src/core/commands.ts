/**
 * Admin operations, defined once (issue 15, "One command registry"). Each operation is an
 * `AdminCommand`: a name, typed arguments (a zod object, which validates and documents them),
 * the role it needs and a handler. The surfaces are built from the definitions, never written
 * per operation: the admin HTTP API (a route each, and the OpenAPI document), the CLI
 * (`parley <words>` against a running server) and XEP-0050 ad-hoc commands (XEP-0133 service
 * administration where the XEP names the operation).
 *
 * The core owns this contract (the types are in contracts.ts); the definitions live in src/admin/commands/ and reach the core
 * through the composition root (`ServerParts.commands`), so a module (the ad-hoc one) lists
 * them from `core.commands` without importing the admin layer.
 */
import type { z } from "zod";
import type { AdminCommand } from "./contracts.ts";

export type {
	AdminCommand,
	AnyAdminCommand,
	CommandContext,
	CommandRole,
	HttpBinding,
} from "./contracts.ts";

/** Identity helper that keeps the argument and result types of a definition. */
export function defineCommand<Args extends z.ZodObject, Result>(
	command: AdminCommand<Args, Result>,
): AdminCommand<Args, Result> {
	return command;
}

/**
 * Stable error codes every surface maps the same way: HTTP status, ad-hoc `<error/>`
 * condition, CLI exit status.
 */
export type CommandErrorCode =
	| "invalid_argument"
	| "not_found"
	| "conflict"
	| "forbidden"
	| "unavailable"
	| "internal";

/** A refusal a command means to give, with a code the surfaces map and a message for people. */
export class CommandError extends Error {
	readonly code: CommandErrorCode;
	constructor(code: CommandErrorCode, message: string) {
		super(message);
		this.name = "CommandError";
		this.code = code;
	}
}
