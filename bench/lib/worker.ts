// Load generator worker: a forked process driven over IPC by bench/run.ts. Raw sockets,
// pre-built stanza strings, deliveries counted by scanning for a marker in the message body.
import { connect, type Socket } from "node:net";
import { type Endpoint, login, type Mech, register, type Session } from "./xmpp.ts";

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
	| { cmd: "closeAll" }
	| { cmd: "exit" };

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
}

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

class Generator {
	held: Socket[] = [];
	pairs: Pair[] = [];
	occupants: Occupant[] = [];
	room = "";
	scramCache = new Map<string, Buffer>();

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
					if (c.keep) this.held.push(s.socket);
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
			this.pairs.push({ a: a.socket, b: b.socket, bJid: b.jid });
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
				const due = c.rate
					? Math.min(M, Math.floor(((performance.now() - t0) * perPairRate) / 1000) + 1)
					: M;
				while ((inflight[p] as number) < c.window && (nextSeq[p] as number) < due) {
					const seq = nextSeq[p] as number;
					nextSeq[p] = seq + 1;
					inflight[p] = (inflight[p] as number) + 1;
					out += `${prefix}${p}.${seq}'><body>${marker}:${p}:${seq};${pad}</body></message>`;
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

	async closeAll() {
		const all = [
			...this.held,
			...this.pairs.flatMap((p) => [p.a, p.b]),
			...this.occupants.map((o) => o.socket),
		];
		this.held = [];
		this.pairs = [];
		this.occupants = [];
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
function markerScanner(marker: string, found: (a: number, seq: number) => void) {
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
			const [a, j] = num(s, i + marker.length + 1);
			const [seq] = num(s, j + 1);
			found(a, seq);
			last = end + 1;
			i = s.indexOf(marker, last);
		}
		carry = i !== -1 ? s.slice(i) : s.slice(Math.max(last, s.length - marker.length));
	};
}
