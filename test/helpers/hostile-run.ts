/**
 * Plays hostile cases (hostile-inputs.ts) against a server: over c2s TCP, WebSocket (RFC 7395)
 * or BOSH (XEP-0206), a bounded number at a time, and reports how each connection ended.
 */
import net from "node:net";
import WebSocket from "ws";
import { HEADER, type HostileCase } from "./hostile-inputs.ts";

export interface CaseResult {
	kind: string;
	/** The server closed the connection (or answered the HTTP request) before the client gave up. */
	closedByServer: boolean;
	/** The server's output contained a stream error. */
	streamError: boolean;
	/** The client had to close it itself (a "hang" case held for `holdMs`, or a wait that never came). */
	clientGaveUp: boolean;
}

export interface RunOptions {
	/** How long a "hang" case stays open before the client drops it; Infinity: until the server does. */
	holdMs: number;
	/** A safety net for every connection (not an assertion of speed): drop it after this long. */
	maxMs: number;
}

const STREAM_ERROR = /<(stream:)?error[\s>]|<close[\s/]|type=['"]terminate['"]/;

/** One hostile case over c2s TCP. */
export function runTcpCase(port: number, c: HostileCase, o: RunOptions): Promise<CaseResult> {
	return new Promise((resolve) => {
		const socket = net.connect({ port, host: "127.0.0.1" });
		let received = "";
		let closedByServer = false;
		let clientGaveUp = false;
		let done = false;
		let waiting: { text: string; go: () => void } | null = null;
		let hold: NodeJS.Timeout | undefined;
		const safety = setTimeout(() => giveUp(), o.maxMs);
		const giveUp = () => {
			if (done) return;
			clientGaveUp = true;
			socket.destroy();
		};
		socket.setEncoding("latin1");
		socket.on("data", (d: string) => {
			received += d;
			if (waiting && received.includes(waiting.text)) {
				const w = waiting;
				waiting = null;
				w.go();
			}
		});
		socket.on("end", () => {
			closedByServer = !clientGaveUp;
		});
		socket.on("error", () => {
			// ECONNRESET: the server reset it (a destroy with unread data pending).
			if (!clientGaveUp) closedByServer = true;
		});
		socket.on("close", () => {
			done = true;
			clearTimeout(safety);
			clearTimeout(hold);
			if (!clientGaveUp) closedByServer = true;
			resolve({
				kind: c.kind,
				closedByServer,
				streamError: STREAM_ERROR.test(received),
				clientGaveUp,
			});
		});
		socket.once("connect", async () => {
			for (const step of c.steps) {
				if (socket.destroyed) return;
				if ("write" in step) {
					socket.write(step.write);
					await new Promise((r) => setImmediate(r));
				} else if (!received.includes(step.wait)) {
					await new Promise<void>((go) => {
						waiting = { text: step.wait, go };
					});
				}
			}
			if (socket.destroyed) return;
			if (c.end === "fin") socket.end();
			else if (c.end === "rst") socket.resetAndDestroy();
			else if (Number.isFinite(o.holdMs)) hold = setTimeout(giveUp, o.holdMs);
		});
	});
}

const OPEN = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>";

/** The case's bytes with the TCP stream header replaced by RFC 7395 framing. */
function framed(c: HostileCase): Buffer {
	const bytes = Buffer.concat(c.steps.flatMap((s) => ("write" in s ? [s.write] : [])));
	return Buffer.from(bytes.toString("latin1").replaceAll(HEADER, OPEN), "latin1");
}

/** One hostile case over WebSocket: the bytes as one text or binary message, or several. */
export function runWsCase(
	port: number,
	path: string,
	c: HostileCase,
	o: RunOptions,
): Promise<CaseResult> {
	return new Promise((resolve) => {
		const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, "xmpp");
		let received = "";
		let clientGaveUp = false;
		const safety = setTimeout(() => {
			clientGaveUp = true;
			ws.terminate();
		}, o.maxMs);
		let hold: NodeJS.Timeout | undefined;
		ws.on("message", (d) => {
			received += d.toString();
		});
		ws.on("error", () => {});
		ws.on("close", () => {
			clearTimeout(safety);
			clearTimeout(hold);
			resolve({
				kind: `ws-${c.kind}`,
				closedByServer: !clientGaveUp,
				streamError: STREAM_ERROR.test(received),
				clientGaveUp,
			});
		});
		ws.on("open", () => {
			const bytes = framed(c);
			// Several messages, split where the bytes split: a message boundary inside a token.
			const parts =
				c.steps.length > 1
					? [bytes.subarray(0, bytes.length >> 1), bytes.subarray(bytes.length >> 1)]
					: [bytes];
			for (const p of parts) ws.send(p, { binary: p.length % 2 === 0 });
			if (c.end === "fin") ws.close();
			else if (c.end === "rst") ws.terminate();
			else if (Number.isFinite(o.holdMs))
				hold = setTimeout(() => {
					clientGaveUp = true;
					ws.terminate();
				}, o.holdMs);
		});
	});
}

/** One hostile case over BOSH: the bytes as a request body, or inside a session's body. */
export async function runBoshCase(
	port: number,
	path: string,
	c: HostileCase,
	o: RunOptions,
): Promise<CaseResult> {
	const url = `http://127.0.0.1:${port}${path}`;
	const junk = framed(c).toString("latin1").replaceAll(OPEN, "");
	const post = async (body: string | Buffer): Promise<string> => {
		const res = await fetch(url, {
			method: "POST",
			headers: { "content-type": "text/xml; charset=utf-8" },
			body,
			signal: AbortSignal.timeout(o.maxMs),
		});
		return res.text();
	};
	let text = "";
	try {
		if (c.steps.length % 2 === 0) {
			text = await post(Buffer.from(junk, "latin1"));
		} else {
			const rid = 1000 + junk.length;
			const first = await post(
				`<body xmlns='http://jabber.org/protocol/httpbind' rid='${rid}' to='localhost' wait='1' hold='1' ver='1.6' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'/>`,
			);
			const sid = /sid=['"]([^'"]+)/.exec(first)?.[1];
			text = first;
			if (sid)
				text += await post(
					Buffer.from(
						`<body xmlns='http://jabber.org/protocol/httpbind' rid='${rid + 1}' sid='${sid}'>${junk}</body>`,
						"latin1",
					),
				);
		}
	} catch {
		return {
			kind: `bosh-${c.kind}`,
			closedByServer: false,
			streamError: false,
			clientGaveUp: true,
		};
	}
	return {
		kind: `bosh-${c.kind}`,
		closedByServer: true,
		streamError: STREAM_ERROR.test(text),
		clientGaveUp: false,
	};
}

/** Runs `jobs` with at most `parallel` at a time; results in job order. */
export async function pool<T>(jobs: (() => Promise<T>)[], parallel: number): Promise<T[]> {
	const out: T[] = new Array(jobs.length);
	let next = 0;
	const worker = async () => {
		while (next < jobs.length) {
			const i = next++;
			out[i] = await (jobs[i] as () => Promise<T>)();
		}
	};
	await Promise.all(Array.from({ length: Math.min(parallel, jobs.length) }, worker));
	return out;
}
