/**
 * Stanza and stream errors (RFC 6120 §8.3 and §4.9).
 */
import { type Element, x } from "../xml/element.ts";
import { NS_STANZA_ERRORS, NS_STREAM_ERRORS } from "./ns.ts";

/** RFC 6120 §8.3.3 defined conditions. */
export type StanzaErrorCondition =
	| "bad-request"
	| "conflict"
	| "feature-not-implemented"
	| "forbidden"
	| "gone"
	| "internal-server-error"
	| "item-not-found"
	| "jid-malformed"
	| "not-acceptable"
	| "not-allowed"
	| "not-authorized"
	| "policy-violation"
	| "recipient-unavailable"
	| "redirect"
	| "registration-required"
	| "remote-server-not-found"
	| "remote-server-timeout"
	| "resource-constraint"
	| "service-unavailable"
	| "subscription-required"
	| "undefined-condition"
	| "unexpected-request";

export type StanzaErrorType = "auth" | "cancel" | "continue" | "modify" | "wait";

/** The error type RFC 6120 §8.3.3 gives for each condition, used when a handler names none. */
const DEFAULT_TYPE: Record<StanzaErrorCondition, StanzaErrorType> = {
	"bad-request": "modify",
	conflict: "cancel",
	"feature-not-implemented": "cancel",
	forbidden: "auth",
	gone: "cancel",
	"internal-server-error": "cancel",
	"item-not-found": "cancel",
	"jid-malformed": "modify",
	"not-acceptable": "modify",
	"not-allowed": "cancel",
	"not-authorized": "auth",
	"policy-violation": "modify",
	"recipient-unavailable": "wait",
	redirect: "modify",
	"registration-required": "auth",
	"remote-server-not-found": "cancel",
	"remote-server-timeout": "wait",
	"resource-constraint": "wait",
	"service-unavailable": "cancel",
	"subscription-required": "auth",
	"undefined-condition": "cancel",
	"unexpected-request": "wait",
};

/** Thrown by handlers to answer the sender with a stanza error. */
export class StanzaError extends Error {
	readonly condition: StanzaErrorCondition;
	readonly type: StanzaErrorType;
	readonly text: string | undefined;
	/** An application-specific condition element (RFC 6120 §8.3.2), e.g. XEP-0191's `<blocked/>`. */
	readonly appCondition: Element | undefined;

	constructor(
		condition: StanzaErrorCondition,
		text?: string,
		opts: { type?: StanzaErrorType; appCondition?: Element } = {},
	) {
		super(text ?? condition);
		this.condition = condition;
		this.type = opts.type ?? DEFAULT_TYPE[condition];
		this.text = text;
		this.appCondition = opts.appCondition;
	}

	toElement(by?: string): Element {
		return x(
			"error",
			{ type: this.type, by },
			x(this.condition, { xmlns: NS_STANZA_ERRORS }),
			this.text !== undefined ? x("text", { xmlns: NS_STANZA_ERRORS }, this.text) : undefined,
			this.appCondition,
		);
	}
}

/**
 * The error reply to a stanza: `to`/`from` swapped, type="error", and the original payload
 * echoed as RFC 6120 §8.3.1 allows ("SHOULD include the original XML").
 */
export function errorReply(stanza: Element, error: StanzaError): Element {
	const attrs: Record<string, string | undefined> = { ...stanza.attrs };
	attrs.to = stanza.attrs.from;
	attrs.from = stanza.attrs.to;
	attrs.type = "error";
	const reply = x(stanza.name, attrs);
	reply.ns = stanza.ns;
	for (const c of stanza.children) {
		if (typeof c !== "string" && c.name === "error") continue;
		reply.children.push(c);
	}
	reply.children.push(error.toElement());
	return reply;
}

/** RFC 6120 §8.3.1: an error stanza is never answered with another error. */
export function mayReplyWithError(stanza: Element): boolean {
	const type = stanza.attrs.type;
	if (type === "error") return false;
	if (stanza.name === "iq" && type === "result") return false;
	return true;
}

/** RFC 6120 §4.9.3 stream error conditions. */
export type StreamErrorCondition =
	| "bad-format"
	| "bad-namespace-prefix"
	| "conflict"
	| "connection-timeout"
	| "host-gone"
	| "host-unknown"
	| "improper-addressing"
	| "internal-server-error"
	| "invalid-from"
	| "invalid-namespace"
	| "invalid-xml"
	| "not-authorized"
	| "not-well-formed"
	| "policy-violation"
	| "remote-connection-failed"
	| "reset"
	| "resource-constraint"
	| "restricted-xml"
	| "see-other-host"
	| "system-shutdown"
	| "undefined-condition"
	| "unsupported-encoding"
	| "unsupported-feature"
	| "unsupported-stanza-type"
	| "unsupported-version";

export function streamErrorElement(condition: StreamErrorCondition, text?: string): Element {
	const el = x(
		"stream:error",
		null,
		x(condition, { xmlns: NS_STREAM_ERRORS }),
		text !== undefined ? x("text", { xmlns: NS_STREAM_ERRORS }, text) : undefined,
	);
	return el;
}

/** Thrown inside the stream layer to end the stream with this error. */
export class StreamError extends Error {
	readonly condition: StreamErrorCondition;
	constructor(condition: StreamErrorCondition, text?: string) {
		super(text ?? condition);
		this.condition = condition;
	}
}
