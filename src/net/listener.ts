/**
 * A listening TCP (or direct TLS) port for the transports that hand each connection to a
 * stream of their own (s2s, XEP-0114 components): the per-IP connection limit, the `listening`
 * log line, and a close that drops what is still connected. It fits the core's `Listener`.
 */
import net from "node:net";
import tls from "node:tls";
import type { Logger } from "../core/log.ts";
import { type ConnectionLimiter, leaseAll } from "../security/limits.ts";

export interface SocketListenerOptions {
	/** The listener's name in logs and `Server.port()` ("s2s", "component", ...). */
	kind: string;
	address: string;
	port: number;
	log: Logger;
	/** Each connection holds a place in each of them for its whole life. */
	limiters: readonly ConnectionLimiter[];
	/**
	 * Direct TLS from the first byte with these options (asked for again when a reload replaced
	 * the certificates); plain TCP without.
	 */
	tls?: () => tls.TlsOptions;
	onSocket(socket: net.Socket): void;
}

export class SocketListener {
	readonly kind: string;
	readonly #opts: SocketListenerOptions;
	#net: net.Server | null = null;
	readonly #sockets = new Set<net.Socket>();

	constructor(opts: SocketListenerOptions) {
		this.kind = opts.kind;
		this.#opts = opts;
	}

	/** The bound port (the real one when configured as 0). */
	get port(): number {
		const a = this.#net?.address();
		return a && typeof a === "object" ? a.port : this.#opts.port;
	}

	async listen(): Promise<void> {
		const { address, port, log, limiters } = this.#opts;
		/** A place in each limit for a new TCP connection; false (and closed) at a limit. */
		const admit = (socket: net.Socket): boolean => {
			const leases = leaseAll(socket.remoteAddress ?? "", limiters);
			if (!leases) {
				socket.destroy();
				return false;
			}
			this.#sockets.add(socket);
			socket.once("close", () => {
				this.#sockets.delete(socket);
				for (const lease of leases) lease.release();
			});
			return true;
		};
		const server = this.#opts.tls
			? tls.createServer(this.#opts.tls(), (socket) => {
					// Counted at its TCP accept (below), for as long as that socket lives.
					this.#sockets.add(socket);
					socket.once("close", () => this.#sockets.delete(socket));
					this.#opts.onSocket(socket);
				})
			: net.createServer((socket) => {
					if (admit(socket)) this.#opts.onSocket(socket);
				});
		// Direct TLS: counted from the TCP accept, not from the end of the handshake, or one
		// address could hold any number of silent handshakes.
		if (this.#opts.tls) server.on("connection", (raw: net.Socket) => admit(raw));
		if (this.#opts.tls) {
			// A failed handshake never reaches `accept`; it must not crash the server.
			server.on("tlsClientError", (err: Error, socket: tls.TLSSocket) => {
				log.debug({ err: err.message, ip: socket.remoteAddress }, "TLS handshake failed");
				// Node leaves the socket open when a listener takes the error (a handshake
				// timeout is reported this way and closes nothing by itself).
				socket.destroy();
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
		log.info({ listener: this.kind, address, port: this.port }, "listening");
	}

	/** Direct TLS: new handshakes get the options (certificates) as they are now. */
	reloadCertificates(): void {
		if (this.#opts.tls && this.#net instanceof tls.Server)
			this.#net.setSecureContext(this.#opts.tls());
	}

	/** Stops accepting and drops the connections still open (their streams were told first). */
	async close(): Promise<void> {
		const server = this.#net;
		this.#net = null;
		if (!server) return;
		const closed = new Promise<void>((resolve) => server.close(() => resolve()));
		for (const s of this.#sockets) s.destroy();
		await closed;
	}
}
