// A minimal raw-socket XMPP client for the load generator: stream, SASL (PLAIN, SCRAM-SHA-1,
// ANONYMOUS), bind, optional XEP-0198 stream management and initial presence. Negotiation matches
// substrings (no XML library); once a session is up, the caller takes over the socket's 'data'
// events (pings and, with stream management, `<r/>` and `<a/>` are handled here).
import { createHash, createHmac, pbkdf2, randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";

export interface Endpoint {
	host: string;
	port: number;
	domain: string;
}

/**
 * ANONYMOUS (RFC 4505): `user` is sent as the trace token, `password` is unused; the server picks
 * the localpart, Session.jid (from the bind result) has it.
 */
export type Mech = "PLAIN" | "SCRAM-SHA-1" | "ANONYMOUS";

export interface LoginOptions {
	endpoint: Endpoint;
	localAddress: string;
	user: string;
	password: string;
	mech: Mech;
	resource: string;
	presence: boolean;
	/** the initial presence to send when `presence` is set ("<presence/>" unless given) */
	presenceXml?: string;
	/** fetch the roster (and wait for it) before initial presence, as a client does */
	roster?: boolean;
	/**
	 * XEP-0198: `<enable resume='true'/>` right after bind, before anything else (as mobile
	 * clients do); anything but `<enabled/>` fails the login. Session.sm then keeps the counts.
	 */
	sm?: boolean;
	timeoutMs: number;
	/** SCRAM SaltedPassword cache, keyed by salt/iterations/password (client cost, not server's) */
	scramCache: Map<string, Buffer>;
}

export interface Session {
	socket: Socket;
	jid: string;
	/** bytes received after what negotiation consumed (e.g. the first presences) */
	rest: string;
	/** stream management, when asked for (LoginOptions.sm) */
	sm?: SmClient;
}

const SASL = "urn:ietf:params:xml:ns:xmpp-sasl";

export function streamHeader(domain: string): string {
	return `<?xml version='1.0'?><stream:stream to='${domain}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`;
}

const FEATURES_END = /<\/(?:stream:)?features>|<(?:stream:)?features[^>]*\/>/;
const SUCCESS = /<success[^>]*\/>|<success[^>]*>[^<]*<\/success>/;
const FAILURE = /<failure[\s\S]*?(?:<\/failure>|\/>)|<stream:error[\s\S]*<\/stream:error>/;
const CHALLENGE = /<challenge[^>]*>([^<]*)<\/challenge>/;
const BIND_JID = /<jid>([^<]+)<\/jid>/;
const ROSTER_RESULT = /<iq[^>]*id=['"]roster1['"](?:[^>]*\/>|[\s\S]*?<\/iq>)/;
/** XEP-0198 §3: the answer to `<enable/>`, either way. */
const SM_ANSWER = /<enabled\b[^>]*>|<failed\b[\s\S]*?(?:<\/failed>|\/>)/;

function pbkdf2Async(pw: string, salt: Buffer, iter: number): Promise<Buffer> {
	return new Promise((resolve, reject) =>
		pbkdf2(pw, salt, iter, 20, "sha1", (err, key) => (err ? reject(err) : resolve(key))),
	);
}

/** Connects, authenticates and binds. Rejects on failure or timeout (the socket is destroyed). */
export function login(o: LoginOptions): Promise<Session> {
	return new Promise<Session>((resolve, reject) => {
		const socket = connect({
			host: o.endpoint.host,
			port: o.endpoint.port,
			localAddress: o.localAddress,
		});
		socket.setNoDelay(true);
		socket.setEncoding("latin1");
		let buf = "";
		let waiter: { re: RegExp; fn: (m: RegExpExecArray) => void } | null = null;
		let done = false;
		/** what the login waits for, named in its error when it fails there */
		let stage = "";
		const fail = (why: string) => {
			if (done) return;
			done = true;
			clearTimeout(timer);
			socket.destroy();
			reject(new Error(`${o.user}: ${why}${stage}`));
		};
		const timer = setTimeout(() => fail("timeout"), o.timeoutMs);
		const pump = () => {
			if (!waiter) return;
			const f = FAILURE.exec(buf);
			const m = waiter.re.exec(buf);
			if (f && (!m || f.index < m.index)) return fail(`refused: ${f[0].slice(0, 200)}`);
			if (!m) return;
			buf = buf.slice(m.index + m[0].length);
			const w = waiter;
			waiter = null;
			w.fn(m);
		};
		const expect = (re: RegExp) =>
			new Promise<RegExpExecArray>((res) => {
				waiter = { re, fn: res };
				pump();
			});
		const onData = (d: string) => {
			buf += d;
			pump();
		};
		socket.on("data", onData);
		socket.on("error", (e) => fail(e.message));
		socket.on("close", () => fail("closed"));
		const run = async () => {
			const send = (s: string) => socket.write(s);
			send(streamHeader(o.endpoint.domain));
			const f1 = await expect(FEATURES_END);
			void f1;
			if (o.mech === "PLAIN") {
				const token = Buffer.from(`\0${o.user}\0${o.password}`).toString("base64");
				send(`<auth xmlns='${SASL}' mechanism='PLAIN'>${token}</auth>`);
			} else if (o.mech === "ANONYMOUS") {
				// The trace token as the initial response (no empty challenge round trip).
				const trace = Buffer.from(o.user).toString("base64");
				send(`<auth xmlns='${SASL}' mechanism='ANONYMOUS'>${trace}</auth>`);
			} else {
				const cnonce = randomBytes(12).toString("base64");
				const first = `n=${o.user},r=${cnonce}`;
				send(
					`<auth xmlns='${SASL}' mechanism='SCRAM-SHA-1'>${Buffer.from(`n,,${first}`).toString("base64")}</auth>`,
				);
				const ch = await expect(CHALLENGE);
				const serverFirst = Buffer.from(ch[1] ?? "", "base64").toString();
				const attrs = new Map(
					serverFirst.split(",").map((kv) => [kv.slice(0, 1), kv.slice(2)] as const),
				);
				const nonce = attrs.get("r") ?? "";
				const salt = Buffer.from(attrs.get("s") ?? "", "base64");
				const iter = Number(attrs.get("i"));
				const key = `${attrs.get("s")}/${iter}/${o.password}`;
				let salted = o.scramCache.get(key);
				if (!salted) {
					salted = await pbkdf2Async(o.password, salt, iter);
					o.scramCache.set(key, salted);
				}
				const clientKey = createHmac("sha1", salted).update("Client Key").digest();
				const storedKey = createHash("sha1").update(clientKey).digest();
				const finalBare = `c=biws,r=${nonce}`;
				const authMessage = `${first},${serverFirst},${finalBare}`;
				const sig = createHmac("sha1", storedKey).update(authMessage).digest();
				for (let i = 0; i < clientKey.length; i++)
					clientKey[i] = (clientKey[i] as number) ^ (sig[i] as number);
				const final = `${finalBare},p=${clientKey.toString("base64")}`;
				send(`<response xmlns='${SASL}'>${Buffer.from(final).toString("base64")}</response>`);
			}
			await expect(SUCCESS);
			send(streamHeader(o.endpoint.domain));
			await expect(FEATURES_END);
			send(
				`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${o.resource}</resource></bind></iq>`,
			);
			const b = await expect(BIND_JID);
			let sm: SmClient | undefined;
			if (o.sm) {
				stage = " (XEP-0198 <enable/>: is stream management on?)";
				send(`<enable xmlns='${NS_SM}' resume='true'/>`);
				const answer = (await expect(SM_ANSWER))[0];
				if (!answer.startsWith("<enabled")) return fail(`answered ${answer.slice(0, 200)}`);
				stage = "";
				// Counting starts here (§4): what arrives from now on, and what we send.
				sm = new SmClient(socket);
				sm.feed(buf);
				socket.on("data", (d: string) => sm?.feed(d));
			}
			const stanza = (xml: string) => send(sm ? sm.out(xml) : xml);
			if (o.roster) {
				stanza("<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>");
				await expect(ROSTER_RESULT);
			}
			if (o.presence) stanza(o.presenceXml ?? "<presence/>");
			if (done) return;
			done = true;
			clearTimeout(timer);
			socket.off("data", onData);
			socket.removeAllListeners("close");
			socket.removeAllListeners("error");
			socket.on("error", () => {});
			answerPings(socket, sm);
			resolve({ socket, jid: b[1] ?? "", rest: buf, sm });
		};
		run().catch((e: unknown) => fail((e as Error).message));
	});
}

const PING = /<iq\b([^>]*)>\s*<ping\b[^>]*urn:xmpp:ping/g;
const PING_ID = /\sid=["']([^"']*)["']/;
const PING_FROM = /\sfrom=["']([^"']*)["']/;

/** Pings answered per socket (the soak scenario's pings per session). */
export const pingsAnswered = new WeakMap<Socket, number>();

/**
 * Answers a server's XEP-0199 pings on a logged-in session, as every client must answer an IQ
 * (RFC 6120 §8.2.3): servers that check liveness (Parley's `sessions.idle_ping`) would
 * otherwise drop the bench's quiet sessions. Whatever else the scenario reads is untouched.
 * Each answer is counted in `pingsAnswered` (and, with stream management, as a stanza sent).
 */
export function answerPings(socket: Socket, sm?: SmClient): void {
	let tail = "";
	socket.on("data", (d: Buffer | string) => {
		const text = tail + String(d);
		tail = text.slice(-1024);
		if (!text.includes("urn:xmpp:ping")) return;
		for (const m of text.matchAll(PING)) {
			const head = m[1] ?? "";
			if (!/\stype=["']get["']/.test(head)) continue;
			const id = PING_ID.exec(head)?.[1];
			if (id === undefined) continue;
			const from = PING_FROM.exec(head)?.[1];
			const answer = `<iq type='result' id='${id}'${from ? ` to='${from}'` : ""}/>`;
			socket.write(sm ? sm.out(answer) : answer);
			pingsAnswered.set(socket, (pingsAnswered.get(socket) ?? 0) + 1);
			tail = "";
		}
	});
}

/**
 * Splits a stream (after negotiation, at stanza level) into top-level stanzas by counting
 * start and end tags: enough for what servers send (no '>' in attribute values, no comments).
 * Stray end tags (the tail of a stanza negotiation consumed, `</stream:stream>`) are skipped.
 */
export function stanzaSplitter(on: (stanza: string) => void): (d: string) => void {
	let buf = "";
	let pos = 0;
	let depth = 0;
	let start = -1;
	return (d: string) => {
		buf += d;
		for (;;) {
			const lt = buf.indexOf("<", pos);
			if (lt === -1) {
				pos = buf.length;
				break;
			}
			const gt = buf.indexOf(">", lt);
			if (gt === -1) {
				pos = lt;
				break;
			}
			const c = buf.charCodeAt(lt + 1);
			if (c === 47 /* / */) {
				if (depth > 0 && --depth === 0) {
					on(buf.slice(start, gt + 1));
					start = -1;
				}
			} else if (c !== 63 /* ? */ && c !== 33 /* ! */) {
				if (buf.charCodeAt(gt - 1) === 47) {
					if (depth === 0) on(buf.slice(lt, gt + 1));
				} else if (depth++ === 0) start = lt;
			}
			pos = gt + 1;
		}
		const keep = start !== -1 ? start : pos;
		if (keep > 0) {
			buf = buf.slice(keep);
			pos -= keep;
			if (start !== -1) start = 0;
		}
	};
}

export const NS_SM = "urn:xmpp:sm:3";
/** The bench's clients ask for an acknowledgement after every this many stanzas they send. */
export const SM_REQUEST_EVERY = 5;
const SM_ELEMENT = /^<(r|a)\b[^>]*\sxmlns=['"]urn:xmpp:sm:3['"]/;
const ATTR_H = /\sh=['"](\d+)['"]/;
const STANZA = /^<(?:message|presence|iq)[\s/>]/;

/** A session's stream management counters (SmClient), summed over sessions by the generator. */
export interface SmCounts {
	sessions: number;
	/** stanzas sent and received since `<enable/>` */
	sent: number;
	received: number;
	/** `<r/>` the clients sent, and the `<a/>` answers to them: right `h`, wrong `h` */
	requests: number;
	acksRight: number;
	acksWrong: number;
	/** `<r/>` of the clients' not answered (after the wait for them) */
	unanswered: number;
	/** `<r/>` from the server, each answered with `<a h/>` */
	serverRequests: number;
	/** a few wrong answers: what was expected and what came */
	wrongSamples: string[];
}

/**
 * The client side of XEP-0198 on one bench session, from `<enabled/>` on: counts the stanzas
 * (message, presence, iq) it sends and receives, answers the server's `<r/>` with its count
 * (§4), asks `<r/>` itself after every SM_REQUEST_EVERY stanzas it sends, and checks each `<a/>`
 * the server answers with: its `h` must be what had been sent before that `<r/>` (the server
 * handles a stream's elements in order). Nothing here resumes: the bench's connections do not
 * break.
 */
export class SmClient {
	sent = 0;
	received = 0;
	requests = 0;
	acksRight = 0;
	acksWrong = 0;
	serverRequests = 0;
	readonly wrongSamples: string[] = [];
	/** the `h` each outstanding `<r/>` of ours must be answered with, oldest first */
	readonly #expected: number[] = [];
	readonly #split: (d: string) => void;
	#drained: (() => void) | undefined;
	readonly socket: Socket;

	constructor(socket: Socket) {
		this.socket = socket;
		this.#split = stanzaSplitter((s) => this.#element(s));
	}

	/** Text the server sent (the stream after `<enabled/>`, in order). */
	feed(d: string): void {
		this.#split(d);
	}

	/** One stanza to send, followed by `<r/>` when it is the SM_REQUEST_EVERY-th since the last. */
	out(stanza: string): string {
		this.sent++;
		if (this.sent % SM_REQUEST_EVERY !== 0) return stanza;
		this.requests++;
		this.#expected.push(this.sent);
		return `${stanza}<r xmlns='${NS_SM}'/>`;
	}

	/**
	 * An `<a/>` for everything received, sent before closing the stream: without it the servers
	 * treat the last few stanzas as not received and reroute them (offline storage, XEP-0160),
	 * which would be work left over for the next scenario.
	 */
	ackAll(): void {
		if (!this.socket.writableEnded)
			this.socket.write(`<a xmlns='${NS_SM}' h='${this.received % 2 ** 32}'/>`);
	}

	/** Our `<r/>` not answered yet. */
	get unanswered(): number {
		return this.#expected.length;
	}

	/** Resolves when every `<r/>` of ours is answered, or after `ms`. */
	answered(ms: number): Promise<void> {
		if (!this.#expected.length) return Promise.resolve();
		return new Promise((resolve) => {
			const t = setTimeout(() => done(), ms);
			const done = () => {
				clearTimeout(t);
				this.#drained = undefined;
				resolve();
			};
			this.#drained = done;
		});
	}

	#element(s: string): void {
		const sm = SM_ELEMENT.exec(s);
		if (!sm) {
			// §4: every stanza counts; nothing else does (stream errors end the test anyway).
			if (STANZA.test(s)) this.received++;
			return;
		}
		if (sm[1] === "r") {
			this.serverRequests++;
			if (!this.socket.writableEnded)
				this.socket.write(`<a xmlns='${NS_SM}' h='${this.received % 2 ** 32}'/>`);
			return;
		}
		const h = Number(ATTR_H.exec(s)?.[1]);
		const want = this.#expected.shift();
		if (want !== undefined && h === want % 2 ** 32) this.acksRight++;
		else {
			// An unasked <a/> (§4 allows them) would show here too: none of the three sends one.
			this.acksWrong++;
			if (this.wrongSamples.length < 3)
				this.wrongSamples.push(`expected h=${want ?? "(no <r/> out)"}, got ${s.slice(0, 120)}`);
		}
		if (!this.#expected.length) this.#drained?.();
	}
}

/** In-band registration (XEP-0077) of one account on its own unauthenticated stream. */
export function register(
	endpoint: Endpoint,
	user: string,
	password: string,
	timeoutMs: number,
): Promise<"created" | "exists"> {
	return new Promise((resolve, reject) => {
		const socket = connect({ host: endpoint.host, port: endpoint.port });
		socket.setEncoding("latin1");
		let buf = "";
		let sent = false;
		const timer = setTimeout(() => {
			socket.destroy();
			reject(new Error(`${user}: registration timeout`));
		}, timeoutMs);
		const finish = (r: "created" | "exists" | Error) => {
			clearTimeout(timer);
			socket.end("</stream:stream>");
			socket.destroy();
			if (r instanceof Error) reject(r);
			else resolve(r);
		};
		socket.on("error", (e) => finish(e));
		socket.on("data", (d: string) => {
			buf += d;
			if (!sent && FEATURES_END.test(buf)) {
				sent = true;
				buf = "";
				socket.write(
					`<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>${user}</username><password>${password}</password></query></iq>`,
				);
				return;
			}
			if (sent && /<iq[^>]*type=['"]result['"]/.test(buf)) finish("created");
			else if (sent && /<conflict/.test(buf)) finish("exists");
			else if (sent && /type=['"]error['"][\s\S]*<\/iq>/.test(buf))
				finish(new Error(`${user}: registration refused: ${buf.slice(0, 300)}`));
		});
		socket.write(streamHeader(endpoint.domain));
	});
}
