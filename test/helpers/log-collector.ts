/** A server's JSON log (pino) collected in memory, for tests that check what it logged. */
import { PassThrough } from "node:stream";

/** A stream to give the server as its log, and the JSON lines written to it so far. */
export function logCollector(): { stream: PassThrough; lines: () => Record<string, unknown>[] } {
	const stream = new PassThrough();
	let text = "";
	stream.on("data", (d: Buffer) => {
		text += d.toString("utf8");
	});
	return {
		stream,
		lines: () =>
			text
				.split("\n")
				.filter((l) => l.startsWith("{"))
				.map((l) => JSON.parse(l) as Record<string, unknown>),
	};
}
