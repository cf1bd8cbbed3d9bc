/**
 * The HTTP(S) listener: BOSH (XEP-0124/0206), XMPP over WebSocket (RFC 7395) and endpoint
 * discovery (XEP-0156) on one port, and the HTTP side of components (XEP-0363 file upload under
 * `/upload/<domain>/`, handed to the component's module on its bus as `http/upload`), and the
 * invitation landing page (`/invite/<token>`, src/http/invite-page.ts). Plain HTTP
 * on 5280 (meant to sit behind a TLS-terminating proxy) and HTTPS on 5281 with the hosts'
 * certificates.
 *
 * Built on fastify (encapsulated plugins and hooks, the project's model for the admin API that
 * will share this server later) with @fastify/websocket (the `ws` library, upgrades routed
 * through fastify's hooks) and @fastify/cors.
 */
import cluster from "node:cluster";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import fastifyCors from "@fastify/cors";
import fastifyWebsocket from "@fastify/websocket";
import Fastify, {
	type FastifyInstance,
	type FastifyListenOptions,
	type FastifyRequest,
} from "fastify";
import { BoshManager } from "../bosh/manager.ts";
import { terminateBody } from "../bosh/session.ts";
import type { Core, HttpRequestEvent } from "../core/contracts.ts";
import { ConnectionLimiter, leaseAll } from "../security/limits.ts";
import { SUBPROTOCOL, WebSocketTransport } from "../websocket/transport.ts";
import { isSafeHost, normalizeIp, parseForwarded, trustedProxies } from "./client-info.ts";
import { endpointLinks, hostMetaJson, hostMetaXml } from "./host-meta.ts";
import { INVITE_PAGE_HEADERS, invitePage } from "./invite-page.ts";

/** What we believe about the client behind a request. */
export interface HttpPeer {
	ip: string;
	/** TLS up to us, or up to a trusted proxy (X-Forwarded-Proto / Forwarded / config). */
	secure: boolean;
	/** Host (and port) the client used, when it is safe to echo into a URL. */
	host: string | null;
}

/** RFC 6455 §7.4.1 policy violation close code. */
const CLOSE_POLICY = 1008;

/** Components' HTTP paths: `/upload/<domain>/...` goes to the module of `<domain>`. */
const UPLOAD_PREFIX = "/upload/";

/** Milliseconds an upload's body may stall before the connection is dropped. */
const UPLOAD_IDLE_MS = 60_000;

export class HttpListener {
	readonly #server: Core;
	readonly #tls: boolean;
	readonly #address: string;
	readonly #port: number;
	readonly #bosh: BoshManager;
	#app: FastifyInstance | null = null;

	constructor(server: Core, opts: { address: string; port: number; tls: boolean }) {
		this.#server = server;
		this.#tls = opts.tls;
		this.#address = opts.address;
		this.#port = opts.port;
		this.#bosh = new BoshManager(server, `bosh/${this.kind}`);
	}

	get kind(): string {
		return this.#tls ? "https" : "http";
	}

	/** The bound port (useful when configured as 0). */
	get port(): number {
		const a = this.#app?.server.address();
		return a && typeof a === "object" ? a.port : this.#port;
	}

	get boshSessions(): number {
		return this.#bosh.size;
	}

	/**
	 * HTTP connections per address, as many as `limits.connections_per_ip` (0, the default: no
	 * limit), counted apart from the streams (a WebSocket or BOSH session is counted again as
	 * one), from the TCP accept: so an operator's cap also holds for sockets that never make a
	 * request. A trusted proxy's connections are not counted (it carries everyone's; its clients
	 * are counted as streams by their forwarded address).
	 */
	readonly #connections = new ConnectionLimiter(0);

