/**
 * Server-side SASL mechanisms for c2s (RFC 6120 §6): SCRAM-SHA-1, SCRAM-SHA-256 (RFC 5802,
 * RFC 7677), their -PLUS variants with channel binding (RFC 5802 §6), PLAIN (RFC 4616), and
 * ANONYMOUS (RFC 4505, XEP-0175), the only one an anonymous host offers.
 *
 * A mechanism is a small state machine: the stream layer decodes the base64 payload of <auth/>
 * and <response/> (see `decodeSaslPayload`) and calls `step()`; each step answers a challenge,
 * a success (with additional data, RFC 6120 §6.4.6) or a failure condition (RFC 6120 §6.5).
 */
import { createHmac, randomBytes } from "node:crypto";
import type { ChannelBindingSource } from "./channel-binding.ts";
import {
	digest,
	hmac,
	SALT_BYTES,
	SCRAM_HASH_INFO,
	type ScramCredential,
	type ScramHash,
	type StoredCredentials,
	safeEqual,
	verifyPassword,
	xor,
} from "./scram.ts";
import type { VerifiedPasswordCache } from "./verified-cache.ts";

/** RFC 6120 §6.5 */
export type SaslCondition =
	| "aborted"
	| "account-disabled"
	| "credentials-expired"
	| "encryption-required"
	| "incorrect-encoding"
	| "invalid-authzid"
	| "invalid-mechanism"
	| "malformed-request"
	| "mechanism-too-weak"
	| "not-authorized"
	| "temporary-auth-failure";

export interface SaslContext {
	/** The host the client connects to. */
	domain: string;
	/** TLS in place. */
	secure: boolean;
	channelBinding: ChannelBindingSource | null;
	allowPlainWithoutTls: boolean;
	/** Throws on invalid (e.g. JID localpart prep); the mechanism maps that to not-authorized. */
	prepUsername(raw: string): string;
	/** null = no such user. A rejection becomes temporary-auth-failure. */
	getCredentials(username: string): Promise<StoredCredentials | null>;
	/**
	 * Secret from which the fake SCRAM salt of an unknown user is derived, so that repeated
	 * attempts see the same salt, as for a real account. Should be per server instance and
	 * persisted (a salt that changes on restart for unknown users only would tell them apart).
	 * Default: a random value per process.
	 */
	unknownUserSecret?: Buffer;
	/** Fail SCRAM with the 'y' flag when channel binding is offered (RFC 5802 §6, strict). */
	strictChannelBindingDowngrade?: boolean;
	/**
	 * Iteration count shown for unknown users; should be the one used for new accounts.
	 * Default 4096 (RFC 7677 §4 minimum).
	 */
	unknownUserIterations?: number;
	/**
	 * PLAIN only: recent successful verifications (per host), so a repeated login with the same
	 * password skips PBKDF2. Keyed by the stored credential too, so a password change misses.
	 */
	verifiedPasswords?: Pick<VerifiedPasswordCache, "has" | "add">;
	/**
	 * The host is anonymous: ANONYMOUS is offered and nothing else (the password mechanisms
	 * would have no accounts to check against); absent on a host with accounts, which never
	 * offers ANONYMOUS.
	 */
	anonymous?: AnonymousPolicy;
}

/** What the ANONYMOUS mechanism asks of the host before it makes a guest. */
export interface AnonymousPolicy {
	/**
	 * Why one more guest may not log in now (a session cap reached), or null. `throttle`: count
	 * it toward the per-IP SASL failure limit (a cap on the client's own address, not the host's).
	 */
	refuse():
		| { text: string; reason: string; throttle: boolean }
		| null
		| Promise<{ text: string; reason: string; throttle: boolean } | null>;
}

export type SaslStep =
	| { kind: "challenge"; data: Buffer }
	/**
	 * username = prepared localpart. trace: ANONYMOUS only, the client's RFC 4505 trace
	 * information, made safe to log (see `sanitizeTrace`) and never trusted.
	 */
	| { kind: "success"; data: Buffer | null; username: string; trace?: string }
	| SaslFailure;

/**
 * A failed exchange (RFC 6120 §6.4.5): `condition` and `text` go to the client, the rest is for
 * the stream's throttles and the server log.
 */
