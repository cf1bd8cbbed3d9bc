/**
 * The bytes of one XML stream over TCP, for the transports other than c2s (s2s, XEP-0114
 * components): the socket (plain, STARTTLS-upgraded or direct TLS), the streaming XML parser
 * under the configured limits, and a writer that sends a tick's output in one write and drops
 * a peer that stops reading. The protocol sits on top (src/s2s/, src/component/).
 *
 * Stanzas are held in the `jabber:client` namespace inside Parley, whatever carried them. On a
 * stream whose default namespace is another (`jabber:server`, `jabber:component:accept`), an
 * element is written with `jabber:client` as its context, so the stanza and its `jabber:client`
 * children go out without an `xmlns` and take the stream's namespace (RFC 6120 §4.8.3: the
 * server translates); `intoClientNs` (src/xmpp/stanza.ts) does the reverse for what arrives.
 */
import type net from "node:net";
import tls from "node:tls";
import type { Logger } from "../core/log.ts";
import { type Attrs, type Element, escapeAttr } from "../xml/element.ts";
import type { XmlErrorCondition } from "../xml/errors.ts";
import { StreamParser } from "../xml/parser.ts";
import { NS_CLIENT, NS_STREAMS } from "../xmpp/ns.ts";

/** How long a closing stream waits for the peer's closing tag before dropping the socket. */
const CLOSE_GRACE_MS = 5000;
/** Bytes queued for a peer that does not read before the connection is dropped. */
const MAX_OUTBOUND_BUFFER = 16 * 1024 * 1024;

export interface XmlSocketEvents {
	streamStart(attrs: Attrs, name: string, ns: string | null, defaultNs: string | null): void;
	element(el: Element): void;
	streamEnd(): void;
	parseError(condition: XmlErrorCondition, text: string): void;
	/** The connection is gone (either side). */
	closed(): void;
	/** Bytes arrived, whatever they are: the peer is alive (src/net/liveness.ts). */
	inbound?(): void;
}

export interface XmlSocketLimits {
	stanzaBytes: number;
	maxDepth: number;
}

export class XmlSocket {
	#socket: net.Socket;
	#secure: boolean;
	readonly remoteAddress: string;
	readonly #parser: StreamParser;
	readonly #events: XmlSocketEvents;
	readonly #log: Logger;
	readonly #maxDepth: number;
	#out = "";
	#ending = false;
	#closedFired = false;

