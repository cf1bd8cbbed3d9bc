/**
 * A virtual host: one domain with its own event bus, modules, sessions and stores. Hosts share
 * nothing but the server they run in; stores are opened per host so data never crosses.
 */
import type { AccountManager } from "../auth/accounts.ts";
import type {
	ArchiveStore,
	Json,
	KeyValStore,
	MapStore,
	StorageBackend,
} from "../storage/types.ts";
import type { Element } from "../xml/element.ts";
import type { ComponentConfig, HostConfig } from "./config/schema.ts";
import {
	type ClusterNotice,
	type ComponentPlacement,
	type Core,
	type DiscoIdentity,
	type DiscoItem,
	type Host,
	type HostModules,
	type Session,
	SM_ABANDON,
} from "./contracts.ts";
import { EventBus } from "./events.ts";
import type { Logger } from "./log.ts";

/** The core's `Host` (src/core/contracts.ts): a virtual host or a component. */
export class VirtualHost implements Host {
	readonly name: string;
	/**
	 * "host": a virtual host clients log in to. "component": a service domain
	 * (`[components."x"]`) the router reaches like a host, without accounts or sessions.
	 */
	readonly kind: "host" | "component";
	/** The `[components."x"]` table of a component. */
	readonly component: ComponentConfig | undefined;
	/** Where a cluster runs this component (set by its module; absent: the leader). */
	placement?: ComponentPlacement;
	/** The `[hosts."x"]` table in force: a reload that changes it replaces it (Server.reload). */
	config: HostConfig;
	readonly server: Core;
	readonly events = new EventBus();
	readonly log: Logger;
	/** Bound sessions: localpart -> resource -> session. */
	readonly sessions = new Map<string, Map<string, Session>>();
	/** Disco features of the host (XEP-0030), reference-counted so modules can unload cleanly. */
	readonly features = new Map<string, number>();
	/** Disco features advertised on every account's bare JID (e.g. PEP). */
	readonly accountFeatures = new Map<string, number>();
	readonly accountIdentities: DiscoIdentity[] = [];
	readonly identities: DiscoIdentity[] = [{ category: "server", type: "im", name: "Parley" }];
	/** XEP-0128 extended disco info forms on the host (e.g. XEP-0157 contact addresses). */
	readonly extensions: Element[] = [];
	/** XEP-0030 items of the host's disco#items (the components under it), by JID. */
	readonly discoItems = new Map<string, DiscoItem>();
	accounts!: AccountManager;
	/** A random secret kept in the host's storage (see Server.addHost). */
	secret: Buffer = Buffer.alloc(0);
	modules!: HostModules;

	constructor(name: string, config: HostConfig, server: Core, component?: ComponentConfig) {
		this.name = name;
		this.kind = component ? "component" : "host";
		this.component = component;
		this.config = config;
		this.server = server;
		this.log = server.log.child({ host: name });
		// A component is no IM server: its modules add their own identity (conference/text).
		if (component) this.identities.length = 0;
		else this.identities[0] = { category: "server", type: "im", name: server.config.server.name };
		// Another node could not resume one of our hibernating sessions (contracts.ts `abandon`).
		this.events.on(`cluster/${SM_ABANDON}`, ({ data }: ClusterNotice) => {
			const [user = "", previd = ""] = data.split("\n");
			for (const session of this.sessions.get(user)?.values() ?? []) session.abandon?.(previd);
		});
	}

	/** The server's storage, timed for metrics when the server offers that (Server.timedStorage). */
	get #storage(): StorageBackend {
		return this.server.timedStorage ?? this.server.storage;
	}

	keyval<T extends Json = Json>(store: string): KeyValStore<T> {
		return this.#storage.keyval<T>(this.name, store);
	}

	map<T extends Json = Json>(store: string): MapStore<T> {
		return this.#storage.map<T>(this.name, store);
	}

	archive<T extends Json = Json>(store: string): ArchiveStore<T> {
		return this.#storage.archive<T>(this.name, store);
	}

	/** Sessions of one account, bound resources only. */
	sessionsOf(user: string): Session[] {
		const m = this.sessions.get(user);
		return m ? [...m.values()] : [];
	}

	/** Whether TLS must be negotiated before authentication on this host (RFC 6120 §5.3.1). */
	get requireEncryption(): boolean {
		return this.config.require_encryption ?? this.server.config.auth.require_encryption;
	}
}
