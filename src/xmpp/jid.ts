/**
 * XMPP addresses (JIDs) per RFC 7622, with the PRECIS profiles of
 * RFC 8264 (framework) and RFC 8265 (UsernameCaseMapped, OpaqueString).
 *
 * No maintained npm package implements PRECIS (RFC 8264/8265) for JS:
 * `precis-js` implements the obsolete RFC 7564 and is not published any
 * more, `@xmpp/jid` only lower-cases. So the rules are written here with
 * Unicode property escapes and `String.prototype.normalize`, against the
 * Unicode version of the running engine (Node 24: Unicode 17), which is how
 * RFC 8264 §8 means the derived property to be computed.
 *
 * Exact (computed from the engine's Unicode data, RFC 8264 §8/§9):
 *   Exceptions (RFC 5892 §2.6 table), Unassigned, ASCII7, JoinControl,
 *   OldHangulJamo (Hangul_Syllable_Type L/V/T ranges), PrecisIgnorable
 *   (Default_Ignorable_Code_Point, Noncharacter_Code_Point), Controls,
 *   HasCompat (NFKC(cp) != cp), LetterDigits, OtherLetterDigits, Spaces,
 *   Symbols, Punctuation; the CONTEXTO rules of RFC 5892 Appendix A; the
 *   virama test of the ZWNJ/ZWJ rules (ccc=9, derived through canonical
 *   reordering); NFC; the width mapping's accept/reject outcome; Unicode
 *   Default Case Folding (full, C+F), derived from toLowerCase/toUpperCase
 *   with its known exceptions (Cherokee, U+0131).
 * Approximated (JS exposes neither Joining_Type nor Bidi_Class):
 *   - ZWNJ's Joining_Type regex (RFC 5892 A.1): "L/D" and "R/D" are taken as
 *     "a letter of a cursive-joining script", "T" as Mn/Me/Cf.
 *   - The Bidi Rule (RFC 5893 §2) for localparts: R/AL = a non-mark,
 *     non-digit code point of a right-to-left script; AN = Arabic-Indic
 *     digits (U+0660..U+0669, U+066B, U+066C) and Hanifi Rohingya digits;
 *     EN = ASCII digits and U+06F0..U+06F9; NSM = Mn/Me; L = other letters,
 *     marks and numbers; everything else is a neutral (ON/ES/CS/ET/BN).
 */
import { Buffer } from "node:buffer";
import { isIPv4, isIPv6 } from "node:net";
import { domainToASCII, domainToUnicode } from "node:url";

export class JIDError extends Error {
	readonly condition = "jid-malformed";
	constructor(message: string) {
		super(message);
		this.name = "JIDError";
	}
}

/** RFC 7622 §3.2, §3.3, §3.4: each part is at most 1023 octets (UTF-8). */
const MAX_PART_BYTES = 1023;
/** RFC 1035 §2.3.4 / RFC 5890: a label is at most 63 octets (A-label form). */
const MAX_LABEL_OCTETS = 63;

/**
 * Guard before the costly path: no input longer than this (UTF-16 units) can
 * prepare to ≤ 1023 octets (NFC shrinks canonical decompositions of at most
 * 4 code points into one character, and each output unit is ≥ 1 octet).
 */
const MAX_INPUT_UNITS = 4 * MAX_PART_BYTES;

const INTERNAL: unique symbol = Symbol("JID.internal");

export class JID {
	readonly local: string;
	readonly domain: string;
	readonly resource: string;
	#bare: JID | undefined;
	#str: string | undefined;

	/** Internal: use parseJID / makeJID. The parts must already be prepared. */
	constructor(token: typeof INTERNAL, local: string, domain: string, resource: string) {
		if (token !== INTERNAL) throw new TypeError("construct a JID with parseJID or makeJID");
		this.local = local;
		this.domain = domain;
		this.resource = resource;
	}

	get bare(): JID {
		if (this.resource === "") return this;
		this.#bare ??= new JID(INTERNAL, this.local, this.domain, "");
		return this.#bare;
	}

	isBare(): boolean {
		return this.resource === "";
	}

	get bareString(): string {
		return this.local === "" ? this.domain : `${this.local}@${this.domain}`;
	}

	toString(): string {
		if (this.#str === undefined) {
			this.#str = this.resource === "" ? this.bareString : `${this.bareString}/${this.resource}`;
		}
		return this.#str;
	}