	#admit(socket: net.Socket, isTrusted: (address: string) => boolean): void {
		const address = socket.remoteAddress ?? "";
		if (isTrusted(address)) return;
		this.#connections.max = this.#server.connectionLimiter.max;
		const lease = this.#connections.lease(normalizeIp(address));
		if (!lease) {
			this.#server.connectionLimiter.refused++;
			socket.destroy();
			return;
		}
		socket.once("close", () => lease.release());
	}

	async listen(): Promise<void> {
		const server = this.#server;
		const cfg = server.config.http;
		const isTrusted = trustedProxies(cfg.trusted_proxies);
		const tlsOptions = this.#tls ? server.certificates.serverOptions() : null;
		const app = Fastify({
			// One factory for both: fastify's types follow the plain http server either way.
			serverFactory: (handler) => {
				// No limit on a whole request (fastify's own default; Node's is 5 minutes): a large
				// upload over a slow phone link takes longer, and an upload's body may not stall
				// (UPLOAD_IDLE_MS). Headers get `limits.auth_timeout`, as a client stream gets to
				// authenticate: Node derives its headersTimeout from requestTimeout, so requestTimeout
				// 0 alone would let a connection that never finishes its headers (or sends nothing)
				// stay for ever. Node checks every connectionsCheckingInterval (30 s by default), so
				// that follows a short limit down. TLS handshakes get the same time.
				const limit = server.config.limits.auth_timeout * 1000;
				const options = {
					requestTimeout: 0,
					headersTimeout: limit,
					connectionsCheckingInterval: Math.max(50, Math.min(30_000, limit / 2)),
					handshakeTimeout: Math.min(120_000, limit),
				};
				const s = tlsOptions
					? https.createServer({ ...tlsOptions, ...options }, handler)
					: http.createServer(options, handler);
				s.on("connection", (socket: net.Socket) => this.#admit(socket, isTrusted));
				if (!tlsOptions) return s as http.Server;
				s.on("tlsClientError", (err, socket) => {
					server.log.debug({ err: err.message, ip: socket.remoteAddress }, "TLS handshake failed");
					// Node leaves the socket open when a listener takes the error (see src/c2s/tcp.ts).
					socket.destroy();
				});
				return s as unknown as http.Server;
			},
			trustProxy: (address: string) => isTrusted(address),
			bodyLimit: this.#bosh.maxBodyBytes,
			// Idle keep-alive connections must not keep close() waiting; held BOSH requests have
			// been answered (system-shutdown) by then and finish writing first.
			forceCloseConnections: "idle",
			logger: false,
		});
		const peer = (req: FastifyRequest): HttpPeer => {
			let ip = normalizeIp(req.ip);
			let proto = req.protocol;
			let host: string | undefined = req.host;
			const forwarded = req.headers.forwarded;
			if (typeof forwarded === "string" && isTrusted(req.socket.remoteAddress ?? "")) {
				// RFC 7239: honoured only from a trusted proxy, like X-Forwarded-*.
				const f = parseForwarded(forwarded);
				if (f?.for !== undefined && net.isIP(f.for)) ip = f.for;
				if (f?.proto !== undefined) proto = f.proto === "https" ? "https" : "http";
				if (f?.host !== undefined) host = f.host;
			}
			return {
				ip,
				secure: this.#tls || proto === "https" || cfg.proxy_terminates_tls,
				host: host && isSafeHost(host) ? host : null,
			};
		};

		const anyOrigin = cfg.cors_origins.includes("*");
		await app.register(fastifyCors, {
			origin: anyOrigin ? "*" : cfg.cors_origins,
			// PUT and HEAD for file upload (XEP-0363 §5): browsers' web clients upload and fetch
			// across origins; Range for media seeking, the ranges read back from JavaScript.
			methods: ["GET", "HEAD", "POST", "PUT", "OPTIONS"],
			allowedHeaders: ["Content-Type", "Range"],
			exposedHeaders: ["Content-Length", "Content-Range", "Accept-Ranges", "ETag"],
			maxAge: 86_400,
		});

		// XEP-0156 §3: host-meta in XRD and JSON.
		const links = (req: FastifyRequest) => {
			const p = peer(req);
			const host =
				p.host ??
				`${this.#address.includes(":") ? `[${this.#address}]` : this.#address}:${this.port}`;
			return endpointLinks(
				{ secure: p.secure, host },
				{
					websocket: cfg.websocket.enabled ? cfg.websocket.path : undefined,
					bosh: cfg.bosh.enabled ? cfg.bosh.path : undefined,
				},
			);
		};
		app.get("/.well-known/host-meta", async (req, reply) => {
			reply.type("application/xrd+xml; charset=utf-8");
			return hostMetaXml(links(req));
		});
		app.get("/.well-known/host-meta.json", async (req, reply) => {
			reply.type("application/json");
			return hostMetaJson(links(req));
		});

		// The invitation landing page (XEP-0401's landing-url, src/http/invite-page.ts).
		app.get("/invite/:token", async (req, reply) => {
			const { token } = req.params as { token: string };
			const { status, html } = await invitePage(server, token);
			reply.code(status).headers(INVITE_PAGE_HEADERS);
			return html;
		});

		if (cfg.bosh.enabled) await app.register(async (scope) => this.#boshRoutes(scope, peer));
		if ([...server.components.values()].some((c) => c.component?.type === "upload"))
			await app.register(async (scope) => this.#componentRoutes(scope, peer));
		if (cfg.websocket.enabled) await this.#websocketRoute(app, peer, anyOrigin);

		// Workers of `server.workers` each open their own socket on the port (SO_REUSEPORT) so the
		// kernel spreads WebSocket and BOSH connections over them, as for c2s (src/c2s/tcp.ts);
		// port 0 has to be shared through the primary (each worker would get a port of its own).
		const reusePort = cluster.isWorker && this.#port !== 0;
		// fastify hands its listen options to Node's server.listen() as they are; its types lack
		// reusePort (Node 22.12+/23.1+).
		const listenOptions: FastifyListenOptions & { reusePort: boolean } = {
			host: this.#address,
			port: this.#port,
			reusePort,
			exclusive: reusePort,
		};
		await app.listen(listenOptions);
		this.#app = app;
		server.log.info({ listener: this.kind, address: this.#address, port: this.port }, "listening");
	}

	async #boshRoutes(scope: FastifyInstance, peer: (req: FastifyRequest) => HttpPeer) {
		const path = this.#server.config.http.bosh.path;
		// Clients label bodies text/xml, application/xml or even text/plain: take any as bytes.
		scope.removeAllContentTypeParsers();
		scope.addContentTypeParser("*", { parseAs: "buffer" }, (_req, body, done) => done(null, body));
		scope.setErrorHandler(async (err: { statusCode?: number }, _req, reply) => {
			// XEP-0124 §17.2: a body over the size limit is a policy-violation.
			const status = err.statusCode ?? 500;
			reply.code(status).type("text/xml; charset=utf-8");
			return terminateBody(status === 413 ? "policy-violation" : "bad-request");
		});
		scope.post(path, async (req, reply) => {
			const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
			reply.type("text/xml; charset=utf-8");
			return this.#bosh.handle(raw, peer(req));
		});
		// XEP-0124 §3: BOSH is POST only (OPTIONS is answered by CORS).
		scope.get(path, async (_req, reply) => {
			reply.code(405).header("allow", "POST, OPTIONS").type("text/plain");
			return "XMPP over BOSH (XEP-0124/XEP-0206): POST <body/> elements here.\n";
		});
	}

	/**
	 * `/upload/<domain>/<rest>`: fired as `http/upload` on the component's bus (the contract
	 * `HttpRequestEvent`), so this transport knows no module. The body is left unread as a
	 * stream for the module; a PUT it refuses without reading ends the connection.
	 */
	async #componentRoutes(scope: FastifyInstance, peer: (req: FastifyRequest) => HttpPeer) {
		const server = this.#server;
		scope.removeAllContentTypeParsers();
		scope.addContentTypeParser("*", (_req, _payload, done) => done(null));
		scope.setErrorHandler(async (err: { statusCode?: number; message?: string }, req, reply) => {
			const status = err.statusCode ?? 500;
			if (status >= 500) server.log.warn({ err: err.message, url: req.url }, "HTTP request failed");
			if (req.method === "PUT" && !req.raw.readableEnded) reply.header("connection", "close");
			reply.code(status).type("text/plain; charset=utf-8");
			return `${status === 500 ? "internal server error" : (err.message ?? "error")}\n`;
		});
		scope.route({
			method: ["GET", "HEAD", "PUT"],
			url: `${UPLOAD_PREFIX}:domain/*`,
			exposeHeadRoute: false,
			handler: async (req, reply) => {
				const url = new URL(req.url, "http://x");
				const [domain = "", ...rest] = url.pathname.slice(UPLOAD_PREFIX.length).split("/");
				const host = server.components.get(safeDecode(domain));
				const abort = new AbortController();
				reply.raw.once("close", () => {
					if (!reply.raw.writableFinished) abort.abort();
				});
				if (req.method === "PUT") {
					const socket = req.raw.socket;
					const stalled = () => socket.destroy();
					socket.setTimeout(UPLOAD_IDLE_MS);
					socket.on("timeout", stalled);
					reply.raw.once("close", () => {
						socket.setTimeout(0);
						socket.off("timeout", stalled);
					});
				}
				const event: HttpRequestEvent | undefined = host && {
					host,
					method: req.method,
					path: rest.join("/"),
					query: url.searchParams,
					headers: req.headers,
					body: req.raw,
					ip: peer(req).ip,
					signal: abort.signal,
				};
				const res =
					host && event && (await host.events.fire("http/upload", event))
						? event.response
						: undefined;
				// A body nobody read is not drained: the connection ends with the answer.
				if (req.method === "PUT" && !req.raw.readableEnded) reply.header("connection", "close");
				if (!res) {
					reply.code(404).type("text/plain; charset=utf-8");
					return "not found\n";
				}
				reply.code(res.status).headers(res.headers ?? {});
				return reply.send(res.body);
			},
		});
	}

	async #websocketRoute(
		app: FastifyInstance,
		peer: (req: FastifyRequest) => HttpPeer,
		anyOrigin: boolean,
	) {
		const server = this.#server;
		const cfg = server.config.http;
		await app.register(fastifyWebsocket, {
			options: {
				// A frame larger than any stanza may be is refused by ws (close 1009) before it is
				// buffered; within it, the stream's own (pre-auth) limit gives policy-violation.
				maxPayload: server.config.limits.stanza_size + 1024,
				// RFC 7395 §3.1: we speak only the "xmpp" subprotocol.
				handleProtocols: (protocols: Set<string>) =>
					protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false,
			},
		});
		app.get(
			cfg.websocket.path,
			{
				websocket: true,
				preValidation: async (req, reply) => {
					const offered = String(req.headers["sec-websocket-protocol"] ?? "")
						.split(",")
						.map((p) => p.trim());
					// RFC 7395 §3.1: a handshake without the xmpp subprotocol is refused.
					if (!offered.includes(SUBPROTOCOL)) {
						reply.code(400).type("text/plain");
						return reply.send("the WebSocket subprotocol 'xmpp' is required (RFC 7395 §3.1)\n");
					}
					// Browsers send Origin; only the configured ones may open a session.
					const origin = req.headers.origin;
					if (!anyOrigin && origin !== undefined && !cfg.cors_origins.includes(origin)) {
						reply.code(403).type("text/plain");
						return reply.send("origin not allowed\n");
					}
				},
			},
			(socket, req) => {
				const p = peer(req);
				const leases = leaseAll(p.ip, [server.connectionLimiter, server.unauthenticatedLimiter]);
				if (!leases) {
					socket.close(CLOSE_POLICY, "too many connections");
					return;
				}
				socket.once("close", () => {
					for (const lease of leases) lease.release();
				});
				new WebSocketTransport(server, socket, {
					ip: p.ip,
					secure: p.secure,
					preauth: leases[1],
				}).start();
			},
		);
	}

	/** HTTPS: new handshakes use the server's certificates as they are now (a reload). */
	reloadCertificates(): void {
		const s: unknown = this.#app?.server;
		if (this.#tls && s instanceof https.Server)
			s.setSecureContext(this.#server.certificates.serverOptions());
	}

	/** Stops accepting; open streams are closed by the server before this. */
	async close(): Promise<void> {
		const app = this.#app;
		this.#app = null;
		this.#bosh.closeAll();
		if (app) await app.close();
	}
}

/** A percent-decoded path segment, or "" when it is not valid UTF-8 percent-encoding. */
function safeDecode(segment: string): string {
	try {
		return decodeURIComponent(segment);
	} catch {
		return "";
	}
}
