import assert from "node:assert/strict";
import { test } from "node:test";
import {
	JID,
	JIDCache,
	JIDError,
	makeJID,
	parseJID,
	prepDomainpart,
	prepLocalpart,
	prepResourcepart,
	tryParseJID,
} from "./jid.ts";

function bad(s: string): void {
	assert.throws(
		() => parseJID(s),
		(err: unknown) => err instanceof JIDError && err.condition === "jid-malformed",
		`expected ${JSON.stringify(s)} to be rejected`,
	);
	assert.equal(tryParseJID(s), null);
}

function canon(s: string): string {
	return parseJID(s).toString();
}

// RFC 7622 §3.5 (examples of valid JIDs)
test("RFC 7622 §3.5 valid examples", () => {
	assert.equal(canon("juliet@example.com"), "juliet@example.com");
	assert.equal(canon("juliet@example.com/foo"), "juliet@example.com/foo");
	assert.equal(canon("juliet@example.com/foo bar"), "juliet@example.com/foo bar");
	assert.equal(canon("juliet@example.com/foo@bar"), "juliet@example.com/foo@bar");
	assert.equal(canon("foo\\20bar@example.com"), "foo\\20bar@example.com");
	assert.equal(canon("fussball@example.com"), "fussball@example.com");
	assert.equal(canon("π@example.com"), "π@example.com");
	assert.equal(canon("σ@example.com/foo"), "σ@example.com/foo");
	assert.equal(canon("king@example.com/♚"), "king@example.com/♚");
	assert.equal(canon("example.com"), "example.com");
	assert.equal(canon("example.com/foobar"), "example.com/foobar");
	assert.equal(canon("a.example.com/b@example.net"), "a.example.com/b@example.net");
});

// RFC 7622 §3.5 + RFC 8265 §3.3.2 (Unicode Default Case Folding, full)
test("RFC 7622 §3.5 examples that case folding maps", () => {
	assert.equal(canon("fußball@example.com"), "fussball@example.com");
	assert.equal(canon("Σ@example.com/foo"), "σ@example.com/foo");
	assert.equal(canon("ς@example.com/foo"), "σ@example.com/foo");
	assert.ok(parseJID("fußball@example.com").equals(parseJID("fussball@example.com")));
});

// RFC 7622 §3.5 (examples of invalid JIDs)
test("RFC 7622 §3.5 invalid examples", () => {
	bad('"juliet"@example.com'); // §3.3.1 forbidden quote
	bad("foo bar@example.com"); // space not in IdentifierClass
	bad("juliet@example.com/"); // empty resourcepart
	bad("@example.com/"); // empty localpart
	bad("henry\u2163@example.com"); // ROMAN NUMERAL FOUR: HasCompat, ID_DIS
	bad("♚@example.com"); // symbol: ID_DIS
	bad("juliet@"); // empty domainpart
	bad("/foobar"); // empty domainpart
});

// RFC 7622 §3.1
test("parsing splits at the first slash, then the first @ before it", () => {
	const j = parseJID("foo@bar/baz@qux/quux");
	assert.equal(j.local, "foo");
	assert.equal(j.domain, "bar");
	assert.equal(j.resource, "baz@qux/quux");
	const d = parseJID("bar/a@b");
	assert.equal(d.local, "");
	assert.equal(d.domain, "bar");
	assert.equal(d.resource, "a@b");
	bad("@example.com");
	bad("a@b@example.com"); // domain "b@example.com"
	bad("");
	bad("/");
	bad("a@/r");
});

// RFC 8265 §3.3.2 (case mapping) and §4.2.2 (OpaqueString: no case mapping)
test("localpart and domain are case-folded; resource case is preserved", () => {
	assert.equal(canon("JULIET@EXAMPLE.COM"), "juliet@example.com");
	assert.equal(canon("Juliet@Example.Com/Balcony"), "juliet@example.com/Balcony");
	assert.equal(prepLocalpart("ÉLODIE"), "élodie");
	assert.ok(parseJID("JULIET@example.com/a").equals(parseJID("juliet@EXAMPLE.com/a")));
	assert.ok(!parseJID("juliet@example.com/A").equals(parseJID("juliet@example.com/a")));
});

