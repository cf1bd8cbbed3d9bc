/**
 * XMPP over WebSocket (RFC 7395). Each WebSocket text message is one complete XML document:
 * `<open/>` and `<close/>` in the framing namespace stand for the stream header and the closing
 * tag, everything else is one stanza or negotiation element (§3.3). The C2SStream above runs
 * the same negotiation as on TCP; this class only translates framing.
 */
import type { WebSocket } from "ws";
import type { ChannelBindingSource } from "../auth/channel-binding.ts";
import { C2SStream } from "../c2s/stream.ts";
import type { Transport } from "../c2s/transport.ts";
import type { Core } from "../core/contracts.ts";
import { standaloneXml } from "../http/serialize.ts";
import type { Lease } from "../security/limits.ts";
import { type Attrs, type Element, escapeAttr } from "../xml/element.ts";
import { XmlError } from "../xml/errors.ts";
import { parseDocument } from "../xml/parser.ts";
import { NS_CLIENT, NS_STREAMS } from "../xmpp/ns.ts";

/** RFC 7395 §3.3.1: the framing namespace of `<open/>` and `<close/>`. */
export const NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing";
/** RFC 7395 §3.1: the WebSocket subprotocol name. */
export const SUBPROTOCOL = "xmpp";

/** RFC 6455 §7.4.1 normal closure. */
const CLOSE_NORMAL = 1000;

export interface WebSocketPeer {
	ip: string;
	/** wss://, or TLS terminated by a trusted proxy / per config. */
	secure: boolean;
	/** Its place among its address's unauthenticated connections, until SASL success. */
	preauth?: Lease;
}

/** Bytes queued for a client that does not read before the connection is dropped. */
const MAX_OUTBOUND_BUFFER = 16 * 1024 * 1024;

export class WebSocketTransport implements Transport {
	readonly kind = "websocket" as const;
	readonly remoteAddress: string;
	readonly secure: boolean;
	readonly canStartTls = false;
	readonly #server: Core;
	readonly #ws: WebSocket;
	readonly #stream: C2SStream;
	#stanzaLimit: number;
	/** True until the client's `<open/>`, and again after each stream restart (§3.4). */
	#awaitingOpen = true;
	#closing = false;
	#alive = true;
	#pinger: NodeJS.Timeout | null = null;
	readonly #preauth: Lease | undefined;

