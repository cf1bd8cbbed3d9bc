/**
 * What a reload does with a new configuration (`Server.reload`): which keys changed, which of
 * them apply in place and which need a restart of the XMPP service, and which hosts and
 * components come, go or change. Pure functions of two configurations, so that the rules are
 * tested without a server.
 */
import { componentPortOpens } from "./config/listeners.ts";
import { ANONYMOUS_MODULE, type Config, type HostConfig } from "./config/schema.ts";

/**
 * The entry of a reload report for certificates that were read again and differ (the files
 * were replaced after a renewal, or a `tls` key changed): new TLS handshakes use them.
 */
export const CERTIFICATES_KEY = "certificates";

export interface ReloadPlan {
	/** Keys outside hosts and components that apply in place. */
	simple: string[];
	/** Keys that take effect only after a restart. */
	restartNeeded: string[];
	/** Keys of hosts and components applied in place (`hosts.x`, `hosts.x.modules`, ...). */
	hostKeys: string[];
	addedHosts: string[];
	removedHosts: string[];
	/** Hosts that stay, with a changed table (modules, module options, tls, ...). */
	changedHosts: string[];
	/** Hosts whose change needs a restart: they run on as they were. */
	keptHosts: Set<string>;
	addedComponents: string[];
	removedComponents: string[];
	changedComponents: string[];
}

/**
 * Sections read where they are used (each new stream, each login, each stanza), so the new
 * value holds from then on; the two per-IP limits are set on their objects.
 */
const IN_PLACE = new Set(["limits", "sessions", "auth", "tls", "admin", "backup", "invites"]);
/** Keys of other sections that apply in place (`Server.reload` sets them where they live). */
const IN_PLACE_KEYS = new Set(["log.level", "server.name"]);
/** Keys of an in-place section that are read once, at start. */
const READ_AT_START = new Set(["auth.scram_iterations"]);

/**
 * Sorts what changed between two valid configurations. `componentListenerOpen`: whether the
 * running server has the XEP-0114 port open (an external component added without it needs a
 * restart to be reachable).
 */
export function planReload(prev: Config, next: Config, componentListenerOpen: boolean): ReloadPlan {
	const plan: ReloadPlan = {
		simple: [],
		restartNeeded: [],
		hostKeys: [],
		addedHosts: [],
		removedHosts: [],
		changedHosts: [],
		keptHosts: new Set(),
		addedComponents: [],
		removedComponents: [],
		changedComponents: [],
	};
	for (const key of changedKeys(prev, next)) {
		const dot = key.indexOf(".");
		const section = dot < 0 ? key : key.slice(0, dot);
		const name = key.slice(dot + 1);
		if (section === "hosts" && dot > 0) planHost(plan, name, prev, next);
		else if (section === "components" && dot > 0) {
			const a = enabled(prev.components[name]);
			const b = enabled(next.components[name]);
			plan.hostKeys.push(key);
			if (a && !b) plan.removedComponents.push(name);
			else if (!a && b) plan.addedComponents.push(name);
			else if (a && b) plan.changedComponents.push(name);
			if (
				b?.type === "external" &&
				!componentListenerOpen &&
				componentPortOpens(next) &&
				!plan.restartNeeded.includes("listeners.component")
			)
				plan.restartNeeded.push("listeners.component");
		} else if (IN_PLACE_KEYS.has(key) || (IN_PLACE.has(section) && !READ_AT_START.has(key)))
			plan.simple.push(key);
		else plan.restartNeeded.push(key);
	}
	return plan;
}

function planHost(plan: ReloadPlan, name: string, prev: Config, next: Config): void {
	const a = enabled(prev.hosts[name]);
	const b = enabled(next.hosts[name]);
	// An anonymous host's stores live in a memory backend chosen when storage opens
	// (`memory_hosts`, src/storage/index.ts): becoming or adding one waits for a restart.
	const anonymousStorage =
		b !== undefined &&
		(a === undefined ? b.authentication === "anonymous" : a.authentication !== b.authentication);
	if (anonymousStorage) {
		plan.keptHosts.add(name);
		plan.restartNeeded.push(a ? `hosts.${name}.authentication` : `hosts.${name}`);
		return;
	}
	if (a && !b) plan.removedHosts.push(name);
	else if (!a && b) plan.addedHosts.push(name);
	if (!a || !b) {
		plan.hostKeys.push(`hosts.${name}`);
		return;
	}
	plan.changedHosts.push(name);
	for (const field of unionKeys(a, b)) {
		if (field === "module_options") {
			for (const m of unionKeys(a.module_options, b.module_options))
				if (!sameValue(a.module_options[m], b.module_options[m]))
					plan.hostKeys.push(`hosts.${name}.module_options.${m}`);
		} else if (!sameValue(a[field], b[field])) plan.hostKeys.push(`hosts.${name}.${field}`);
	}
}

/** The modules a host runs: its `modules` list, and the guests' limits on an anonymous host. */
export function hostModules(cfg: HostConfig): string[] {
	return cfg.authentication === "anonymous"
		? [...new Set([...cfg.modules, ANONYMOUS_MODULE])]
		: [...cfg.modules];
}

/** The names of the enabled entries of `[hosts]` or `[components]`, in the file's order. */
export function enabledNames(table: Record<string, { enabled: boolean }>): string[] {
	return Object.entries(table)
		.filter(([, v]) => v.enabled)
		.map(([name]) => name);
}

function enabled<T extends { enabled: boolean }>(v: T | undefined): T | undefined {
	return v?.enabled ? v : undefined;
}

/**
 * The dotted paths whose values differ between two configurations, down to the second level
 * (`limits.stanza_size`, `hosts.example.org`): the unit `reload` applies or defers. Key order
 * does not matter, nor does a key that is absent against one that is undefined.
 */
export function changedKeys(a: Config, b: Config): string[] {
	const out: string[] = [];
	for (const section of unionKeys(a, b)) {
		const x: unknown = a[section];
		const y: unknown = b[section];
		if (sameValue(x, y)) continue;
		if (!isRecord(x) || !isRecord(y)) {
			out.push(section);
			continue;
		}
		for (const key of unionKeys(x, y))
			if (!sameValue(x[key], y[key])) out.push(`${section}.${key}`);
	}
	return out;
}

/** Deep equality of configuration values (JSON-like: records, arrays, primitives). */
export function sameValue(x: unknown, y: unknown): boolean {
	if (x === y) return true;
	if (Array.isArray(x) || Array.isArray(y)) {
		if (!Array.isArray(x) || !Array.isArray(y) || x.length !== y.length) return false;
		return x.every((v, i) => sameValue(v, y[i]));
	}
	if (!isRecord(x) || !isRecord(y)) return false;
	for (const k of unionKeys(x, y)) if (!sameValue(x[k], y[k])) return false;
	return true;
}

function unionKeys<T extends object>(a: T, b: T): (keyof T & string)[] {
	return [...new Set([...Object.keys(a), ...Object.keys(b)])] as (keyof T & string)[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
	return typeof v === "object" && v !== null && !Array.isArray(v);
}
