import assert from "node:assert/strict";
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { test } from "node:test";
import type { ChannelBindingSource, ChannelBindingType } from "./channel-binding.ts";
import {
	createMechanism,
	decodeSaslPayload,
	type MechanismOptions,
	offeredMechanisms,
	type SaslContext,
	type SaslFailure,
	type SaslMechanism,
	type SaslStep,
	sanitizeTrace,
} from "./sasl.ts";
import { deriveAllCredentials, deriveCredential, type StoredCredentials } from "./scram.ts";

// ---------------------------------------------------------------------------------------------
// Fixtures

const DOMAIN = "example.com";

const accounts = new Map<string, StoredCredentials>([
	// RFC 5802 §5 and RFC 7677 §3 examples: user "user", password "pencil", their salts.
	[
		"user",
		{
			"SHA-1": await deriveCredential(
				"SHA-1",
				"pencil",
				4096,
				Buffer.from("QSXCR+Q6sek8bf92", "base64"),
			),
			"SHA-256": await deriveCredential(
				"SHA-256",
				"pencil",
				4096,
				Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64"),
			),
		},
	],
	["juliet", await deriveAllCredentials("r0meo!", 4096)],
	["romeo", await deriveAllCredentials("jul1et", 4096)],
	["a,b=c", await deriveAllCredentials("odd", 4096)],
]);

/** A localpart prep good enough for tests: lower-case, refuses '@', '/', spaces and "". */
function prepUsername(raw: string): string {
	if (raw === "" || /[@/\s]/.test(raw)) throw new Error("invalid localpart");
	return raw.toLowerCase();
}

function makeCtx(over: Partial<SaslContext> = {}): SaslContext {
	return {
		domain: DOMAIN,
		secure: true,
		channelBinding: null,
		allowPlainWithoutTls: false,
		prepUsername,
		getCredentials: async (u) => accounts.get(u) ?? null,
		unknownUserSecret: Buffer.from("per-instance secret for tests"),
		unknownUserIterations: 4096,
		...over,
	};
}

const FAKE_EXPORTER = Buffer.from("0123456789abcdef0123456789abcdef");
const FAKE_END_POINT = createHash("sha256").update("certificate").digest();

function fakeChannelBinding(
	types: ChannelBindingType[] = ["tls-exporter", "tls-server-end-point"],
): ChannelBindingSource {
	return {
		types: () => types,
		data: (t) => {
			if (!types.includes(t)) return null;
			return t === "tls-exporter" ? FAKE_EXPORTER : FAKE_END_POINT;
		},
	};
}

function mech(name: string, ctx: SaslContext, options?: MechanismOptions): SaslMechanism {
	const m = createMechanism(name, ctx, options);
	assert.ok(m, `${name} should be available`);
	return m;
}

function challenge(step: SaslStep): string {
	assert.equal(step.kind, "challenge", JSON.stringify(step));
	assert.ok(step.kind === "challenge");
	return step.data.toString("utf8");
}

function assertFailure(step: SaslStep, condition: string): SaslFailure {
	assert.equal(step.kind, "failure", JSON.stringify(step));
	assert.ok(step.kind === "failure");
	assert.equal(step.condition, condition);
	return step;
}

/**
 * What the client is told of a failure (RFC 6120 §6.4.5: the condition and the <text/>) and
 * whether it counts toward the throttles; the log-only fields (reason, username) may differ.
 */
function seenByClient(step: SaslStep): { condition?: string; text?: string; throttle?: boolean } {
	assert.ok(step.kind === "failure", JSON.stringify(step));
	return { condition: step.condition, text: step.text, throttle: step.throttle };
}

const utf8 = (s: string) => Buffer.from(s, "utf8");

// ---------------------------------------------------------------------------------------------
// A small, independent SCRAM client (RFC 5802 §3, §5, §7). Uses pbkdf2Sync: test code only.

interface ClientOptions {
	hash: "SHA-1" | "SHA-256";
	username: string;
	password: string;
	/** default "n,," */
	gs2Header?: string;
	cbData?: Buffer;
	nonce?: string;
}

class ScramTestClient {
	readonly o: ClientOptions;
	readonly algo: "sha1" | "sha256";
	readonly nonce: string;
	bare = "";
	authMessage = "";
	salted: Buffer = Buffer.alloc(0);

	constructor(o: ClientOptions) {
		this.o = o;
		this.algo = o.hash === "SHA-1" ? "sha1" : "sha256";
		this.nonce = o.nonce ?? randomBytes(12).toString("base64");
	}

	get gs2Header(): string {
		return this.o.gs2Header ?? "n,,";
	}

	/** RFC 5802 §5.1: ',' -> "=2C", '=' -> "=3D" */
	static escape(name: string): string {
		return name.replaceAll("=", "=3D").replaceAll(",", "=2C");
	}

	first(): Buffer {
		this.bare = `n=${ScramTestClient.escape(this.o.username)},r=${this.nonce}`;
		return utf8(this.gs2Header + this.bare);
	}

	finalWithoutProof(serverFirst: string): string {
		const r = /^r=([^,]+),s=([^,]+),i=(\d+)$/.exec(serverFirst);
		assert.ok(r, `bad server-first-message ${serverFirst}`);
		const [, nonce = "", salt = "", iter = ""] = r;
		assert.ok(nonce.startsWith(this.nonce), "server nonce must extend the client nonce");
		const len = this.o.hash === "SHA-1" ? 20 : 32;
		this.salted = pbkdf2Sync(this.o.password, Buffer.from(salt, "base64"), +iter, len, this.algo);
		const cb = Buffer.concat([utf8(this.gs2Header), this.o.cbData ?? Buffer.alloc(0)]);
		return `c=${cb.toString("base64")},r=${nonce}`;
	}

