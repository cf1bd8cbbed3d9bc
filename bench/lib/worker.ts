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
			users: string[];
			password: string;
			mech: Mech;
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
	| { cmd: "closeAll" }
	| { cmd: "exit" };

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

class Generator {
	held: Socket[] = [];
	pairs: Pair[] = [];
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
		const sessions: Session[] = [];
		let next = 0;
		const one = async () => {
			while (next < c.users.length) {
				const i = next++;
				const s = await login({
					endpoint: c.endpoint,
					localAddress: addr(i),
					user: c.users[i] as string,
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
		for (let p = 0; p < n; p++) {
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
				let carry = "";
				const onData = (d: string) => {
					const s = carry.length ? carry + d : d;
					let last = 0;
					let i = s.indexOf(marker);
					while (i !== -1) {
						const end = s.indexOf(";", i);
						if (end === -1) break;
						// marker:pair:seq;
						let j = i + marker.length + 1;
						let pp = 0;
						let ch = s.charCodeAt(j);
						while (ch >= 48 && ch <= 57) {
							pp = pp * 10 + ch - 48;
							ch = s.charCodeAt(++j);
						}
						j++;
						let seq = 0;
						ch = s.charCodeAt(j);
						while (ch >= 48 && ch <= 57) {
							seq = seq * 10 + ch - 48;
							ch = s.charCodeAt(++j);
						}
						const k = pp * M + seq;
						if (pp < P && seq < M) {
							if (seen[k]) duplicates++;
							else {
								seen[k] = 1;
								latency[k] = performance.now() - (sendAt[k] as number);
								delivered++;
								inflight[pp] = (inflight[pp] as number) - 1;
								pump(pp);
							}
						}
						last = end + 1;
						i = s.indexOf(marker, last);
					}
					carry = i !== -1 ? s.slice(i) : s.slice(Math.max(last, s.length - marker.length));
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

	async closeAll() {
		const all = [...this.held, ...this.pairs.flatMap((p) => [p.a, p.b])];
		this.held = [];
		this.pairs = [];
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
		case "closeAll":
			gen.closeAll().then(reply, fail);
			break;
		case "exit":
			process.exit(0);
	}
});
