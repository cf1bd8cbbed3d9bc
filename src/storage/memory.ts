/**
 * The in-memory storage backend (tests, throwaway servers) and the pieces every backend shares:
 * {@link StorageError}, archive id generation and limit validation.
 *
 * Archive semantics, common to all backends (the contract tests check them):
 *
 * - Items are ordered chronologically by `when`, ties broken by insertion order. That order is
 *   stable: the same query always returns the same items in the same order.
 * - `with`, `start`, `end` (both inclusive) filter the items.
 * - `after: id` keeps the items strictly after that item in that order, `before: id` the items
 *   strictly before it. The anchor must be an item of the same user in the same store (it does
 *   not have to match the filters); otherwise the query rejects with a {@link StorageError} of
 *   code `"item-not-found"` (MAM answers `<item-not-found/>`).
 * - The walk goes backwards, that is the page is the **last** `limit` matching items, when
 *   `reverse` is true, or when `reverse` is not given and `before` is given without `after`
 *   (MAM's `<before/>`, including the empty `<before/>` that asks for the newest page, is
 *   `reverse: true` plus the optional id). `reverse: false` walks forwards whatever the anchors
 *   (MAM's `before-id` field alone: the oldest items before it). Otherwise the page is the
 *   first `limit` matching items.
 * - `items` is **always in chronological order**, whatever the direction of the walk (MAM's
 *   `<flip-page/>` reverses it in the module).
 * - `complete` is true when no matching item lies beyond the page in the walking direction (after
 *   the last item going forwards, before the first going backwards). Without `limit` the page
 *   holds every matching item and `complete` is true. `limit: 0` returns no items; `complete`
 *   then says whether there are none to return.
 * - Given ids are kept and must be unique within the (host, store); a duplicate rejects with a
 *   {@link StorageError} of code `"conflict"`. Generated ids are 16 URL-safe characters
 *   (12 random bytes, base64url).
 * - `delete` with `ids` only deletes those of the listed ids that also match `with`/`start`/
 *   `end`; `ids: []` deletes nothing.
 *
 * Other shared behaviour: `users()` is sorted by UTF-16 code units (JavaScript's default sort),
 * `getAll()` returns its map with keys in that order, and every call after `close()` rejects
 * with a {@link StorageError} of code `"closed"`.
 */
import { randomBytes } from "node:crypto";
import type {
	ArchiveItem,
	ArchivePage,
	ArchiveQuery,
	ArchiveStore,
	Json,
	KeyValStore,
	MapStore,
	StorageBackend,
} from "./types.ts";

export type StorageErrorCode = "item-not-found" | "conflict" | "closed";

/** An error with a machine-readable `code` that modules map to XMPP errors. */
export class StorageError extends Error {
	readonly code: StorageErrorCode;
	constructor(code: StorageErrorCode, message: string) {
		super(message);
		this.name = "StorageError";
		this.code = code;
	}
}

/**
 * A fresh archive id: 12 random bytes, base64url (16 characters, URL-safe). The first 6 are
 * drawn once per second and shared by the ids of that second, the last 6 are each id's own: 48
 * random bits per id within a second, so ids stay unique and unpredictable (XEP-0359 §3 rule 2)
 * and tell nothing about the archive, neither its size nor the time (XEP-0359 §5, Security Considerations); two ids only
 * show they were issued in the same second, which their messages' timestamps say anyway. The
 * shared prefix makes the ids of one burst neighbours in a unique index, so inserting them
 * touches a few index pages instead of one random page each: a fully random id cost an SQLite
 * archive insert about a fifth of its CPU (docs/performance.md "Message Archive Management").
 */
export function newArchiveId(): string {
	const now = Date.now();
	if (now - idPrefixAt >= 1000 || now < idPrefixAt) {
		idPrefix = randomBytes(6).toString("base64url");
		idPrefixAt = now;
	}
	// Each id's own 6 bytes are 8 characters of a pool drawn as base64url text (6 bytes are
	// exactly 8 characters), so the id is the 12 bytes' base64url as before, made without a
	// Buffer per id: 70-76 ns an id instead of 250-330 with a Buffer, two copies and a
	// base64url encoding each (two ids per message with MAM on; docs/performance.md). One
	// randomBytes call per id, before the pool, was 8% of the server's CPU in the chat bench.
	if (idPoolAt + 8 > idPool.length) {
		idPool = randomBytes(6 * 512).toString("base64url");
		idPoolAt = 0;
	}
	const own = idPool.slice(idPoolAt, idPoolAt + 8);
	idPoolAt += 8;
	return idPrefix + own;
}
let idPrefix = "";
let idPrefixAt = Number.NEGATIVE_INFINITY;
let idPool = "";
let idPoolAt = 0;

