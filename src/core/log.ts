/**
 * Structured logging (pino).
 *
 * - `format: "json"`, or `"auto"` when the destination is not a terminal: one JSON object per
 *   line, `level` written as its name ("info", not 30) and `time` as an ISO 8601 string, so log
 *   collectors can read it without knowing pino's numbers.
 * - `format: "pretty"`, or `"auto"` on a terminal: pino-pretty, run as a stream in this thread
 *   (not a worker transport), so that tests and short CLI runs never lose their last lines.
 *   The lines a person reads when the server starts (`listening`, `Parley is running`) say
 *   their fields in the message, one line each: `listening on [::]:5222 (listeners.c2s:
 *   clients, STARTTLS)`. The JSON records keep their message and fields as they are.
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
import { LISTENER_PURPOSE, type ListenerName } from "./config/listeners.ts";

export type Logger = pino.Logger;

export type LogFormat = "auto" | "json" | "pretty";

export interface LoggerOptions {
	/** A pino level name: trace, debug, info, warn, error, fatal or silent. */
	level: string;
	format: LogFormat;
	/** A writable stream or a file descriptor; stdout (1) when absent. */
	destination?: NodeJS.WritableStream | number;
}

type Record_ = Record<string, unknown>;

/** `[::1]:5222`, `127.0.0.1:5222`. */
function hostPort(address: unknown, port: unknown): string {
	const a = String(address);
	return `${a.includes(":") ? `[${a}]` : a}:${String(port)}`;
}

/**
 * Records shown on a terminal as one plain line: which message, the fields it already says (not
 * repeated below it), and the text that replaces the message (the message itself if none).
 */
interface OneLine {
	match(msg: string): boolean;
	keys: string[];
	text?(log: Record_): string;
}

const ONE_LINE: OneLine[] = [
	{
		match: (msg) => msg === "listening",
		keys: ["listener", "address", "port"],
		text: (log) => {
			const name = String(log.listener);
			const purpose = LISTENER_PURPOSE[name as ListenerName];
			return `listening on ${hostPort(log.address, log.port)} (listeners.${name}${purpose ? `: ${purpose}` : ""})`;
		},
	},
	{
		match: (msg) => msg === "Parley is running",
		keys: ["hosts"],
		text: (log) =>
			Array.isArray(log.hosts)
				? `Parley is running for ${log.hosts.join(", ")}`
				: "Parley is running",
	},
	{
		// src/tls/certs.ts: the message names the hosts and the file already.
		match: (msg) =>
			/^(generated|using) the self-signed certificate|^generated a self-signed certificate/.test(
				msg,
			),
		keys: ["hosts", "cert"],
	},
];

function oneLine(log: Record_): OneLine | undefined {
	const msg = log.msg;
	return typeof msg === "string" ? ONE_LINE.find((r) => r.match(msg)) : undefined;
}

// Control characters that could rewrite a terminal (pino-pretty strips the same from messages).
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters to remove
const UNSAFE = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F]/g;

function prettyMessage(log: Record_, messageKey: string): string {
	const special = oneLine(log);
	const text = special?.text ? special.text(log) : String(log[messageKey] ?? "");
	return text.replace(UNSAFE, "");
}

/** Hides a field of a one-line record; any other field is printed as pino-pretty would. */
function fieldPrettifier(value: unknown, key: string, log: object): string {
	if (oneLine(log as Record_)?.keys.includes(key)) return undefined as unknown as string;
	return JSON.stringify(value, null, 2);
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
			messageFormat: prettyMessage,
			// pino-pretty skips a field whose prettifier returns undefined.
			customPrettifiers: Object.fromEntries(
				[...new Set(ONE_LINE.flatMap((r) => r.keys))].map((k) => [k, fieldPrettifier]),
			),
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
