/**
 * A TCP relay on loopback that can make its connections vanish, for tests of dead-connection
 * detection (issue 21). Clients connect to the relay, which connects on to the server; once
 * `vanish()` is called nothing moves in either direction any more and nobody closes anything:
 * the relay stops reading both sockets (so the server's writes fill the kernel buffers and stay
 * unread, and the client's bytes never arrive), like a phone whose network went away without a
 * FIN or an RST.
 *
 * Why a relay rather than a packet filter (iptables, a network namespace): it needs no root and
 * no kernel modules, works the same on every machine CI runs on, and is per connection. What it
 * does not imitate: the kernel on the relay's side still acknowledges TCP segments until its
 * receive buffer is full, which is what a peer that is alive but not reading looks like; for
 * the server the result is the same one it must detect: nothing comes back.
 */
import net from "node:net";

export interface VanishingRelay {
	port: number;
	/** Stops every connection made so far: no byte moves any more, nothing is closed. */
	vanish(): void;
	close(): Promise<void>;
}

export function startVanishingRelay(
	targetPort: number,
	targetHost = "127.0.0.1",
): Promise<VanishingRelay> {
	const pairs: [net.Socket, net.Socket][] = [];
	const server = net.createServer((client) => {
		const upstream = net.connect(targetPort, targetHost);
		client.pipe(upstream);
		upstream.pipe(client);
		for (const s of [client, upstream]) s.on("error", () => {});
		pairs.push([client, upstream]);
	});
	return new Promise((resolve) => {
		server.listen(0, "127.0.0.1", () => {
			resolve({
				port: (server.address() as net.AddressInfo).port,
				vanish() {
					for (const [client, upstream] of pairs) {
						client.unpipe(upstream);
						upstream.unpipe(client);
						client.pause();
						upstream.pause();
					}
				},
				close() {
					for (const [client, upstream] of pairs) {
						client.destroy();
						upstream.destroy();
					}
					return new Promise((r) => server.close(() => r()));
				},
			});
		});
	});
}
