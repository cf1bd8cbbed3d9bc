/**
 * The interfaces the core owns. Everything outside `core/` — transports (c2s, BOSH, WebSocket,
 * later s2s and external components), services (MUC, PubSub, upload), the cluster link,
 * the modules — sees the server through these and implements the ones that are theirs
 * (`Session`, `Listener`, `Connection`, `ClusterHook`). The core imports none of them back: the
 * composition root (src/app/) builds a server and hands it its parts.
 *
 * The types here refer to each other (a session has a host, a host has sessions), which is why
 * they live in one file: a file of interfaces only, so nothing here runs at import time.
 */
import type { Readable } from "node:stream";
import type { z } from "zod";
import type { AccountManager } from "../auth/accounts.ts";
import type { AuthFailureTracker, ConnectionLimiter } from "../security/limits.ts";
import type {
	ArchiveStore,
	Json,
	KeyValStore,
	MapStore,
	StorageBackend,
} from "../storage/types.ts";
import type { CertificateStore } from "../tls/certs.ts";
import type { Element } from "../xml/element.ts";
import type { StreamErrorCondition } from "../xmpp/errors.ts";
import type { JID, JIDCache } from "../xmpp/jid.ts";
import type { ComponentConfig, Config, HostConfig } from "./config/schema.ts";
import type { EventBus } from "./events.ts";
import type { Logger } from "./log.ts";

// ---------------------------------------------------------------------------------------------
// Sessions and connections

/**
 * What the router and the modules know of a client session, whatever carries it (TCP, TLS,
 * WebSocket, BOSH, or another node of the cluster). A transport never appears here.
 */
/** `Session.data` key: the session's connection broke and it waits to be resumed (XEP-0198 §5). */
export const HIBERNATING = "sm:hibernating";

export interface Session {
	readonly id: string;
	readonly host: Host;
	/** The full JID once a resource is bound (RFC 6120 §7). */
	readonly jid: JID | null;
	readonly remoteAddress: string;
	readonly secure: boolean;
	/** Sent initial presence and not yet unavailable (RFC 6121 §4.2, §4.5). */
	available: boolean;
	/** Priority of the last broadcast presence (RFC 6121 §4.7.2.3); meaningless unless available. */
	priority: number;
	/** The last available presence the client broadcast, as sent. */
	presence: Element | null;
	/** Requested the roster (RFC 6121 §2.1.6 "interested resource"). */
	interested: boolean;
	/** The cluster node holding the session, for a replica of another node's; absent for ours. */
	readonly node?: string;
	/**
	 * On a replica: the sessions of this node that this node itself showed the replica's
	 * available presence (RFC 6121 §4.2.2 to the user's new resource, §4.3.2 probe answers). Its
	 * node may not have known them yet; see {@link RemoteShownChange}.
	 */
	readonly shownTo?: Set<Session>;
	/** What carries a local client session now (a XEP-0198 resumption may change it); absent on a replica. */
	readonly transport?: ClientTransportKind;
	/**
	 * Per-session state for modules, keyed by module name (carbons on/off, CSI state, ...), plus
	 * `HIBERNATING` (true while a XEP-0198 session waits to be resumed), set by the stream.
	 */
	readonly data: Map<string, unknown>;
	send(stanza: Element): void;
	/** Ends the stream, with a stream error when a condition is given. */
	close(condition?: StreamErrorCondition, text?: string): void;
	/**
	 * A hibernating XEP-0198 session (`HIBERNATING`) whose client tried to resume it on another
	 * cluster node, got `<failed/>` there and binds afresh: end it now rather than at the end of
	 * its hibernation, so what it holds goes to the client's new session. `previd` must match.
	 */
	abandon?(previd: string): void;
}

/** The carriers of a client stream: TCP (STARTTLS or direct TLS), WebSocket (RFC 7395), BOSH (XEP-0206). */
export type ClientTransportKind = "tcp" | "websocket" | "bosh";

/**
 * `session/remote-unavailable` and `session/remote-presence` data, on the replica's host: another
 * node's session that was available went unavailable or ended (RFC 6121 §4.5.2), or has a new
 * presence while still available (§4.4.2: away, a new status). Its node sent that to the
 * sessions it knew of; `knew(local)` tells whether that included this node's `local` session
 * (false when unknown, e.g. its node died). A session that this node showed the replica's
 * presence to but that its node did not know yet would otherwise keep seeing the old one.
 */