/** Throws unless `limit` is undefined or a non-negative integer. */
export function checkLimit(limit: number | undefined): void {
	if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) {
		throw new RangeError(`archive query limit must be a non-negative integer, got ${limit}`);
	}
}

/**
 * The part of `value` at `path` (object members only, as KeyValStore.getPath describes), not
 * copied; undefined when a step is missing or goes into something that is not an object.
 */
export function valueAt(value: Json | undefined, path: readonly string[]): Json | undefined {
	let v = value;
	for (const key of path) {
		if (v === null || typeof v !== "object" || Array.isArray(v) || !Object.hasOwn(v, key)) {
			return undefined;
		}
		v = v[key];
	}
	return v;
}

/** Whether a query walks backwards (takes its page from the newest end). */
export function walksBackwards(q: ArchiveQuery): boolean {
	if (q.reverse !== undefined) return q.reverse;
	return q.before !== undefined && q.after === undefined;
}

type Filter = Pick<ArchiveQuery, "with" | "start" | "end" | "ids">;

interface StoredItem {
	seq: number;
	id: string;
	when: number;
	with: string;
	value: Json;
}

interface ArchiveData {
	/** Per user, sorted by (when, seq). */
	byUser: Map<string, StoredItem[]>;
	/** id -> owner, for uniqueness within the store and anchor lookups. */
	ids: Map<string, { user: string; item: StoredItem }>;
}

interface HostData {
	keyval: Map<string, Map<string, Json>>;
	map: Map<string, Map<string, Map<string, Json>>>;
	archive: Map<string, ArchiveData>;
}

function before(a: StoredItem, b: StoredItem): boolean {
	return a.when < b.when || (a.when === b.when && a.seq < b.seq);
}

function matches(item: StoredItem, q: Filter): boolean {
	return (
		(q.with === undefined || item.with === q.with) &&
		(q.ids === undefined || q.ids.includes(item.id)) &&
		(q.start === undefined || item.when >= q.start) &&
		(q.end === undefined || item.when <= q.end)
	);
}

function sortedKeys<V>(m: Map<string, V>): string[] {
	return [...m.keys()].sort();
}

/**
 * Everything in Maps. Values are deep-copied (structuredClone) on the way in and out, so
 * callers never share objects with the store. Writes are "durable" as soon as they resolve,
 * for the lifetime of the object.
 */
export class MemoryBackend implements StorageBackend {
	readonly kind = "memory";
	#hosts = new Map<string, HostData>();
	#seq = 0;
	#closed = false;

