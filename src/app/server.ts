/**
 * The composition root: builds a Parley server from its configuration. This is the one place
 * that knows every part by name — the core, the storage backends, the transports, the cluster
 * link and the modules — and connects them; each part sees the others only through the core's
 * interfaces (src/core/contracts.ts). A new transport adds its listeners in `listenersFor`, a
 * new module or component type adds itself to src/modules/index.ts. Federation (src/s2s/) is
 * both: the router's `RemoteDomains` and the s2s listener. External components (src/component/)
 * meet their module on the component's event bus (`component/connect`), not here.
 */
import { adminCommands } from "../admin/commands/index.ts";
import { C2SListener } from "../c2s/tcp.ts";
import { ClusterLink } from "../cluster/link.ts";
import { componentListener } from "../component/listener.ts";
import { componentPortOpens } from "../core/config/listeners.ts";
import { resolveDataPath } from "../core/config/load.ts";
import { anonymousHosts, type Config } from "../core/config/schema.ts";
import type { AnyAdminCommand, Core, Listener } from "../core/contracts.ts";
import type { ModuleDefinition } from "../core/modules/define.ts";
import { Server, type ServerOptions } from "../core/server.ts";
import { HttpListener } from "../http/server.ts";
import { builtinModules } from "../modules/index.ts";
import { S2SManager } from "../s2s/manager.ts";
import { createStorage } from "../storage/index.ts";

export interface CreateServerOptions extends ServerOptions {
	/** Extra or replacement modules by name (tests, embedding). */
	modules?: ModuleDefinition<never>[];
	/** Admin commands besides the built-in ones (tests: a command only a test defines). */
	commands?: readonly AnyAdminCommand[];
}

export function createServer(config: Config, opts: CreateServerOptions = {}): Server {
	const { modules = [], commands = [], ...serverOptions } = opts;
	// Federation's listener hands connections to the same manager the router sends to.
	let s2s: S2SManager | null = null;
	return new Server(
		config,
		{
			modules: [...builtinModules(), ...modules],
			commands: [...adminCommands, ...commands],
			openStorage: (cfg) =>
				createStorage(
					{ ...cfg.storage, memory_hosts: anonymousHosts(cfg) },
					resolveDataPath(cfg, "."),
				),
			listeners: (core) => [...listenersFor(core), ...(s2s?.listeners() ?? [])],
			cluster: (core) => new ClusterLink(core),
			remote: (core) => {
				s2s = new S2SManager(core);
				return s2s;
			},
		},
		serverOptions,
	);
}

/**
 * The listeners `[listeners.*]` enables: client TCP and direct TLS, HTTP and HTTPS, and the
 * XEP-0114 component port when an external component is configured.
 */
function listenersFor(core: Core): Listener[] {
	const l = core.config.listeners;
	const out: Listener[] = [];
	if (l.c2s.enabled)
		out.push(new C2SListener(core, { address: l.c2s.address, port: l.c2s.port, directTls: false }));
	if (l.c2s_direct_tls.enabled)
		out.push(
			new C2SListener(core, {
				address: l.c2s_direct_tls.address,
				port: l.c2s_direct_tls.port,
				directTls: true,
			}),
		);
	// BOSH and WebSocket (XEP-0124/0206, RFC 7395): one HTTP server per listener, plain and TLS.
	if (l.http.enabled)
		out.push(new HttpListener(core, { address: l.http.address, port: l.http.port, tls: false }));
	if (l.https.enabled)
		out.push(new HttpListener(core, { address: l.https.address, port: l.https.port, tls: true }));
	if (componentPortOpens(core.config))
		out.push(componentListener(core, { address: l.component.address, port: l.component.port }));
	return out;
}
