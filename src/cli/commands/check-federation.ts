/**
 * `parley check`, federation part (when `[listeners.s2s]` is on): for every domain served here
 * (hosts, and components, which remote servers reach too), what a remote server will find.
 *
 * - DNS: the `_xmpp-server._tcp` and `_xmpps-server._tcp` SRV records (RFC 6120 §3.2.1,
 *   XEP-0368), the port they give against the s2s listener's, and whether their target is this
 *   machine (its addresses against the target's, when that can be told); without records, the
 *   `<domain>:5269` fallback of RFC 6120 §3.2.2.
 * - Certificate: valid for federation as a peer checks it (PeerVerifier: a chain to the system
 *   roots and `s2s.ca_file`, validity dates, the domain as DNS-ID / SRV-ID / XmppAddr).
 *
 * One line per finding. A warning is something federation survives (peers fall back to 5269 or
 * to dialback) and does not fail the check; an error (an expired certificate) does.
 */
import { BlockList, isIP } from "node:net";
import type { PeerCheck } from "../../s2s/certificates.ts";
import type { SrvLookup } from "../../s2s/resolver.ts";

export type SrvRecord = Awaited<ReturnType<SrvLookup["resolveSrv"]>>[number];

/** What the federation check asks of DNS (tests replace it). */
export interface FederationDns extends SrvLookup {
	/** Every address (A and AAAA) of `host`. */
	lookup(host: string): Promise<string[]>;
}

/** The certificate a remote server is shown for a domain. */
export type DomainCertificate =
	| { kind: "file"; path: string; pem: string; owner: string }
	| {
			kind: "self-signed";
			owner: string /** The file, when one is there already. */;
			path?: string;
	  }
	/** Certificates did not load (already reported by check). */
	| { kind: "unknown" };

export interface FederationDomain {
	domain: string;
	certificate: DomainCertificate;
}

export interface FederationInput {
	domains: FederationDomain[];
	/** The s2s listener. */
	listener: { address: string; port: number };
	/** The XEP-0368 direct TLS listener, when `[listeners.s2s_direct_tls]` is on. */
	directTlsListener?: { port: number } | null;
	dns: FederationDns;
	/** Checks a PEM chain for a domain as a peer would (PeerVerifier.checkPem). */
	checkPem(pem: string, domain: string): PeerCheck;
	/** This machine's addresses (os.networkInterfaces()). */
	localAddresses: string[];
}

export interface Finding {
	level: "ok" | "warning" | "error";
	/** The line for standard output. */
	line: string;
	/** For an error: the line for standard error, `federation.<domain>: ...`. */
	problem?: string;
}

/** RFC 6120 §3.2.2: without SRV records, peers connect to the domain on this port. */
export const FALLBACK_PORT = 5269;

const DIALBACK_ONLY =
	"peers will only accept dialback, and those requiring certificates (Prosody's s2s_secure_auth, Parley's s2s.secure_auth) will refuse";

export async function checkFederation(input: FederationInput): Promise<Finding[]> {
	const perDomain = await Promise.all(
		input.domains.map(async (d) => [
			...(await dnsFindings(d.domain, input)),
			certificateFinding(d, input),
		]),
	);
	return perDomain.flat();
}

type Lookup = { records: SrvRecord[] } | { absent: true } | { error: string };

/** ENOTFOUND / ENODATA mean "no such records"; anything else is a failed lookup. */
async function srv(dns: FederationDns, name: string): Promise<Lookup> {
	try {
		return { records: await dns.resolveSrv(name) };
	} catch (err) {
		const code = (err as { code?: string }).code;
		if (code === "ENOTFOUND" || code === "ENODATA") return { absent: true };
		return { error: oneLine(err) };
	}
}

