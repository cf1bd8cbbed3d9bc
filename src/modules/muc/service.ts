/**
 * The XEP-0045 service of one component domain: its rooms, who may create them, their
 * persistence, and the routing of stanzas to rooms and occupants. One instance per loaded
 * module (so per component and per server): nothing is kept at module level.
 */
import { randomUUID } from "node:crypto";
import type { MucComponentConfig } from "../../core/config/schema.ts";
import {
	type ClusterCounterApi,
	HIBERNATING,
	type Host,
	type Session,
} from "../../core/contracts.ts";
import type { DeliveredEvent, StanzaEvent } from "../../core/router.ts";
import { newArchiveId } from "../../storage/memory.ts";
import type { ArchiveStore, Json, KeyValStore } from "../../storage/types.ts";
import { Element, x } from "../../xml/element.ts";
import { PreparedStanza } from "../../xml/prepared.ts";
import { StanzaError } from "../../xmpp/errors.ts";
import type { JID } from "../../xmpp/jid.ts";
import { NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING } from "../../xmpp/ns.ts";
import { resultFor } from "../../xmpp/stanza.ts";
import { hostDiscoInfo } from "../disco.ts";
import {
	type ArchivedMessage,
	archivedForm,
	archivedStanza,
	metadata,
	NS_MAM,
	parseDuration,
	parseQuery,
	queryForm,
	resultMessage,
	runQuery,
	stanzaId,
	stripStanzaIds,
} from "../mam/protocol.ts";
import {
	type FormLimits,
	logsUrl,
	NS_DATA,
	NS_MUC,
	NS_MUC_ADMIN,
	NS_MUC_OWNER,
	NS_SELF_PING,
	NS_VCARD,
	type RoomConfig,
	reasonOf,
	roomFeatures,
	roomInfoForm,
} from "./form.ts";
import { commandItems, completed, NS_COMMANDS, NS_HATS, parseHatCommand } from "./hats.ts";
import {
	MODERATION_FEATURES,
	type ModerationRequest,
	type Moderator,
	moderationAnnouncement,
	parseModeration,
	retractionTarget,
	tombstone,
} from "./moderation.ts";
import type { Occupant, OccupantSession } from "./occupant.ts";
import { loadKey, NS_OCCUPANT_ID, occupantId, occupantIdOf } from "./occupant-id.ts";
import { statusMessage } from "./presence.ts";
import {
	NS_REGISTER,
	parseRegistration,
	ROOMUSER_NODE,
	registrationQuery,
	roomUserItem,
} from "./register.ts";
import { Room, type RoomHost, type StoredRoom } from "./room.ts";

export const ROOM_STORE = "muc_rooms";
/** Destroyed rooms' names, held for a while (`room_tombstone_time`). */
export const TOMBSTONE_STORE = "muc_tombstones";

interface Tombstone {
	/** Until when (ms since the epoch) the name is held. */
	until: number;
	/** The owners' bare JIDs when it was destroyed: they may create it again. */
	owners: string[];
	reason?: string;
	alternate?: string;
}

/**
 * The cluster directory's mark that a node wrote its entries and storage's rooms there:
 * `@<node>` (no room's name holds an @, RFC 7622 §3.3.1).
 */
const SEEDED = "@";

/** Prefix of the ids of IQs the room passes between occupants. */
const FORWARDED = "muc.";

export class MucService implements RoomHost {
	readonly host: Host;
	readonly cfg: MucComponentConfig;
	readonly rooms = new Map<string, Room>();
	readonly limits: FormLimits;
	readonly voiceRequestInterval: number;
	/** The host whose users count as "local" for room_creation = "local". */
	readonly parentHost: string | undefined;
	readonly #store: KeyValStore<Json>;
	/** XEP-0313: one archive per room, keyed by the room's localpart. */
	readonly #archive: ArchiveStore<ArchivedMessage>;
	readonly #admins: Set<string>;
	/** real full JID -> the rooms it is in, so that a closed session leaves them all. */
	readonly #index = new Map<string, Set<Room>>();
	/** creator bare JID -> rooms it created that still exist (max_rooms_per_user). */
	readonly #created = new Map<string, number>();
	/** Rooms that have a record in storage. */
	readonly #stored = new Set<string>();
	/** Per room, the last storage write, so writes of one room happen in order. */
	readonly #writes = new Map<string, Promise<void>>();
	/** Per room, the last retraction (XEP-0424/0425), so they replace archive items in turn. */
	readonly #retractions = new Map<string, Promise<void>>();
	readonly #log: Host["log"];
	/** The service's XEP-0421 secret (`muc_keys`), read or made by `load`. */
	readonly #keys: KeyValStore<Json>;
	/**
	 * Destroyed rooms' names, held for `room_tombstone_time` (`muc_tombstones`): only their
	 * former owners (and service admins) may create a room of that name again until then.
	 */
	readonly #tombstoneStore: KeyValStore<Json>;
	readonly #tombstones = new Map<string, Tombstone>();
	readonly #tombstoneMs: number;
	#idKey: Buffer = Buffer.alloc(0);
	/**
	 * In a cluster the rooms are spread over the nodes (issue 16): this node holds only the rooms
	 * it owns, loaded from storage when it claims them ({@link MucService.ensure}).
	 */
	readonly #clustered: boolean;
	/** Rooms whose record this node read since it claimed them (found or not). */
	readonly #checked = new Set<string>();
	/** Rooms being read from storage, so that two stanzas for one room read it once. */
	readonly #loading = new Map<string, Promise<void>>();
	/** When a stanza for a room last came (a claimed room stays claimed while in use). */
	readonly #touched = new Map<string, number>();
	/** What this node last wrote to the cluster's room directory, per room. */
	readonly #listed = new Map<string, string | null>();
	/**
	 * In a cluster, `max_rooms` and `max_rooms_per_user` count in Redis (src/cluster/counters.ts):
	 * a room this node holds, its creator, and whether it counts as stored (a persistent room,
	 * field `=<room>`, kept when a node dies) or as this node's (a temporary room, gone with the node).
	 */
	readonly #counted = new Map<string, { creator: string; local: string; shared: boolean }>();

