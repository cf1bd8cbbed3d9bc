/** Roster relations for the presence and roster access models (XEP-0060 §4.5). */
import type { Core } from "../../core/contracts.ts";
import type { JID } from "../../xmpp/jid.ts";
import { hasFrom, loadRosterItem } from "../roster.ts";
import type { Relation } from "./service.ts";

/**
 * How `requester` stands in the roster of the local account `owner` (a bare JID): subscribed
 * to the owner's presence (from/both, RFC 6121 §2.1.2.5) and in which groups. An owner that is
 * not a local account has no roster here.
 */
export async function rosterRelation(core: Core, owner: string, requester: JID): Promise<Relation> {
	if (requester.bareString === owner) return { subscribed: true, groups: [] };
	let ownerJid: JID;
	try {
		ownerJid = core.jids.parse(owner);
	} catch {
		return { subscribed: false, groups: [] };
	}
	const host = core.hosts.get(ownerJid.domain);
	if (!host || !ownerJid.local) return { subscribed: false, groups: [] };
	const item = await loadRosterItem(host, ownerJid.local, requester.bareString);
	return { subscribed: hasFrom(item?.subscription), groups: item?.groups ?? [] };
}