export interface SaslFailure {
	kind: "failure";
	condition: SaslCondition;
	/** RFC 6120 §6.4.5 <text/>; for SCRAM the RFC 5802 §7 server-error-value where one fits. */
	text?: string;
	/**
	 * Counts toward the SASL failure limits (per connection and per IP). False when the failure
	 * says nothing against the client's credentials: a channel binding type we lack (the client
	 * falls back), a storage error, or anything refused after the password was proven right, so
	 * that a correct password never counts (issues 11 and 22). Malformed input, wrong passwords
	 * and unknown users count.
	 */
	throttle: boolean;
	/** For the operator's log, never sent: why the exchange failed. */
	reason: string;
	/** Log at warn rather than info: may be an attack or a fault on our side. */
	warn?: boolean;
	/** The name the client gave, when the exchange got that far. */
	username?: string;
	/** RFC 5802 §7 cb-name the client asked for, and the types this connection has. */
	channelBinding?: { requested: string; available: string[] };
}

export interface SaslMechanism {
	readonly name: string;
	/** input null = no initial response / empty. */
	step(input: Buffer | null): Promise<SaslStep>;
}

export interface MechanismOptions {
	/** Fixed SCRAM server nonce, for tests (RFC 5802 §5 / RFC 7677 §3 examples). */
	serverNonce?: string;
	/**
	 * XEP-0474 downgrade protection (SSDP): what the client was offered, hashed into SCRAM's
	 * server-first-message as `h=`. `channelBindings` null when XEP-0440 announced none.
	 * Given on the SASL2 path only: the RFC 6120 exchange stays byte for byte as it was.
	 */
	downgradeProtection?: {
		mechanisms: readonly string[];
		channelBindings: readonly string[] | null;
	};
}

/**
 * XEP-0474 §5.1: the mechanisms sorted (i;octet) and joined by %x1E, then %x1F and the channel
 * binding types likewise when XEP-0440 announced them, hashed with the SCRAM hash, base64.
 */
export function downgradeProtectionHash(
	hash: ScramHash,
	offered: NonNullable<MechanismOptions["downgradeProtection"]>,
): string {
	const octets = (a: readonly string[]) =>
		[...a].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))).join("\x1e");
	let s = octets(offered.mechanisms);
	if (offered.channelBindings) s += `\x1f${octets(offered.channelBindings)}`;
	return digest(hash, Buffer.from(s, "utf8")).toString("base64");
}

/** Default order of preference: channel binding first, then the stronger hash (RFC 7677 §4). */
const ALL_MECHANISMS = [
	"SCRAM-SHA-256-PLUS",
	"SCRAM-SHA-1-PLUS",
	"SCRAM-SHA-256",
	"SCRAM-SHA-1",
	"PLAIN",
] as const;

/** Used when the context gives no unknownUserSecret. Immutable once made. */
const PROCESS_UNKNOWN_USER_SECRET: Buffer = randomBytes(32);
const DEFAULT_UNKNOWN_USER_ITERATIONS = 4096;

function channelBindingAvailable(
	ctx: Pick<SaslContext, "secure" | "channelBinding">,
): ctx is { secure: true; channelBinding: ChannelBindingSource } {
	return ctx.secure && ctx.channelBinding !== null && ctx.channelBinding.types().length > 0;
}

export function offeredMechanisms(
	ctx: Pick<SaslContext, "secure" | "channelBinding" | "allowPlainWithoutTls" | "anonymous">,
): string[] {
	// An anonymous host has no accounts to check a password against (Prosody's anonymous
	// authentication provider offers ANONYMOUS alone too).
	if (ctx.anonymous) return ["ANONYMOUS"];
	const cb = channelBindingAvailable(ctx);
	return ALL_MECHANISMS.filter((m) => {
		if (m.endsWith("-PLUS")) return cb;
		// RFC 6120 §13.8 / RFC 4616 §5: PLAIN only under TLS unless configured otherwise.
		if (m === "PLAIN") return ctx.secure || ctx.allowPlainWithoutTls;
		return true;
	});
}