	equals(other: JID): boolean {
		return (
			this === other ||
			(this.domain === other.domain &&
				this.local === other.local &&
				this.resource === other.resource)
		);
	}

	withResource(resource: string): JID {
		return new JID(INTERNAL, this.local, this.domain, prepResourcepart(resource));
	}
}

// ---------------------------------------------------------------------------
// Parsing

/** RFC 7622 §3.1 */
export function parseJID(s: string): JID {
	const slash = s.indexOf("/");
	let resource = "";
	let rest = s;
	if (slash !== -1) {
		resource = s.slice(slash + 1);
		// RFC 7622 §3.1 step 1 / §3.4: a "/" with nothing after it is malformed.
		if (resource === "") throw new JIDError("empty resourcepart");
		rest = s.slice(0, slash);
	}
	const at = rest.indexOf("@");
	let local = "";
	let domain = rest;
	if (at !== -1) {
		local = rest.slice(0, at);
		// RFC 7622 §3.1 step 2 / §3.3: an "@" with nothing before it is malformed.
		if (local === "") throw new JIDError("empty localpart");
		domain = rest.slice(at + 1);
	}
	return new JID(
		INTERNAL,
		local === "" ? "" : prepLocalpart(local),
		prepDomainpart(domain),
		resource === "" ? "" : prepResourcepart(resource),
	);
}

export function tryParseJID(s: string): JID | null {
	try {
		return parseJID(s);
	} catch (err) {
		if (err instanceof JIDError) return null;
		throw err;
	}
}

/** Builds a JID from its parts; "" (or undefined) for an absent local or resource part. */
export function makeJID(local: string, domain: string, resource?: string): JID {
	return new JID(
		INTERNAL,
		local === "" ? "" : prepLocalpart(local),
		prepDomainpart(domain),
		resource === undefined || resource === "" ? "" : prepResourcepart(resource),
	);
}

/** A bounded LRU over parseJID (Map keeps insertion order; a hit moves the key to the end). */
export class JIDCache {
	readonly #max: number;
	readonly #map = new Map<string, JID>();

	constructor(maxEntries = 10_000) {
		if (!Number.isInteger(maxEntries) || maxEntries < 1)
			throw new RangeError("maxEntries must be a positive integer");
		this.#max = maxEntries;
	}

	parse(s: string): JID {
		const hit = this.#map.get(s);
		if (hit !== undefined) {
			this.#map.delete(s);
			this.#map.set(s, hit);
			return hit;
		}
		const jid = parseJID(s); // errors are not cached
		if (this.#map.size >= this.#max) {
			const oldest = this.#map.keys().next();
			if (!oldest.done) this.#map.delete(oldest.value);
		}
		this.#map.set(s, jid);
		return jid;
	}

	get size(): number {
		return this.#map.size;
	}
}

// ---------------------------------------------------------------------------
// Localpart: RFC 7622 §3.3 = UsernameCaseMapped (RFC 8265 §3.3) + §3.3.1

