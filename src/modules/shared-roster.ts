/**
 * Shared roster groups ("enterprise IM"): groups defined in the config or by an admin at
 * runtime, whose members see each other in their rosters, under the group's name, with
 * subscription "both" and without subscription requests (Prosody's mod_groups, ejabberd's
 * mod_shared_roster).
 *
 *   [hosts."a.example".module_options.shared_roster.groups]
 *   Staff = ["alice@a.example", "bob@b.example"]
 *   Everyone = { all_users = true }
 *
 * Nothing is written into users' rosters: the module adds its items whenever a roster is built
 * (the roster module's `roster/load` event), so presence broadcast, probes and roster gets all
 * see them. Groups are per host and only shape the rosters of that host's users: a group that
 * spans hosts is defined on each of them.
 *
 * `setSharedGroup(host, name, definition)` changes a group at runtime (for the admin API); the
 * change is stored (keyval "shared_roster"), pushed to the members' interested resources
 * (RFC 6121 §2.1.6) and their presence is exchanged or withdrawn (§4.2.2, §4.5.2).
 */
import { z } from "zod";
import type { Host } from "../core/contracts.ts";
import { HANDLED } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { Json } from "../storage/types.ts";
import { x } from "../xml/element.ts";
import { parseJID } from "../xmpp/jid.ts";
import { hasFrom, loadRoster, pushItem, type RosterItem, type RosterLoadEvent } from "./roster.ts";

export type SharedGroupDefinition = { members?: string[]; all_users?: boolean };

const groupSchema = z.union([
	z.array(z.string()),
	z.strictObject({
		members: z.array(z.string()).default([]),
		all_users: z.boolean().default(false),
	}),
]);

const options = z.strictObject({
	groups: z.record(z.string().min(1), groupSchema).default({}),
});

interface Group {
	members: Set<string>;
	allUsers: boolean;
}

function toGroup(def: z.infer<typeof groupSchema> | SharedGroupDefinition): Group {
	const list = Array.isArray(def) ? def : (def.members ?? []);
	const allUsers = Array.isArray(def) ? false : (def.all_users ?? false);
	// Members are bare JIDs; a malformed one is a config error (parseJID throws).
	return { members: new Set(list.map((m) => parseJID(m).bare.toString())), allUsers };
}

interface SetEvent {
	name: string;
	definition: SharedGroupDefinition | null;
	done: Promise<void> | null;
}

/**
 * Create, replace or (with null) delete a runtime shared group on a host. Resolves when the
 * change is stored and pushed. Returns false when the host does not run shared_roster.
 */
export async function setSharedGroup(
	host: Host,
	name: string,
	definition: SharedGroupDefinition | null,
): Promise<boolean> {
	const event: SetEvent = { name, definition, done: null };
	const handled = await host.events.fire("shared-roster/set", event);
	if (event.done) await event.done;
	return handled;
}

export default defineModule({
	name: "shared_roster",
	description: "Shared roster groups from the config or set by an admin",
	options,
	async load(api) {
		const host = api.host;
		const store = api.keyval("shared_roster");
		const configured = new Map<string, Group>();
		for (const [name, def] of Object.entries(api.options.groups))
			configured.set(name, toGroup(def));
		// Runtime definitions (the admin's) override the config's groups of the same name.
		const runtime = new Map<string, Group>();
		const saved = (await store.get("")) as Record<string, SharedGroupDefinition> | undefined;
		for (const [name, def] of Object.entries(saved ?? {})) runtime.set(name, toGroup(def));

		const groups = (): Map<string, Group> => new Map([...configured, ...runtime]);

		async function membersOf(group: Group): Promise<Set<string>> {
			if (!group.allUsers) return group.members;
			const all = new Set(group.members);
			for (const u of await host.keyval("accounts").users()) all.add(`${u}@${host.name}`);
			return all;
		}

		api.hook("roster/load", async ({ user, items }: RosterLoadEvent) => {
			const self = `${user}@${host.name}`;
			for (const [name, group] of groups()) {
				if (!group.allUsers && !group.members.has(self)) continue;
				for (const member of await membersOf(group)) {
					if (member === self) continue;
					const item: RosterItem = items.get(member) ?? { subscription: "none", groups: [] };
					if (!item.groups.includes(name)) item.groups.push(name);
					item.subscription = "both";
					delete item.ask;
					items.set(member, item);
				}
			}
		});

		/** Local users whose rosters a group touches. */
		async function localUsers(group: Group | undefined): Promise<Set<string>> {
			const out = new Set<string>();
			if (!group) return out;
			for (const m of await membersOf(group)) {
				const at = m.indexOf("@");
				if (at > 0 && m.slice(at + 1) === host.name) out.add(m.slice(0, at));
			}
			return out;
		}

		async function apply(name: string, definition: SharedGroupDefinition | null): Promise<void> {
			const next = definition ? toGroup(definition) : undefined;
			const before = groups().get(name);
			const affected = new Set([...(await localUsers(before)), ...(await localUsers(next))]);
			const snapshots = new Map<string, Map<string, RosterItem>>();
			for (const u of affected) snapshots.set(u, (await loadRoster(host, u)).items);
			if (next) runtime.set(name, next);
			else runtime.delete(name);
			const toStore: Record<string, Json> = {};
			for (const [n, g] of runtime) toStore[n] = { members: [...g.members], all_users: g.allUsers };
			await store.set("", toStore);
			for (const u of affected) {
				const old = snapshots.get(u) ?? new Map<string, RosterItem>();
				const now = (await loadRoster(host, u)).items;
				for (const jid of new Set([...old.keys(), ...now.keys()])) {
					const a = old.get(jid);
					const b = now.get(jid);
					if (JSON.stringify(a) === JSON.stringify(b)) continue;
					// RFC 6121 §2.1.6: a push for every changed item.
					await pushItem(host, u, jid, b ?? null);
					const wasFrom = hasFrom(a?.subscription);
					const isFrom = hasFrom(b?.subscription);
					if (wasFrom === isFrom) continue;
					// §4.2.2 / §4.5.2: a new subscriber gets the user's presence; a former one
					// learns that the user is gone from its view.
					await host.server.cluster?.resolve?.(host, u);
					for (const s of host.sessionsOf(u)) {
						if (!s.available || !s.jid) continue;
						const p = isFrom
							? (s.presence?.clone() ?? x("presence"))
							: x("presence", { type: "unavailable" });
						p.attrs.from = s.jid.toString();
						p.attrs.to = jid;
						await api.send(p);
					}
				}
			}
		}

		api.hook("shared-roster/set", (event: SetEvent) => {
			event.done = apply(event.name, event.definition);
			return HANDLED;
		});
	},
});
