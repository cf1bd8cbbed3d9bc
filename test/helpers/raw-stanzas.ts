/**
 * Stanza-level steps for raw-socket tests (test/helpers/raw.ts): go online, send an IQ and pick
 * out its answer, find a message, and a marker round trip that orders what was sent before.
 */
import type { RawClient } from "./raw.ts";
import { login } from "./xmpp-raw-login.ts";

/**
 * Logs in (the password is `pw-<user>` unless given) and sends initial presence, with a
 * priority when given; waits for the server's echo of it (RFC 6121 §4.2.2).
 */
export async function online(
	port: number,
	user: string,
	resource: string,
	opts: { host?: string; password?: string; priority?: number } = {},
): Promise<RawClient> {
	const host = opts.host ?? "localhost";
	const c = await login(port, user, opts.password ?? `pw-${user}`, { resource, host });
	const mark = c.received.length;
	c.send(
		opts.priority === undefined
			? "<presence/>"
			: `<presence><priority>${opts.priority}</priority></presence>`,
	);
	await c.waitFor(new RegExp(`<presence[^>]*from="${user}@${host}/${resource}"`), mark);
	return c;
}

/**
 * Sends `stanza` (an IQ with id `id`) and waits for the answer with that id: a self-closing
 * `<iq/>` or one up to its `</iq>`. Returns the answer's XML text. `ms` is a safety net for a
 * hung test, not a timing assertion.
 */
export async function iq(c: RawClient, id: string, stanza: string, ms = 10_000): Promise<string> {
	const mark = c.received.length;
	c.send(stanza);
	const re = new RegExp(`<iq\\b[^>]*\\bid=["']${id}["'][^>]*?(/>|>[\\s\\S]*?</iq>)`);
	const text = await c.waitFor(re, mark, ms);
	return (re.exec(text) as RegExpExecArray)[0];
}

/** The first `<message>` with this id received after `mark`. */
export async function message(c: RawClient, id: string, mark: number): Promise<string> {
	const re = new RegExp(`<message[^>]*id="${id}"[^>]*>[\\s\\S]*?</message>`);
	const text = await c.waitFor(re, mark);
	return (re.exec(text) as RegExpExecArray)[0];
}

/**
 * Sends a marker message from `from` to `toJid` (one of `to`'s full JIDs) and waits for it:
 * anything `from` sent before it has been routed by then (RFC 6120 §10.1 in-order processing,
 * synchronous delivery). Returns what `to` received since `mark`. `type` sets the marker's
 * message type (e.g. headline, which is neither stored offline nor carbon-copied).
 */
export async function sync(
	from: RawClient,
	to: RawClient,
	toJid: string,
	mark: number,
	type?: string,
): Promise<string> {
	const id = `sync-${Math.random().toString(36).slice(2)}`;
	const typeAttr = type ? ` type='${type}'` : "";
	from.send(`<message to='${toJid}' id='${id}'${typeAttr}><body>sync</body></message>`);
	await message(to, id, mark);
	return to.received.slice(mark);
}

let seq = 0;

/** Sends an IQ of `type` with `body` (to `to` when given) under a fresh id; returns the answer. */
export function request(
	c: RawClient,
	type: "get" | "set",
	body: string,
	to?: string,
): Promise<string> {
	const id = `iq${++seq}`;
	return iq(c, id, `<iq type='${type}' id='${id}'${to ? ` to='${to}'` : ""}>${body}</iq>`);
}

/**
 * Makes a raw client answer the server's XEP-0199 pings, as any client must answer an IQ
 * (RFC 6120 §8.2.3); servers that check liveness (`sessions.idle_ping`) drop one that does not.
 */
export function answerPings(c: RawClient): void {
	let seen = 0;
	c.socket.on("data", () => {
		const text = c.received;
		const re = /<iq\b([^>]*)>\s*<ping xmlns="urn:xmpp:ping"\/>\s*<\/iq>/g;
		re.lastIndex = seen;
		for (let m = re.exec(text); m; m = re.exec(text)) {
			seen = re.lastIndex;
			const head = m[1] ?? "";
			const id = /\bid="([^"]*)"/.exec(head)?.[1];
			if (!/\btype="get"/.test(head) || id === undefined) continue;
			const from = /\bfrom="([^"]*)"/.exec(head)?.[1];
			c.send(`<iq type='result' id='${id}'${from ? ` to='${from}'` : ""}/>`);
		}
	});
}
