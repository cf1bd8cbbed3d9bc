/** Every admin command, for the surfaces (HTTP, CLI, ad-hoc) to offer. Adding one is one file. */
import type { AnyAdminCommand } from "../../core/commands.ts";
import { accountCommands } from "./account.ts";
import { announce, onlineUsersNum } from "./announce.ts";
import { inviteContact, inviteCreate, inviteList, inviteRevoke } from "./invite.ts";
import { reportCommands } from "./report.ts";
import { strangersCommands } from "./strangers.ts";

export const adminCommands: readonly AnyAdminCommand[] = [
	announce,
	onlineUsersNum,
	inviteCreate,
	inviteContact,
	inviteList,
	inviteRevoke,
	...accountCommands,
	...reportCommands,
	...strangersCommands,
];
