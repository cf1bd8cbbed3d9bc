/**
 * The federation part of `parley check` with a DNS that answers what each test says (the
 * machine's DNS has no records for test domains; test/e2e/cli.test.ts covers that case and the
 * command itself).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { PeerCheck } from "../../s2s/certificates.ts";
import {
	checkFederation,
	type FederationDns,
	type FederationInput,
	type Finding,
	type SrvRecord,
} from "./check-federation.ts";

function dnsError(code: string, message: string): Error {
	return Object.assign(new Error(message), { code });
}

/** SRV answers by name (an Error is thrown), addresses by host; anything else is ENOTFOUND. */
function fakeDns(
	srv: Record<string, SrvRecord[] | Error>,
	addresses: Record<string, string[]>,
): FederationDns {
	return {
		async resolveSrv(name) {
			const r = srv[name];
			if (r instanceof Error) throw r;
			if (!r) throw dnsError("ENOTFOUND", `querySrv ENOTFOUND ${name}`);
			return r;
		},
		async lookup(host) {
			const r = addresses[host];
			if (!r) throw dnsError("ENOTFOUND", `getaddrinfo ENOTFOUND ${host}`);
			return r;
		},
	};
}

const record = (name: string, port: number, priority = 0, weight = 5): SrvRecord => ({
	name,
	port,
	priority,
	weight,
});

function input(over: Partial<FederationInput> = {}): FederationInput {
	return {
		domains: [{ domain: "example.org", certificate: { kind: "unknown" } }],
		listener: { address: "::", port: 5269 },
		dns: fakeDns({}, {}),
		checkPem: () => ({ valid: true }),
		localAddresses: ["127.0.0.1", "::1", "203.0.113.7", "2001:db8::7"],
		...over,
	};
}

const lines = (findings: Finding[]) => findings.map((f) => `${f.level} ${f.line}`);

