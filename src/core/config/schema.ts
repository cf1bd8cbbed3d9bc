/**
 * The configuration file's shape. Keys are written in TOML as snake_case and kept that way in
 * code, so that an error message, the docs and the code all name a setting the same way.
 *
 * Every key has a default: `parley serve` runs with no file at all. Unknown keys are errors
 * (`strictObject`), so a typo never silently falls back to a default.
 */
import { z } from "zod";
import { addressMatcher } from "../../security/addresses.ts";

const port = z.number().int().min(0).max(65535);

const listener = (defaultPort: number, defaultEnabled = true, defaultAddress = "::") =>
	z
		.strictObject({
			enabled: z.boolean().default(defaultEnabled),
			address: z.string().default(defaultAddress),
			port: port.default(defaultPort),
		})
		.prefault({});

const tlsFiles = z.strictObject({
	cert: z.string().describe("path to a PEM certificate chain"),
	key: z.string().describe("path to a PEM private key"),
});

export const DEFAULT_HOST_MODULES = [
	"disco",
	"ping",
	"adhoc",
	"presence",
	"roster",
	"version",
	"time",
	"vcard",
	"private",
	"last",
	"contact_info",
	"caps",
	"offline",
	"carbons",
	"blocking",
	"spam",
	"pep",
	"push",
	"account",
] as const;

const host = z.strictObject({
	enabled: z.boolean().default(true),
	/** Modules loaded for this host. */
	modules: z.array(z.string()).default([...DEFAULT_HOST_MODULES]),
	/** Per-module options, `[hosts."example.org".module_options.ping]`. */
	module_options: z.record(z.string(), z.record(z.string(), z.unknown())).default({}),
	/** RFC 6120 §5.3.1: STARTTLS is mandatory-to-negotiate unless this is false. */
	require_encryption: z.boolean().optional(),
	tls: tlsFiles.optional(),
	/**
	 * How clients log in (Prosody's name): "accounts" (SCRAM and PLAIN against stored accounts)
	 * or "anonymous" (SASL ANONYMOUS only, RFC 4505 / XEP-0175: every login is a fresh random
	 * JID whose data lives in memory and goes when its session ends).
	 */
	authentication: z.enum(["accounts", "anonymous"]).default("accounts"),
	/** Limits of an anonymous host (`authentication = "anonymous"`); ignored otherwise. */
	anonymous: z
		.strictObject({
			/** Concurrent anonymous sessions on this host (the whole cluster); 0 = unlimited. */
			max_sessions: z.number().int().min(0).default(1000),
			/** Concurrent anonymous sessions from one IP address; 0 = unlimited. */
			max_sessions_per_ip: z.number().int().min(0).default(16),
			/** May guests send stanzas to other domains over federation (Prosody: allow_anonymous_s2s)? */
			allow_s2s: z.boolean().default(false),
			/**
			 * May guests address the users of this server's hosts (messages, presence, IQs to
			 * `user@host`)? false: only rooms and other services (components) and the servers
			 * themselves, as a meeting or support-room deployment wants.
			 */
			allow_local_users: z.boolean().default(true),
		})
		.prefault({}),
});

/** The module every anonymous host loads, whatever its `modules` list says (src/modules/anonymous.ts). */
export const ANONYMOUS_MODULE = "anonymous";

/** The hosts with `authentication = "anonymous"`: their stores live in memory (storage routing). */
export function anonymousHosts(config: Pick<Config, "hosts">): string[] {
	return Object.entries(config.hosts)
		.filter(([, h]) => h.authentication === "anonymous")
		.map(([name]) => name);
}

export type HostConfig = z.infer<typeof host>;

/**
 * XEP-0045 room settings a new room starts with (the owner may change them with the
 * muc#owner form, XEP-0045 §10.2). Persistent rooms keep what the owner chose.
 */
