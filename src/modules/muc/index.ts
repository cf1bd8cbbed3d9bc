/**
 * Multi-User Chat (XEP-0045) with XEP-0410 self-ping, as the module of a component:
 *
 *     [components."conference.example.org"]
 *     type = "muc"
 *
 * The component is a Host of kind "component" (src/core/host.ts): the router delivers
 * stanzas for room@conference.example.org/nick to its bus like to any host, and this module
 * claims them all. Its options are the keys of the component's table, validated with the
 * rest of the configuration (src/core/config/schema.ts). XEP-0249 direct invitations are
 * messages between users and need nothing here.
 */

import type {
	Host,
	HostAddedEvent,
	MucAdmitEvent,
	OwnedUnits,
	Session,
} from "../../core/contracts.ts";
import { HANDLED } from "../../core/events.ts";
import { defineModule, type ModuleApi } from "../../core/modules/define.ts";
import { ModuleError } from "../../core/modules/manager.ts";
import type { StanzaEvent } from "../../core/router.ts";
import { StanzaError } from "../../xmpp/errors.ts";
import { NS_PING } from "../../xmpp/ns.ts";
import { type ArchivedMessage, parseDuration } from "../mam/protocol.ts";
import { NS_MUC } from "./form.ts";
import { NS_HATS } from "./hats.ts";
import { MODERATION_FEATURES } from "./moderation.ts";
import { KEY_STORE, NS_OCCUPANT_ID } from "./occupant-id.ts";
import { MucService, ROOM_STORE, TOMBSTONE_STORE } from "./service.ts";

/** The store of the rooms' XEP-0313 archives (one archive per room localpart). */
export const MAM_STORE = "mam";

