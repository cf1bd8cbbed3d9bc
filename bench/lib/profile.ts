// Reads a V8 .cpuprofile (written by node --cpu-prof) and lists functions by self time.
import { readFileSync } from "node:fs";

interface CpuProfileNode {
	id: number;
	callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
	hitCount?: number;
	children?: number[];
}
interface CpuProfile {
	nodes: CpuProfileNode[];
	startTime: number;
	endTime: number;
	samples?: number[];
	timeDeltas?: number[];
}

export interface SelfTime {
	name: string;
	location: string;
	selfMs: number;
	pct: number;
}

export function topSelfTime(
	file: string,
	root: string,
	n = 15,
): { totalMs: number; top: SelfTime[]; activeMs: number } {
	const prof = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
	const byId = new Map(prof.nodes.map((nd) => [nd.id, nd]));
	const self = new Map<number, number>();
	const samples = prof.samples ?? [];
	const deltas = prof.timeDeltas ?? [];
	// Sample i lasts until sample i+1 (DevTools' convention); deltas are in microseconds.
	for (let i = 0; i < samples.length; i++) {
		const id = samples[i] as number;
		const dt = i + 1 < deltas.length ? (deltas[i + 1] as number) : 0;
		self.set(id, (self.get(id) ?? 0) + dt);
	}
	const agg = new Map<string, { name: string; location: string; us: number }>();
	let total = 0;
	let idle = 0;
	for (const [id, us] of self) {
		const nd = byId.get(id);
		if (!nd) continue;
		total += us;
		const cf = nd.callFrame;
		if (cf.functionName === "(idle)") idle += us;
		const url = cf.url.replace(`file://${root}/`, "").replace(/^file:\/\//, "");
		const location = url ? `${url}:${cf.lineNumber + 1}` : "";
		const name = cf.functionName || "(anonymous)";
		const key = `${name}@${location}`;
		const e = agg.get(key);
		if (e) e.us += us;
		else agg.set(key, { name, location, us });
	}
	const active = total - idle;
	const top = [...agg.values()]
		.filter((e) => e.name !== "(idle)")
		.sort((a, b) => b.us - a.us)
		.slice(0, n)
		.map((e) => ({
			name: e.name,
			location: e.location,
			selfMs: e.us / 1000,
			pct: active > 0 ? (100 * e.us) / active : 0,
		}));
	return { totalMs: total / 1000, activeMs: active / 1000, top };
}
