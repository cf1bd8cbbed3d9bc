import assert from "node:assert/strict";
import { test } from "node:test";
import type { Element } from "./element.ts";
import { XmlError, type XmlErrorCondition } from "./errors.ts";
import { type ParserLimits, parseDocument, type StreamHandler, StreamParser } from "./parser.ts";

const LIMITS: ParserLimits = { maxStanzaBytes: 10_000, maxDepth: 10 };
const NS_STREAM = "http://etherx.jabber.org/streams";
const HEADER = `<stream:stream xmlns='jabber:client' xmlns:stream='${NS_STREAM}' to='localhost' version='1.0'>`;

interface Recorder extends StreamHandler {
	events: string[];
	stanzas: Element[];
	errors: number;
}

function recorder(): Recorder {
	const r: Recorder = {
		events: [],
		stanzas: [],
		errors: 0,
		streamStart(name, ns, attrs, defaultNs) {
			r.events.push(`start ${name} ${ns} ${JSON.stringify(attrs)} ${defaultNs}`);
		},
		stanza(el) {
			r.stanzas.push(el);
			r.events.push(`stanza ${el.ns} ${el.toString(el.ns)}`);
		},
		streamEnd() {
			r.events.push("end");
		},
		error(condition) {
			r.errors++;
			r.events.push(`error ${condition}`);
		},
	};
	return r;
}

function parse(
	input: string | Buffer | (string | Buffer)[],
	limits: ParserLimits = LIMITS,
): Recorder {
	const r = recorder();
	const p = new StreamParser(r, limits);
	for (const c of Array.isArray(input) ? input : [input])
		p.write(typeof c === "string" ? Buffer.from(c) : c);
	return r;
}

function errorOf(
	input: string | Buffer,
	limits: ParserLimits = LIMITS,
): XmlErrorCondition | undefined {
	const e = parse(input, limits).events.find((x) => x.startsWith("error "));
	return e?.slice(6) as XmlErrorCondition | undefined;
}

/** Split at every byte offset (and byte by byte): the events must not depend on chunking. */
function assertSplitInvariant(input: string, limits: ParserLimits = LIMITS): string[] {
	const bytes = Buffer.from(input);
	const whole = parse(bytes, limits).events;
	for (let k = 1; k < bytes.length; k++) {
		const r = parse([bytes.subarray(0, k), bytes.subarray(k)], limits);
		assert.deepEqual(r.events, whole, `split at byte ${k}`);
	}
	const bytewise: Buffer[] = [];
	for (let k = 0; k < bytes.length; k++) bytewise.push(bytes.subarray(k, k + 1));
	assert.deepEqual(parse(bytewise, limits).events, whole, "byte by byte");
	return whole;
}

// ---- the stream (RFC 6120 §4) ----

test("stream header, stanzas and end are reported with resolved namespaces (RFC 6120 §4.2, §4.7)", () => {
	const r = parse(
		`${HEADER}<message to='a@b' type='chat'><body>hi</body></message><stream:features/></stream:stream>`,
	);
	assert.deepEqual(r.events, [
		`start stream ${NS_STREAM} {"xmlns:stream":"${NS_STREAM}","to":"localhost","version":"1.0"} jabber:client`,
		'stanza jabber:client <message to="a@b" type="chat"><body>hi</body></message>',
		`stanza ${NS_STREAM} <features/>`,
		"end",
	]);
	const msg = r.stanzas[0] as Element;
	assert.equal(msg.name, "message");
	assert.equal(msg.getChild("body")?.ns, "jabber:client");
	assert.equal(msg.attrs.xmlns, undefined);
});

test("prefixed elements and attributes resolve; xmlns:prefix and xml:lang are kept (RFC 6120 §11.2)", () => {
	const r = parse(
		`${HEADER}<iq type='get' xml:lang='de'><q:query xmlns:q='urn:q' q:node='n'><item xmlns=''/></q:query></iq>`,
	);
	const iq = r.stanzas[0] as Element;
	assert.equal(iq.attrs["xml:lang"], "de");
	const q = iq.getChild("query") as Element;
	assert.equal(q.ns, "urn:q");
	assert.equal(q.attrs["xmlns:q"], "urn:q");
	assert.equal(q.attrs["q:node"], "n");
	// xmlns="" undeclares the default namespace: "no namespace" is "", null would mean "inherit".
	assert.equal(q.getChild("item")?.ns, "");
});

