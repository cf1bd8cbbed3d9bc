/**
 * The contract between a client stream and what carries it: TCP and TLS (src/c2s/tcp.ts),
 * WebSocket (src/websocket), BOSH (src/bosh). The stream never sees a socket or a request.
 */
import type { ChannelBindingSource } from "../auth/channel-binding.ts";
import type { ClientTransportKind } from "../core/contracts.ts";
import type { Attrs, Element } from "../xml/element.ts";

/** What the stream needs from whatever carries it. */
export interface Transport {
	/** Which carrier this is (the `transport` label of `parley_sessions`). */
	readonly kind: ClientTransportKind;
	readonly remoteAddress: string;
	/** TLS is in place (STARTTLS done, direct TLS, or an HTTPS/WSS carrier). */
	readonly secure: boolean;
	/** STARTTLS can be offered on this transport. */
	readonly canStartTls: boolean;
	channelBinding(): ChannelBindingSource | null;
	/** Write the opening stream header (TCP: `<stream:stream ...>`, WebSocket: `<open/>`). */
	openStream(attrs: Attrs, features: Element | null): void;
	send(el: Element): void;
	/** Write the closing tag and end the connection once written. */
	closeStream(): void;
	/** Upgrade to TLS after `<proceed/>` was written; resolves when the handshake is done. */
	startTls(): Promise<void>;
	/** The stream restarts (after STARTTLS or SASL): the parser starts a new document. */
	resetParser(): void;
	/** Raise or lower parser limits (stanza size grows after authentication). */
	setStanzaLimit(bytes: number): void;
	pause(): void;
	resume(): void;
	/**
	 * The client authenticated (SASL or SASL2 success): its connection no longer counts among its
	 * address's unauthenticated ones (`limits.unauthenticated_per_ip`).
	 */
	authenticated(): void;
	/**
	 * XEP-0198 resumption: the session moved to another connection, so this one stops reporting
	 * anything to its stream (data, closing). Transports that offer stream management have it.
	 */
	detach?(): void;
}