	constructor(server: Core, ws: WebSocket, peer: WebSocketPeer) {
		this.#server = server;
		this.#ws = ws;
		this.remoteAddress = peer.ip;
		this.secure = peer.secure;
		this.#preauth = peer.preauth;
		this.#stanzaLimit = server.config.limits.preauth_stanza_size;
		this.#stream = new C2SStream(server, this);
		server.streams.add(this.#stream);
		this.#stream.onClosed(() => server.streams.delete(this.#stream));
	}

	get stream(): C2SStream {
		return this.#stream;
	}

	authenticated(): void {
		this.#preauth?.release();
	}

	start(): void {
		const ws = this.#ws;
		ws.on("message", (data, isBinary) => {
			try {
				this.#message(data as Buffer | Buffer[], isBinary);
			} catch (err) {
				// A bug costs this connection, not the process and every session in it: thrown in
				// the socket's data handler it would end `parley serve` (RFC 6120 §4.9.3.8).
				this.#server.log.error({ err, ip: this.remoteAddress }, "client stream failed");
				this.#stream.close("internal-server-error");
			}
		});
		ws.on("close", () => {
			if (this.#pinger) clearInterval(this.#pinger);
			if (!this.#detached) this.#stream.transportClosed();
		});
		ws.on("error", (err) => {
			// ws reports oversized frames (maxPayload, close code 1009) and protocol errors here.
			this.#server.log.debug({ err: err.message, ip: this.remoteAddress }, "websocket error");
		});
		ws.on("pong", () => {
			this.#alive = true;
			// A WebSocket pong is a sign of life too: no XMPP ping needed (liveness.ts).
			this.#stream.inbound();
		});
		// RFC 7395 §3.7 leaves keepalives to WebSocket pings (RFC 6455 §5.5.2): a peer that
		// has not answered the previous ping by the next one is gone.
		const interval = this.#server.config.http.websocket.ping_interval * 1000;
		this.#pinger = setInterval(() => {
			if (!this.#alive) {
				// Counted once: a stream its XMPP ping already found dead is closed.
				if (!this.#stream.closed) this.#server.metrics.deadPeer("c2s");
				ws.terminate();
				return;
			}
			this.#alive = false;
			ws.ping();
		}, interval);
		this.#pinger.unref();
	}

	/** The session moved to another connection (XEP-0198 resumption): this one says nothing more. */
	#detached = false;

	detach(): void {
		this.#detached = true;
	}

	#message(data: Buffer | Buffer[], isBinary: boolean): void {
		const stream = this.#stream;
		if (stream.closed || this.#detached) return;
		stream.inbound();
		if (isBinary) {
			// RFC 7395 §3.2: XMPP travels in text frames only.
			stream.close("bad-format", "binary WebSocket frames are not XMPP");
			return;
		}
		const limits = this.#server.config.limits;
		let el: Element;
		try {
			el = parseDocument(Array.isArray(data) ? Buffer.concat(data) : data, {
				maxStanzaBytes: this.#stanzaLimit,
				maxDepth: limits.max_depth,
			});
		} catch (err) {
			if (!(err instanceof XmlError)) throw err;
			// RFC 7395 §3.3.3 + RFC 6120 §11: each message must be well-formed restricted XML.
			stream.parseError(err.condition, err.message);
			return;
		}
		if (el.ns === NS_FRAMING && el.name === "open") {
			const elsewhere = this.#server.config.http.websocket.see_other_uri;
			if (elsewhere) {
				// RFC 7395 §3.6.1: the endpoint has moved; tell the client where and hang up.
				this.#ws.send(`<close xmlns="${NS_FRAMING}" see-other-uri="${escapeAttr(elsewhere)}"/>`);
				this.#closing = true;
				this.#ws.close(1000);
				return;
			}
			this.#awaitingOpen = false;
			// RFC 7395 §3.3.1: <open/> is the stream header and the content namespace is
			// jabber:client, so the stream sees what a TCP header would have said.
			stream.streamStart("stream", NS_STREAMS, el.attrs, NS_CLIENT);
			if (!stream.closed && !this.secure && stream.host.requireEncryption) {
				// RFC 6120 §5.3.1 makes TLS mandatory here, and a WebSocket cannot STARTTLS
				// (RFC 7395 §3.5): say so at once instead of offering nothing.
				stream.close("policy-violation", "TLS is required: connect with wss://");
			}
			return;
		}
		if (el.ns === NS_FRAMING && el.name === "close") {
			// RFC 7395 §3.6: the peer closes the stream; we answer with our own <close/>.
			stream.streamEnd();
			return;
		}
		if (this.#awaitingOpen) {
			// RFC 7395 §3.4: the first message, and the first after a restart, is <open/>.
			stream.close("bad-format", "expected <open/> in urn:ietf:params:xml:ns:xmpp-framing");
			return;
		}
		stream.stanza(el);
	}

	channelBinding(): ChannelBindingSource | null {
		// Browsers cannot reach TLS channel binding data, and behind a proxy the TLS session is
		// not ours: no SCRAM-PLUS over WebSocket.
		return null;
	}

	openStream(attrs: Attrs, _features: Element | null): void {
		// RFC 7395 §3.3.2: the server's <open/> carries from, id, version and xml:lang.
		let s = `<open xmlns="${NS_FRAMING}"`;
		for (const k in attrs) s += ` ${k}="${escapeAttr(attrs[k] as string)}"`;
		this.#write(`${s}/>`);
	}

	send(el: Element): void {
		// RFC 7395 §3.3.3: one complete, namespaced element per message.
		this.#write(standaloneXml(el));
	}

	#write(s: string): void {
		if (this.#closing || this.#ws.readyState !== this.#ws.OPEN) return;
		this.#ws.send(s);
		if (this.#ws.bufferedAmount > MAX_OUTBOUND_BUFFER) {
			// A client that stops reading would have us buffer everything sent to it.
			this.#ws.terminate();
		}
	}

	closeStream(): void {
		if (this.#closing) return;
		// RFC 7395 §3.6: <close/>, then the server ends the WebSocket connection.
		this.#write(`<close xmlns="${NS_FRAMING}"/>`);
		this.#closing = true;
		if (this.#pinger) clearInterval(this.#pinger);
		this.#ws.close(CLOSE_NORMAL);
	}

	startTls(): Promise<void> {
		return Promise.reject(new Error("STARTTLS is not available over WebSocket (RFC 7395 §3.5)"));
	}

	resetParser(): void {
		// Every message is its own document; a restart only means a new <open/> must come.
		this.#awaitingOpen = true;
	}

	setStanzaLimit(bytes: number): void {
		this.#stanzaLimit = bytes;
	}

	pause(): void {
		this.#ws.pause();
	}

	resume(): void {
		this.#ws.resume();
	}
}