// RFC 8265 §3.3.2 step 1 (width mapping), RFC 7622 §3.2.1 (UTS-46 mapping of the domain)
test("fullwidth characters are mapped in localpart and domainpart", () => {
	assert.equal(canon("ＪＵＬＩＥＴ@ＥＸＡＭＰＬＥ.com"), "juliet@example.com");
	// halfwidth katakana KA + voiced mark -> GA after NFC
	assert.equal(prepLocalpart("\uff76\uff9e"), "\u30ac");
	// RFC 7622 §3.3.1: fullwidth @ maps to a forbidden @
	assert.throws(() => prepLocalpart("a\uff20b"), JIDError);
});

// RFC 8265 §4.2.2: OpaqueString keeps fullwidth (FREE_PVAL) and maps non-ASCII spaces to U+0020
test("resourcepart OpaqueString rules", () => {
	assert.equal(prepResourcepart("ＡＢ"), "ＡＢ");
	assert.equal(prepResourcepart("a\u00a0b\u3000c"), "a b c");
	assert.equal(prepResourcepart("e\u0301"), "\u00e9"); // NFC
	assert.equal(prepResourcepart("Ⅳ ☺"), "Ⅳ ☺"); // compat chars and symbols allowed in FreeformClass
	assert.throws(() => prepResourcepart("a\u0007b"), JIDError); // control
	assert.throws(() => prepResourcepart("a\u00adb"), JIDError); // default ignorable (soft hyphen)
	assert.throws(() => prepResourcepart("a\ue000"), JIDError); // private use
	assert.throws(() => prepResourcepart("a\ud800"), JIDError); // lone surrogate
	assert.throws(() => prepResourcepart("a\u0378"), JIDError); // unassigned
	assert.throws(() => prepResourcepart("\u2028"), JIDError); // line separator
	assert.throws(() => prepResourcepart(""), JIDError);
});

// RFC 8264 §9 IdentifierClass for the localpart
test("localpart IdentifierClass rules", () => {
	assert.equal(prepLocalpart("müller"), "müller");
	assert.equal(prepLocalpart("u\u0308"), "ü"); // NFC
	assert.equal(prepLocalpart("日本"), "日本");
	assert.equal(prepLocalpart("ᏣᎳᎩ"), "ᏣᎳᎩ"); // Cherokee folds to upper case
	assert.equal(prepLocalpart("ꮳꮃꭹ"), "ᏣᎳᎩ");
	assert.throws(() => prepLocalpart("a\u00a0b"), JIDError); // non-ASCII space
	assert.throws(() => prepLocalpart("a\u200bb"), JIDError); // ZWSP: default ignorable
	assert.throws(() => prepLocalpart("a\u0000"), JIDError); // control
	assert.throws(() => prepLocalpart("x\u00bd"), JIDError); // ½ HasCompat
	assert.throws(() => prepLocalpart("€"), JIDError); // symbol
	assert.throws(() => prepLocalpart("a\u0640b"), JIDError); // Exceptions: DISALLOWED
	assert.throws(() => prepLocalpart(""), JIDError);
	for (const c of ["&", "'", "/", ":", "<", ">", "@", '"']) {
		// RFC 7622 §3.3.1
		assert.throws(() => prepLocalpart(`a${c}b`), JIDError, c);
	}
	assert.equal(prepLocalpart("a.b-c_d+e=f!#$%"), "a.b-c_d+e=f!#$%");
});

