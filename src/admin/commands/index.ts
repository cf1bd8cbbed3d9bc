/**
 * Every admin command (issue 15 "One command registry"): one file per area; a new command is
 * added to its area's file and to this list, and the HTTP API, OpenAPI, the CLI (`parley admin
 * <words>`) and the ad-hoc module (`adhoc` nodes) all offer it.
 */
import type { AnyAdminCommand } from "../../core/commands.ts";
import { sessionKick, sessionList } from "./sessions.ts";
import { userAdd, userList, userPassword, userRemove, userRole } from "./users.ts";

export const adminCommands: readonly AnyAdminCommand[] = [
	userList,
	userAdd,
	userRemove,
	userPassword,
	userRole,
	sessionList,
	sessionKick,
];
