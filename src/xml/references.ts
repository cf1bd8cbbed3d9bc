/**
 * References and line ends in character data and attribute values. XML 1.0 §4.1 references,
 * of which RFC 6120 §11.1 allows only character references and the five predefined entities:
 * nothing is ever expanded from a DTD. Line ends are normalised (§2.11), and so is white space
 * in attribute values (§3.3.3). Called once per text run or attribute value that holds a '&',
 * a CR (or, in an attribute, a LF or TAB), or "]]>".
 */
import { isNameChar, isNameStart, isXmlChar } from "./chars.ts";
import type { XmlErrorCondition, XmlFault } from "./errors.ts";

/** Longest entity or character reference accepted, from `&` to `;` (bounds look-ahead). */
export const MAX_REF = 32;

// Character codes (module-local: compared per character).
const TAB = 9;
const LF = 10;
const CR = 13;
const HASH = 35;
const AMP = 38;
const SEMI = 59;
const RBRACKET = 93;

function fault(condition: XmlErrorCondition, text: string): XmlFault {
	return { condition, text };
}

/**
 * Resolve references (XML 1.0 §4.1; RFC 6120 §11.1 allows only the predefined entities and
 * character references) and normalise line ends (§2.11) or attribute whitespace (§3.3.3).
 */
export function resolveReferences(s: string, attr: boolean): string | XmlFault {
	let out = "";
	let last = 0;
	const len = s.length;
	for (let i = 0; i < len; i++) {
		const c = s.charCodeAt(i);
		if (c === AMP) {
			out += s.slice(last, i);
			let j = i + 1;
			while (j < len && j - i < MAX_REF && s.charCodeAt(j) !== SEMI) j++;
			if (j >= len || s.charCodeAt(j) !== SEMI) {
				const name = s.slice(i + 1, j);
				if (j - i >= MAX_REF && /^[A-Za-z_][A-Za-z0-9._-]*$/.test(name)) {
					return fault("restricted-xml", "undefined entity");
				}
				return fault("not-well-formed", "malformed reference");
			}
			const r = ref(s.slice(i + 1, j));
			if (typeof r !== "string") return r;
			out += r;
			i = j;
			last = j + 1;
		} else if (c === CR) {
			out += s.slice(last, i) + (attr ? " " : "\n");
			if (s.charCodeAt(i + 1) === LF) i++;
			last = i + 1;
		} else if (attr) {
			if (c === LF || c === TAB) {
				out += `${s.slice(last, i)} `;
				last = i + 1;
			}
		} else if (c === RBRACKET && s.startsWith("]]>", i)) {
			// XML 1.0 §2.4: "]]>" may not appear in character data.
			return fault("not-well-formed", "']]>' in character data");
		}
	}
	return last === 0 ? s : out + s.slice(last);
}

function ref(name: string): string | XmlFault {
	switch (name) {
		case "lt":
			return "<";
		case "gt":
			return ">";
		case "amp":
			return "&";
		case "quot":
			return '"';
		case "apos":
			return "'";
	}
	if (name.charCodeAt(0) === HASH) {
		const hex = name.charCodeAt(1) === 120; // x
		const digits = name.slice(hex ? 2 : 1);
		if (!(hex ? /^[0-9A-Fa-f]+$/ : /^[0-9]+$/).test(digits)) {
			return fault("not-well-formed", "malformed character reference");
		}
		const cp = Number.parseInt(digits, hex ? 16 : 10);
		if (!isXmlChar(cp)) {
			// XML 1.0 §4.1 WFC "Legal Character".
			return fault("not-well-formed", "character reference to a character not allowed in XML");
		}
		return String.fromCodePoint(cp);
	}
	let ok = name.length > 0 && isNameStart(name.charCodeAt(0));
	for (let k = 1; ok && k < name.length; k++) ok = isNameChar(name.charCodeAt(k));
	if (!ok) {
		return fault("not-well-formed", "malformed reference");
	}
	// RFC 6120 §11.1: entities could only be declared in a DTD, which is not allowed.
	return fault("restricted-xml", `undefined entity &${name};`);
}
