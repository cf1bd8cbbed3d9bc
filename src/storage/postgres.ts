/**
 * The PostgreSQL backend (production), on `pg` (node-postgres).
 *
 * Why `pg` rather than `postgres` (porsager): it is the most used and longest maintained driver,
 * its Pool exposes exactly the controls needed here (size, connect timeout, idle timeout, an
 * 'error' event for connections that die while idle), named prepared statements are a plain
 * `{ name, text }`, and a checked-out client gives a real transaction for group commit.
 *
 * - Durability: a write's promise resolves only after the COMMIT that contains it returned.
 * - Group commit: writes go through one ordered queue. The writes queued while the previous
 *   batch was committing (or during one turn of the event loop) run in one transaction on one
 *   connection, one COMMIT (one WAL flush) for all. Consecutive archive appends become a single
 *   multi-row INSERT (`unnest` of arrays, so one prepared statement for any batch size) with
 *   `ON CONFLICT DO NOTHING`, so a duplicate id fails only its own append. If a batch fails for
 *   another data error, its writes are retried one per transaction so only the bad one fails.
 *   Batches never overlap, so writes are applied in the order they were issued.
 * - Reads run on any pooled connection, after the writes issued before them have committed, so
 *   a read sees every earlier write, awaited or not.
 * - Failure: while the database is down every call rejects (connect timeout or connection
 *   error) and nothing crashes: the Pool's 'error' event and every checked-out client's 'error'
 *   event are handled; a broken connection is destroyed, and the pool opens new ones once the
 *   server is back. A write whose COMMIT outcome is unknown rejects (never acknowledged).
 * - The schema is created or migrated on first use (src/storage/migrations/postgres.ts); a
 *   database from a newer Parley makes every call reject with that error.
 *
 * Archive semantics (ordering, paging, `complete`, errors) are those documented in memory.ts.
 */
import { createHash } from "node:crypto";
import pg from "pg";
import { checkLimit, newArchiveId, StorageError, valueAt, walksBackwards } from "./memory.ts";
import { migratePostgres, quoteSchema } from "./migrations/postgres.ts";
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

export interface PostgresOptions {
	/** libpq-style URL, e.g. postgres://user@127.0.0.1:5432/parley */
	url: string;
	/** Schema holding Parley's tables (created when missing). Default "public". */
	schema?: string;
	/** Pool size. Default 10. */
	poolSize?: number;
	/** How long to wait for a connection before failing a call, ms. Default 5000. */
	connectTimeoutMs?: number;
	/** Client-side limit for one query, ms. Default 30000. */
	queryTimeoutMs?: number;
	/** Close idle connections after this long, ms. Default 30000. */
	idleTimeoutMs?: number;
	/** Called with errors of idle connections (the database restarted, ...). */
	onError?: (err: Error) => void;
}

type Filter = Pick<ArchiveQuery, "with" | "start" | "end" | "ids">;
type Row = Record<string, unknown>;
type Client = pg.PoolClient;

interface AppendOp {
	kind: "append";
	host: string;
	store: string;
	user: string;
	id: string;
	ts: number;
	peer: string;
	value: string;
}

interface SqlOp {
	kind: "sql";
	run: (c: Client) => Promise<unknown>;
}

