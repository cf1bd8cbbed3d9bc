/** The modules that ship with Parley, by name. A host's `modules` list picks from these. */
import type { ModuleDefinition } from "../core/modules/define.ts";
import disco from "./disco.ts";
import ping from "./ping.ts";
import presence from "./presence.ts";
import time from "./time.ts";
import version from "./version.ts";

export function builtinModules(): ModuleDefinition<never>[] {
	return [disco, ping, presence, time, version] as ModuleDefinition<never>[];
}
