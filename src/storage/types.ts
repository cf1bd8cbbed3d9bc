/**
 * The storage contract. Three store kinds, as in Prosody: keyval (one value per user), map
 * (keyed values per user) and archive (append-only, time-ordered, pageable). Every backend
 * implements all three and passes the same contract tests (src/storage/contract/).
 *
 * A store is opened per (host, store name); hosts never see each other's data. `user` is the
 * account's localpart; host-wide data uses the empty string.
 *
 * Values are JSON-compatible. A promise that resolves means the write is durable (for the SQL
 * backends: committed), so a module may acknowledge it to a client.
 */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface KeyValStore<T extends Json = Json> {
	get(user: string): Promise<T | undefined>;
	/**
	 * One part of the user's value: `path` names object members, outermost first (["items",
	 * "bob@example.com"] is `value.items["bob@example.com"]`). `undefined` when the user has no
	 * value or nothing is there (a member that is missing, or a step into something that is not
	 * an object, arrays included). It reads what `get` would, but a backend can hand over one
	 * entry of a large value without reading and parsing all of it (a roster item for a probe).
	 */
	getPath(user: string, path: readonly string[]): Promise<Json | undefined>;
	/** `undefined` deletes. */
	set(user: string, value: T | undefined): Promise<void>;
	/** Every user that has a value, sorted. */
	users(): Promise<string[]>;
}

export interface MapStore<T extends Json = Json> {
	get(user: string, key: string): Promise<T | undefined>;
	/** `undefined` deletes the key. */
	set(user: string, key: string, value: T | undefined): Promise<void>;
	getAll(user: string): Promise<Map<string, T>>;
	deleteAll(user: string): Promise<void>;
}

export interface ArchiveItem<T extends Json = Json> {
	/** Unique within the store; assigned by the backend when not given. */
	id: string;
	/** Milliseconds since the epoch. */
	when: number;
	/** The conversation partner (bare JID) for MAM's `with` filter; "" when none. */
	with: string;
	value: T;
}

export interface ArchiveQuery {
	/** Only items with this `with`. */
	with?: string;
	/** Only the items with these ids (MAM's `ids` field, XEP-0313 #extended); `[]` matches none. */
	ids?: string[];
	/** Inclusive time range, milliseconds. */
	start?: number;
	end?: number;
	/** Only items after / before this id (RSM, XEP-0059). */
	after?: string;
	before?: string;
	/**
	 * Walk backwards: the page is the newest `limit` matching items (MAM's `<before/>`). Paging
	 * with `before` and no `after` implies it unless `reverse` is given as false. Items are returned in chronological order either
	 * way (see memory.ts for the full paging semantics).
	 */
	reverse?: boolean;
	limit?: number;
}

/** What `count` takes: the filters and the anchors of a query, no direction or limit. */
export type ArchiveCount = Pick<
	ArchiveQuery,
	"with" | "start" | "end" | "ids" | "after" | "before"
>;

export interface ArchivePage<T extends Json = Json> {
	items: ArchiveItem<T>[];
	/** True when the page is the last one in the direction of the walk. */
	complete: boolean;
}

export interface ArchiveStore<T extends Json = Json> {
	/**
	 * Adds an item; the promise resolves with its id once it is durable. `opts.lazy`: the caller
	 * does not wait for that (MAM's appends, whose message moves on at once), so the backend may
	 * hold the write back a little to commit it with more (SQLite: up to {@link LAZY_APPEND_MS} ms
	 * or {@link LAZY_APPEND_ROWS} rows); it is still committed in order with the other writes,
	 * before any read of the backend returns, and on close.
	 */
	append(
		user: string,
		item: { value: T; with?: string; when?: number; id?: string },
		opts?: { lazy?: boolean },
	): Promise<string>;
	query(user: string, q?: ArchiveQuery): Promise<ArchivePage<T>>;
	/**
	 * How many items match: the filters, and with `after`/`before` only those strictly after /
	 * before that item (RSM's count and `<first index>`, XEP-0059 §2.6). Unknown anchors reject
	 * with `item-not-found`, as in `query`.
	 */
	count(user: string, q?: ArchiveCount): Promise<number>;
	/** Deletes the matching items (all of the user's when q is empty); returns how many. */
	delete(
		user: string,
		q?: Pick<ArchiveQuery, "with" | "start" | "end"> & { ids?: string[] },
	): Promise<number>;
}

export interface StorageBackend {
	readonly kind: string;
	keyval<T extends Json = Json>(host: string, store: string): KeyValStore<T>;
	map<T extends Json = Json>(host: string, store: string): MapStore<T>;
	archive<T extends Json = Json>(host: string, store: string): ArchiveStore<T>;
	/** Deletes everything a user has in every store of a host (account removal). */
	deleteUser(host: string, user: string): Promise<void>;
	/**
	 * Resolves once every write issued before the call is durable, lazy archive appends
	 * included (it asks for their commit now rather than waiting for it). Never rejects: a
	 * write's failure is its own promise's. What an acknowledgement waits for (XEP-0198 §4: an
	 * `<a h/>` counts a message as handled, its archive copies with it).
	 */
	settle(): Promise<void>;
	/** Waits for pending writes, then releases files and connections. */
	close(): Promise<void>;
}

/** How long a lazy archive append may wait for its commit at most, ms (SQLite). */
export const LAZY_APPEND_MS = 200;
/** How many lazy archive appends may wait at most before they are committed (SQLite). */
export const LAZY_APPEND_ROWS = 4096;
