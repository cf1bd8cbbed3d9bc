/**
 * The embedded SQLite backend, on Node's built-in `node:sqlite` (no native addon).
 *
 * - Durability: WAL journal with `synchronous = FULL`, and a write's promise resolves only after
 *   the COMMIT that contains it (WAL fsync'd), so an acknowledged write survives kill -9 and
 *   power loss.
 * - Batching: writes are queued and the ones issued during one turn of the event loop are
 *   committed in a single transaction at `setImmediate` time, one fsync for all of them (each in
 *   its own savepoint, so a failing write only fails itself). A read first commits the queued
 *   writes, so it sees every write issued before it, awaited or not.
 * - Several processes may use the same file at once (the server and `parley user add`): WAL lets
 *   readers run beside a writer, and a busy timeout makes a writer wait for the other's lock
 *   instead of failing.
 * - `DatabaseSync` is synchronous: each call blocks the event loop while SQLite works (a few
 *   microseconds for a read, one fsync per batch of writes, about 0.5-1.5 ms on a local ext4
 *   disk; up to the busy timeout when another process holds the write lock). Acceptable for
 *   now; a worker thread can come later without changing the interface.
 * - The schema is versioned with `PRAGMA user_version`, created on open, and a file written by
 *   a newer Parley (higher version) is refused with an Error.
 *
 * Archive semantics (ordering, paging, `complete`, errors) are those documented in memory.ts and
 * checked by the contract tests.
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { checkLimit, newArchiveId, StorageError, walksBackwards } from "./memory.ts";
import type {
	ArchiveCount,
	ArchiveItem,
	ArchiveQuery,
	ArchiveStore,
	Json,
	KeyValStore,
	MapStore,
	StorageBackend,
} from "./types.ts";
import { LAZY_APPEND_MS, LAZY_APPEND_ROWS } from "./types.ts";

/** How long a write waits for another connection's lock before failing, in milliseconds. */
const BUSY_TIMEOUT_MS = 10_000;

/** The page cache of the connection, KiB (see the constructor). */
const CACHE_KIB = 32 * 1024;