	#host(host: string): HostData {
		let h = this.#hosts.get(host);
		if (!h) {
			h = { keyval: new Map(), map: new Map(), archive: new Map() };
			this.#hosts.set(host, h);
		}
		return h;
	}

	#open(): void {
		if (this.#closed) throw new StorageError("closed", "storage backend is closed");
	}

	keyval<T extends Json = Json>(host: string, store: string): KeyValStore<T> {
		const data = (): Map<string, Json> => {
			this.#open();
			const h = this.#host(host);
			let s = h.keyval.get(store);
			if (!s) {
				s = new Map();
				h.keyval.set(store, s);
			}
			return s;
		};
		return {
			get: async (user) => {
				const v = data().get(user);
				return v === undefined ? undefined : (structuredClone(v) as T);
			},
			getPath: async (user, path) => {
				const v = valueAt(data().get(user), path);
				return v === undefined ? undefined : structuredClone(v);
			},
			set: async (user, value) => {
				const s = data();
				if (value === undefined) s.delete(user);
				else s.set(user, structuredClone(value));
			},
			users: async () => sortedKeys(data()),
		};
	}

	map<T extends Json = Json>(host: string, store: string): MapStore<T> {
		const data = (): Map<string, Map<string, Json>> => {
			this.#open();
			const h = this.#host(host);
			let s = h.map.get(store);
			if (!s) {
				s = new Map();
				h.map.set(store, s);
			}
			return s;
		};
		return {
			get: async (user, key) => {
				const v = data().get(user)?.get(key);
				return v === undefined ? undefined : (structuredClone(v) as T);
			},
			set: async (user, key, value) => {
				const s = data();
				let u = s.get(user);
				if (value === undefined) {
					u?.delete(key);
					if (u?.size === 0) s.delete(user);
					return;
				}
				if (!u) {
					u = new Map();
					s.set(user, u);
				}
				u.set(key, structuredClone(value));
			},
			getAll: async (user) => {
				const u = data().get(user);
				const out = new Map<string, T>();
				if (!u) return out;
				for (const k of sortedKeys(u)) out.set(k, structuredClone(u.get(k)) as T);
				return out;
			},
			deleteAll: async (user) => {
				data().delete(user);
			},
		};
	}

	archive<T extends Json = Json>(host: string, store: string): ArchiveStore<T> {
		const data = (): ArchiveData => {
			this.#open();
			const h = this.#host(host);
			let s = h.archive.get(store);
			if (!s) {
				s = { byUser: new Map(), ids: new Map() };
				h.archive.set(store, s);
			}
			return s;
		};
		const anchor = (s: ArchiveData, user: string, id: string): StoredItem => {
			const a = s.ids.get(id);
			if (!a || a.user !== user) throw new StorageError("item-not-found", `no archive item ${id}`);
			return a.item;
		};
		const copy = (i: StoredItem): ArchiveItem<T> => ({
			id: i.id,
			when: i.when,
			with: i.with,
			value: structuredClone(i.value) as T,
		});
		return {
			append: async (user, item) => {
				const s = data();
				const id = item.id ?? newArchiveId();
				if (s.ids.has(id)) throw new StorageError("conflict", `archive item ${id} already exists`);
				const stored: StoredItem = {
					seq: ++this.#seq,
					id,
					when: item.when ?? Date.now(),
					with: item.with ?? "",
					value: structuredClone(item.value),
				};
				let list = s.byUser.get(user);
				if (!list) {
					list = [];
					s.byUser.set(user, list);
				}
				// Upper bound on `when`: usually the end, since items mostly arrive in time order.
				let lo = 0;
				let hi = list.length;
				while (lo < hi) {
					const mid = (lo + hi) >>> 1;
					if ((list[mid] as StoredItem).when <= stored.when) lo = mid + 1;
					else hi = mid;
				}
				list.splice(lo, 0, stored);
				s.ids.set(id, { user, item: stored });
				return id;
			},
			query: async (user, q = {}) => {
				checkLimit(q.limit);
				const s = data();
				const after = q.after === undefined ? undefined : anchor(s, user, q.after);
				const bef = q.before === undefined ? undefined : anchor(s, user, q.before);
				const all = (s.byUser.get(user) ?? []).filter(
					(i) =>
						matches(i, q) &&
						(after === undefined || before(after, i)) &&
						(bef === undefined || before(i, bef)),
				);
				if (q.limit === undefined) return { items: all.map(copy), complete: true };
				const page = walksBackwards(q)
					? all.slice(Math.max(0, all.length - q.limit))
					: all.slice(0, q.limit);
				const result: ArchivePage<T> = {
					items: page.map(copy),
					complete: all.length <= q.limit,
				};
				return result;
			},
			count: async (user, q = {}) => {
				const s = data();
				const after = q.after === undefined ? undefined : anchor(s, user, q.after);
				const bef = q.before === undefined ? undefined : anchor(s, user, q.before);
				let n = 0;
				for (const i of s.byUser.get(user) ?? []) {
					if (!matches(i, q)) continue;
					if (after !== undefined && !before(after, i)) continue;
					if (bef !== undefined && !before(i, bef)) continue;
					n++;
				}
				return n;
			},
			delete: async (user, q = {}) => {
				const s = data();
				const list = s.byUser.get(user);
				if (!list) return 0;
				const ids = q.ids === undefined ? undefined : new Set(q.ids);
				const keep: StoredItem[] = [];
				for (const i of list) {
					if (matches(i, q) && (ids === undefined || ids.has(i.id))) s.ids.delete(i.id);
					else keep.push(i);
				}
				if (keep.length === 0) s.byUser.delete(user);
				else s.byUser.set(user, keep);
				return list.length - keep.length;
			},
		};
	}

	async deleteUser(host: string, user: string): Promise<void> {
		this.#open();
		const h = this.#hosts.get(host);
		if (!h) return;
		for (const s of h.keyval.values()) s.delete(user);
		for (const s of h.map.values()) s.delete(user);
		for (const s of h.archive.values()) {
			for (const i of s.byUser.get(user) ?? []) s.ids.delete(i.id);
			s.byUser.delete(user);
		}
	}

	/** Every write is done when its call returns. */
	settle(): Promise<void> {
		return Promise.resolve();
	}

	async close(): Promise<void> {
		this.#closed = true;
		this.#hosts.clear();
	}
}
