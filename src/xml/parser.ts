/**
 * Streaming XML parser for XMPP (RFC 6120 §11 "XML Usage").
 *
 * Hand-written: the input path runs on every byte every client sends, and it must refuse what
 * RFC 6120 §11.1 restricts (DTDs, comments, PIs, undefined entities) instead of expanding it.
 * See docs/xml-parser.md for the design, the limits and the benchmark against npm parsers.
 *
 * Re-entrancy: handlers may call reset(), setLimits() or write() from inside a callback.
 * After reset() inside a callback, the rest of the chunk being parsed is discarded (after
 * STARTTLS the plain-text remainder must be dropped anyway). write() from inside a callback
 * is queued and parsed after the current chunk. A handler that throws leaves the parser
 * consistent: the exception propagates out of write() and unparsed bytes stay buffered.
 */
import { isNameCharWide, isNameStart, isWs, NAME_ASCII } from "./chars.ts";
import { type Attrs, Element } from "./element.ts";
import { XmlError, type XmlErrorCondition } from "./errors.ts";
import { InputDecoder } from "./input.ts";
import { MAX_REF, resolveReferences } from "./references.ts";

export interface ParserLimits {
	/** Maximum UTF-8 bytes of one depth-1 element (and of the stream header plus anything before it). */
	maxStanzaBytes: number;
	/** Maximum element nesting within a stanza; the stanza element itself is depth 1. */
	maxDepth: number;
	/** Maximum attributes (namespace declarations included) on one element. Default 100. */
	maxAttributes?: number;
}

export interface StreamHandler {
	streamStart(name: string, ns: string | null, attrs: Attrs, defaultNs: string | null): void;
	stanza(el: Element): void;
	streamEnd(): void;
	error(condition: XmlErrorCondition, text: string): void;
}

const DEFAULT_MAX_ATTRIBUTES = 100;
const NS_XML = "http://www.w3.org/XML/1998/namespace";
const NS_XMLNS = "http://www.w3.org/2000/xmlns/";

// Character codes. Module-local on purpose (not imported): the tokenizer compares against them
// per character, and an imported binding is a memory load each time.
const CR = 13;
const BANG = 33;
const QUOT = 34;
const AMP = 38;
const APOS = 39;
const SLASH = 47;
const COLON = 58;
const LT = 60;
const EQ = 61;
const GT = 62;
const QUESTION = 63;
const LBRACKET = 91;
const RBRACKET = 93;
const BOM = 0xfeff;

// Parser modes.
const PROLOG = 0;
const CONTENT = 1;
const EPILOG = 2;

/** Not-found marker for the cached look-ahead positions (larger than any buffer index). */
const FAR = 0x3fffffff;

type Scope = Record<string, string>;

/** Prefix "xml" is bound by definition (Namespaces in XML 1.0 §3); "" holds the default namespace. */
const ROOT_SCOPE: Scope = Object.freeze(
	Object.assign(Object.create(null) as Scope, { xml: NS_XML }),
);

/**
 * Prototype of attribute objects: empty, frozen and without Object.prototype, so `__proto__`
 * or `constructor` attributes are plain own properties and look-ups of absent names give
 * undefined. (Object.create(null) itself would put every attribute object in dictionary mode.)
 */
const ATTRS_PROTO: object = Object.freeze(Object.create(null) as object);

