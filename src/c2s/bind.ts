/** Which resource a client binds (RFC 6120 §7): preparation, generation and conflicts. */
import { createHmac, randomBytes } from "node:crypto";
import type { Config } from "../core/config/schema.ts";
import type { Session } from "../core/contracts.ts";
import { StanzaError } from "../xmpp/errors.ts";
import { JIDError, prepResourcepart } from "../xmpp/jid.ts";

/**
 * The resource to bind for a requested one ("" when the client asked the server to choose), or
 * the error to answer. `taken` returns another session already bound to a resource; the
 * session it returns as `replaces` must be closed with `conflict` before binding.
 */
export function chooseResource(
	requested: string,
	taken: (resource: string) => Session | undefined,
	policy: Config["sessions"]["on_resource_conflict"],
): { resource: string; replaces?: Session } | StanzaError {
	let resource: string;
	if (requested) {
		try {
			resource = prepResourcepart(requested);
		} catch (e) {
			if (!(e instanceof JIDError)) throw e;
			// RFC 6120 §7.7.2.2: bad-request for a resource that cannot be prepared.
			return new StanzaError("bad-request", "invalid resource");
		}
	} else {
		resource = randomBytes(8).toString("base64url");
	}
	const existing = taken(resource);
	if (!existing) return { resource };
	// RFC 6120 §7.7.2.2 leaves the choice to the server. By default the new session wins (the
	// old one is most likely a dead connection the client is replacing), as in Prosody; the
	// operator may refuse the new one or rename it instead.
	if (policy === "refuse") return new StanzaError("conflict", "that resource is already online");
	if (policy === "rename") return { resource: `${resource}.${randomBytes(4).toString("hex")}` };
	return { resource, replaces: existing };
}

/** XEP-0386 §4.2.1: at most this many characters of the client's tag go into the resource. */
const MAX_TAG = 64;

/**
 * The resource a Bind 2 request gets (XEP-0386 §4.2.1): `<tag>/<id>`, the RECOMMENDED form, or
 * `<id>` alone without a usable tag. With a SASL2 `<user-agent id>` the id is stable for that
 * client installation and tag (an HMAC under the host's secret, so the user-agent id itself is
 * never exposed, as the XEP requires); without one it is random.
 */
export function bind2Resource(
	tag: string | undefined,
	user: string,
	userAgent: string | null,
	secret: Buffer,
): string {
	let prefix = "";
	const wanted = tag?.trim().slice(0, MAX_TAG) ?? "";
	if (wanted) {
		try {
			prefix = `${prepResourcepart(wanted)}/`;
		} catch (e) {
			if (!(e instanceof JIDError)) throw e;
			// A tag that is no valid resource is left out rather than failing the login.
		}
	}
	const id = userAgent
		? createHmac("sha256", secret)
				.update(`parley-bind2\0${user}\0${userAgent}\0${prefix}`)
				.digest()
				.subarray(0, 9)
				.toString("base64url")
		: randomBytes(9).toString("base64url");
	return prefix + id;
}

/**
 * Who a Bind 2 session's client is (XEP-0386 §4.2: "earlier sessions from the same client",
 * identified by the SASL2 `<user-agent id>`): an HMAC of account and user-agent id under the
 * host's secret, kept on the session instead of the id itself.
 */
export function bind2ClientId(user: string, userAgent: string, secret: Buffer): string {
	return createHmac("sha256", secret)
		.update(`parley-bind2-client\0${user}\0${userAgent}`)
		.digest("base64url");
}
