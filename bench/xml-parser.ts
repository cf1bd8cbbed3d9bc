/**
 * XML parser benchmark: Parley's hand-written StreamParser against npm parsers, on a realistic
 * XMPP client stream fed in TCP-sized chunks, plus a probe of what each one lets through.
 *
 *   npx node bench/xml-parser.ts [stanzas=20000] [chunk=1460]
 *
 * Every candidate decodes UTF-8 itself (streaming TextDecoder for the string-based ones) and
 * builds an element tree per stanza, so the figures compare like with like. Not a test: prints.
 */
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";
import { SaxesParser } from "saxes";
import { StreamParser } from "../src/xml/parser.ts";

const require = createRequire(import.meta.url);

/** The bits of sax (CommonJS, untyped) this bench uses. */
interface SaxParser {
	onopentag: (tag: { name: string; attributes: Record<string, unknown> }) => void;
	onclosetag: (name: string) => void;
	ontext: (t: string) => void;
	oncdata: (t: string) => void;
	onerror: (e: Error) => void;
	write(s: string): void;
	close(): void;
}
const sax = require("sax") as { parser(strict: boolean, opts: object): SaxParser };

interface EventSource {
	on(event: string, fn: (...args: never[]) => void): void;
	write(data: string): void;
}
type EventSourceClass = new () => EventSource;
// Untyped ESM modules: imported through a string so TypeScript does not look for declarations.
const modules: string[] = ["ltx/lib/parsers/ltx.js", "@xmpp/xml/lib/Parser.js"];
const LtxSax = ((await import(modules[0] as string)) as { default: EventSourceClass }).default;
const XmppParser = ((await import(modules[1] as string)) as { default: EventSourceClass }).default;

const STANZAS = Number(process.argv[2] ?? 20_000);
const CHUNK = Number(process.argv[3] ?? 1460);

const HEADER =
	"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='capulet.lit' version='1.0' xml:lang='en'>";

/** Deterministic corpus: mostly chat messages, some with extensions, escapes, non-ASCII; presences. */
function corpus(n: number): Buffer {
	let seed = 42;
	const rnd = (k: number) => {
		seed = (seed * 1103515245 + 12345) & 0x7fffffff;
		return seed % k;
	};
	const words = [
		"wherefore",
		"art",
		"thou",
		"romeo",
		"deny",
		"thy",
		"father",
		"and",
		"refuse",
		"name",
	];
	const sentence = (len: number) => {
		let s = "";
		while (s.length < len) s += `${words[rnd(words.length)]} `;
		return s.trim();
	};
	const parts: string[] = [HEADER];
	for (let i = 0; i < n; i++) {
		const id = `m${i}-${rnd(1e9).toString(36)}`;
		const kind = rnd(10);
		const attrs = `from='romeo@montague.lit/orchard' to='juliet@capulet.lit/balcony' type='chat' id='${id}'`;
		if (kind < 6) {
			parts.push(`<message ${attrs}><body>${sentence(100 + rnd(150))}</body></message>`);
		} else if (kind < 8) {
			parts.push(
				`<message ${attrs}><body>${sentence(80 + rnd(100))}</body><active xmlns='http://jabber.org/protocol/chatstates'/><request xmlns='urn:xmpp:receipts'/></message>`,
			);
		} else if (kind < 9) {
			parts.push(
				`<message ${attrs} xml:lang='fr'><body>${sentence(60)} &lt;3 &amp; &quot;adieu&quot; — café 😀 ${sentence(60)}</body></message>`,
			);
		} else {
			parts.push(
				`<presence from='romeo@montague.lit/orchard' id='${id}'><show>away</show><status>${sentence(40)}</status><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://parley.example' ver='QgayPKawpkPSDYmwT/WM94uAlu0='/></presence>`,
			);
		}
		if (rnd(20) === 0) parts.push("\n");
	}
	parts.push("</stream:stream>");
	return Buffer.from(parts.join(""));
}

interface Candidate {
	name: string;
	/** A fresh parser: returns a feed function and a stanza counter. */
	make(): { write(chunk: Buffer): void; stanzas(): number };
}

/** A plain tree node for the event-based parsers, comparable to Element. */
interface Node {
	name: string;
	attrs: Record<string, unknown>;
	children: (Node | string)[];
}

/** Builds depth-1 trees from start/text/end events (stream root at depth 0). */
function treeBuilder() {
	const stack: Node[] = [];
	let count = 0;
	return {
		open(name: string, attrs: Record<string, unknown>) {
			const n: Node = { name, attrs, children: [] };
			stack[stack.length - 1]?.children.push(n);
			stack.push(n);
		},
		text(t: string) {
			if (stack.length > 1) stack[stack.length - 1]?.children.push(t);
		},
		close() {
			stack.pop();
			if (stack.length === 1) count++;
		},
		count: () => count,
	};
}