export interface RemoteShownChange {
	session: Session;
	knew(local: Session): boolean;
}

/** `cluster/sm-abandon` data: the bare username and the `previd` a client failed to resume. */
export const SM_ABANDON = "sm-abandon";

/**
 * An open stream as the server sees it when it stops: it closes each one with
 * `system-shutdown` (RFC 6120 §4.9.3.22) and waits until what it was handling is done.
 */
export interface Connection {
	/**
	 * The host or component the stream is for, once its header named one: a reload that removes
	 * that domain closes the stream with `host-gone` (RFC 6120 §4.9.3.6).
	 */
	readonly domain?: string | undefined;
	close(condition?: StreamErrorCondition, text?: string): void;
	/** Resolves when no stanza of this stream is being handled. */
	whenIdle(): Promise<void>;
}

/**
 * What a module sees of a stream before authentication, with the `stream-features/preauth`
 * event (plus `features`) and `preauth-iq/<ns>:<name>` (plus `stanza`).
 */
export interface PreauthEvent {
	readonly host: Host;
	readonly remoteAddress: string;
	readonly secure: boolean;
	/**
	 * State of this stream kept between its pre-authentication events, keyed by module name
	 * (the XEP-0445 token a registration may use); gone with the stream.
	 */
	readonly data: Map<string, unknown>;
	/** Writes an element on the stream as is (replies carry no `from` before authentication). */
	send(el: Element): void;
	close(condition?: StreamErrorCondition, text?: string): void;
}

// ---------------------------------------------------------------------------------------------
// Hosts and components

export interface DiscoIdentity {
	category: string;
	type: string;
	name?: string;
}

/** A XEP-0030 item another entity's disco#items lists (a component under its parent host). */
export interface DiscoItem {
	jid: string;
	name?: string;
}

/** The modules loaded on one host; modules can be loaded and unloaded at runtime. */
export interface HostModules {
	readonly loaded: string[];
	isLoaded(name: string): boolean;
	load(name: string): Promise<void>;
	unload(name: string): Promise<void>;
	unloadAll(): Promise<void>;
}

/**
 * A virtual host, or a component: one domain with its own event bus, modules, sessions and
 * stores. A component (`kind: "component"`, `[components."x"]` in the config) is reached by the
 * router like a host but has no accounts and no sessions; the module its `type` names
 * implements it (MUC, PubSub, XEP-0363 upload and XEP-0114 external components). That module reads its
 * options from `component`, adds its identity and features, and claims the stanzas addressed to
 * its domain through the same events as on a host (`presence/full`, `message/bare`, `iq-get/...`).
 */
export interface Host {
	readonly name: string;
	readonly kind: "host" | "component";
	/** The `[components."x"]` table of a component. */
	readonly component: ComponentConfig | undefined;
	readonly config: HostConfig;
	readonly server: Core;
	readonly events: EventBus;
	readonly log: Logger;
	/** Bound sessions: localpart -> resource -> session. */
	readonly sessions: Map<string, Map<string, Session>>;
	/** Disco features of the host (XEP-0030), reference-counted so modules can unload cleanly. */
	readonly features: Map<string, number>;
	/** Disco features advertised on every account's bare JID (e.g. PEP). */
	readonly accountFeatures: Map<string, number>;
	/** Disco identities of every account's bare JID besides account/registered (PEP's pubsub/pep). */
	readonly accountIdentities: DiscoIdentity[];
	readonly identities: DiscoIdentity[];
	/** XEP-0128 extended disco info forms on the host (e.g. XEP-0157 contact addresses). */
	readonly extensions: Element[];
	/** XEP-0030 items of the host's disco#items (the components under it), by JID. */
	readonly discoItems: Map<string, DiscoItem>;
	/** The host's accounts; a component has none. */
	readonly accounts: AccountManager;
	/** A random secret kept in the host's storage, the same after a restart. */
	readonly secret: Buffer;
	readonly modules: HostModules;
	/** Whether TLS must be negotiated before authentication on this host (RFC 6120 §5.3.1). */
	readonly requireEncryption: boolean;
	keyval<T extends Json = Json>(store: string): KeyValStore<T>;
	map<T extends Json = Json>(store: string): MapStore<T>;
	archive<T extends Json = Json>(store: string): ArchiveStore<T>;
	/** Sessions of one account, bound resources only. */
	sessionsOf(user: string): Session[];
	/**
	 * Where a cluster runs this component's stanzas (issue 16); absent: on the leader. Its module
	 * sets it when it loads.
	 */
	placement?: ComponentPlacement;
}

