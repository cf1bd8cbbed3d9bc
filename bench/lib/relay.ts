// The "limit" target: a raw Node.js TCP relay. No XML, no auth: a client sends one line
// "PAIR <n> <A|B>"; once both ends of pair n are connected, each gets "OK\n" and every byte A
// sends is written to B. What is left is what moving the chat scenario's bytes costs in Node.
import { createServer, type Socket } from "node:net";

const waiting = new Map<string, Socket>();
const server = createServer((s) => {
	s.setNoDelay(true);
	s.on("error", () => {});
	let head = "";
	const onHead = (d: Buffer) => {
		head += d.toString("latin1");
		const nl = head.indexOf("\n");
		if (nl < 0) return;
		s.off("data", onHead);
		const [, id, role] = head.slice(0, nl).split(" ");
		const key = String(id);
		const other = waiting.get(key);
		if (!other) {
			waiting.set(key, s);
			(s as Socket & { role?: string }).role = role;
			return;
		}
		waiting.delete(key);
		const [a, b] = role === "A" ? [s, other] : [other, s];
		a.on("data", (chunk: Buffer) => b.write(chunk));
		a.on("end", () => b.end());
		b.on("data", () => {});
		b.on("end", () => a.end());
		a.write("OK\n");
		b.write("OK\n");
	};
	s.on("data", onHead);
});
server.maxConnections = 19_000;
server.listen({ host: "127.0.0.1", port: 0 }, () => {
	const a = server.address();
	if (a && typeof a === "object") process.stdout.write(`${JSON.stringify({ port: a.port })}\n`);
});
process.on("SIGTERM", () => process.exit(0));
