/**
 * A small BOSH client (XEP-0124 / XEP-0206) on fetch, for end-to-end tests: xmpp.js has no BOSH
 * transport. It can send exactly the bodies a broken client would (`post`) and run a normal
 * session (`create`, `login`, a long-poll loop, `send`).
 */
import http from "node:http";
import type { Element } from "../../src/xml/element.ts";
import { parseDocument } from "../../src/xml/parser.ts";

export const NS_HTTPBIND = "http://jabber.org/protocol/httpbind";
const LIMITS = { maxStanzaBytes: 10 * 1024 * 1024, maxDepth: 100 };

export interface BoshResponse {
	status: number;
	headers: Headers;
	text: string;
	body: Element;
}

export class BoshClient {
	readonly url: string;
	sid = "";
	rid: number;
	/** Every child element of every response, in arrival order. */
	readonly received: Element[] = [];
	#waiters: (() => void)[] = [];
	#polling = false;
	#vanished = false;
	#pollDone: Promise<void> = Promise.resolve();
	#inflight = new Set<Promise<unknown>>();
	/**
	 * Each request on a connection of its own (plain http:// only), as behind a balancer that
	 * spreads requests: with `parley serve --workers N` the kernel picks a worker per connection.
	 */
	freshConnections = false;

	constructor(url: string, firstRid = 1000 + Math.floor(Math.random() * 100_000)) {
		this.url = url;
		this.rid = firstRid;
	}

	/** POSTs raw text and parses the answer. */
	async post(text: string, headers: Record<string, string> = {}): Promise<BoshResponse> {
		if (this.freshConnections) return this.#postAlone(text, headers);
		const res = await fetch(this.url, {
			method: "POST",
			headers: { "content-type": "text/xml; charset=utf-8", ...headers },
			body: text,
		});
		const answer = await res.text();
		return {
			status: res.status,
			headers: res.headers,
			text: answer,
			body: parseDocument(answer, LIMITS),
		};
	}