/**
 * How the nodes of a cluster share a component (issue 16, docs/architecture.md "Components
 * across nodes"). `"leader"`: one node runs it (state held in memory, an external component's
 * socket). `"any"`: whichever node receives a stanza handles it (state only in shared storage:
 * HTTP upload). Otherwise the component is split into units (MUC rooms), each owned by one node
 * at a time through a lease in the cluster's engine (src/cluster/ownership.ts).
 */
export type ComponentPlacement = "leader" | "any" | OwnedUnits;

export interface OwnedUnits {
	/**
	 * The unit a stanza to `to` is for (a room's localpart, a pubsub node named in the payload),
	 * or null: any node answers it. Called for every stanza to the component: a lookup, not a parse.
	 */
	unitOf(to: JID, stanza: Element): string | null;
	/**
	 * Whether this node still needs unit `key` it owns (it holds state for it); asked at each
	 * heartbeat: the lease of a unit it does not need any more is released.
	 */
	holds(key: string): boolean;
	/**
	 * This node does not own `key` any more: it released it (not held), or found its lease lost
	 * (it was paused past it and another node may hold the unit now). Drop its state.
	 */
	lost(key: string): void;
	/**
	 * This node leaves the cluster and is about to release every unit: what it sends now (a MUC
	 * room's goodbye to occupants on other nodes) still reaches them.
	 */
	leaving?(): void;
	/** With each heartbeat: rewrites what the engine may have lost (the directory). */
	refresh?(): Promise<void>;
}

/** The leases of owned units and the directory the nodes share (src/cluster/ownership.ts). */
export interface ComponentOwners {
	/** How many units this node owns now (`parley_cluster_owned_rooms`). */
	readonly owned: number;
	/**
	 * The node that owns unit `key` of `host`; when none does, this node claims it. `fresh` reads
	 * the engine rather than this node's cache (a stanza another node passed on).
	 */
	ownerOf(host: Host, key: string, fresh: boolean): Promise<string>;
	/** Whether this node holds the lease of `key` (as of its last claim or renewal). */
	owns(host: Host, key: string): boolean;
	/** Ends this node's lease on `key` at once (the unit is gone). */
	release(host: Host, key: string): Promise<void>;
	/** Sets (or with null removes) this unit's entry of the component's shared directory. */
	publish(host: Host, key: string, entry: string | null): Promise<void>;
	/** Whether the directory has an entry for `key`. */
	has(host: Host, key: string): Promise<boolean>;
	/** Sets `key`'s entry unless it has one (a node seeding the directory from storage). */
	seed(host: Host, key: string, entry: string): Promise<void>;
	/** The directory: unit -> entry, with whether a live node owns the unit now. */
	directory(host: Host): Promise<Map<string, { entry: string; owned: boolean }>>;
}

/**
 * An external component's authenticated stream (XEP-0114, src/component/), as the module of its
 * domain sees it: the module writes the stanzas addressed to the domain to it.
 */
export interface ComponentLink {
	readonly remoteAddress: string;
	/** Writes a stanza (held in `jabber:client`) to the component. */
	send(stanza: Element): void;
	/** Ends the stream, with a stream error when a condition is given. */
	close(condition?: StreamErrorCondition, text?: string): void;
}

/**
 * `component/connect` on a component's bus, fired by the component listener once a handshake
 * (XEP-0114 §3) succeeded: the module that serves the domain claims it and keeps the link, or
 * sets `refused` (a second connection: `conflict`). `component/disconnect` (same shape) follows
 * when a link it kept ends.
 */
export interface ComponentConnectEvent {
	readonly host: Host;
	readonly link: ComponentLink;
	refused?: { condition: StreamErrorCondition; text: string };
}