// RFC 5892 Appendix A (contextual rules, used by RFC 8264 §8)
test("contextual rules", () => {
	assert.equal(prepLocalpart("l\u00b7l"), "l\u00b7l"); // A.3
	assert.throws(() => prepLocalpart("a\u00b7b"), JIDError);
	assert.equal(prepLocalpart("\u0915\u094d\u200d\u0937"), "\u0915\u094d\u200d\u0937"); // A.2 ZWJ after virama
	assert.throws(() => prepLocalpart("a\u200db"), JIDError);
	assert.equal(prepLocalpart("\u0628\u200c\u0628"), "\u0628\u200c\u0628"); // A.1 ZWNJ between joining letters
	assert.throws(() => prepLocalpart("a\u200cb"), JIDError);
	assert.equal(prepLocalpart("\u05d0\u05f3"), "\u05d0\u05f3"); // A.5
	assert.throws(() => prepLocalpart("\u05f3\u05d0"), JIDError);
	assert.equal(prepLocalpart("\u0375\u03b1"), "\u0375\u03b1"); // A.4
	assert.throws(() => prepLocalpart("\u0375a"), JIDError);
	assert.equal(prepLocalpart("\u30a2\u30fb\u30a4"), "\u30a2\u30fb\u30a4"); // A.7
	assert.throws(() => prepLocalpart("a\u30fbb"), JIDError);
	assert.throws(() => prepLocalpart("\u0628\u0661\u06f1"), JIDError); // A.8/A.9 mixed digit sets
});

// RFC 5893 §2 (Bidi Rule), RFC 8265 §3.3.2 step 5
test("localpart Bidi Rule", () => {
	assert.equal(prepLocalpart("\u05e9\u05dc\u05d5\u05dd"), "\u05e9\u05dc\u05d5\u05dd");
	assert.equal(prepLocalpart("\u05d0\u05d1123"), "\u05d0\u05d1123"); // RTL ending in EN
	assert.throws(() => prepLocalpart("abc\u05d0"), JIDError); // LTR label with R
	assert.throws(() => prepLocalpart("\u05d0abc"), JIDError); // RTL label with L
	assert.throws(() => prepLocalpart("\u05d0\u05d1-"), JIDError); // RTL label ending in a neutral
	assert.throws(() => prepLocalpart("1\u05d0"), JIDError); // starts with EN
});

// RFC 7622 §3.2
test("domainpart rules", () => {
	assert.equal(canon("juliet@example.com."), "juliet@example.com"); // one trailing dot stripped
	assert.ok(parseJID("example.com.").equals(parseJID("example.com")));
	bad("example.com..");
	bad("a..b");
	bad(".example.com");
	bad("exa mple.com");
	bad("exa_mple.com");
	bad("-example.com");
	bad("example-.com");
	bad("ab--cd.com");
	bad("a%41.com");
	bad("foo.123");
	assert.equal(prepDomainpart("MÜNCHEN.de"), "münchen.de");
	assert.equal(prepDomainpart("xn--mnchen-3ya.de"), "münchen.de");
	assert.throws(() => prepDomainpart("xn--zz.com"), JIDError); // undecodable A-label
	assert.equal(prepDomainpart("a\u3002b"), "a.b"); // ideographic full stop
	assert.equal(prepDomainpart("faß.de"), "faß.de"); // nontransitional UTS-46
	assert.equal(prepDomainpart("127.0.0.1"), "127.0.0.1");
	assert.equal(canon("[::1]"), "[::1]");
	assert.equal(canon("juliet@[0:0::1]/r"), "juliet@[::1]/r");
	assert.equal(prepDomainpart("[2001:DB8::1]"), "[2001:db8::1]");
	bad("[::1");
	bad("[fe80::1%25eth0]");
	bad("[1.2.3.4]");
	bad("::1");
});

// RFC 7622 §3.2, §3.3, §3.4: 1..1023 octets; RFC 5890: labels ≤ 63 octets
test("length limits are counted in UTF-8 octets", () => {
	assert.equal(prepLocalpart("a".repeat(1023)).length, 1023);
	assert.throws(() => prepLocalpart("a".repeat(1024)), JIDError);
	// U+00E9 is 2 octets: 511 of them = 1022 octets, 512 = 1024 octets
	assert.equal(prepLocalpart("é".repeat(511)), "é".repeat(511));
	assert.throws(() => prepLocalpart("é".repeat(512)), JIDError);
	// decomposed input composes first: 512 x "e\u0301" = 1024 octets after NFC
	assert.throws(() => prepLocalpart("e\u0301".repeat(512)), JIDError);
	// U+4E2D is 3 octets: 341 = 1023, 342 = 1026
	assert.equal(prepResourcepart("中".repeat(341)).length, 341);
	assert.throws(() => prepResourcepart("中".repeat(342)), JIDError);
	assert.equal(prepResourcepart("r".repeat(1023)).length, 1023);
	assert.throws(() => prepResourcepart("r".repeat(1024)), JIDError);
	const label63 = "a".repeat(63);
	assert.equal(prepDomainpart(`${label63}.com`), `${label63}.com`);
	assert.throws(() => prepDomainpart(`${"a".repeat(64)}.com`), JIDError);
	// 20 labels of "ü" x 20: each ASCII label is short, but the Unicode form is 20 * 41 - 1 = 819 octets: fine
	const ulabel = "ü".repeat(20);
	assert.ok(prepDomainpart(Array(20).fill(ulabel).join(".")).length > 0);
	// ...and 25 such labels are 25 * 41 - 1 = 1024 octets
	assert.throws(() => prepDomainpart(Array(25).fill(ulabel).join(".")), JIDError);
	// A-label of a U-label too long for 63 octets
	assert.throws(() => prepDomainpart(`${"ü".repeat(60)}.com`), JIDError);
	const big = `${"a".repeat(63)}.`.repeat(16);
	assert.throws(() => prepDomainpart(`${big}com`), JIDError); // 1027 octets
});