	proof(serverFirst: string, withoutProof: string): string {
		this.authMessage = `${this.bare},${serverFirst},${withoutProof}`;
		const clientKey = createHmac(this.algo, this.salted).update("Client Key").digest();
		const storedKey = createHash(this.algo).update(clientKey).digest();
		const sig = createHmac(this.algo, storedKey).update(this.authMessage).digest();
		return Buffer.from(clientKey.map((b, i) => b ^ (sig[i] ?? 0))).toString("base64");
	}

	final(serverFirst: string): Buffer {
		const withoutProof = this.finalWithoutProof(serverFirst);
		return utf8(`${withoutProof},p=${this.proof(serverFirst, withoutProof)}`);
	}

	expectedServerFinal(): string {
		const serverKey = createHmac(this.algo, this.salted).update("Server Key").digest();
		const sig = createHmac(this.algo, serverKey).update(this.authMessage).digest();
		return `v=${sig.toString("base64")}`;
	}
}

/** Runs a whole exchange and returns the last step. */
async function runScram(
	name: string,
	ctx: SaslContext,
	client: ScramTestClient,
): Promise<SaslStep> {
	const m = mech(name, ctx);
	const serverFirst = challenge(await m.step(client.first()));
	return m.step(client.final(serverFirst));
}

function assertScramSuccess(step: SaslStep, client: ScramTestClient, username: string): void {
	assert.equal(step.kind, "success", JSON.stringify(step));
	assert.ok(step.kind === "success");
	assert.equal(step.username, username);
	// RFC 6120 §6.4.6: the server's final message travels in <success/>.
	assert.equal(step.data?.toString("utf8"), client.expectedServerFinal());
}

// ---------------------------------------------------------------------------------------------
// Offering and creating mechanisms

test("offeredMechanisms: order and conditions (RFC 5802 §6, RFC 6120 §6.4.1)", () => {
	const cb = fakeChannelBinding();
	assert.deepEqual(
		offeredMechanisms({ secure: true, channelBinding: cb, allowPlainWithoutTls: false }),
		["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"],
	);
	assert.deepEqual(
		offeredMechanisms({ secure: true, channelBinding: null, allowPlainWithoutTls: false }),
		["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"],
	);
	// A source with no usable type does not make -PLUS available.
	assert.deepEqual(
		offeredMechanisms({
			secure: true,
			channelBinding: fakeChannelBinding([]),
			allowPlainWithoutTls: false,
		}),
		["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"],
	);
	// RFC 4616 §5 / RFC 6120 §13.8: PLAIN only under TLS unless allowed.
	assert.deepEqual(
		offeredMechanisms({ secure: false, channelBinding: null, allowPlainWithoutTls: false }),
		["SCRAM-SHA-256", "SCRAM-SHA-1"],
	);
	assert.deepEqual(
		offeredMechanisms({ secure: false, channelBinding: null, allowPlainWithoutTls: true }),
		["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"],
	);
});

test("createMechanism: null for unknown or not offered mechanisms (RFC 6120 §6.5.5 invalid-mechanism)", () => {
	const ctx = makeCtx();
	assert.equal(createMechanism("DIGEST-MD5", ctx), null);
	assert.equal(createMechanism("scram-sha-1", ctx), null); // names are case-sensitive
	assert.equal(createMechanism("SCRAM-SHA-256-PLUS", ctx), null); // no channel binding
	assert.equal(createMechanism("PLAIN", makeCtx({ secure: false })), null);
	assert.equal(
		createMechanism("PLAIN", makeCtx({ secure: false, allowPlainWithoutTls: true }))?.name,
		"PLAIN",
	);
	assert.equal(
		createMechanism("SCRAM-SHA-1-PLUS", makeCtx({ channelBinding: fakeChannelBinding() }))?.name,
		"SCRAM-SHA-1-PLUS",
	);
});

test("decodeSaslPayload: strict base64 (RFC 6120 §6.4.2, §6.5.3)", () => {
	assert.equal(decodeSaslPayload(""), null);
	assert.deepEqual(decodeSaslPayload("="), Buffer.alloc(0));
	assert.deepEqual(decodeSaslPayload("biws"), utf8("n,,"));
	assert.deepEqual(decodeSaslPayload("YQ=="), utf8("a"));
	assert.equal(decodeSaslPayload("YQ"), "invalid"); // missing padding
	assert.equal(decodeSaslPayload("YR=="), "invalid"); // non-zero padding bits
	assert.equal(decodeSaslPayload("bi ws"), "invalid"); // whitespace
	assert.equal(decodeSaslPayload("biws\n"), "invalid");
	assert.equal(decodeSaslPayload("b!ws"), "invalid");
	assert.equal(decodeSaslPayload("biws===="), "invalid");
	assert.equal(decodeSaslPayload("bi-_"), "invalid"); // base64url is not base64
});

// ---------------------------------------------------------------------------------------------
// RFC test vectors

test("RFC 5802 §5: SCRAM-SHA-1 example exchange", async () => {
	const m = mech("SCRAM-SHA-1", makeCtx(), { serverNonce: "3rfcNHYJY1ZVvWVs7j" });
	const first = await m.step(utf8("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"));
	assert.equal(
		challenge(first),
		"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
	);
	const last = await m.step(
		utf8("c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="),
	);
	assert.deepEqual(last, {
		kind: "success",
		data: utf8("v=rmF9pqV8S7suAoZWja4dJRkFsKQ="),
		username: "user",
	});
});

