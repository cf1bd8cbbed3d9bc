/**
 * The ports remote servers connect to: `[listeners.s2s]` (RFC 6120 §14.7: 5269, STARTTLS) and
 * `[listeners.s2s_direct_tls]` (XEP-0368: TLS from the first byte, ALPN "xmpp-server", the
 * certificate chosen by SNI). Each accepted connection goes to the manager.
 */
import net from "node:net";
import tls from "node:tls";
import type { Core, Listener } from "../core/contracts.ts";

export interface S2SAcceptor {
	accept(socket: net.Socket, secure: boolean): void;
}

export class S2SListener implements Listener {
	readonly kind: "s2s" | "s2s_direct_tls";
	readonly #core: Core;
	readonly #acceptor: S2SAcceptor;
	readonly #directTls: boolean;
	#net: net.Server | null = null;
	readonly #sockets = new Set<net.Socket>();

	constructor(core: Core, acceptor: S2SAcceptor, directTls: boolean) {
		this.#core = core;
		this.#acceptor = acceptor;
		this.#directTls = directTls;
		this.kind = directTls ? "s2s_direct_tls" : "s2s";
	}

	get port(): number {
		const a = this.#net?.address();
		return a && typeof a === "object" ? a.port : this.#core.config.listeners[this.kind].port;
	}

	async listen(): Promise<void> {
		const { address, port } = this.#core.config.listeners[this.kind];
		const onSocket = (socket: net.Socket) => {
			const ip = socket.remoteAddress ?? "";
			if (!this.#core.connectionLimiter.acquire(ip)) {
				socket.destroy();
				return;
			}
			this.#sockets.add(socket);
			socket.once("close", () => {
				this.#sockets.delete(socket);
				this.#core.connectionLimiter.release(ip);
			});
			this.#acceptor.accept(socket, this.#directTls);
		};
		const server = this.#directTls
			? tls.createServer(
					{
						...this.#core.certificates.serverOptions(),
						// The peer's certificate is asked for and checked by us (SASL EXTERNAL).
						requestCert: true,
						rejectUnauthorized: false,
						ALPNProtocols: ["xmpp-server"],
					},
					onSocket,
				)
			: net.createServer(onSocket);
		if (this.#directTls) {
			server.on("tlsClientError", (err: Error, socket: tls.TLSSocket) => {
				this.#core.log.debug(
					{ err: err.message, ip: socket.remoteAddress },
					"s2s TLS handshake failed",
				);
			});
		}
		await new Promise<void>((resolve, reject) => {
			server.once("error", reject);
			server.listen({ host: address, port }, () => {
				server.off("error", reject);
				resolve();
			});
		});
		this.#net = server;
		this.#core.log.info({ listener: this.kind, address, port: this.port }, "listening");
	}

	async close(): Promise<void> {
		const server = this.#net;
		this.#net = null;
		if (!server) return;
		const closed = new Promise<void>((resolve) => server.close(() => resolve()));
		for (const s of this.#sockets) s.destroy();
		await closed;
	}
}
