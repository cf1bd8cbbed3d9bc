/**
 * The TCP transports for client streams: plain TCP with STARTTLS (RFC 6120 §5, port 5222) and
 * direct TLS (XEP-0368, port 5223). A socket becomes a Transport for a C2SStream; the XML
 * parser sits between the socket's bytes and the stream.
 */
import cluster from "node:cluster";
import net from "node:net";
import tls from "node:tls";
import { type ChannelBindingSource, channelBindingFor } from "../auth/channel-binding.ts";
import type { Core } from "../core/contracts.ts";
import { normalizeIp } from "../security/addresses.ts";
import { type Lease, leaseAll } from "../security/limits.ts";
import type { Attrs, Element } from "../xml/element.ts";
import { escapeAttr } from "../xml/element.ts";
import { StreamParser } from "../xml/parser.ts";
import { NS_CLIENT, NS_STREAMS } from "../xmpp/ns.ts";
import { C2SStream } from "./stream.ts";
import type { Transport } from "./transport.ts";

/** How long a closing stream waits for the peer's closing tag before dropping the socket. */
const CLOSE_GRACE_MS = 5000;
/** Bytes queued for a client that does not read before the connection is dropped. */
const MAX_OUTBOUND_BUFFER = 16 * 1024 * 1024;
/** How long a stopping listener waits for its sockets to flush and close. */
const CLOSE_FLUSH_MS = 1000;

export class C2SListener {
	readonly #server: Core;
	readonly #directTls: boolean;
	readonly #address: string;
	readonly #port: number;
	#net: net.Server | null = null;
	readonly #sockets = new Set<net.Socket>();

	constructor(server: Core, opts: { address: string; port: number; directTls: boolean }) {
		this.#server = server;
		this.#directTls = opts.directTls;
		this.#address = opts.address;
		this.#port = opts.port;
	}

	get kind(): string {
		return this.#directTls ? "c2s_direct_tls" : "c2s";
	}

	/** The bound port (useful when configured as 0). */
	get port(): number {
		const a = this.#net?.address();
		return a && typeof a === "object" ? a.port : this.#port;
	}