const roomDefaults = z
	.strictObject({
		/** XEP-0045 §4.2 persistent vs temporary (destroyed when the last occupant leaves). */
		persistent: z.boolean().default(false),
		/** Listed in the service's disco#items (§4.2 public vs hidden). */
		public: z.boolean().default(true),
		members_only: z.boolean().default(false),
		moderated: z.boolean().default(false),
		/** Who may see occupants' real JIDs (§4.2 non-anonymous / semi-anonymous). */
		whois: z.enum(["anyone", "moderators"]).default("moderators"),
		/** Participants (not only moderators) may change the subject (§8.1). */
		change_subject: z.boolean().default(false),
		/** Occupants (not only moderators) may send mediated invitations (§7.8.2). */
		allow_invites: z.boolean().default(false),
		/** Who may send private messages (§7.5). */
		allow_pm: z.enum(["anyone", "participants", "moderators", "none"]).default("anyone"),
		/** Messages kept for the history sent on entering (§7.2.14); at most `max_history`. */
		history_length: z.number().int().min(0).default(20),
		/** Occupants; at most the service's `max_occupants`. */
		max_occupants: z.number().int().min(1).default(200),
		/**
		 * XEP-0313: the room archives its messages (muc#roomconfig_enablearchiving). Off unless
		 * the service or the room's owner turns it on, as Prosody's muc_mam and ejabberd ship.
		 */
		archive: z.boolean().default(false),
		/**
		 * XEP-0045 §7.12: users who registered a nickname with the room (§7.10) must enter
		 * under it (parley#roomconfig_enforcenick). Others can never take it either way.
		 */
		enforce_reserved_nicks: z.boolean().default(false),
	})
	.prefault({});

/**
 * `[components."conference.example.org"]`: a service on its own domain, reached through the
 * router like a host but without accounts. The `type` chooses the service and the module that
 * runs it (`COMPONENT_MODULES`): `"muc"` is XEP-0045 Multi-User Chat, `"external"` a XEP-0114
 * component that connects to the component listener, `"pubsub"` a XEP-0060 service, `"upload"`
 * XEP-0363 HTTP File Upload. Each type is its own table of keys.
 */
const componentBase = {
	enabled: z.boolean().default(true),
	/**
	 * The host whose disco#items lists this service (and, for MUC, whose users count as
	 * "local"); by default the domain without its first label, when that is a host here.
	 */
	parent_host: z.string().optional(),
};

const mucComponent = z.strictObject({
	type: z.literal("muc"),
	...componentBase,
	/** The name of the conference/text identity in disco#info (XEP-0030). */
	name: z.string().default("Chatrooms"),
	/** Who may create rooms: anyone, users of the parent host, or the `admins` only. */
	room_creation: z.enum(["anyone", "local", "admins"]).default("anyone"),
	/** Bare JIDs that are owners of every room (and may always create rooms). */
	admins: z.array(z.string()).default([]),
	/** Rooms one bare JID may have created and that still exist; 0 = unlimited. */
	max_rooms_per_user: z.number().int().min(0).default(100),
	/** Rooms on the service; 0 = unlimited. */
	max_rooms: z.number().int().min(0).default(0),
	/** Highest `maxusers` an owner may set. */
	max_occupants: z.number().int().min(1).default(1000),
	/** Highest `historylength` an owner may set. */
	max_history: z.number().int().min(0).default(100),
	/** Characters in a room nickname. */
	max_nick_length: z.number().int().min(1).max(1023).default(64),
	/** Characters in a subject, a room name or a room description. */
	max_subject_length: z.number().int().min(1).default(1024),
	/** Seconds a newly created reserved room stays locked before it is destroyed (§10.1.3). */
	room_lock_timeout: z.number().positive().default(300),
	/**
	 * How long a destroyed room's name stays held for its former owners ("30d", seconds; 0
	 * keeps none): others get `gone` when they try to create it.
	 */
	room_tombstone_time: z.union([z.number().min(0), z.string()]).default("30d"),
	/**
	 * XEP-0045 §15.5.4 muc#roominfo_logs: where a room's archive can be read on the web, a
	 * template in which `{room}` stands for the room's name (its localpart, URL-encoded) and
	 * `{service}` for this component's domain. Given for rooms that archive and are public, open
	 * and without a password. "" (the default): none, as Parley serves no web logs itself.
	 */
	logs_url: z
		.string()
		.regex(/^(https?:\/\/\S+)?$/, "an http(s) URL template, or empty")
		.default(""),
	/** XEP-0486: characters of a room's vCard (its avatar, base64, included). */
	max_room_vcard_size: z.number().int().min(1).default(131_072),
	/** XEP-0045 §7.13: seconds a visitor waits between two voice requests to one room. */
	voice_request_interval: z.number().min(0).default(60),
	/** Room messages older than this leave the archives: "1y", "30d", seconds, or "never". */
	archive_expire_after: z.union([z.number().positive(), z.string()]).default("never"),
	room_defaults: roomDefaults,
});

/**
 * `type = "external"`: a XEP-0114 component (a gateway, a bot, a service written elsewhere)
 * that connects to `[listeners.component]` and authenticates with the shared `secret`.
 */