/** Migrations: entry i brings a database from version i to version i + 1. Never edit one. */
export const SQLITE_MIGRATIONS: readonly string[] = [
	`
	CREATE TABLE keyval (
		host TEXT NOT NULL,
		store TEXT NOT NULL,
		user TEXT NOT NULL,
		value TEXT NOT NULL,
		PRIMARY KEY (host, store, user)
	) WITHOUT ROWID;
	CREATE TABLE map (
		host TEXT NOT NULL,
		store TEXT NOT NULL,
		user TEXT NOT NULL,
		key TEXT NOT NULL,
		value TEXT NOT NULL,
		PRIMARY KEY (host, store, user, key)
	) WITHOUT ROWID;
	CREATE TABLE archive (
		seq INTEGER PRIMARY KEY AUTOINCREMENT,
		host TEXT NOT NULL,
		store TEXT NOT NULL,
		user TEXT NOT NULL,
		id TEXT NOT NULL,
		ts INTEGER NOT NULL,
		peer TEXT NOT NULL,
		value TEXT NOT NULL
	);
	CREATE UNIQUE INDEX archive_id ON archive (host, store, id);
	CREATE INDEX archive_ts ON archive (host, store, user, ts);
	CREATE INDEX archive_peer ON archive (host, store, user, peer, ts);
	`,
	// keyval and map become rowid tables, their primary key a separate index. In a WITHOUT
	// ROWID table the whole row is the b-tree key, so finding one row compared the search key
	// with every row on the way, reading the overflow pages of each large one (a roster of 200
	// items is 3 of them): a lookup read about 9 rows' values instead of one. Now the index
	// holds only (host, store, user[, key]) and the row is fetched by its rowid.
	`
	CREATE TABLE keyval_v2 (
		host TEXT NOT NULL,
		store TEXT NOT NULL,
		user TEXT NOT NULL,
		value TEXT NOT NULL,
		PRIMARY KEY (host, store, user)
	);
	INSERT INTO keyval_v2 (host, store, user, value) SELECT host, store, user, value FROM keyval;
	DROP TABLE keyval;
	ALTER TABLE keyval_v2 RENAME TO keyval;
	CREATE TABLE map_v2 (
		host TEXT NOT NULL,
		store TEXT NOT NULL,
		user TEXT NOT NULL,
		key TEXT NOT NULL,
		value TEXT NOT NULL,
		PRIMARY KEY (host, store, user, key)
	);
	INSERT INTO map_v2 (host, store, user, key, value)
		SELECT host, store, user, key, value FROM map;
	DROP TABLE map;
	ALTER TABLE map_v2 RENAME TO map;
	`,
	// The archive keyed by integers: each (host, store) gets a `sid` and each (store, user) an
	// `oid` once, in their own small tables, and a row carries those two integers instead of
	// host, store and user as text, in the row and in each of its three index entries. `seq`
	// (the rowid) and every id, time, peer and value are kept, so ids stay what clients hold
	// (XEP-0359) and the order is unchanged. Indexes: (sid, id) unique, (oid, ts) and
	// (oid, peer, ts); each ends with the rowid, so both serve ORDER BY ts, seq.
	`
	CREATE TABLE archive_store (
		sid INTEGER PRIMARY KEY,
		host TEXT NOT NULL,
		store TEXT NOT NULL,
		UNIQUE (host, store)
	);
	CREATE TABLE archive_owner (
		oid INTEGER PRIMARY KEY,
		sid INTEGER NOT NULL,
		user TEXT NOT NULL,
		UNIQUE (sid, user)
	);
	INSERT INTO archive_store (host, store) SELECT DISTINCT host, store FROM archive;
	INSERT INTO archive_owner (sid, user)
		SELECT DISTINCT s.sid, a.user FROM archive a
		JOIN archive_store s ON s.host = a.host AND s.store = a.store;
	CREATE TABLE archive_v3 (
		seq INTEGER PRIMARY KEY,
		sid INTEGER NOT NULL,
		oid INTEGER NOT NULL,
		id TEXT NOT NULL,
		ts INTEGER NOT NULL,
		peer TEXT NOT NULL,
		value TEXT NOT NULL
	);
	INSERT INTO archive_v3 (seq, sid, oid, id, ts, peer, value)
		SELECT a.seq, s.sid, o.oid, a.id, a.ts, a.peer, a.value FROM archive a
		JOIN archive_store s ON s.host = a.host AND s.store = a.store
		JOIN archive_owner o ON o.sid = s.sid AND o.user = a.user
		ORDER BY a.seq;
	DROP TABLE archive;
	ALTER TABLE archive_v3 RENAME TO archive;
	CREATE UNIQUE INDEX archive_id ON archive (sid, id);
	CREATE INDEX archive_ts ON archive (oid, ts);
	CREATE INDEX archive_peer ON archive (oid, peer, ts);
	`,
];

/** The schema version this code writes and understands. */
export const SQLITE_SCHEMA_VERSION = SQLITE_MIGRATIONS.length;

type Filter = Pick<ArchiveQuery, "with" | "start" | "end" | "ids">;
type Row = Record<string, unknown>;

interface PendingWrite {
	run: () => unknown;
	/**
	 * One statement: SQLite undoes a failed statement by itself and the transaction goes on, so
	 * it needs no savepoint of its own (a savepoint per write copied each page it touched into
	 * the statement journal: most of a batch of archive appends' CPU).
	 */
	single: boolean;
	resolve: (value: unknown) => void;
	reject: (error: unknown) => void;
}

/** SQLITE_CONSTRAINT_UNIQUE / SQLITE_CONSTRAINT_PRIMARYKEY extended result codes. */
const UNIQUE_VIOLATIONS = new Set([2067, 1555]);

function isUniqueViolation(e: unknown): boolean {
	return (
		e instanceof Error && UNIQUE_VIOLATIONS.has((e as Error & { errcode?: number }).errcode ?? -1)
	);
}

