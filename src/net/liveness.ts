/**
 * Is the client still there, and what has it surely received? (issue 21)
 *
 * Most connections that die do not end with a FIN: a phone leaves Wi-Fi, a NAT forgets the
 * mapping. TCP keepalive cannot tell (Linux sends none while data is unacknowledged), so the
 * server asks at the application level, with a deadline: after `idlePing` ms without a byte
 * from the client it sends a XEP-0199 ping; any byte from the client keeps the session alive;
 * without an answer `pingTimeout` ms later the client is gone. A client that talks (or sends
 * whitespace keepalives) is never pinged, so idle clients that answer cost one small IQ per
 * `idlePing` at most.
 *
 * The answer to a ping also proves the client read everything written before the ping (one
 * ordered stream). So the messages written to the client are kept until a ping written after
 * them is answered; when there are such messages a ping goes out `confirmAfter` ms after the
 * first of them (5 s, or `pingTimeout` if shorter) even if the client keeps talking, so that
 * little is left unconfirmed when a connection breaks. If the client is declared gone, or the
 * connection breaks without a closing tag, the stream hands the unconfirmed messages to offline
 * storage instead of losing them (src/c2s/stream.ts).
 */
import { randomUUID } from "node:crypto";
import type { Element } from "../xml/element.ts";

export interface LivenessOptions {
	/** Milliseconds without a byte from the client before a ping. */
	idlePing: number;
	/** Milliseconds to answer it. */
	pingTimeout: number;
	/** Milliseconds after the first unconfirmed message before a ping confirms it. */
	confirmAfter?: number;
	/** Messages kept unconfirmed at most (the oldest go past it). */
	maxUnconfirmed?: number;
	/** Which stanzas written are kept until confirmed (default: what a client would miss). */
	track?: (stanza: Element) => boolean;
}

export interface LivenessIo {
	/** Write a XEP-0199 ping with this id to the client. */
	ping(id: string): void;
	/** No answer in time: the client is gone. */
	dead(): void;
}

/** Messages whose loss a client would notice: not groupchat (the room keeps history), headline or error. */
export function clientWouldMiss(stanza: Element): boolean {
	if (stanza.name !== "message") return false;
	const type = stanza.attrs.type;
	return type !== "groupchat" && type !== "headline" && type !== "error";
}

export class Liveness {
	readonly #opts: Required<LivenessOptions>;
	readonly #io: LivenessIo;
	#timer: NodeJS.Timeout | null = null;
	/** The ping awaiting its answer, and how many unconfirmed messages it covers. */
	#ping: { id: string; covers: number } | null = null;
	/** The timer runs early to confirm unconfirmed messages (not reset by inbound bytes). */
	#confirming = false;
	#unconfirmed: Element[] = [];
	#stopped = false;

	constructor(opts: LivenessOptions, io: LivenessIo) {
		this.#opts = {
			maxUnconfirmed: 500,
			track: clientWouldMiss,
			confirmAfter: Math.min(5000, opts.pingTimeout),
			...opts,
		};
		this.#io = io;
	}

	start(): void {
		this.#arm(this.#opts.idlePing);
	}

	#arm(ms: number): void {
		if (this.#stopped) return;
		if (this.#timer) clearTimeout(this.#timer);
		this.#timer = setTimeout(() => this.#fire(), ms);
		this.#timer.unref();
	}

	#fire(): void {
		if (this.#ping) {
			this.#stopped = true;
			this.#io.dead();
			return;
		}
		const id = `live-${randomUUID()}`;
		this.#ping = { id, covers: this.#unconfirmed.length };
		this.#confirming = false;
		this.#io.ping(id);
		this.#arm(this.#opts.pingTimeout);
	}

	/** Bytes arrived from the client: it is there. */
	inbound(): void {
		if (this.#stopped || this.#confirming) return;
		// Waiting for an answer: the deadline moves (a busy client answers late, but answers);
		// otherwise the next ping moves.
		this.#timer?.refresh();
	}

	/** An IQ result or error from the client: true when it answers our ping (then it is ours). */
	answered(id: string | undefined): boolean {
		if (!this.#ping || id !== this.#ping.id) return false;
		this.pong();
		return true;
	}

	/**
	 * The client answered whatever check is out (with stream management the check is an `<r/>`
	 * and the answer an `<a/>`, XEP-0198 §4).
	 */
	pong(): void {
		const ping = this.#ping;
		if (!ping) return;
		this.#ping = null;
		this.#unconfirmed.splice(0, ping.covers);
		if (this.#unconfirmed.length) {
			this.#confirming = true;
			this.#arm(this.#opts.confirmAfter);
		} else this.#arm(this.#opts.idlePing);
	}

	/** A stanza was written to the client. */
	sent(stanza: Element): void {
		if (this.#stopped || !this.#opts.track(stanza)) return;
		this.#unconfirmed.push(stanza);
		if (this.#unconfirmed.length > this.#opts.maxUnconfirmed) {
			this.#unconfirmed.shift();
			if (this.#ping && this.#ping.covers > 0) this.#ping.covers--;
		}
		// The first unconfirmed message brings the next ping forward.
		if (!this.#ping && !this.#confirming) {
			this.#confirming = true;
			this.#arm(this.#opts.confirmAfter);
		}
	}

	/** Stops the checks; returns the messages not known to have arrived. */
	stop(): Element[] {
		this.#stopped = true;
		if (this.#timer) clearTimeout(this.#timer);
		this.#timer = null;
		const out = this.#unconfirmed;
		this.#unconfirmed = [];
		return out;
	}
}