export default defineModule({
	name: "muc",
	description: 'XEP-0045 Multi-User Chat service (a component: [components."x"] type = "muc")',
	async load(api: ModuleApi) {
		const host = api.host;
		const cfg = host.component;
		if (host.kind !== "component" || !cfg || cfg.type !== "muc")
			throw new ModuleError(
				`muc runs on a component domain: [components."conference.${host.name}"] type = "muc"`,
			);
		const service = new MucService(
			host,
			cfg,
			api.keyval(ROOM_STORE),
			api.archive<ArchivedMessage>(MAM_STORE),
			api.keyval(KEY_STORE),
			api.keyval(TOMBSTONE_STORE),
		);
		await service.load();
		api.onUnload(() => service.unload());
		if (host.server.config.cluster.enabled) {
			// Issue 16: each room is owned by one node of the cluster at a time; the router passes a
			// room's stanzas to its owner (src/cluster/ownership.ts), the service's own JID is
			// answered by any node.
			const placement: OwnedUnits = {
				unitOf: (to) => to.local || null,
				holds: (local) => service.holds(local),
				lost: (local) => service.lost(local),
				leaving: () => service.leaving(),
				refresh: () => service.refresh(),
			};
			host.placement = placement;
			api.onUnload(() => {
				if (host.placement === placement) delete host.placement;
			});
		}

		// XEP-0313 retention: room messages past `archive_expire_after` are deleted.
		let expire: number | null;
		try {
			expire = parseDuration(cfg.archive_expire_after);
		} catch (err) {
			throw new ModuleError(`archive_expire_after: ${(err as Error).message}`);
		}
		if (expire !== null) {
			const ms = expire;
			let running = false;
			api.every(Math.max(1000, Math.min(3_600_000, ms / 2)), () => {
				if (running) return;
				running = true;
				service
					.expireArchives(Date.now() - ms)
					.catch((err: unknown) => api.log.error({ err }, "room archive expiry failed"))
					.finally(() => {
						running = false;
					});
			});
		}

		// XEP-0045 §6.1, §6.2: a conference service.
		api.addIdentity({ category: "conference", type: "text", name: cfg.name });
		api.addFeature(NS_MUC);
		api.addFeature(NS_PING);
		// XEP-0421 §3: the service gives occupant ids in its rooms.
		api.addFeature(NS_OCCUPANT_ID);
		// XEP-0425 §3, XEP-0424 §3 (rooms that archive say so too).
		for (const f of MODERATION_FEATURES) api.addFeature(f);
		// XEP-0317 §2: rooms give hats.
		api.addFeature(NS_HATS);

		/**
		 * Spam defence (issue 19): the parent host's policies (block lists) may refuse a join, a
		 * groupchat message or a private message (`muc/admit`, src/core/contracts.ts).
		 */
		async function admit(e: StanzaEvent, kind: MucAdmitEvent["kind"]): Promise<void> {
			if (!e.to.local) return;
			const room = service.rooms.get(e.to.local);
			const affiliation = room?.affiliationOf(e.from.bareString) ?? "none";
			// XEP-0045 §9.1 bans bare JIDs; a domain on the outcast list bans everyone there who
			// has no affiliation of their own (issue 19, as ejabberd does).
			if (room && affiliation === "none" && room.affiliationOf(e.from.domain) === "outcast")
				throw new StanzaError("forbidden", "your server is banned from this room", {
					type: "auth",
				});
			const parent = service.parentHost ? host.server.hosts.get(service.parentHost) : undefined;
			if (!parent?.events.has("muc/admit")) return;
			const ev: MucAdmitEvent = {
				room: e.to.bare,
				from: e.from,
				kind,
				affiliation,
				creates: kind === "join" && !room,
			};
			if (await parent.events.fire("muc/admit", ev)) {
				const r = ev.refusal ?? {
					condition: "forbidden",
					type: "auth",
					text: "refused by the service's spam policy",
				};
				throw new StanzaError(r.condition, r.text, { type: r.type });
			}
		}

		// --- presence ---
		api.hook("presence/full", async (e: StanzaEvent) => {
			await service.ensure(e.to.local);
			// A join: available presence from someone not in the room yet (a status change is not).
			if (
				e.to.local &&
				e.stanza.attrs.type === undefined &&
				!service.rooms.get(e.to.local)?.byReal.has(e.from.toString())
			)
				await admit(e, "join");
			if (e.to.local) await service.presenceToOccupant(e);
			return HANDLED;
		});
		api.hook("presence/bare", ({ stanza }: StanzaEvent) => {
			// §7.2 (no nickname): entering needs room@service/nick.
			if (stanza.attrs.type === undefined)
				throw new StanzaError("jid-malformed", "enter a room as room@service/nickname");
			return HANDLED;
		});
		api.hook("presence/host", () => HANDLED);

		// --- messages ---
		api.hook("message/bare", async (e: StanzaEvent) => {
			await service.ensure(e.to.local);
			if (e.stanza.attrs.type === "groupchat") await admit(e, "groupchat");
			await service.messageToRoom(e);
			return HANDLED;
		});
		api.hook("message/full", async (e: StanzaEvent) => {
			await service.ensure(e.to.local);
			if (e.to.local && e.stanza.attrs.type !== "error") await admit(e, "private");
			if (e.to.local) service.messageToOccupant(e);
			return HANDLED;
		});
		api.hook("message/host", () => HANDLED);

		// --- IQs (every payload: the router's iq-<type>/<dest>/<payload> events are not hooked) ---
		api.hook("iq/host", async (e: StanzaEvent) =>
			(await service.iqToService(e)) ? HANDLED : undefined,
		);
		api.hook("iq/bare", async (e: StanzaEvent) => {
			await service.ensure(e.to.local);
			await service.iqToRoom(e);
			return HANDLED;
		});
		api.hook("iq/full", async (e: StanzaEvent) => {
			if (!e.to.local) return undefined;
			await service.ensure(e.to.local);
			service.iqToOccupant(e);
			return HANDLED;
		});

		// §7.14 and no ghosts: a client whose stream ends leaves its rooms, whether or not it
		// said so. Sessions live on the user hosts, so the hook goes on each of their buses; in a
		// cluster, a session of another node ends here as `session/remote-closed`.
		const closed = ({ session }: { session: Session }) => service.sessionClosed(session);
		const follow = (h: Host) => {
			for (const event of ["session/closed", "session/remote-closed"])
				api.onUnload(h.events.on(event, closed));
		};
		for (const h of host.server.hosts.values()) follow(h);
		// A host a reload adds (`Server.reload`): its sessions leave rooms the same way.
		api.hook("host/added", ({ host: added }: HostAddedEvent) => {
			follow(added);
			return undefined;
		});
	},
});