	constructor(
		host: Host,
		cfg: MucComponentConfig,
		store: KeyValStore<Json>,
		archive: ArchiveStore<ArchivedMessage>,
		keys: KeyValStore<Json>,
		tombstones: KeyValStore<Json>,
	) {
		this.host = host;
		this.cfg = cfg;
		this.#store = store;
		this.#keys = keys;
		this.#tombstoneStore = tombstones;
		this.#tombstoneMs = parseDuration(cfg.room_tombstone_time) ?? 0;
		this.#archive = archive;
		this.#log = host.log;
		this.#admins = new Set(cfg.admins.map((a) => host.server.jids.parse(a).bare.toString()));
		this.voiceRequestInterval = cfg.voice_request_interval * 1000;
		this.limits = {
			maxOccupants: cfg.max_occupants,
			maxHistory: cfg.max_history,
			maxText: cfg.max_subject_length,
		};
		const derived = host.name.slice(host.name.indexOf(".") + 1);
		this.parentHost = cfg.parent_host ?? (host.server.hosts.has(derived) ? derived : undefined);
		this.#clustered = host.server.config.cluster.enabled;
	}

	// --- RoomHost ---

	deliver(to: OccupantSession, stanza: Element): void {
		const session = to.session;
		if (!session) {
			this.route(stanza);
			return;
		}
		session.send(stanza);
		// Written past the router, so tell the user's host as the router would
		// (`message/delivered`) when the session waits to be resumed: push (XEP-0357) wakes
		// the phone for a mention or a private message.
		if (stanza.name === "message" && session.data.get(HIBERNATING) === true)
			this.#delivered(session, stanza);
	}

	#delivered(session: Session, stanza: Element): void {
		const from = stanza.attrs.from;
		if (!from || !session.jid) return;
		const host = session.host;
		host.events
			.fire<DeliveredEvent>("message/delivered", {
				stanza,
				origin: null,
				host,
				from: this.host.server.jids.parse(from),
				to: session.jid,
				sessions: [session],
			})
			.catch((err: unknown) => this.#log.warn({ err }, "message/delivered handler failed"));
	}

	route(stanza: Element): void {
		this.host.server.router.route(stanza).catch((err: unknown) => {
			this.#log.error({ err }, "MUC stanza could not be routed");
		});
	}

	parseJid(s: string): JID {
		return this.host.server.jids.parse(s);
	}

	isServiceAdmin(bare: string): boolean {
		return this.#admins.has(bare);
	}

	sessionIndex(room: Room, realJid: string, joined: boolean): void {
		let rooms = this.#index.get(realJid);
		if (joined) {
			if (!rooms) {
				rooms = new Set();
				this.#index.set(realJid, rooms);
			}
			rooms.add(room);
		} else if (rooms) {
			rooms.delete(room);
			if (!rooms.size) this.#index.delete(realJid);
		}
	}

	discard(room: Room): void {
		if (this.rooms.get(room.jid.local) !== room) return;
		this.rooms.delete(room.jid.local);
		if (room.lockTimer) clearTimeout(room.lockTimer);
		room.lockTimer = null;
		const n = (this.#created.get(room.creator) ?? 1) - 1;
		if (n > 0) this.#created.set(room.creator, n);
		else this.#created.delete(room.creator);
		this.#uncount(room.jid.local);
		for (const key of [...room.byReal.keys()]) this.sessionIndex(room, key, false);
		if (this.#stored.has(room.jid.local)) void this.#write(room.jid.local, undefined);
		void this.#list(room.jid.local, null);
		// A room that is gone takes its archive with it (a new room of that name starts afresh).
		this.#archive.delete(room.jid.local).catch((err: unknown) => {
			this.#log.error({ err, room: room.key }, "room archive not deleted");
		});
	}

	now(): number {
		return Date.now();
	}

