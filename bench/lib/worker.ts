// Load generator worker: a forked process driven over IPC by bench/run.ts. Raw sockets,
// pre-built stanza strings, deliveries counted by scanning for a marker in the message body.
import { createHash } from "node:crypto";
import { connect, type Socket } from "node:net";
import {
	type Endpoint,
	login,
	type Mech,
	pingsAnswered,
	register,
	type Session,
	type SmClient,
	type SmCounts,
	stanzaSplitter,
} from "./xmpp.ts";

export type Command =
	| {
			cmd: "login";
			endpoint: Endpoint;
			users: string[];
			password: string;
			mech: Mech;
			concurrency: number;
			keep: boolean;
			presence: boolean;
			timeoutMs: number;
			addrOffset: number;
	  }
	| { cmd: "register"; endpoint: Endpoint; users: string[]; password: string; concurrency: number }
	| {
			cmd: "chatSetup";
			endpoint: Endpoint;
			relay: boolean;
			/** pairs (users[2p], users[2p+1]), or with `receivers` (users[p], receivers.users[p]) */
			users: string[];
			password: string;
			mech: Mech;
			/**
			 * The s2s scenario: the receivers are on another server (`endpoint`, its domain), and
			 * `users` are all senders; the pairs' messages cross from one server to the other.
			 */
			receivers?: { endpoint: Endpoint; users: string[] };
			/** XEP-0198 on every session (the chat-sm scenario): see SmClient */
			sm?: boolean;
	  }
	| {
			cmd: "chatRun";
			tag: string;
			window: number;
			perPair: number;
			bodyBytes: number;
			capMs: number;
			/** open loop: offered messages/s over all pairs (window then only caps what is in flight) */
			rate?: number;
	  }
	| {
			cmd: "rosterRun";
			endpoint: Endpoint;
			users: string[];
			password: string;
			mech: Mech;
			/** per login: how long to wait for the presences of the contacts already online */
			waitMs: number;
	  }
	| {
			/** MUC occupants: log in (bind, initial presence) and hold the sessions; no join yet */
			cmd: "mucLogin";
			endpoint: Endpoint;
			users: string[];
			password: string;
			mech: Mech;
			concurrency: number;
	  }
	| {
			/**
			 * The held sessions join `room` (bare JID; nick = user name), the first one alone (it
			 * creates the room and, on status 201, unlocks it with an empty muc#owner form), then
			 * the others `concurrency` at a time. A join is done at its subject message.
			 */
			cmd: "mucJoin";
			room: string;
			concurrency: number;
			timeoutMs: number;
			/** after the self-presence (110), how long to wait for the subject before giving up */
			subjectWaitMs: number;
	  }
	| {
			/**
			 * The first `senders` occupants each send `perSender` groupchat messages with up to
			 * `window` in flight; a message leaves the window when every occupant (the sender's
			 * own reflection included) received it.
			 */
			cmd: "mucRun";
			tag: string;
			senders: number;
			window: number;
			perSender: number;
			bodyBytes: number;
			capMs: number;
	  }
	| {
			/**
			 * PEP (XEP-0163): the contacts log in (roster get, then initial presence with the
			 * XEP-0115 caps of PEP_CAPS) and from then on answer every disco#info query with
			 * PEP_CAPS's info; then the publisher logs in (roster get, plain initial presence:
			 * it is not interested in its own tune). All the sessions are held.
			 */
			cmd: "pepSetup";
			endpoint: Endpoint;
			publisher: string;
			contacts: string[];
			password: string;
			mech: Mech;
			concurrency: number;
	  }
	| {
			/**
			 * The publisher publishes `items` items (User Tune, XEP-0118, item id "current") to
			 * its own PEP node http://jabber.org/protocol/tune (iq set, no `to`), up to `window`
			 * in flight: an item leaves the window when its publish got a result and every contact
			 * received its notification (or when its publish got an error). Ends when every item
			 * is done, at `capMs`, or after `stallMs` without a notification or a result. The
			 * notifications are counted on (until pepSettle or the next pepRun).
			 */
			cmd: "pepRun";
			tag: string;
			items: number;
			window: number;
			capMs: number;
			stallMs: number;
	  }
	| {
			/** waits `waitMs` (late notifications, duplicates), then the last pepRun's final counts */
			cmd: "pepSettle";
			waitMs: number;
	  }
	/** the soak scenario: the held sessions' counters from now on (see SoakStats) */
	| { cmd: "soakMark" }
	/** the soak scenario: what the held sessions received and sent since soakMark */
	| { cmd: "soakStats" }
	/**
	 * The chat-sm scenario: the pairs' stream management counts, summed, after waiting up to
	 * `waitMs` for the answers to the clients' outstanding `<r/>`
	 */
	| { cmd: "smCounts"; waitMs: number }
	| { cmd: "closeAll" }
	| { cmd: "exit" };

/**
 * The soak scenario's counters over the held sessions (login with `keep`), since soakMark.
 * Bytes are TCP payload as the client's socket counts it (Node's bytesRead/bytesWritten): what
 * the server wrote to the session and read from it, without TCP/IP headers.
 */
export interface SoakStats {
	held: number;
	/** held sessions whose socket the server closed (or that broke) since their login */
	dropped: number;
	/** the first dropped sessions' last bytes received (a stream error says why) */
	droppedSamples: string[];
	/** bytes the clients received (the server's output) */
	bytesToClients: number;
	/** bytes the clients sent (the server's input: ping answers, whitespace) */
	bytesFromClients: number;
	/** XEP-0199 pings from the server answered */
	pings: number;
	pingsMin: number;
	pingsMax: number;
	/** reads that were only whitespace (a server's whitespace keepalive) */
	whitespace: number;
	/** reads of anything else than a ping or whitespace (should be 0 for idle sessions) */
	otherReads: number;
	/** a sample of those */
	otherSamples: string[];
}

export interface PepSetupResult {
	contacts: number;
	failures: number;
	errors: string[];
	/** disco#info queries the contacts answered during the logins (the caps' verification) */
	discoAnswered: number;
}