/**
 * Appends the WHERE conditions for with/start/end/ids to `sql` and `args`; `sid` is the
 * store's, so an `ids` filter is looked up in the (sid, id) index.
 */
function filterSql(q: Filter, sid: number, args: SQLInputValue[]): string {
	let sql = "";
	if (q.with !== undefined) {
		sql += " AND peer = ?";
		args.push(q.with);
	}
	if (q.start !== undefined) {
		sql += " AND ts >= ?";
		args.push(q.start);
	}
	if (q.end !== undefined) {
		sql += " AND ts <= ?";
		args.push(q.end);
	}
	if (q.ids !== undefined) {
		sql += " AND sid = ? AND id IN (SELECT value FROM json_each(?))";
		args.push(sid, JSON.stringify(q.ids));
	}
	return sql;
}

/** A frozen object or array whose members are all primitives (so it cannot change). */
function isFrozenFlat(value: Json): boolean {
	if (typeof value !== "object" || value === null || !Object.isFrozen(value)) return false;
	for (const v of Object.values(value)) if (typeof v === "object" && v !== null) return false;
	return true;
}

export class SqliteBackend implements StorageBackend {
	readonly kind = "sqlite";
	readonly path: string;
	#db: DatabaseSync;
	#stmts = new Map<string, StatementSync>();
	#closed = false;
	/** Writes waiting for the batch commit at the end of this turn of the event loop. */
	#pending: PendingWrite[] = [];
	#flushTimer: NodeJS.Immediate | undefined;
	/** The commit of lazy archive appends when nothing else asks for one sooner. */
	#lazyTimer: NodeJS.Timeout | undefined;
	/**
	 * Archive keys known to exist: `host\nstore` -> sid, `sid\nuser` -> oid. Their rows are never
	 * deleted (deleteUser removes an owner's messages, not its key), so another process sharing
	 * the file cannot make an entry stale; a rolled-back batch may have created some, so a failed
	 * batch clears both.
	 */
	#sids = new Map<string, number>();
	#oids = new Map<string, number>();
	/** Bumped when #sids and #oids are cleared, so the stores' own copies are dropped too. */
	#keysGen = 0;
	/**
	 * The last frozen, flat value appended and its JSON: a message archived for its sender and
	 * its recipient is one value (src/modules/mam), stringified once. Frozen with no nested
	 * objects, it cannot have changed since.
	 */
	#lastValue: unknown;
	#lastJson = "";

	/** Opens (creating if needed) the database at `path`; ":memory:" gives a private one. */
	constructor(path: string) {
		this.path = path;
		const db = new DatabaseSync(path, { timeout: BUSY_TIMEOUT_MS });
		try {
			const version = SqliteBackend.#userVersion(db);
			if (version > SQLITE_SCHEMA_VERSION) {
				throw new Error(
					`${path}: database schema version ${version} is newer than this Parley supports ` +
						`(${SQLITE_SCHEMA_VERSION}); upgrade Parley or use another file`,
				);
			}
			db.exec("PRAGMA journal_mode = WAL");
			db.exec("PRAGMA synchronous = FULL");
			// SQLite's default page cache is 2 MiB: under a stream of archive appends the index
			// pages fall out of it and are read back from the OS for each insert. 32 MiB (filled
			// only as pages are used) cut an insert into the archive from about 21 to 16 µs of CPU.
			db.exec(`PRAGMA cache_size = -${CACHE_KIB}`);
			if (version < SQLITE_SCHEMA_VERSION) SqliteBackend.#migrate(db, path);
		} catch (e) {
			db.close();
			throw e;
		}
		this.#db = db;
	}

