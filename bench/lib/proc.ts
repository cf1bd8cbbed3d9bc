// /proc readers for the benchmark harness: CPU time and RSS of a process tree, machine busy time.
import { readdirSync, readFileSync } from "node:fs";

/** Clock ticks per second for /proc/<pid>/stat times (USER_HZ; 100 on Linux x86-64). */
const TICKS = 100;

interface ProcStat {
	pid: number;
	ppid: number;
	/** utime + stime, seconds */
	cpu: number;
}

function readStat(pid: number): ProcStat | null {
	let text: string;
	try {
		text = readFileSync(`/proc/${pid}/stat`, "latin1");
	} catch {
		return null;
	}
	// The command name (field 2) is in parentheses and may contain spaces: split after it.
	const close = text.lastIndexOf(")");
	const rest = text.slice(close + 2).split(" ");
	// rest[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
	const ppid = Number(rest[1]);
	const utime = Number(rest[11]);
	const stime = Number(rest[12]);
	return { pid, ppid, cpu: (utime + stime) / TICKS };
}

/** The pid and every live descendant of it. */
export function processTree(root: number): number[] {
	const children = new Map<number, number[]>();
	for (const name of readdirSync("/proc")) {
		const pid = Number(name);
		if (!Number.isInteger(pid)) continue;
		const st = readStat(pid);
		if (!st) continue;
		const list = children.get(st.ppid);
		if (list) list.push(pid);
		else children.set(st.ppid, [pid]);
	}
	const out: number[] = [];
	const stack = [root];
	while (stack.length) {
		const pid = stack.pop() as number;
		out.push(pid);
		for (const c of children.get(pid) ?? []) stack.push(c);
	}
	return out;
}

/** The command name of a process, "" when it is gone. */
export function procName(pid: number): string {
	try {
		return readFileSync(`/proc/${pid}/comm`, "latin1").trim();
	} catch {
		return "";
	}
}

/** "node 41% (1.23 s), node 40% (...), redis-server 19% (...)": who did the server's work. */
export function describeSplit(processes: Window["processes"]): string {
	const busy = processes.filter((p) => p.cpu > 0.005);
	const total = busy.reduce((a, p) => a + p.cpu, 0);
	return busy
		.sort((a, b) => b.cpu - a.cpu)
		.map(
			(p) =>
				`${p.name === "MainThread" ? "node" : p.name} ${p.pid} ${((100 * p.cpu) / total).toFixed(0)}% (${p.cpu.toFixed(2)} s)`,
		)
		.join(", ");
}

/** CPU seconds (user + system) used so far by the given processes. */
export function cpuSeconds(pids: readonly number[]): number {
	let sum = 0;
	for (const pid of pids) sum += readStat(pid)?.cpu ?? 0;
	return sum;
}

/** Resident set size in KiB (VmRSS) summed over the given processes. */
export function rssKiB(pids: readonly number[]): number {
	let sum = 0;
	for (const pid of pids) {
		try {
			const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "latin1"));
			if (m) sum += Number(m[1]);
		} catch {}
	}
	return sum;
}

export interface MachineSample {
	/** all CPU time, seconds, summed over cores */
	total: number;
	/** busy time (not idle, not iowait), seconds, summed over cores */
	busy: number;
}

export function machine(): MachineSample {
	const line = readFileSync("/proc/stat", "latin1").split("\n", 1)[0] ?? "";
	const f = line.trim().split(/\s+/).slice(1).map(Number);
	// user nice system idle iowait irq softirq steal (guest time is already in user)
	const total = f.slice(0, 8).reduce((a, b) => a + b, 0) / TICKS;
	const idle = ((f[3] ?? 0) + (f[4] ?? 0)) / TICKS;
	return { total, busy: total - idle };
}

export function cores(): number {
	return readFileSync("/proc/stat", "latin1")
		.split("\n")
		.filter((l) => /^cpu\d/.test(l)).length;
}

/** A before/after measurement of a server's process tree and of the machine. */
export interface Window {
	seconds: number;
	/** all CPU time of the machine in the window, seconds summed over cores (for shares of it) */
	machineSeconds: number;
	serverCpu: number;
	/** machine busy %, all cores = 100 */
	machineBusyPct: number;
	/** busy % of the machine not explained by the server and the generator (other users' load) */
	othersBusyPct: number;
	generatorCpu: number;
	/** CPU seconds of each server process during the window (several for a cluster). */
	processes: { pid: number; name: string; cpu: number }[];
}

export class Meter {
	#pid: number;
	#t0 = 0;
	#cpu0 = 0;
	#m0: MachineSample = { total: 0, busy: 0 };
	#gen0 = 0;
	#genPids: () => number[];
	constructor(serverPid: number, generatorPids: () => number[]) {
		this.#pid = serverPid;
		this.#genPids = generatorPids;
	}
	#per0 = new Map<number, number>();
	start(): void {
		this.#t0 = performance.now();
		const tree = processTree(this.#pid);
		this.#cpu0 = cpuSeconds(tree);
		this.#per0 = new Map(tree.map((p) => [p, cpuSeconds([p])]));
		this.#gen0 = cpuSeconds(this.#genPids());
		this.#m0 = machine();
	}
	stop(): Window {
		const seconds = (performance.now() - this.#t0) / 1000;
		const tree = processTree(this.#pid);
		const serverCpu = cpuSeconds(tree) - this.#cpu0;
		const processes = tree.map((pid) => ({
			pid,
			name: procName(pid),
			cpu: cpuSeconds([pid]) - (this.#per0.get(pid) ?? 0),
		}));
		const generatorCpu = cpuSeconds(this.#genPids()) - this.#gen0;
		const m = machine();
		const total = m.total - this.#m0.total;
		const busy = m.busy - this.#m0.busy;
		const pct = (x: number) => (total > 0 ? (100 * x) / total : 0);
		return {
			seconds,
			machineSeconds: total,
			serverCpu,
			generatorCpu,
			machineBusyPct: pct(busy),
			othersBusyPct: Math.max(0, pct(busy - serverCpu - generatorCpu)),
			processes,
		};
	}
}
