/**
 * Character classes of XML 1.0 as RFC 6120 §11 uses them: the Char production (§2.2), white
 * space and name characters (§2.3, with the NCName of Namespaces in XML 1.0). Tables and tiny
 * predicates only: the parser calls them per character.
 */

// Character codes.
const TAB = 9;
const LF = 10;
const CR = 13;
const SPACE = 32;
const COLON = 58;

/**
 * Raw characters that are not XML Chars (XML 1.0 §2.2). Lone surrogates cannot come out of
 * validated UTF-8 and are checked separately for string input.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are exactly the characters XML 1.0 §2.2 forbids
export const BAD_CHARS = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;

/** ASCII name characters (XML 1.0 §2.3 with Namespaces' NCName): 1 = may start a name, 2 = may continue one. */
export const NAME_ASCII: Uint8Array = (() => {
	const t = new Uint8Array(128);
	for (let c = 65; c <= 90; c++) t[c] = 1;
	for (let c = 97; c <= 122; c++) t[c] = 1;
	t[95] = 1; // _
	for (let c = 48; c <= 57; c++) t[c] = 2;
	t[45] = 2; // -
	t[46] = 2; // .
	t[COLON] = 2; // a colon never starts a QName; its position is checked separately
	return t;
})();

/** XML 1.0 §2.3 NameStartChar above ASCII; surrogates stand for U+10000..U+EFFFF. */
export function isNameStartWide(c: number): boolean {
	return (
		(c >= 0xc0 && c <= 0xd6) ||
		(c >= 0xd8 && c <= 0xf6) ||
		(c >= 0xf8 && c <= 0x2ff) ||
		(c >= 0x370 && c <= 0x37d) ||
		(c >= 0x37f && c <= 0x1fff) ||
		c === 0x200c ||
		c === 0x200d ||
		(c >= 0x2070 && c <= 0x218f) ||
		(c >= 0x2c00 && c <= 0x2fef) ||
		(c >= 0x3001 && c <= 0xdb7f) ||
		(c >= 0xf900 && c <= 0xfdcf) ||
		(c >= 0xfdf0 && c <= 0xfffd)
	);
}

export function isNameCharWide(c: number): boolean {
	return (
		isNameStartWide(c) ||
		c === 0xb7 ||
		(c >= 0x300 && c <= 0x36f) ||
		c === 0x203f ||
		c === 0x2040 ||
		(c >= 0xdc00 && c <= 0xdfff)
	);
}

export function isNameStart(c: number): boolean {
	return c < 128 ? NAME_ASCII[c] === 1 : isNameStartWide(c);
}

export function isNameChar(c: number): boolean {
	return c < 128 ? NAME_ASCII[c] !== 0 : isNameCharWide(c);
}

export function isWs(c: number): boolean {
	return c === SPACE || c === LF || c === TAB || c === CR;
}

/** XML 1.0 §2.2 Char production, for character references. */
export function isXmlChar(cp: number): boolean {
	return (
		cp === TAB ||
		cp === LF ||
		cp === CR ||
		(cp >= 0x20 && cp <= 0xd7ff) ||
		(cp >= 0xe000 && cp <= 0xfffd) ||
		(cp >= 0x10000 && cp <= 0x10ffff)
	);
}