const candidates: Candidate[] = [
	{
		name: "parley StreamParser",
		make() {
			let count = 0;
			const p = new StreamParser(
				{
					streamStart() {},
					stanza() {
						count++;
					},
					streamEnd() {},
					error(c, t) {
						throw new Error(`${c}: ${t}`);
					},
				},
				{ maxStanzaBytes: 1 << 20, maxDepth: 32 },
			);
			return { write: (b) => p.write(b), stanzas: () => count };
		},
	},
	{
		name: "saxes (xmlns)",
		make() {
			const t = treeBuilder();
			const dec = new TextDecoder("utf-8", { fatal: true });
			const p = new SaxesParser({ xmlns: true });
			p.on("opentag", (tag) => t.open(tag.local, tag.attributes));
			p.on("text", (s) => t.text(s));
			p.on("cdata", (s) => t.text(s));
			p.on("closetag", () => t.close());
			p.on("error", (e) => {
				throw e;
			});
			return { write: (b) => p.write(dec.decode(b, { stream: true })), stanzas: t.count };
		},
	},
	{
		name: "sax (strict, xmlns)",
		make() {
			const t = treeBuilder();
			const dec = new TextDecoder("utf-8", { fatal: true });
			const p = sax.parser(true, { xmlns: true });
			p.onopentag = (tag) => t.open(tag.name, tag.attributes);
			p.ontext = (s) => t.text(s);
			p.oncdata = (s) => t.text(s);
			p.onclosetag = () => t.close();
			p.onerror = (e) => {
				throw e;
			};
			return { write: (b) => p.write(dec.decode(b, { stream: true })), stanzas: t.count };
		},
	},
	{
		name: "ltx SaxLtx (no ns)",
		make() {
			const t = treeBuilder();
			const dec = new TextDecoder("utf-8", { fatal: true });
			const p = new LtxSax();
			p.on("startElement", (name: string, attrs: Record<string, unknown>) => t.open(name, attrs));
			p.on("text", (s: string) => t.text(s));
			p.on("endElement", () => t.close());
			return { write: (b) => p.write(dec.decode(b, { stream: true })), stanzas: t.count };
		},
	},
	{
		name: "@xmpp/xml Parser (ltx)",
		make() {
			let count = 0;
			const dec = new TextDecoder("utf-8", { fatal: true });
			const p = new XmppParser();
			p.on("element", () => {
				count++;
			});
			p.on("error", (e: Error) => {
				throw e;
			});
			return { write: (b) => p.write(dec.decode(b, { stream: true })), stanzas: () => count };
		},
	},
];

function chunks(data: Buffer, size: number): Buffer[] {
	const out: Buffer[] = [];
	for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
	return out;
}

function bench(
	c: Candidate,
	input: Buffer[],
	expected: number,
): { mbs: number; nsPerStanza: number } {
	const times: number[] = [];
	for (let run = 0; run < 15; run++) {
		const p = c.make();
		const t0 = performance.now();
		for (const b of input) p.write(b);
		const dt = performance.now() - t0;
		if (p.stanzas() !== expected)
			throw new Error(`${c.name}: ${p.stanzas()} stanzas, expected ${expected}`);
		if (run >= 3) times.push(dt); // the first runs warm up the JIT
	}
	// Best of the timed runs: on a shared machine noise only ever adds time.
	const ms = Math.min(...times);
	const bytes = input.reduce((n, b) => n + b.length, 0);
	return { mbs: bytes / 1e6 / (ms / 1e3), nsPerStanza: (ms * 1e6) / expected };
}

// ---- safety probes: what does each parser do with input RFC 6120 §11.1 forbids? ----

const PROBES: [string, string][] = [
	[
		"billion laughs (DTD entities)",
		`<!DOCTYPE s [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><s><m>&b;</m></s>`,
	],
	["comment", "<s><m><!-- hi --></m></s>"],
	["processing instruction", "<s><m><?pi x?></m></s>"],
	["undefined entity", "<s><m>&foo;</m></s>"],
	["char ref &#0;", "<s><m>&#0;</m></s>"],
	["raw U+0001", "<s><m>\u0001</m></s>"],
	["undeclared prefix", "<s><p:m/></s>"],
	["duplicate attribute", "<s><m a='1' a='2'/></s>"],
];

function probe(c: Candidate, xml: string): string {
	// A stream whose stanza text may show whether entities were expanded.
	const header =
		"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
	const doc = xml.startsWith("<!DOCTYPE")
		? xml
		: xml.replace("<s>", header).replace("</s>", "</stream:stream>");
	try {
		const p = c.make();
		p.write(Buffer.from(doc));
		return p.stanzas() > 0 ? "accepted" : "no error, no stanza";
	} catch {
		return "rejected";
	}
}

/** Feeds an endless attribute value; reports whether the parser ever refuses it. */
function unbounded(c: Candidate): string {
	const p = c.make();
	const header =
		"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><message id='";
	const junk = Buffer.alloc(64 * 1024, 0x61);
	const before = process.memoryUsage().heapUsed;
	try {
		p.write(Buffer.from(header));
		for (let i = 0; i < 160; i++) p.write(junk); // 10 MiB
	} catch {
		return "refused";
	}
	const grown = (process.memoryUsage().heapUsed - before) / 2 ** 20;
	return `buffers (+${grown.toFixed(0)} MiB heap)`;
}

const data = corpus(STANZAS);
const input = chunks(data, CHUNK);
console.log(
	`corpus: ${STANZAS} stanzas, ${(data.length / 1e6).toFixed(2)} MB, ${(data.length / STANZAS).toFixed(0)} B/stanza avg, chunks of ${CHUNK} B; node ${process.version}`,
);
console.log();
console.log("| parser | MB/s | ns/stanza |");
console.log("|---|---:|---:|");
for (const c of candidates) {
	const r = bench(c, input, STANZAS);
	console.log(`| ${c.name} | ${r.mbs.toFixed(1)} | ${r.nsPerStanza.toFixed(0)} |`);
}
console.log();
console.log(`| probe | ${candidates.map((c) => c.name).join(" | ")} |`);
console.log(`|---|${candidates.map(() => "---").join("|")}|`);
for (const [label, xml] of PROBES) {
	console.log(`| ${label} | ${candidates.map((c) => probe(c, xml)).join(" | ")} |`);
}
console.log(
	`| 10 MiB unterminated attribute (parley: maxStanzaBytes 1 MiB) | ${candidates.map(unbounded).join(" | ")} |`,
);
