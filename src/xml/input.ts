/**
 * Input chunks to the text the tokenizer reads. RFC 6120 §11.6: UTF-8 only. A multi-byte
 * character cut by a chunk boundary (or a surrogate pair cut in string input) is held back until
 * the next chunk. The text stops before the first invalid byte, lone surrogate or character that
 * is not an XML Char (XML 1.0 §2.2); the fault is reported once what came before it is parsed,
 * so the outcome does not depend on how the input is split.
 */
import { isUtf8 } from "node:buffer";
import { BAD_CHARS } from "./chars.ts";
import type { XmlFault } from "./errors.ts";

const NOT_UTF8: XmlFault = Object.freeze({
	condition: "unsupported-encoding",
	text: "input is not valid UTF-8",
});
const TRUNCATED_UTF8: XmlFault = Object.freeze({
	condition: "unsupported-encoding",
	text: "truncated UTF-8 sequence",
});
const LONE_SURROGATE: XmlFault = Object.freeze({
	condition: "not-well-formed",
	text: "lone surrogate",
});
const NOT_XML_CHAR: XmlFault = Object.freeze({
	condition: "not-well-formed",
	text: "character not allowed in XML",
});

export class InputDecoder {
	/** Incomplete UTF-8 sequence at the end of the last chunk. */
	private carry: Buffer | null = null;
	/** High surrogate at the end of the last string chunk. */
	private hiSurrogate = "";

	// More of what the last decode() found (fields, not a result object: it runs per chunk).
	/** Every character of the text is ASCII (so character offsets are byte offsets). */
	ascii = true;
	/** What is wrong right after the text: to be reported once the text is parsed. */
	fault: XmlFault | null = null;

	/** The text of `chunk` to parse now; see `ascii` and `fault`. */
	decode(chunk: Buffer | string): string {
		let s: string;
		let ascii: boolean;
		let fault: XmlFault | null = null;
		if (typeof chunk === "string") {
			s = this.hiSurrogate === "" ? chunk : this.hiSurrogate + chunk;
			this.hiSurrogate = "";
			const last = s.charCodeAt(s.length - 1);
			if (last >= 0xd800 && last <= 0xdbff) {
				this.hiSurrogate = s.slice(-1);
				s = s.slice(0, -1);
			}
			if (!s.isWellFormed()) {
				let i = 0;
				for (; i < s.length; i++) {
					const c = s.charCodeAt(i);
					if (c >= 0xd800 && c <= 0xdbff) {
						const d = s.charCodeAt(i + 1);
						if (d >= 0xdc00 && d <= 0xdfff) i++;
						else break;
					} else if (c >= 0xdc00 && c <= 0xdfff) break;
				}
				s = s.slice(0, i);
				fault = LONE_SURROGATE;
			}
			ascii = Buffer.byteLength(s) === s.length;
		} else {
			let bytes = chunk;
			if (this.carry !== null) {
				bytes = Buffer.concat([this.carry, chunk]);
				this.carry = null;
			}
			let end = bytes.length;
			if (end > 0 && (bytes[end - 1] as number) >= 0x80) {
				// Hold back a multi-byte character cut by the chunk boundary.
				let i = end - 1;
				while (i > end - 4 && i > 0 && ((bytes[i] as number) & 0xc0) === 0x80) i--;
				const lead = bytes[i] as number;
				// Only a valid lead byte is held; anything else fails validation now.
				const need =
					lead >= 0xc2 && lead <= 0xdf
						? 2
						: lead >= 0xe0 && lead <= 0xef
							? 3
							: lead >= 0xf0 && lead <= 0xf4
								? 4
								: 1;
				if (end - i < need) {
					this.carry = Buffer.from(bytes.subarray(i, end));
					end = i;
				}
			}
			if (!isUtf8(end === bytes.length ? bytes : bytes.subarray(0, end))) {
				// RFC 6120 §11.6: UTF-8 only. Parse what came before the bad byte, then fail.
				end = firstInvalidUtf8(bytes, end);
				this.carry = null;
				fault = NOT_UTF8;
			}
			s = bytes.toString("utf8", 0, end);
			ascii = s.length === end;
		}
		const bad = s.search(BAD_CHARS);
		if (bad >= 0) {
			// XML 1.0 §2.2: parse up to the character so the outcome does not depend on chunking.
			s = s.slice(0, bad);
			fault = NOT_XML_CHAR;
		}
		this.ascii = ascii;
		this.fault = fault;
		return s;
	}

	/** Why the input cannot end here (a character cut off at the end), or null. */
	endFault(): XmlFault | null {
		if (this.carry !== null) return TRUNCATED_UTF8;
		if (this.hiSurrogate !== "") return LONE_SURROGATE;
		return null;
	}

	/** Forget what was held back (stream restart). */
	reset(): void {
		this.carry = null;
		this.hiSurrogate = "";
	}
}

/** Offset of the first byte that starts an invalid UTF-8 sequence (RFC 3629 §4), or `end`. */
function firstInvalidUtf8(b: Buffer, end: number): number {
	let i = 0;
	while (i < end) {
		const c = b[i] as number;
		if (c < 0x80) {
			i++;
			continue;
		}
		let n: number;
		let lo = 0x80;
		let hi = 0xbf;
		if (c >= 0xc2 && c <= 0xdf) n = 1;
		else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			if (c === 0xe0) lo = 0xa0;
			else if (c === 0xed) hi = 0x9f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			if (c === 0xf0) lo = 0x90;
			else if (c === 0xf4) hi = 0x8f;
		} else return i;
		if (i + n >= end) return i;
		const c1 = b[i + 1] as number;
		if (c1 < lo || c1 > hi) return i;
		for (let k = 2; k <= n; k++) {
			const ck = b[i + k] as number;
			if (ck < 0x80 || ck > 0xbf) return i;
		}
		i += n + 1;
	}
	return end;
}