/**
 * `host/added` on every component's bus when a reload adds a virtual host to a running server
 * (`Server.reload`): a component that follows the hosts' sessions (MUC leaves a room for a
 * session that ends) hooks the new host's bus too.
 */
export interface HostAddedEvent {
	readonly host: Host;
}

/**
 * `http/upload` on a component's bus: an HTTP request under `/upload/<domain>/` on the HTTP(S)
 * listener (src/http/), for the module of `<domain>` (XEP-0363 file upload). The listener only
 * carries it; the module claims it and sets `response`. Unclaimed, or claimed without a
 * response, it is a 404. The body is the request's own stream, never buffered by the listener.
 */
export interface HttpRequestEvent {
	readonly host: Host;
	/** "GET", "HEAD" or "PUT". */
	readonly method: string;
	/** The path below `/upload/<domain>/`, still percent-encoded: `<id>/<file name>`. */
	readonly path: string;
	/** The query string's parameters. */
	readonly query: URLSearchParams;
	/** Request headers, names in lower case. */
	readonly headers: Readonly<Record<string, string | string[] | undefined>>;
	/** The request body (PUT); read it or leave it (the connection is then closed). */
	readonly body: Readable;
	/** The client's address (behind a trusted proxy, the address it forwarded). */
	readonly ip: string;
	/** Aborted when the client goes away before the response is complete. */
	readonly signal: AbortSignal;
	response?: HttpResponse;
}

export interface HttpResponse {
	status: number;
	headers?: Record<string, string | number>;
	/** A file's stream for GET; a short text for errors; nothing for HEAD. */
	body?: string | Readable;
}

// ---------------------------------------------------------------------------------------------
// Routing