/** null for an unknown or not offered mechanism: the caller answers invalid-mechanism. */
export function createMechanism(
	name: string,
	ctx: SaslContext,
	options: MechanismOptions = {},
): SaslMechanism | null {
	if (!offeredMechanisms(ctx).includes(name)) return null;
	switch (name) {
		case "ANONYMOUS":
			return ctx.anonymous ? new AnonymousMechanism(ctx.anonymous) : null;
		case "PLAIN":
			return new PlainMechanism(ctx);
		case "SCRAM-SHA-1":
			return new ScramMechanism(name, "SHA-1", false, ctx, options);
		case "SCRAM-SHA-256":
			return new ScramMechanism(name, "SHA-256", false, ctx, options);
		case "SCRAM-SHA-1-PLUS":
			return new ScramMechanism(name, "SHA-1", true, ctx, options);
		case "SCRAM-SHA-256-PLUS":
			return new ScramMechanism(name, "SHA-256", true, ctx, options);
		default:
			return null;
	}
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Strict base64 (RFC 4648 §4, no whitespace, canonical padding bits), or null if invalid.
 */
export function strictBase64Decode(text: string): Buffer | null {
	if (!BASE64_RE.test(text)) return null;
	const buf = Buffer.from(text, "base64");
	// Reject non-zero padding bits, which Buffer.from silently drops.
	if (buf.toString("base64") !== text) return null;
	return buf;
}

/**
 * Decodes the character data of <auth/> or <response/> for `step()` (RFC 6120 §6.4.2): "" means
 * no data (null), "=" an empty response, anything else strict base64; "invalid" -> the caller
 * answers incorrect-encoding (RFC 6120 §6.5.3).
 */
export function decodeSaslPayload(text: string): Buffer | null | "invalid" {
	if (text === "") return null;
	if (text === "=") return Buffer.alloc(0);
	return strictBase64Decode(text) ?? "invalid";
}

/** Fatal on malformed input. Without `stream: true` each decode starts afresh: shareable. */
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Strict UTF-8 (RFC 6120 §6.5.3 incorrect-encoding otherwise), or null. */
function decodeUtf8(buf: Buffer): string | null {
	try {
		return UTF8.decode(buf);
	} catch {
		return null;
	}
}

/**
 * The prepared username and its stored credentials (null for an unknown user), or the failure to
 * answer: a name that cannot be prepared is not-authorized (no account has it: counted like an
 * unknown user), a storage error is temporary-auth-failure, not counted: the password may well
 * be right (RFC 6120 §6.5.10, §6.5.13).
 */
async function lookupUser(
	ctx: SaslContext,
	raw: string,
): Promise<{ username: string; creds: StoredCredentials | null } | SaslFailure> {
	let username: string;
	try {
		username = ctx.prepUsername(raw);
	} catch {
		return wrongCredentials(raw, "the username is not a valid JID localpart");
	}
	try {
		return { username, creds: await ctx.getCredentials(username) };
	} catch {
		return serverFault("the account could not be read (storage error)", username);
	}
}

type FailureExtras = Partial<Omit<SaslFailure, "kind" | "condition" | "text">>;

/**
 * A failure that counts toward the throttles unless `extras.throttle` is false; the log reason
 * defaults to the text or the condition.
 */
function failure(condition: SaslCondition, text?: string, extras: FailureExtras = {}): SaslFailure {
	const f: SaslFailure = {
		kind: "failure",
		condition,
		throttle: true,
		reason: text ?? condition,
		...extras,
	};
	if (text !== undefined) f.text = text;
	return f;
}

/** Wrong password or unknown user (RFC 6120 §6.5.10): what a guess looks like; counted. */
function wrongCredentials(username: string, reason: string): SaslFailure {
	return failure("not-authorized", undefined, { reason, username });
}

/** RFC 6120 §6.5.13 temporary-auth-failure: our fault, never the client's; not counted. */
function serverFault(reason: string, username?: string): SaslFailure {
	return failure("temporary-auth-failure", undefined, {
		throttle: false,
		warn: true,
		reason,
		...(username === undefined ? {} : { username }),
	});
}

/** RFC 6120 §6.3.8 / §6.5.6: the password was right, the authzid is not the account's own. */
function authzidRefused(username: string): SaslFailure {
	return failure("invalid-authzid", undefined, {
		throttle: false,
		reason: "credentials proven, but the authzid names another identity",
		username,
	});
}

/**
 * RFC 6120 §6.3.8: the authzid must be empty or the bare JID of the authenticated account. We
 * never let one account act as another. Returns true when acceptable.
 */
function authzidAllowed(authzid: string, username: string, ctx: SaslContext): boolean {
	if (authzid === "") return true;
	if (authzid.includes("/")) return false; // a full JID is not the account
	const at = authzid.indexOf("@");
	if (at <= 0) return false;
	let local: string;
	try {
		local = ctx.prepUsername(authzid.slice(0, at));
	} catch {
		return false;
	}
	const domain = authzid.slice(at + 1).replace(/\.$/, "");
	return local === username && domain.toLowerCase() === ctx.domain.toLowerCase();
}

function fakeSecret(ctx: SaslContext): Buffer {
	return ctx.unknownUserSecret ?? PROCESS_UNKNOWN_USER_SECRET;
}

/**
 * A credential for an unknown user that looks like a real one and is stable for that name (same
 * salt every time), so a SCRAM challenge does not tell whether the account exists. It matches
 * no password.
 */
function fakeCredential(hash: ScramHash, username: string, ctx: SaslContext): ScramCredential {
	const derive = (what: string, len: number) =>
		createHmac("sha256", fakeSecret(ctx))
			.update(`parley-unknown-user\0${what}\0${hash}\0${username}`)
			.digest()
			.subarray(0, len);
	const len = SCRAM_HASH_INFO[hash].length;
	return {
		salt: derive("salt", SALT_BYTES).toString("base64"),
		iterations: ctx.unknownUserIterations ?? DEFAULT_UNKNOWN_USER_ITERATIONS,
		storedKey: derive("stored", len).toString("base64"),
		serverKey: derive("server", len).toString("base64"),
	};
}

abstract class BaseMechanism implements SaslMechanism {
	abstract readonly name: string;
	#done = false;
	#busy = false;

	async step(input: Buffer | null): Promise<SaslStep> {
		// A finished (or concurrently stepped) exchange takes no more input.
		if (this.#done || this.#busy) {
			this.#done = true;
			return failure("malformed-request", "exchange already finished");
		}
		this.#busy = true;
		let result: SaslStep;
		try {
			result = await this.run(input);
		} catch {
			result = serverFault("internal error while checking the credentials");
		} finally {
			this.#busy = false;
		}
		if (result.kind !== "challenge") this.#done = true;
		return result;
	}

	protected abstract run(input: Buffer | null): Promise<SaslStep>;
}

// ---------------------------------------------------------------------------------------------
// PLAIN (RFC 4616)

class PlainMechanism extends BaseMechanism {
	readonly name = "PLAIN";
	readonly #ctx: SaslContext;
	#challenged = false;

	constructor(ctx: SaslContext) {
		super();
		this.#ctx = ctx;
	}

	protected async run(input: Buffer | null): Promise<SaslStep> {
		if (input === null) {
			// RFC 6120 §6.4.2: no initial response -> an empty challenge, once.
			if (this.#challenged) return failure("malformed-request");
			this.#challenged = true;
			return { kind: "challenge", data: Buffer.alloc(0) };
		}
		const text = decodeUtf8(input);
		if (text === null) return failure("incorrect-encoding");
		// RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
		const parts = text.split("\0");
		if (parts.length !== 3) return failure("malformed-request");
		const [authzid = "", authcid = "", password = ""] = parts;
		if (authcid === "" || password === "") return failure("malformed-request");

		const ctx = this.#ctx;
		const found = await lookupUser(ctx, authcid);
		if ("kind" in found) return found;
		const { username, creds } = found;
		const cred = creds?.["SHA-256"] ?? creds?.["SHA-1"];
		if (cred === undefined) {
			// Same work as for a real account, then the same answer as a wrong password.
			await verifyPassword(fakeCredential("SHA-256", username, ctx), password);
			return wrongCredentials(username, "unknown user");
		}
		const cache = ctx.verifiedPasswords;
		if (cache?.has(username, cred, password) !== true) {
			if (!(await verifyPassword(cred, password))) {
				return wrongCredentials(username, "wrong password");
			}
			// Only a password PBKDF2 has just proven is remembered; failures never are.
			cache?.add(username, cred, password);
		}
		// RFC 6120 §6.3.8, checked only once the credentials are proven.
		if (!authzidAllowed(authzid, username, ctx)) return authzidRefused(username);
		return { kind: "success", data: null, username };
	}
}

// ---------------------------------------------------------------------------------------------
// SCRAM (RFC 5802, RFC 7677)

/** RFC 5802 §7: printable = %x21-2B / %x2D-7E (no ','). */
const PRINTABLE_RE = /^[\x21-\x2b\x2d-\x7e]+$/;
/** RFC 5802 §7: cb-name = 1*(ALPHA / DIGIT / "." / "-") */
const CB_NAME_RE = /^[A-Za-z0-9.-]+$/;
/** RFC 5802 §7: attr-val = ALPHA "=" value */
const ATTR_RE = /^[A-Za-z]=/;

/**
 * RFC 5802 §5.1 / §7 saslname: "=2C" is ',' and "=3D" is '='; any other '=' is invalid, as are
 * ',' and NUL. Returns null when invalid.
 */
export function decodeSaslname(s: string): string | null {
	if (s.includes("\0") || s.includes(",")) return null;
	let out = "";
	for (let i = 0; i < s.length; i++) {
		const c = s[i];
		if (c !== "=") {
			out += c;
			continue;
		}
		const esc = s.slice(i + 1, i + 3);
		if (esc === "2C") out += ",";
		else if (esc === "3D") out += "=";
		else return null;
		i += 2;
	}
	return out;
}

interface ClientFirst {
	gs2Header: string;
	cbFlag: "n" | "y" | "p";
	cbName: string | null;
	authzid: string;
	bare: string;
	rawUsername: string;
	clientNonce: string;
}

type Parsed<T> = { ok: true; value: T } | { ok: false; step: SaslStep };

function parseClientFirst(text: string): Parsed<ClientFirst> {
	const bad = (t: string): Parsed<ClientFirst> => ({
		ok: false,
		step: failure("malformed-request", t),
	});
	// RFC 5802 §7: gs2-header = gs2-cbind-flag "," [ authzid ] ","
	const c1 = text.indexOf(",");
	const c2 = c1 < 0 ? -1 : text.indexOf(",", c1 + 1);
	if (c2 < 0) return bad("missing GS2 header");
	const flag = text.slice(0, c1);
	const authzPart = text.slice(c1 + 1, c2);
	const gs2Header = text.slice(0, c2 + 1);
	const bare = text.slice(c2 + 1);

	let cbFlag: ClientFirst["cbFlag"];
	let cbName: string | null = null;
	if (flag === "n" || flag === "y") cbFlag = flag;
	else if (flag.startsWith("p=") && CB_NAME_RE.test(flag.slice(2))) {
		cbFlag = "p";
		cbName = flag.slice(2);
	} else return bad("bad channel binding flag");

	let authzid = "";
	if (authzPart !== "") {
		if (!authzPart.startsWith("a=")) return bad("bad authzid");
		const decoded = decodeSaslname(authzPart.slice(2));
		if (decoded === null || decoded === "") return bad("bad authzid");
		authzid = decoded;
	}

	const attrs = bare.split(",");
	// RFC 5802 §5.1: a mandatory extension (m=) MUST cause authentication failure.
	if (attrs[0]?.startsWith("m=")) {
		return { ok: false, step: failure("malformed-request", "extensions-not-supported") };
	}
	const userAttr = attrs[0] ?? "";
	const nonceAttr = attrs[1] ?? "";
	if (!userAttr.startsWith("n=")) return bad("missing username");
	const rawUsername = decodeSaslname(userAttr.slice(2));
	if (rawUsername === null || rawUsername === "") return bad("bad username");
	if (!nonceAttr.startsWith("r=")) return bad("missing nonce");
	const clientNonce = nonceAttr.slice(2);
	if (!PRINTABLE_RE.test(clientNonce)) return bad("bad nonce");
	// RFC 5802 §7: optional extensions are attr-val; unknown ones are ignored.
	for (const ext of attrs.slice(2)) if (!ATTR_RE.test(ext)) return bad("bad extension");

	return {
		ok: true,
		value: { gs2Header, cbFlag, cbName, authzid, bare, rawUsername, clientNonce },
	};
}

interface ClientFinal {
	withoutProof: string;
	channelBinding: Buffer;
	nonce: string;
	proof: Buffer;
}

function parseClientFinal(text: string): Parsed<ClientFinal> {
	const bad = (t: string, condition: SaslCondition = "malformed-request"): Parsed<ClientFinal> => ({
		ok: false,
		step: failure(condition, t),
	});
	// RFC 5802 §7: client-final-message = channel-binding "," nonce ["," extensions] "," proof
	const attrs = text.split(",");
	if (attrs.length < 3) return bad("too few attributes");
	const [cAttr = "", rAttr = ""] = attrs;
	const pAttr = attrs[attrs.length - 1] ?? "";
	if (!cAttr.startsWith("c=")) return bad("missing channel binding");
	if (!rAttr.startsWith("r=")) return bad("missing nonce");
	if (!pAttr.startsWith("p=")) return bad("missing proof");
	for (const ext of attrs.slice(2, -1)) {
		// RFC 5802 §5.1: m= MUST cause authentication failure.
		if (ext.startsWith("m=")) return bad("extensions-not-supported");
		if (!ATTR_RE.test(ext)) return bad("bad extension");
	}
	const channelBinding = strictBase64Decode(cAttr.slice(2));
	const proof = strictBase64Decode(pAttr.slice(2));
	// RFC 6120 §6.4.2 / §6.5.3: base64 inside the mechanism is strict too.
	if (channelBinding === null || proof === null) return bad("bad base64", "incorrect-encoding");
	return {
		ok: true,
		value: {
			withoutProof: text.slice(0, text.length - pAttr.length - 1),
			channelBinding,
			nonce: rAttr.slice(2),
			proof,
		},
	};
}

/**
 * RFC 5802 §6: "If the flag is set to 'p' and the server does not support the indicated channel
 * binding type, then the server MUST fail authentication", with the server-error-value
 * "unsupported-channel-binding-type" (§7).
 *
 * How it is answered, and why:
 * - In XMPP a SASL failure is a <failure/> with a defined condition and an optional <text/>
 *   (RFC 6120 §6.4.5); there is no failure-with-data to carry SCRAM's server-final `e=`. The
 *   RFC 5802 value goes in the <text/>, verbatim.
 * - We fail at once, on the client-first-message: sending a server-final `e=` as a challenge
 *   where a server-first-message is due would break clients (slixmpp 1.8.3's SCRAM reads the
 *   challenge's s= and i= without a check and would raise).
 * - Condition malformed-request (RFC 6120 §6.5.9), not not-authorized (§6.5.10): the latter
 *   means wrong credentials to clients and operators, and nothing about the credentials has
 *   been checked. Prosody 0.12 (util/sasl/scram.lua) answers the same case with
 *   malformed-request too. slixmpp treats every condition alike: it marks the mechanism as
 *   tried and goes on to the next one.
 * - Not counted toward the SASL failure throttles (SaslFailure.throttle): a client that asks for
 *   a type we lack is not guessing a password, and its next mechanism may well succeed.
 *
 * tls-unique in particular: undefined for TLS 1.3 (RFC 9266 §1, RFC 8446 §C.5), so never offered
 * (channel-binding.ts). slixmpp 1.8.3 (Debian 12) ignores XEP-0440 and always binds -PLUS to
 * tls-unique (util/sasl/mechanisms.py, SCRAM.process_1: `p=tls-unique`); it tries each -PLUS
 * mechanism offered, then SCRAM with the 'y' flag, which succeeds. We still offer -PLUS: clients
 * that read our XEP-0440 list (tls-exporter, tls-server-end-point) get channel binding, and RFC
 * 6120 §13.8 wants SCRAM-SHA-1-PLUS supported. Not offering -PLUS on TLS 1.3 (what Prosody 0.12
 * does, because tls-unique is all it has) would take channel binding away from every client to
 * save slixmpp 1.8 two round trips that cost no PBKDF2 and no throttle count.
 */
function unsupportedChannelBinding(first: ClientFirst, available: readonly string[]): SaslFailure {
	const requested = first.cbName ?? "";
	const why =
		requested === "tls-unique"
			? "tls-unique is undefined for TLS 1.3 (RFC 9266) and weak before it, so never offered"
			: "not a type this connection offers";
	return failure("malformed-request", "unsupported-channel-binding-type", {
		throttle: false,
		reason:
			`client asked for channel binding type ${requested}: ${why} (XEP-0440 lists ` +
			`${available.join(", ") || "none"}); the client may retry without channel binding`,
		username: first.rawUsername,
		channelBinding: { requested, available: [...available] },
	});
}

class ScramMechanism extends BaseMechanism {
	readonly name: string;
	readonly #hash: ScramHash;
	readonly #plus: boolean;
	readonly #ctx: SaslContext;
	readonly #options: MechanismOptions;
	#challenged = false;
	#state:
		| { phase: "start" }
		| {
				phase: "first-sent";
				first: ClientFirst;
				username: string;
				/** false for an unknown user: the exchange then always ends in not-authorized. */
				known: boolean;
				cred: ScramCredential;
				cbData: Buffer;
				nonce: string;
				serverFirst: string;
		  } = { phase: "start" };

	constructor(
		name: string,
		hash: ScramHash,
		plus: boolean,
		ctx: SaslContext,
		options: MechanismOptions,
	) {
		super();
		this.name = name;
		this.#hash = hash;
		this.#plus = plus;
		this.#ctx = ctx;
		this.#options = options;
	}

	protected async run(input: Buffer | null): Promise<SaslStep> {
		if (this.#state.phase === "start") {
			if (input === null) {
				// RFC 6120 §6.4.2: no initial response -> an empty challenge, once.
				if (this.#challenged) return failure("malformed-request");
				this.#challenged = true;
				return { kind: "challenge", data: Buffer.alloc(0) };
			}
			return this.#clientFirst(input);
		}
		if (input === null) return failure("malformed-request", "missing client-final-message");
		return this.#clientFinal(input);
	}

	async #clientFirst(input: Buffer): Promise<SaslStep> {
		const ctx = this.#ctx;
		const text = decodeUtf8(input);
		if (text === null) return failure("incorrect-encoding");
		const parsed = parseClientFirst(text);
		if (!parsed.ok) return parsed.step;
		const first = parsed.value;

		// RFC 5802 §6 channel binding negotiation.
		const cbSource = channelBindingAvailable(ctx) ? ctx.channelBinding : null;
		let cbData: Buffer = Buffer.alloc(0);
		if (this.#plus) {
			// -PLUS requires the client to bind (RFC 5802 §6, §7 gs2-cbind-flag).
			if (first.cbFlag !== "p" || first.cbName === null) {
				return failure("malformed-request", "channel binding required by -PLUS mechanism");
			}
			const available = cbSource?.types() ?? [];
			const cbType = available.find((t) => t === first.cbName);
			const data = cbSource && cbType !== undefined ? cbSource.data(cbType) : null;
			if (data === null) return unsupportedChannelBinding(first, available);
			cbData = data;
		} else if (first.cbFlag === "p") {
			// RFC 5802 §6: 'p' is for the -PLUS mechanisms only.
			return failure("malformed-request", "channel binding requires a -PLUS mechanism");
		} else if (first.cbFlag === "y" && cbSource !== null && ctx.strictChannelBindingDowngrade) {
			// RFC 5802 §6: "If the flag is set to 'y' and the server supports channel binding,
			// the server MUST fail authentication" (downgrade attack). Only enforced on request:
			// we announce our types (XEP-0440), and a client that supports none of them (slixmpp
			// 1.8 knows only tls-unique, which TLS 1.3 lacks) honestly answers 'y'. Failing it
			// would lock such clients out; the certificate check still guards against a MITM.
			// Not counted: the client may well know the password (see SaslFailure.throttle).
			return failure("not-authorized", "server-does-support-channel-binding", {
				throttle: false,
				warn: true,
				reason:
					"client sent the 'y' flag although we offer -PLUS (RFC 5802 §6): a client " +
					"without our channel binding types, or a downgrade attack",
				username: first.rawUsername,
			});
		}

		const found = await lookupUser(ctx, first.rawUsername);
		if ("kind" in found) return found;
		const { username, creds } = found;
		const real = creds?.[this.#hash];
		// RFC 5802 §9 / RFC 6120 §6.5.10: never reveal whether the account exists; an unknown
		// user gets a stable, real-looking salt and iteration count.
		const cred = real ?? fakeCredential(this.#hash, username, ctx);

		const serverNonce = this.#options.serverNonce ?? randomBytes(18).toString("base64");
		const nonce = first.clientNonce + serverNonce;
		// RFC 5802 §7: server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count
		// ["," extensions]; XEP-0474's h= is such an extension.
		const ssdp = this.#options.downgradeProtection;
		const serverFirst =
			`r=${nonce},s=${cred.salt},i=${cred.iterations}` +
			(ssdp ? `,h=${downgradeProtectionHash(this.#hash, ssdp)}` : "");
		this.#state = {
			phase: "first-sent",
			first,
			username,
			known: real !== undefined,
			cred,
			cbData,
			nonce,
			serverFirst,
		};
		return { kind: "challenge", data: Buffer.from(serverFirst, "utf8") };
	}

	async #clientFinal(input: Buffer): Promise<SaslStep> {
		const state = this.#state;
		if (state.phase !== "first-sent") return failure("malformed-request");
		const text = decodeUtf8(input);
		if (text === null) return failure("incorrect-encoding");
		const parsed = parseClientFinal(text);
		if (!parsed.ok) return parsed.step;
		const final = parsed.value;
		const hash = this.#hash;

		// RFC 5802 §5.1 r=: the nonce must be the one the server sent.
		if (final.nonce !== state.nonce) return failure("not-authorized", "nonce mismatch");

		// RFC 5802 §3: AuthMessage, ClientSignature, ClientKey := ClientProof XOR ClientSignature,
		// and the proof holds iff H(ClientKey) = StoredKey. AuthMessage holds the c= the client
		// sent, so the proof is checked even when c= is wrong: that tells a wrong password
		// (counted) from a right one on another TLS channel (not counted, see below).
		const authMessage = `${state.first.bare},${state.serverFirst},${final.withoutProof}`;
		const storedKey = Buffer.from(state.cred.storedKey, "base64");
		const serverKey = Buffer.from(state.cred.serverKey, "base64");
		const clientSignature = hmac(hash, storedKey, authMessage);
		const proof =
			final.proof.length === clientSignature.length
				? final.proof
				: Buffer.alloc(clientSignature.length);
		const clientKey = xor(proof, clientSignature);
		const proofOk =
			safeEqual(digest(hash, clientKey), storedKey) &&
			final.proof.length === SCRAM_HASH_INFO[hash].length;
		const proven = proofOk && state.known;

		// RFC 5802 §5.1 c=: base64 of the GS2 header and, for -PLUS, the channel binding data.
		const expectedCb = Buffer.concat([Buffer.from(state.first.gs2Header, "utf8"), state.cbData]);
		if (!safeEqual(final.channelBinding, expectedCb)) {
			// The client sees the same answer either way (RFC 5802 §7 server-error-value). With a
			// right proof the client's TLS channel is not ours: a TLS-terminating proxy or a man
			// in the middle relaying a real user's login. Worth a warning, not a throttle count.
			return failure("not-authorized", "channel-bindings-dont-match", {
				throttle: !proven,
				warn: proven,
				reason: proven
					? "password right, but the channel binding data is not this connection's " +
						"(a TLS-terminating proxy, or a man in the middle)"
					: "channel binding data does not match, and the proof is wrong",
				username: state.username,
			});
		}
		if (!proven) {
			return wrongCredentials(state.username, state.known ? "wrong password" : "unknown user");
		}

		// RFC 6120 §6.3.8: checked only once the credentials are proven.
		if (!authzidAllowed(state.first.authzid, state.username, this.#ctx)) {
			return authzidRefused(state.username);
		}
		// RFC 5802 §3 ServerSignature, sent as v= in the <success/> data (RFC 6120 §6.4.6).
		const serverSignature = hmac(hash, serverKey, authMessage);
		return {
			kind: "success",
			data: Buffer.from(`v=${serverSignature.toString("base64")}`, "utf8"),
			username: state.username,
		};
	}
}

// ---------------------------------------------------------------------------------------------
// ANONYMOUS (RFC 4505)

/** RFC 4505 §2: trace information is at most 255 characters. */
export const MAX_TRACE_CHARS = 255;

/** Lenient: the trace is only logged, so bad bytes become U+FFFD instead of failing a login. */
const UTF8_LENIENT = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

/**
 * The trace information of RFC 4505 §2 as it may go into a log line: decoded as UTF-8 (bad
 * bytes replaced), control, format and line/paragraph separator characters (which could forge
 * or hide log lines: CR, LF, ESC, bidi overrides) replaced by "?", cut at 255 characters with
 * "…". Nothing else looks at it: RFC 4505 §4, it proves nothing about the client.
 */
export function sanitizeTrace(input: Buffer | null): string {
	if (!input || input.length === 0) return "";
	const text = UTF8_LENIENT.decode(input).replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, "?");
	const chars = Array.from(text);
	return chars.length > MAX_TRACE_CHARS ? `${chars.slice(0, MAX_TRACE_CHARS).join("")}…` : text;
}

/**
 * A fresh localpart for a guest: 128 bits from the CSPRNG as 32 hex digits (lower case, so it
 * is its own PRECIS form). Unguessable, so nobody can address a guest without being told the JID;
 * and no coordination between workers or nodes is needed: two equal draws are as likely as
 * guessing an AES key (with 10^12 logins in all, about 1.5 * 10^-15).
 */
export function randomLocalpart(): string {
	return randomBytes(16).toString("hex");
}

/**
 * RFC 4505 §2: one message from the client, the optional trace information; no challenge.
 * The result is a new random identity; the trace is passed on for the log only.
 */
class AnonymousMechanism implements SaslMechanism {
	readonly name = "ANONYMOUS";
	readonly #policy: AnonymousPolicy;
	#done = false;

	constructor(policy: AnonymousPolicy) {
		this.#policy = policy;
	}

	async step(input: Buffer | null): Promise<SaslStep> {
		if (this.#done) return failure("malformed-request", "ANONYMOUS is a single message");
		this.#done = true;
		const trace = sanitizeTrace(input);
		const refused = await this.#policy.refuse();
		// RFC 6120 §6.5 temporary-auth-failure: nothing wrong with the client; try again later.
		if (refused) {
			return failure("temporary-auth-failure", refused.text, {
				throttle: refused.throttle,
				reason: refused.reason,
			});
		}
		return { kind: "success", data: null, username: randomLocalpart(), trace };
	}
}
