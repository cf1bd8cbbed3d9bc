/**
 * A backend that sends each (host, store) to one of several backends, chosen by name
 * (issue 4: "accounts in PostgreSQL, archives in PostgreSQL, caches in memory").
 *
 * The rule for a store of a host, first match wins:
 *
 * 1. the host's own `stores` entry for that store,
 * 2. the global `stores` entry for that store,
 * 3. the host's `default`,
 * 4. the backend named "default".
 *
 * A host route marked `exclusive` skips rule 2.
 *
 * Per-store entries come before defaults because a store's nature (a cache, an archive) is the
 * usual reason to place it; a host's default moves the rest of that host.
 *
 * Every call is delegated unchanged, so the durability promise and the errors are those of the
 * backend that serves the store. `deleteUser` and `close` go to every distinct backend (one
 * instance registered under several names is called once).
 */
import type { ArchiveStore, Json, KeyValStore, MapStore, StorageBackend } from "./types.ts";

export const DEFAULT_BACKEND = "default";

export interface StorageRoutes {
	/** Store name -> backend name, for every host. */
	stores?: Record<string, string>;
	/** Per host: a default backend and store name -> backend name. */
	hosts?: Record<string, HostRoute>;
}

export interface HostRoute {
	default?: string | undefined;
	stores?: Record<string, string>;
	/**
	 * The host's own routes are all there is: the global `stores` do not apply to it (an
	 * anonymous host, whose stores must all stay in memory whatever `[storage.stores]` says).
	 */
	exclusive?: boolean;
}

export class RoutingBackend implements StorageBackend {
	readonly kind = "routing";
	readonly backends: ReadonlyMap<string, StorageBackend>;
	readonly #routes: StorageRoutes;

	/** Throws when a route names a backend that is not in `backends`, or there is no "default". */
	constructor(backends: ReadonlyMap<string, StorageBackend>, routes: StorageRoutes = {}) {
		this.backends = backends;
		this.#routes = routes;
		const need = (name: string | undefined, where: string) => {
			if (name !== undefined && !backends.has(name)) {
				throw new Error(`${where}: no storage backend named ${JSON.stringify(name)}`);
			}
		};
		need(DEFAULT_BACKEND, "storage");
		for (const [store, name] of Object.entries(routes.stores ?? {})) {
			need(name, `storage.stores.${store}`);
		}
		for (const [host, h] of Object.entries(routes.hosts ?? {})) {
			need(h.default, `storage.hosts.${host}.default`);
			for (const [store, name] of Object.entries(h.stores ?? {})) {
				need(name, `storage.hosts.${host}.stores.${store}`);
			}
		}
	}

	/** The name of the backend that serves `store` of `host`. */
	routeOf(host: string, store: string): string {
		const h = this.#routes.hosts?.[host];
		const own = (m: Record<string, string> | undefined) =>
			m !== undefined && Object.hasOwn(m, store) ? m[store] : undefined;
		const global = h?.exclusive ? undefined : own(this.#routes.stores);
		return own(h?.stores) ?? global ?? h?.default ?? DEFAULT_BACKEND;
	}

	backendFor(host: string, store: string): StorageBackend {
		// The constructor checked every name a route can return.
		return this.backends.get(this.routeOf(host, store)) as StorageBackend;
	}

	keyval<T extends Json = Json>(host: string, store: string): KeyValStore<T> {
		return this.backendFor(host, store).keyval<T>(host, store);
	}

	map<T extends Json = Json>(host: string, store: string): MapStore<T> {
		return this.backendFor(host, store).map<T>(host, store);
	}

	archive<T extends Json = Json>(host: string, store: string): ArchiveStore<T> {
		return this.backendFor(host, store).archive<T>(host, store);
	}

	/** Any backend may hold some of the user's stores: all of them delete. */
	async deleteUser(host: string, user: string): Promise<void> {
		await settleAll([...new Set(this.backends.values())].map((b) => b.deleteUser(host, user)));
	}

	settle(): Promise<void> {
		return Promise.all([...new Set(this.backends.values())].map((b) => b.settle())).then(
			() => undefined,
		);
	}

	/** Closes every backend, even when one fails; then rejects with the first failure. */
	async close(): Promise<void> {
		await settleAll([...new Set(this.backends.values())].map((b) => b.close()));
	}
}

/** Waits for all; rejects with the first rejection, if any. */
async function settleAll(promises: Promise<void>[]): Promise<void> {
	const failed = (await Promise.allSettled(promises)).find((r) => r.status === "rejected");
	if (failed) throw failed.reason;
}