describe("DNS", () => {
	test("an _xmpp-server record to this machine on the listener's port is fine", async () => {
		const dns = fakeDns(
			{ "_xmpp-server._tcp.example.org": [record("xmpp.example.org.", 5269)] },
			{ "xmpp.example.org": ["203.0.113.7", "2001:db8::7"] },
		);
		const out = lines(await checkFederation(input({ dns })));
		assert.deepEqual(out.slice(0, 2), [
			"ok federation: example.org: SRV _xmpp-server._tcp.example.org -> xmpp.example.org:5269 (priority 0, weight 5): the s2s listener's port",
			"ok federation: example.org: address of xmpp.example.org: 203.0.113.7, 2001:db8::7, this machine",
		]);
	});

	test("another port, another machine: warnings, each on its own line", async () => {
		const dns = fakeDns(
			{
				"_xmpp-server._tcp.example.org": [
					record("b.example.net", 5270, 10),
					record("a.example.net", 5269, 5),
				],
			},
			{ "a.example.net": ["198.51.100.1"], "b.example.net": ["::ffff:203.0.113.7"] },
		);
		const out = lines(await checkFederation(input({ dns })));
		assert.deepEqual(out.slice(0, 4), [
			"ok federation: example.org: SRV _xmpp-server._tcp.example.org -> a.example.net:5269 (priority 5, weight 5): the s2s listener's port",
			"warning federation: example.org: SRV _xmpp-server._tcp.example.org -> b.example.net:5270 (priority 10, weight 5): warning: the s2s listener is on port 5269, not 5270 (fine only if something forwards 5270 to it)",
			"warning federation: example.org: address of a.example.net: warning: 198.51.100.1, not an address of this machine",
			"ok federation: example.org: address of b.example.net: 203.0.113.7, this machine",
		]);
	});

	test("a listener bound to one address is compared with that address only", async () => {
		const dns = fakeDns(
			{ "_xmpp-server._tcp.example.org": [record("xmpp.example.org", 5269)] },
			{ "xmpp.example.org": ["203.0.113.7"] },
		);
		const out = lines(
			await checkFederation(input({ dns, listener: { address: "203.0.113.8", port: 5269 } })),
		);
		assert.equal(
			out[1],
			"warning federation: example.org: address of xmpp.example.org: warning: 203.0.113.7, not the s2s listener's address 203.0.113.8",
		);
	});

	test("behind NAT (only private addresses here) it cannot tell", async () => {
		const dns = fakeDns(
			{ "_xmpp-server._tcp.example.org": [record("xmpp.example.org", 5269)] },
			{ "xmpp.example.org": ["198.51.100.1"] },
		);
		const out = lines(
			await checkFederation(input({ dns, localAddresses: ["127.0.0.1", "10.1.2.3", "fe80::1"] })),
		);
		assert.equal(
			out[1],
			"ok federation: example.org: address of xmpp.example.org: 198.51.100.1: cannot tell whether that reaches this machine, whose addresses are all private (NAT?)",
		);
	});

	test("no records: the RFC 6120 §3.2.2 fallback, compared with the listener", async () => {
		const dns = fakeDns({}, { "example.org": ["203.0.113.7"] });
		const out = lines(
			await checkFederation(input({ dns, listener: { address: "::", port: 5999 } })),
		);
		assert.deepEqual(out.slice(0, 2), [
			"warning federation: example.org: SRV: warning: no _xmpp-server._tcp.example.org or _xmpps-server._tcp.example.org records; peers fall back to example.org:5269 (RFC 6120 §3.2.2): the s2s listener is on port 5999, not 5269 (fine only if something forwards 5269 to it)",
			"ok federation: example.org: address of example.org: 203.0.113.7, this machine",
		]);
	});

	test("a DNS failure is one line, not a stack trace, and only a warning", async () => {
		const dns = fakeDns(
			{
				"_xmpp-server._tcp.example.org": dnsError(
					"ETIMEOUT",
					"querySrv ETIMEOUT _xmpp-server._tcp.example.org",
				),
				"_xmpps-server._tcp.example.org": dnsError("ESERVFAIL", "querySrv ESERVFAIL x"),
			},
			{},
		);
		const out = await checkFederation(input({ dns }));
		assert.deepEqual(lines(out).slice(0, 2), [
			"warning federation: example.org: SRV _xmpp-server._tcp.example.org: warning: DNS lookup failed (querySrv ETIMEOUT _xmpp-server._tcp.example.org)",
			"warning federation: example.org: SRV _xmpps-server._tcp.example.org: warning: DNS lookup failed (querySrv ESERVFAIL x)",
		]);
		assert.equal(out.length, 3, "the certificate line follows; no fallback line");
	});

	test("_xmpps-server records with [listeners.s2s_direct_tls] off; without _xmpp-server, a fallback", async () => {
		const dns = fakeDns(
			{ "_xmpps-server._tcp.example.org": [record("xmpp.example.org", 5270)] },
			{},
		);
		const out = lines(await checkFederation(input({ dns })));
		assert.deepEqual(out.slice(0, 2), [
			"warning federation: example.org: SRV _xmpp-server._tcp.example.org: warning: none; peers without XEP-0368 fall back to example.org:5269",
			"warning federation: example.org: SRV _xmpps-server._tcp.example.org -> xmpp.example.org:5270 (priority 0, weight 5): warning: direct TLS (XEP-0368), but [listeners.s2s_direct_tls] is off: peers that try it fail there, then use _xmpp-server",
		]);
	});

	test("_xmpps-server records against the XEP-0368 listener's port", async () => {
		const dns = fakeDns(
			{ "_xmpps-server._tcp.example.org": [record("xmpp.example.org", 5270)] },
			{},
		);
		const out = lines(
			await checkFederation({ ...input({ dns }), directTlsListener: { port: 5270 } }),
		);
		assert.equal(
			out[1],
			"ok federation: example.org: SRV _xmpps-server._tcp.example.org -> xmpp.example.org:5270 (priority 0, weight 5): the s2s_direct_tls listener's port",
		);
	});

	test('a "." target says there is no service', async () => {
		const dns = fakeDns({ "_xmpp-server._tcp.example.org": [record(".", 0)] }, {});
		const out = lines(await checkFederation(input({ dns })));
		assert.equal(
			out[0],
			'warning federation: example.org: SRV _xmpp-server._tcp.example.org -> ".": warning: example.org says it offers no server-to-server service',
		);
	});

	test("a target on loopback only, or with no address", async () => {
		const dns = fakeDns(
			{
				"_xmpp-server._tcp.example.org": [
					record("localhost", 5269),
					record("gone.example.org", 5269, 1),
				],
			},
			{ localhost: ["127.0.0.1", "::1"] },
		);
		const out = lines(await checkFederation(input({ dns })));
		assert.deepEqual(out.slice(2, 4), [
			"warning federation: example.org: address of localhost: warning: only loopback (127.0.0.1, ::1): peers cannot reach it",
			"warning federation: example.org: address of gone.example.org: warning: no address (getaddrinfo ENOTFOUND gone.example.org): peers cannot connect",
		]);
	});
});