test("JID object API", () => {
	const full = parseJID("Juliet@Example.com/Balcony");
	assert.equal(full.local, "juliet");
	assert.equal(full.domain, "example.com");
	assert.equal(full.resource, "Balcony");
	assert.equal(full.isBare(), false);
	assert.equal(full.bareString, "juliet@example.com");
	assert.equal(`${full}`, "juliet@example.com/Balcony");
	const bare = full.bare;
	assert.equal(bare.isBare(), true);
	assert.equal(bare.toString(), "juliet@example.com");
	assert.equal(bare.bare, bare); // same object when already bare
	assert.equal(full.bare, bare); // cached
	assert.ok(bare.equals(parseJID("juliet@example.com")));
	assert.ok(!bare.equals(full));
	const other = bare.withResource("ＰＨＯＮＥ\u00a0x");
	assert.equal(other.toString(), "juliet@example.com/ＰＨＯＮＥ x");
	assert.throws(() => bare.withResource(""), JIDError);
	const server = parseJID("example.com");
	assert.equal(server.local, "");
	assert.equal(server.bareString, "example.com");
	assert.throws(() => new JID(Symbol("x") as never, "a", "b", "c"), TypeError);
});

test("makeJID prepares each part", () => {
	assert.ok(makeJID("JULIET", "EXAMPLE.COM", "r").equals(parseJID("juliet@example.com/r")));
	assert.equal(makeJID("", "example.com").toString(), "example.com");
	assert.equal(makeJID("a", "example.com", "").toString(), "a@example.com");
	assert.throws(() => makeJID("a b", "example.com"), JIDError);
	assert.throws(() => makeJID("a", ""), JIDError);
	assert.throws(() => makeJID("a", "example.com", "\u0001"), JIDError);
});

test("JIDCache returns equal results and stays bounded", () => {
	const cache = new JIDCache(2);
	const a1 = cache.parse("A@example.com/x");
	assert.ok(a1.equals(parseJID("a@example.com/x")));
	assert.equal(cache.parse("A@example.com/x"), a1); // hit
	cache.parse("b@example.com");
	cache.parse("A@example.com/x"); // refresh a: b is now the oldest
	cache.parse("c@example.com"); // evicts b
	assert.equal(cache.size, 2);
	assert.equal(cache.parse("A@example.com/x"), a1); // still cached
	assert.throws(() => cache.parse("@example.com"), JIDError);
	assert.equal(cache.size, 2);
	assert.throws(() => new JIDCache(0), RangeError);
	// default size
	const d = new JIDCache();
	for (const s of ["x@y", "X@Y", "x@y/Z"]) assert.ok(d.parse(s).equals(parseJID(s)));
});

test("fast path and slow path agree", () => {
	for (const s of ["juliet", "JULIET", "a.b_c", "x-1"]) {
		// the slow path is reached by appending a non-ASCII letter and comparing prefixes
		const fast = prepLocalpart(s);
		const slow = prepLocalpart(`${s}é`);
		assert.equal(slow, `${fast}é`);
	}
	assert.equal(prepDomainpart("Example.COM"), "example.com");
});