const externalComponent = z.strictObject({
	type: z.literal("external"),
	...componentBase,
	/** The name of the item in the parent host's disco#items (XEP-0030); none by default. */
	name: z.string().optional(),
	/** XEP-0114 §3: the shared secret of the handshake. */
	secret: z.string().min(1).describe("the shared secret the component authenticates with"),
	/** Stanzas to any subdomain (`x.gateway.example.org`) go to the component too, and it may send from them. */
	subdomains: z.boolean().default(false),
});

/**
 * `type = "pubsub"`: a XEP-0060 publish-subscribe service (feeds, bots, IoT, shared block
 * lists) on its own domain. Nodes and items are kept in the component's stores.
 */
const pubsubComponent = z.strictObject({
	type: z.literal("pubsub"),
	...componentBase,
	/** The name of the pubsub/service identity in disco#info (XEP-0030). */
	name: z.string().default("Publish-Subscribe"),
	/** Who may create nodes: anyone, users of the parent host, or the `admins` only. */
	node_creation: z.enum(["anyone", "local", "admins"]).default("local"),
	/** Bare JIDs that are owners of every node (and may always create nodes). */
	admins: z.array(z.string()).default([]),
	/** Nodes on the service. */
	max_nodes: z.number().int().min(1).default(10_000),
	/** Items a node may keep: what `pubsub#max_items = max` means, and the highest number allowed. */
	max_items: z.number().int().min(1).default(10_000),
	/** `pubsub#max_items` of a node created without saying. */
	default_max_items: z.number().int().min(1).default(256),
	/** Bytes of one item's payload at most (`pubsub#max_payload_size` can only lower it). */
	max_payload_size: z.number().int().min(1).default(65_536),
	/** Subscriptions one node may hold. */
	max_subscriptions_per_node: z.number().int().min(1).default(10_000),
});

/**
 * `type = "upload"`: XEP-0363 HTTP File Upload. Clients ask it for a slot over XMPP and PUT the
 * file to Parley's own HTTP listener (or to `url_base`, a reverse proxy in front of it); the
 * files live under `directory`, their index in the component's `upload_files` store.
 */