	async listen(): Promise<void> {
		const server = this.#directTls
			? tls.createServer(
					{
						...this.#server.certificates.serverOptions(),
						// No longer than a stream gets to authenticate (Node's default is 120 s), so
						// silent sockets do not pile up.
						handshakeTimeout: Math.min(120_000, this.#server.config.limits.auth_timeout * 1000),
					},
					(s) => this.#accept(s, true, this.#handshaken(s)),
				)
			: net.createServer((s) => this.#accept(s, false, this.#lease(s)));
		// Direct TLS: a connection counts against its address's limits from its TCP accept, not
		// from the end of its handshake, or one address could hold any number of silent
		// handshakes. The leases it took then go to its stream (src/net/listener.ts does the same).
		if (this.#directTls)
			server.on("connection", (raw: net.Socket) => {
				const leases = this.#lease(raw);
				if (!leases) return;
				const key = peerKey(raw);
				this.#handshaking.set(key, leases);
				this.#sockets.add(raw);
				raw.once("close", () => {
					if (this.#handshaking.get(key) === leases) this.#handshaking.delete(key);
					this.#sockets.delete(raw);
				});
			});
		if (this.#directTls) {
			// A failed handshake never reaches the connection handler; it must not crash us.
			server.on("tlsClientError", (err, socket) => {
				this.#server.log.debug(
					{ err: err.message, ip: socket.remoteAddress },
					"TLS handshake failed",
				);
				// Node leaves the socket open when a listener takes the error (a handshake
				// timeout is reported this way and closes nothing by itself).
				socket.destroy();
			});
		}
		server.maxConnections = 19_000; // below the process's hard limit of open files
		await new Promise<void>((resolve, reject) => {
			server.once("error", reject);
			// Workers of `server.workers` each open their own socket on the port (SO_REUSEPORT), and
			// the kernel spreads connections evenly over them by address hash; sharing one socket
			// leaves the choice to whichever worker wakes first, which can starve the others.
			// Port 0 has to be shared (each worker would get a port of its own).
			const reusePort = cluster.isWorker && this.#port !== 0;
			server.listen(
				{ host: this.#address, port: this.#port, reusePort, exclusive: reusePort },
				() => {
					server.off("error", reject);
					resolve();
				},
			);
		});
		this.#net = server;
		this.#server.log.info(
			{ listener: this.kind, address: this.#address, port: this.port },
			"listening",
		);
	}

	/** Direct TLS: new handshakes use the server's certificates as they are now (a reload). */
	reloadCertificates(): void {
		if (this.#directTls && this.#net instanceof tls.Server)
			this.#net.setSecureContext(this.#server.certificates.serverOptions());
	}

	/**
	 * Stops accepting. Streams were already told to close (the server does that first); give
	 * their sockets a moment to flush the closing bytes and end, then drop what is left.
	 */
	async close(): Promise<void> {
		const server = this.#net;
		this.#net = null;
		if (!server) return;
		const closed = new Promise<void>((resolve) => server.close(() => resolve()));
		const deadline = Date.now() + CLOSE_FLUSH_MS;
		while (this.#sockets.size > 0 && Date.now() < deadline) {
			await new Promise((r) => setTimeout(r, 20));
		}
		for (const s of this.#sockets) s.destroy();
		await closed;
	}

	/** Direct TLS: the leases of connections still in their handshake, by peer address and port. */
	readonly #handshaking = new Map<string, Lease[]>();

	/**
	 * A place in each per-IP limit for a new TCP connection, given back when it closes (or, for
	 * the unauthenticated one, at authentication); undefined, and the socket closed, at a limit.
	 */
	#lease(socket: net.Socket): Lease[] | undefined {
		const ip = normalizeIp(socket.remoteAddress ?? "");
		const server = this.#server;
		const leases = leaseAll(ip, [server.connectionLimiter, server.unauthenticatedLimiter]);
		if (!leases) {
			// Over a per-IP connection limit: a stream error needs a stream, so the cheapest
			// honest answer is to close at once (Prosody's limits do the same).
			socket.destroy();
			return undefined;
		}
		socket.once("close", () => {
			for (const lease of leases) lease.release();
		});
		return leases;
	}

	/** The leases a direct TLS connection took at its TCP accept (the TLS socket shares its peer). */
	#handshaken(socket: tls.TLSSocket): Lease[] | undefined {
		const key = peerKey(socket);
		const leases = this.#handshaking.get(key);
		this.#handshaking.delete(key);
		return leases ?? this.#lease(socket);
	}

	#accept(socket: net.Socket, secure: boolean, leases: Lease[] | undefined): void {
		if (!leases) return;
		const ip = normalizeIp(socket.remoteAddress ?? "");
		this.#sockets.add(socket);
		this.#server.log.debug(
			{ listener: this.kind, ip, port: socket.remotePort },
			"connection accepted",
		);
		socket.setNoDelay(true);
		socket.setKeepAlive(true, 60_000);
		const transport = new TcpTransport(this.#server, socket, ip, secure, leases[1] as Lease);
		socket.once("close", () => {
			this.#sockets.delete(socket);
			for (const lease of leases) lease.release();
		});
		transport.start();
	}
}

/** One TCP connection's peer: a TLS socket reports its underlying socket's. */
function peerKey(socket: net.Socket): string {
	return `${socket.remoteAddress} ${socket.remotePort}`;
}

class TcpTransport implements Transport {
	readonly kind = "tcp" as const;
	readonly remoteAddress: string;
	readonly #server: Core;
	#socket: net.Socket;
	#secure: boolean;
	readonly #parser: StreamParser;
	readonly #stream: C2SStream;
	#cb: ChannelBindingSource | null = null;
	#ending = false;
	/** The client's closing tag has arrived (RFC 6120 §4.4): its stream is over. */
	#peerClosed = false;

	/** Its place among its address's unauthenticated connections, until SASL success. */
	readonly #preauth: Lease;

	constructor(server: Core, socket: net.Socket, ip: string, secure: boolean, preauth: Lease) {
		this.#server = server;
		this.#preauth = preauth;
		this.#socket = socket;
		this.remoteAddress = ip;
		this.#secure = secure;
		this.#stream = new C2SStream(server, this);
		const limits = server.config.limits;
		const stream = this.#stream;
		this.#parser = new StreamParser(
			{
				streamStart: (name, ns, attrs, defaultNs) => stream.streamStart(name, ns, attrs, defaultNs),
				stanza: (el) => stream.stanza(el),
				streamEnd: () => {
					this.#peerClosed = true;
					stream.streamEnd();
				},
				error: (condition, text) => stream.parseError(condition, text),
			},
			{ maxStanzaBytes: limits.preauth_stanza_size, maxDepth: limits.max_depth },
		);
		server.streams.add(this.#stream);
		this.#stream.onClosed(() => server.streams.delete(this.#stream));
	}

	start(): void {
		this.#attach(this.#socket);
	}

	/** The session moved to another connection (XEP-0198 resumption): this one says nothing more. */
	#detached = false;

	/** An exception escaped the handling of this client's bytes: nothing more is read. */
	#failed = false;

	readonly #onData = (chunk: Buffer) => {
		if (this.#detached || this.#failed) return;
		this.#stream.inbound();
		try {
			this.#parser.write(chunk);
		} catch (err) {
			// A bug costs this connection, not the process and every session in it: thrown in a
			// socket's data handler it would end `parley serve` (RFC 6120 §4.9.3.8).
			this.#failed = true;
			this.#server.log.error({ err, ip: this.remoteAddress }, "client stream failed");
			this.#stream.close("internal-server-error");
		}
	};
	readonly #onClose = () => {
		if (!this.#detached) this.#stream.transportClosed();
	};

	detach(): void {
		this.#detached = true;
	}
	readonly #onError = (err: Error) => {
		this.#server.log.debug({ err: err.message, ip: this.remoteAddress }, "socket error");
	};

	#attach(socket: net.Socket): void {
		socket.on("data", this.#onData);
		socket.on("error", this.#onError);
		socket.on("close", this.#onClose);
	}

	#detach(socket: net.Socket): void {
		socket.off("data", this.#onData);
		socket.off("close", this.#onClose);
	}

	get secure(): boolean {
		return this.#secure;
	}

	get canStartTls(): boolean {
		return !this.#secure;
	}

	channelBinding(): ChannelBindingSource | null {
		if (!this.#secure) return null;
		this.#cb ??= channelBindingFor(this.#socket as tls.TLSSocket);
		return this.#cb;
	}

	openStream(attrs: Attrs, _features: Element | null): void {
		let s = `<?xml version='1.0'?><stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${NS_STREAMS}'`;
		for (const k in attrs) s += ` ${k}='${escapeAttr(attrs[k] as string)}'`;
		this.#write(`${s}>`);
	}

	send(el: Element): void {
		this.#write(el.toString(NS_CLIENT));
	}

	/** Output of this tick, written as one string (one write system call) on the next tick. */
	#out = "";

	#write(s: string): void {
		if (this.#ending || this.#socket.destroyed) return;
		// Everything written in one tick leaves in one write: a presence fan-out, a burst of
		// offline messages or the stream header with its features costs one syscall, not one
		// per stanza. Joining the strings here is cheaper than cork/uncork, which hands libuv an
		// array of buffers (writev) and keeps a write request per chunk.
		if (this.#out === "") {
			this.#out = s;
			process.nextTick(this.#flushOut);
		} else this.#out += s;
		const socket = this.#socket;
		if (socket.writableLength + this.#out.length > MAX_OUTBOUND_BUFFER) {
			// A client that stops reading would make us buffer everything sent to it, without
			// bound. Past the limit it is dropped; its session ends like any lost connection.
			this.#server.log.info({ ip: this.remoteAddress }, "client not reading: connection dropped");
			this.#out = "";
			socket.destroy();
		}
	}

	readonly #flushOut = (): void => {
		const s = this.#out;
		if (s === "") return;
		this.#out = "";
		if (!this.#socket.destroyed) this.#socket.write(s);
	};

	closeStream(): void {
		if (this.#ending) return;
		this.#write("</stream:stream>");
		this.#ending = true;
		const socket = this.#socket;
		const rest = this.#out;
		this.#out = "";
		if (socket.destroyed) return;
		if (this.#peerClosed && !this.#secure) {
			// RFC 6120 §4.4: the client closed its stream first and ours is closed now, so there
			// is nothing left to wait for: write the closing tag and close the connection, rather
			// than half-close and wait for the client's FIN (a shutdown, one more read, and the
			// grace timer). Only once the kernel holds every byte; a client that is not reading
			// gets the flushing end() below. Over TLS, end() also sends close_notify.
			socket.write(rest);
			if (socket.writableLength === 0) {
				socket.destroy();
				return;
			}
			socket.end();
		} else socket.end(rest);
		// RFC 6120 §4.4: wait a little for the peer's closing tag, then drop the connection. The
		// timer goes as soon as the socket closes: it would otherwise keep the closed connection
		// (socket, stream, parser) alive for the whole grace period, long enough for the garbage
		// collector to move it to the old generation, at every login storm's pace.
		const grace = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
		socket.once("close", () => clearTimeout(grace));
	}

	startTls(): Promise<void> {
		// <proceed/> (and anything before it) goes out in the clear, before the handshake.
		this.#flushOut();
		const plain = this.#socket;
		this.#detach(plain);
		const opts = this.#server.certificates.serverOptions();
		return new Promise((resolve, reject) => {
			const secure = new tls.TLSSocket(plain, {
				isServer: true,
				secureContext: opts.secureContext ?? tls.createSecureContext(opts),
				SNICallback: opts.SNICallback,
			});
			secure.once("secure", () => {
				this.#socket = secure;
				this.#secure = true;
				this.#attach(secure);
				resolve();
			});
			secure.once("error", (err) => {
				secure.destroy();
				reject(err);
			});
			plain.once("close", () => reject(new Error("connection closed during TLS handshake")));
		});
	}

	resetParser(): void {
		this.#parser.reset();
	}

	authenticated(): void {
		this.#preauth.release();
	}

	setStanzaLimit(bytes: number): void {
		this.#parser.setLimits({
			maxStanzaBytes: bytes,
			maxDepth: this.#server.config.limits.max_depth,
		});
	}

	pause(): void {
		this.#socket.pause();
	}

	resume(): void {
		this.#socket.resume();
	}
}