test("text is unescaped; text and CDATA merge; line ends are normalised (XML 1.0 §2.4, §2.7, §2.11)", () => {
	const r = parse(
		`${HEADER}<message><body>a &lt;&gt;&amp;&quot;&apos; &#233;&#x1F600;<![CDATA[<b>&amp;]]>z\r\ny\rx</body></message>`,
	);
	const body = (r.stanzas[0] as Element).getChild("body") as Element;
	assert.deepEqual(body.children, ["a <>&\"' é😀<b>&amp;z\ny\nx"]);
});

test("attribute values are unescaped and whitespace-normalised (XML 1.0 §3.3.3)", () => {
	const r = parse(`${HEADER}<message id="a&amp;b&#10;c\td\r\ne" to='x"y'/>`);
	const m = r.stanzas[0] as Element;
	assert.equal(m.attrs.id, "a&b\nc d e");
	assert.equal(m.attrs.to, 'x"y');
});

test("whitespace between stanzas is ignored (RFC 6120 §4.6.1 keepalives)", () => {
	const r = parse(`${HEADER} \n\t\r <presence/>  \n </stream:stream>`);
	assert.deepEqual(r.events.slice(1), ["stanza jabber:client <presence/>", "end"]);
});

test("non-whitespace text between stanzas is not-well-formed (RFC 6120 §11.7)", () => {
	assert.equal(errorOf(`${HEADER}hello<presence/>`), "not-well-formed");
	assert.equal(errorOf(`${HEADER}&#32;<presence/>`), "not-well-formed");
	assert.equal(errorOf(`${HEADER}<![CDATA[ ]]>`), "not-well-formed");
});

test("a stanza with no namespace at all is invalid-namespace (RFC 6120 §4.9.3.10)", () => {
	assert.equal(
		errorOf(`<stream:stream xmlns:stream='${NS_STREAM}'><message/>`),
		"invalid-namespace",
	);
});

test("the streamStart defaultNs is null when the header declares no default namespace (RFC 6120 §4.8.2)", () => {
	const r = parse(`<stream:stream xmlns:stream='${NS_STREAM}'>`);
	assert.deepEqual(r.events, [`start stream ${NS_STREAM} {"xmlns:stream":"${NS_STREAM}"} null`]);
});

test("a self-closing stream root starts and ends the stream", () => {
	assert.deepEqual(
		parse(`<stream:stream xmlns:stream='${NS_STREAM}' xmlns='jabber:client'/>`).events.slice(1),
		["end"],
	);
});

test("data after the closing stream tag is not-well-formed (XML 1.0 §2.1)", () => {
	assert.equal(errorOf(`${HEADER}</stream:stream><message/>`), "not-well-formed");
});

// ---- streaming (RFC 6120 §11.6 UTF-8) ----

test("splitting at every byte offset gives the same result (multi-byte UTF-8, entities, tags)", () => {
	const ok = assertSplitInvariant(
		`<?xml version='1.0' encoding='UTF-8'?>${HEADER}\n<message to='jülia@example.com' id="a&amp;b" xml:lang='en'><body>Grüße &lt;3 😀 &#x1F600;&#233; <![CDATA[x]]y]]>\r\n</body><x:ext xmlns:x='urn:x' x:a='v'/></message> \n<presence/></stream:stream>`,
	);
	assert.equal(ok.length, 4);
	assert.ok(ok[1]?.includes("Grüße &lt;3 😀 😀é x]]y\n"), ok[1]);
	for (const bad of [
		`${HEADER}<message><body>&foo;</body></message>`,
		`${HEADER}<message><body>]]></body></message>`,
		`${HEADER}<message a='1' a='2'/>`,
		`${HEADER}<message><!-- c --></message>`,
		`${HEADER}<message><body>a\u0001</body></message>`,
		`${HEADER}<message><body>&#0;</body></message>`,
	]) {
		const events = assertSplitInvariant(bad);
		assert.ok(events.at(-1)?.startsWith("error "), bad);
	}
});

