/** The modules that ship with Parley, by name. A host's `modules` list picks from these. */
import type { ModuleDefinition } from "../core/modules/define.ts";
import account from "./account.ts";
import adhoc from "./adhoc/index.ts";
import anonymous from "./anonymous.ts";
import blocking from "./blocking.ts";
import caps from "./caps.ts";
import carbons from "./carbons.ts";
import contactInfo from "./contact-info.ts";
import disco from "./disco.ts";
import externalComponent from "./external-component.ts";
import externalServices from "./external-services.ts";
import last from "./last.ts";
import mam from "./mam/index.ts";
import motd from "./motd.ts";
import muc from "./muc/index.ts";
import offline from "./offline.ts";
import pep from "./pep/index.ts";
import ping from "./ping.ts";
import presence from "./presence.ts";
import privateStorage from "./private.ts";
import pubsub from "./pubsub/index.ts";
import push from "./push.ts";
import register from "./register.ts";
import roster from "./roster.ts";
import sharedRoster from "./shared-roster.ts";
import spam from "./spam/index.ts";
import time from "./time.ts";
import upload from "./upload/index.ts";
import vcard from "./vcard.ts";
import version from "./version.ts";

export function builtinModules(): ModuleDefinition<never>[] {
	return [
		disco,
		ping,
		adhoc,
		presence,
		roster,
		sharedRoster,
		time,
		version,
		vcard,
		privateStorage,
		last,
		contactInfo,
		caps,
		account,
		register,
		motd,
		externalServices,
		offline,
		carbons,
		blocking,
		spam,
		mam,
		muc,
		pubsub,
		upload,
		pep,
		push,
		externalComponent,
		anonymous,
	] as ModuleDefinition<never>[];
}