const uploadComponent = z.strictObject({
	type: z.literal("upload"),
	...componentBase,
	/** The name of the store/file identity in disco#info (XEP-0030). */
	name: z.string().default("File upload"),
	/** Bytes of one file at most (advertised as max-file-size, XEP-0363 §3). */
	max_file_size: z.number().int().min(1).default(104_857_600),
	/** Bytes one user may keep stored at once, all files together; 0 = unlimited. */
	quota: z.number().int().min(0).default(2_147_483_648),
	/** Bytes one user may upload in any 24 hours; 0 = unlimited. */
	daily_quota: z.number().int().min(0).default(1_073_741_824),
	/**
	 * Uploads (PUTs) in progress from one client address at once (IPv6: per /64); more get 429.
	 * 0 = unlimited.
	 */
	ip_max_uploads: z.number().int().min(0).default(10),
	/**
	 * Bytes one client address (IPv6: per /64) may PUT in any 24 hours, whichever accounts the
	 * slots are for; past it 429 with Retry-After. 0 = unlimited.
	 */
	ip_daily_quota: z.number().int().min(0).default(10_737_418_240),
	/** Seconds an uploaded file is kept; 0 = for ever. */
	expire_after: z.number().min(0).default(604_800),
	/** Seconds a slot's PUT URL stays valid after it was handed out. */
	slot_lifetime: z.number().positive().default(300),
	/** Seconds between two sweeps that delete expired files. */
	cleanup_interval: z.number().positive().default(3600),
	/**
	 * Domains whose users may ask for slots; empty: the parent host's (every host's of this
	 * server when there is no parent host).
	 */
	allowed_domains: z.array(z.string()).default([]),
	/**
	 * The URLs' common start, up to `/<id>/<file name>`: where clients reach this service's HTTP
	 * paths (`/upload/<domain>` on the http/https listener), e.g. through a reverse proxy. Unset:
	 * `https://<domain>:<listeners.https.port>/upload/<domain>` (http and its port when https is off).
	 */
	url_base: z
		.string()
		.regex(/^https?:\/\/[^/?#]+(\/[^?#]*)?$/, "an http:// or https:// URL without query")
		.optional(),
	/** Where the files are written; relative to server.data_dir. Default: upload/<domain>. */
	directory: z.string().optional(),
});

/** Chosen by `type`: the keys of the other types are unknown keys there. */
const component = z.discriminatedUnion("type", [
	mucComponent,
	externalComponent,
	pubsubComponent,
	uploadComponent,
]);

export type MucComponentConfig = z.infer<typeof mucComponent>;
export type ExternalComponentConfig = z.infer<typeof externalComponent>;
export type PubsubComponentConfig = z.infer<typeof pubsubComponent>;
export type UploadComponentConfig = z.infer<typeof uploadComponent>;
export type ComponentConfig = z.infer<typeof component>;

/** The module a component of each type runs (`Server.addComponent` loads it on the component). */
export const COMPONENT_MODULES = {
	muc: "muc",
	external: "external_component",
	pubsub: "pubsub",
	upload: "upload",
} as const satisfies Record<ComponentConfig["type"], string>;

/** The keys that choose and set up one storage backend (the [storage] table itself, and each
 * [storage.backends.<name>]). */
const backendFields = {
	backend: z.enum(["sqlite", "memory", "postgres"]).default("sqlite"),
	/** SQLite file, relative to server.data_dir. */
	path: z.string().default("parley.sqlite"),
	/** PostgreSQL URL (backend "postgres"), e.g. "postgres://parley@127.0.0.1/parley". */
	url: z.string().optional(),
	/** PostgreSQL schema holding Parley's tables; created when missing. */
	schema: z
		.string()
		.regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/)
		.default("public"),
	/** PostgreSQL connections kept in the pool. */
	pool_size: z.number().int().min(1).default(10),
	/** Seconds to wait for a PostgreSQL connection before a request fails. */
	connect_timeout: z.number().positive().default(5),
};

const needsUrl = {
	check: (s: { backend: string; url?: string | undefined }) =>
		s.backend !== "postgres" || s.url !== undefined,
	message: 'url is required when backend is "postgres"',
};

/** The backend [storage] itself describes; the name routes use for it. */
export const DEFAULT_BACKEND = "default";

/**
 * A reference to a backend by name. Checked against [storage.backends] by the storage table's
 * refinement. The union (of one member) only keeps the loader from answering "expected a
 * string" for a string that names no backend: it then prints the refinement's message.
 */
const backendRef = z.union([z.string().min(1)]);

/** Store name -> backend name. */
const storeRoutes = z.record(z.string(), backendRef).default({});

const storage = z
	.strictObject({
		...backendFields,
		/** Further backends by name: `[storage.backends.pg] backend = "postgres"`. */
		backends: z
			.record(
				z.string().regex(/^[A-Za-z0-9_-]+$/),
				// A union of one, like backendRef, so that the name check below prints its message.
				z.union([
					z.strictObject(backendFields).refine(needsUrl.check, {
						message: needsUrl.message,
						path: ["url"],
					}),
				]),
			)
			.default({}),
		/** Per store, for every host: `[storage.stores] offline = "cache"`. */
		stores: storeRoutes,
		/** Per host: `[storage.hosts."example.org"] default = "pg"`, and its own `stores`. */
		hosts: z
			.record(
				z.string(),
				// A union of one, like backendRef: so that "not a host" is printed as such.
				z.union([z.strictObject({ default: backendRef.optional(), stores: storeRoutes })]),
			)
			.default({}),
	})
	.refine(needsUrl.check, {
		message: 'storage.url is required when storage.backend is "postgres"',
		path: ["url"],
	})
	.superRefine((s, ctx) => {
		const known = [DEFAULT_BACKEND, ...Object.keys(s.backends)];
		if (Object.hasOwn(s.backends, DEFAULT_BACKEND)) {
			ctx.addIssue({
				code: "custom",
				path: ["backends", DEFAULT_BACKEND],
				message: `"${DEFAULT_BACKEND}" is the backend [storage] itself describes; choose another name`,
			});
		}
		const check = (path: (string | number)[], name: string | undefined) => {
			if (name === undefined || known.includes(name)) return;
			ctx.addIssue({
				code: "custom",
				path,
				message: `no such storage backend (known: ${known.join(", ")})`,
			});
		};
		for (const [store, name] of Object.entries(s.stores)) check(["stores", store], name);
		for (const [host, h] of Object.entries(s.hosts)) {
			check(["hosts", host, "default"], h.default);
			for (const [store, name] of Object.entries(h.stores)) {
				check(["hosts", host, "stores", store], name);
			}
		}
	})
	.prefault({});

export const configSchema = z
	.strictObject({
		server: z
			.strictObject({
				data_dir: z.string().default("./data"),
				/** Written in `<stream:stream id>` logs and in disco/version answers. */
				name: z.string().default("Parley"),
				/**
				 * Processes serving clients on this machine: a number, or "auto" for one per core.
				 * More than 1 runs a local cluster (see [cluster]), which needs shared storage
				 * (SQLite or PostgreSQL, not memory) and Redis.
				 */
				workers: z.union([z.literal("auto"), z.number().int().min(1).max(256)]).default(1),
			})
			.prefault({}),
		s2s: z
			.strictObject({
				/**
				 * Where to connect for a remote domain, before DNS: `"domain" = "host:port"` (a
				 * federation of known servers, a test lab on loopback); `"tls:host:port"` for a
				 * peer's XEP-0368 direct TLS port.
				 */
				routes: z
					.record(
						z.string(),
						z
							.string()
							.regex(
								/^(tls:)?(\[[0-9A-Fa-f:.]+\]|[^:\s]+):\d{1,5}$/,
								"host:port, [v6]:port, or tls:host:port for direct TLS",
							),
					)
					.default({}),
				/** TLS is required on every server-to-server stream, both ways (RFC 6120 §5.3.1). */
				require_encryption: z.boolean().default(true),
				/**
				 * Peers must prove their domain with a valid certificate (SASL EXTERNAL, RFC 6120
				 * §13.7.2; outgoing, the peer's certificate must verify): no dialback.
				 */
				secure_auth: z.boolean().default(false),
				/** Domains held to `secure_auth` even when it is off. */
				secure_domains: z.array(z.string()).default([]),
				/** Domains allowed dialback even when `secure_auth` is on. */
				insecure_domains: z.array(z.string()).default([]),
				/** Extra trusted certificate authorities (PEM file) for peers, beside the system's. */
				ca_file: z.string().optional(),
				/** Seconds to set up an outgoing stream (DNS, TCP, TLS, authentication) before giving up. */
				connect_timeout: z.number().positive().default(30),
				/** Seconds an outgoing stream with no traffic stays open. */
				idle_timeout: z.number().positive().default(300),
				/**
				 * Seconds without a sign of life on an outgoing stream before the remote domain is
				 * pinged (XEP-0199), to find streams that died without closing (issue 21); 0: off.
				 */
				idle_ping: z.number().min(0).default(60),
				/** Seconds the remote server has to answer; without an answer the stream is dropped. */
				ping_timeout: z.number().positive().default(30),
				/** Stanzas waiting for an outgoing stream to a domain before more are bounced. */
				queue_size: z.number().int().min(1).default(1000),
				/** Incoming streams one remote domain may hold open at once. */
				max_streams_per_domain: z.number().int().min(1).default(10),
				/** Remote domains never federated with (exact, or a parent of the domain). */
				blocked_domains: z.array(z.string()).default([]),
				/** When not empty, the only remote domains federated with. */
				allowed_domains: z.array(z.string()).default([]),
			})
			.prefault({}),
		cluster: z
			.strictObject({
				/** Join a cluster: sessions and stanzas are shared with the other nodes through Redis. */
				enabled: z.boolean().default(false),
				/** The Redis server the nodes share (pub/sub and the session registry). */
				redis: z
					.string()
					.regex(/^rediss?:\/\//, "a redis:// or rediss:// URL")
					.default("redis://127.0.0.1:6379"),
				/**
				 * A Redis Cluster instead (docs/scaling.md "Redis Cluster"): some of its nodes, as
				 * `host:port` or `redis://[user:password@]host:port` (`rediss://` for TLS; the first
				 * one's credentials and TLS apply to all). Not empty: `redis` is not used.
				 */
				redis_cluster: z
					.array(
						z
							.string()
							.regex(
								/^(rediss?:\/\/([^@/]*@)?)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}\/?$/,
								"host:port, or a redis:// or rediss:// URL with a port",
							),
					)
					.default([]),
				/** Namespace of the cluster's keys and channels; one per cluster sharing a Redis. */
				prefix: z
					.string()
					.regex(/^[A-Za-z0-9_.:-]+$/)
					.default("parley"),
				/** This node's name, unique in the cluster; empty: host name, process id and a random tag. */
				node: z
					.string()
					.regex(/^[A-Za-z0-9_.-]*$/)
					.default(""),
				/** Seconds between a node's heartbeats. */
				heartbeat: z.number().positive().default(2),
				/** Seconds without a heartbeat after which a node counts as dead and its sessions end. */
				node_timeout: z.number().positive().default(6),
				/**
				 * Entries a node's delivery stream keeps at most (XADD MAXLEN ~, one entry per event-loop
				 * turn of a sending node): bounds Redis memory for a node that stopped reading.
				 */
				stream_maxlen: z.number().int().min(100).default(100_000),
				/**
				 * Where a node learns of the other nodes' sessions (docs/scaling.md). "replicated": every
				 * node holds every session of the cluster. "sharded": the sessions are in Redis, a hash
				 * per bare JID, and a node holds its own plus those it looked up (not the default: at
				 * 10,000 sessions on 3 nodes with rosters spread over the nodes it costs more memory and
				 * login CPU; docs/scaling.md). Every node of a cluster must use the same.
				 */
				registry: z.enum(["replicated", "sharded"]).default("replicated"),
				/** Sharded registry: bare JIDs of other nodes' users a node keeps cached at most. */
				registry_cache: z.number().int().min(1).default(100_000),
			})
			.prefault({}),
		metrics: z
			.strictObject({
				/** Count what the server does for `GET /metrics` (Prometheus text, docs/architecture.md "Metrics"). */
				enabled: z.boolean().default(true),
			})
			.prefault({}),
		log: z
			.strictObject({
				level: z
					.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"])
					.default("info"),
				/** "auto": readable on a terminal, JSON otherwise. */
				format: z.enum(["auto", "json", "pretty"]).default("auto"),
			})
			.prefault({}),
		storage,
		/** The admin API (src/admin/): its tokens and the rate of their issuance. */
		admin: z
			.strictObject({
				/** Seconds a bearer token issued by `POST /auth/tokens` stays valid. */
				token_lifetime: z.number().int().min(60).default(86_400),
				/** Token requests (`POST /auth/tokens`) one client address may make per minute. */
				token_requests_per_minute: z.number().int().min(1).default(10),
			})
			.prefault({}),
		/** Backups (src/admin/backup): where they are written, outside data_dir. */
		backup: z
			.strictObject({
				/** Relative to the configuration file's directory; never inside server.data_dir. */
				dir: z.string().default("./backups"),
			})
			.prefault({}),
		listeners: z
			.strictObject({
				/** RFC 6120 c2s with STARTTLS. */
				c2s: listener(5222),
				/** XEP-0368 direct TLS. */
				c2s_direct_tls: listener(5223),
				/** Plain HTTP: BOSH, WebSocket, discovery (usually behind a TLS-terminating proxy). */
				http: listener(5280),
				/** HTTPS with the hosts' certificates: BOSH and WebSocket over TLS. */
				https: listener(5281),
				/**
				 * RFC 6120 server-to-server (federation): STARTTLS, SASL EXTERNAL and dialback. On by
				 * default, as in Prosody and ejabberd: a server on the XMPP network talks to others.
				 */
				s2s: listener(5269, true),
				/** XEP-0368 direct TLS for servers (no standard port; 5270 as Prosody suggests). */
				s2s_direct_tls: listener(5270, false),
				/**
				 * XEP-0114 external components, on loopback by default. Opened only when a component
				 * of type "external" is configured (as Prosody does).
				 */
				component: listener(5347, true, "127.0.0.1"),
				/**
				 * The admin API (src/admin/, issue 15): loopback by default; on any other address it
				 * serves HTTPS only, with the hosts' certificates.
				 */
				admin: listener(5290, true, "127.0.0.1"),
			})
			.prefault({}),
		/** Invitations (XEP-0401, XEP-0445) and their landing page (`/invite/<token>`). */
		invites: z
			.strictObject({
				/**
				 * The public base URL of the HTTP listener, for the landing page's link
				 * (`<base_url>/invite/<token>`), e.g. "https://chat.example.org:5281". Empty: the
				 * address the request came to (the page) or `http://<host>:<http port>` (the link).
				 */
				base_url: z
					.string()
					.regex(/^(https?:\/\/[^/]+(\/.*)?)?$/, "an http:// or https:// URL")
					.default(""),
				/** Seconds an invitation stays valid unless its creator says otherwise (7 days). */
				ttl: z
					.number()
					.int()
					.positive()
					.default(7 * 24 * 3600),
				/**
				 * Whether the contact invitations an ordinary user creates (XEP-0401
				 * `urn:xmpp:invite#invite`) also let the newcomer register on the host. Admins'
				 * always do.
				 */
				allow_user_invites: z.boolean().default(false),
			})
			.prefault({}),
		http: z
			.strictObject({
				/** Origins allowed by CORS (BOSH, file upload) and for WebSocket upgrades; "*" allows any. */
				cors_origins: z.array(z.string()).default(["*"]),
				/** Peers whose X-Forwarded-For/-Proto/-Host and Forwarded headers are believed (IPs or CIDRs). */
				trusted_proxies: z.array(z.string()).default(["127.0.0.1", "::1"]),
				/**
				 * A reverse proxy terminates TLS in front of the plain HTTP listener: its connections count
				 * as encrypted (PLAIN offered, require_encryption met). A trusted proxy's
				 * `X-Forwarded-Proto: https` has the same effect per request.
				 */
				proxy_terminates_tls: z.boolean().default(false),
				websocket: z
					.strictObject({
						enabled: z.boolean().default(true),
						path: z.string().startsWith("/").default("/xmpp-websocket"),
						/** Seconds between WebSocket pings; a peer that misses one is disconnected. */
						ping_interval: z.number().positive().default(30),
						/**
						 * RFC 7395 §3.6.1: when set, every WebSocket client is sent to this URI
						 * (`<close see-other-uri=.../>`), e.g. while moving the endpoint.
						 */
						see_other_uri: z
							.string()
							.regex(/^wss?:\/\//, "a ws:// or wss:// URI")
							.optional(),
					})
					.prefault({}),
				bosh: z
					.strictObject({
						enabled: z.boolean().default(true),
						path: z.string().startsWith("/").default("/http-bind"),
						/** XEP-0124 §7: longest 'wait' granted, seconds. */
						max_wait: z.number().int().min(1).default(60),
						/** XEP-0124 §7: most requests held at once ('hold'). */
						max_hold: z.number().int().min(0).max(10).default(1),
						/** XEP-0124 §7: 'inactivity', seconds without a pending request before the session ends. */
						inactivity: z.number().int().min(1).default(60),
						/** XEP-0124 §10: longest 'pause' a client may ask for, seconds. */
						max_pause: z.number().int().min(0).default(300),
						/** XEP-0124 §7: shortest interval between two empty polls, seconds. */
						polling: z.number().int().min(0).default(2),
					})
					.prefault({}),
			})
			.prefault({}),
		tls: z
			.strictObject({
				/** Default certificate for hosts without their own `tls` table. */
				cert: z.string().optional(),
				key: z.string().optional(),
				/** Generate a self-signed certificate under data_dir when a host has none. */
				self_signed: z.boolean().default(true),
			})
			.prefault({}),
		auth: z
			.strictObject({
				/** RFC 5802/7677 iteration count for newly stored SCRAM credentials. */
				scram_iterations: z.number().int().min(4096).max(1_000_000).default(4096),
				/** PLAIN is only offered over TLS unless this is true (tests, benchmarks, loopback). */
				allow_plain_without_tls: z.boolean().default(false),
				/**
				 * Refuse SCRAM's 'y' flag while channel binding is offered (RFC 5802 §6). Off by
				 * default: clients that support none of our binding types (XEP-0440) send 'y'.
				 */
				strict_channel_binding: z.boolean().default(false),
				/** Require TLS before SASL for every host, unless a host says otherwise. */
				require_encryption: z.boolean().default(true),
				/**
				 * Offer XEP-0388 SASL2 (with XEP-0386 Bind 2, inline stream management and XEP-0484
				 * FAST) beside RFC 6120 SASL, on encrypted streams. Clients that do not use it see
				 * no difference.
				 */
				sasl2: z.boolean().default(true),
				/**
				 * Seconds a XEP-0484 FAST token stays valid: how long a device may stay away and
				 * still log in without its password. 0 turns FAST off.
				 */
				fast_token_lifetime: z
					.number()
					.int()
					.min(0)
					.default(21 * 86400),
				/** Seconds after which a FAST login gets a fresh token (rotation, XEP-0484 §3.4). */
				fast_token_rotation: z.number().int().min(60).default(86400),
			})
			.prefault({}),
		sessions: z
			.strictObject({
				/**
				 * RFC 6120 §7.7.2.2: when a client binds a resource that is already online.
				 * "replace": the old session gets a `conflict` stream error (Prosody's kick_old);
				 * "refuse": the new bind gets a `conflict` error; "rename": the new session gets a
				 * server-generated resource.
				 */
				on_resource_conflict: z.enum(["replace", "refuse", "rename"]).default("replace"),
				/**
				 * Seconds without a byte from a client before the server pings it (XEP-0199), to find
				 * connections that died without closing (issue 21); 0 turns the checks off.
				 */
				idle_ping: z.number().min(0).default(60),
				/** Seconds a client has to answer; without an answer its session ends. */
				ping_timeout: z.number().positive().default(30),
				/**
				 * XEP-0198: seconds a session whose connection broke waits to be resumed, when the
				 * client asks for resumption without saying how long (Prosody's default); 0 turns
				 * resumption off.
				 */
				hibernation: z.number().int().min(0).default(600),
				/** The longest a client may ask for (`max`); mobile clients with push ask for hours. */
				max_hibernation: z.number().int().min(0).default(86_400),
			})
			.prefault({}),
		limits: z
			.strictObject({
				/** Bytes in one stanza once authenticated (Prosody and ejabberd use 256 KiB). */
				stanza_size: z.number().int().min(1024).default(262_144),
				/** Bytes in one stanza before authentication. */
				preauth_stanza_size: z.number().int().min(512).default(10_240),
				/** Element nesting depth inside one stanza. */
				max_depth: z.number().int().min(4).max(1000).default(64),
				/** Seconds a connection may take to authenticate and bind. */
				auth_timeout: z.number().positive().default(60),
				/**
				 * Open connections per source IP, authenticated or not; 0 = unlimited (the default:
				 * a NAT or a proxy carries many users, see unauthenticated_per_ip).
				 */
				connections_per_ip: z.number().int().min(0).default(0),
				/**
				 * Connections per source IP that have not authenticated yet (a client before SASL
				 * success; s2s and component connections throughout); 0 = unlimited.
				 */
				unauthenticated_per_ip: z.number().int().min(0).default(32),
				/**
				 * Addresses (or CIDR ranges) the two caps above never count: a reverse proxy, a TCP
				 * multiplexer or a load generator on this machine speaks for many clients. SASL
				 * failures from them are still counted.
				 */
				exempt_ips: z
					.array(
						z.string().refine(
							(v) => {
								try {
									addressMatcher([v]);
									return true;
								} catch {
									return false;
								}
							},
							{ message: "an IP address or CIDR range" },
						),
					)
					.default(["127.0.0.1", "::1"]),
				/** Failed SASL attempts per IP per minute before further attempts are delayed; 0 = off. */
				sasl_failures_per_ip: z.number().int().min(0).default(10),
				/** SASL failures allowed on one connection before it is closed. */
				sasl_failures_per_connection: z.number().int().min(1).default(3),
			})
			.prefault({}),
		hosts: z.record(z.string(), host).default({ localhost: host.parse({}) }),
		/** Services on their own domains: `[components."conference.example.org"] type = "muc"`. */
		components: z.record(z.string(), component).default({}),
	})
	.superRefine((c, ctx) => {
		for (const [name, comp] of Object.entries(c.components)) {
			if (Object.hasOwn(c.hosts, name))
				ctx.addIssue({
					code: "custom",
					path: ["components", name],
					message: `${JSON.stringify(name)} is also a host ([hosts]); a domain is one or the other`,
				});
			if (comp.parent_host !== undefined && !Object.hasOwn(c.hosts, comp.parent_host))
				ctx.addIssue({
					code: "custom",
					path: ["components", name, "parent_host"],
					message: `${JSON.stringify(comp.parent_host)} is not a host of this configuration ([hosts])`,
				});
		}
		for (const [name, comp] of Object.entries(c.components)) {
			// XEP-0363: the files go over HTTP, to Parley's own listener (maybe through a proxy).
			if (
				comp.type === "upload" &&
				comp.enabled &&
				!c.listeners.http.enabled &&
				!c.listeners.https.enabled
			)
				ctx.addIssue({
					code: "custom",
					path: ["components", name, "type"],
					message: "an upload component needs [listeners.http] or [listeners.https] enabled",
				});
		}
		if ((c.server.workers !== 1 || c.cluster.enabled) && c.storage.backend === "memory")
			ctx.addIssue({
				code: "custom",
				path: ["storage", "backend"],
				message:
					"a cluster (server.workers > 1 or cluster.enabled) needs shared storage: sqlite or postgres",
			});
		if (c.cluster.node_timeout <= c.cluster.heartbeat)
			ctx.addIssue({
				code: "custom",
				path: ["cluster", "node_timeout"],
				message: "must be longer than cluster.heartbeat",
			});
		for (const [name, h] of Object.entries(c.hosts)) {
			if (h.authentication !== "anonymous") continue;
			// A guest never creates an account: registration belongs on the accounts host.
			const reg = h.modules.indexOf("register");
			if (reg >= 0)
				ctx.addIssue({
					code: "custom",
					path: ["hosts", name, "modules", reg],
					message: "an anonymous host cannot offer in-band registration (XEP-0077)",
				});
			// An anonymous host's data lives in memory, so that nothing of a guest outlives it.
			if (Object.hasOwn(c.storage.hosts, name))
				ctx.addIssue({
					code: "custom",
					path: ["storage", "hosts", name],
					message: `${JSON.stringify(name)} is an anonymous host: its data lives in memory and cannot be routed`,
				});
		}
		for (const name of Object.keys(c.storage.hosts)) {
			if (Object.hasOwn(c.hosts, name) || Object.hasOwn(c.components, name)) continue;
			ctx.addIssue({
				code: "custom",
				path: ["storage", "hosts", name],
				message: `${JSON.stringify(name)} is not a host of this configuration ([hosts])`,
			});
		}
	});

export type Config = z.infer<typeof configSchema>;