test("invalid UTF-8 is unsupported-encoding (RFC 6120 §11.6)", () => {
	const head = Buffer.from(`${HEADER}<message><body>`);
	assert.equal(errorOf(Buffer.concat([head, Buffer.from([0xc3, 0x28])])), "unsupported-encoding");
	assert.equal(errorOf(Buffer.concat([head, Buffer.from([0xff])])), "unsupported-encoding");
	// Encoded surrogate and overlong form.
	assert.equal(
		errorOf(Buffer.concat([head, Buffer.from([0xed, 0xa0, 0x80])])),
		"unsupported-encoding",
	);
	assert.equal(errorOf(Buffer.concat([head, Buffer.from([0xc0, 0xbc])])), "unsupported-encoding");
	// Split mid-sequence: the first half alone is fine, the second half makes it invalid.
	const r = parse([Buffer.concat([head, Buffer.from([0xe2, 0x82])]), Buffer.from([0x41])]);
	assert.equal(r.events.at(-1), "error unsupported-encoding");
	// A stanza complete before the bad byte is still delivered, however the input is split.
	const full = Buffer.concat([Buffer.from(`${HEADER}<presence/>`), Buffer.from([0xfe])]);
	assert.deepEqual(parse(full).events.slice(1), [
		"stanza jabber:client <presence/>",
		"error unsupported-encoding",
	]);
});

test("an XML declaration naming another encoding is unsupported-encoding (RFC 6120 §11.6)", () => {
	assert.equal(
		errorOf(`<?xml version='1.0' encoding='ISO-8859-1'?>${HEADER}`),
		"unsupported-encoding",
	);
	assert.equal(parse(`<?xml version="1.0" encoding="utf-8"?>${HEADER}`).errors, 0);
});

test("string chunks are accepted and lone surrogates are not-well-formed (XML 1.0 §2.2)", () => {
	const r = recorder();
	const p = new StreamParser(r, LIMITS);
	p.write(`${HEADER}<message><body>\uD83D`);
	p.write("\uDE00</body></message>");
	assert.equal((r.stanzas[0] as Element).getChildText("body"), "😀");
	p.write("<message><body>\uDE00</body></message>");
	assert.equal(r.events.at(-1), "error not-well-formed");
});

test("a UTF-8 byte order mark is skipped at the start of the document", () => {
	assert.equal(parse(`\uFEFF<?xml version='1.0'?>${HEADER}`).errors, 0);
	assert.equal(errorOf(`${HEADER}\uFEFF`), "not-well-formed");
});

// ---- restricted XML (RFC 6120 §11.1) ----

test("XML declaration accepted only at the start (RFC 6120 §11.5)", () => {
	assert.equal(parse(`<?xml version='1.0'?>\n${HEADER}`).errors, 0);
	assert.equal(errorOf(` <?xml version='1.0'?>${HEADER}`), "restricted-xml");
	assert.equal(errorOf(`${HEADER}<?xml version='1.0'?>`), "restricted-xml");
	assert.equal(errorOf(`<?xml version='1.0'?><?xml version='1.0'?>${HEADER}`), "restricted-xml");
	assert.equal(errorOf(`<?xml encoding='UTF-8'?>${HEADER}`), "not-well-formed");
});

test("processing instructions are restricted-xml (RFC 6120 §11.1)", () => {
	assert.equal(errorOf(`<?xml-stylesheet href='a'?>${HEADER}`), "restricted-xml");
	assert.equal(errorOf(`${HEADER}<?foo bar?>`), "restricted-xml");
	assert.equal(errorOf(`${HEADER}<message><?foo?></message>`), "restricted-xml");
});

test("comments are restricted-xml (RFC 6120 §11.1)", () => {
	assert.equal(errorOf(`<!-- hi -->${HEADER}`), "restricted-xml");
	assert.equal(errorOf(`${HEADER}<!-- hi -->`), "restricted-xml");
	assert.equal(errorOf(`${HEADER}<message><body><!-- hi --></body></message>`), "restricted-xml");
});

test("DOCTYPE, internal and external subsets, and entity declarations are restricted-xml (RFC 6120 §11.1)", () => {
	const laughs = `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>${HEADER}<message><body>&lol3;</body></message>`;
	assert.equal(errorOf(laughs), "restricted-xml");
	assert.equal(errorOf(`<!DOCTYPE stream SYSTEM "http://evil/x.dtd">${HEADER}`), "restricted-xml");
	assert.equal(errorOf(`${HEADER}<!ENTITY x "y">`), "restricted-xml");
	assert.equal(errorOf(`${HEADER}<message><!DOCTYPE x></message>`), "restricted-xml");
});

