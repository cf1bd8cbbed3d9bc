/**
 * Ports for servers a test must name before they start (two servers routing to each other,
 * a cluster's nodes). Chosen at random below the kernel's ephemeral range (32768-60999 here,
 * /proc/sys/net/ipv4/ip_local_port_range): a port from listen(0) comes from that range, and
 * between the probe and the server's own listen any outgoing connection of a test running
 * beside it may be given the same number as its local port (EADDRINUSE, seen in CI once the
 * hostile-input tests made thousands of connections). Ports handed out by this process are not
 * handed out again.
 */
import net from "node:net";

const LOW = 20_000;
const HIGH = 32_768;
const given = new Set<number>();

function tryListen(port: number, address: string): Promise<boolean> {
	return new Promise((resolve) => {
		const srv = net.createServer();
		srv.once("error", () => resolve(false));
		srv.listen(port, address, () => srv.close(() => resolve(true)));
	});
}

/** A port that was free a moment ago on `address`, outside the ephemeral range. */
export async function freePort(address = "127.0.0.1"): Promise<number> {
	for (let attempt = 0; attempt < 200; attempt++) {
		const port = LOW + Math.floor(Math.random() * (HIGH - LOW));
		if (given.has(port)) continue;
		given.add(port);
		if (await tryListen(port, address)) return port;
	}
	throw new Error(`no free port found in ${LOW}-${HIGH - 1} on ${address}`);
}