async function dnsFindings(domain: string, input: FederationInput): Promise<Finding[]> {
	const tlsName = `_xmpps-server._tcp.${domain}`;
	const plainName = `_xmpp-server._tcp.${domain}`;
	const [tls, plain] = await Promise.all([srv(input.dns, tlsName), srv(input.dns, plainName)]);
	const out: Finding[] = [];
	const line = (v: Verdict, subject: string) =>
		out.push({
			level: v.warning ? "warning" : "ok",
			line: `federation: ${domain}: ${subject}: ${v.warning ? "warning: " : ""}${v.text}`,
		});
	/** Targets whose address is checked, once each, after the records. */
	const targets: string[] = [];

	for (const [name, r] of [
		[plainName, plain],
		[tlsName, tls],
	] as const)
		if ("error" in r)
			line({ warning: true, text: `DNS lookup failed (${r.error})` }, `SRV ${name}`);

	const plainRecords = "records" in plain ? plain.records : [];
	const tlsRecords = "records" in tls ? tls.records : [];
	if ("absent" in plain && "absent" in tls) {
		const port = portVerdict(FALLBACK_PORT, input.listener.port);
		line(
			{
				warning: true,
				text: `no ${plainName} or ${tlsName} records; peers fall back to ${domain}:${FALLBACK_PORT} (RFC 6120 §3.2.2): ${port.text}`,
			},
			"SRV",
		);
		targets.push(domain);
	} else if ("absent" in plain && tlsRecords.length > 0) {
		line(
			{
				warning: true,
				text: `none; peers without XEP-0368 fall back to ${domain}:${FALLBACK_PORT}`,
			},
			`SRV ${plainName}`,
		);
	}

	for (const [name, records, directTls] of [
		[plainName, plainRecords, false],
		[tlsName, tlsRecords, true],
	] as const) {
		// RFC 2782: a single record whose target is "." says the service is not offered.
		if (records.length === 1 && (records[0]?.name === "." || records[0]?.name === "")) {
			const what = directTls ? "direct-TLS server-to-server" : "server-to-server";
			line(
				{ warning: true, text: `${domain} says it offers no ${what} service` },
				`SRV ${name} -> "."`,
			);
			continue;
		}
		for (const r of [...records].sort((a, b) => a.priority - b.priority)) {
			const target = r.name.replace(/\.$/, "");
			const subject = `SRV ${name} -> ${target}:${r.port} (priority ${r.priority}, weight ${r.weight})`;
			if (directTls) {
				const dt = input.directTlsListener;
				if (!dt) {
					line(
						{
							warning: true,
							text: "direct TLS (XEP-0368), but [listeners.s2s_direct_tls] is off: peers that try it fail there, then use _xmpp-server",
						},
						subject,
					);
					continue;
				}
				const v = portVerdict(r.port, dt.port);
				line({ ...v, text: v.text.replaceAll("s2s listener", "s2s_direct_tls listener") }, subject);
				if (!targets.includes(target)) targets.push(target);
				continue;
			}
			line(portVerdict(r.port, input.listener.port), subject);
			if (!targets.includes(target)) targets.push(target);
		}
	}
	for (const target of targets) line(await addressVerdict(target, input), `address of ${target}`);
	return out;
}

interface Verdict {
	warning: boolean;
	text: string;
}

function portVerdict(port: number, listenerPort: number): Verdict {
	if (listenerPort === 0)
		return { warning: false, text: "the s2s listener's port is chosen at start (port = 0)" };
	if (port === listenerPort) return { warning: false, text: "the s2s listener's port" };
	return {
		warning: true,
		text: `the s2s listener is on port ${listenerPort}, not ${port} (fine only if something forwards ${port} to it)`,
	};
}

const PRIVATE = new BlockList();
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");
for (const [net, prefix] of [
	["10.0.0.0", 8],
	["172.16.0.0", 12],
	["192.168.0.0", 16],
	["100.64.0.0", 10],
	["169.254.0.0", 16],
	["127.0.0.0", 8],
] as const)
	PRIVATE.addSubnet(net, prefix, "ipv4");
for (const [net, prefix] of [
	["fc00::", 7],
	["fe80::", 10],
	["::1", 128],
] as const)
	PRIVATE.addSubnet(net, prefix, "ipv6");