test("RFC 7677 §3: SCRAM-SHA-256 example exchange", async () => {
	const m = mech("SCRAM-SHA-256", makeCtx(), { serverNonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0" });
	const first = await m.step(utf8("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"));
	assert.equal(
		challenge(first),
		"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
	);
	const last = await m.step(
		utf8(
			"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0," +
				"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		),
	);
	assert.deepEqual(last, {
		kind: "success",
		data: utf8("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
		username: "user",
	});
});

// ---------------------------------------------------------------------------------------------
// Full exchanges with the test client

test("SCRAM full exchange with random nonces, both hashes (RFC 5802 §5, RFC 7677)", async () => {
	for (const [name, hash] of [
		["SCRAM-SHA-1", "SHA-1"],
		["SCRAM-SHA-256", "SHA-256"],
	] as const) {
		const client = new ScramTestClient({ hash, username: "juliet", password: "r0meo!" });
		assertScramSuccess(await runScram(name, makeCtx(), client), client, "juliet");
	}
});

test("SCRAM: the server nonce is random, printable and extends the client nonce (RFC 5802 §5.1)", async () => {
	const nonces = new Set<string>();
	for (let i = 0; i < 3; i++) {
		const m = mech("SCRAM-SHA-256", makeCtx());
		const sf = challenge(await m.step(utf8("n,,n=juliet,r=abc")));
		const r = /^r=abc([\x21-\x2b\x2d-\x7e]{16,}),s=/.exec(sf);
		assert.ok(r, sf);
		nonces.add(r[1] ?? "");
	}
	assert.equal(nonces.size, 3);
});

test("SCRAM: the username is prepared (case-folded here) and reported prepared", async () => {
	const client = new ScramTestClient({ hash: "SHA-256", username: "JULIET", password: "r0meo!" });
	assertScramSuccess(await runScram("SCRAM-SHA-256", makeCtx(), client), client, "juliet");
});

test("SCRAM: username escaping =2C and =3D (RFC 5802 §5.1)", async () => {
	const client = new ScramTestClient({ hash: "SHA-1", username: "a,b=c", password: "odd" });
	assert.match(client.first().toString(), /^n,,n=a=2Cb=3Dc,r=/);
	assertScramSuccess(await runScram("SCRAM-SHA-1", makeCtx(), client), client, "a,b=c");
	// Any other '=' sequence is invalid (RFC 5802 §5.1: "the server MUST fail").
	for (const bad of ["n,,n=a=2Xb,r=abc", "n,,n=a=,r=abc", "n,,n=a=2c,r=abc"]) {
		assertFailure(await mech("SCRAM-SHA-1", makeCtx()).step(utf8(bad)), "malformed-request");
	}
});

test("SCRAM: no initial response -> empty challenge, then the exchange (RFC 6120 §6.4.2)", async () => {
	const m = mech("SCRAM-SHA-256", makeCtx());
	assert.equal(challenge(await m.step(null)), "");
	const client = new ScramTestClient({ hash: "SHA-256", username: "romeo", password: "jul1et" });
	const sf = challenge(await m.step(client.first()));
	assertScramSuccess(await m.step(client.final(sf)), client, "romeo");
	// A second empty response is not a client-first-message.
	const m2 = mech("SCRAM-SHA-256", makeCtx());
	challenge(await m2.step(null));
	assertFailure(await m2.step(null), "malformed-request");
});

test("SCRAM: wrong password -> not-authorized (RFC 6120 §6.5.10)", async () => {
	const client = new ScramTestClient({ hash: "SHA-256", username: "juliet", password: "nope" });
	assertFailure(await runScram("SCRAM-SHA-256", makeCtx(), client), "not-authorized");
});

test("SCRAM: an unknown user gets a challenge shaped like a real one, then not-authorized (RFC 5802 §9)", async () => {
	const ctx = makeCtx();
	const shape = /^r=abc[\x21-\x2b\x2d-\x7e]+,s=([A-Za-z0-9+/]+=*),i=(\d+)$/;
	const real = challenge(await mech("SCRAM-SHA-256", ctx).step(utf8("n,,n=juliet,r=abc")));
	const ghost = challenge(await mech("SCRAM-SHA-256", ctx).step(utf8("n,,n=nobody,r=abc")));
	const ghost2 = challenge(await mech("SCRAM-SHA-256", ctx).step(utf8("n,,n=nobody,r=abc")));
	const other = challenge(await mech("SCRAM-SHA-256", ctx).step(utf8("n,,n=someone,r=abc")));
	const [, realSalt = "", realIter] = shape.exec(real) ?? [];
	const [, ghostSalt = "", ghostIter] = shape.exec(ghost) ?? [];
	assert.ok(realSalt && ghostSalt, `${real} / ${ghost}`);
	assert.equal(ghost.length, real.length);
	assert.equal(Buffer.from(ghostSalt, "base64").length, Buffer.from(realSalt, "base64").length);
	assert.equal(ghostIter, realIter);
	// Stable for the same name, like a real account's salt; different between names.
	assert.equal(shape.exec(ghost2)?.[1], ghostSalt);
	assert.notEqual(shape.exec(other)?.[1], ghostSalt);
	// Another server instance (another secret) shows another salt.
	const elsewhere = challenge(
		await mech("SCRAM-SHA-256", makeCtx({ unknownUserSecret: Buffer.from("x") })).step(
			utf8("n,,n=nobody,r=abc"),
		),
	);
	assert.notEqual(shape.exec(elsewhere)?.[1], ghostSalt);

	// And the end is the very same answer as a wrong password.
	const unknown = new ScramTestClient({ hash: "SHA-256", username: "nobody", password: "x" });
	const wrong = new ScramTestClient({ hash: "SHA-256", username: "juliet", password: "x" });
	const a = await runScram("SCRAM-SHA-256", ctx, unknown);
	const b = await runScram("SCRAM-SHA-256", ctx, wrong);
	assertFailure(a, "not-authorized");
	assert.deepEqual(seenByClient(a), seenByClient(b));
	assert.equal(assertFailure(b, "not-authorized").throttle, true, "a wrong password counts");
});

test("SCRAM: username that fails prep -> not-authorized; storage error -> temporary-auth-failure", async () => {
	assertFailure(
		await mech("SCRAM-SHA-1", makeCtx()).step(utf8("n,,n=bad user,r=abc")),
		"not-authorized",
	);
	const broken = makeCtx({
		getCredentials: () => Promise.reject(new Error("db down")),
	});
	// RFC 6120 §6.5.12 temporary-auth-failure
	assertFailure(
		await mech("SCRAM-SHA-1", broken).step(utf8("n,,n=juliet,r=abc")),
		"temporary-auth-failure",
	);
});

test("SCRAM: malformed client-first-messages (RFC 5802 §7) -> malformed-request", async () => {
	for (const bad of [
		"n,,",
		"n,,r=abc",
		"n,,n=juliet",
		"n,,n=,r=abc",
		"n,,n=juliet,r=",
		"n,,n=juliet,r=ab c", // nonce must be printable (RFC 5802 §7)
		"n,,n=juliet,r=ab\x7f",
		"n,,n=juliet,r=abc,junk",
		"x,,n=juliet,r=abc",
		"n,n=juliet,r=abc",
		"n,b=juliet,n=juliet,r=abc",
		"p=,,n=juliet,r=abc",
		"n,a=,n=juliet,r=abc",
		"nonsense",
	]) {
		assertFailure(await mech("SCRAM-SHA-1", makeCtx()).step(utf8(bad)), "malformed-request");
	}
	// Empty data ("=" on the wire) is not a client-first-message either.
	assertFailure(await mech("SCRAM-SHA-1", makeCtx()).step(Buffer.alloc(0)), "malformed-request");
});

test("SCRAM: unknown extensions after the nonce are ignored (RFC 5802 §7 extensions)", async () => {
	const m = mech("SCRAM-SHA-1", makeCtx(), { serverNonce: "3rfcNHYJY1ZVvWVs7j" });
	challenge(await m.step(utf8("n,,n=juliet,r=abc,x=whatever")));
});

test("SCRAM: m= extension -> failure (RFC 5802 §5.1)", async () => {
	assertFailure(
		await mech("SCRAM-SHA-1", makeCtx()).step(utf8("n,,m=ext,n=juliet,r=abc")),
		"malformed-request",
	);
	const client = new ScramTestClient({ hash: "SHA-1", username: "juliet", password: "r0meo!" });
	const m = mech("SCRAM-SHA-1", makeCtx());
	const sf = challenge(await m.step(client.first()));
	const withoutProof = `${client.finalWithoutProof(sf)},m=ext`;
	const last = await m.step(utf8(`${withoutProof},p=${client.proof(sf, withoutProof)}`));
	assertFailure(last, "malformed-request");
});

test("SCRAM: invalid base64 or UTF-8 -> incorrect-encoding (RFC 6120 §6.5.3)", async () => {
	assertFailure(
		await mech("SCRAM-SHA-1", makeCtx()).step(Buffer.from([0x6e, 0x2c, 0x2c, 0xff, 0xfe])),
		"incorrect-encoding",
	);
	for (const mutate of [
		(f: string) => f.replace(/^c=biws/, "c=bi ws"),
		(f: string) => f.replace(/^c=biws/, "c=biw"),
		(f: string) => f.replace(/,p=.*$/, ",p=!!!!"),
		(f: string) => f.slice(0, -1), // proof loses its '=' padding
	]) {
		const client = new ScramTestClient({ hash: "SHA-1", username: "juliet", password: "r0meo!" });
		const m = mech("SCRAM-SHA-1", makeCtx());
		const sf = challenge(await m.step(client.first()));
		assertFailure(await m.step(utf8(mutate(client.final(sf).toString()))), "incorrect-encoding");
	}
	const client = new ScramTestClient({ hash: "SHA-1", username: "juliet", password: "r0meo!" });
	const m = mech("SCRAM-SHA-1", makeCtx());
	challenge(await m.step(client.first()));
	assertFailure(await m.step(Buffer.from([0xc3, 0x28])), "incorrect-encoding");
});

test("SCRAM: nonce mismatch, c= mismatch and truncated proof -> not-authorized (RFC 5802 §5.1)", async () => {
	const cases: ((sf: string, c: ScramTestClient) => string)[] = [
		// r= not the combined nonce
		(sf, c) => {
			const wp = c.finalWithoutProof(sf).replace(/,r=/, ",r=X");
			return `${wp},p=${c.proof(sf, wp)}`;
		},
		// c= says "y,," while the client sent "n,,"
		(sf, c) => {
			const wp = c.finalWithoutProof(sf).replace("c=biws", "c=eSws");
			return `${wp},p=${c.proof(sf, wp)}`;
		},
		// proof of the wrong length
		(sf, c) => `${c.finalWithoutProof(sf)},p=AAAA`,
		// proof computed over another AuthMessage
		(sf, c) => `${c.finalWithoutProof(sf)},p=${c.proof(`${sf}x`, c.finalWithoutProof(sf))}`,
	];
	for (const make of cases) {
		const client = new ScramTestClient({ hash: "SHA-1", username: "juliet", password: "r0meo!" });
		const m = mech("SCRAM-SHA-1", makeCtx());
		const sf = challenge(await m.step(client.first()));
		assertFailure(await m.step(utf8(make(sf, client))), "not-authorized");
	}
	// Missing attributes in client-final-message -> malformed-request (RFC 5802 §7)
	const client = new ScramTestClient({ hash: "SHA-1", username: "juliet", password: "r0meo!" });
	const m = mech("SCRAM-SHA-1", makeCtx());
	const sf = challenge(await m.step(client.first()));
	assertFailure(await m.step(utf8(client.finalWithoutProof(sf))), "malformed-request");
});

test("a mechanism is not steppable after success or failure", async () => {
	const client = new ScramTestClient({ hash: "SHA-256", username: "juliet", password: "r0meo!" });
	const m = mech("SCRAM-SHA-256", makeCtx());
	const sf = challenge(await m.step(client.first()));
	const final = client.final(sf);
	assertScramSuccess(await m.step(final), client, "juliet");
	assertFailure(await m.step(final), "malformed-request");
	assertFailure(await m.step(client.first()), "malformed-request");

	const failed = mech("SCRAM-SHA-256", makeCtx());
	assertFailure(await failed.step(utf8("garbage")), "malformed-request");
	assertFailure(await failed.step(client.first()), "malformed-request"); // no restart

	const plain = mech("PLAIN", makeCtx());
	assert.equal((await plain.step(utf8("\0juliet\0r0meo!"))).kind, "success");
	assertFailure(await plain.step(utf8("\0juliet\0r0meo!")), "malformed-request");
});

// ---------------------------------------------------------------------------------------------
// Channel binding (RFC 5802 §6)

test("SCRAM-*-PLUS with tls-exporter and tls-server-end-point (RFC 5802 §6, RFC 9266, RFC 5929)", async () => {
	const ctx = makeCtx({ channelBinding: fakeChannelBinding() });
	for (const [name, hash] of [
		["SCRAM-SHA-256-PLUS", "SHA-256"],
		["SCRAM-SHA-1-PLUS", "SHA-1"],
	] as const) {
		for (const [type, data] of [
			["tls-exporter", FAKE_EXPORTER],
			["tls-server-end-point", FAKE_END_POINT],
		] as const) {
			const client = new ScramTestClient({
				hash,
				username: "juliet",
				password: "r0meo!",
				gs2Header: `p=${type},,`,
				cbData: data,
			});
			assertScramSuccess(await runScram(name, ctx, client), client, "juliet");
		}
	}
});

test("SCRAM-PLUS: client's channel binding data differs (another TLS channel) -> not-authorized", async () => {
	const ctx = makeCtx({ channelBinding: fakeChannelBinding() });
	const client = new ScramTestClient({
		hash: "SHA-256",
		username: "juliet",
		password: "r0meo!",
		gs2Header: "p=tls-exporter,,",
		cbData: Buffer.alloc(32, 1), // what a man in the middle's channel would give
	});
	assertFailure(await runScram("SCRAM-SHA-256-PLUS", ctx, client), "not-authorized");
	// c= with the header only (no cb data) also fails.
	const noData = new ScramTestClient({
		hash: "SHA-256",
		username: "juliet",
		password: "r0meo!",
		gs2Header: "p=tls-exporter,,",
	});
	assertFailure(await runScram("SCRAM-SHA-256-PLUS", ctx, noData), "not-authorized");
});

test("SCRAM-PLUS: unsupported channel binding type -> malformed-request with RFC 5802 §7 e=unsupported-channel-binding-type as text (RFC 5802 §6, RFC 6120 §6.4.5), not counted", async () => {
	const ctx = makeCtx({ channelBinding: fakeChannelBinding(["tls-server-end-point"]) });
	for (const type of ["tls-exporter", "tls-unique", "x-made-up"]) {
		for (const name of ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"]) {
			const step = await mech(name, ctx).step(utf8(`p=${type},,n=juliet,r=abc`));
			// RFC 6120 §6.5.9: nothing about the credentials was checked, so not §6.5.10.
			const f = assertFailure(step, "malformed-request");
			assert.equal(f.text, "unsupported-channel-binding-type");
			assert.equal(f.throttle, false, "a capability mismatch is not a password guess");
			assert.deepEqual(f.channelBinding, { requested: type, available: ["tls-server-end-point"] });
			assert.equal(f.username, "juliet");
			assert.match(f.reason, new RegExp(`channel binding type ${type}`));
		}
	}
	// RFC 9266 §1: the log says why tls-unique in particular is never there.
	const unique = await mech("SCRAM-SHA-256-PLUS", ctx).step(utf8("p=tls-unique,,n=juliet,r=abc"));
	assert.match(assertFailure(unique, "malformed-request").reason, /undefined for TLS 1\.3/);
});

test("SCRAM-PLUS: slixmpp 1.8.3's sequence (p=tls-unique twice, then y) ends in success, no failure counted (issue 11)", async () => {
	// What Debian's slixmpp sends under TLS 1.3 (util/sasl/mechanisms.py SCRAM.process_1).
	const ctx = makeCtx({ channelBinding: fakeChannelBinding() });
	for (const name of ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"]) {
		const f = assertFailure(
			await mech(name, ctx).step(utf8("p=tls-unique,,n=juliet,r=123")),
			"malformed-request",
		);
		assert.equal(f.throttle, false);
	}
	const y = new ScramTestClient({
		hash: "SHA-256",
		username: "juliet",
		password: "r0meo!",
		gs2Header: "y,,",
	});
	assertScramSuccess(await runScram("SCRAM-SHA-256", ctx, y), y, "juliet");
});

test("SCRAM-PLUS without p= -> failure (RFC 5802 §6)", async () => {
	const ctx = makeCtx({ channelBinding: fakeChannelBinding() });
	for (const header of ["n,,", "y,,"]) {
		assertFailure(
			await mech("SCRAM-SHA-256-PLUS", ctx).step(utf8(`${header}n=juliet,r=abc`)),
			"malformed-request",
		);
	}
});

test("p= with a non-PLUS mechanism -> failure (RFC 5802 §6)", async () => {
	for (const ctx of [makeCtx({ channelBinding: fakeChannelBinding() }), makeCtx()]) {
		assertFailure(
			await mech("SCRAM-SHA-256", ctx).step(utf8("p=tls-exporter,,n=juliet,r=abc")),
			"malformed-request",
		);
	}
});

test("y flag while the server offers -PLUS -> not-authorized (downgrade, RFC 5802 §6)", async () => {
	const ctx = makeCtx({
		channelBinding: fakeChannelBinding(),
		strictChannelBindingDowngrade: true,
	});
	const step = await mech("SCRAM-SHA-1", ctx).step(utf8("y,,n=juliet,r=abc"));
	assertFailure(step, "not-authorized");
	// ...but "y" is fine where the server has no channel binding (RFC 5802 §6),
	const y = new ScramTestClient({
		hash: "SHA-1",
		username: "juliet",
		password: "r0meo!",
		gs2Header: "y,,",
	});
	assertScramSuccess(await runScram("SCRAM-SHA-1", makeCtx(), y), y, "juliet");
	// ...or a source with no usable type,
	const y2 = new ScramTestClient({ ...y.o });
	const noTypes = makeCtx({ channelBinding: fakeChannelBinding([]) });
	assertScramSuccess(await runScram("SCRAM-SHA-1", noTypes, y2), y2, "juliet");
	// and "n" (client without channel binding support) is fine even when the server has it.
	const n = new ScramTestClient({ hash: "SHA-1", username: "juliet", password: "r0meo!" });
	assertScramSuccess(await runScram("SCRAM-SHA-1", ctx, n), n, "juliet");
});

// ---------------------------------------------------------------------------------------------
// authzid (RFC 6120 §6.3.8)

test("SCRAM authzid: empty or own bare JID succeed; anything else -> invalid-authzid (RFC 6120 §6.3.8)", async () => {
	const cases: [authzid: string, expect: "success" | "invalid-authzid"][] = [
		["", "success"],
		["juliet@example.com", "success"],
		["Juliet@Example.COM", "success"], // after prep
		["romeo@example.com", "invalid-authzid"], // another account: never
		["juliet@example.org", "invalid-authzid"], // another domain
		["juliet@example.com/balcony", "invalid-authzid"], // a full JID is not the account
		["example.com", "invalid-authzid"],
		["juliet", "invalid-authzid"],
		["@example.com", "invalid-authzid"],
		["bad user@example.com", "invalid-authzid"],
	];
	for (const [authzid, expect] of cases) {
		const gs2Header = authzid === "" ? "n,," : `n,a=${ScramTestClient.escape(authzid)},`;
		const client = new ScramTestClient({
			hash: "SHA-256",
			username: "juliet",
			password: "r0meo!",
			gs2Header,
		});
		const step = await runScram("SCRAM-SHA-256", makeCtx(), client);
		if (expect === "success") assertScramSuccess(step, client, "juliet");
		else assertFailure(step, expect);
	}
});

test("SCRAM authzid with escaped characters is compared unescaped (RFC 5802 §5.1)", async () => {
	const own = new ScramTestClient({
		hash: "SHA-1",
		username: "a,b=c",
		password: "odd",
		gs2Header: "n,a=a=2Cb=3Dc@example.com,",
	});
	assertScramSuccess(await runScram("SCRAM-SHA-1", makeCtx(), own), own, "a,b=c");
});

test("SCRAM authzid is only judged after the proof: wrong password + other authzid -> not-authorized", async () => {
	const client = new ScramTestClient({
		hash: "SHA-256",
		username: "juliet",
		password: "wrong",
		gs2Header: "n,a=romeo@example.com,",
	});
	assertFailure(await runScram("SCRAM-SHA-256", makeCtx(), client), "not-authorized");
});

// ---------------------------------------------------------------------------------------------
// PLAIN (RFC 4616)

test("PLAIN: success, wrong password, unknown user (RFC 4616 §2)", async () => {
	const ok = await mech("PLAIN", makeCtx()).step(utf8("\0Juliet\0r0meo!"));
	assert.deepEqual(ok, { kind: "success", data: null, username: "juliet" });
	assertFailure(await mech("PLAIN", makeCtx()).step(utf8("\0juliet\0nope")), "not-authorized");
	const unknown = await mech("PLAIN", makeCtx()).step(utf8("\0nobody\0r0meo!"));
	const wrong = await mech("PLAIN", makeCtx()).step(utf8("\0juliet\0nope"));
	assertFailure(unknown, "not-authorized");
	assert.deepEqual(seenByClient(unknown), seenByClient(wrong));
	assert.equal(assertFailure(wrong, "not-authorized").throttle, true, "a wrong password counts");
	assertFailure(await mech("PLAIN", makeCtx()).step(utf8("\0bad user\0x")), "not-authorized");
});

test("PLAIN: authzid rules (RFC 6120 §6.3.8)", async () => {
	const cases: [authzid: string, expect: "success" | "invalid-authzid"][] = [
		["", "success"],
		["juliet@example.com", "success"],
		["romeo@example.com", "invalid-authzid"],
		["juliet@example.org", "invalid-authzid"],
		["romeo", "invalid-authzid"],
	];
	for (const [authzid, expect] of cases) {
		const step = await mech("PLAIN", makeCtx()).step(utf8(`${authzid}\0juliet\0r0meo!`));
		if (expect === "success") assert.equal(step.kind, "success", `${authzid}`);
		else assertFailure(step, expect);
	}
	// Never: logging in as romeo with juliet's password through authzid, nor the reverse order.
	assertFailure(
		await mech("PLAIN", makeCtx()).step(utf8("romeo@example.com\0juliet\0r0meo!")),
		"invalid-authzid",
	);
	// Wrong password with someone else's authzid reveals nothing about the authzid.
	assertFailure(
		await mech("PLAIN", makeCtx()).step(utf8("romeo@example.com\0juliet\0x")),
		"not-authorized",
	);
});

test("PLAIN: malformed messages and encoding (RFC 4616 §2, RFC 6120 §6.5.3)", async () => {
	for (const bad of ["juliet\0r0meo!", "\0\0r0meo!", "\0juliet\0", "\0a\0b\0c", "plain"]) {
		assertFailure(await mech("PLAIN", makeCtx()).step(utf8(bad)), "malformed-request");
	}
	assertFailure(await mech("PLAIN", makeCtx()).step(Buffer.alloc(0)), "malformed-request");
	assertFailure(
		await mech("PLAIN", makeCtx()).step(Buffer.from([0, 0x6a, 0, 0xff])),
		"incorrect-encoding",
	);
	// Each message is decoded on its own: a sequence cut at the end of one (0xc3) is not
	// completed by the next one's first byte (0xa9 would make "é" of both).
	assertFailure(
		await mech("PLAIN", makeCtx()).step(Buffer.from([0, 0x6a, 0, 0x72, 0xc3])),
		"incorrect-encoding",
	);
	assertFailure(
		await mech("PLAIN", makeCtx()).step(Buffer.from([0xa9, 0, ...utf8("juliet\0r0meo!")])),
		"incorrect-encoding",
	);
	assert.equal((await mech("PLAIN", makeCtx()).step(utf8("\0juliet\0r0meo!"))).kind, "success");
});

test("PLAIN: no initial response -> empty challenge, then the response (RFC 6120 §6.4.2)", async () => {
	const m = mech("PLAIN", makeCtx());
	assert.equal(challenge(await m.step(null)), "");
	assert.equal((await m.step(utf8("\0juliet\0r0meo!"))).kind, "success");
});

test("PLAIN verifies against SHA-256, falling back to SHA-1", async () => {
	const only1 = {
		"SHA-1": await deriveCredential("SHA-1", "legacy", 4096),
	} as unknown as StoredCredentials; // deliberately incomplete record, as old data might be
	const ctx = makeCtx({ getCredentials: async () => only1 });
	assert.equal((await mech("PLAIN", ctx).step(utf8("\0old\0legacy"))).kind, "success");
	assertFailure(await mech("PLAIN", ctx).step(utf8("\0old\0other")), "not-authorized");
	// With both, SHA-256 is the one checked: a SHA-1 entry for another password is ignored.
	const mixed: StoredCredentials = {
		"SHA-1": await deriveCredential("SHA-1", "one", 4096),
		"SHA-256": await deriveCredential("SHA-256", "two", 4096),
	};
	const ctx2 = makeCtx({ getCredentials: async () => mixed });
	assert.equal((await mech("PLAIN", ctx2).step(utf8("\0u\0two"))).kind, "success");
	assertFailure(await mech("PLAIN", ctx2).step(utf8("\0u\0one")), "not-authorized");
});

test("PLAIN: storage error -> temporary-auth-failure (RFC 6120 §6.5.12)", async () => {
	const ctx = makeCtx({ getCredentials: () => Promise.reject(new Error("db down")) });
	assertFailure(await mech("PLAIN", ctx).step(utf8("\0juliet\0r0meo!")), "temporary-auth-failure");
});

test("y flag with channel binding offered is accepted unless the strict RFC 5802 §6 check is on (XEP-0440 interop)", async () => {
	const y = new ScramTestClient({
		hash: "SHA-1",
		username: "juliet",
		password: "r0meo!",
		gs2Header: "y,,",
	});
	const ctx = makeCtx({ channelBinding: fakeChannelBinding() });
	assertScramSuccess(await runScram("SCRAM-SHA-1", ctx, y), y, "juliet");
});

// ---------------------------------------------------------------------------------------------
// Which failures count toward the SASL failure throttles (issue 22: a correct password never
// does; wrong passwords, unknown users and malformed input do).

test("throttle: wrong password, unknown user, unpreparable name and malformed input count (RFC 6120 §6.5.10, §6.5.9)", async () => {
	const ctx = makeCtx();
	const counted: [string, SaslStep][] = [
		[
			"SCRAM wrong password",
			await runScram(
				"SCRAM-SHA-256",
				ctx,
				new ScramTestClient({ hash: "SHA-256", username: "juliet", password: "x" }),
			),
		],
		[
			"SCRAM unknown user",
			await runScram(
				"SCRAM-SHA-1",
				ctx,
				new ScramTestClient({ hash: "SHA-1", username: "nobody", password: "x" }),
			),
		],
		["SCRAM bad name", await mech("SCRAM-SHA-1", ctx).step(utf8("n,,n=bad user,r=abc"))],
		["SCRAM malformed", await mech("SCRAM-SHA-1", ctx).step(utf8("x,,n=juliet,r=abc"))],
		["PLAIN wrong password", await mech("PLAIN", ctx).step(utf8("\0juliet\0nope"))],
		["PLAIN unknown user", await mech("PLAIN", ctx).step(utf8("\0nobody\0nope"))],
		["PLAIN malformed", await mech("PLAIN", ctx).step(utf8("juliet"))],
	];
	for (const [what, step] of counted) {
		assert.ok(step.kind === "failure", what);
		assert.equal(step.throttle, true, what);
	}
	// The log tells a wrong password from an unknown user; the client is told the same.
	const wrong = counted[4]?.[1];
	const unknown = counted[5]?.[1];
	assert.ok(wrong?.kind === "failure" && unknown?.kind === "failure");
	assert.equal(wrong.reason, "wrong password");
	assert.equal(unknown.reason, "unknown user");
});

test("throttle: a storage error (RFC 6120 §6.5.13 temporary-auth-failure) does not count, and is a warning", async () => {
	const broken = makeCtx({ getCredentials: () => Promise.reject(new Error("db down")) });
	for (const step of [
		await mech("SCRAM-SHA-256", broken).step(utf8("n,,n=juliet,r=abc")),
		await mech("PLAIN", broken).step(utf8("\0juliet\0r0meo!")),
	]) {
		const f = assertFailure(step, "temporary-auth-failure");
		assert.equal(f.throttle, false);
		assert.equal(f.warn, true);
	}
});

test("throttle: invalid-authzid after a proven password (RFC 6120 §6.3.8, §6.5.6) does not count", async () => {
	const plain = await mech("PLAIN", makeCtx()).step(utf8("romeo@example.com\0juliet\0r0meo!"));
	assert.equal(assertFailure(plain, "invalid-authzid").throttle, false);
	const client = new ScramTestClient({
		hash: "SHA-256",
		username: "juliet",
		password: "r0meo!",
		gs2Header: "n,a=romeo@example.com,",
	});
	const scram = await runScram("SCRAM-SHA-256", makeCtx(), client);
	assert.equal(assertFailure(scram, "invalid-authzid").throttle, false);
});

test("throttle: c= of another TLS channel (RFC 5802 §5.1, e=channel-bindings-dont-match) counts only with a wrong proof; with a right one it is a warning", async () => {
	const ctx = makeCtx({ channelBinding: fakeChannelBinding() });
	const other = Buffer.alloc(32, 1); // what a man in the middle's (or a proxy's) channel gives
	const right = new ScramTestClient({
		hash: "SHA-256",
		username: "juliet",
		password: "r0meo!",
		gs2Header: "p=tls-exporter,,",
		cbData: other,
	});
	const wrong = new ScramTestClient({ ...right.o, password: "guess" });
	const a = assertFailure(await runScram("SCRAM-SHA-256-PLUS", ctx, right), "not-authorized");
	const b = assertFailure(await runScram("SCRAM-SHA-256-PLUS", ctx, wrong), "not-authorized");
	// The client is told the same either way.
	assert.equal(a.text, "channel-bindings-dont-match");
	assert.equal(b.text, "channel-bindings-dont-match");
	assert.equal(a.throttle, false, "the password was right");
	assert.equal(a.warn, true);
	assert.equal(b.throttle, true, "a wrong password still counts");
});

test("throttle: the strict 'y' downgrade refusal (RFC 5802 §6) does not count, and is a warning", async () => {
	const ctx = makeCtx({
		channelBinding: fakeChannelBinding(),
		strictChannelBindingDowngrade: true,
	});
	const f = assertFailure(
		await mech("SCRAM-SHA-1", ctx).step(utf8("y,,n=juliet,r=abc")),
		"not-authorized",
	);
	assert.equal(f.text, "server-does-support-channel-binding");
	assert.equal(f.throttle, false);
	assert.equal(f.warn, true);
});

// --- ANONYMOUS (RFC 4505) ---------------------------------------------------------------------

const open = { refuse: () => null };

test("ANONYMOUS: offered alone on an anonymous host, never elsewhere (RFC 4505, XEP-0175)", () => {
	assert.deepEqual(offeredMechanisms(makeCtx({ anonymous: open })), ["ANONYMOUS"]);
	assert.ok(!offeredMechanisms(makeCtx({ allowPlainWithoutTls: true })).includes("ANONYMOUS"));
	assert.equal(createMechanism("ANONYMOUS", makeCtx()), null);
	assert.equal(createMechanism("PLAIN", makeCtx({ anonymous: open })), null);
	assert.equal(createMechanism("SCRAM-SHA-256", makeCtx({ anonymous: open })), null);
});

test("ANONYMOUS: every login is a new random 128-bit localpart; the trace is not the identity (RFC 4505 §2)", async () => {
	const names = new Set<string>();
	for (const input of [null, Buffer.alloc(0), Buffer.from("alice@example.org")]) {
		const mech = createMechanism("ANONYMOUS", makeCtx({ anonymous: open })) as SaslMechanism;
		const step = await mech.step(input);
		assert.equal(step.kind, "success");
		if (step.kind !== "success") return;
		assert.match(step.username, /^[0-9a-f]{32}$/);
		assert.equal(step.data, null); // no additional data (RFC 6120 §6.4.6)
		names.add(step.username);
	}
	assert.equal(names.size, 3);
});

test("ANONYMOUS: a cap reached is temporary-auth-failure, counted only when it is the client's own address (RFC 6120 §6.5)", async () => {
	for (const throttle of [false, true]) {
		const ctx = makeCtx({
			anonymous: { refuse: () => ({ text: "full", reason: "cap", throttle }) },
		});
		const step = await (createMechanism("ANONYMOUS", ctx) as SaslMechanism).step(null);
		assert.equal(step.kind, "failure");
		if (step.kind !== "failure") return;
		assert.equal(step.condition, "temporary-auth-failure");
		assert.equal(step.text, "full");
		assert.equal(step.throttle, throttle);
	}
});

test("sanitizeTrace: decoded leniently, control and format characters replaced, 255 characters at most (RFC 4505 §2)", () => {
	assert.equal(sanitizeTrace(null), "");
	assert.equal(sanitizeTrace(Buffer.from("guest@example.org")), "guest@example.org");
	assert.equal(
		sanitizeTrace(Buffer.from("a\r\nfake log line\u202e\u001b[31m")),
		"a??fake log line??[31m",
	);
	assert.equal(sanitizeTrace(Buffer.from([0x61, 0xff, 0x62])), "a\ufffdb");
	const long = sanitizeTrace(Buffer.from("é".repeat(300)));
	assert.equal(Array.from(long).length, 256);
	assert.ok(long.endsWith("é…"));
});