interface PendingWrite {
	op: AppendOp | SqlOp;
	resolve: (value: unknown) => void;
	reject: (error: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** A SQLSTATE error that concerns the statement, not the connection (retrying alone makes sense). */
function isStatementError(e: unknown): boolean {
	const code = (e as { code?: unknown } | null)?.code;
	return (
		typeof code === "string" &&
		/^[0-9A-Z]{5}$/.test(code) &&
		!code.startsWith("08") && // connection exception
		!code.startsWith("57") && // operator intervention (shutdown)
		!code.startsWith("53") // insufficient resources
	);
}

/** Appends the WHERE conditions for with/start/end to `sql` and `args`. */
function filterSql(q: Filter, args: unknown[]): string {
	let sql = "";
	if (q.with !== undefined) {
		args.push(q.with);
		sql += ` AND peer = $${args.length}`;
	}
	if (q.start !== undefined) {
		args.push(q.start);
		sql += ` AND ts >= $${args.length}`;
	}
	if (q.end !== undefined) {
		args.push(q.end);
		sql += ` AND ts <= $${args.length}`;
	}
	if (q.ids !== undefined) {
		args.push(q.ids);
		sql += ` AND id = ANY($${args.length}::text[])`;
	}
	return sql;
}

function byCodeUnits(a: string, b: string): number {
	return a < b ? -1 : a > b ? 1 : 0;
}

export class PostgresBackend implements StorageBackend {
	readonly kind = "postgres";
	readonly schema: string;
	readonly #pool: pg.Pool;
	readonly #t: { keyval: string; map: string; archive: string };
	#closed = false;
	/** Schema check/migration, run once on first use (again after a failure). */
	#ready: Promise<void> | undefined;
	/** Writes waiting for the next batch. */
	#queue: PendingWrite[] = [];
	#scheduled = false;
	/** The end of the write chain: settles (never rejects) when every queued batch is done. */
	#tail: Promise<void> = Promise.resolve();
	#names = new Map<string, string>();
	#onError: (err: Error) => void;

	constructor(opts: PostgresOptions) {
		this.schema = opts.schema ?? "public";
		const s = quoteSchema(this.schema);
		this.#t = {
			keyval: `${s}.parley_keyval`,
			map: `${s}.parley_map`,
			archive: `${s}.parley_archive`,
		};
		this.#onError = opts.onError ?? (() => {});
		this.#pool = new pg.Pool({
			connectionString: opts.url,
			max: opts.poolSize ?? 10,
			connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
			query_timeout: opts.queryTimeoutMs ?? 30_000,
			idleTimeoutMillis: opts.idleTimeoutMs ?? 30_000,
			application_name: "parley",
		});
		// Without a listener, an idle connection dying (database restart) would crash the process.
		this.#pool.on("error", (err) => this.#onError(err));
	}

	/** Creates or migrates the schema now instead of on first use (fail fast at start-up). */
	open(): Promise<void> {
		if (this.#closed)
			return Promise.reject(new StorageError("closed", "storage backend is closed"));
		return this.#ensureReady();
	}

	#ensureReady(): Promise<void> {
		this.#ready ??= this.#withClient((c) => migratePostgres(c, this.schema)).then(
			() => {},
			(e: unknown) => {
				this.#ready = undefined; // try again on the next call
				throw e;
			},
		);
		return this.#ready;
	}

	/** Checks out a connection, runs `fn`, and returns the connection (destroyed if broken). */
	async #withClient<R>(fn: (c: Client) => Promise<R>): Promise<R> {
		const client = await this.#pool.connect();
		// A checked-out client has no pool listener: an error between queries would be uncaught.
		let broken: Error | undefined;
		const onError = (err: Error) => {
			broken = err;
			this.#onError(err);
		};
		client.on("error", onError);
		try {
			return await fn(client);
		} catch (e) {
			if (!isStatementError(e)) broken ??= e instanceof Error ? e : new Error(String(e));
			throw e;
		} finally {
			client.off("error", onError);
			client.release(broken);
		}
	}

	/** A named (prepared once per connection) query. */
	#q(c: Client, text: string, values: unknown[]): Promise<pg.QueryResult<Row>> {
		let name = this.#names.get(text);
		if (name === undefined) {
			name = `p_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`;
			this.#names.set(text, name);
		}
		return c.query<Row>({ name, text, values });
	}

	#checkOpen(): void {
		if (this.#closed) throw new StorageError("closed", "storage backend is closed");
	}

	/** Runs a read after the writes issued before it have committed. */
	async #read<R>(fn: (c: Client) => Promise<R>): Promise<R> {
		this.#checkOpen();
		const tail = this.#tail;
		await this.open();
		await tail;
		return this.#withClient(fn);
	}

	#write<R>(op: AppendOp | SqlOp): Promise<R> {
		if (this.#closed) {
			return Promise.reject(new StorageError("closed", "storage backend is closed"));
		}
		return new Promise<R>((resolve, reject) => {
			this.#queue.push({ op, resolve: resolve as (v: unknown) => void, reject });
			if (this.#scheduled) return;
			this.#scheduled = true;
			this.#tail = this.#tail
				.then(() => new Promise<void>((r) => setImmediate(r)))
				.then(() => {
					this.#scheduled = false;
					const batch = this.#queue;
					this.#queue = [];
					return this.#runBatch(batch);
				});
		});
	}

	#sql<R>(run: (c: Client) => Promise<R>): Promise<R> {
		return this.#write<R>({ kind: "sql", run });
	}

	/** Runs a batch in one transaction and settles its promises; never rejects. */
	async #runBatch(batch: PendingWrite[]): Promise<void> {
		let outcomes: Outcome[];
		try {
			await this.#ensureReady(); // not open(): close() lets queued writes finish
			outcomes = await this.#withClient((c) => this.#transaction(c, batch));
		} catch (error) {
			const { committing } = error as { committing?: boolean };
			if (batch.length > 1 && isStatementError(error) && !committing) {
				// Rolled back: run each write alone so only the faulty one fails.
				for (const w of batch) await this.#runBatch([w]);
				return;
			}
			for (const w of batch) w.reject(error);
			return;
		}
		for (const [i, w] of batch.entries()) {
			const o = outcomes[i] as Outcome;
			if (o.ok) w.resolve(o.value);
			else w.reject(o.error);
		}
	}

	async #transaction(c: Client, batch: PendingWrite[]): Promise<Outcome[]> {
		const out: Outcome[] = new Array(batch.length);
		await c.query("BEGIN");
		try {
			let i = 0;
			while (i < batch.length) {
				const w = batch[i] as PendingWrite;
				if (w.op.kind === "sql") {
					out[i] = { ok: true, value: await w.op.run(c) };
					i++;
					continue;
				}
				let j = i;
				while (j < batch.length && (batch[j] as PendingWrite).op.kind === "append") j++;
				await this.#appendGroup(c, batch, i, j, out);
				i = j;
			}
		} catch (e) {
			await c.query("ROLLBACK").catch(() => {});
			throw e;
		}
		try {
			await c.query("COMMIT");
		} catch (e) {
			// The outcome is unknown: reject, and never retry (the writes may be committed).
			if (e instanceof Error) Object.assign(e, { committing: true });
			throw e;
		}
		return out;
	}

	/** batch[from..to) are appends: one multi-row INSERT, conflicts reported per item. */
	async #appendGroup(
		c: Client,
		batch: PendingWrite[],
		from: number,
		to: number,
		out: Outcome[],
	): Promise<void> {
		const cols: [string[], string[], string[], string[], string[], string[], string[]] = [
			[],
			[],
			[],
			[],
			[],
			[],
			[],
		];
		const seen = new Set<string>();
		const keyOf = (a: AppendOp) => JSON.stringify([a.host, a.store, a.id]);
		for (let i = from; i < to; i++) {
			const a = (batch[i] as PendingWrite).op as AppendOp;
			const key = keyOf(a);
			if (seen.has(key)) continue; // a later duplicate in the batch: a conflict whatever happens
			seen.add(key);
			const row = [a.host, a.store, a.user, a.id, String(a.ts), a.peer, a.value];
			for (const [k, v] of row.entries()) (cols[k] as string[]).push(v);
		}
		// unnest zips the arrays in order, so seq follows issue order (ties in insertion order).
		const r = await this.#q(
			c,
			`INSERT INTO ${this.#t.archive} (host, store, username, id, ts, peer, value) ` +
				"SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], " +
				"$6::text[], $7::text[]) ON CONFLICT (host, store, id) DO NOTHING " +
				"RETURNING host, store, id",
			cols,
		);
		const inserted = new Set(r.rows.map((row) => JSON.stringify([row.host, row.store, row.id])));
		for (let i = from; i < to; i++) {
			const a = (batch[i] as PendingWrite).op as AppendOp;
			const key = keyOf(a);
			if (inserted.delete(key)) out[i] = { ok: true, value: a.id };
			else {
				out[i] = {
					ok: false,
					error: new StorageError("conflict", `archive item ${a.id} already exists`),
				};
			}
		}
	}

	keyval<T extends Json = Json>(host: string, store: string): KeyValStore<T> {
		const t = this.#t.keyval;
		return {
			get: (user) =>
				this.#read(async (c) => {
					const r = await this.#q(
						c,
						`SELECT value FROM ${t} WHERE host = $1 AND store = $2 AND username = $3`,
						[host, store, user],
					);
					const row = r.rows[0];
					return row === undefined ? undefined : (JSON.parse(row.value as string) as T);
				}),
			getPath: (user, path) =>
				this.#read(async (c) => {
					// `json -> text` takes one object member (NULL for a missing one, and for any
					// step into an array or a scalar), so only that part's text comes back.
					const steps = path.map((_, i) => ` -> $${i + 4}::text`).join("");
					let r: pg.QueryResult<Row>;
					try {
						r = await this.#q(
							c,
							`SELECT (value::json${steps})::text AS part FROM ${t} ` +
								"WHERE host = $1 AND store = $2 AND username = $3",
							[host, store, user, ...path],
						);
					} catch (e) {
						// A value PostgreSQL's json type refuses (class 22, data exception: a lone
						// UTF-16 surrogate that JSON.stringify wrote as an escape) is still valid
						// JavaScript JSON: read it whole and walk it here.
						if (!String((e as { code?: unknown } | null)?.code).startsWith("22")) throw e;
						const whole = await this.#q(
							c,
							`SELECT value FROM ${t} WHERE host = $1 AND store = $2 AND username = $3`,
							[host, store, user],
						);
						const row = whole.rows[0];
						return row === undefined ? undefined : valueAt(JSON.parse(row.value as string), path);
					}
					const part = r.rows[0]?.part;
					return typeof part === "string" ? (JSON.parse(part) as Json) : undefined;
				}),
			set: (user, value) => {
				const json = value === undefined ? undefined : JSON.stringify(value);
				return this.#sql(async (c) => {
					if (json === undefined) {
						await this.#q(c, `DELETE FROM ${t} WHERE host = $1 AND store = $2 AND username = $3`, [
							host,
							store,
							user,
						]);
					} else {
						await this.#q(
							c,
							`INSERT INTO ${t} (host, store, username, value) VALUES ($1, $2, $3, $4) ` +
								"ON CONFLICT (host, store, username) DO UPDATE SET value = excluded.value",
							[host, store, user, json],
						);
					}
				});
			},
			users: () =>
				this.#read(async (c) => {
					const r = await this.#q(c, `SELECT username FROM ${t} WHERE host = $1 AND store = $2`, [
						host,
						store,
					]);
					// Sorted here: the contract wants UTF-16 code unit order, not the collation's.
					return r.rows.map((row) => row.username as string).sort(byCodeUnits);
				}),
		};
	}

	map<T extends Json = Json>(host: string, store: string): MapStore<T> {
		const t = this.#t.map;
		return {
			get: (user, key) =>
				this.#read(async (c) => {
					const r = await this.#q(
						c,
						`SELECT value FROM ${t} WHERE host = $1 AND username = $2 AND store = $3 AND key = $4`,
						[host, user, store, key],
					);
					const row = r.rows[0];
					return row === undefined ? undefined : (JSON.parse(row.value as string) as T);
				}),
			set: (user, key, value) => {
				const json = value === undefined ? undefined : JSON.stringify(value);
				return this.#sql(async (c) => {
					if (json === undefined) {
						await this.#q(
							c,
							`DELETE FROM ${t} WHERE host = $1 AND username = $2 AND store = $3 AND key = $4`,
							[host, user, store, key],
						);
					} else {
						await this.#q(
							c,
							`INSERT INTO ${t} (host, username, store, key, value) VALUES ($1, $2, $3, $4, $5) ` +
								"ON CONFLICT (host, username, store, key) DO UPDATE SET value = excluded.value",
							[host, user, store, key, json],
						);
					}
				});
			},
			getAll: (user) =>
				this.#read(async (c) => {
					const r = await this.#q(
						c,
						`SELECT key, value FROM ${t} WHERE host = $1 AND username = $2 AND store = $3`,
						[host, user, store],
					);
					const entries = r.rows.map((row) => [row.key as string, row.value as string] as const);
					entries.sort((a, b) => byCodeUnits(a[0], b[0]));
					return new Map(entries.map(([k, v]) => [k, JSON.parse(v) as T]));
				}),
			deleteAll: (user) =>
				this.#sql(async (c) => {
					await this.#q(c, `DELETE FROM ${t} WHERE host = $1 AND username = $2 AND store = $3`, [
						host,
						user,
						store,
					]);
				}),
		};
	}

	archive<T extends Json = Json>(host: string, store: string): ArchiveStore<T> {
		const t = this.#t.archive;
		const anchor = async (c: Client, user: string, id: string): Promise<[string, string]> => {
			const r = await this.#q(
				c,
				`SELECT ts, seq FROM ${t} WHERE host = $1 AND store = $2 AND id = $3 AND username = $4`,
				[host, store, id, user],
			);
			const row = r.rows[0];
			if (!row) throw new StorageError("item-not-found", `no archive item ${id}`);
			// bigint columns arrive as strings; passed back as parameters unchanged.
			return [row.ts as string, row.seq as string];
		};
		/** The filters and the after/before anchors of a query or count, as WHERE conditions. */
		const anchored = async (
			c: Client,
			user: string,
			q: ArchiveCount,
			args: unknown[],
		): Promise<string> => {
			let sql = filterSql(q, args);
			if (q.after !== undefined) {
				args.push(...(await anchor(c, user, q.after)));
				sql += ` AND (ts, seq) > ($${args.length - 1}::bigint, $${args.length}::bigint)`;
			}
			if (q.before !== undefined) {
				args.push(...(await anchor(c, user, q.before)));
				sql += ` AND (ts, seq) < ($${args.length - 1}::bigint, $${args.length}::bigint)`;
			}
			return sql;
		};
		return {
			append: (user, item) => {
				if (this.#closed) {
					return Promise.reject(new StorageError("closed", "storage backend is closed"));
				}
				const id = item.id ?? newArchiveId();
				return this.#write<string>({
					kind: "append",
					host,
					store,
					user,
					id,
					ts: item.when ?? Date.now(),
					peer: item.with ?? "",
					value: JSON.stringify(item.value),
				});
			},
			query: async (user, q = {}) => {
				checkLimit(q.limit);
				return this.#read(async (c) => {
					const args: unknown[] = [host, store, user];
					let sql = `SELECT id, ts, peer, value FROM ${t} WHERE host = $1 AND store = $2 AND username = $3`;
					sql += await anchored(c, user, q, args);
					const backwards = walksBackwards(q);
					sql += backwards ? " ORDER BY ts DESC, seq DESC" : " ORDER BY ts, seq";
					if (q.limit !== undefined) {
						// One more than asked, to learn whether the page is the last one.
						args.push(q.limit + 1);
						sql += ` LIMIT $${args.length}`;
					}
					const rows = (await this.#q(c, sql, args)).rows;
					const complete = q.limit === undefined || rows.length <= q.limit;
					if (!complete) rows.pop();
					if (backwards) rows.reverse();
					return {
						items: rows.map(
							(r): ArchiveItem<T> => ({
								id: r.id as string,
								when: Number(r.ts),
								with: r.peer as string,
								value: JSON.parse(r.value as string) as T,
							}),
						),
						complete,
					};
				});
			},
			count: (user, q = {}) =>
				this.#read(async (c) => {
					const args: unknown[] = [host, store, user];
					const sql =
						`SELECT count(*) AS n FROM ${t} WHERE host = $1 AND store = $2 AND username = $3` +
						(await anchored(c, user, q, args));
					return Number((await this.#q(c, sql, args)).rows[0]?.n);
				}),
			delete: (user, q = {}) => {
				const args: unknown[] = [host, store, user];
				let sql = `DELETE FROM ${t} WHERE host = $1 AND store = $2 AND username = $3`;
				sql += filterSql(q, args);
				return this.#sql(async (c) => (await this.#q(c, sql, args)).rowCount ?? 0);
			},
		};
	}

	/** Lazy appends are not held back here: the batches queued so far are the whole wait. */
	settle(): Promise<void> {
		return this.#tail;
	}

	deleteUser(host: string, user: string): Promise<void> {
		return this.#sql(async (c) => {
			for (const t of [this.#t.keyval, this.#t.map, this.#t.archive]) {
				await this.#q(c, `DELETE FROM ${t} WHERE host = $1 AND username = $2`, [host, user]);
			}
		});
	}

	/**
	 * Every stored record, for copy and export: keyval and map entries, then archive items in
	 * their order. Reads in pages so a large archive does not sit in memory.
	 */
	async *dump(): AsyncGenerator<DumpRecord> {
		const kv = await this.#read((c) =>
			this.#q(c, `SELECT host, store, username, value FROM ${this.#t.keyval} ORDER BY 1, 2, 3`, []),
		);
		for (const r of kv.rows) {
			yield {
				kind: "keyval",
				host: r.host as string,
				store: r.store as string,
				user: r.username as string,
				value: JSON.parse(r.value as string) as Json,
			};
		}
		const m = await this.#read((c) =>
			this.#q(
				c,
				`SELECT host, store, username, key, value FROM ${this.#t.map} ORDER BY 1, 2, 3, 4`,
				[],
			),
		);
		for (const r of m.rows) {
			yield {
				kind: "map",
				host: r.host as string,
				store: r.store as string,
				user: r.username as string,
				key: r.key as string,
				value: JSON.parse(r.value as string) as Json,
			};
		}
		let after = "0";
		for (;;) {
			const page = await this.#read((c) =>
				this.#q(
					c,
					`SELECT seq, host, store, username, id, ts, peer, value FROM ${this.#t.archive} ` +
						"WHERE seq > $1 ORDER BY seq LIMIT 1000",
					[after],
				),
			);
			if (page.rows.length === 0) break;
			// Sorted by (ts, seq) per user later by the reader; seq order keeps ties in order.
			for (const r of page.rows) {
				yield {
					kind: "archive",
					host: r.host as string,
					store: r.store as string,
					user: r.username as string,
					item: {
						id: r.id as string,
						when: Number(r.ts),
						with: r.peer as string,
						value: JSON.parse(r.value as string) as Json,
					},
				};
			}
			after = page.rows.at(-1)?.seq as string;
		}
	}

	/** Waits for queued writes, then closes the pool. */
	async close(): Promise<void> {
		if (this.#closed) return;
		this.#closed = true;
		await this.#tail;
		await this.#pool.end();
	}
}

/** One record of a backend's content (see {@link PostgresBackend.dump}, src/storage/copy.ts). */
export type DumpRecord =
	| { kind: "keyval"; host: string; store: string; user: string; value: Json }
	| { kind: "map"; host: string; store: string; user: string; key: string; value: Json }
	| { kind: "archive"; host: string; store: string; user: string; item: ArchiveItem };
