/**
 * Which `[listeners.*]` a configuration opens, and what each is for: one answer for `parley
 * serve` (src/app/server.ts), `parley check` and the port test `serve` makes before it writes
 * anything (src/cli/ports.ts).
 */
import type { Config } from "./schema.ts";

export type ListenerName = keyof Config["listeners"];

export interface OpenedListener {
	/** The key under `[listeners]`: "c2s", "https", ... */
	name: ListenerName;
	address: string;
	port: number;
}

/** What each listener serves, for people reading the log or the README. */
export const LISTENER_PURPOSE: Record<ListenerName, string> = {
	c2s: "clients, STARTTLS",
	c2s_direct_tls: "clients, direct TLS (XEP-0368)",
	http: "BOSH, WebSocket and discovery over plain HTTP",
	https: "BOSH, WebSocket and discovery over HTTPS",
	s2s: "other servers (federation), STARTTLS",
	s2s_direct_tls: "other servers (federation), direct TLS",
	component: "external components (XEP-0114)",
	admin: "the admin API (JSON over HTTP, HTTPS off loopback)",
};

/** Like Prosody, the component port opens only when there is a component to connect to it. */
export function componentPortOpens(config: Config): boolean {
	return (
		config.listeners.component.enabled &&
		Object.values(config.components).some((c) => c.enabled && c.type === "external")
	);
}

/** The listeners `parley serve` opens for `config`. */
export function openedListeners(config: Config): OpenedListener[] {
	const out: OpenedListener[] = [];
	for (const [name, l] of Object.entries(config.listeners) as [
		ListenerName,
		Config["listeners"][ListenerName],
	][]) {
		if (!l.enabled) continue;
		if (name === "component" && !componentPortOpens(config)) continue;
		out.push({ name, address: l.address, port: l.port });
	}
	return out;
}