/** Printable ASCII except the RFC 7622 §3.3.1 forbidden characters `" & ' / : < > @`. */
const LOCAL_ASCII_RE = /^[\x21\x23-\x25\x28-\x2e\x30-\x39\x3b\x3d\x3f\x41-\x7e]+$/;
/** RFC 7622 §3.3.1 */
const LOCAL_FORBIDDEN_RE = /["&'/:<>@]/;

export function prepLocalpart(s: string): string {
	// Fast path: printable ASCII is all PVALID (RFC 8264 §9.11 ASCII7); width
	// mapping and NFC leave it alone and case folding is plain lower-casing.
	if (s.length <= MAX_PART_BYTES && LOCAL_ASCII_RE.test(s)) {
		return s.toLowerCase();
	}
	if (s.length > MAX_INPUT_UNITS) throw new JIDError("localpart longer than 1023 octets");
	const out = enforce(s, mapUsernameCaseMapped, "localpart");
	checkClass(out, false, "localpart");
	// RFC 8265 §3.3.3 step 5 / RFC 8264 §5.2.6: the Bidi Rule for RTL strings.
	checkBidi(out);
	if (LOCAL_FORBIDDEN_RE.test(out))
		throw new JIDError("localpart contains a character forbidden by RFC 7622 §3.3.1");
	checkLength(out, "localpart");
	return out;
}

/** RFC 8265 §3.3.2 preparation/enforcement steps 1-4 for UsernameCaseMapped. */
function mapUsernameCaseMapped(s: string): string {
	return caseFold(widthMap(s)).normalize("NFC");
}

/**
 * RFC 8265 §3.3.2 step 1, RFC 8264 §5.2.1: map fullwidth and halfwidth code
 * points (<wide>/<narrow> decompositions: U+3000, U+FF01..U+FFEE) to their
 * decompositions. NFKC of the single code point is used: it is the
 * decomposition mapping itself except where that target again has a
 * compatibility decomposition (U+FFE3, halfwidth Hangul), and those targets
 * are disallowed in the IdentifierClass either way.
 */
function widthMap(s: string): string {
	return s.replace(/[\u3000\uff01-\uffee]/g, (c) => c.normalize("NFKC"));
}

/**
 * RFC 8265 §3.3.2 step 3, RFC 8264 §5.2.3: Unicode Default Case Folding
 * (full folding, CaseFolding.txt statuses C and F), per code point.
 */
function caseFold(s: string): string {
	let out = "";
	for (const ch of s) out += foldChar(ch);
	return out;
}

function foldChar(ch: string): string {
	const cp = ch.codePointAt(0) ?? 0;
	if (cp < 0x80) return ch.toLowerCase();
	// Cherokee folds to its upper case (CaseFolding.txt: 13F8..13FD, AB70..ABBF).
	if ((cp >= 0x13a0 && cp <= 0x13fd) || (cp >= 0xab70 && cp <= 0xabbf)) return ch.toUpperCase();
	// U+0131 DOTLESS I has no (non-Turkic) folding.
	if (cp === 0x131) return ch;
	// Per code point, so toLowerCase's Final_Sigma context never applies (ς folds to σ).
	return ch.toLowerCase().toUpperCase().toLowerCase();
}

// ---------------------------------------------------------------------------
// Resourcepart: RFC 7622 §3.4 = OpaqueString (RFC 8265 §4.2)

const RESOURCE_ASCII_RE = /^[\x20-\x7e]+$/;

export function prepResourcepart(s: string): string {
	// Fast path: printable ASCII and U+0020 are FreeformClass PVALID and unchanged by NFC.
	if (s.length <= MAX_PART_BYTES && RESOURCE_ASCII_RE.test(s)) return s;
	if (s.length > MAX_INPUT_UNITS) throw new JIDError("resourcepart longer than 1023 octets");
	const out = enforce(s, mapOpaqueString, "resourcepart");
	checkClass(out, true, "resourcepart");
	// RFC 8265 §4.2.2: OpaqueString has no directionality rule.
	checkLength(out, "resourcepart");
	return out;
}

/** RFC 8265 §4.2.2 steps 2 and 4: non-ASCII spaces to U+0020, then NFC; no width or case mapping. */
function mapOpaqueString(s: string): string {
	return s.replace(/(?![ ])\p{Zs}/gu, " ").normalize("NFC");
}

// ---------------------------------------------------------------------------
// Domainpart: RFC 7622 §3.2

const DOMAIN_ASCII_RE = /^[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63})*$/;
const LDH_LABEL_RE = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
/** WHATWG "ends in a number": such a host would be read as an IPv4 address. */
const NUMERIC_LABEL_RE = /^(?:[0-9]+|0x[0-9a-f]*)$/;