export interface PepResult {
	contacts: number;
	items: number;
	/** publishes sent */
	published: number;
	/** publishes answered with a result */
	results: number;
	/** publishes answered with an error */
	publishErrors: number;
	/** the first error answers (stanza text, shortened) */
	errors: string[];
	/** items × contacts */
	expected: number;
	/** notifications of this run's items received, once per contact and item */
	delivered: number;
	duplicates: number;
	/** the first duplicate notification, and the user that received it twice */
	duplicateSample?: string;
	missing: number;
	/** contacts that missed at least one item */
	contactsMissing: number;
	elapsedMs: number;
	/** publish sent → each contact's notification, over all notifications */
	p50Ms: number;
	p99Ms: number;
	capped: boolean;
	stalled: boolean;
	/** disco#info queries answered so far by all the sessions (cumulative) */
	discoAnswered: number;
	/** pubsub#event messages without this run's marker (e.g. a last item sent again) */
	otherEvents: number;
}

export interface MucJoinResult {
	joined: number;
	failures: number;
	errors: string[];
	/** join presence sent → subject received (or self-presence + subjectWaitMs), per occupant */
	latenciesMs: number[];
	/** the first join's self-presence carried status 201 (a new room) */
	created: boolean;
	/** the instant-room form (XEP-0045 §10.1.2): "accepted", "not asked (no 201)" or the error */
	configured: string;
	/** joins that got their self-presence but no subject message within subjectWaitMs */
	noSubject: number;
}

export interface MucResult {
	occupants: number;
	senders: number;
	messages: number;
	sent: number;
	/** messages × occupants */
	expected: number;
	delivered: number;
	duplicates: number;
	missing: number;
	/** occupants that missed at least one message */
	occupantsMissing: number;
	elapsedMs: number;
	/** send → each occupant's receipt, over all deliveries */
	p50Ms: number;
	p99Ms: number;
	capped: boolean;
}

export interface LoginResult {
	ok: number;
	failures: number;
	errors: string[];
	latenciesMs: number[];
}

export interface ChatResult {
	messages: number;
	sent: number;
	delivered: number;
	duplicates: number;
	missing: number;
	elapsedMs: number;
	p50Ms: number;
	p99Ms: number;
	capped: boolean;
}

export interface RosterResult {
	ok: number;
	failures: number;
	errors: string[];
	/** connect → roster → presence → the presences of all contacts already online, per login */
	latenciesMs: number[];
	/** available presences from contacts received, all sessions (unique sender per receiver) */
	delivered: number;
	/** of those: a later login's broadcast reaching a contact already online */
	broadcastReached: number;
	/** of those: answers to the new session's probes, from contacts already online */
	probeAnswers: number;
	/** pairs (receiver, earlier/later contact) that should have been delivered */
	expectedEach: number;
	duplicates: number;
	/** logins that did not get all the online contacts' presences within waitMs */
	incomplete: number;
}

export function addr(i: number): string {
	// 127.0.0.2 .. 127.0.0.201: 200 source addresses, each with its own ephemeral port range.
	return `127.0.0.${2 + (i % 200)}`;
}

export function percentile(sorted: ArrayLike<number>, p: number): number {
	if (sorted.length === 0) return Number.NaN;
	const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
	return sorted[i] as number;
}

interface Pair {
	a: Socket;
	b: Socket;
	bJid: string;
	/** stream management on both sessions (the chat-sm scenario) */
	aSm?: SmClient;
	bSm?: SmClient;
}

/** A PEP scenario session: its socket, fed through a stanzaSplitter. */
interface PepSession {
	socket: Socket;
	user: string;
}

/** One pepRun's counters, fed by the contacts' and the publisher's stanzas. */
interface PepRunState {
	/** a contact's pubsub#event message: false when it has none of this run's items */
	event(k: number, stanza: string): boolean;
	/** a result or error to one of this run's publishes */
	answer(seq: number, ok: boolean, stanza: string): void;
	summary(): PepResult;
	/** publish ids of this run: `${idPrefix}${seq}` */
	idPrefix: string;
}

const NS_DISCO_INFO = "http://jabber.org/protocol/disco#info";
const NS_CAPS = "http://jabber.org/protocol/caps";
const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event";
export const NS_TUNE = "http://jabber.org/protocol/tune";

/**
 * XEP-0115 §5.1: the verification string of a disco#info with these identities and features
 * (no extended forms): "category/type/lang/name<" per identity, then "feature<" per feature,
 * each list sorted (i;octet: the strings here are ASCII), SHA-1, Base64.
 */
export function capsVer(
	identities: { category: string; type: string; lang?: string; name?: string }[],
	features: string[],
): string {
	const ids = identities
		.map((i) => `${i.category}/${i.type}/${i.lang ?? ""}/${i.name ?? ""}<`)
		.sort();
	const s =
		ids.join("") +
		[...features]
			.sort()
			.map((f) => `${f}<`)
			.join("");
	return createHash("sha1").update(s, "utf8").digest("base64");
}

/** What a PEP scenario contact is (XEP-0115 caps): a pc client interested in User Tune. */
export const PEP_CAPS = (() => {
	const node = "urn:parley:bench";
	const identity = { category: "client", type: "pc", name: "Parley bench" };
	const features = [NS_CAPS, NS_DISCO_INFO, NS_TUNE, `${NS_TUNE}+notify`];
	const ver = capsVer([identity], features);
	return {
		node,
		ver,
		presence: `<presence><c xmlns='${NS_CAPS}' hash='sha-1' node='${node}' ver='${ver}'/></presence>`,
		/** the disco#info query's children */
		info:
			`<identity category='${identity.category}' type='${identity.type}' name='${identity.name}'/>` +
			features.map((f) => `<feature var='${f}'/>`).join(""),
	};
})();
/** The publisher's disco#info (it sent no caps: nobody should ask, but it answers). */
const PLAIN_INFO = `<identity category='client' type='pc' name='Parley bench'/><feature var='${NS_DISCO_INFO}'/>`;

const ATTR_ID = /\sid=['"]([^'"]*)['"]/;
const ATTR_FROM = /\sfrom=['"]([^'"]*)['"]/;
const ATTR_TYPE = /\stype=['"]([^'"]*)['"]/;
const QUERY_NODE = /<query\b[^>]*\snode=['"]([^'"]*)['"]/;

interface Occupant {
	socket: Socket;
	nick: string;
	/** swallows what arrives between phases (other joins' presences) */
	idle: (d: string) => void;
}

