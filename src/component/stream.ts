/**
 * One external component's connection (XEP-0114, "jabber:component:accept"): the protocol of
 * §3 over an XmlSocket (src/net/xml-socket.ts: the socket, the parser, the writer).
 *
 *   component: <stream:stream xmlns='jabber:component:accept' to='gateway.example.org'>
 *   server:    <stream:stream xmlns='jabber:component:accept' from='gateway.example.org' id='...'>
 *   component: <handshake>hex(SHA-1(id + secret))</handshake>
 *   server:    <handshake/>                      or a not-authorized stream error
 *
 * then stanzas both ways. A `to` that is not an external component here gets `host-unknown`,
 * another content namespace `invalid-namespace`. Once authenticated, the stream fires
 * `component/connect` on the component's bus; the module that serves the domain
 * (src/modules/external-component.ts) keeps it as its `ComponentLink`, or refuses it.
 *
 * Stanzas from the component: `from` must be the component's domain or an address at it (or at
 * a subdomain it serves), else `invalid-from` (RFC 6120 §4.9.3.9); without `from`, the domain
 * is stamped, and without `to` the stanza gets `bad-request`, as Prosody does. They are moved
 * into `jabber:client` (Parley holds stanzas there) and routed one at a time, in order (RFC 6120
 * §10.1). Stanzas to the component are written with `jabber:client` as their context, so they
 * take the stream's namespace, as on s2s streams (RFC 6120 §4.8.3).
 *
 * A component whose connection dies without closing is found as a client would be (issue 21,
 * src/net/liveness.ts): after `sessions.idle_ping` seconds without a byte it gets a XEP-0199
 * ping, and without an answer (a result or an error: either proves it reads) within
 * `sessions.ping_timeout` the stream ends with `connection-timeout`; the messages written to
 * it since its last answer go back to their senders with `remote-server-timeout`.
 */
import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import type net from "node:net";
import type {
	ComponentConnectEvent,
	ComponentLink,
	Connection,
	Core,
	Host,
} from "../core/contracts.ts";
import type { Logger } from "../core/log.ts";
import { checkIq } from "../core/router.ts";
import { Liveness } from "../net/liveness.ts";
import { XmlSocket } from "../net/xml-socket.ts";
import { type Attrs, type Element, x } from "../xml/element.ts";
import {
	errorReply,
	mayReplyWithError,
	StanzaError,
	type StreamErrorCondition,
	streamErrorElement,
} from "../xmpp/errors.ts";
import { JIDError } from "../xmpp/jid.ts";
import { NS_COMPONENT_ACCEPT, NS_PING, NS_STREAMS } from "../xmpp/ns.ts";
import { intoClientNs } from "../xmpp/stanza.ts";

/** Stanzas being routed before the stream stops reading (as for client and s2s streams). */
const MAX_QUEUE = 64;
const STANZAS = new Set(["message", "presence", "iq"]);
/** Ids of the liveness pings, so that their answers are told from the component's other IQs. */
const PING_PREFIX = "component-live-";

type State = "header" | "handshake" | "online" | "closed";

export class ComponentStream implements Connection, ComponentLink {
	readonly id = randomUUID().replaceAll("-", "");
	readonly remoteAddress: string;
	readonly #core: Core;
	readonly #socket: XmlSocket;
	readonly #log: Logger;
	readonly #ended: (stream: ComponentStream) => void;
	#state: State = "header";
	#headerSent = false;
	/** The component's domain, once the header named one of ours. */
	#domain = "";
	#host: Host | null = null;
	/** The module kept this stream as its link: it hears of the end. */
	#attached = false;
	#pending = 0;
	#chain: Promise<void> = Promise.resolve();
	#authTimer: NodeJS.Timeout | null;
	/** Once online: is the component still reading (src/net/liveness.ts). */
	#liveness: Liveness | null = null;