export function prepDomainpart(input: string): string {
	// RFC 7622 §3.2: strip one trailing dot before anything else.
	const s = input.endsWith(".") ? input.slice(0, -1) : input;
	if (s === "") throw new JIDError("empty domainpart");
	if (s.length > MAX_INPUT_UNITS) throw new JIDError("domainpart longer than 1023 octets");

	// Fast path: an already-canonical LDH name with no A-labels (a numeric last
	// label, as in an IPv4 address, goes on to the checks below).
	if (
		DOMAIN_ASCII_RE.test(s) &&
		!s.includes("--") &&
		!NUMERIC_LABEL_RE.test(s.slice(s.lastIndexOf(".") + 1))
	) {
		if (s.length > MAX_PART_BYTES) throw new JIDError("domainpart longer than 1023 octets");
		checkAsciiLabels(s.split("."));
		return s;
	}

	// RFC 7622 §3.2 / RFC 3986 §3.2.2: IP-literal (IPv6 only, no zone id).
	if (s.startsWith("[")) {
		if (!s.endsWith("]") || !isIPv6(s.slice(1, -1)))
			throw new JIDError("invalid IPv6 literal domainpart");
		const canon = domainToASCII(s); // RFC 5952 text form, lower case
		if (canon === "") throw new JIDError("invalid IPv6 literal domainpart");
		return canon;
	}
	// RFC 7622 §3.2: IPv4address (dotted quad).
	if (isIPv4(s)) return s;

	// WHATWG host parsing percent-decodes; a JID never contains percent escapes.
	if (s.includes("%")) throw new JIDError("invalid character in domainpart");
	// RFC 7622 §3.2.1: IDNA2008 with the UTS-46 mapping (lower-casing, width mapping, NFC).
	const ascii = domainToASCII(s);
	if (ascii === "") throw new JIDError("invalid domainpart");
	const labels = ascii.split(".");
	checkAsciiLabels(labels);
	const unicode = domainToUnicode(ascii);
	// Every A-label must decode and round-trip (RFC 5891 §5.4).
	for (const label of labels) {
		if (!label.startsWith("xn--")) continue;
		const u = domainToUnicode(label);
		if (u === "" || u.startsWith("xn--") || domainToASCII(u) !== label) {
			throw new JIDError("invalid A-label in domainpart");
		}
	}
	if (Buffer.byteLength(unicode, "utf8") > MAX_PART_BYTES)
		throw new JIDError("domainpart longer than 1023 octets");
	return unicode;
}

function checkAsciiLabels(labels: string[]): void {
	for (const label of labels) {
		// RFC 7622 §3.2: no empty labels; each label ≤ 63 octets in ASCII form.
		if (label === "") throw new JIDError("empty label in domainpart");
		if (label.length > MAX_LABEL_OCTETS) throw new JIDError("domain label longer than 63 octets");
		// RFC 7622 §3.2.2 / RFC 5890 §2.3.1: NR-LDH labels or A-labels (letters, digits, inner hyphens).
		if (!LDH_LABEL_RE.test(label)) throw new JIDError("invalid character in domainpart");
		// RFC 5890 §2.3.1: "--" in positions 3-4 is reserved except for A-labels.
		if (label.slice(2, 4) === "--" && !label.startsWith("xn--")) {
			throw new JIDError("reserved label in domainpart");
		}
	}
	const last = labels[labels.length - 1] ?? "";
	if (NUMERIC_LABEL_RE.test(last))
		throw new JIDError("numeric top-level label that is not an IPv4 address");
}

// ---------------------------------------------------------------------------
// PRECIS machinery (RFC 8264)

/**
 * RFC 8264 §7: rules are applied in order (width, additional, case,
 * normalization); applying them again must not change the result. We re-apply
 * until stable and reject a string that does not settle.
 */
function enforce(s: string, map: (s: string) => string, part: string): string {
	let cur = map(s);
	for (let i = 0; i < 3; i++) {
		const next = map(cur);
		if (next === cur) return cur;
		cur = next;
	}
	throw new JIDError(`${part} is not stable under its PRECIS profile`);
}

function checkLength(s: string, part: string): void {
	// RFC 7622 §3.3 / §3.4: 1 to 1023 octets after preparation (RFC 8265: not empty after mapping).
	if (s === "") throw new JIDError(`empty ${part}`);
	if (Buffer.byteLength(s, "utf8") > MAX_PART_BYTES)
		throw new JIDError(`${part} longer than 1023 octets`);
}

const PVALID = 0;
const CONTEXTJ = 1;
const CONTEXTO = 2;
const DISALLOWED = 3;
type Derived = typeof PVALID | typeof CONTEXTJ | typeof CONTEXTO | typeof DISALLOWED;

