/**
 * The component port (`[listeners.component]`, 5347 on loopback by default, as Prosody and
 * ejabberd use): accepts XEP-0114 external components. Each connection becomes a
 * `ComponentStream` (./stream.ts), counted with the per-IP connection limit and kept in
 * `core.streams` so that stopping the server closes it with `system-shutdown`.
 */
import type { Core } from "../core/contracts.ts";
import { SocketListener } from "../net/listener.ts";
import { ComponentStream } from "./stream.ts";

/** The component port's listener: each connection becomes a `ComponentStream`. */
export function componentListener(
	core: Core,
	opts: { address: string; port: number },
): SocketListener {
	return new SocketListener({
		kind: "component",
		address: opts.address,
		port: opts.port,
		log: core.log,
		// As s2s: counted as unauthenticated throughout (a component needs one connection).
		limiters: [core.connectionLimiter, core.unauthenticatedLimiter],
		onSocket: (socket) => {
			const stream = new ComponentStream(core, socket, (s) => core.streams.delete(s));
			core.streams.add(stream);
		},
	});
}
