/**
 * Loads and unloads modules on one host at runtime. Each loaded module gets its own API object
 * that records every registration, so unloading removes exactly what the module added.
 */
import type { Element } from "../../xml/element.ts";
import type { Host, HostModules } from "../contracts.ts";
import type { ModuleApi, ModuleDefinition } from "./define.ts";

interface Loaded {
	def: ModuleDefinition<unknown>;
	cleanups: (() => void | Promise<void>)[];
}

export class ModuleError extends Error {}

/**
 * A module's options for one host, validated by its schema (with defaults filled in); throws a
 * ModuleError naming the key. A reload checks a new configuration with it before applying it.
 */
export function moduleOptions(
	def: ModuleDefinition<unknown>,
	host: string,
	raw: Record<string, unknown> | undefined,
): unknown {
	if (!def.options) return raw ?? {};
	const parsed = def.options.safeParse(raw ?? {});
	if (parsed.success) return parsed.data;
	const problems = parsed.error.issues.map(
		(i) => `${i.path.join(".") || "(options)"}: ${i.message}`,
	);
	throw new ModuleError(`hosts."${host}".module_options.${def.name}: ${problems.join("; ")}`);
}

export class ModuleManager implements HostModules {
	readonly #host: Host;
	readonly #registry: ReadonlyMap<string, ModuleDefinition<unknown>>;
	readonly #loaded = new Map<string, Loaded>();

	constructor(host: Host, registry: ReadonlyMap<string, ModuleDefinition<unknown>>) {
		this.#host = host;
		this.#registry = registry;
	}

	get loaded(): string[] {
		return [...this.#loaded.keys()];
	}

	isLoaded(name: string): boolean {
		return this.#loaded.has(name);
	}

	async load(name: string): Promise<void> {
		if (this.#loaded.has(name)) return;
		const def = this.#registry.get(name);
		if (!def) throw new ModuleError(`unknown module "${name}" on host ${this.#host.name}`);
		const options = moduleOptions(def, this.#host.name, this.#host.config.module_options[name]);
		const loaded: Loaded = { def, cleanups: [] };
		const api = this.#makeApi(name, options, loaded.cleanups);
		this.#loaded.set(name, loaded);
		try {
			await def.load(api);
		} catch (err) {
			await this.#runCleanups(loaded);
			this.#loaded.delete(name);
			throw err;
		}
		this.#host.log.debug({ module: name }, "module loaded");
	}

	async unload(name: string): Promise<void> {
		const loaded = this.#loaded.get(name);
		if (!loaded) return;
		this.#loaded.delete(name);
		await this.#runCleanups(loaded);
		this.#host.log.debug({ module: name }, "module unloaded");
	}

	async unloadAll(): Promise<void> {
		for (const name of [...this.#loaded.keys()].reverse()) await this.unload(name);
	}

	async #runCleanups(loaded: Loaded): Promise<void> {
		for (const fn of loaded.cleanups.reverse()) {
			try {
				await fn();
			} catch (err) {
				this.#host.log.error({ err, module: loaded.def.name }, "module cleanup failed");
			}
		}
		loaded.cleanups.length = 0;
	}

	#makeApi(name: string, options: unknown, cleanups: Loaded["cleanups"]): ModuleApi<unknown> {
		const host = this.#host;
		const refAdd = (map: Map<string, number>, key: string) => {
			map.set(key, (map.get(key) ?? 0) + 1);
			cleanups.push(() => {
				const n = (map.get(key) ?? 1) - 1;
				if (n > 0) map.set(key, n);
				else map.delete(key);
			});
		};
		const listAdd = <T>(list: T[], item: T) => {
			list.push(item);
			cleanups.push(() => {
				const i = list.indexOf(item);
				if (i >= 0) list.splice(i, 1);
			});
		};
		return {
			name,
			host,
			options,
			log: host.log.child({ module: name }),
			hook(event, handler, priority) {
				cleanups.push(host.events.on(event, handler, priority));
			},
			addFeature: (ns) => refAdd(host.features, ns),
			addAccountFeature: (ns) => refAdd(host.accountFeatures, ns),
			addIdentity: (identity) => listAdd(host.identities, identity),
			addAccountIdentity: (identity) => listAdd(host.accountIdentities, identity),
			addExtension: (form: Element) => listAdd(host.extensions, form),
			keyval: (store) => host.keyval(store),
			map: (store) => host.map(store),
			archive: (store) => host.archive(store),
			send: (stanza) => host.server.router.route(stanza),
			reply: (origin, stanza) => {
				const to = stanza.attrs.to;
				if (origin && (to === undefined || to === origin.jid?.toString())) origin.send(stanza);
				else if (to !== undefined && stanza.attrs.from !== undefined)
					void host.server.router.route(stanza).catch((err: unknown) => {
						host.log.error({ err }, "reply failed");
					});
			},
			every(ms, fn) {
				const t = setInterval(fn, ms);
				t.unref();
				cleanups.push(() => clearInterval(t));
			},
			onUnload(fn) {
				cleanups.push(fn);
			},
		};
	}
}