/** RFC 5892 §2.6 Exceptions (RFC 8264 §9.6). */
const EXCEPTIONS: ReadonlyMap<number, Derived> = new Map<number, Derived>([
	[0x00df, PVALID],
	[0x03c2, PVALID],
	[0x06fd, PVALID],
	[0x06fe, PVALID],
	[0x0f0b, PVALID],
	[0x3007, PVALID],
	[0x00b7, CONTEXTO],
	[0x0375, CONTEXTO],
	[0x05f3, CONTEXTO],
	[0x05f4, CONTEXTO],
	[0x30fb, CONTEXTO],
	...range(0x0660, 0x0669).map((cp): [number, Derived] => [cp, CONTEXTO]),
	...range(0x06f0, 0x06f9).map((cp): [number, Derived] => [cp, CONTEXTO]),
	[0x0640, DISALLOWED],
	[0x07fa, DISALLOWED],
	[0x302e, DISALLOWED],
	[0x302f, DISALLOWED],
	...range(0x3031, 0x3035).map((cp): [number, Derived] => [cp, DISALLOWED]),
	[0x303b, DISALLOWED],
]);

function range(from: number, to: number): number[] {
	const out: number[] = [];
	for (let i = from; i <= to; i++) out.push(i);
	return out;
}

const UNASSIGNED_RE = /^[\p{Cn}--\p{Noncharacter_Code_Point}]$/v;
const IGNORABLE_RE = /^[\p{Default_Ignorable_Code_Point}\p{Noncharacter_Code_Point}]$/u;
const CONTROL_RE = /^\p{Cc}$/u;
const LETTER_DIGITS_RE = /^[\p{Ll}\p{Lu}\p{Lo}\p{Nd}\p{Lm}\p{Mn}\p{Mc}]$/u;
const OTHER_LETTER_DIGITS_RE = /^[\p{Lt}\p{Nl}\p{No}\p{Me}]$/u;
const SPACES_RE = /^\p{Zs}$/u;
const SYMBOLS_RE = /^[\p{Sm}\p{Sc}\p{Sk}\p{So}]$/u;
const PUNCTUATION_RE = /^\p{P}$/u;

/** RFC 8264 §9.9 OldHangulJamo: Hangul_Syllable_Type L, V or T. */
function isOldHangulJamo(cp: number): boolean {
	return (
		(cp >= 0x1100 && cp <= 0x11ff) ||
		(cp >= 0xa960 && cp <= 0xa97c) ||
		(cp >= 0xd7b0 && cp <= 0xd7c6) ||
		(cp >= 0xd7cb && cp <= 0xd7fb)
	);
}

/**
 * RFC 8264 §8: the derived property of a code point in the IdentifierClass
 * (freeform = false) or the FreeformClass (freeform = true).
 */
function derivedProperty(cp: number, ch: string, freeform: boolean): Derived {
	const exc = EXCEPTIONS.get(cp);
	if (exc !== undefined) return exc;
	// BackwardCompatible (RFC 8264 §9.7) is empty.
	if (UNASSIGNED_RE.test(ch)) return DISALLOWED; // UNASSIGNED: not allowed in either class
	if (cp >= 0x21 && cp <= 0x7e) return PVALID; // ASCII7
	if (cp === 0x200c || cp === 0x200d) return CONTEXTJ; // JoinControl
	if (isOldHangulJamo(cp)) return DISALLOWED;
	if (IGNORABLE_RE.test(ch)) return DISALLOWED; // PrecisIgnorableProperties
	if (CONTROL_RE.test(ch)) return DISALLOWED; // Controls
	const other: Derived = freeform ? PVALID : DISALLOWED; // ID_DIS or FREE_PVAL
	if (ch.normalize("NFKC") !== ch) return other; // HasCompat
	if (LETTER_DIGITS_RE.test(ch)) return PVALID;
	if (OTHER_LETTER_DIGITS_RE.test(ch)) return other;
	if (SPACES_RE.test(ch)) return other;
	if (SYMBOLS_RE.test(ch)) return other;
	if (PUNCTUATION_RE.test(ch)) return other;
	return DISALLOWED;
}

/** Checks every code point against the string class and its contextual rule. */
function checkClass(s: string, freeform: boolean, part: string): void {
	const cps = Array.from(s);
	for (let i = 0; i < cps.length; i++) {
		const ch = cps[i] ?? "";
		const cp = ch.codePointAt(0) ?? 0;
		if (cp >= 0x20 && cp <= 0x7e) {
			// U+0020 is PVALID only in the FreeformClass (Spaces, RFC 8264 §9.14).
			if (cp === 0x20 && !freeform) throw new JIDError(`${part} contains a space`);
			continue;
		}
		const prop = derivedProperty(cp, ch, freeform);
		if (prop === PVALID) continue;
		if (prop === DISALLOWED) {
			throw new JIDError(
				`${part} contains a disallowed code point U+${cp.toString(16).toUpperCase().padStart(4, "0")}`,
			);
		}
		const ok = prop === CONTEXTJ ? contextJ(cps, i) : contextO(cps, i, s);
		if (!ok) {
			throw new JIDError(
				`${part}: contextual rule not satisfied for U+${cp.toString(16).toUpperCase().padStart(4, "0")}`,
			);
		}
	}
}