	#postAlone(text: string, headers: Record<string, string>): Promise<BoshResponse> {
		return new Promise((resolve, reject) => {
			const req = http.request(
				this.url,
				{
					method: "POST",
					agent: false,
					headers: { "content-type": "text/xml; charset=utf-8", connection: "close", ...headers },
				},
				(res) => {
					const chunks: Buffer[] = [];
					res.on("data", (c: Buffer) => chunks.push(c));
					res.on("error", reject);
					res.on("end", () => {
						const answer = Buffer.concat(chunks).toString();
						const h = new Headers();
						for (const [k, v] of Object.entries(res.headers))
							if (typeof v === "string") h.set(k, v);
						resolve({
							status: res.statusCode ?? 0,
							headers: h,
							text: answer,
							body: parseDocument(answer, LIMITS),
						});
					});
				},
			);
			req.on("error", reject);
			req.end(text);
		});
	}

	/** A `<body/>` with this session's sid, the given rid and attributes. */
	bodyXml(rid: number, attrs: Record<string, string> = {}, children = ""): string {
		let s = `<body xmlns='${NS_HTTPBIND}' rid='${rid}'`;
		if (this.sid) s += ` sid='${this.sid}'`;
		for (const [k, v] of Object.entries(attrs)) s += ` ${k}='${v}'`;
		return children ? `${s}>${children}</body>` : `${s}/>`;
	}

	/** Sends the next request in rid order and records what comes back. */
	async request(attrs: Record<string, string> = {}, children = ""): Promise<Element> {
		const rid = this.rid++;
		const p = this.post(this.bodyXml(rid, attrs, children));
		this.#inflight.add(p);
		try {
			const res = await p;
			this.#record(res.body);
			return res.body;
		} finally {
			this.#inflight.delete(p);
		}
	}

	#record(body: Element): void {
		if (this.#vanished) return;
		this.received.push(...body.elements());
		for (const w of this.#waiters.splice(0)) w();
	}

	/** XEP-0124 §7.1 / XEP-0206 §4 session creation. */
	async create(
		opts: { to?: string; wait?: number; hold?: number; ack?: boolean } = {},
	): Promise<Element> {
		const attrs: Record<string, string> = {
			to: opts.to ?? "localhost",
			wait: String(opts.wait ?? 10),
			hold: String(opts.hold ?? 1),
			ver: "1.11",
			"xml:lang": "en",
			"xmpp:version": "1.0",
			"xmlns:xmpp": "urn:xmpp:xbosh",
		};
		if (opts.ack) attrs.ack = "1";
		const body = await this.request(attrs);
		if (body.attrs.type === "terminate") throw new Error(`session refused: ${body.toString()}`);
		this.sid = body.attrs.sid ?? "";
		return body;
	}

	/** Creates a session, authenticates with PLAIN, restarts (XEP-0206 §5) and binds. */
	async login(user: string, password: string, resource?: string): Promise<string> {
		await this.create();
		const auth = Buffer.from(`\0${user}\0${password}`).toString("base64");
		return this.#authenticateAndBind("PLAIN", auth, resource);
	}

	/**
	 * Creates a session to `domain`, authenticates with SASL ANONYMOUS (RFC 4505: one message,
	 * an empty trace here), restarts and binds: the JID is the server's choice.
	 */
	async loginAnonymous(domain: string, resource?: string): Promise<string> {
		await this.create({ to: domain });
		return this.#authenticateAndBind("ANONYMOUS", "=", resource);
	}

	async #authenticateAndBind(mechanism: string, payload: string, resource?: string) {
		const r1 = await this.request(
			{},
			`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='${mechanism}'>${payload}</auth>`,
		);
		if (!r1.getChild("success")) throw new Error(`authentication failed: ${r1.toString()}`);
		const r2 = await this.request({ "xmpp:restart": "true", "xmlns:xmpp": "urn:xmpp:xbosh" });
		if (!r2.getChild("features")) throw new Error(`no features after restart: ${r2.toString()}`);
		const res = resource ? `<resource>${resource}</resource>` : "";
		const r3 = await this.request(
			{},
			`<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>${res}</bind></iq>`,
		);
		const jid = r3.getChild("iq")?.getChild("bind")?.getChildText("jid");
		if (!jid) throw new Error(`bind failed: ${r3.toString()}`);
		return jid;
	}

	/** Keeps one empty request held by the server so that it can push stanzas (XEP-0124 §11). */
	startPolling(): void {
		if (this.#polling) return;
		this.#polling = true;
		this.#pollDone = (async () => {
			while (this.#polling) {
				const body = await this.request().catch(() => null);
				if (!body || body.attrs.type === "terminate") break;
			}
			this.#polling = false;
		})();
	}

	/**
	 * The client's network goes away (issue 21): no more requests, and whatever the server still
	 * answers to requests already made is never read.
	 */
	vanish(): void {
		this.#polling = false;
		this.#vanished = true;
	}

	/** Sends stanzas without waiting for the (possibly held) response. */
	send(children: string): void {
		// One send at a time besides the poll: with hold=1 a client may have two requests open
		// (XEP-0124 §7.1 'requests'); a third is overactivity and ends the session (§12).
		this.#sending = this.#sending
			.then(() => this.request({}, children).then(() => undefined))
			.catch(() => {});
	}

	#sending: Promise<void> = Promise.resolve();

	/** Waits for a received element matching `pred` (a safety net, not a timing assertion). */
	async waitFor(pred: (el: Element) => boolean, what: string, ms = 30_000): Promise<Element> {
		const deadline = Date.now() + ms;
		for (;;) {
			const found = this.received.find(pred);
			if (found) return found;
			if (Date.now() > deadline) throw new Error(`no ${what} within ${ms} ms`);
			await new Promise<void>((resolve) => {
				const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
				this.#waiters.push(() => {
					clearTimeout(t);
					resolve();
				});
			});
		}
	}

	/** XEP-0124 §13: ends the session, optionally with last stanzas. */
	async terminate(children = ""): Promise<Element> {
		this.#polling = false;
		const body = await this.request({ type: "terminate" }, children);
		await this.#pollDone;
		await Promise.allSettled([...this.#inflight]);
		return body;
	}
}
