// A minimal raw-socket XMPP client for the load generator: stream, SASL (PLAIN, SCRAM-SHA-1,
// ANONYMOUS), bind, optional initial presence. Negotiation matches substrings (no XML library); once a
// session is up, the caller takes over the socket's 'data' events.
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
	timeoutMs: number;
	/** SCRAM SaltedPassword cache, keyed by salt/iterations/password (client cost, not server's) */
	scramCache: Map<string, Buffer>;
}

export interface Session {
	socket: Socket;
	jid: string;
	/** bytes received after what negotiation consumed (e.g. the first presences) */
	rest: string;
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
		const fail = (why: string) => {
			if (done) return;
			done = true;
			clearTimeout(timer);
			socket.destroy();
			reject(new Error(`${o.user}: ${why}`));
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
			if (o.roster) {
				send("<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>");
				await expect(ROSTER_RESULT);
			}
			if (o.presence) send(o.presenceXml ?? "<presence/>");
			if (done) return;
			done = true;
			clearTimeout(timer);
			socket.off("data", onData);
			socket.removeAllListeners("close");
			socket.removeAllListeners("error");
			socket.on("error", () => {});
			answerPings(socket);
			resolve({ socket, jid: b[1] ?? "", rest: buf });
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
 * Each answer is counted in `pingsAnswered`.
 */
export function answerPings(socket: Socket): void {
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
			socket.write(`<iq type='result' id='${id}'${from ? ` to='${from}'` : ""}/>`);
			pingsAnswered.set(socket, (pingsAnswered.get(socket) ?? 0) + 1);
			tail = "";
		}
	});
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
