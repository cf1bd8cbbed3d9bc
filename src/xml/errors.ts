/**
 * How the XML parser fails: the stream error condition (RFC 6120 §4.9.3) it reports, and the
 * exception parseDocument throws.
 */

/** RFC 6120 §4.9.3 stream error conditions the parser can give. */
export type XmlErrorCondition =
	| "not-well-formed"
	| "restricted-xml"
	| "policy-violation"
	| "unsupported-encoding"
	| "invalid-namespace";

/** A failure to be reported: the condition and a human-readable text. */
export interface XmlFault {
	condition: XmlErrorCondition;
	text: string;
}

export class XmlError extends Error {
	condition: XmlErrorCondition;
	constructor(condition: XmlErrorCondition, message: string) {
		super(message);
		this.name = "XmlError";
		this.condition = condition;
	}
}