	occupantId(room: string, bare: string): string {
		return occupantId(this.#idKey, room, bare);
	}

	// --- life cycle ---

	/** Restores the persistent rooms (XEP-0045 §4.2 persistent rooms outlive a restart). */
	async load(): Promise<void> {
		// XEP-0421 §4: ids stay the same across restarts, so the key is kept in storage.
		this.#idKey = await loadKey(this.#keys);
		for (const local of await this.#tombstoneStore.users()) {
			const t = (await this.#tombstoneStore.get(local)) as Tombstone | undefined;
			if (t && typeof t.until === "number" && Array.isArray(t.owners))
				this.#tombstones.set(local, t);
		}
		// In a cluster a room is loaded by the node that claims it (ensure).
		if (this.#clustered) return;
		for (const local of await this.#store.users()) {
			const stored = (await this.#store.get(local)) as StoredRoom | undefined;
			if (stored?.v === 1) await this.#restore(local, stored);
		}
	}

	async #restore(local: string, stored: StoredRoom): Promise<void> {
		const room = new Room(
			this.parseJid(`${local}@${this.host.name}`),
			this.#defaults(),
			this,
			stored.creator,
			stored.created,
		);
		room.restore(stored);
		await this.#historyFromArchive(room);
		this.rooms.set(local, room);
		this.#stored.add(local);
		this.#created.set(room.creator, (this.#created.get(room.creator) ?? 0) + 1);
		// Counted as stored already (by its creation, or by the seeding in `refresh`).
		if (this.#counters()) this.#counted.set(local, { creator: room.creator, local, shared: true });
	}

	// --- a cluster's share of the rooms (issue 16) ---

	/**
	 * Before a stanza for room `local` is handled on this node, which owns it (the router passed
	 * it here): the room's record and tombstone are read from storage once per claim. Another
	 * node may have changed them while it owned the room.
	 */
	async ensure(local: string): Promise<void> {
		if (!this.#clustered || !local) return;
		this.#touched.set(local, this.now());
		if (this.rooms.has(local) || this.#checked.has(local)) return;
		let loading = this.#loading.get(local);
		if (!loading) {
			loading = this.#fetch(local).finally(() => this.#loading.delete(local));
			this.#loading.set(local, loading);
		}
		await loading;
	}

	async #fetch(local: string): Promise<void> {
		const t = (await this.#tombstoneStore.get(local)) as Tombstone | undefined;
		if (t && typeof t.until === "number" && Array.isArray(t.owners)) this.#tombstones.set(local, t);
		else this.#tombstones.delete(local);
		const stored = (await this.#store.get(local)) as StoredRoom | undefined;
		if (stored?.v === 1 && !this.rooms.has(local)) await this.#restore(local, stored);
		this.#checked.add(local);
	}

	/**
	 * Whether this node still needs its lease on room `local`: the room is here, or a stanza
	 * for it came within the lease's time (a join may be on its way through the checks).
	 */
	holds(local: string): boolean {
		if (this.rooms.has(local) || this.#loading.has(local)) return true;
		const at = this.#touched.get(local);
		return (
			at !== undefined && this.now() - at < this.host.server.config.cluster.node_timeout * 1000
		);
	}

	/**
	 * This node does not own room `local` any more: it released it, or lost the lease (it was
	 * paused longer than the lease) and another node may hold the room now. What it kept goes,
	 * storage stays; its occupants here learn it by XEP-0410 self-ping (not-acceptable).
	 */
	lost(local: string): void {
		this.#touched.delete(local);
		this.#checked.delete(local);
		this.#listed.delete(local);
		const room = this.rooms.get(local);
		if (!room) return;
		this.rooms.delete(local);
		if (room.lockTimer) clearTimeout(room.lockTimer);
		room.lockTimer = null;
		const n = (this.#created.get(room.creator) ?? 1) - 1;
		if (n > 0) this.#created.set(room.creator, n);
		else this.#created.delete(room.creator);
		for (const key of [...room.byReal.keys()]) this.sessionIndex(room, key, false);
		this.#stored.delete(local);
		// A temporary room is gone with its node's hold on it; a stored one stays counted.
		const c = this.#counted.get(local);
		if (c?.shared) this.#counted.delete(local);
		else this.#uncount(local);
	}

	/** This node leaves the cluster: occupants on other nodes are told (status 332, Room.shutdown). */
	leaving(): void {
		for (const room of this.rooms.values()) room.shutdown();
	}

	/** The room's entry in the cluster's directory: public rooms (XEP-0045 §6.3), else null. */
	#entryOf(room: Room): string | null {
		if (!room.config.public || room.locked) return null;
		return JSON.stringify({ name: room.config.name || room.jid.local, p: room.config.persistent });
	}

	async #list(local: string, entry: string | null): Promise<void> {
		const owners = this.#clustered ? this.host.server.cluster?.owners : undefined;
		if (!owners || (this.#listed.get(local) ?? null) === entry) return;
		this.#listed.set(local, entry);
		await owners.publish(this.host, local, entry).catch((err: unknown) => {
			this.#listed.delete(local);
			this.#log.warn({ err, room: local }, "room directory not updated");
		});
	}

	/**
	 * Fills the cluster's room directory with this node's entries and storage's persistent
	 * public rooms when it has not yet, or Redis lost them (a restart): asked with each heartbeat
	 * and before a listing. One HEXISTS when there is nothing to do.
	 */
	async refresh(): Promise<void> {
		const cluster = this.#clustered ? this.host.server.cluster : null;
		const owners = cluster?.owners;
		if (!cluster || !owners) return;
		await this.#seedCounters();
		const mark = `${SEEDED}${cluster.node}`;
		if (await owners.has(this.host, mark)) return;
		for (const local of await this.#store.users()) {
			const stored = (await this.#store.get(local)) as StoredRoom | undefined;
			if (stored?.v === 1 && stored.config.public && stored.config.persistent)
				await owners.seed(
					this.host,
					local,
					JSON.stringify({ name: stored.config.name || local, p: true }),
				);
		}
		for (const room of this.rooms.values()) {
			const entry = this.#entryOf(room);
			this.#listed.set(room.jid.local, entry);
			if (entry !== null) await owners.publish(this.host, room.jid.local, entry);
		}
		await owners.publish(this.host, mark, "1");
	}

	/**
	 * §6.3 in a cluster: the public rooms of every node, from the cluster's directory. Rooms no
	 * node holds are listed when persistent (storage has them; the next stanza loads them);
	 * temporary rooms of a node that died are gone, and leave the directory.
	 */
	async #publicRooms(): Promise<Map<string, string>> {
		const out = new Map<string, string>();
		for (const room of this.rooms.values())
			if (room.config.public && !room.locked)
				out.set(room.jid.local, room.config.name || room.jid.local);
		const owners = this.#clustered ? this.host.server.cluster?.owners : undefined;
		if (!owners) return out;
		await this.refresh();
		for (const [local, { entry, owned }] of await owners.directory(this.host)) {
			if (local.startsWith(SEEDED) || this.rooms.has(local)) continue;
			let e: { name?: unknown; p?: unknown };
			try {
				e = JSON.parse(entry) as { name?: unknown; p?: unknown };
			} catch {
				continue;
			}
			if (owned || e.p === true) out.set(local, typeof e.name === "string" ? e.name : local);
			else await owners.publish(this.host, local, null);
		}
		return out;
	}

	/**
	 * XEP-0045 §7.2.14 from the XEP-0313 archive: a room that archives starts with its last
	 * `history_length` archived messages, so the history survives a restart.
	 */
	async #historyFromArchive(room: Room): Promise<void> {
		if (!room.config.archive || room.config.history_length === 0) return;
		const page = await this.#archive.query(room.jid.local, {
			reverse: true,
			limit: room.config.history_length,
		});
		for (const item of page.items) {
			const msg = archivedStanza(item);
			if (!msg) continue;
			msg.ns = null;
			room.restoreHistory(msg, item.when);
		}
	}

	/** Messages older than `cutoff` leave every room's archive (`archive_expire_after`). */
	async expireArchives(cutoff: number): Promise<number> {
		let n = 0;
		// In a cluster a node holds only some rooms; the stored ones are everyone's to expire.
		const locals = new Set(this.rooms.keys());
		if (this.#clustered) for (const local of await this.#store.users()) locals.add(local);
		for (const local of locals) n += await this.#archive.delete(local, { end: cutoff - 1 });
		return n;
	}

	unload(): void {
		for (const room of this.rooms.values()) if (room.lockTimer) clearTimeout(room.lockTimer);
	}

	/** A client's session ended: it leaves every room it was in (§7.14), so no ghost stays. */
	sessionClosed(session: Session): void {
		const jid = session.jid;
		if (!jid) return;
		const key = jid.toString();
		const rooms = this.#index.get(key);
		if (!rooms) return;
		for (const room of [...rooms]) {
			const o = room.byReal.get(key);
			const s = o?.sessions.get(key);
			// A newer session with the same full JID (resource conflict "replace") stays.
			if (s?.session && s.session !== session) continue;
			room.leave(key, null);
		}
	}

	#defaults(): RoomConfig {
		const d = this.cfg.room_defaults;
		return {
			name: "",
			description: "",
			persistent: d.persistent,
			public: d.public,
			members_only: d.members_only,
			moderated: d.moderated,
			password: "",
			max_occupants: Math.min(d.max_occupants, this.cfg.max_occupants),
			whois: d.whois,
			change_subject: d.change_subject,
			allow_invites: d.allow_invites,
			allow_pm: d.allow_pm,
			history_length: Math.min(d.history_length, this.cfg.max_history),
			max_history_fetch: Math.min(d.history_length, this.cfg.max_history),
			archive: d.archive,
			enforce_nicks: d.enforce_reserved_nicks,
			lang: "",
		};
	}

	/** Saves a persistent room, or removes the record of one that is not persistent any more. */
	async save(room: Room): Promise<void> {
		const local = room.jid.local;
		if (this.rooms.get(local) !== room) return;
		if (room.config.persistent && !room.locked)
			await this.#write(local, room.toStored() as unknown as Json);
		else if (this.#stored.has(local)) await this.#write(local, undefined);
		await this.#recount(local);
		await this.#list(local, this.#entryOf(room));
	}

	#write(local: string, value: Json | undefined): Promise<void> {
		if (value === undefined) this.#stored.delete(local);
		else this.#stored.add(local);
		const run = (this.#writes.get(local) ?? Promise.resolve()).then(() =>
			this.#store.set(local, value),
		);
		const tail = run.catch(() => {});
		this.#writes.set(local, tail);
		void tail.then(() => {
			if (this.#writes.get(local) === tail) this.#writes.delete(local);
		});
		return run;
	}

	#sessionOf(jid: JID, origin: Session | null): Session | null {
		if (origin?.jid?.equals(jid)) return origin;
		return (
			this.host.server.hosts.get(jid.domain)?.sessions.get(jid.local)?.get(jid.resource) ?? null
		);
	}

	// --- creation policy and limits ---

	/** §10.1.1: may `from` create a room here? Throws the error the user gets. */
	#mayCreate(from: JID): void {
		const bare = from.bare.toString();
		if (this.#admins.has(bare)) return;
		const policy = this.cfg.room_creation;
		if (policy === "admins")
			throw new StanzaError("not-allowed", "only service administrators create rooms here");
		if (policy === "local") {
			const local = this.parentHost
				? from.domain === this.parentHost
				: this.host.server.hosts.has(from.domain);
			if (!local) throw new StanzaError("not-allowed", "only local users create rooms here");
		}
		// In a cluster the whole cluster's rooms count, when the room is made (#count).
		if (this.#counters()) return;
		this.#localLimits(bare);
	}

	/** `max_rooms` and `max_rooms_per_user` over this node's rooms (one node, or Redis unreachable). */
	#localLimits(bare: string): void {
		if (this.cfg.max_rooms > 0 && this.rooms.size >= this.cfg.max_rooms)
			throw new StanzaError("resource-constraint", "this service has reached its room limit");
		const mine = this.#created.get(bare) ?? 0;
		if (this.cfg.max_rooms_per_user > 0 && mine >= this.cfg.max_rooms_per_user)
			throw new StanzaError("policy-violation", "you have created as many rooms as allowed");
	}

	// --- the room limits across a cluster (issue 16) ---

	#counters(): ClusterCounterApi | null | undefined {
		return this.#clustered ? this.host.server.cluster?.counters : null;
	}

	/** The counters of the service's rooms and of one creator's (src/cluster/counters.ts). */
	#counterNames(creator: string): { rooms: string; mine: string } {
		return { rooms: `muc:${this.host.name}:rooms`, mine: `muc:${this.host.name}:by:${creator}` };
	}

	/**
	 * A room `local` is about to be made by `from`: counted as this node's (temporary until
	 * saved as persistent) unless the cluster's `max_rooms` or the creator's
	 * `max_rooms_per_user` is reached (service admins are counted, never refused).
	 */
	async #count(
		local: string,
		from: JID,
	): Promise<{ creator: string; local: string; shared: boolean } | null> {
		const counters = this.#counters();
		if (!counters) return null;
		const bare = from.bare.toString();
		const admin = this.#admins.has(bare);
		const names = this.#counterNames(bare);
		let added = false;
		try {
			if ((await counters.tryAdd(names.rooms, 1, admin ? 0 : this.cfg.max_rooms)) !== true)
				throw new StanzaError("resource-constraint", "this service has reached its room limit");
			added = true;
			if ((await counters.tryAdd(names.mine, 1, admin ? 0 : this.cfg.max_rooms_per_user)) !== true)
				throw new StanzaError("policy-violation", "you have created as many rooms as allowed");
		} catch (err) {
			if (added) await counters.release(names.rooms, 1).catch(() => {});
			if (err instanceof StanzaError) throw err;
			// Redis does not answer: this node's rooms decide, and the room is not counted.
			this.#log.warn({ err }, "room counters unreachable; counting this node's rooms");
			if (!admin) this.#localLimits(bare);
			return null;
		}
		return { creator: bare, local, shared: false };
	}

	/** A room this node counted is gone (destroyed, or a temporary room this node let go). */
	#uncount(local: string): void {
		const c = this.#counted.get(local);
		this.#counted.delete(local);
		if (c) this.#release(c);
	}

	#release(c: { creator: string; local: string; shared: boolean }): void {
		const counters = this.#counters();
		if (!counters) return;
		const names = this.#counterNames(c.creator);
		const o = c.shared ? { unit: c.local } : {};
		Promise.all([counters.release(names.rooms, 1, o), counters.release(names.mine, 1, o)]).catch(
			(err: unknown) => this.#log.warn({ err }, "room counters not released"),
		);
	}

	/** A saved room moves between this node's part of the counters and the stored part. */
	async #recount(local: string): Promise<void> {
		const c = this.#counted.get(local);
		const counters = this.#counters();
		const stored = this.#stored.has(local);
		if (!c || !counters || c.shared === stored) return;
		c.shared = stored;
		const names = this.#counterNames(c.creator);
		try {
			for (const name of [names.rooms, names.mine]) {
				// The new part first: a room is never counted nowhere (counted twice for a moment).
				if (stored) {
					await counters.tryAdd(name, 1, 0, { unit: local });
					await counters.release(name, 1);
				} else {
					await counters.tryAdd(name, 1, 0);
					await counters.release(name, 1, { unit: local });
				}
			}
		} catch (err) {
			// The room is saved all the same; the counters are off by it until it is destroyed.
			this.#log.warn({ err, room: local }, "room counters not moved");
		}
	}

