/**
 * Seeded hostile input for c2s streams, shared by the CI fuzz test (test/e2e/fuzz.test.ts) and
 * the memory benchmark (bench/hostile-memory.ts): malformed XML, bit flips and truncations of a
 * valid stream, deep nesting, attribute storms, huge values, invalid UTF-8, entity tricks,
 * partial stanzas left hanging and pre-authentication floods. Same seed, same inputs.
 */

/** mulberry32: a small, fast, well-mixed 32-bit PRNG (no dependency). */
export function prng(seed: number): () => number {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

export interface HostileCase {
	kind: string;
	/**
	 * What the client does, in order: write bytes, or wait until the server's output contains a
	 * string (for inputs that need a live exchange, such as a login before the junk).
	 */
	steps: ({ write: Buffer } | { wait: string })[];
	/**
	 * After the last step: "fin" ends the client's side, "rst" resets the connection, "hang"
	 * leaves it open and silent (the server must end it: a stream error or its auth timeout).
	 */
	end: "fin" | "rst" | "hang";
}

export const HEADER =
	"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** A plausible client stream: what bit flips and truncations start from. */
function validStream(r: () => number): string {
	const id = Math.floor(r() * 1e6);
	return (
		HEADER +
		`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${b64(`\0nobody${id}\0secret`)}</auth>` +
		`<iq type='get' id='r${id}'><query xmlns='jabber:iq:register'/></iq>` +
		`<message to='alice@localhost' id='m${id}' type='chat'><body>hello &amp; &#x263A; ünïcödé</body></message>` +
		`<presence><show>away</show><status>&lt;gone&gt;</status></presence>` +
		"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>" +
		"</stream:stream>"
	);
}

const TOKENS = [
	"<",
	">",
	"</",
	"/>",
	"<a",
	"<a>",
	"</a>",
	"<b:c",
	" x='1'",
	' y="',
	"'",
	'"',
	"=",
	"&",
	"&amp;",
	"&#",
	"&#x",
	";",
	"<!--",
	"-->",
	"<?",
	"?>",
	"<![CDATA[",
	"]]>",
	"<!DOCTYPE",
	"xmlns='urn:x'",
	" xmlns:p='' ",
	"<p:q>",
	"</stream:stream>",
	"<message>",
	"<iq type='get'>",
	"\u0000",
	"\u0001",
	"\r\n",
	" ",
	"\t",
	"text",
	"\uFFFE",
	"\uD800",
	"é",
];

const BAD_UTF8: number[][] = [
	[0x80], // lone continuation byte
	[0xc0, 0xbc], // overlong '<'
	[0xc3, 0x28], // bad continuation
	[0xed, 0xa0, 0x80], // encoded surrogate
	[0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
	[0xfe],
	[0xff, 0xfe],
	[0xe2, 0x82], // truncated sequence
	[0xf0, 0x9f, 0x98], // truncated 4-byte
];

const ENTITY_TRICKS = [
	`<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>${HEADER}<message>&b;</message>`,
	`<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>${HEADER}<message>&e;</message>`,
	`${HEADER}<message>&#0;</message>`,
	`${HEADER}<message>&#xD800;</message>`,
	`${HEADER}<message>&#99999999999999999999;</message>`,
	`${HEADER}<message>&unknown;</message>`,
	`${HEADER}<message a='&lt'>x</message>`,
	`${HEADER}<message>${"&amp;".repeat(2000)}</message>`,
	`${HEADER}<message>&#x${"0".repeat(5000)}41;</message>`,
	`${HEADER}<message>${"&".repeat(3000)}</message>`,
	`${HEADER}<?xml-stylesheet href='x'?><message/>`,
	`${HEADER}<!-- ${"c".repeat(4000)} --><message/>`,
	`${HEADER}<message><![CDATA[${"]".repeat(3000)}]]></message>`,
];

function int(r: () => number, lo: number, hi: number): number {
	return lo + Math.floor(r() * (hi - lo + 1));
}

function pick<T>(r: () => number, list: readonly T[]): T {
	return list[Math.floor(r() * list.length)] as T;
}

/** Splits bytes into 1-6 writes at random places (the parser sees every kind of boundary). */
function chunked(r: () => number, bytes: Buffer): { write: Buffer }[] {
	const n = bytes.length < 2 ? 1 : int(r, 1, Math.min(6, bytes.length));
	const cuts = new Set<number>();
	while (cuts.size < n - 1) cuts.add(int(r, 1, bytes.length - 1));
	const at = [0, ...[...cuts].sort((a, b) => a - b), bytes.length];
	const out: { write: Buffer }[] = [];
	for (let i = 0; i + 1 < at.length; i++)
		out.push({ write: bytes.subarray(at[i] as number, at[i + 1] as number) });
	return out;
}

type Maker = (r: () => number) => Buffer;

const MAKERS: [kind: string, weight: number, make: Maker][] = [
	["garbage", 1, (r) => Buffer.from(Array.from({ length: int(r, 1, 4096) }, () => int(r, 0, 255)))],
	[
		"malformed",
		3,
		(r) => {
			let s = r() < 0.7 ? HEADER : "";
			for (let i = int(r, 1, 200); i > 0; i--) s += pick(r, TOKENS);
			return Buffer.from(s);
		},
	],
	[
		"bitflip",
		4,
		(r) => {
			const b = Buffer.from(validStream(r));
			for (let i = int(r, 1, 8); i > 0; i--) {
				const at = int(r, 0, b.length - 1);
				b[at] = (b[at] as number) ^ (1 << int(r, 0, 7));
			}
			return b;
		},
	],
	[
		"truncation",
		3,
		(r) => {
			const b = Buffer.from(validStream(r));
			return b.subarray(0, int(r, 1, b.length - 1));
		},
	],
	["deep", 1, (r) => Buffer.from(`${HEADER}<message>${"<a>".repeat(int(r, 50, 5000))}`)],
	[
		"attribute-storm",
		1,
		(r) => {
			const n = int(r, 50, 20_000);
			const dup = r() < 0.3;
			let attrs = "";
			for (let i = 0; i < n; i++) attrs += ` ${dup ? "a" : `a${i}`}='${i}'`;
			return Buffer.from(r() < 0.5 ? `<stream:stream${attrs}>` : `${HEADER}<message${attrs}/>`);
		},
	],
	[
		"huge-attribute",
		1,
		(r) => {
			const v = "x".repeat(int(r, 10_000, 2_000_000));
			return Buffer.from(r() < 0.5 ? `<stream:stream to='${v}'>` : `${HEADER}<message to='${v}'/>`);
		},
	],
	[
		"huge-text",
		1,
		(r) => Buffer.from(`${HEADER}<message><body>${"t".repeat(int(r, 5_000, 500_000))}`),
	],
	[
		"invalid-utf8",
		2,
		(r) => {
			const bad = Buffer.from(pick(r, BAD_UTF8));
			const where = int(r, 0, 2);
			if (where === 0) return Buffer.concat([bad, Buffer.from(HEADER)]);
			if (where === 1)
				return Buffer.concat([
					Buffer.from(`${HEADER}<message><body>`),
					bad,
					Buffer.from("</body></message>"),
				]);
			return Buffer.concat([Buffer.from(`${HEADER}<message to='`), bad, Buffer.from("'/>")]);
		},
	],
	["entities", 2, (r) => Buffer.from(pick(r, ENTITY_TRICKS))],
	[
		"flood",
		2,
		(r) => {
			const n = int(r, 20, 400);
			const unit = pick(r, [
				"<iq type='get' id='f'><query xmlns='jabber:iq:register'/></iq>",
				"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X'/>",
				`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${b64("\0alice\0wrong")}</auth>`,
				"<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
				" ",
				"<presence/>",
				HEADER,
			]);
			return Buffer.from(HEADER + unit.repeat(n));
		},
	],
];

const TOTAL_WEIGHT = MAKERS.reduce((s, [, w]) => s + w, 0);

/**
 * `count` hostile connections from `seed`. With `login` (an account's name and password),
 * some of them authenticate and bind first and send their junk after (post-auth cases).
 */
export function hostileCases(
	seed: number,
	count: number,
	login?: { user: string; password: string },
): HostileCase[] {
	const r = prng(seed);
	const out: HostileCase[] = [];
	for (let i = 0; i < count; i++) {
		let w = r() * TOTAL_WEIGHT;
		let chosen = MAKERS[0] as (typeof MAKERS)[number];
		for (const m of MAKERS) {
			w -= m[1];
			if (w < 0) {
				chosen = m;
				break;
			}
		}
		const [kind, , make] = chosen;
		const bytes = make(r);
		const endRoll = r();
		if (login && r() < 0.1) {
			// Junk after a real login and bind: per-session state (presence, liveness, the
			// session maps) must go with the connection too.
			const res = `fz${i}`;
			const junk = bytes.includes(Buffer.from(HEADER)) ? bytes.subarray(HEADER.length) : bytes;
			out.push({
				kind: `postauth-${kind}`,
				steps: [
					{ write: Buffer.from(HEADER) },
					{ wait: "</stream:features>" },
					{
						write: Buffer.from(
							`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${b64(`\0${login.user}\0${login.password}`)}</auth>`,
						),
					},
					{ wait: "<success" },
					{ write: Buffer.from(HEADER) },
					{ wait: "</stream:features>" },
					{
						write: Buffer.from(
							`<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${res}</resource></bind></iq><presence/>`,
						),
					},
					{ wait: "</iq>" },
					...chunked(r, junk),
				],
				end: endRoll < 0.5 ? "fin" : "rst",
			});
			continue;
		}
		out.push({
			kind,
			steps: chunked(r, bytes),
			end: endRoll < 0.15 ? "hang" : endRoll < 0.6 ? "fin" : "rst",
		});
	}
	return out;
}