	constructor(
		socket: net.Socket,
		secure: boolean,
		limits: XmlSocketLimits,
		events: XmlSocketEvents,
		log: Logger,
	) {
		this.#socket = socket;
		this.#secure = secure;
		this.remoteAddress = socket.remoteAddress ?? "";
		this.#events = events;
		this.#log = log;
		this.#maxDepth = limits.maxDepth;
		this.#parser = new StreamParser(
			{
				streamStart: (name, ns, attrs, defaultNs) => events.streamStart(attrs, name, ns, defaultNs),
				stanza: (el) => events.element(el),
				streamEnd: () => events.streamEnd(),
				error: (condition, text) => events.parseError(condition, text),
			},
			{ maxStanzaBytes: limits.stanzaBytes, maxDepth: limits.maxDepth },
		);
		socket.setNoDelay(true);
		socket.setKeepAlive(true, 60_000);
		this.#attach(socket);
	}

	get secure(): boolean {
		return this.#secure;
	}

	/** "TLSv1.3", or null before TLS. */
	get tlsVersion(): string | null {
		return this.#secure ? ((this.#socket as tls.TLSSocket).getProtocol?.() ?? null) : null;
	}

	get socket(): net.Socket {
		return this.#socket;
	}

	/** An exception escaped the handling of the peer's bytes: nothing more is read. */
	#failed = false;

	readonly #onData = (chunk: Buffer) => {
		if (this.#failed) return;
		this.#events.inbound?.();
		try {
			this.#parser.write(chunk);
		} catch (err) {
			// A bug costs this connection, not the process and every session in it (thrown in a
			// socket's data handler it would end `parley serve`); the peer sees the connection
			// drop and its stream's owner cleans up as for any lost connection.
			this.#failed = true;
			this.#log.error({ err, ip: this.remoteAddress }, "stream failed");
			this.#socket.destroy();
		}
	};
	readonly #onClose = () => {
		if (this.#closedFired) return;
		this.#closedFired = true;
		this.#events.closed();
	};
	readonly #onError = (err: Error) => {
		this.#log.debug({ err: err.message, ip: this.remoteAddress }, "socket error");
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

	/**
	 * The opening tag (RFC 6120 §4.7) with `ns` as the content namespace; `prefixes` declares
	 * more (s2s: `{ db: "jabber:server:dialback" }`).
	 */
	openStream(ns: string, attrs: Attrs, prefixes: Record<string, string> = {}): void {
		let s = `<?xml version='1.0'?><stream:stream xmlns='${ns}' xmlns:stream='${NS_STREAMS}'`;
		for (const p in prefixes) s += ` xmlns:${p}='${escapeAttr(prefixes[p] as string)}'`;
		for (const k in attrs) s += ` ${k}='${escapeAttr(attrs[k] as string)}'`;
		this.#write(`${s}>`);
	}

	/** Writes text as is (an element serialised by the caller). */
	write(text: string): void {
		this.#write(text);
	}

	send(el: Element): void {
		this.#write(el.toString(NS_CLIENT));
	}

	/** Output of this tick goes out as one write on the next tick. */
	#write(s: string): void {
		if (this.#ending || this.#socket.destroyed) return;
		if (this.#out === "") {
			this.#out = s;
			process.nextTick(this.#flush);
		} else this.#out += s;
		if (this.#socket.writableLength + this.#out.length > MAX_OUTBOUND_BUFFER) {
			// A peer that stops reading would make us buffer without bound.
			this.#log.info({ ip: this.remoteAddress }, "peer not reading: connection dropped");
			this.#out = "";
			this.#socket.destroy();
		}
	}

	readonly #flush = (): void => {
		const s = this.#out;
		if (s === "") return;
		this.#out = "";
		if (!this.#socket.destroyed) this.#socket.write(s);
	};

	resetParser(): void {
		this.#parser.reset();
	}

	setStanzaLimit(bytes: number): void {
		this.#parser.setLimits({ maxStanzaBytes: bytes, maxDepth: this.#maxDepth });
	}

	pause(): void {
		this.#socket.pause();
	}

	resume(): void {
		this.#socket.resume();
	}

	/** Receiving side of STARTTLS (RFC 6120 §5.4.3.3), after `<proceed/>` was written. */
	startTlsServer(options: tls.TlsOptions): Promise<void> {
		return this.#upgrade(
			(plain) =>
				new tls.TLSSocket(plain, {
					isServer: true,
					secureContext: options.secureContext ?? tls.createSecureContext(options),
					SNICallback: options.SNICallback,
					requestCert: options.requestCert,
					rejectUnauthorized: false,
				}),
			"secure",
		);
	}

	/** Initiating side of STARTTLS, after `<proceed/>` arrived: the peer is named by SNI. */
	startTlsClient(servername: string, options: tls.ConnectionOptions): Promise<void> {
		return this.#upgrade(
			(plain) => tls.connect({ ...options, socket: plain, servername, rejectUnauthorized: false }),
			"secureConnect",
		);
	}

	#upgrade(make: (plain: net.Socket) => tls.TLSSocket, ready: string): Promise<void> {
		this.#flush();
		const plain = this.#socket;
		this.#detach(plain);
		return new Promise((resolve, reject) => {
			const secure = make(plain);
			secure.once(ready, () => {
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

	/** Writes the closing tag, then ends the connection (RFC 6120 §4.4). */
	close(): void {
		if (this.#ending) return;
		this.#write("</stream:stream>");
		this.#flush();
		this.#ending = true;
		const socket = this.#socket;
		if (socket.destroyed) return;
		socket.end();
		const grace = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
		socket.once("close", () => clearTimeout(grace));
	}

	destroy(): void {
		this.#ending = true;
		this.#socket.destroy();
	}
}