test("undefined entities are restricted-xml, in text and attributes (RFC 6120 §11.1)", () => {
	assert.equal(errorOf(`${HEADER}<message><body>&lol;</body></message>`), "restricted-xml");
	assert.equal(errorOf(`${HEADER}<message id='&xxe;'/>`), "restricted-xml");
	assert.equal(
		errorOf(`${HEADER}<message><body>&${"a".repeat(100)};</body></message>`),
		"restricted-xml",
	);
});

test("character references must produce XML Chars (XML 1.0 §4.1 Legal Character, §2.2)", () => {
	for (const ref of [
		"&#0;",
		"&#x0;",
		"&#xD800;",
		"&#xDFFF;",
		"&#xFFFE;",
		"&#x110000;",
		"&#1;",
		"&#x1B;",
	]) {
		assert.equal(
			errorOf(`${HEADER}<message><body>${ref}</body></message>`),
			"not-well-formed",
			ref,
		);
		assert.equal(errorOf(`${HEADER}<message id='${ref}'/>`), "not-well-formed", ref);
	}
	for (const ref of ["&#;", "&#x;", "&#xZZ;", "&#12a;", "& x;", "&;", "&amp"]) {
		assert.equal(
			errorOf(`${HEADER}<message><body>${ref}</body></message>`),
			"not-well-formed",
			ref,
		);
	}
	const ok = parse(
		`${HEADER}<message><body>&#9;&#10;&#13;&#x10FFFF;&#xE000;&#0065;</body></message>`,
	);
	assert.equal((ok.stanzas[0] as Element).getChildText("body"), "\t\n\r\u{10FFFF}\uE000A");
});

test("raw characters that are not XML Chars are not-well-formed (XML 1.0 §2.2)", () => {
	for (const ch of ["\u0000", "\u0001", "\u001F", "\uFFFE", "\uFFFF"]) {
		assert.equal(errorOf(`${HEADER}<message><body>${ch}</body></message>`), "not-well-formed");
	}
	assert.equal(errorOf(`${HEADER}<message id='\u0000'/>`), "not-well-formed");
});

// ---- well-formedness (XML 1.0 §2.1, Namespaces in XML 1.0) ----

test("malformed input is not-well-formed (RFC 6120 §11.4 / XML 1.0 §2.1)", () => {
	const cases = [
		`${HEADER}<message></presence>`,
		`${HEADER}<message><body></message></body>`,
		`${HEADER}<message id='<'/>`,
		`${HEADER}<message id='1' id='2'/>`,
		`${HEADER}<message id=1/>`,
		`${HEADER}<message id/>`,
		`${HEADER}<message id='1'to='2'/>`,
		`${HEADER}<message / >`,
		`${HEADER}<1message/>`,
		`${HEADER}<:message/>`,
		`${HEADER}<a:b:c xmlns:a='x'/>`,
		`${HEADER}< message/>`,
		`${HEADER}</ stream:stream>`,
		`${HEADER}<message><body>a]]>b</body></message>`,
		`garbage${HEADER}`,
		`</stream:stream>`,
		`${HEADER}<message><![CDATX[a]]></message>`,
	];
	for (const c of cases) assert.equal(errorOf(c), "not-well-formed", c);
});

test("namespace well-formedness: undeclared prefixes and reserved names (RFC 6120 §11.2, Namespaces in XML 1.0 §3)", () => {
	const cases = [
		`${HEADER}<foo:message/>`,
		`${HEADER}<message foo:id='1'/>`,
		`<stream:stream xmlns='jabber:client'>`,
		`${HEADER}<message xmlns:a='urn:x' xmlns:b='urn:x' a:id='1' b:id='2'/>`,
		`${HEADER}<message xmlns:p=''/>`,
		`${HEADER}<message xmlns:xmlns='urn:x'/>`,
		`${HEADER}<message xmlns:xml='urn:x'/>`,
		`${HEADER}<message xmlns:p='http://www.w3.org/XML/1998/namespace'/>`,
		`${HEADER}<xmlns:message/>`,
		`${HEADER}<message xmlns='a' xmlns='b'/>`,
	];
	for (const c of cases) assert.equal(errorOf(c), "not-well-formed", c);
	// A prefix may be declared after its use in the same tag.
	assert.equal(parse(`${HEADER}<message p:id='1' xmlns:p='urn:p'/>`).errors, 0);
});

