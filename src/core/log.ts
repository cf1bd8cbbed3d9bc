/**
 * Structured logging (pino).
 *
 * - `format: "json"`, or `"auto"` when the destination is not a terminal: one JSON object per
 *   line, `level` written as its name ("info", not 30) and `time` as an ISO 8601 string, so log
 *   collectors can read it without knowing pino's numbers.
 * - `format: "pretty"`, or `"auto"` on a terminal: pino-pretty, run as a stream in this thread
 *   (not a worker transport), so that tests and short CLI runs never lose their last lines.
 *
 * The default destination is stdout (fd 1): JSON logs on stdout are what process supervisors
 * and container runtimes collect by default. Every write is synchronous for the same reason as
 * above: a line logged just before `process.exit()` must reach the file.
 *
 * Nothing here is module-level state: every server instance creates its own logger.
 */
import { isatty } from "node:tty";
import pino from "pino";
import pinoPretty from "pino-pretty";

export type Logger = pino.Logger;

export type LogFormat = "auto" | "json" | "pretty";

export interface LoggerOptions {
	/** A pino level name: trace, debug, info, warn, error, fatal or silent. */
	level: string;
	format: LogFormat;
	/** A writable stream or a file descriptor; stdout (1) when absent. */
	destination?: NodeJS.WritableStream | number;
}

function destinationIsTTY(destination: NodeJS.WritableStream | number): boolean {
	if (typeof destination === "number") return isatty(destination);
	return (destination as { isTTY?: unknown }).isTTY === true;
}

export function createLogger(opts: LoggerOptions): Logger {
	const destination = opts.destination ?? 1;
	const tty = destinationIsTTY(destination);
	const pretty = opts.format === "pretty" || (opts.format === "auto" && tty);

	if (pretty) {
		const stream = pinoPretty({
			colorize: tty,
			sync: true,
			destination,
			translateTime: "SYS:HH:MM:ss.l",
			ignore: "pid,hostname",
		});
		return pino({ level: opts.level }, stream);
	}

	const stream =
		typeof destination === "number"
			? pino.destination({ dest: destination, sync: true })
			: destination;
	return pino(
		{
			level: opts.level,
			timestamp: pino.stdTimeFunctions.isoTime,
			formatters: { level: (label) => ({ level: label }) },
		},
		stream,
	);
}

/** A logger that writes nothing, for tests. */
export function createSilentLogger(): Logger {
	return pino({ level: "silent" });
}
