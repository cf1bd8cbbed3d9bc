/**
 * Are the ports a configuration listens on free? `parley check` reports it, and `parley serve`
 * asks before it opens storage or writes a certificate, so that a port in use is one line
 * naming the key to change, and the first failed start leaves nothing behind on disk.
 */
import { createServer } from "node:net";
import { type OpenedListener, openedListeners } from "../core/config/listeners.ts";
import type { Config } from "../core/config/schema.ts";

export interface ListenerPort extends OpenedListener {
	/** Why the port cannot be opened (undefined: it can). */
	problem?: string;
}

export const IN_USE = "is in use";

/** Opens and closes the port: undefined when that works, else why not, in a few words. */
export function portProblem(address: string, port: number): Promise<string | undefined> {
	return new Promise((resolve) => {
		const s = createServer();
		s.once("error", (err: NodeJS.ErrnoException) => resolve(listenProblem(err)));
		s.listen({ host: address, port }, () => s.close(() => resolve(undefined)));
	});
}

/** A listen() error in the words `check` and `serve` use. */
export function listenProblem(err: NodeJS.ErrnoException): string {
	switch (err.code) {
		case "EADDRINUSE":
			return IN_USE;
		case "EACCES":
			return "needs privileges this process does not have (EACCES)";
		case "EADDRNOTAVAIL":
			return "cannot be opened: the address is not one of this machine's (EADDRNOTAVAIL)";
		default:
			return `cannot be opened: ${err.code ?? err.message}`;
	}
}

/** Every listener `serve` would open, with whether its port can be opened now. */
export async function probeListeners(config: Config): Promise<ListenerPort[]> {
	const out: ListenerPort[] = [];
	const wildcard = (a: string) => a === "::" || a === "0.0.0.0";
	for (const l of openedListeners(config)) {
		// Two listeners of this configuration on one port: each alone would find it free.
		const twin = out.find(
			(o) =>
				l.port !== 0 &&
				o.port === l.port &&
				(o.address === l.address || wildcard(o.address) || wildcard(l.address)),
		);
		const problem = twin
			? `is also listeners.${twin.name}'s port`
			: await portProblem(l.address, l.port);
		out.push(problem === undefined ? l : { ...l, problem });
	}
	return out;
}

/**
 * The one line for a listener that cannot open its port, with the key to change:
 * `listeners.c2s: port 5222 on :: is in use; stop the program using it or set another listeners.c2s.port`.
 */
export function listenerProblemLine(l: OpenedListener, problem: string): string {
	const key = `listeners.${l.name}`;
	const fix =
		problem === IN_USE
			? `stop the program using it or set another ${key}.port`
			: `change ${key}.port or ${key}.address`;
	return `${key}: port ${l.port} on ${l.address} ${problem}; ${fix}`;
}