test("Namespaces in XML 1.0 §3: xmlns:xml may be declared, to its own namespace (Psi's stream header)", () => {
	const NS_XML = "http://www.w3.org/XML/1998/namespace";
	// Iris (Psi 1.5) declares it on the stream header; it threw from the frozen root scope.
	const header = `<stream:stream xmlns='jabber:client' xmlns:stream='${NS_STREAM}' xmlns:xml='${NS_XML}' xml:lang='en' to='localhost' version='1.0'>`;
	const r = parse(
		`${header}<message xmlns:xml='${NS_XML}' xml:lang='de'><body>hi</body></message>`,
	);
	assert.equal(r.errors, 0, r.events.join("\n"));
	assert.equal(r.stanzas.length, 1);
	assert.equal((r.stanzas[0] as Element).attr("xml:lang"), "de");
	const events = assertSplitInvariant(`${header}<presence/>`);
	assert.ok(!events.some((e) => e.startsWith("error")), events.join("\n"));
});

test("__proto__ and constructor attributes are plain data (no prototype pollution)", () => {
	const r = parse(`${HEADER}<message __proto__='x' constructor='y' toString='z'/><presence/>`);
	const m = r.stanzas[0] as Element;
	const p = r.stanzas[1] as Element;
	assert.equal(m.attr("__proto__"), "x");
	assert.equal(Object.getPrototypeOf(m.attrs), Object.getPrototypeOf(p.attrs));
	assert.equal(m.attr("constructor"), "y");
	assert.equal(m.attr("toString"), "z");
	assert.deepEqual(Object.keys(m.attrs), ["__proto__", "constructor", "toString"]);
	assert.equal(p.attr("constructor"), undefined);
	assert.equal(p.attr("hasOwnProperty"), undefined);
	assert.equal(({} as Record<string, unknown>).x, undefined);
});

// ---- limits (RFC 6120 §4.9.3.14 policy-violation, XEP-0478) ----

test("maxStanzaBytes counts UTF-8 bytes from '<' to the end of the closing tag (RFC 6120 §4.9.3.14)", () => {
	const stanza = "<message><body>é</body></message>"; // 34 bytes, 33 characters
	assert.equal(Buffer.byteLength(stanza), 34);
	const at = { maxStanzaBytes: 34, maxDepth: 5 };
	const below = { maxStanzaBytes: 33, maxDepth: 5 };
	assert.equal(parse(`${"<a:s xmlns:a='x' xmlns='y'>"}${stanza}`, at).errors, 0);
	assertSplitInvariant(`<a:s xmlns:a='x' xmlns='y'>${stanza}${stanza}`, at);
	assert.equal(errorOf(`<a:s xmlns:a='x' xmlns='y'>${stanza}`, below), "policy-violation");
	const events = assertSplitInvariant(`<a:s xmlns:a='x' xmlns='y'><presence/>${stanza}`, below);
	assert.deepEqual(events.slice(1), ["stanza y <presence/>", "error policy-violation"]);
});

test("the stream header and anything before it are bounded by maxStanzaBytes", () => {
	const limits = { maxStanzaBytes: 200, maxDepth: 5 };
	assert.equal(parse(HEADER, limits).errors, 0);
	assert.equal(
		errorOf(`<stream:stream xmlns:stream='${NS_STREAM}' a='${"x".repeat(300)}'>`, limits),
		"policy-violation",
	);
	// Unbounded whitespace before the header is refused, chunk by chunk.
	const r = recorder();
	const p = new StreamParser(r, limits);
	for (let i = 0; i < 10 && !p.failed; i++) p.write(Buffer.from(" ".repeat(100)));
	assert.deepEqual(r.events, ["error policy-violation"]);
});

test("an oversized stanza is refused before it is complete: memory stays bounded (RFC 6120 §4.9.3.14)", () => {
	const r = recorder();
	const p = new StreamParser(r, { maxStanzaBytes: 4096, maxDepth: 5 });
	p.write(Buffer.from(`${HEADER}<message id='`));
	let sent = 0;
	while (!p.failed && sent < 1_000_000) {
		p.write(Buffer.from("a".repeat(1000)));
		sent += 1000;
	}
	assert.ok(sent <= 5000, `refused after ${sent} bytes`);
	assert.deepEqual(r.events.slice(1), ["error policy-violation"]);
	// Same for text content and for an endless CDATA section.
	assert.equal(
		errorOf([`${HEADER}<message><body>`, "a".repeat(5000)].join(""), {
			maxStanzaBytes: 4096,
			maxDepth: 5,
		}),
		"policy-violation",
	);
	const r2 = recorder();
	const p2 = new StreamParser(r2, { maxStanzaBytes: 4096, maxDepth: 5 });
	p2.write(`${HEADER}<message><![CDATA[`);
	for (let i = 0; i < 10; i++) p2.write("x".repeat(1000));
	assert.equal(r2.events.at(-1), "error policy-violation");
});