const XML_DECL =
	/^[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(?:'1\.[0-9]+'|"1\.[0-9]+")(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(?:'([A-Za-z][A-Za-z0-9._-]*)'|"([A-Za-z][A-Za-z0-9._-]*)"))?(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*(?:'(?:yes|no)'|"(?:yes|no)"))?[ \t\r\n]*$/;

interface Limits {
	maxStanzaBytes: number;
	maxDepth: number;
	maxAttributes: number;
}

function normalizeLimits(l: ParserLimits): Limits {
	return {
		maxStanzaBytes: l.maxStanzaBytes,
		maxDepth: l.maxDepth,
		maxAttributes: l.maxAttributes ?? DEFAULT_MAX_ATTRIBUTES,
	};
}

/** The engine behind StreamParser and parseDocument (`doc`: the root element is the result). */
class Core {
	private readonly handler: StreamHandler;
	private readonly doc: boolean;
	/** Stack index of stanza elements: 1 in a stream (the stream root is below), 0 in a document. */
	private readonly base: number;
	private limits: Limits;

	/** Bumped by reset(); a callback that resets makes the running parse loop stop. */
	private gen = 0;
	failed = false;
	private busy = false;
	private queue: (Buffer | string)[] = [];

	/** Bytes (or string chunks) to text, with what was cut by a chunk boundary held back. */
	private readonly input = new InputDecoder();

	/** Unconsumed input starts at `pos`. */
	private buf = "";
	private pos = 0;
	/** Every character in `buf` is ASCII, so character offsets are byte offsets. */
	private bufAscii = true;
	/** Where to resume scanning the incomplete token at `pos` (-1: none). */
	private scan = -1;
	/** Quote state of the resumable start-tag scan. */
	private scanQuote = 0;
	// Cached positions of the next '&', '\r' and "]]>" at or after the text being scanned.
	private ampAt = -1;
	private crAt = -1;
	private cdEndAt = -1;
	private ltAt = -1;
	private lfAt = -1;
	private tabAt = -1;

	private mode = PROLOG;
	/** 2: nothing consumed in this document yet; 1: only a BOM (the XML declaration may still come). */
	private docStart = 2;

	// Open elements: qualified name as written, element (null for the stream root), scope.
	private names: string[] = [];
	private els: (Element | null)[] = [];
	private scopes: Scope[] = [];
	/** Text for the innermost open element, not yet appended (adjacent text and CDATA merge). */
	private text = "";

	// Size accounting of the current stanza (or header): bytes before `countedFrom` are in `counted`.
	private counting = true;
	private counted = 0;
	private countedFrom = 0;

	// Attributes of the tag being parsed (reused between tags).
	private readonly anames: string[] = [];
	private readonly avals: string[] = [];

	constructor(handler: StreamHandler, limits: ParserLimits, doc: boolean) {
		this.handler = handler;
		this.limits = normalizeLimits(limits);
		this.doc = doc;
		this.base = doc ? 0 : 1;
	}

	setLimits(limits: ParserLimits): void {
		this.limits = normalizeLimits(limits);
	}

	reset(): void {
		this.gen++;
		this.failed = false;
		this.queue = [];
		this.input.reset();
		this.buf = "";
		this.pos = 0;
		this.bufAscii = true;
		this.scan = -1;
		this.scanQuote = 0;
		this.ampAt = this.crAt = this.cdEndAt = this.ltAt = this.lfAt = this.tabAt = -1;
		this.mode = PROLOG;
		this.docStart = 2;
		this.names = [];
		this.els = [];
		this.scopes = [];
		this.text = "";
		this.counting = true;
		this.counted = 0;
		this.countedFrom = 0;
	}

	write(chunk: Buffer | string): void {
		if (this.failed) return;
		this.queue.push(chunk);
		if (this.busy) return;
		this.busy = true;
		try {
			let next = this.queue.shift();
			while (next !== undefined && !this.failed) {
				this.feed(next);
				next = this.queue.shift();
			}
		} finally {
			this.busy = false;
		}
	}

	/** End of a standalone document (parseDocument). */
	end(): void {
		if (this.failed) return;
		const cut = this.input.endFault();
		if (cut !== null) {
			this.fail(cut.condition, cut.text);
			return;
		}
		if (this.mode !== EPILOG || this.pos < this.buf.length) {
			this.fail("not-well-formed", "incomplete document");
		}
	}

	private fail(condition: XmlErrorCondition, text: string): false {
		if (this.failed) return false;
		this.failed = true;
		// Release memory: nothing more will be parsed.
		this.buf = "";
		this.pos = 0;
		this.queue = [];
		this.names = [];
		this.els = [];
		this.scopes = [];
		this.text = "";
		this.handler.error(condition, text);
		return false;
	}

	private feed(chunk: Buffer | string): void {
		const input = this.input;
		const s = input.decode(chunk);
		const late = input.fault;
		if (s.length > 0) this.append(s, input.ascii);
		const gen = this.gen;
		this.run();
		if (this.failed || this.gen !== gen) return;
		if (late !== null) {
			this.fail(late.condition, late.text);
			return;
		}
		if (this.counting) {
			this.counted += this.bytes(this.countedFrom, this.buf.length);
			this.countedFrom = this.buf.length;
			if (this.counted > this.limits.maxStanzaBytes) {
				this.fail("policy-violation", "stanza too large");
				return;
			}
		}
		this.compact();
	}

	private append(s: string, ascii: boolean): void {
		if (this.counting) {
			this.counted += this.bytes(this.countedFrom, this.buf.length);
			this.countedFrom = this.buf.length;
		}
		if (this.pos >= this.buf.length) {
			this.countedFrom -= this.pos;
			this.scan = -1;
			this.buf = s;
			this.pos = 0;
			this.bufAscii = ascii;
		} else {
			this.buf += s;
			this.bufAscii &&= ascii;
		}
		this.ampAt = this.crAt = this.cdEndAt = this.ltAt = this.lfAt = this.tabAt = -1;
	}

	/** Drop consumed input so memory stays bounded by the incomplete token. */
	private compact(): void {
		const pos = this.pos;
		if (pos === 0) return;
		if (pos >= this.buf.length) {
			this.buf = "";
			this.bufAscii = true;
		} else {
			this.buf = this.buf.slice(pos);
		}
		this.countedFrom -= pos;
		if (this.scan >= 0) this.scan -= pos;
		this.pos = 0;
		this.ampAt = this.crAt = this.cdEndAt = this.ltAt = this.lfAt = this.tabAt = -1;
	}

	/** UTF-8 length of buf[from, to). */
	private bytes(from: number, to: number): number {
		if (to <= from) return 0;
		return this.bufAscii ? to - from : Buffer.byteLength(this.buf.slice(from, to));
	}

	private startCounting(at: number): void {
		this.counting = true;
		this.counted = 0;
		this.countedFrom = at;
	}

	/** Exact size check of the counted region ending at `to`. */
	private sizeOk(to: number): boolean {
		const n = this.counted + this.bytes(this.countedFrom, to);
		if (n > this.limits.maxStanzaBytes) {
			return this.fail(
				"policy-violation",
				`stanza of ${n} bytes exceeds ${this.limits.maxStanzaBytes}`,
			);
		}
		return true;
	}

	private run(): void {
		const gen = this.gen;
		while (!this.failed && this.gen === gen && this.pos < this.buf.length) {
			let progressed: boolean;
			if (this.mode === CONTENT) {
				progressed = this.buf.charCodeAt(this.pos) === LT ? this.tag() : this.textRun();
			} else if (this.mode === PROLOG) {
				progressed = this.prolog();
			} else {
				progressed = this.epilog();
			}
			if (!progressed) break;
		}
	}

	// ---- prolog and epilog ----

	private prolog(): boolean {
		const buf = this.buf;
		const len = buf.length;
		let pos = this.pos;
		if (this.docStart !== 0) {
			if (this.docStart === 2 && buf.charCodeAt(pos) === BOM) {
				// A UTF-8 byte order mark may precede the document (XML 1.0 §4.3.3).
				this.pos = ++pos;
				this.docStart = 1;
				if (pos >= len) return true;
			}
			if (buf.charCodeAt(pos) === LT) {
				if (len - pos < 6) {
					if ("<?xml".startsWith(buf.slice(pos))) return false;
				} else if (buf.startsWith("<?xml", pos) && isWs(buf.charCodeAt(pos + 5))) {
					return this.xmlDecl();
				}
			}
			this.docStart = 0;
		}
		while (pos < len) {
			const c = buf.charCodeAt(pos);
			if (isWs(c)) {
				pos++;
				continue;
			}
			this.pos = pos;
			if (c !== LT) return this.fail("not-well-formed", "text before the root element");
			if (pos + 1 >= len) return false;
			const c1 = buf.charCodeAt(pos + 1);
			if (c1 === QUESTION) return this.pi();
			if (c1 === BANG) return this.bang();
			if (c1 === SLASH) return this.fail("not-well-formed", "end tag before the root element");
			return this.startTag();
		}
		this.pos = pos;
		return true;
	}

	/** RFC 6120 §11.5: an XML declaration may open the document; only UTF-8 (§11.6). */
	private xmlDecl(): boolean {
		const buf = this.buf;
		const pos = this.pos;
		const end = buf.indexOf("?>", this.scan >= 0 ? this.scan : pos + 5);
		if (end < 0) {
			this.scan = Math.max(pos + 5, buf.length - 1);
			return false;
		}
		this.scan = -1;
		const m = XML_DECL.exec(buf.slice(pos + 5, end));
		if (m === null) return this.fail("not-well-formed", "malformed XML declaration");
		const enc = m[1] ?? m[2];
		if (enc !== undefined && enc.toLowerCase() !== "utf-8") {
			return this.fail("unsupported-encoding", `encoding ${enc} is not supported`);
		}
		this.docStart = 0;
		this.pos = end + 2;
		return true;
	}

	/** RFC 6120 §11.1: no processing instructions (the leading XML declaration is handled apart). */
	private pi(): boolean {
		return this.fail("restricted-xml", "processing instructions are not allowed");
	}

	private epilog(): boolean {
		const buf = this.buf;
		const len = buf.length;
		let pos = this.pos;
		while (pos < len && isWs(buf.charCodeAt(pos))) pos++;
		this.pos = pos;
		if (pos >= len) return true;
		if (buf.charCodeAt(pos) === LT) {
			if (pos + 1 >= len) return false;
			const c1 = buf.charCodeAt(pos + 1);
			if (c1 === QUESTION) return this.pi();
			if (c1 === BANG && buf.charCodeAt(pos + 2) !== LBRACKET) return this.bang();
		}
		return this.fail("not-well-formed", "data after the root element");
	}

	// ---- markup ----

	private tag(): boolean {
		const buf = this.buf;
		const pos = this.pos;
		if (this.names.length === this.base && !this.counting) this.startCounting(pos);
		if (pos + 1 >= buf.length) return false;
		const c1 = buf.charCodeAt(pos + 1);
		if (c1 === SLASH) return this.endTag();
		if (c1 === BANG) return this.bang();
		if (c1 === QUESTION) return this.pi();
		return this.startTag();
	}

	/** `<!`: a CDATA section inside a stanza, otherwise a comment or declaration. */
	private bang(): boolean {
		const buf = this.buf;
		const pos = this.pos;
		const len = buf.length;
		if (pos + 2 >= len) return false;
		if (buf.charCodeAt(pos + 2) !== LBRACKET) {
			// RFC 6120 §11.1: no comments, no DTD (DOCTYPE, ENTITY, ...).
			return this.fail("restricted-xml", "comments and DTDs are not allowed");
		}
		const avail = Math.min(len - pos, 9);
		if (!buf.startsWith("<![CDATA[".slice(0, avail), pos)) {
			return this.fail("not-well-formed", "invalid markup declaration");
		}
		if (avail < 9) return false;
		if (this.mode !== CONTENT || this.names.length === this.base) {
			return this.fail("not-well-formed", "character data outside a stanza");
		}
		const end = buf.indexOf("]]>", this.scan >= 0 ? this.scan : pos + 9);
		if (end < 0) {
			this.scan = Math.max(pos + 9, len - 2);
			return false;
		}
		this.scan = -1;
		let content = buf.slice(pos + 9, end);
		// XML 1.0 §2.11 line-end normalisation applies to CDATA too.
		if (content.indexOf("\r") >= 0) content = content.replace(/\r\n?/g, "\n");
		this.text += content;
		this.pos = end + 3;
		return true;
	}

	private endTag(): boolean {
		const buf = this.buf;
		const pos = this.pos;
		const gt = buf.indexOf(">", this.scan >= 0 ? this.scan : pos + 2);
		if (gt < 0) {
			this.scan = buf.length;
			return false;
		}
		this.scan = -1;
		let e = gt;
		while (e > pos + 2 && isWs(buf.charCodeAt(e - 1))) e--;
		const depth = this.names.length;
		const top = this.names[depth - 1];
		if (top === undefined || e - pos - 2 !== top.length || !buf.startsWith(top, pos + 2)) {
			return this.fail("not-well-formed", "mismatched end tag");
		}
		this.pos = gt + 1;
		this.names.pop();
		this.scopes.pop();
		const el = this.els.pop() ?? null;
		if (el === null) {
			this.mode = EPILOG;
			this.counting = false;
			this.handler.streamEnd();
			return true;
		}
		if (this.text !== "") {
			el.children.push(this.text);
			this.text = "";
		}
		if (depth - 1 === this.base) return this.deliver(el);
		return true;
	}

	private deliver(el: Element): boolean {
		if (!this.sizeOk(this.pos)) return false;
		this.counting = false;
		if (this.doc) this.mode = EPILOG;
		this.handler.stanza(el);
		return true;
	}

	/** Quote-aware scan for the end of a start tag; stops at '>' or at a '<' (an error). */
	private scanTag(from: number): boolean {
		const buf = this.buf;
		const len = buf.length;
		let q = this.scanQuote;
		for (let i = from; i < len; i++) {
			const c = buf.charCodeAt(i);
			if (c === LT) return true;
			if (q !== 0) {
				if (c === q) q = 0;
			} else if (c === GT) return true;
			else if (c === QUOT || c === APOS) q = c;
		}
		this.scanQuote = q;
		this.scan = len;
		return false;
	}

	private startTag(): boolean {
		if (this.scan >= 0) {
			// A tag cut by a chunk boundary is parsed again only once it is complete.
			if (!this.scanTag(this.scan)) return false;
			this.scan = -1;
			this.scanQuote = 0;
		}
		const r = this.parseStartTag();
		if (r !== 0) return r > 0;
		this.scanQuote = 0;
		if (this.scanTag(this.pos + 1)) return this.fail("not-well-formed", "malformed start tag");
		return false;
	}

	/** 1: element opened, 0: incomplete (nothing consumed), -1: failed. */
	private parseStartTag(): number {
		const buf = this.buf;
		const len = buf.length;
		const start = this.pos;
		let i = start + 1;
		let c = buf.charCodeAt(i);
		if (!isNameStart(c)) return this.bad("invalid element name");
		let colon = -1;
		for (i++; ; i++) {
			if (i >= len) return 0;
			c = buf.charCodeAt(i);
			if (c < 128 ? NAME_ASCII[c] === 0 : !isNameCharWide(c)) break;
			if (c === COLON) {
				if (colon >= 0) return this.bad("invalid element name");
				colon = i;
			}
		}
		if (colon === i - 1) return this.bad("invalid element name");
		const qname = buf.slice(start + 1, i);
		const names = this.anames;
		const vals = this.avals;
		const maxAttrs = this.limits.maxAttributes;
		let n = 0;
		/** Some attribute is prefixed or declares a namespace. */
		let nsWork = false;
		let selfClosing = false;
		for (;;) {
			let ws = false;
			while (isWs(c)) {
				ws = true;
				c = buf.charCodeAt(++i);
			}
			if (i >= len) return 0;
			if (c === GT) {
				i++;
				break;
			}
			if (c === SLASH) {
				if (i + 1 >= len) return 0;
				if (buf.charCodeAt(i + 1) !== GT) return this.bad("malformed start tag");
				i += 2;
				selfClosing = true;
				break;
			}
			if (!ws || !isNameStart(c)) return this.bad("malformed start tag");
			const nameStart = i;
			let acolon = -1;
			for (i++; ; i++) {
				if (i >= len) return 0;
				c = buf.charCodeAt(i);
				if (c < 128 ? NAME_ASCII[c] === 0 : !isNameCharWide(c)) break;
				if (c === COLON) {
					if (acolon >= 0) return this.bad("invalid attribute name");
					acolon = i;
				}
			}
			if (acolon === i - 1) return this.bad("invalid attribute name");
			const aname = buf.slice(nameStart, i);
			while (isWs(c)) c = buf.charCodeAt(++i);
			if (i >= len) return 0;
			if (c !== EQ) return this.bad("attribute without value");
			do c = buf.charCodeAt(++i);
			while (isWs(c));
			if (i >= len) return 0;
			if (c !== QUOT && c !== APOS) return this.bad("unquoted attribute value");
			const vstart = i + 1;
			i = buf.indexOf(c === QUOT ? '"' : "'", vstart);
			if (i < 0) return 0;
			// Cached look-ahead positions instead of a character loop over every value.
			if (this.ltAt < vstart) this.ltAt = this.find("<", vstart);
			if (this.ltAt < i) return this.bad("'<' in attribute value");
			if (this.ampAt < vstart) this.ampAt = this.find("&", vstart);
			if (this.crAt < vstart) this.crAt = this.find("\r", vstart);
			if (this.lfAt < vstart) this.lfAt = this.find("\n", vstart);
			if (this.tabAt < vstart) this.tabAt = this.find("\t", vstart);
			let value: string | null = buf.slice(vstart, i);
			if (this.ampAt < i || this.crAt < i || this.lfAt < i || this.tabAt < i) {
				value = this.decode(value, true);
				if (value === null) return -1;
			}
			if (n >= maxAttrs) {
				this.fail("policy-violation", `more than ${maxAttrs} attributes`);
				return -1;
			}
			names[n] = aname;
			vals[n] = value;
			n++;
			if (acolon >= 0 || (aname.length >= 5 && aname.startsWith("xmlns"))) nsWork = true;
			c = buf.charCodeAt(++i);
		}
		this.pos = i;
		const nameColon = colon < 0 ? -1 : colon - start - 1;
		return this.openElement(qname, nameColon, n, nsWork, selfClosing) ? 1 : -1;
	}

	private bad(text: string): number {
		this.fail("not-well-formed", text);
		return -1;
	}

	private openElement(
		qname: string,
		colon: number,
		n: number,
		nsWork: boolean,
		selfClosing: boolean,
	): boolean {
		const depth = this.names.length;
		const parentScope = depth > 0 ? (this.scopes[depth - 1] as Scope) : ROOT_SCOPE;
		const names = this.anames;
		const vals = this.avals;
		let scope = parentScope;
		let defaultNs: string | undefined;
		let prefixed = 0;
		const attrs = Object.create(ATTRS_PROTO) as Attrs;
		// Common case: plain attributes; a few string compares beat a keyed look-up per attribute.
		for (let k = 0; !nsWork && k < n; k++) {
			const an = names[k] as string;
			if (n <= 8) {
				for (let j = 0; j < k; j++) {
					if (names[j] === an) return this.fail("not-well-formed", `duplicate attribute ${an}`);
				}
			} else if (attrs[an] !== undefined) {
				return this.fail("not-well-formed", `duplicate attribute ${an}`);
			}
			attrs[an] = vals[k] as string;
		}
		for (let k = 0; nsWork && k < n; k++) {
			const an = names[k] as string;
			const av = vals[k] as string;
			if (an.startsWith("xmlns")) {
				if (an.length === 5) {
					if (defaultNs !== undefined)
						return this.fail("not-well-formed", "duplicate attribute xmlns");
					if (av === NS_XML || av === NS_XMLNS) {
						return this.fail("not-well-formed", "reserved namespace as default namespace");
					}
					if (scope === parentScope) scope = Object.create(parentScope) as Scope;
					scope[""] = av;
					defaultNs = av;
					continue;
				}
				if (an.charCodeAt(5) === COLON) {
					// Namespaces in XML 1.0 §3: reserved prefixes and names; no undeclaring.
					const p = an.slice(6);
					if (p === "xmlns" || (p === "xml") !== (av === NS_XML) || av === NS_XMLNS || av === "") {
						return this.fail("not-well-formed", `invalid namespace declaration ${an}`);
					}
					// xmlns:xml may be declared (to its own namespace, checked above): the binding is
					// already in ROOT_SCOPE, which is frozen, so assigning it again would throw.
					if (p !== "xml") {
						if (scope === parentScope) scope = Object.create(parentScope) as Scope;
						scope[p] = av;
					}
				} else if (an.indexOf(":") > 0) prefixed++;
			} else if (an.indexOf(":") > 0) prefixed++;
			if (attrs[an] !== undefined) return this.fail("not-well-formed", `duplicate attribute ${an}`);
			attrs[an] = av;
		}
		if (prefixed > 0 && !this.checkPrefixedAttrs(scope, n, prefixed)) return false;

		let name = qname;
		let ns: string | null;
		if (colon < 0) {
			const d = scope[""];
			ns = d === undefined || d === "" ? null : d;
		} else {
			const p = qname.slice(0, colon);
			const u = p === "xmlns" ? undefined : scope[p];
			if (u === undefined) return this.fail("not-well-formed", `undeclared namespace prefix ${p}`);
			ns = u;
			name = qname.slice(colon + 1);
		}

		if (!this.doc && depth === 0) {
			// The stream header (RFC 6120 §4.2); its size is bounded like a stanza's.
			if (!this.sizeOk(this.pos)) return false;
			this.counting = false;
			this.mode = CONTENT;
			this.names.push(qname);
			this.els.push(null);
			this.scopes.push(scope);
			const d = defaultNs === undefined || defaultNs === "" ? null : defaultNs;
			const gen = this.gen;
			this.handler.streamStart(name, ns, attrs, d);
			if (selfClosing && this.gen === gen && !this.failed) {
				this.names.pop();
				this.els.pop();
				this.scopes.pop();
				this.mode = EPILOG;
				this.handler.streamEnd();
			}
			return true;
		}

		const level = depth - this.base + 1;
		if (level > this.limits.maxDepth) {
			return this.fail("policy-violation", `element nesting deeper than ${this.limits.maxDepth}`);
		}
		// Characters never outnumber UTF-8 bytes: a cheap early bound inside one large chunk.
		if (this.counting && this.counted + this.pos - this.countedFrom > this.limits.maxStanzaBytes) {
			return this.fail("policy-violation", "stanza too large");
		}
		let el: Element;
		if (level === 1) {
			// RFC 6120 §4.9.3.10: a stanza needs a (supported) namespace; none at all is never one.
			if (ns === null) return this.fail("invalid-namespace", `element ${qname} has no namespace`);
			el = new Element(name, ns, attrs, []);
			this.mode = CONTENT;
		} else {
			// No namespace inside a stanza is "" (xmlns=""), not null (which means "inherit").
			el = new Element(name, ns ?? "", attrs, []);
			const parent = this.els[depth - 1] as Element;
			if (this.text !== "") {
				parent.children.push(this.text);
				this.text = "";
			}
			parent.children.push(el);
		}
		if (selfClosing) {
			return level === 1 ? this.deliver(el) : true;
		}
		this.names.push(qname);
		this.els.push(el);
		this.scopes.push(scope);
		return true;
	}

	/** Namespaces in XML 1.0 §5.3: prefixes declared, no two attributes with one expanded name. */
	private checkPrefixedAttrs(scope: Scope, n: number, prefixed: number): boolean {
		const seen = prefixed > 1 ? new Set<string>() : null;
		for (let k = 0; k < n; k++) {
			const an = this.anames[k] as string;
			const colon = an.indexOf(":");
			if (colon < 0 || an.startsWith("xmlns:")) continue;
			const p = an.slice(0, colon);
			const u = p === "xmlns" ? undefined : scope[p];
			if (u === undefined) return this.fail("not-well-formed", `undeclared namespace prefix ${p}`);
			if (seen === null) continue;
			const key = `${u} ${an.slice(colon + 1)}`;
			if (seen.has(key)) return this.fail("not-well-formed", `duplicate attribute ${an}`);
			seen.add(key);
		}
		return true;
	}

	// ---- character data ----

	private textRun(): boolean {
		const buf = this.buf;
		const len = buf.length;
		const pos = this.pos;
		const lt = buf.indexOf("<", pos);
		const end = lt < 0 ? len : lt;
		if (this.names.length === this.base) {
			// RFC 6120 §11.7 / §4.6: only whitespace (keepalives) between stanzas; it is dropped.
			for (let i = pos; i < end; i++) {
				if (!isWs(buf.charCodeAt(i))) {
					return this.fail("not-well-formed", "character data outside a stanza");
				}
			}
			this.pos = end;
			return true;
		}
		let cut = end;
		if (lt < 0) {
			// Keep back what the next chunk could change: a reference, a CR (CRLF), a "]]".
			for (let i = len - 1; i >= pos && i > len - MAX_REF; i--) {
				if (buf.charCodeAt(i) === AMP) {
					if (buf.indexOf(";", i) < 0) cut = i;
					break;
				}
			}
			if (cut === len) {
				const last = buf.charCodeAt(len - 1);
				if (last === CR) cut--;
				else if (last === RBRACKET) {
					cut--;
					if (cut > pos && buf.charCodeAt(cut - 1) === RBRACKET) cut--;
				}
			}
			if (cut <= pos) return false;
		}
		if (this.ampAt < pos) this.ampAt = this.find("&", pos);
		if (this.crAt < pos) this.crAt = this.find("\r", pos);
		if (this.cdEndAt < pos) this.cdEndAt = this.find("]]>", pos);
		let s: string | null = buf.slice(pos, cut);
		if (this.ampAt < cut || this.crAt < cut || this.cdEndAt < cut) {
			s = this.decode(s, false);
			if (s === null) return false;
		}
		this.text += s;
		this.pos = cut;
		return true;
	}

	private find(what: string, from: number): number {
		const i = this.buf.indexOf(what, from);
		return i < 0 ? FAR : i;
	}

	/** resolveReferences, failing the parse on a fault. */
	private decode(s: string, attr: boolean): string | null {
		const r = resolveReferences(s, attr);
		if (typeof r === "string") return r;
		this.fail(r.condition, r.text);
		return null;
	}
}

/**
 * Incremental parser for one XML stream (RFC 6120 §4, §11). Feed it bytes as they arrive.
 * Errors are reported once through `handler.error`; afterwards writes are ignored until reset().
 */
export class StreamParser {
	private readonly core: Core;

	constructor(handler: StreamHandler, limits: ParserLimits) {
		this.core = new Core(handler, limits, false);
	}

	write(chunk: Buffer | string): void {
		this.core.write(chunk);
	}

	/** New limits apply from the next stanza (and to the one being parsed, from now on). */
	setLimits(limits: ParserLimits): void {
		this.core.setLimits(limits);
	}

	/**
	 * Stream restart (RFC 6120 §4.3.3): everything buffered is dropped, including the rest of
	 * the chunk being parsed when called from a handler; the next byte starts a new document.
	 * Also clears a failure.
	 */
	reset(): void {
		this.core.reset();
	}

	get failed(): boolean {
		return this.core.failed;
	}
}

/**
 * Parse one standalone document (a WebSocket message, RFC 7395 §3.3; a BOSH body, XEP-0124)
 * under the same rules and limits. The root element is depth 1 and the whole input counts
 * against maxStanzaBytes. Throws XmlError.
 */
export function parseDocument(input: string | Buffer, limits: ParserLimits): Element {
	const size = typeof input === "string" ? Buffer.byteLength(input) : input.length;
	if (size > limits.maxStanzaBytes) {
		throw new XmlError(
			"policy-violation",
			`document of ${size} bytes exceeds ${limits.maxStanzaBytes}`,
		);
	}
	const out: { root: Element | null; error: XmlError | null } = { root: null, error: null };
	const core = new Core(
		{
			streamStart() {},
			stanza(el) {
				out.root = el;
			},
			streamEnd() {},
			error(condition, text) {
				out.error = new XmlError(condition, text);
			},
		},
		limits,
		true,
	);
	core.write(input);
	core.end();
	if (out.error !== null) throw out.error;
	if (out.root === null) throw new XmlError("not-well-formed", "no root element");
	return out.root;
}
