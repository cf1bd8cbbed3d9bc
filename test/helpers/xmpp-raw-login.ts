/**
 * Client-side SASL for raw-socket tests: PLAIN and SCRAM (RFC 5802, RFC 7677) including
 * channel binding, written independently of the server's implementation.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";
import type tls from "node:tls";
import { RawClient } from "./raw.ts";

const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64");

function pick(re: RegExp, text: string): string {
	const m = re.exec(text);
	if (!m) throw new Error(`no ${re} in ${text}`);
	return m[1] as string;
}

export interface LoginOptions {
	host?: string;
	resource?: string;
	mechanism?: "PLAIN" | "SCRAM-SHA-1" | "SCRAM-SHA-256" | "SCRAM-SHA-1-PLUS" | "SCRAM-SHA-256-PLUS";
	/** Channel binding type for -PLUS mechanisms. */
	cbType?: "tls-exporter" | "tls-server-end-point";
	authzid?: string;
	/** Direct TLS (XEP-0368) instead of plain TCP. */
	tls?: boolean;
	/** Negotiate STARTTLS first (plain TCP only). */
	starttls?: boolean;
	/** false: stop after authentication and the stream restart (to resume a session, XEP-0198 §5). */
	bind?: boolean;
}

/** Runs the SASL exchange; resolves to the server's final element text (success or failure). */
export async function authenticate(
	c: RawClient,
	user: string,
	password: string,
	opts: LoginOptions,
): Promise<string> {
	const mech = opts.mechanism ?? "PLAIN";
	const mark = c.received.length;
	if (mech === "PLAIN") {
		c.send(
			`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${b64(`${opts.authzid ?? ""}\0${user}\0${password}`)}</auth>`,
		);
		return c.waitFor(/<(success|failure)[\s\S]*?(\/>|<\/(success|failure)>)/, mark);
	}
	const hash = mech.includes("256") ? "sha256" : "sha1";
	const plus = mech.endsWith("-PLUS");
	const gs2 = `${plus ? `p=${opts.cbType ?? "tls-exporter"}` : "n"},${opts.authzid ? `a=${opts.authzid}` : ""},`;
	const cnonce = randomBytes(12).toString("base64url");
	const first = `n=${user},r=${cnonce}`;
	c.send(
		`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='${mech}'>${b64(gs2 + first)}</auth>`,
	);
	const ch = await c.waitFor(/<challenge[^>]*>([^<]*)<\/challenge>|<failure/, mark);
	if (ch.includes("<failure")) return c.waitFor(/<\/failure>|<failure[^>]*\/>/, mark);
	const serverFirst = Buffer.from(
		pick(/<challenge[^>]*>([^<]*)<\/challenge>/, ch),
		"base64",
	).toString();
	const nonce = pick(/r=([^,]*)/, serverFirst);
	const salt = Buffer.from(pick(/s=([^,]*)/, serverFirst), "base64");
	const iterations = Number(pick(/i=(\d+)/, serverFirst));
	let cbData = Buffer.alloc(0);
	if (plus) {
		const socket = c.socket as tls.TLSSocket;
		if ((opts.cbType ?? "tls-exporter") === "tls-exporter") {
			cbData = socket.exportKeyingMaterial(32, "EXPORTER-Channel-Binding", Buffer.alloc(0));
		} else {
			const cert = socket.getPeerX509Certificate();
			if (!cert) throw new Error("no server certificate");
			cbData = createHash("sha256").update(cert.raw).digest();
		}
	}
	const withoutProof = `c=${b64(Buffer.concat([Buffer.from(gs2), cbData]))},r=${nonce}`;
	const salted = pbkdf2Sync(password, salt, iterations, hash === "sha256" ? 32 : 20, hash);
	const clientKey = createHmac(hash, salted).update("Client Key").digest();
	const storedKey = createHash(hash).update(clientKey).digest();
	const authMessage = `${first},${serverFirst},${withoutProof}`;
	const signature = createHmac(hash, storedKey).update(authMessage).digest();
	const proof = Buffer.from(clientKey.map((b, i) => b ^ (signature[i] as number)));
	const mark2 = c.received.length;
	c.send(
		`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>${b64(`${withoutProof},p=${proof.toString("base64")}`)}</response>`,
	);
	const end = await c.waitFor(/<(success|failure)[\s\S]*?(\/>|<\/(success|failure)>)/, mark2);
	if (end.includes("<success")) {
		// RFC 5802 §3: check the server signature, so a test also proves the server knew the key.
		const serverKey = createHmac(hash, salted).update("Server Key").digest();
		const expected = createHmac(hash, serverKey).update(authMessage).digest();
		const v = Buffer.from(
			pick(/v=([^,<]*)/, Buffer.from(pick(/<success[^>]*>([^<]*)</, end), "base64").toString()),
			"base64",
		);
		if (!timingSafeEqual(v, expected)) throw new Error("bad server signature");
	}
	return end;
}

/**
 * Connects, authenticates and binds; returns the client with the stream ready for stanzas.
 * Throws if authentication fails.
 */
export async function login(
	port: number,
	user: string,
	password: string,
	opts: LoginOptions = {},
): Promise<RawClient> {
	const host = opts.host ?? "localhost";
	const c = await RawClient.connect(port, { tls: opts.tls, servername: host });
	c.open(host);
	await c.waitFor("</stream:features>");
	if (opts.starttls) {
		const mark = c.received.length;
		c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
		await c.waitFor("<proceed", mark);
		await c.startTls(host);
		const mark2 = c.received.length;
		c.open(host);
		await c.waitFor("</stream:features>", mark2);
	}
	const result = await authenticate(c, user, password, opts);
	if (!result.includes("<success")) throw new Error(`authentication failed: ${result}`);
	const mark = c.received.length;
	c.open(host);
	await c.waitFor("</stream:features>", mark);
	if (opts.bind === false) return c;
	const mark2 = c.received.length;
	const resource = opts.resource ? `<resource>${opts.resource}</resource>` : "";
	c.send(
		`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>${resource}</bind></iq>`,
	);
	await c.waitFor(/<iq[^>]*id=["']bind1["'][\s\S]*?<\/iq>/, mark2);
	return c;
}