test("maxDepth bounds nesting within a stanza; the stanza is depth 1 (RFC 6120 §4.9.3.14)", () => {
	const limits = { maxStanzaBytes: 10_000, maxDepth: 3 };
	assert.equal(parse(`${HEADER}<message><a><b/></a></message>`, limits).errors, 0);
	assert.equal(
		errorOf(`${HEADER}<message><a><b><c/></b></a></message>`, limits),
		"policy-violation",
	);
	assert.equal(errorOf(`${HEADER}${"<a>".repeat(100_000)}`, limits), "policy-violation");
});

test("maxAttributes bounds attributes per element, 100 by default", () => {
	const attrs = (n: number) => Array.from({ length: n }, (_, i) => ` a${i}='v'`).join("");
	assert.equal(parse(`${HEADER}<message${attrs(100)}/>`).errors, 0);
	assert.equal(errorOf(`${HEADER}<message${attrs(101)}/>`), "policy-violation");
	assert.equal(
		errorOf(`${HEADER}<message${attrs(3)}/>`, { ...LIMITS, maxAttributes: 2 }),
		"policy-violation",
	);
});

test("setLimits() from inside a handler applies to the following stanzas (XEP-0478: raised after auth)", () => {
	const big = `<message><body>${"x".repeat(300)}</body></message>`;
	const r = recorder();
	let p: StreamParser | undefined;
	const handler: StreamHandler = {
		...r,
		stanza(el) {
			r.stanza(el);
			if (el.name === "auth") p?.setLimits({ maxStanzaBytes: 10_000, maxDepth: 10 });
		},
	};
	p = new StreamParser(handler, { maxStanzaBytes: 200, maxDepth: 10 });
	p.write(Buffer.from(`${HEADER}<auth/>${big}`));
	assert.equal(r.errors, 0);
	assert.equal(r.stanzas.length, 2);
	p.setLimits({ maxStanzaBytes: 200, maxDepth: 10 });
	p.write(Buffer.from(big));
	assert.equal(r.events.at(-1), "error policy-violation");
});

// ---- errors, reset, re-entrancy ----

test("an error is reported exactly once and later writes are ignored", () => {
	const r = recorder();
	const p = new StreamParser(r, LIMITS);
	p.write(Buffer.from(`${HEADER}<message><!-- x --><!-- y --></message>`));
	p.write(Buffer.from("<presence/><!-- z -->"));
	p.write("&undefined;");
	assert.equal(r.errors, 1);
	assert.equal(p.failed, true);
	assert.equal(r.stanzas.length, 0);
});

test("reset() restarts the stream: a new document, XML declaration allowed again (RFC 6120 §4.3.3)", () => {
	const r = recorder();
	const p = new StreamParser(r, LIMITS);
	p.write(Buffer.from(`${HEADER}<message/>`));
	p.reset();
	p.write(Buffer.from(`<?xml version='1.0'?>${HEADER}<presence/>`));
	assert.equal(r.errors, 0);
	assert.equal(r.events.filter((e) => e.startsWith("start")).length, 2);
	assert.equal(r.stanzas.length, 2);
	// reset() also clears a failure.
	p.write("<!-- x -->");
	assert.equal(p.failed, true);
	p.reset();
	assert.equal(p.failed, false);
	p.write(HEADER);
	assert.equal(r.events.at(-1)?.startsWith("start"), true);
});

test("reset() inside stanza() drops the rest of the chunk (STARTTLS, RFC 6120 §5.4.3.3)", () => {
	const r = recorder();
	const p = new StreamParser(
		{
			...r,
			stanza(el) {
				r.stanza(el);
				if (el.name === "starttls") p.reset();
			},
		},
		LIMITS,
	);
	p.write(
		Buffer.from(
			`${HEADER}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message/>garbage after`,
		),
	);
	assert.deepEqual(
		r.stanzas.map((s) => s.name),
		["starttls"],
	);
	assert.equal(p.failed, false);
	p.write(Buffer.from(`<?xml version='1.0'?>${HEADER}<message/>`));
	assert.deepEqual(
		r.stanzas.map((s) => s.name),
		["starttls", "message"],
	);
	assert.equal(r.errors, 0);
});