	/**
	 * The stored (persistent) rooms counted once per cluster and Redis life: by the first node
	 * to ask, at its first heartbeat (rooms stored before the counters existed, or after Redis
	 * lost them).
	 */
	async #seedCounters(): Promise<void> {
		const counters = this.#counters();
		if (!counters || !(await counters.once(`muc:${this.host.name}:seeded`))) return;
		for (const local of await this.#store.users()) {
			const stored = (await this.#store.get(local)) as StoredRoom | undefined;
			if (stored?.v !== 1) continue;
			const names = this.#counterNames(stored.creator);
			await counters.tryAdd(names.rooms, 1, 0, { unit: local });
			await counters.tryAdd(names.mine, 1, 0, { unit: local });
		}
	}

	/**
	 * A destroyed room's name is held (as Prosody 13's muc_tombstones does), so that someone
	 * else cannot take a public room's name at once and pose as it.
	 */
	async #entomb(
		local: string,
		owners: string[],
		reason: string | undefined,
		alternate: string | undefined,
	): Promise<void> {
		if (this.#tombstoneMs <= 0) return;
		const t: Tombstone = { until: this.now() + this.#tombstoneMs, owners };
		if (reason !== undefined) t.reason = reason;
		if (alternate !== undefined) t.alternate = alternate;
		this.#tombstones.set(local, t);
		await this.#tombstoneStore.set(local, t as unknown as Json);
	}

	/**
	 * Creating room `local` where a destroyed one was: its former owners and service admins
	 * may (the tombstone goes); anyone else gets `gone` (RFC 6120 §8.3.3.5), with the room's
	 * last words, until the tombstone expires.
	 */
	async #checkTombstone(local: string, from: JID): Promise<void> {
		const t = this.#tombstones.get(local);
		if (!t) return;
		const bare = from.bare.toString();
		if (t.until > this.now() && !t.owners.includes(bare) && !this.#admins.has(bare))
			throw new StanzaError(
				"gone",
				`this room was destroyed${t.reason ? `: ${t.reason}` : ""}${t.alternate ? ` (now at ${t.alternate})` : ""}`,
			);
		this.#tombstones.delete(local);
		await this.#tombstoneStore.set(local, undefined);
	}

	/** §7.2: a usable room nickname (resourceprep already done by the JID parser). */
	#checkNick(nick: string): void {
		// XEP-0045 §7.2 (and the 1.21 revision): a nickname of only spaces is malformed.
		if (nick.trim() === "") throw new StanzaError("jid-malformed", "the nickname is empty");
		if ([...nick].length > this.cfg.max_nick_length)
			throw new StanzaError(
				"not-acceptable",
				`nicknames are at most ${this.cfg.max_nick_length} characters`,
			);
	}

	#create(jid: JID, creator: JID, locked: boolean): Room {
		const bare = creator.bare.toString();
		const room = new Room(jid, this.#defaults(), this, bare, this.now());
		room.affiliations.set(bare, { affiliation: "owner" });
		// §10.1.1: created with the MUC protocol, the room is locked until configured; the
		// groupchat 1.0 protocol (no <x/>) gets an instant room.
		room.locked = locked;
		if (locked) {
			room.lockTimer = setTimeout(() => {
				if (room.locked && this.rooms.get(jid.local) === room)
					room.destroy("the room was not configured in time");
			}, this.cfg.room_lock_timeout * 1000);
			room.lockTimer.unref();
		}
		this.rooms.set(jid.local, room);
		this.#created.set(bare, (this.#created.get(bare) ?? 0) + 1);
		return room;
	}

	// --- presence (§7.2, §7.6, §7.7, §7.14) ---

	async presenceToOccupant(e: StanzaEvent): Promise<void> {
		const { stanza, from, to } = e;
		const type = stanza.attrs.type;
		let room = this.rooms.get(to.local);
		if (type === "unavailable" || type === "error") {
			// §7.14: exit. An error from an occupant's address means it cannot be reached any
			// more: it leaves too (XEP-0045 §7.2 "service SHOULD remove the occupant").
			room?.leave(from.toString(), type === "unavailable" ? stanza : null);
			return;
		}
		if (type !== undefined) return; // probes and subscriptions mean nothing to a room
		const nick = to.resource;
		this.#checkNick(nick);
		let created = false;
		if (!room) {
			this.#mayCreate(from);
			await this.#checkTombstone(to.local, from);
			room = this.rooms.get(to.local);
		}
		let counted: { creator: string; local: string; shared: boolean } | null = null;
		if (!room) {
			counted = await this.#count(to.local, from);
			room = this.rooms.get(to.local);
			// Made by another stanza meanwhile: this one joins it, and counts nothing.
			if (room && counted) this.#release(counted);
		}
		if (!room) {
			room = this.#create(to.bare, from, stanza.getChild("x", NS_MUC) !== undefined);
			if (counted) this.#counted.set(to.local, counted);
			created = true;
		}
		try {
			room.presence(stanza, from, nick, this.#sessionOf(from, e.origin), created);
		} catch (err) {
			if (created) this.discard(room);
			throw err;
		}
		if (created) await this.save(room);
	}

	// --- messages (§7.4, §7.5, §7.8, §8.1) ---

	async messageToRoom(e: StanzaEvent): Promise<void> {
		const { stanza, from, to } = e;
		const type = stanza.attrs.type ?? "normal";
		if (type === "error") return;
		const room = this.rooms.get(to.local);
		// §7.2.12 (nonexistent room): nothing to send to.
		if (!room) throw new StanzaError("item-not-found", "no such room");
		if (type === "groupchat") {
			// XEP-0359 §5: only the room sets stanza-ids by the room.
			stripStanzaIds(stanza, room.key);
			const p = room.prepareGroupchat(stanza, from);
			// XEP-0424 §4: an occupant retracts its own message (the archive says whose it is).
			const target = room.config.archive ? retractionTarget(stanza) : undefined;
			if (target !== undefined) {
				const o = room.occupantByReal(from) as Occupant;
				await this.#retract(room, target, null, o.id);
			}
			if ((p.body || target !== undefined) && room.config.archive) {
				// XEP-0313 §5.1.2 (MUC archives): archived, and durable, before anyone gets it;
				// the id goes into every occupant's copy (XEP-0359 §4, by the room).
				const id = newArchiveId();
				p.msg.append(stanzaId(room.key, id));
				await this.#archive.append(to.local, { id, value: archivedForm(p.msg), with: "" });
			}
			room.sendGroupchat(p);
			if (p.kind === "subject") await this.save(room);
			return;
		}
		// §7.13, §8.6: voice requests and their approval.
		if (room.voiceRequest(stanza, from)) return;
		if (room.invitations(stanza, from)) {
			await this.save(room);
			return;
		}
		throw new StanzaError("bad-request", "messages to a room are of type groupchat");
	}

	messageToOccupant(e: StanzaEvent): void {
		const { stanza, from, to } = e;
		const room = this.rooms.get(to.local);
		if (!room) {
			if (stanza.attrs.type !== "error") throw new StanzaError("item-not-found", "no such room");
			return;
		}
		room.privateMessage(stanza, from, to.resource);
	}

	// --- IQs ---

	/** The service itself (§6.1-§6.3). */
	async iqToService(e: StanzaEvent): Promise<boolean> {
		const { stanza } = e;
		const type = stanza.attrs.type;
		if (type !== "get" && type !== "set") return true;
		const q = stanza.elements()[0] as Element;
		const reply = (el?: Element) => this.#reply(e, el ? resultFor(stanza, el) : resultFor(stanza));
		if (type === "get" && q.ns === NS_DISCO_INFO && q.name === "query") {
			if (q.attrs.node !== undefined) throw new StanzaError("item-not-found");
			reply(hostDiscoInfo(this.host));
			return true;
		}
		if (type === "get" && q.ns === NS_DISCO_ITEMS && q.name === "query") {
			if (q.attrs.node !== undefined) throw new StanzaError("item-not-found");
			// §6.3: public rooms only; a locked room is not there yet (§10.1). In a cluster, those
			// of every node.
			const items: Element[] = [];
			for (const [local, name] of await this.#publicRooms())
				items.push(x("item", { jid: `${local}@${this.host.name}`, name }));
			reply(x("query", { xmlns: NS_DISCO_ITEMS }, items));
			return true;
		}
		if (type === "get" && q.ns === NS_PING && q.name === "ping") {
			reply();
			return true;
		}
		return false;
	}

	/** The room's bare JID: discovery (§6.4, §6.5), admin (§8-§9), owner (§10), ping. */
	async iqToRoom(e: StanzaEvent): Promise<void> {
		const { stanza, from, to } = e;
		const type = stanza.attrs.type;
		if (type !== "get" && type !== "set") return;
		const room = this.rooms.get(to.local);
		const q = stanza.elements()[0] as Element;
		// §6.4: a room that does not exist.
		if (!room) throw new StanzaError("item-not-found", "no such room");
		const reply = (el?: Element) => this.#reply(e, el ? resultFor(stanza, el) : resultFor(stanza));
		if (q.ns === NS_MAM) {
			await this.#mam(e, room, q);
			return;
		}
		const moderation = type === "set" ? parseModeration(q) : null;
		if (moderation) {
			await this.#moderate(e, room, moderation);
			return;
		}
		if (type === "get" && q.name === "query" && q.ns === NS_DISCO_INFO) {
			if (q.attrs.node === ROOMUSER_NODE) {
				// §7.12: the user's reserved nickname, if any.
				reply(roomUserItem(room.reservedNick(from.bare.toString())));
				return;
			}
			if (q.attrs.node !== undefined) throw new StanzaError("item-not-found");
			const c = room.config;
			const features = [
				NS_DISCO_INFO,
				NS_DISCO_ITEMS,
				NS_PING,
				NS_SELF_PING,
				// XEP-0421 §3: every room gives occupant ids.
				NS_OCCUPANT_ID,
				// §7.10: users register (reserve a nickname) with the room.
				NS_REGISTER,
				// XEP-0317 §2: hats, managed with XEP-0050 commands.
				NS_HATS,
				NS_COMMANDS,
				// XEP-0425 §3, XEP-0424 §3: moderation and retraction name messages by the
				// stanza-ids of the room's archive.
				...(c.archive ? MODERATION_FEATURES : []),
				...roomFeatures(c),
			];
			reply(
				x(
					"query",
					{ xmlns: NS_DISCO_INFO },
					x("identity", { category: "conference", type: "text", name: c.name || to.local }),
					features.sort().map((f) => x("feature", { var: f })),
					roomInfoForm(c, {
						occupants: room.occupants.size,
						subject: room.subject?.text ?? "",
						// §15.5.4: the owners, where real JIDs are no secret.
						contacts:
							c.whois === "anyone"
								? [...room.affiliations]
										.filter(([, e]) => e.affiliation === "owner")
										.map(([jid]) => jid)
								: [],
						avatarHash: room.avatarHash,
						logsUrl: logsUrl(this.cfg.logs_url, this.host.name, to.local, c),
					}),
				),
			);
			return;
		}
		if (type === "get" && q.name === "query" && q.ns === NS_DISCO_ITEMS) {
			if (q.attrs.node === NS_COMMANDS) {
				// XEP-0050 §2.2: the room's ad-hoc commands (XEP-0317 hats).
				reply(x("query", { xmlns: NS_DISCO_ITEMS, node: NS_COMMANDS }, commandItems(room.key)));
				return;
			}
			// §6.5: the service may keep the occupants to itself; it does.
			reply(x("query", { xmlns: NS_DISCO_ITEMS }));
			return;
		}
		if (type === "set" && q.name === "command" && q.ns === NS_COMMANDS) {
			// XEP-0317 §3.2, §3.3 through XEP-0050: one stage (the form), then the submission.
			const sessionid = q.attrs.sessionid ?? randomUUID();
			const step = parseHatCommand(q, sessionid);
			if (step === "cancel") {
				reply(
					x("command", { xmlns: NS_COMMANDS, node: q.attrs.node, sessionid, status: "canceled" }),
				);
				return;
			}
			if ("form" in step) {
				room.ownerOrAdmin(from);
				reply(step.form);
				return;
			}
			if (room.changeHat(from, step.change)) await this.save(room);
			reply(completed(step.change.node, sessionid));
			return;
		}
		if (type === "get" && q.name === "ping" && q.ns === NS_PING) {
			reply();
			return;
		}
		if (q.name === "vCard" && q.ns === NS_VCARD) {
			// XEP-0486 §3: anyone reads the room's vCard, owners set it.
			if (type === "get") {
				reply(room.vcard ?? x("vCard", { xmlns: NS_VCARD }));
				return;
			}
			room.ownerOnly(from);
			if (q.toString().length > this.cfg.max_room_vcard_size)
				throw new StanzaError("not-acceptable", "the vCard is too large");
			const changed = room.setVcard(q);
			await this.save(room);
			reply();
			// XEP-0486 §3.2: status 104, the occupants fetch the new avatar.
			if (changed) room.broadcast(new PreparedStanza(statusMessage(room.key, [104])));
			return;
		}
		if (q.name === "query" && q.ns === NS_REGISTER) {
			// §7.10: registration with the room.
			if (type === "get") {
				reply(registrationQuery(room.reservedNick(from.bare.toString())));
				return;
			}
			const req = parseRegistration(q);
			const changed =
				req === "cancel"
					? false
					: req === "remove"
						? room.unregister(from)
						: room.register(from, req.nick);
			if (changed) await this.save(room);
			reply();
			return;
		}
		if (q.name === "query" && q.ns === NS_MUC_ADMIN) {
			const items = q.getChildren("item");
			if (type === "get") {
				if (items.length !== 1) throw new StanzaError("bad-request", "one item expected");
				reply(x("query", { xmlns: NS_MUC_ADMIN }, room.adminList(from, items[0] as Element)));
				return;
			}
			if (room.adminSet(from, items)) await this.save(room);
			reply();
			return;
		}
		if (q.name === "query" && q.ns === NS_MUC_OWNER) {
			room.ownerOnly(from);
			if (type === "get") {
				// §10.2: the configuration form.
				reply(x("query", { xmlns: NS_MUC_OWNER }, room.configForm()));
				return;
			}
			const destroy = q.getChild("destroy");
			if (destroy) {
				// §10.9: destroy the room, telling the occupants (and where to go instead).
				const alt = destroy.attrs.jid;
				const reason = reasonOf(destroy);
				const owners = [...room.affiliations]
					.filter(([, a]) => a.affiliation === "owner")
					.map(([jid]) => jid);
				room.destroy(reason, alt);
				await this.#write(room.jid.local, undefined);
				await this.#entomb(room.jid.local, owners, reason, alt);
				reply();
				return;
			}
			const form = q.getChild("x", NS_DATA);
			if (!form) throw new StanzaError("bad-request", "expected a form or <destroy/>");
			if (form.attrs.type === "cancel") {
				// §10.1.3: cancelling the initial configuration destroys the new room.
				if (room.locked) room.destroy();
				reply();
				return;
			}
			// §10.1.2 (an empty form: instant room), §10.1.3, §10.2.
			const { before, after } = room.configure(form);
			await this.save(room);
			reply();
			room.announce(before, after);
			return;
		}
		// RFC 6120 §8.4: a payload the room does not serve.
		throw new StanzaError("service-unavailable");
	}

	/**
	 * An occupant's JID: XEP-0410 self-ping, and IQs passed to the occupant's real JID with a
	 * rewritten id (as Prosody does), whose answers are passed back.
	 */
	iqToOccupant(e: StanzaEvent): void {
		const { stanza, from, to } = e;
		const type = stanza.attrs.type;
		const room = this.rooms.get(to.local);
		if (type === "result" || type === "error") {
			if (room) this.#iqAnswer(room, stanza, from, to);
			return;
		}
		if (!room) throw new StanzaError("item-not-found", "no such room");
		const q = stanza.elements()[0] as Element;
		const sender = room.occupantByReal(from);
		if (type === "get" && q.name === "ping" && q.ns === NS_PING) {
			// XEP-0410 §3: the room answers a ping to one's own occupant JID: joined...
			if (sender?.nick === to.resource) {
				this.#reply(e, resultFor(stanza));
				return;
			}
		}
		// ...or not (XEP-0410 §3); and only occupants address other occupants (§7.5 for IQs).
		if (!sender) throw new StanzaError("not-acceptable", "you are not an occupant of this room");
		const target = room.occupants.get(to.resource);
		if (!target) throw new StanzaError("item-not-found", "no occupant with that nickname");
		// vCards are the account's: the bare JID answers (Prosody does the same).
		const vcard = type === "get" && q.name === "vCard" && q.ns === NS_VCARD;
		const id =
			FORWARDED +
			Buffer.from(JSON.stringify([from.toString(), stanza.attrs.id ?? ""])).toString("base64url");
		this.route(
			new Element(
				"iq",
				stanza.ns,
				{
					type: type as string,
					id,
					from: sender.jid.toString(),
					to: vcard ? target.bare : target.primary.key,
				},
				stanza.children,
			),
		);
	}

	#iqAnswer(room: Room, stanza: Element, from: JID, to: JID): void {
		const id = stanza.attrs.id ?? "";
		if (!id.startsWith(FORWARDED)) return;
		let real: string;
		let original: string;
		try {
			const v = JSON.parse(Buffer.from(id.slice(FORWARDED.length), "base64url").toString());
			if (!Array.isArray(v) || typeof v[0] !== "string" || typeof v[1] !== "string") return;
			[real, original] = v as [string, string];
		} catch {
			return;
		}
		// Only to the session that asked, and while it is still that occupant.
		if (room.byReal.get(real)?.nick !== to.resource) return;
		const fromBare = from.bare.toString();
		let answerer = room.occupantByReal(from);
		if (!answerer) for (const o of room.occupants.values()) if (o.bare === fromBare) answerer = o;
		if (!answerer) return;
		this.route(
			new Element(
				"iq",
				stanza.ns,
				{ ...stanza.attrs, id: original, from: answerer.jid.toString(), to: real },
				stanza.children,
			),
		);
	}

	/**
	 * XEP-0313 on a room (§3.3.2 MUC archives): queries, the form and metadata. Anyone who may
	 * enter may read: not outcasts, and in a members-only room only members (and above).
	 */
	async #mam(e: StanzaEvent, room: Room, q: Element): Promise<void> {
		const { stanza, from } = e;
		const type = stanza.attrs.type;
		if (!room.config.archive)
			throw new StanzaError("service-unavailable", "this room does not archive its messages");
		const affiliation = room.affiliationOf(from.bare.toString());
		if (affiliation === "outcast" || (room.config.members_only && affiliation === "none"))
			throw new StanzaError("forbidden", "only those who may enter read the archive");
		const send = (el: Element) => this.#reply(e, el);
		if (type === "get" && q.name === "query") return send(resultFor(stanza, queryForm()));
		if (type === "get" && q.name === "metadata")
			return send(resultFor(stanza, await metadata(this.#archive, room.jid.local)));
		if (type !== "set" || q.name !== "query")
			throw new StanzaError("feature-not-implemented", "rooms have no archiving preferences");
		const parsed = parseQuery(q, { defaultPage: 50, maxPage: 250 });
		const to = from.toString();
		const fin = await runQuery(this.#archive, room.jid.local, parsed, (item, msg) =>
			send(resultMessage(item, msg, { to, from: room.key, queryid: parsed.queryid })),
		);
		send(resultFor(stanza, fin));
	}

	/**
	 * XEP-0425 §4: a moderator retracts a message of the room: its archived copy becomes a
	 * tombstone (§5), then the room archives and broadcasts the announcement with the
	 * moderator's occupant JID, occupant id and reason.
	 */
	async #moderate(e: StanzaEvent, room: Room, req: ModerationRequest): Promise<void> {
		const o = room.occupantByReal(e.from);
		// XEP-0425 §4: only moderators (an occupant with that role) may.
		if (o?.role !== "moderator")
			throw new StanzaError("forbidden", "only moderators retract other occupants' messages");
		if (!room.config.archive)
			throw new StanzaError("item-not-found", "this room keeps no archive to retract from");
		const m: Moderator = { by: o.jid.toString(), occupantId: o.id, reason: req.reason };
		await this.#retract(room, req.id, m, undefined);
		const msg = moderationAnnouncement(room.key, req.id, m);
		const id = newArchiveId();
		msg.append(stanzaId(room.key, id));
		await this.#archive.append(room.jid.local, { id, value: archivedForm(msg), with: "" });
		room.broadcast(new PreparedStanza(msg));
		this.#reply(e, resultFor(e.stanza));
	}

	/**
	 * XEP-0424 §5.1 / XEP-0425 §5: replaces archived message `id` of `room` by its tombstone
	 * (in the archive and the history). `owner`: the occupant id the message must have (an
	 * occupant retracting its own message, XEP-0424 §4: no one else's).
	 */
	#retract(room: Room, id: string, m: Moderator | null, owner: string | undefined): Promise<void> {
		// One retraction at a time per room: two at once of one message would both delete and
		// append it, and the second append would collide with the first.
		const local = room.jid.local;
		const run = (this.#retractions.get(local) ?? Promise.resolve()).then(() =>
			this.#retractNow(room, id, m, owner),
		);
		const tail = run.catch(() => {});
		this.#retractions.set(local, tail);
		void tail.then(() => {
			if (this.#retractions.get(local) === tail) this.#retractions.delete(local);
		});
		return run;
	}

	async #retractNow(
		room: Room,
		id: string,
		m: Moderator | null,
		owner: string | undefined,
	): Promise<void> {
		const local = room.jid.local;
		const [item] = (await this.#archive.query(local, { ids: [id], limit: 1 })).items;
		const original = item && archivedStanza(item);
		if (!item || !original) throw new StanzaError("item-not-found", "no such message in the room");
		if (owner !== undefined && occupantIdOf(original) !== owner)
			throw new StanzaError("forbidden", "only its sender or a moderator retracts a message");
		const stone = tombstone(original, this.now(), m);
		// The archive has no update: the item goes and comes back under its id and time, so
		// paging and later queries find the tombstone where the message was.
		await this.#archive.delete(local, { ids: [id] });
		await this.#archive.append(local, {
			id,
			when: item.when,
			with: item.with,
			value: archivedForm(stone),
		});
		stone.ns = null;
		room.replaceHistory(id, stone);
	}

	#reply(e: StanzaEvent, reply: Element): void {
		if (e.origin?.jid?.equals(e.from)) e.origin.send(reply);
		else this.route(reply);
	}
}
