/**
 * The component port (`[listeners.component]`, 5347 on loopback by default, as Prosody and
 * ejabberd use): accepts XEP-0114 external components. Each connection becomes a
 * `ComponentStream` (./stream.ts), counted with the per-IP connection limit and kept in
 * `core.streams` so that stopping the server closes it with `system-shutdown`.
 */
import net from "node:net";
import type { Core, Listener } from "../core/contracts.ts";
import { ComponentStream } from "./stream.ts";

export class ComponentListener implements Listener {
	readonly kind = "component";
	readonly #core: Core;
	readonly #address: string;
	readonly #port: number;
	#net: net.Server | null = null;
	readonly #sockets = new Set<net.Socket>();

	constructor(core: Core, opts: { address: string; port: number }) {
		this.#core = core;
		this.#address = opts.address;
		this.#port = opts.port;
	}

	get port(): number {
		const a = this.#net?.address();
		return a && typeof a === "object" ? a.port : this.#port;
	}

	async listen(): Promise<void> {
		const core = this.#core;
		const server = net.createServer((socket) => {
			const ip = socket.remoteAddress ?? "";
			if (!core.connectionLimiter.acquire(ip)) {
				socket.destroy();
				return;
			}
			this.#sockets.add(socket);
			socket.once("close", () => {
				this.#sockets.delete(socket);
				core.connectionLimiter.release(ip);
			});
			const stream = new ComponentStream(core, socket, (s) => core.streams.delete(s));
			core.streams.add(stream);
		});
		await new Promise<void>((resolve, reject) => {
			server.once("error", reject);
			server.listen({ host: this.#address, port: this.#port }, () => {
				server.off("error", reject);
				resolve();
			});
		});
		this.#net = server;
		core.log.info({ listener: this.kind, address: this.#address, port: this.port }, "listening");
	}

	async close(): Promise<void> {
		const server = this.#net;
		this.#net = null;
		if (!server) return;
		const closed = new Promise<void>((resolve) => server.close(() => resolve()));
		for (const s of this.#sockets) s.destroy();
		await closed;
	}
}
