/**
 * Does a peer's certificate prove that it is `domain`? RFC 6120 §13.7.2 and RFC 6125 / RFC 9525
 * as XEP-0178 applies them to server-to-server streams: the chain leads to a trusted root (the
 * system store plus `s2s.ca_file`), every certificate on it is within its validity period, and
 * the leaf names the domain as a DNS-ID (subjectAltName dNSName, a wildcard only as the whole
 * left-most label), an SRV-ID (`_xmpp-server.<domain>`) or an XmppAddr; never by the subject's
 * common name (RFC 9525 §6.3 drops that fallback).
 */

import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import tls from "node:tls";

/**
 * Why a certificate does not prove a domain, for callers that treat the cases differently
 * (`parley check`: an expired certificate is an error, a self-signed one a warning).
 */
export type PeerProblem = "none" | "expired" | "self-signed" | "untrusted" | "name";

export type PeerCheck = { valid: true } | { valid: false; reason: string; problem?: PeerProblem };

export class PeerVerifier {
	readonly #roots: X509Certificate[];

	/** `caFile`: extra trusted roots (PEM), beside Node's bundled and the system's. */
	constructor(caFile?: string) {
		const pems = [...tls.getCACertificates("default")];
		if (caFile) pems.push(...splitPem(readFileSync(caFile, "utf8")));
		this.#roots = [];
		for (const pem of pems) {
			try {
				this.#roots.push(new X509Certificate(pem));
			} catch {
				// A broken entry in the store is skipped; the others still count.
			}
		}
	}

	/** Checks the certificate chain `socket`'s peer presented for `domain`. */
	check(socket: tls.TLSSocket, domain: string): PeerCheck {
		const presented = socket.getPeerCertificate(true);
		if (!presented?.raw) return { valid: false, reason: "no certificate", problem: "none" };
		const chain: X509Certificate[] = [];
		const seen = new Set<string>();
		let c: tls.DetailedPeerCertificate | undefined = presented;
		while (c?.raw && !seen.has(c.fingerprint256)) {
			seen.add(c.fingerprint256);
			chain.push(new X509Certificate(c.raw));
			c = c.issuerCertificate;
		}
		return this.checkChain(chain, domain);
	}

	/**
	 * Checks a chain given as PEM text (a certificate file: the leaf first, then intermediates),
	 * as a peer would check it when we present it for `domain`: what `parley check` asks of our
	 * own certificates.
	 */
	checkPem(pem: string, domain: string): PeerCheck {
		const chain: X509Certificate[] = [];
		for (const block of splitPem(pem)) {
			try {
				chain.push(new X509Certificate(block));
			} catch (err) {
				return {
					valid: false,
					reason: `unreadable certificate: ${(err as Error).message}`,
					problem: "none",
				};
			}
		}
		return this.checkChain(chain, domain);
	}

	/** Checks `chain` (leaf first, then what was sent with it, in any order) for `domain`. */
	checkChain(chain: readonly X509Certificate[], domain: string): PeerCheck {
		const leaf = chain[0];
		if (!leaf) return { valid: false, reason: "no certificate", problem: "none" };
		const trust = this.#chainToRoot(leaf, chain.slice(1));
		if (trust !== true) return { valid: false, ...trust };
		if (!namesDomain(leaf, domain))
			return { valid: false, reason: `not issued for ${domain}`, problem: "name" };
		return { valid: true };
	}

	/** True when `leaf` leads to a trusted root through `intermediates`, else why not. */
	#chainToRoot(
		leaf: X509Certificate,
		intermediates: X509Certificate[],
	): true | { reason: string; problem: PeerProblem } {
		const now = Date.now();
		let cert = leaf;
		for (let depth = 0; depth < 10; depth++) {
			if (Date.parse(cert.validFrom) > now || Date.parse(cert.validTo) < now)
				return {
					reason: `certificate ${cert.subject} is expired or not yet valid`,
					problem: "expired",
				};
			const root = this.#roots.find((r) => cert.checkIssued(r) && cert.verify(r.publicKey));
			if (root) return true;
			const next = intermediates.find(
				(i) => i !== cert && cert.checkIssued(i) && cert.verify(i.publicKey) && i.ca,
			);
			if (!next) {
				// Not checkIssued: a server certificate may sign itself without the keyCertSign usage.
				if (cert === leaf && cert.issuer === cert.subject && cert.verify(cert.publicKey))
					return {
						reason: "self-signed, not issued by a trusted authority",
						problem: "self-signed",
					};
				return { reason: "not issued by a trusted authority", problem: "untrusted" };
			}
			cert = next;
		}
		return { reason: "certificate chain too long", problem: "untrusted" };
	}
}

/** RFC 6125 §6.4 DNS-ID (with §6.4.3 wildcards), SRV-ID for _xmpp-server, or XmppAddr. */
export function namesDomain(cert: X509Certificate, domain: string): boolean {
	const want = domain.toLowerCase();
	if (cert.checkHost(want, { subject: "never", wildcards: true, partialWildcards: false }))
		return true;
	for (const entry of (cert.subjectAltName ?? "").split(/,\s*/)) {
		const m = /^othername:(XmppAddr|SRVName):(.*)$/i.exec(entry);
		if (!m) continue;
		const value = (m[2] ?? "").toLowerCase();
		if (m[1]?.toLowerCase() === "xmppaddr" && value === want) return true;
		if (m[1]?.toLowerCase() === "srvname" && value === `_xmpp-server.${want}`) return true;
	}
	return false;
}

function splitPem(text: string): string[] {
	return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}