test("a throwing handler does not corrupt the parser; the rest of the chunk is parsed on the next write", () => {
	const r = recorder();
	let thrown = false;
	const p = new StreamParser(
		{
			...r,
			stanza(el) {
				if (!thrown) {
					thrown = true;
					throw new Error("boom");
				}
				r.stanza(el);
			},
		},
		LIMITS,
	);
	assert.throws(
		() => p.write(Buffer.from(`${HEADER}<message id='1'/><message id='2'/><mess`)),
		/boom/,
	);
	p.write(Buffer.from("age id='3'/>"));
	assert.deepEqual(
		r.stanzas.map((s) => s.attr("id")),
		["2", "3"],
	);
	assert.equal(r.errors, 0);
});

test("write() from inside a handler is queued after the current chunk", () => {
	const r = recorder();
	const p = new StreamParser(
		{
			...r,
			stanza(el) {
				r.stanza(el);
				if (el.attr("id") === "1") p.write("<message id='3'/>");
			},
		},
		LIMITS,
	);
	p.write(`${HEADER}<message id='1'/><message id='2'/>`);
	assert.deepEqual(
		r.stanzas.map((s) => s.attr("id")),
		["1", "2", "3"],
	);
});

// ---- parseDocument (RFC 7395 WebSocket, XEP-0124 BOSH) ----

test("parseDocument parses one standalone document (RFC 7395 §3.3.1)", () => {
	const open = parseDocument(
		`<?xml version='1.0'?><open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="example.com" version="1.0"/>`,
		LIMITS,
	);
	assert.equal(open.name, "open");
	assert.equal(open.ns, "urn:ietf:params:xml:ns:xmpp-framing");
	assert.equal(open.attr("to"), "example.com");
	const body = parseDocument(
		Buffer.from(
			"<body xmlns='http://jabber.org/protocol/httpbind' rid='1'><message xmlns='jabber:client'><body>é</body></message></body>\n",
		),
		LIMITS,
	);
	assert.equal(body.getChild("message", "jabber:client")?.getChildText("body"), "é");
});

test("parseDocument enforces the same restricted-XML rules and limits (RFC 6120 §11.1, §4.9.3.14)", () => {
	const cases: [string, XmlErrorCondition][] = [
		["<message xmlns='jabber:client'><!-- c --></message>", "restricted-xml"],
		[
			"<!DOCTYPE m [<!ENTITY e 'x'>]><message xmlns='jabber:client'>&e;</message>",
			"restricted-xml",
		],
		["<message xmlns='jabber:client'>&e;</message>", "restricted-xml"],
		["<message xmlns='jabber:client'/><?pi?>", "restricted-xml"],
		["<message xmlns='jabber:client'/><!-- c -->", "restricted-xml"],
		["<message xmlns='jabber:client'>", "not-well-formed"],
		["<message xmlns='jabber:client'/><message xmlns='jabber:client'/>", "not-well-formed"],
		["<message xmlns='jabber:client'/>x", "not-well-formed"],
		["", "not-well-formed"],
		["<message xmlns='jabber:client'><a><b><c/></b></a></message>", "policy-violation"],
		[`<message xmlns='jabber:client'>${"x".repeat(20_000)}</message>`, "policy-violation"],
		["<message/>", "invalid-namespace"],
	];
	for (const [input, condition] of cases) {
		assert.throws(
			() => parseDocument(input, { maxStanzaBytes: 10_000, maxDepth: 3 }),
			(e: unknown) => e instanceof XmlError && e.condition === condition,
			input,
		);
	}
	assert.throws(
		() => parseDocument(Buffer.from([0x3c, 0x61, 0xff]), LIMITS),
		(e: unknown) => e instanceof XmlError && e.condition === "unsupported-encoding",
	);
	assert.throws(
		() =>
			parseDocument(
				Buffer.concat([Buffer.from("<a xmlns='x'>"), Buffer.from([0xe2, 0x82])]),
				LIMITS,
			),
		(e: unknown) => e instanceof XmlError && e.condition === "unsupported-encoding",
	);
});