	constructor(core: Core, socket: net.Socket, ended: (stream: ComponentStream) => void) {
		this.#core = core;
		this.#ended = ended;
		this.remoteAddress = socket.remoteAddress ?? "";
		this.#log = core.log.child({ listener: "component" });
		const limits = core.config.limits;
		// Until the handshake, the small pre-authentication limit (as for clients).
		this.#socket = new XmlSocket(
			socket,
			false,
			{ stanzaBytes: limits.preauth_stanza_size, maxDepth: limits.max_depth },
			{
				streamStart: (attrs, name, ns, defaultNs) => this.#streamStart(name, ns, attrs, defaultNs),
				element: (el) => this.#element(el),
				streamEnd: () => this.close(),
				parseError: (condition, text) => this.close(condition, text),
				closed: () => this.#closed(),
				inbound: () => this.#liveness?.inbound(),
			},
			this.#log,
		);
		this.#authTimer = setTimeout(
			() => this.close("connection-timeout", "no handshake in time"),
			limits.auth_timeout * 1000,
		).unref();
	}

	/** The domain the component authenticated for ("" before the stream header). */
	get domain(): string {
		return this.#domain;
	}

	// --- ComponentLink ---------------------------------------------------------------------------

	send(stanza: Element): void {
		if (this.#state !== "online") return;
		this.#socket.send(stanza);
		this.#core.metrics.stanzaOut("component", stanza.name);
		this.#liveness?.sent(stanza);
	}

	/** Ends the stream, with a stream error when a condition is given (RFC 6120 §4.9). */
	close(condition?: StreamErrorCondition, text?: string): void {
		if (this.#state === "closed") return;
		if (condition) {
			this.#open();
			this.#socket.send(streamErrorElement(condition, text));
			this.#log.info(
				{ ip: this.remoteAddress, domain: this.#domain || undefined, condition, text },
				"component stream error",
			);
		}
		this.#state = "closed";
		this.#socket.close();
		this.#end();
	}

	// --- Connection ------------------------------------------------------------------------------

	whenIdle(): Promise<void> {
		return this.#chain;
	}

	// --- the protocol ----------------------------------------------------------------------------

	#streamStart(name: string, ns: string | null, attrs: Attrs, defaultNs: string | null): void {
		if (this.#state !== "header") return;
		// RFC 6120 §4.9.3.10: not a stream in the streams namespace.
		if (name !== "stream" || ns !== NS_STREAMS) {
			this.close("invalid-namespace", "not an XMPP stream");
			return;
		}
		let to = "";
		try {
			to = attrs.to ? this.#core.jids.parse(attrs.to).domain : "";
		} catch (e) {
			if (!(e instanceof JIDError)) throw e;
		}
		const host = to ? this.#core.components.get(to) : undefined;
		// XEP-0114 §3: a 'to' the server does not serve as a component is host-unknown.
		if (host?.component?.type !== "external") {
			this.close("host-unknown", `${attrs.to ?? "(no 'to')"} is not an external component here`);
			return;
		}
		this.#domain = to;
		this.#host = host;
		this.#open();
		if (defaultNs !== NS_COMPONENT_ACCEPT) {
			this.close("invalid-namespace", `use ${NS_COMPONENT_ACCEPT}`);
			return;
		}
		this.#state = "handshake";
	}

	/** The server's stream header (XEP-0114 §3, example 2): the component's domain and an id. */
	#open(): void {
		if (this.#headerSent) return;
		this.#headerSent = true;
		const attrs: Attrs = Object.create(null);
		if (this.#domain) attrs.from = this.#domain;
		attrs.id = this.id;
		this.#socket.openStream(NS_COMPONENT_ACCEPT, attrs);
	}

	/** Elements are handled one at a time, in order; a flood stops the reading. */
	#element(el: Element): void {
		if (this.#state === "closed") return;
		this.#pending++;
		if (this.#pending > MAX_QUEUE) this.#socket.pause();
		this.#chain = this.#chain.then(async () => {
			try {
				if (this.#state !== "closed") await this.#handle(el);
			} catch (err) {
				this.#log.error({ err, domain: this.#domain }, "component stanza handling failed");
			} finally {
				this.#pending--;
				if (this.#pending <= MAX_QUEUE / 2) this.#socket.resume();
			}
		});
	}

	async #handle(el: Element): Promise<void> {
		if (this.#state === "handshake") {
			if (el.name === "handshake" && el.ns === NS_COMPONENT_ACCEPT) await this.#handshake(el);
			else this.close("not-authorized", "send the handshake first (XEP-0114 §3)");
			return;
		}
		if (el.ns !== NS_COMPONENT_ACCEPT || !STANZAS.has(el.name)) {
			if (el.name === "handshake") return; // a repeated handshake changes nothing
			this.close("unsupported-stanza-type", `<${el.name}/> is not allowed here`);
			return;
		}
		await this.#stanza(intoClientNs(el, NS_COMPONENT_ACCEPT));
	}

	/** XEP-0114 §3: the handshake is the lower-case hex SHA-1 of the stream id and the secret. */
	async #handshake(el: Element): Promise<void> {
		const host = this.#host as Host;
		const cfg = host.component;
		if (cfg?.type !== "external") return;
		const expected = createHash("sha1").update(`${this.id}${cfg.secret}`, "utf8").digest();
		const given = Buffer.from(el.text().trim().toLowerCase(), "utf8");
		const hex = Buffer.from(expected.toString("hex"), "utf8");
		if (given.length !== hex.length || !timingSafeEqual(given, hex)) {
			this.close("not-authorized", "the handshake does not match the shared secret");
			return;
		}
		const event: ComponentConnectEvent = { host, link: this };
		const claimed = await host.events.fire("component/connect", event);
		if (claimed && !event.refused) {
			this.#attached = true;
			this.#core.metrics.componentStream(1);
		}
		if (this.#state === "closed") {
			// Gone while the module was deciding.
			if (this.#attached) this.#end();
			return;
		}
		if (!claimed) {
			this.close("internal-server-error", `no module serves ${host.name}`);
			return;
		}
		if (event.refused) {
			this.close(event.refused.condition, event.refused.text);
			return;
		}
		this.#state = "online";
		if (this.#authTimer) clearTimeout(this.#authTimer);
		this.#authTimer = null;
		// Past authentication, stanzas may be as large as a client's (RFC 6120 §13.12).
		const limits = this.#core.config.limits;
		this.#socket.setStanzaLimit(limits.stanza_size);
		this.#socket.write("<handshake/>");
		this.#log.info({ ip: this.remoteAddress, domain: this.#domain }, "component authenticated");
		this.#startLiveness();
	}

	#startLiveness(): void {
		const { idle_ping, ping_timeout } = this.#core.config.sessions;
		if (idle_ping <= 0) return;
		const domain = this.#domain;
		const cfg = this.#host?.component;
		// From the host the component hangs under (XEP-0199 §4.3: a server pings a component
		// as it pings a peer); the router never sees the answer, `#stanza` takes it first.
		const parent = cfg?.parent_host ?? domain.slice(domain.indexOf(".") + 1);
		const from = this.#core.hosts.has(parent) ? parent : this.#core.defaultHost;
		this.#liveness = new Liveness(
			{
				idlePing: idle_ping * 1000,
				pingTimeout: ping_timeout * 1000,
				track: (stanza) => stanza.name === "message" && stanza.attrs.type !== "error",
			},
			{
				ping: (id) =>
					this.#socket.send(
						x(
							"iq",
							{ type: "get", id: `${PING_PREFIX}${id}`, from, to: domain },
							x("ping", { xmlns: NS_PING }),
						),
					),
				dead: () => this.#dead(),
			},
		);
		this.#liveness.start();
	}

	/** The component did not answer a ping in time: its connection is dead (issue 21). */
	#dead(): void {
		this.#core.metrics.deadPeer("component");
		const unread = this.#liveness?.stop() ?? [];
		this.#liveness = null;
		this.close("connection-timeout", "the component stopped answering pings");
		// RFC 6120 §8.3.3.17: the service could not be reached in time; the sender learns that
		// these messages may not have arrived.
		for (const stanza of unread)
			if (mayReplyWithError(stanza))
				void this.#core.router
					.route(
						errorReply(
							stanza,
							new StanzaError("remote-server-timeout", `${this.#domain} stopped answering`),
						),
					)
					.catch((err: unknown) => this.#log.error({ err }, "bounce failed"));
	}

	async #stanza(el: Element): Promise<void> {
		// The answer to our liveness ping (XEP-0199 §4.3) goes no further.
		if (
			el.name === "iq" &&
			(el.attrs.type === "result" || el.attrs.type === "error") &&
			el.attrs.id?.startsWith(PING_PREFIX) &&
			this.#liveness?.answered(el.attrs.id.slice(PING_PREFIX.length))
		)
			return;
		const jids = this.#core.jids;
		const fromAttr = el.attrs.from;
		if (!fromAttr) el.attrs.from = this.#domain;
		else {
			let fromDomain: string;
			try {
				const from = jids.parse(fromAttr);
				fromDomain = from.domain;
				el.attrs.from = from.toString();
			} catch (e) {
				if (!(e instanceof JIDError)) throw e;
				this.close("invalid-from", `${fromAttr} is not a valid address`);
				return;
			}
			// The component speaks for its domain, and for its subdomains when it serves them:
			// whatever the router would deliver to it (and nothing a host or another component has).
			if (this.#core.local(fromDomain) !== this.#host) {
				this.close("invalid-from", `${fromAttr} is not an address of ${this.#domain}`);
				return;
			}
		}
		const toAttr = el.attrs.to;
		if (!toAttr) {
			this.#reject(
				el,
				new StanzaError("bad-request", "a component's stanzas carry a 'to' (XEP-0114 §3)"),
			);
			return;
		}
		try {
			el.attrs.to = jids.parse(toAttr).toString();
		} catch (e) {
			if (!(e instanceof JIDError)) throw e;
			this.#reject(el, new StanzaError("jid-malformed")); // RFC 6120 §8.3.3.8
			return;
		}
		const iqError = el.name === "iq" ? checkIq(el) : null;
		if (iqError) {
			this.#reject(el, iqError);
			return;
		}
		this.#core.metrics.stanzaIn("component", el.name);
		await this.#core.router.route(el);
	}

	/** An error reply written straight back (RFC 6120 §8.3; never an error to an error). */
	#reject(el: Element, error: StanzaError): void {
		if (mayReplyWithError(el)) this.send(errorReply(el, error));
	}

	/** The connection went away. */
	#closed(): void {
		if (this.#state === "closed") return;
		this.#state = "closed";
		this.#end();
	}

	#end(): void {
		if (this.#authTimer) clearTimeout(this.#authTimer);
		this.#authTimer = null;
		this.#liveness?.stop();
		this.#liveness = null;
		this.#ended(this);
		if (!this.#attached || !this.#host) return;
		this.#attached = false;
		this.#core.metrics.componentStream(-1);
		const event: ComponentConnectEvent = { host: this.#host, link: this };
		this.#host.events.fire("component/disconnect", event).catch((err: unknown) => {
			this.#log.error({ err }, "component/disconnect handler failed");
		});
	}
}