/** The stanza router (src/core/router.ts) as the transports and the modules use it. */
export interface StanzaRouter {
	/**
	 * A stanza from a bound client session, `from` already stamped. Resolves when it has been
	 * handled, so the session can process its stanzas in order (RFC 6120 §10.1).
	 */
	fromClient(session: Session, stanza: Element): Promise<void>;
	/** A stanza that carries its own `from` and `to` (a module, the server, another node). */
	route(stanza: Element, origin?: Session | null): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Listeners and the cluster: parts the composition root plugs in

/** A transport's listening side (TCP, TLS, HTTP, s2s, components; later the admin API). */
export interface Listener {
	/** A name for logs and `Server.port()`: "c2s", "c2s_direct_tls", "http", "https", ... */
	readonly kind: string;
	/** The bound port (the real one when the configuration says 0). */
	readonly port: number;
	listen(): Promise<void>;
	/** Stops accepting; the server closes the open streams before this. */
	close(): Promise<void>;
	/**
	 * A TLS listener takes `Core.certificates` again (a reload replaced them): new handshakes get
	 * the new certificates, connections already open keep theirs.
	 */
	reloadCertificates?(): void;
}

/** `cluster/<topic>` on a host's bus: another node changed something a module caches. */
export interface ClusterNotice {
	topic: string;
	data: string;
	node: string;
}

/**
 * The link to the other nodes of a cluster (src/cluster/), as the core, the streams and the
 * modules use it. Without `[cluster]` there is none and `Core.cluster` is null.
 */
export interface ClusterHook {
	/** This node's name (`cluster.node`, or the one made up when it is empty). */
	readonly node: string;
	/** This node runs the components placed on the leader (the live node that joined first). */
	readonly leader: boolean;
	readonly leaderNode: string;
	start(): Promise<void>;
	stop(): Promise<void>;
	/** A stanza for a component, passed to the node that runs it (or owns its room). */
	routeOn(node: string, stanza: Element): void;
	/** Fires `cluster/<topic>` with `data` on the host's bus of every other node. */
	notify(host: Host, topic: string, data: string): void;
	/** A local session was bound or changed what other nodes replicate. */
	sessionChanged(session: Session): void;
	sessionClosed(session: Session): void;
	/**
	 * Has `node` answer a request of `kind` with the handler registered there by `answer` (a
	 * BOSH body for a session that node holds). Resolves with the answer, or null when no node of
	 * that name listens or none answered within `timeoutMs`.
	 */
	ask(node: string, kind: string, payload: Buffer, timeoutMs: number): Promise<Buffer | null>;
	/** Answers other nodes' requests of `kind` (see `ask`). */
	answer(kind: string, handler: (payload: Buffer) => Promise<Buffer>): void;
	/**
	 * Resolves once every stanza routed to other nodes so far is held by the engine (Redis), so
	 * that acknowledging it (XEP-0198 `<a/>`) cannot outrun it; undefined when nothing is on its way.
	 */
	settled?(): Promise<void> | undefined;
	/** The nodes in the cluster's registry, with their heartbeats (`parley cluster status`). */
	status?(): Promise<ClusterStatus>;
	/**
	 * Sharded registry (`cluster.registry = "sharded"`): makes `host.sessions` hold `user`'s
	 * sessions on other nodes before the caller reads them. Undefined when it already does
	 * (the synchronous path); absent with the replicated registry, where it always does.
	 */
	resolve?(host: Host, user: string): Promise<void> | undefined;
	/** {@link resolve} for many bare JIDs (`user@domain`, other domains ignored) in one round trip. */
	resolveAll?(bareJids: Iterable<string>): Promise<void> | undefined;
	/**
	 * Sharded registry: sessions and online users (bare JIDs with a session) of `host` in the
	 * whole cluster, read from Redis. Undefined with the replicated registry, where
	 * `host.sessions` holds every node's sessions.
	 */
	onlineCounts?(host: Host): Promise<{ sessions: number; users: number }> | undefined;
	/** Sharded registry: the full JIDs of `host`'s sessions in the whole cluster (as above). */
	onlineJids?(host: Host): Promise<string[]> | undefined;
	/**
	 * For `GET /metrics`: other nodes' sessions this node holds (replicas, or cached with the
	 * sharded registry), bare JIDs cached and lookups made by the sharded registry (0 otherwise).
	 */
	registryStats?(): { remoteSessions: number; cachedJids: number; lookups: number };
	/** Components split over the nodes (MUC rooms): who owns which unit (issue 16). */
	readonly owners?: ComponentOwners;
	/** Counters for limits that hold across the nodes (src/cluster/counters.ts); set once started. */
	readonly counters?: ClusterCounterApi | null;
}

/** A counter's rolling window of spending (the uploads' bytes per day). */
export interface CounterWindow {
	ms: number;
	/** Spending is summed per bucket of this length (ms). */
	bucketMs: number;
}

/**
 * Cluster-wide counters (src/cluster/counters.ts): each node's share is its own and is released
 * when the node dies (the leader's node-death cleanup) or stops; a named `unit` belongs to no
 * node and stays (added twice, counted once); what is `spend`t counts for its window.
 */
export interface ClusterCounterApi {
	/** Adds `by` unless the total would pass `max` (0: no limit): true, or what it found. */
	tryAdd(
		name: string,
		by: number,
		max: number,
		o?: { unit?: string; window?: CounterWindow },
	): Promise<true | { total: number; spent: { at: number; amount: number }[] }>;
	release(name: string, by: number, o?: { unit?: string; window?: CounterWindow }): Promise<void>;
	spend(name: string, amount: number, window: CounterWindow): Promise<void>;
	total(name: string, window?: CounterWindow): Promise<number>;
	/** True for the first caller of the cluster (again after Redis lost its data). */
	once(mark: string): Promise<boolean>;
}

/** A node as the cluster's registry in Redis shows it (src/cluster/status.ts). */
export interface ClusterNodeStatus {
	node: string;
	/** When it joined (ms since the epoch). */
	since: number;
	/** Its last heartbeat (ms since the epoch); 0 if it never wrote one. */
	last_heartbeat: number;
	/** Age of the last heartbeat in ms, as seen when the registry was read. */
	heartbeat_age: number;
	/** Sessions bound on that node (its own streams, not replicas), as of its last heartbeat. */
	sessions: number;
	leader: boolean;
	/**
	 * alive: heartbeat within two intervals; late: older, but its `alive` key has not expired
	 * yet; dead: the key expired (older than `node_timeout`), the leader is ending its sessions.
	 */
	health: "alive" | "late" | "dead";
}

export interface ClusterStatus {
	prefix: string;
	nodes: ClusterNodeStatus[];
}

/**
 * Federation (src/s2s/): where the router sends a stanza for a domain that is not ours. The
 * stanza's `from` is a local address; failures come back to it as error stanzas through the
 * router (RFC 6120 §8.3), never silently dropped.
 */
export interface RemoteDomains {
	send(stanza: Element, from: JID, to: JID): void;
	start(): Promise<void>;
	/** Closes every server-to-server stream (`system-shutdown`). */
	stop(): Promise<void>;
	/**
	 * A reload took a local domain away: the streams for it end, incoming ones with `host-gone`
	 * (RFC 6120 §4.9.3.6), so a peer that still sends to it opens a new stream and hears why.
	 */
	domainGone?(domain: string): void;
	/** How many server-to-server streams are open, each way (read when metrics are scraped). */
	streamCounts?(): { incoming: number; outgoing: number };
}

// ---------------------------------------------------------------------------------------------
// Metrics (src/core/metrics.ts; docs/architecture.md "Metrics")

/** The streams whose stanzas and dead peers are counted apart. */
export type StreamKind = "c2s" | "s2s" | "component";

/**
 * What the parts count, through `Core.metrics`, without knowing the metrics library. Each call is
 * a few integer increments (what is costly is done when metrics are scraped), so it sits on the
 * hot path. Sessions, hibernating sessions, s2s streams, refused connections, memory and event
 * loop lag are read at scrape time from where they live and need no call.
 */
export interface MetricsRecorder {
	/** A stanza (`message`, `presence` or `iq`; anything else is ignored) read from a stream. */
	stanzaIn(stream: StreamKind, name: string): void;
	/** A stanza written to a stream. */
	stanzaOut(stream: StreamKind, name: string): void;
	/** A SASL exchange ended (`mechanism` is one we offer, or "" when none was chosen). */
	auth(mechanism: string, ok: boolean): void;
	/** A peer stopped answering liveness checks and its connection was dropped (issue 21). */
	deadPeer(stream: StreamKind): void;
	/**
	 * A login or stream refused by a limit, named by its configuration key
	 * (`anonymous.max_sessions`, `s2s.max_streams_per_domain`, ...). `limits.connections_per_ip`
	 * is read from the `ConnectionLimiter` instead.
	 */
	refused(limit: string): void;
	/** An external component's stream authenticated (+1) or ended after that (-1). */
	componentStream(delta: 1 | -1): void;
}

// ---------------------------------------------------------------------------------------------
// The server instance

/**
 * A server instance as everything outside the core sees it (src/core/server.ts implements it).
 * It holds the hosts and components, the router, the open streams and the shared limits.
 */
export interface Core {
	readonly config: Config;
	readonly log: Logger;
	readonly hosts: Map<string, Host>;
	/** Component domains: reached by the router, no client logs in. */
	readonly components: Map<string, Host>;
	readonly router: StanzaRouter;
	readonly jids: JIDCache;
	/** Open client streams, for shutdown; a transport adds each stream it creates. */
	readonly streams: Set<Connection>;
	/** `limits.connections_per_ip`: every connection of an address. */
	readonly connectionLimiter: ConnectionLimiter;
	/** `limits.unauthenticated_per_ip`: an address's connections until they authenticate. */
	readonly unauthenticatedLimiter: ConnectionLimiter;
	readonly authFailures: AuthFailureTracker;
	readonly storage: StorageBackend;
	/** `storage` with each operation timed for the metrics; hosts open their stores through it. */
	readonly timedStorage?: StorageBackend;
	readonly certificates: CertificateStore;
	readonly cluster: ClusterHook | null;
	/** Federation, when server-to-server is on; null: remote domains are unreachable. */
	readonly remote: RemoteDomains | null;
	/** The host used when a stream names none (only for the stream header of an error). */
	readonly defaultHost: string;
	/** The host or component serving `domain`, if it is one of ours. */
	local(domain: string): Host | undefined;
	/** Reloads every component's modules from storage (a node that becomes the leader). */
	restartComponents(): Promise<void>;
	/** The admin operations (src/core/commands.ts), for the surfaces that offer them. */
	readonly commands: readonly AnyAdminCommand[];
	/** What the parts count (`metrics.enabled = false`: calls that do nothing). */
	readonly metrics: MetricsRecorder;
}

// ---------------------------------------------------------------------------------------------
// XEP-0386 Bind 2: session features a client enables in its login

/**
 * `bind2/features` on a host's bus, while a stream builds its SASL2 features: a module that can
 * enable something inside a Bind 2 request adds its namespace (`<feature var>`, XEP-0386 §4.1).
 * Handlers must push synchronously: the features are written right after.
 */
export interface Bind2FeaturesEvent {
	readonly host: Host;
	readonly features: string[];
}

/**
 * `bind2/bind` on a host's bus, when a client binds through Bind 2 (XEP-0386 §4.2): `request` is
 * its `<bind xmlns='urn:xmpp:bind:0'>`, the module whose namespace is in it enables its feature
 * on `session` (not yet reachable by anyone) and may add its answer to `bound`.
 */
export interface Bind2Event {
	readonly session: Session;
	readonly request: Element;
	readonly bound: Element;
}

// ---------------------------------------------------------------------------------------------
// Admin operations (src/core/commands.ts: defined once, offered over HTTP, the CLI and ad-hoc)

/** Who may run a command: `admin` (a server admin), or `user` (any account, on itself). */
export type CommandRole = "admin" | "user";

/** Who runs a command, and on which server. */
export interface CommandContext {
	readonly core: Core;
	/**
	 * The bare JID of the admin or user who runs it, or `"cli"` for the operator at the
	 * machine (the CLI with access to the configuration); the audit log names it.
	 */
	readonly actor: string;
	/** Set when the command arrived on a host (ad-hoc): an admin of that host runs it. */
	readonly host?: string;
}

/** How the command shows in the HTTP API: `path` may name arguments as `:name`. */
export interface HttpBinding {
	readonly method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
	readonly path: string;
	/**
	 * Success status: 200 unless said (201 for a creation, 204 for no body, 205 for no body and
	 * "reset what you show": a factory reset).
	 */
	readonly status?: 200 | 201 | 202 | 204 | 205;
}

export interface AdminCommand<Args extends z.ZodObject = z.ZodObject, Result = unknown> {
	/** Stable dotted name, e.g. `user.add`: the CLI's words (`parley user add`) come from it. */
	readonly name: string;
	/** One line, shown in `--help`, the OpenAPI summary and the ad-hoc command's name. */
	readonly description: string;
	readonly args: Args;
	readonly role: CommandRole;
	readonly http: HttpBinding;
	/**
	 * The XEP-0050 node, when the command is offered as an ad-hoc command: XEP-0133's node where
	 * the XEP defines the operation (`http://jabber.org/protocol/admin#add-user`), else a
	 * Parley one (`urn:parley:admin:...`). Absent: not offered over XMPP.
	 */
	readonly adhoc?: string;
	run(ctx: CommandContext, args: z.infer<Args>): Promise<Result>;
}

/** Any command, whatever its arguments (the list the surfaces walk). */
// biome-ignore lint/suspicious/noExplicitAny: a list of commands of different argument types; each is checked where it is defined.
export type AnyAdminCommand = AdminCommand<any, unknown>;

// ---------------------------------------------------------------------------------------------
// Spam defence (issue 19): the policies of a MUC service's parent host

/**
 * `muc/admit` on the bus of a MUC component's parent host, before the service lets `from` join
 * a room (available presence to room@service/nick), send it a groupchat message, or send a
 * private message through it. A policy (the spam module's block lists) claims the event to
 * refuse: the sender gets `forbidden`. Members, admins and owners are asked about too; the
 * policy decides what their `affiliation` is worth.
 */
export interface MucAdmitEvent {
	readonly room: JID;
	readonly from: JID;
	readonly kind: "join" | "groupchat" | "private";
	readonly affiliation: "owner" | "admin" | "member" | "outcast" | "none";
	/** A join to a room that does not exist: it would create it (XEP-0045 §10.1). */
	readonly creates: boolean;
	/**
	 * How to refuse, set by the policy that claims the event: a rate limit answers
	 * policy-violation of type wait (RFC 6120 §8.3.3.12); unset, `forbidden` (auth).
	 */
	refusal?: { condition: "forbidden" | "policy-violation"; type: "auth" | "wait"; text: string };
}