/**
 * Canonical_Combining_Class(ch) == Virama (9), derived exactly from canonical
 * reordering: U+093C has ccc 7 and U+05B0 has ccc 10, so ch sorts between
 * them only when 7 < ccc(ch) < 10; ccc 8 is only U+3099 and U+309A.
 */
function isVirama(ch: string): boolean {
	if (ch === "\u3099" || ch === "\u309a") return false;
	return (
		`${ch}\u093c`.normalize("NFD") === `\u093c${ch}` &&
		`\u05b0${ch}`.normalize("NFD") === `${ch}\u05b0`
	);
}

const JOINING_LETTER_RE =
	/^[\p{L}&&[\p{Script=Arabic}\p{Script=Syriac}\p{Script=Nko}\p{Script=Mongolian}\p{Script=Mandaic}\p{Script=Manichaean}\p{Script=Psalter_Pahlavi}\p{Script=Adlam}\p{Script=Hanifi_Rohingya}\p{Script=Sogdian}\p{Script=Phags_Pa}\p{Script=Chorasmian}\p{Script=Old_Uyghur}]]$/v;
const TRANSPARENT_RE = /^[\p{Mn}\p{Me}\p{Cf}]$/u;

/** RFC 5892 Appendix A.1 (ZWNJ) and A.2 (ZWJ). */
function contextJ(cps: string[], i: number): boolean {
	const before = cps[i - 1];
	if (before !== undefined && isVirama(before)) return true;
	if (cps[i] === "\u200d") return false;
	// ZWNJ: (Joining_Type:{L,D})(Joining_Type:T)*\u200C(Joining_Type:T)*(Joining_Type:{R,D}) — approximated.
	let j = i - 1;
	while (j >= 0 && TRANSPARENT_RE.test(cps[j] ?? "")) j--;
	if (j < 0 || !JOINING_LETTER_RE.test(cps[j] ?? "")) return false;
	let k = i + 1;
	while (k < cps.length && TRANSPARENT_RE.test(cps[k] ?? "")) k++;
	return k < cps.length && JOINING_LETTER_RE.test(cps[k] ?? "");
}

const GREEK_RE = /^\p{Script=Greek}$/u;
const HEBREW_RE = /^\p{Script=Hebrew}$/u;
const KANA_HAN_RE = /[\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Han}]/u;

/** RFC 5892 Appendix A.3-A.9. */
function contextO(cps: string[], i: number, s: string): boolean {
	const cp = cps[i]?.codePointAt(0) ?? 0;
	const before = cps[i - 1];
	const after = cps[i + 1];
	switch (cp) {
		case 0x00b7: // A.3 MIDDLE DOT: between two "l"
			return before === "l" && after === "l";
		case 0x0375: // A.4 GREEK LOWER NUMERAL SIGN: followed by Greek
			return after !== undefined && GREEK_RE.test(after);
		case 0x05f3: // A.5, A.6 HEBREW GERESH / GERSHAYIM: preceded by Hebrew
		case 0x05f4:
			return before !== undefined && HEBREW_RE.test(before);
		case 0x30fb: // A.7 KATAKANA MIDDLE DOT: some Hiragana, Katakana or Han in the string
			return KANA_HAN_RE.test(s.replaceAll("\u30fb", ""));
	}
	if (cp >= 0x0660 && cp <= 0x0669) return !/[\u06f0-\u06f9]/.test(s); // A.8
	if (cp >= 0x06f0 && cp <= 0x06f9) return !/[\u0660-\u0669]/.test(s); // A.9
	return false;
}