const NS_MUC = "http://jabber.org/protocol/muc";
const SELF_PRESENCE = /code=['"]110['"]/;
const SUBJECT = /<subject[\s/>]/;
const ERROR_PRESENCE = /<presence[^>]*type=['"]error['"][\s\S]*?<\/presence>/;
const CONFIG_RESULT = /<iq[^>]*\bid=['"]mucconf['"][^>]*>/;

/** What a held session saw (the soak scenario). */
interface HeldInfo {
	whitespace: number;
	other: number;
	otherSample?: string;
	/** the last bytes received, kept for a dropped session's reason */
	last: string;
	closed: boolean;
}

const WHITESPACE = /^\s+$/;
const PING_STANZA = /^\s*<iq\b[^>]*>\s*<ping\b[^>]*urn:xmpp:ping[^>]*\/>\s*<\/iq>\s*$/;

class Generator {
	held: Socket[] = [];
	heldInfo = new WeakMap<Socket, HeldInfo>();
	/** per held socket at soakMark: bytes read, bytes written, pings, whitespace and other reads */
	soakBase = new Map<Socket, [number, number, number, number, number]>();
	pairs: Pair[] = [];
	occupants: Occupant[] = [];
	room = "";
	scramCache = new Map<string, Buffer>();
	pepPublisher: PepSession | null = null;
	pepContacts: PepSession[] = [];
	pepState: PepRunState | null = null;
	discoAnswered = 0;
	otherEvents = 0;

	async login(c: Extract<Command, { cmd: "login" }>): Promise<LoginResult> {
		const res: LoginResult = { ok: 0, failures: 0, errors: [], latenciesMs: [] };
		let next = 0;
		const one = async () => {
			while (next < c.users.length) {
				const i = next++;
				const user = c.users[i] as string;
				const t0 = performance.now();
				try {
					const s = await login({
						endpoint: c.endpoint,
						localAddress: addr(c.addrOffset + i),
						user,
						password: c.password,
						mech: c.mech,
						resource: "bench",
						presence: c.presence,
						timeoutMs: c.timeoutMs,
						scramCache: this.scramCache,
					});
					res.latenciesMs.push(performance.now() - t0);
					res.ok++;
					if (c.keep) this.hold(s.socket);
					else closeGracefully(s.socket);
				} catch (e) {
					res.failures++;
					if (res.errors.length < 5) res.errors.push((e as Error).message);
				}
			}
		};
		await Promise.all(Array.from({ length: Math.min(c.concurrency, c.users.length) }, one));
		return res;
	}

	/** Keeps a logged-in session open, watching what arrives on it (soak scenario). */
	hold(socket: Socket) {
		this.held.push(socket);
		const info: HeldInfo = { whitespace: 0, other: 0, last: "", closed: false };
		this.heldInfo.set(socket, info);
		socket.on("data", (d: string) => {
			info.last = (info.last + d).slice(-300);
			if (WHITESPACE.test(d)) info.whitespace++;
			else if (!PING_STANZA.test(d)) {
				info.other++;
				info.otherSample ??= d.slice(0, 300);
			}
		});
		socket.once("close", () => {
			info.closed = true;
		});
	}

	soakMark() {
		this.soakBase.clear();
		for (const s of this.held) {
			const i = this.heldInfo.get(s);
			this.soakBase.set(s, [
				s.bytesRead,
				s.bytesWritten,
				pingsAnswered.get(s) ?? 0,
				i?.whitespace ?? 0,
				i?.other ?? 0,
			]);
		}
		return { held: this.held.length };
	}

	soakStats(): SoakStats {
		const r: SoakStats = {
			held: 0,
			dropped: 0,
			droppedSamples: [],
			bytesToClients: 0,
			bytesFromClients: 0,
			pings: 0,
			pingsMin: Number.POSITIVE_INFINITY,
			pingsMax: 0,
			whitespace: 0,
			otherReads: 0,
			otherSamples: [],
		};
		for (const [s, [read, written, pings, ws, other]] of this.soakBase) {
			const i = this.heldInfo.get(s);
			r.held++;
			r.bytesToClients += s.bytesRead - read;
			r.bytesFromClients += s.bytesWritten - written;
			const p = (pingsAnswered.get(s) ?? 0) - pings;
			r.pings += p;
			r.pingsMin = Math.min(r.pingsMin, p);
			r.pingsMax = Math.max(r.pingsMax, p);
			r.whitespace += (i?.whitespace ?? 0) - ws;
			const o = (i?.other ?? 0) - other;
			r.otherReads += o;
			if (o > 0 && i?.otherSample && r.otherSamples.length < 3) r.otherSamples.push(i.otherSample);
			if (i?.closed || s.destroyed) {
				r.dropped++;
				if (r.droppedSamples.length < 3) r.droppedSamples.push(i?.last ?? "");
			}
		}
		if (!r.held) r.pingsMin = 0;
		return r;
	}

	async register(c: Extract<Command, { cmd: "register" }>) {
		let next = 0;
		let created = 0;
		let exists = 0;
		const errors: string[] = [];
		const one = async () => {
			while (next < c.users.length) {
				const user = c.users[next++] as string;
				try {
					const r = await register(c.endpoint, user, c.password, 30_000);
					if (r === "created") created++;
					else exists++;
				} catch (e) {
					if (errors.length < 5) errors.push((e as Error).message);
				}
			}
		};
		await Promise.all(Array.from({ length: c.concurrency }, one));
		return { created, exists, errors };
	}

	async chatSetup(c: Extract<Command, { cmd: "chatSetup" }>) {
		const n = c.users.length >> 1;
		if (c.relay) {
			for (let p = 0; p < n; p++) {
				const [a, b] = await Promise.all([
					relayConnect(c.endpoint, p, "A", addr(2 * p)),
					relayConnect(c.endpoint, p, "B", addr(2 * p + 1)),
				]);
				this.pairs.push({ a, b, bJid: `b${p}` });
			}
			return { pairs: this.pairs.length };
		}
		// Logins in pair order: sender, receiver, sender, ... (the pairs' two sessions).
		const r = c.receivers;
		const jobs = r
			? c.users.flatMap((u, p) => [
					{ endpoint: c.endpoint, user: u },
					{ endpoint: r.endpoint, user: r.users[p] as string },
				])
			: c.users.map((u) => ({ endpoint: c.endpoint, user: u }));
		const sessions: Session[] = [];
		let next = 0;
		const one = async () => {
			while (next < jobs.length) {
				const i = next++;
				const job = jobs[i] as { endpoint: Endpoint; user: string };
				const s = await login({
					endpoint: job.endpoint,
					localAddress: addr(i),
					user: job.user,
					password: c.password,
					mech: c.mech,
					resource: "chat",
					presence: true,
					sm: c.sm,
					timeoutMs: 60_000,
					scramCache: this.scramCache,
				});
				sessions[i] = s;
			}
		};
		await Promise.all(Array.from({ length: 20 }, one));
		for (let p = 0; p < jobs.length >> 1; p++) {
			const a = sessions[2 * p] as Session;
			const b = sessions[2 * p + 1] as Session;
			this.pairs.push({ a: a.socket, b: b.socket, bJid: b.jid, aSm: a.sm, bSm: b.sm });
		}
		// Let presence echoes and other post-login traffic drain before measuring.
		await new Promise((r) => setTimeout(r, 500));
		return { pairs: this.pairs.length };
	}

	chatRun(c: Extract<Command, { cmd: "chatRun" }>): Promise<ChatResult> {
		const P = this.pairs.length;
		const M = c.perPair;
		const total = P * M;
		const sendAt = new Float64Array(total);
		const latency = new Float64Array(total);
		const seen = new Uint8Array(total);
		const inflight = new Int32Array(P);
		const nextSeq = new Int32Array(P);
		let delivered = 0;
		let duplicates = 0;
		let sent = 0;
		const pad = "x".repeat(Math.max(0, c.bodyBytes - 20));
		const tag = c.tag;
		const marker = `zq${tag}`;
		const t0 = performance.now();
		const perPairRate = (c.rate ?? 0) / P;
		return new Promise<ChatResult>((resolve) => {
			const prefixes = this.pairs.map((p) => `<message to='${p.bJid}' type='chat' id='${tag}`);
			const pump = (p: number) => {
				const pair = this.pairs[p] as Pair;
				let out = "";
				const prefix = prefixes[p] as string;
				const sm = pair.aSm;
				const due = c.rate
					? Math.min(M, Math.floor(((performance.now() - t0) * perPairRate) / 1000) + 1)
					: M;
				while ((inflight[p] as number) < c.window && (nextSeq[p] as number) < due) {
					const seq = nextSeq[p] as number;
					nextSeq[p] = seq + 1;
					inflight[p] = (inflight[p] as number) + 1;
					const msg = `${prefix}${p}.${seq}'><body>${marker}:${p}:${seq};${pad}</body></message>`;
					out += sm ? sm.out(msg) : msg;
					sendAt[p * M + seq] = performance.now();
					sent++;
				}
				if (out) pair.a.write(out);
			};
			const listeners: Array<[Socket, (d: string) => void]> = [];
			// Open loop: every 2 ms, each pair sends what its share of the rate says is due.
			const ticker = c.rate
				? setInterval(() => {
						for (let p = 0; p < P; p++) pump(p);
					}, 2)
				: undefined;
			const finish = (capped: boolean) => {
				clearTimeout(cap);
				clearInterval(ticker);
				for (const [s, fn] of listeners) s.off("data", fn);
				const elapsedMs = performance.now() - t0;
				const lats: number[] = [];
				for (let i = 0; i < total; i++) if (seen[i]) lats.push(latency[i] as number);
				lats.sort((x, y) => x - y);
				resolve({
					messages: total,
					sent,
					delivered,
					duplicates,
					missing: total - delivered,
					elapsedMs,
					p50Ms: percentile(lats, 50),
					p99Ms: percentile(lats, 99),
					capped,
				});
			};
			const cap = setTimeout(() => finish(true), c.capMs);
			for (let p = 0; p < P; p++) {
				const pair = this.pairs[p] as Pair;
				const scan = markerScanner(marker, (pp, seq) => {
					const k = pp * M + seq;
					if (pp >= P || seq >= M) return;
					if (seen[k]) duplicates++;
					else {
						seen[k] = 1;
						latency[k] = performance.now() - (sendAt[k] as number);
						delivered++;
						inflight[pp] = (inflight[pp] as number) - 1;
						pump(pp);
					}
				});
				const onData = (d: string) => {
					scan(d);
					if (delivered === total) finish(false);
				};
				pair.b.on("data", onData);
				listeners.push([pair.b, onData]);
			}
			for (let p = 0; p < P; p++) pump(p);
		});
	}

	/**
	 * Roster-heavy login: the users log in one after another (SCRAM or PLAIN, roster get, initial
	 * presence) and stay online; each login waits until the presences of all contacts already
	 * online arrived (probe answers) or waitMs passed. Every session counts the available
	 * presences it receives from the others (mutual subscriptions assumed between all of them).
	 */
	async rosterRun(c: Extract<Command, { cmd: "rosterRun" }>): Promise<RosterResult> {
		const N = c.users.length;
		const index = new Map(c.users.map((u, i) => [u, i]));
		const got = Array.from({ length: N }, () => new Set<number>());
		const res: RosterResult = {
			ok: 0,
			failures: 0,
			errors: [],
			latenciesMs: [],
			delivered: 0,
			broadcastReached: 0,
			probeAnswers: 0,
			expectedEach: 0,
			duplicates: 0,
			incomplete: 0,
		};
		let waiting: { k: number; need: number; done: () => void } | null = null;
		const FROM = /from=['"]([^@'"]+)@/;
		const TYPE = /\stype=['"]([a-z]+)['"]/;
		const counter = (k: number) => {
			let buf = "";
			return (d: string) => {
				buf += d;
				let i = buf.indexOf("<presence");
				let keep = Math.max(0, buf.length - 9);
				while (i !== -1) {
					const end = buf.indexOf(">", i);
					if (end === -1) {
						keep = i;
						break;
					}
					const tag = buf.slice(i, end);
					const from = FROM.exec(tag);
					const type = TYPE.exec(tag);
					const j = from ? index.get(from[1] as string) : undefined;
					if (j !== undefined && j !== k && !type) {
						const set = got[k] as Set<number>;
						if (set.has(j)) res.duplicates++;
						else set.add(j);
						if (waiting && waiting.k === k && set.size >= waiting.need) waiting.done();
					}
					keep = end + 1;
					i = buf.indexOf("<presence", end);
				}
				buf = buf.slice(keep);
			};
		};
		const online: number[] = [];
		for (let k = 0; k < N; k++) {
			const t0 = performance.now();
			try {
				const s = await login({
					endpoint: c.endpoint,
					localAddress: addr(k),
					user: c.users[k] as string,
					password: c.password,
					mech: c.mech,
					resource: "r",
					presence: true,
					roster: true,
					timeoutMs: 30_000,
					scramCache: this.scramCache,
				});
				this.held.push(s.socket);
				const onData = counter(k);
				s.socket.on("data", onData);
				const need = online.length;
				await new Promise<void>((resolve) => {
					let timer: NodeJS.Timeout | undefined;
					const done = () => {
						clearTimeout(timer);
						waiting = null;
						resolve();
					};
					waiting = { k, need, done };
					timer = setTimeout(() => {
						res.incomplete++;
						done();
					}, c.waitMs);
					onData(s.rest);
					if ((got[k] as Set<number>).size >= need && waiting) done();
				});
				res.latenciesMs.push(performance.now() - t0);
				online.push(k);
				res.ok++;
			} catch (e) {
				res.failures++;
				if (res.errors.length < 5) res.errors.push((e as Error).message);
			}
		}
		// Let the last broadcasts arrive.
		await new Promise((r) => setTimeout(r, 1000));
		const pos = new Map(online.map((k, i) => [k, i]));
		for (const k of online) {
			for (const j of got[k] as Set<number>) {
				const pj = pos.get(j);
				if (pj === undefined) continue;
				res.delivered++;
				if (pj > (pos.get(k) as number)) res.broadcastReached++;
				else res.probeAnswers++;
			}
		}
		res.expectedEach = (online.length * (online.length - 1)) / 2;
		return res;
	}

	async mucLogin(c: Extract<Command, { cmd: "mucLogin" }>): Promise<LoginResult> {
		const res: LoginResult = { ok: 0, failures: 0, errors: [], latenciesMs: [] };
		const slots: (Occupant | undefined)[] = [];
		let next = 0;
		const one = async () => {
			while (next < c.users.length) {
				const i = next++;
				const user = c.users[i] as string;
				const t0 = performance.now();
				try {
					const s = await login({
						endpoint: c.endpoint,
						localAddress: addr(i),
						user,
						password: c.password,
						mech: c.mech,
						resource: "muc",
						presence: true,
						timeoutMs: 60_000,
						scramCache: this.scramCache,
					});
					const idle = () => {};
					s.socket.on("data", idle);
					slots[i] = { socket: s.socket, nick: user, idle };
					res.latenciesMs.push(performance.now() - t0);
					res.ok++;
				} catch (e) {
					res.failures++;
					if (res.errors.length < 5) res.errors.push((e as Error).message);
				}
			}
		};
		await Promise.all(Array.from({ length: Math.min(c.concurrency, c.users.length) }, one));
		this.occupants = slots.filter((x): x is Occupant => x !== undefined);
		return res;
	}

	/** One occupant's join; resolves when it is in the room (and, for the creator, unlocked). */
	#join(
		o: Occupant,
		room: string,
		creator: boolean,
		timeoutMs: number,
		subjectWaitMs: number,
	): Promise<{ ms: number; created: boolean; configured?: string; noSubject: boolean }> {
		return new Promise((resolve, reject) => {
			const t0 = performance.now();
			let buf = "";
			// 0: until the self-presence; 1: until the subject; 2: until the owner form's answer
			let stage = 0;
			let created = false;
			let subjectTimer: NodeJS.Timeout | undefined;
			const end = (err: Error | null, noSubject = false, configured?: string) => {
				clearTimeout(timer);
				clearTimeout(subjectTimer);
				o.socket.off("data", onData);
				if (err) reject(err);
				else resolve({ ms: performance.now() - t0, created, configured, noSubject });
			};
			const timer = setTimeout(
				() => end(new Error(`${o.nick}: no join within ${timeoutMs} ms (stage ${stage})`)),
				timeoutMs,
			);
			const onData = (d: string) => {
				buf += d;
				if (stage === 0) {
					const err = ERROR_PRESENCE.exec(buf);
					if (err) return end(new Error(`${o.nick}: join refused: ${err[0].slice(0, 300)}`));
					const m = SELF_PRESENCE.exec(buf);
					const close = m ? buf.indexOf("</presence>", m.index) : -1;
					if (!m || close === -1) {
						// Keep a tail long enough for a self-presence or an error split across reads.
						if (buf.length > 8192) buf = buf.slice(buf.lastIndexOf("<presence"));
						return;
					}
					const open = buf.lastIndexOf("<presence", m.index);
					created = /code=['"]201['"]/.test(buf.slice(open, close));
					buf = buf.slice(close + 11);
					if (creator && created) {
						stage = 2;
						o.socket.write(
							`<iq type='set' id='mucconf' to='${room}'><query xmlns='${NS_MUC}#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`,
						);
					} else {
						stage = 1;
						subjectTimer = setTimeout(() => end(null, true), subjectWaitMs);
					}
				}
				if (stage === 1) {
					if (SUBJECT.test(buf)) return end(null);
					buf = buf.slice(Math.max(0, buf.length - 16));
				} else if (stage === 2) {
					const r = CONFIG_RESULT.exec(buf);
					if (!r) return;
					if (/type=['"]result['"]/.test(r[0])) return end(null, false, "accepted");
					const stop = buf.indexOf("</iq>", r.index);
					if (stop === -1) return;
					end(null, false, `refused: ${buf.slice(r.index, stop).slice(0, 300)}`);
				}
			};
			o.socket.on("data", onData);
			o.socket.write(
				`<presence to='${room}/${o.nick}'><x xmlns='${NS_MUC}'><history maxstanzas='0'/></x></presence>`,
			);
		});
	}

	async mucJoin(c: Extract<Command, { cmd: "mucJoin" }>): Promise<MucJoinResult> {
		const res: MucJoinResult = {
			joined: 0,
			failures: 0,
			errors: [],
			latenciesMs: [],
			created: false,
			configured: "not asked (no 201)",
			noSubject: 0,
		};
		this.room = c.room;
		const joined: Occupant[] = [];
		const one = async (o: Occupant, creator: boolean) => {
			try {
				const r = await this.#join(o, c.room, creator, c.timeoutMs, c.subjectWaitMs);
				if (creator) {
					res.created = r.created;
					if (r.configured) res.configured = r.configured;
				}
				if (r.noSubject) res.noSubject++;
				res.latenciesMs.push(r.ms);
				res.joined++;
				joined.push(o);
			} catch (e) {
				res.failures++;
				if (res.errors.length < 5) res.errors.push((e as Error).message);
			}
		};
		const [first, ...rest] = this.occupants;
		if (!first) return res;
		await one(first, true);
		let next = 0;
		const worker = async () => {
			while (next < rest.length) await one(rest[next++] as Occupant, false);
		};
		await Promise.all(Array.from({ length: Math.min(c.concurrency, rest.length) }, worker));
		// Only occupants in the room count (and send) in mucRun; the others are closed.
		const out = this.occupants.filter((o) => !joined.includes(o));
		this.occupants = this.occupants.filter((o) => joined.includes(o));
		await Promise.all(out.map((o) => closeGracefully(o.socket)));
		// Let the last joins' presence broadcasts drain before measuring.
		await new Promise((r) => setTimeout(r, 500));
		return res;
	}

	mucRun(c: Extract<Command, { cmd: "mucRun" }>): Promise<MucResult> {
		const occ = this.occupants;
		const N = occ.length;
		const S = Math.min(c.senders, N);
		const M = c.perSender;
		const total = S * M;
		const expected = total * N;
		const sendAt = new Float64Array(total);
		const count = new Int32Array(total);
		const seen = new Uint8Array(expected);
		const lats = new Float64Array(expected);
		const inflight = new Int32Array(S);
		const nextSeq = new Int32Array(S);
		let delivered = 0;
		let duplicates = 0;
		let sent = 0;
		const pad = "x".repeat(Math.max(0, c.bodyBytes - 20));
		const tag = c.tag;
		const marker = `zq${tag}`;
		const t0 = performance.now();
		const prefix = `<message to='${this.room}' type='groupchat' id='${tag}`;
		return new Promise<MucResult>((resolve) => {
			const pump = (s: number) => {
				let out = "";
				while ((inflight[s] as number) < c.window && (nextSeq[s] as number) < M) {
					const seq = nextSeq[s] as number;
					nextSeq[s] = seq + 1;
					inflight[s] = (inflight[s] as number) + 1;
					out += `${prefix}${s}.${seq}'><body>${marker}:${s}:${seq};${pad}</body></message>`;
					sendAt[s * M + seq] = performance.now();
					sent++;
				}
				if (out) (occ[s] as Occupant).socket.write(out);
			};
			const listeners: Array<[Occupant, (d: string) => void]> = [];
			const finish = (capped: boolean) => {
				clearTimeout(cap);
				for (const [o, fn] of listeners) {
					o.socket.off("data", fn);
					o.socket.on("data", o.idle);
				}
				const elapsedMs = performance.now() - t0;
				const sorted = lats.subarray(0, delivered).sort();
				let occupantsMissing = 0;
				for (let k = 0; k < N; k++) {
					for (let m = 0; m < total; m++) {
						if (!seen[m * N + k]) {
							occupantsMissing++;
							break;
						}
					}
				}
				resolve({
					occupants: N,
					senders: S,
					messages: total,
					sent,
					expected,
					delivered,
					duplicates,
					missing: expected - delivered,
					occupantsMissing,
					elapsedMs,
					p50Ms: percentile(sorted, 50),
					p99Ms: percentile(sorted, 99),
					capped,
				});
			};
			const cap = setTimeout(() => finish(true), c.capMs);
			for (let k = 0; k < N; k++) {
				const o = occ[k] as Occupant;
				const scan = markerScanner(marker, (s, seq) => {
					if (s >= S || seq >= M) return;
					const m = s * M + seq;
					const x = m * N + k;
					if (seen[x]) duplicates++;
					else {
						seen[x] = 1;
						lats[delivered++] = performance.now() - (sendAt[m] as number);
						count[m] = (count[m] as number) + 1;
						if (count[m] === N) {
							inflight[s] = (inflight[s] as number) - 1;
							pump(s);
						}
					}
				});
				const onData = (d: string) => {
					scan(d);
					if (delivered === expected) finish(false);
				};
				o.socket.off("data", o.idle);
				o.socket.on("data", onData);
				listeners.push([o, onData]);
			}
			for (let s = 0; s < S; s++) pump(s);
		});
	}

	/**
	 * A PEP session's iq get or set: disco#info answered (`info`: the query's children), ping
	 * answered, anything else refused (service-unavailable). Results and errors are ignored.
	 */
	#pepIq(sock: Socket, head: string, stanza: string, info: string) {
		const type = ATTR_TYPE.exec(head)?.[1];
		if (type !== "get" && type !== "set") return;
		const id = ATTR_ID.exec(head)?.[1] ?? "";
		const from = ATTR_FROM.exec(head)?.[1];
		const to = from ? ` to='${from}'` : "";
		if (type === "get" && stanza.includes(NS_DISCO_INFO)) {
			const node = QUERY_NODE.exec(stanza)?.[1];
			sock.write(
				`<iq type='result' id='${id}'${to}><query xmlns='${NS_DISCO_INFO}'${node ? ` node='${node}'` : ""}>${info}</query></iq>`,
			);
			this.discoAnswered++;
		} else if (type === "get" && stanza.includes("urn:xmpp:ping")) {
			sock.write(`<iq type='result' id='${id}'${to}/>`);
		} else {
			sock.write(
				`<iq type='error' id='${id}'${to}><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`,
			);
		}
	}

	async pepSetup(c: Extract<Command, { cmd: "pepSetup" }>): Promise<PepSetupResult> {
		const res: PepSetupResult = { contacts: 0, failures: 0, errors: [], discoAnswered: 0 };
		const one = async (user: string, i: number, contact: boolean): Promise<PepSession> => {
			const s = await login({
				endpoint: c.endpoint,
				localAddress: addr(i),
				user,
				password: c.password,
				mech: c.mech,
				resource: "pep",
				presence: true,
				presenceXml: contact ? PEP_CAPS.presence : "<presence/>",
				roster: true,
				timeoutMs: 60_000,
				scramCache: this.scramCache,
			});
			const session: PepSession = { socket: s.socket, user };
			const k = this.pepContacts.length;
			if (contact) this.pepContacts.push(session);
			const feed = stanzaSplitter((st) => {
				if (st.startsWith("<message")) {
					if (!contact || !st.includes(NS_PUBSUB_EVENT)) return;
					if (!this.pepState?.event(k, st)) this.otherEvents++;
				} else if (st.startsWith("<iq")) {
					const head = st.slice(0, st.indexOf(">"));
					const state = this.pepState;
					if (!contact && state) {
						const id = ATTR_ID.exec(head)?.[1] ?? "";
						if (id.startsWith(state.idPrefix)) {
							const type = ATTR_TYPE.exec(head)?.[1];
							state.answer(Number(id.slice(state.idPrefix.length)), type === "result", st);
							return;
						}
					}
					this.#pepIq(s.socket, head, st, contact ? PEP_CAPS.info : PLAIN_INFO);
				}
			});
			s.socket.on("data", feed);
			feed(s.rest);
			return session;
		};
		let next = 0;
		const worker = async () => {
			while (next < c.contacts.length) {
				const i = next++;
				try {
					await one(c.contacts[i] as string, i, true);
					res.contacts++;
				} catch (e) {
					res.failures++;
					if (res.errors.length < 5) res.errors.push((e as Error).message);
				}
			}
		};
		await Promise.all(Array.from({ length: Math.min(c.concurrency, c.contacts.length) }, worker));
		// The publisher last: its initial presence reaches every contact already online, and its
		// probes bring their presences (with the caps) back to its session.
		this.pepPublisher = await one(c.publisher, c.contacts.length, false);
		// Let the presences and the servers' disco#info queries settle.
		await new Promise((r) => setTimeout(r, 1000));
		res.discoAnswered = this.discoAnswered;
		return res;
	}

	pepRun(c: Extract<Command, { cmd: "pepRun" }>): Promise<PepResult> {
		const pub = this.pepPublisher;
		if (!pub) throw new Error("pepRun before pepSetup");
		const N = this.pepContacts.length;
		const M = c.items;
		const expected = N * M;
		const sendAt = new Float64Array(M);
		/** per item: contacts that received it */
		const count = new Int32Array(M);
		/** per item: 0 no answer yet, 1 result, 2 error */
		const answered = new Uint8Array(M);
		const seen = new Uint8Array(expected);
		const lats = new Float64Array(expected);
		let delivered = 0;
		let duplicates = 0;
		let duplicateSample: string | undefined;
		let published = 0;
		let results = 0;
		let publishErrors = 0;
		const errors: string[] = [];
		let done = 0;
		let inflight = 0;
		let next = 0;
		let finished = false;
		let elapsedMs = 0;
		let capped = false;
		let stalled = false;
		const needle = `zp${c.tag}:`;
		const idPrefix = `pub${c.tag}.`;
		const otherEvents0 = this.otherEvents;
		const t0 = performance.now();
		let progress = t0;
		const publish = (seq: number) =>
			`<iq type='set' id='${idPrefix}${seq}'><pubsub xmlns='${NS_PUBSUB}'><publish node='${NS_TUNE}'><item id='current'><tune xmlns='${NS_TUNE}'><artist>Parley bench</artist><length>${180 + (seq % 120)}</length><source>bench</source><title>${needle}${seq};</title><track>${seq + 1}</track></tune></item></publish></pubsub></iq>`;
		return new Promise<PepResult>((resolve) => {
			const summary = (): PepResult => {
				let contactsMissing = 0;
				for (let k = 0; k < N; k++) {
					for (let m = 0; m < M; m++) {
						if (!seen[m * N + k]) {
							contactsMissing++;
							break;
						}
					}
				}
				const sorted = lats.slice(0, delivered).sort();
				return {
					contacts: N,
					items: M,
					published,
					results,
					publishErrors,
					errors,
					expected,
					delivered,
					duplicates,
					duplicateSample,
					missing: expected - delivered,
					contactsMissing,
					elapsedMs,
					p50Ms: percentile(sorted, 50),
					p99Ms: percentile(sorted, 99),
					capped,
					stalled,
					discoAnswered: this.discoAnswered,
					otherEvents: this.otherEvents - otherEvents0,
				};
			};
			const finish = (cap: boolean, stall: boolean) => {
				if (finished) return;
				finished = true;
				elapsedMs = performance.now() - t0;
				capped = cap;
				stalled = stall;
				clearTimeout(capTimer);
				clearInterval(stallTimer);
				resolve(summary());
			};
			const itemDone = () => {
				done++;
				inflight--;
				if (done === M) finish(false, false);
				else pump();
			};
			const pump = () => {
				if (finished) return;
				let out = "";
				while (inflight < c.window && next < M) {
					const seq = next++;
					inflight++;
					published++;
					sendAt[seq] = performance.now();
					out += publish(seq);
				}
				if (out) pub.socket.write(out);
			};
			this.pepState = {
				idPrefix,
				summary,
				event: (k, st) => {
					let any = false;
					let i = st.indexOf(needle);
					while (i !== -1) {
						let j = i + needle.length;
						let seq = 0;
						let ch = st.charCodeAt(j);
						while (ch >= 48 && ch <= 57) {
							seq = seq * 10 + ch - 48;
							ch = st.charCodeAt(++j);
						}
						if (ch === 59 /* ; */ && j > i + needle.length && seq < M) {
							any = true;
							const x = seq * N + k;
							if (seen[x]) {
								duplicates++;
								duplicateSample ??= `${this.pepContacts[k]?.user}: ${st.slice(0, 600)}`;
							} else {
								seen[x] = 1;
								const now = performance.now();
								lats[delivered++] = now - (sendAt[seq] as number);
								progress = now;
								count[seq] = (count[seq] as number) + 1;
								if (count[seq] === N && answered[seq] === 1) itemDone();
							}
						}
						i = st.indexOf(needle, j);
					}
					return any;
				},
				answer: (seq, ok, st) => {
					if (!(seq >= 0 && seq < M) || answered[seq]) return;
					progress = performance.now();
					answered[seq] = ok ? 1 : 2;
					if (ok) results++;
					else {
						publishErrors++;
						if (errors.length < 3) errors.push(st.slice(0, 400));
					}
					if (!ok || count[seq] === N) itemDone();
				},
			};
			const capTimer = setTimeout(() => finish(true, false), c.capMs);
			const stallTimer = setInterval(() => {
				if (performance.now() - progress > c.stallMs) finish(false, true);
			}, 250);
			if (M === 0 || N === 0) finish(false, false);
			else pump();
		});
	}

	async pepSettle(c: Extract<Command, { cmd: "pepSettle" }>): Promise<PepResult | null> {
		await new Promise((r) => setTimeout(r, c.waitMs));
		const r = this.pepState?.summary() ?? null;
		this.pepState = null;
		return r;
	}

	async smCounts(c: Extract<Command, { cmd: "smCounts" }>): Promise<SmCounts> {
		const all = this.pairs.flatMap((p) => [p.aSm, p.bSm]).filter((s) => s !== undefined);
		await Promise.all(all.map((s) => s.answered(c.waitMs)));
		const sum: SmCounts = {
			sessions: all.length,
			sent: 0,
			received: 0,
			requests: 0,
			acksRight: 0,
			acksWrong: 0,
			unanswered: 0,
			serverRequests: 0,
			wrongSamples: [],
		};
		for (const s of all) {
			sum.sent += s.sent;
			sum.received += s.received;
			sum.requests += s.requests;
			sum.acksRight += s.acksRight;
			sum.acksWrong += s.acksWrong;
			sum.unanswered += s.unanswered;
			sum.serverRequests += s.serverRequests;
			for (const w of s.wrongSamples) if (sum.wrongSamples.length < 3) sum.wrongSamples.push(w);
		}
		return sum;
	}

	async closeAll() {
		for (const p of this.pairs) for (const sm of [p.aSm, p.bSm]) sm?.ackAll();
		const all = [
			...this.held,
			...this.pairs.flatMap((p) => [p.a, p.b]),
			...this.occupants.map((o) => o.socket),
			...this.pepContacts.map((p) => p.socket),
			...(this.pepPublisher ? [this.pepPublisher.socket] : []),
		];
		this.held = [];
		this.soakBase.clear();
		this.pairs = [];
		this.occupants = [];
		this.pepContacts = [];
		this.pepPublisher = null;
		this.pepState = null;
		await Promise.all(all.map((s) => closeGracefully(s)));
		return { closed: all.length };
	}
}

function closeGracefully(s: Socket): Promise<void> {
	return new Promise((resolve) => {
		const t = setTimeout(() => {
			s.destroy();
			resolve();
		}, 3000);
		s.on("close", () => {
			clearTimeout(t);
			resolve();
		});
		s.on("data", () => {});
		s.end("</stream:stream>");
	});
}

function relayConnect(e: Endpoint, pair: number, role: string, localAddress: string) {
	return new Promise<Socket>((resolve, reject) => {
		const s = connect({ host: e.host, port: e.port, localAddress });
		s.setNoDelay(true);
		s.setEncoding("latin1");
		s.on("error", reject);
		s.once("data", (d: string) => {
			if (d.startsWith("OK")) resolve(s);
			else reject(new Error(`relay said ${d}`));
		});
		s.write(`PAIR ${pair} ${role}\n`);
	});
}

const gen = new Generator();
process.on("message", (msg: Command) => {
	const reply = (r: unknown) => process.send?.({ ok: true, result: r, cpu: process.cpuUsage() });
	const fail = (e: unknown) =>
		process.send?.({ ok: false, error: (e as Error).stack ?? String(e) });
	switch (msg.cmd) {
		case "login":
			gen.login(msg).then(reply, fail);
			break;
		case "register":
			gen.register(msg).then(reply, fail);
			break;
		case "chatSetup":
			gen.chatSetup(msg).then(reply, fail);
			break;
		case "chatRun":
			gen.chatRun(msg).then(reply, fail);
			break;
		case "rosterRun":
			gen.rosterRun(msg).then(reply, fail);
			break;
		case "mucLogin":
			gen.mucLogin(msg).then(reply, fail);
			break;
		case "mucJoin":
			gen.mucJoin(msg).then(reply, fail);
			break;
		case "mucRun":
			gen.mucRun(msg).then(reply, fail);
			break;
		case "pepSetup":
			gen.pepSetup(msg).then(reply, fail);
			break;
		case "pepRun":
			// pepRun throws synchronously without a publisher: as a rejection.
			Promise.resolve()
				.then(() => gen.pepRun(msg))
				.then(reply, fail);
			break;
		case "pepSettle":
			gen.pepSettle(msg).then(reply, fail);
			break;
		case "soakMark":
			reply(gen.soakMark());
			break;
		case "soakStats":
			reply(gen.soakStats());
			break;
		case "smCounts":
			gen.smCounts(msg).then(reply, fail);
			break;
		case "closeAll":
			gen.closeAll().then(reply, fail);
			break;
		case "exit":
			process.exit(0);
	}
});

/**
 * Finds `<marker>:<a>:<seq>;` in a socket's text as it arrives (a marker may be split across
 * reads) and calls `found(a, seq)` for each: no XML parsing in the hot loop.
 */
function markerScanner(name: string, found: (a: number, seq: number) => void) {
	// With its colon: "zqm" alone turns up in random text a server adds (a 16-character
	// XEP-0359 stanza-id holds it about once in 19,000 ids), and a false match there skipped
	// the next real marker, counted as one duplicate and one missing message.
	const marker = `${name}:`;
	let carry = "";
	const num = (s: string, j: number): [number, number] => {
		let n = 0;
		let ch = s.charCodeAt(j);
		while (ch >= 48 && ch <= 57) {
			n = n * 10 + ch - 48;
			ch = s.charCodeAt(++j);
		}
		return [n, j];
	};
	return (d: string): void => {
		const s = carry.length ? carry + d : d;
		let last = 0;
		let i = s.indexOf(marker);
		while (i !== -1) {
			const end = s.indexOf(";", i);
			if (end === -1) break;
			const [a, j] = num(s, i + marker.length);
			const [seq] = num(s, j + 1);
			found(a, seq);
			last = end + 1;
			i = s.indexOf(marker, last);
		}
		carry = i !== -1 ? s.slice(i) : s.slice(Math.max(last, s.length - marker.length));
	};
}