function family(address: string): "ipv4" | "ipv6" {
	return isIP(address) === 6 ? "ipv6" : "ipv4";
}

/** `::ffff:192.0.2.1` -> `192.0.2.1`; a zone index dropped. */
function normalize(address: string): string {
	const a = address.toLowerCase().replace(/%.*$/, "");
	return a.startsWith("::ffff:") && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}

const WILDCARDS = new Set(["::", "0.0.0.0", ""]);

/** Does `host` lead to this machine (to the s2s listener's address when it binds one)? */
async function addressVerdict(host: string, input: FederationInput): Promise<Verdict> {
	let addresses: string[];
	try {
		addresses = [...new Set((await input.dns.lookup(host)).map(normalize))];
	} catch (err) {
		return { warning: true, text: `no address (${oneLine(err)}): peers cannot connect` };
	}
	if (addresses.length === 0) return { warning: true, text: "no address: peers cannot connect" };
	const shown = addresses.join(", ");
	if (addresses.every((a) => LOOPBACK.check(a, family(a))))
		return { warning: true, text: `only loopback (${shown}): peers cannot reach it` };
	const bound = normalize(input.listener.address);
	const wildcard = WILDCARDS.has(bound);
	const mine = wildcard ? input.localAddresses.map(normalize) : [bound];
	const here = addresses.filter((a) => mine.includes(a));
	if (here.length > 0)
		return {
			warning: false,
			text: `${here.join(", ")}, ${wildcard ? "this machine" : "the s2s listener's address"}`,
		};
	// Behind NAT or a load balancer the public address is nowhere on this machine.
	if (!mine.some((a) => !PRIVATE.check(a, family(a))))
		return {
			warning: false,
			text: `${shown}: cannot tell whether that reaches this machine, whose addresses are all private (NAT?)`,
		};
	return {
		warning: true,
		text: `${shown}, not ${wildcard ? "an address of this machine" : `the s2s listener's address ${bound}`}`,
	};
}

function certificateFinding(d: FederationDomain, input: FederationInput): Finding {
	const c = d.certificate;
	const prefix = `federation: ${d.domain}: certificate`;
	if (c.kind === "unknown")
		return { level: "warning", line: `${prefix}: not checked (the certificates did not load)` };
	const whose = c.owner === d.domain ? "" : ` (${c.owner}'s)`;
	if (c.kind === "self-signed")
		return {
			level: "warning",
			line: `${prefix}${whose}: warning: self-signed ${c.path ?? "(generated at start)"}: ${DIALBACK_ONLY}`,
		};
	const name = `${prefix}${whose} ${c.path}`;
	const r = input.checkPem(c.pem, d.domain);
	if (r.valid)
		return {
			level: "ok",
			line: `${name}: valid for federation (chains to a trusted root, names ${d.domain})`,
		};
	switch (r.problem) {
		case "expired":
		case "none":
		case undefined:
			return {
				level: "error",
				line: `${name}: ${r.problem === "expired" ? "EXPIRED" : "UNUSABLE"} (${r.reason})`,
				problem: `federation.${d.domain}: certificate ${c.path}: ${r.reason}`,
			};
		case "self-signed":
			return { level: "warning", line: `${name}: warning: self-signed: ${DIALBACK_ONLY}` };
		case "untrusted":
			return {
				level: "warning",
				line: `${name}: warning: ${r.reason} (system roots and s2s.ca_file): ${DIALBACK_ONLY}`,
			};
		case "name":
			return {
				level: "warning",
				line: `${name}: warning: does not name ${d.domain} (DNS-ID, SRV-ID or XmppAddr): ${DIALBACK_ONLY}`,
			};
	}
}

function oneLine(err: unknown): string {
	const e = err as { code?: string; message?: string };
	const message = (e.message ?? String(err)).split("\n")[0] ?? "";
	return e.code && !message.includes(e.code) ? `${e.code}: ${message}` : message;
}
