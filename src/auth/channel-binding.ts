/**
 * Channel binding data for SCRAM-*-PLUS (RFC 5802 §6), computed on the server's side of a TLS
 * connection.
 *
 * - `tls-exporter` (RFC 9266): 32 bytes of exported keying material with the label
 *   "EXPORTER-Channel-Binding" and an empty context. Offered on TLS 1.3 only (RFC 9266 §3: with
 *   TLS 1.2 it is only safe with the extended master secret extension, which Node does not let
 *   us check). In TLS 1.3 an absent and an empty context give the same value (RFC 8446 §7.5), so
 *   passing an empty buffer (as Prosody does, `""`) matches clients that omit the context; the
 *   test checks this against a real client socket.
 * - `tls-server-end-point` (RFC 5929 §4.1): hash of the server certificate (DER) with the hash of
 *   the certificate's signature algorithm, MD5 and SHA-1 replaced by SHA-256. Not offered when
 *   the signature uses no single hash (Ed25519, Ed448, RSASSA-PSS whose hash sits in the
 *   parameters) or an algorithm not known here.
 *
 * `tls-unique` is not offered: undefined for TLS 1.3 (RFC 9266 §1) and weak before it.
 */
import { createHash, X509Certificate } from "node:crypto";
import type { TLSSocket } from "node:tls";

export type ChannelBindingType = "tls-exporter" | "tls-server-end-point";

export interface ChannelBindingSource {
	/** Types available on this connection, the strongest first. */
	types(): ChannelBindingType[];
	/** The binding data, or null if that type is not available. */
	data(type: ChannelBindingType): Buffer | null;
}

/** RFC 9266 §2 */
export const TLS_EXPORTER_LABEL = "EXPORTER-Channel-Binding";
const TLS_EXPORTER_LENGTH = 32;

/**
 * Signature algorithm OID -> Node digest name for tls-server-end-point (RFC 5929 §4.1: "if the
 * certificate's signatureAlgorithm uses a single hash function and that hash function is either
 * MD5 or SHA-1, then use SHA-256"). OIDs from RFC 8017 App. C, RFC 5758 §3, RFC 3279 §2.2.
 */
const END_POINT_HASH_BY_OID: ReadonlyMap<string, string> = new Map([
	["1.2.840.113549.1.1.4", "sha256"], // md5WithRSAEncryption
	["1.2.840.113549.1.1.5", "sha256"], // sha1WithRSAEncryption
	["1.2.840.113549.1.1.14", "sha224"], // sha224WithRSAEncryption
	["1.2.840.113549.1.1.11", "sha256"], // sha256WithRSAEncryption
	["1.2.840.113549.1.1.12", "sha384"], // sha384WithRSAEncryption
	["1.2.840.113549.1.1.13", "sha512"], // sha512WithRSAEncryption
	["1.2.840.10045.4.1", "sha256"], // ecdsa-with-SHA1
	["1.2.840.10045.4.3.1", "sha224"], // ecdsa-with-SHA224
	["1.2.840.10045.4.3.2", "sha256"], // ecdsa-with-SHA256
	["1.2.840.10045.4.3.3", "sha384"], // ecdsa-with-SHA384
	["1.2.840.10045.4.3.4", "sha512"], // ecdsa-with-SHA512
	["1.2.840.10040.4.3", "sha256"], // dsa-with-sha1
	["2.16.840.1.101.3.4.3.1", "sha224"], // dsa-with-sha224
	["2.16.840.1.101.3.4.3.2", "sha256"], // dsa-with-sha256
]);

/** RFC 5929 §4.1: the digest to use for a certificate signed with `oid`, or null if undefined. */
export function endPointHashForSignatureOid(oid: string): string | null {
	return END_POINT_HASH_BY_OID.get(oid) ?? null;
}

/** RFC 5929 §4.1: tls-server-end-point data for a DER certificate, or null if undefined. */
export function serverEndPointData(certDer: Buffer): Buffer | null {
	let oid: string;
	try {
		oid = new X509Certificate(certDer).signatureAlgorithmOid;
	} catch {
		return null;
	}
	const hash = endPointHashForSignatureOid(oid);
	return hash === null ? null : createHash(hash).update(certDer).digest();
}

/**
 * Channel binding for the server's side of an established TLS connection. Call it after the
 * handshake (e.g. on 'secure'); values are computed on first use and kept for the connection.
 */
export function channelBindingFor(socket: TLSSocket): ChannelBindingSource {
	const cache = new Map<ChannelBindingType, Buffer | null>();

	const compute = (type: ChannelBindingType): Buffer | null => {
		switch (type) {
			case "tls-exporter":
				// RFC 9266 §3: TLS 1.3 only (see the file comment).
				if (socket.getProtocol() !== "TLSv1.3") return null;
				try {
					return socket.exportKeyingMaterial(
						TLS_EXPORTER_LENGTH,
						TLS_EXPORTER_LABEL,
						Buffer.alloc(0), // RFC 9266 §2: empty context
					);
				} catch {
					return null;
				}
			case "tls-server-end-point": {
				const cert = socket.getCertificate();
				if (cert === null || !("raw" in cert) || !Buffer.isBuffer(cert.raw)) return null;
				return serverEndPointData(cert.raw);
			}
		}
	};

	const data = (type: ChannelBindingType): Buffer | null => {
		if (!cache.has(type)) cache.set(type, compute(type));
		return cache.get(type) ?? null;
	};

	return {
		types() {
			const order: ChannelBindingType[] = ["tls-exporter", "tls-server-end-point"];
			return order.filter((t) => data(t) !== null);
		},
		data,
	};
}