	static #userVersion(db: DatabaseSync): number {
		const row = db.prepare("PRAGMA user_version").get() as Row | undefined;
		return Number(row?.user_version ?? 0);
	}

	static #migrate(db: DatabaseSync, path: string): void {
		// IMMEDIATE takes the write lock first, so two processes opening a new file don't both
		// create the schema: the second waits, then sees the new version.
		db.exec("BEGIN IMMEDIATE");
		try {
			const version = SqliteBackend.#userVersion(db);
			if (version > SQLITE_SCHEMA_VERSION) {
				throw new Error(
					`${path}: database schema version ${version} is newer than this Parley supports`,
				);
			}
			for (let v = version; v < SQLITE_SCHEMA_VERSION; v++) {
				db.exec(SQLITE_MIGRATIONS[v] as string);
			}
			db.exec(`PRAGMA user_version = ${SQLITE_SCHEMA_VERSION}`);
			db.exec("COMMIT");
		} catch (e) {
			if (db.isTransaction) db.exec("ROLLBACK");
			throw e;
		}
	}

	/** The cached prepared statement for `sql`. */
	#stmt(sql: string): StatementSync {
		if (this.#closed) throw new StorageError("closed", "storage backend is closed");
		let s = this.#stmts.get(sql);
		if (!s) {
			s = this.#db.prepare(sql);
			this.#stmts.set(sql, s);
		}
		return s;
	}

	/**
	 * Queues a write. The writes issued during one turn of the event loop are committed together
	 * in one transaction (one fsync) by {@link #flush}; each runs in its own savepoint, so a write
	 * that fails (a duplicate id) leaves the others alone. The promise settles after the COMMIT.
	 */
	#write<R>(run: () => R, single = false, lazy = false): Promise<R> {
		if (this.#closed) {
			return Promise.reject(new StorageError("closed", "storage backend is closed"));
		}
		return new Promise<R>((resolve, reject) => {
			this.#pending.push({ run, single, resolve: resolve as (v: unknown) => void, reject });
			if (!lazy || this.#pending.length >= LAZY_APPEND_ROWS) {
				this.#flushTimer ??= setImmediate(() => this.#flush());
			} else if (!this.#flushTimer) {
				// Lazy (an archive append nobody waits for): committed with the next write someone
				// waits for, the next read, or after LAZY_APPEND_MS, whichever comes first. Bigger
				// batches write each touched index page to the WAL once for many rows.
				this.#lazyTimer ??= setTimeout(() => this.#flush(), LAZY_APPEND_MS);
			}
		});
	}

	/** The statement for a read, after committing queued writes so the read sees them. */
	#read(sql: string): StatementSync {
		if (this.#pending.length > 0) this.#flush();
		return this.#stmt(sql);
	}

	/** Commits the queued writes in one transaction, then settles their promises. */
	#flush(): void {
		if (this.#flushTimer) clearImmediate(this.#flushTimer);
		this.#flushTimer = undefined;
		if (this.#lazyTimer) clearTimeout(this.#lazyTimer);
		this.#lazyTimer = undefined;
		const batch = this.#pending;
		this.#pending = [];
		if (batch.length === 0) return;
		const results: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
		try {
			this.#stmt("BEGIN IMMEDIATE").run();
			for (const w of batch) {
				if (w.single) {
					try {
						results.push({ ok: true, value: w.run() });
					} catch (error) {
						if (!this.#db.isTransaction) throw error;
						results.push({ ok: false, error });
					}
					continue;
				}
				this.#stmt("SAVEPOINT w").run();
				try {
					results.push({ ok: true, value: w.run() });
					this.#stmt("RELEASE w").run();
				} catch (error) {
					// SQLite rolled the whole transaction back (I/O error, full disk): fail the batch.
					if (!this.#db.isTransaction) throw error;
					this.#stmt("ROLLBACK TO w").run();
					this.#stmt("RELEASE w").run();
					results.push({ ok: false, error });
				}
			}
			this.#stmt("COMMIT").run();
		} catch (error) {
			this.#sids.clear();
			this.#oids.clear();
			this.#keysGen++;
			try {
				if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
			} catch {
				// The connection is unusable; the error below is the one worth reporting.
			}
			for (const w of batch) w.reject(error);
			return;
		}
		for (const [i, w] of batch.entries()) {
			const r = results[i];
			if (r?.ok) w.resolve(r.value);
			else w.reject(r?.error);
		}
	}

	keyval<T extends Json = Json>(host: string, store: string): KeyValStore<T> {
		return {
			get: async (user) => {
				const row = this.#read(
					"SELECT value FROM keyval WHERE host = ? AND store = ? AND user = ?",
				).get(host, store, user) as Row | undefined;
				return row === undefined ? undefined : (JSON.parse(row.value as string) as T);
			},
			getPath: async (user, path) => {
				// SQLite's `->` walks the stored JSON text in C and returns the JSON text of that
				// part only, or NULL when it is missing (a stored JSON null is the text 'null').
				// Labels are JSON strings, so any member name is quoted exactly; `->` with a label
				// never indexes an array, as the contract wants.
				const jsonPath = `$${path.map((k) => `.${JSON.stringify(k)}`).join("")}`;
				const row = this.#read(
					"SELECT value -> ? AS part FROM keyval WHERE host = ? AND store = ? AND user = ?",
				).get(jsonPath, host, store, user) as Row | undefined;
				const part = row?.part;
				return typeof part === "string" ? (JSON.parse(part) as Json) : undefined;
			},
			set: (user, value) => {
				const json = value === undefined ? undefined : JSON.stringify(value);
				return this.#write(() => {
					if (json === undefined) {
						this.#stmt("DELETE FROM keyval WHERE host = ? AND store = ? AND user = ?").run(
							host,
							store,
							user,
						);
					} else {
						this.#stmt(
							"INSERT INTO keyval (host, store, user, value) VALUES (?, ?, ?, ?) " +
								"ON CONFLICT (host, store, user) DO UPDATE SET value = excluded.value",
						).run(host, store, user, json);
					}
				});
			},
			users: async () => {
				const rows = this.#read("SELECT user FROM keyval WHERE host = ? AND store = ?").all(
					host,
					store,
				) as Row[];
				return rows.map((r) => r.user as string).sort();
			},
		};
	}

	map<T extends Json = Json>(host: string, store: string): MapStore<T> {
		return {
			get: async (user, key) => {
				const row = this.#read(
					"SELECT value FROM map WHERE host = ? AND store = ? AND user = ? AND key = ?",
				).get(host, store, user, key) as Row | undefined;
				return row === undefined ? undefined : (JSON.parse(row.value as string) as T);
			},
			set: (user, key, value) => {
				const json = value === undefined ? undefined : JSON.stringify(value);
				return this.#write(() => {
					if (json === undefined) {
						this.#stmt("DELETE FROM map WHERE host = ? AND store = ? AND user = ? AND key = ?").run(
							host,
							store,
							user,
							key,
						);
					} else {
						this.#stmt(
							"INSERT INTO map (host, store, user, key, value) VALUES (?, ?, ?, ?, ?) " +
								"ON CONFLICT (host, store, user, key) DO UPDATE SET value = excluded.value",
						).run(host, store, user, key, json);
					}
				});
			},
			getAll: async (user) => {
				const rows = this.#read(
					"SELECT key, value FROM map WHERE host = ? AND store = ? AND user = ?",
				).all(host, store, user) as Row[];
				const entries = rows.map((r) => [r.key as string, r.value as string] as const);
				entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
				return new Map(entries.map(([k, v]) => [k, JSON.parse(v) as T]));
			},
			deleteAll: (user) =>
				this.#write(() => {
					this.#stmt("DELETE FROM map WHERE host = ? AND store = ? AND user = ?").run(
						host,
						store,
						user,
					);
				}),
		};
	}

	/**
	 * The integer key of (host, store) in archive_store, created when `create` (only inside a
	 * write); undefined when it does not exist.
	 */
	#sid(host: string, store: string, create: boolean): number | undefined {
		const k = `${host}\n${store}`;
		let sid = this.#sids.get(k);
		if (sid !== undefined) return sid;
		if (create) {
			this.#stmt(
				"INSERT INTO archive_store (host, store) VALUES (?, ?) ON CONFLICT DO NOTHING",
			).run(host, store);
		}
		const row = this.#stmt("SELECT sid FROM archive_store WHERE host = ? AND store = ?").get(
			host,
			store,
		) as Row | undefined;
		if (row === undefined) return undefined;
		sid = row.sid as number;
		this.#sids.set(k, sid);
		return sid;
	}

	/** The integer key of `user`'s archive in store `sid`, as {@link #sid}. */
	#oid(sid: number, user: string, create: boolean): number | undefined {
		const k = `${sid}\n${user}`;
		let oid = this.#oids.get(k);
		if (oid !== undefined) return oid;
		if (create) {
			this.#stmt("INSERT INTO archive_owner (sid, user) VALUES (?, ?) ON CONFLICT DO NOTHING").run(
				sid,
				user,
			);
		}
		const row = this.#stmt("SELECT oid FROM archive_owner WHERE sid = ? AND user = ?").get(
			sid,
			user,
		) as Row | undefined;
		if (row === undefined) return undefined;
		oid = row.oid as number;
		this.#oids.set(k, oid);
		return oid;
	}

	/** The JSON text of an archived value (see #lastValue). */
	#json(value: Json): string {
		if (value === this.#lastValue) return this.#lastJson;
		const json = JSON.stringify(value);
		if (isFrozenFlat(value)) {
			this.#lastValue = value;
			this.#lastJson = json;
		}
		return json;
	}

	archive<T extends Json = Json>(host: string, store: string): ArchiveStore<T> {
		// This store's keys for appends, as in #sids and #oids but without building their map
		// keys for every row; dropped with those (#keysGen).
		let keysGen = -1;
		let appendSid: number | undefined;
		const appendOids = new Map<string, number>();
		/** The keys of `user`'s archive for a read (after the queued writes), if it exists. */
		const keys = (user: string): { sid: number; oid: number } | undefined => {
			if (this.#pending.length > 0) this.#flush();
			const sid = this.#sid(host, store, false);
			const oid = sid === undefined ? undefined : this.#oid(sid, user, false);
			return sid === undefined || oid === undefined ? undefined : { sid, oid };
		};
		const anchor = (k: { sid: number; oid: number }, id: string): { ts: number; seq: number } => {
			const row = this.#read("SELECT ts, seq, oid FROM archive WHERE sid = ? AND id = ?").get(
				k.sid,
				id,
			) as Row | undefined;
			if (!row || row.oid !== k.oid) {
				throw new StorageError("item-not-found", `no archive item ${id}`);
			}
			return { ts: row.ts as number, seq: row.seq as number };
		};
		/** The filters and the after/before anchors of a query or count, as WHERE conditions. */
		const anchored = (
			k: { sid: number; oid: number },
			q: ArchiveCount,
			args: SQLInputValue[],
		): string => {
			let sql = filterSql(q, k.sid, args);
			if (q.after !== undefined) {
				const a = anchor(k, q.after);
				sql += " AND (ts, seq) > (?, ?)";
				args.push(a.ts, a.seq);
			}
			if (q.before !== undefined) {
				const b = anchor(k, q.before);
				sql += " AND (ts, seq) < (?, ?)";
				args.push(b.ts, b.seq);
			}
			return sql;
		};
		/**
		 * The owner's condition. With `ids` it is `+oid`: the unary plus keeps SQLite from walking
		 * the owner's whole archive in (oid, ts) order to test each row's id; it looks the ids up
		 * in (sid, id) instead (at 1000 messages per user: 20 ms down to well under 1).
		 */
		const owner = (q: ArchiveCount): string => (q.ids !== undefined ? "+oid = ?" : "oid = ?");
		/** An anchor in an archive that does not exist is an unknown id too. */
		const noArchive = (q: ArchiveCount): void => {
			const id = q.after ?? q.before;
			if (id !== undefined) throw new StorageError("item-not-found", `no archive item ${id}`);
		};
		return {
			append: (user, item, opts) => {
				const id = item.id ?? newArchiveId();
				const when = item.when ?? Date.now();
				const peer = item.with ?? "";
				const json = this.#json(item.value);
				return this.#write(
					() => {
						if (keysGen !== this.#keysGen) {
							keysGen = this.#keysGen;
							appendSid = undefined;
							appendOids.clear();
						}
						appendSid ??= this.#sid(host, store, true) as number;
						const sid = appendSid;
						let oid = appendOids.get(user);
						if (oid === undefined) {
							oid = this.#oid(sid, user, true) as number;
							appendOids.set(user, oid);
						}
						try {
							this.#stmt(
								"INSERT INTO archive (sid, oid, id, ts, peer, value) VALUES (?, ?, ?, ?, ?, ?)",
							).run(sid, oid, id, when, peer, json);
						} catch (e) {
							if (isUniqueViolation(e)) {
								throw new StorageError("conflict", `archive item ${id} already exists`);
							}
							throw e;
						}
						return id;
					},
					true,
					opts?.lazy === true,
				);
			},
			query: async (user, q = {}) => {
				checkLimit(q.limit);
				const k = keys(user);
				if (k === undefined) {
					noArchive(q);
					return { items: [], complete: true };
				}
				const args: SQLInputValue[] = [k.oid];
				let sql = `SELECT id, ts, peer, value FROM archive WHERE ${owner(q)}`;
				sql += anchored(k, q, args);
				const backwards = walksBackwards(q);
				sql += backwards ? " ORDER BY ts DESC, seq DESC" : " ORDER BY ts, seq";
				if (q.limit !== undefined) {
					// One more than asked, to learn whether the page is the last one.
					sql += " LIMIT ?";
					args.push(q.limit + 1);
				}
				const rows = this.#read(sql).all(...args) as Row[];
				const complete = q.limit === undefined || rows.length <= q.limit;
				if (!complete) rows.pop();
				if (backwards) rows.reverse();
				const items = rows.map(
					(r): ArchiveItem<T> => ({
						id: r.id as string,
						when: r.ts as number,
						with: r.peer as string,
						value: JSON.parse(r.value as string) as T,
					}),
				);
				return { items, complete };
			},
			count: async (user, q = {}) => {
				const k = keys(user);
				if (k === undefined) {
					noArchive(q);
					return 0;
				}
				const args: SQLInputValue[] = [k.oid];
				const sql = `SELECT count(*) AS n FROM archive WHERE ${owner(q)}${anchored(k, q, args)}`;
				const row = this.#read(sql).get(...args) as Row;
				return Number(row.n);
			},
			delete: (user, q = {}) =>
				this.#write(() => {
					const sid = this.#sid(host, store, false);
					const oid = sid === undefined ? undefined : this.#oid(sid, user, false);
					if (sid === undefined || oid === undefined) return 0;
					const args: SQLInputValue[] = [oid];
					const sql = `DELETE FROM archive WHERE oid = ?${filterSql(q, sid, args)}`;
					return Number(this.#stmt(sql).run(...args).changes);
				}),
		};
	}

	deleteUser(host: string, user: string): Promise<void> {
		return this.#write(() => {
			for (const table of ["keyval", "map"]) {
				this.#stmt(`DELETE FROM ${table} WHERE host = ? AND user = ?`).run(host, user);
			}
			// Every store's archive of the user; the keys stay (see #sids).
			this.#stmt(
				"DELETE FROM archive WHERE oid IN (SELECT o.oid FROM archive_owner o " +
					"JOIN archive_store s ON s.sid = o.sid WHERE s.host = ? AND o.user = ?)",
			).run(host, user);
		});
	}

	/** Commits the queued writes (lazy ones too) at the end of this turn of the event loop. */
	settle(): Promise<void> {
		if (this.#pending.length === 0 || this.#closed) return Promise.resolve();
		// A write nobody holds back: queued after the others, it commits with them (#flush).
		return this.#write(() => undefined, true).then(
			() => undefined,
			() => undefined,
		);
	}

	/** Commits the queued writes, then closes the database. */
	async close(): Promise<void> {
		if (this.#closed) return;
		this.#flush();
		this.#closed = true;
		this.#stmts.clear();
		this.#db.close();
	}
}