describe("certificates", () => {
	const dns = fakeDns(
		{ "_xmpp-server._tcp.example.org": [record("example.org", 5269)] },
		{
			"example.org": ["203.0.113.7"],
		},
	);
	async function certificateLine(check: PeerCheck, owner = "example.org", domain = "example.org") {
		const out = await checkFederation(
			input({
				dns,
				domains: [{ domain, certificate: { kind: "file", path: "/etc/x.crt", pem: "PEM", owner } }],
				checkPem: () => check,
			}),
		);
		return out.at(-1) as Finding;
	}

	test("valid", async () => {
		const f = await certificateLine({ valid: true });
		assert.equal(f.level, "ok");
		assert.equal(
			f.line,
			"federation: example.org: certificate /etc/x.crt: valid for federation (chains to a trusted root, names example.org)",
		);
	});

	test("a component shows whose certificate it gets", async () => {
		const f = await certificateLine({ valid: true }, "example.org", "muc.example.org");
		assert.match(
			f.line,
			/^federation: muc\.example\.org: certificate \(example\.org's\) \/etc\/x\.crt: valid/,
		);
	});

	test("expired: an error, with a line for standard error", async () => {
		const f = await certificateLine({
			valid: false,
			reason: "certificate CN=example.org is expired or not yet valid",
			problem: "expired",
		});
		assert.equal(f.level, "error");
		assert.match(
			f.line,
			/certificate \/etc\/x\.crt: EXPIRED \(certificate CN=example\.org is expired/,
		);
		assert.equal(
			f.problem,
			"federation.example.org: certificate /etc/x.crt: certificate CN=example.org is expired or not yet valid",
		);
	});

	test("self-signed, untrusted, wrong name: warnings that say dialback only", async () => {
		for (const [problem, expected] of [
			["self-signed", /: warning: self-signed: peers will only accept dialback/],
			[
				"untrusted",
				/: warning: nope \(system roots and s2s\.ca_file\): peers will only accept dialback/,
			],
			[
				"name",
				/: warning: does not name example\.org \(DNS-ID, SRV-ID or XmppAddr\): peers will only/,
			],
		] as const) {
			const f = await certificateLine({ valid: false, reason: "nope", problem });
			assert.equal(f.level, "warning", problem);
			assert.match(f.line, expected);
			assert.equal(f.problem, undefined);
		}
	});

	test("the generated self-signed certificate: a warning", async () => {
		const out = await checkFederation(
			input({
				dns,
				domains: [
					{ domain: "example.org", certificate: { kind: "self-signed", owner: "example.org" } },
				],
			}),
		);
		const f = out.at(-1) as Finding;
		assert.equal(f.level, "warning");
		assert.match(
			f.line,
			/^federation: example\.org: certificate: warning: self-signed \(generated at start\): peers will only accept dialback, and those requiring certificates \(Prosody's s2s_secure_auth, Parley's s2s\.secure_auth\) will refuse$/,
		);
	});

	test("a self-signed certificate already on disk is named by its file (issue 22, item 6)", async () => {
		const out = await checkFederation(
			input({
				dns,
				domains: [
					{
						domain: "example.org",
						certificate: {
							kind: "self-signed",
							owner: "example.org",
							path: "/d/certs/self-signed.crt",
						},
					},
				],
			}),
		);
		assert.match(
			(out.at(-1) as Finding).line,
			/^federation: example\.org: certificate: warning: self-signed \/d\/certs\/self-signed\.crt: peers will only accept dialback/,
		);
	});
});