const RTL_SCRIPT_RE =
	/^[\p{Script=Hebrew}\p{Script=Arabic}\p{Script=Syriac}\p{Script=Thaana}\p{Script=Nko}\p{Script=Samaritan}\p{Script=Mandaic}\p{Script=Adlam}\p{Script=Hanifi_Rohingya}\p{Script=Mende_Kikakui}\p{Script=Imperial_Aramaic}\p{Script=Phoenician}\p{Script=Kharoshthi}\p{Script=Avestan}\p{Script=Old_South_Arabian}\p{Script=Old_North_Arabian}\p{Script=Nabataean}\p{Script=Palmyrene}\p{Script=Hatran}\p{Script=Inscriptional_Parthian}\p{Script=Inscriptional_Pahlavi}\p{Script=Psalter_Pahlavi}\p{Script=Manichaean}\p{Script=Sogdian}\p{Script=Old_Sogdian}\p{Script=Elymaic}\p{Script=Chorasmian}\p{Script=Yezidi}\p{Script=Old_Hungarian}\p{Script=Old_Turkic}\p{Script=Lydian}\p{Script=Cypriot}\p{Script=Meroitic_Cursive}\p{Script=Meroitic_Hieroglyphs}\p{Script=Old_Uyghur}]$/u;
const RTL_ANY_RE =
	/[\p{Script=Hebrew}\p{Script=Arabic}\p{Script=Syriac}\p{Script=Thaana}\p{Script=Nko}\p{Script=Samaritan}\p{Script=Mandaic}\p{Script=Adlam}\p{Script=Hanifi_Rohingya}\p{Script=Mende_Kikakui}\p{Script=Imperial_Aramaic}\p{Script=Phoenician}\p{Script=Kharoshthi}\p{Script=Avestan}\p{Script=Old_South_Arabian}\p{Script=Old_North_Arabian}\p{Script=Nabataean}\p{Script=Palmyrene}\p{Script=Hatran}\p{Script=Inscriptional_Parthian}\p{Script=Inscriptional_Pahlavi}\p{Script=Psalter_Pahlavi}\p{Script=Manichaean}\p{Script=Sogdian}\p{Script=Old_Sogdian}\p{Script=Elymaic}\p{Script=Chorasmian}\p{Script=Yezidi}\p{Script=Old_Hungarian}\p{Script=Old_Turkic}\p{Script=Lydian}\p{Script=Cypriot}\p{Script=Meroitic_Cursive}\p{Script=Meroitic_Hieroglyphs}\p{Script=Old_Uyghur}]/u;
const NSM_RE = /^[\p{Mn}\p{Me}]$/u;
const STRONG_LTR_RE = /^[\p{L}\p{Mc}\p{N}]$/u;

type Bidi = "R" | "AN" | "EN" | "NSM" | "L" | "ON";

/** Approximate Bidi_Class (see the file comment). */
function bidiClass(ch: string): Bidi {
	const cp = ch.codePointAt(0) ?? 0;
	if ((cp >= 0x30 && cp <= 0x39) || (cp >= 0x06f0 && cp <= 0x06f9)) return "EN";
	if (
		(cp >= 0x0660 && cp <= 0x0669) ||
		cp === 0x066b ||
		cp === 0x066c ||
		(cp >= 0x10d30 && cp <= 0x10d39)
	)
		return "AN";
	if (NSM_RE.test(ch)) return "NSM";
	if (RTL_SCRIPT_RE.test(ch)) return "R";
	if (STRONG_LTR_RE.test(ch)) return "L";
	return "ON";
}

/** RFC 5893 §2 (the Bidi Rule), applied only to strings with right-to-left code points (RFC 8264 §5.2.6). */
function checkBidi(s: string): void {
	if (!RTL_ANY_RE.test(s)) return;
	const classes = Array.from(s, bidiClass);
	if (!classes.some((c) => c === "R" || c === "AN")) return;
	const fail = (rule: number): never => {
		throw new JIDError(`localpart violates the Bidi Rule (RFC 5893 §2 rule ${rule})`);
	};
	// Rule 1 (and rule 5: an LTR label may hold no R/AL/AN, which this string has).
	if (classes[0] !== "R") fail(1);
	// Rule 2: no L in an RTL label.
	if (classes.includes("L")) fail(2);
	// Rule 3: ends with R, AL, EN or AN, then any number of NSM.
	let end = classes.length - 1;
	while (end > 0 && classes[end] === "NSM") end--;
	const last = classes[end];
	if (last !== "R" && last !== "EN" && last !== "AN") fail(3);
	// Rule 4: not both EN and AN.
	if (classes.includes("EN") && classes.includes("AN")) fail(4);
}
