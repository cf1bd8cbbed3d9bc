/**
 * Every admin command (issue 15 "One command registry"): one file per area; a new command is
 * added to its area's file and to this list, and the HTTP API, OpenAPI, the CLI (`parley admin
 * <words>`) and the ad-hoc module (`adhoc` nodes) all offer it. The backup commands
 * (backup.ts) are not in it: they need the process that runs the server (`BackupEnvironment`,
 * src/admin/supervised-backups.ts).
 */
import type { AnyAdminCommand } from "../../core/commands.ts";
import { accountCommands } from "./account.ts";
import { announce, onlineUsersNum } from "./announce.ts";
import { clusterStatus } from "./cluster.ts";
import { inviteContact, inviteCreate, inviteList, inviteRevoke } from "./invite.ts";
import { reportCommands } from "./report.ts";
import { sessionKick, sessionList } from "./sessions.ts";
import { strangersCommands } from "./strangers.ts";
import { userAdd, userList, userPassword, userRemove, userRole } from "./users.ts";

export const adminCommands: readonly AnyAdminCommand[] = [
	userList,
	userAdd,
	userRemove,
	userPassword,
	userRole,
	sessionList,
	sessionKick,
	announce,
	onlineUsersNum,
	inviteCreate,
	inviteContact,
	inviteList,
	inviteRevoke,
	...accountCommands,
	...reportCommands,
	...strangersCommands,
	clusterStatus,
];
