/**
 * XEP-0363 upload slots as signed tokens: everything the PUT must check (which file, its size
 * and type, until when, for whom) travels in the PUT URL with an HMAC of the component's secret
 * (kept in the shared storage), so whichever cluster node's HTTP listener receives the PUT
 * checks it without asking the node that handed the slot out (Prosody's mod_http_file_share
 * does the same with a JWT).
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

export interface Slot {
	/** 128 random bits, base64url: the file's name on disk and in its URLs. */
	id: string;
	/** The file name the client gave, made safe (`safeFileName`). */
	name: string;
	size: number;
	/** A media type, lower case, without parameters. */
	type: string;
	/** Milliseconds since the epoch after which the PUT URL is refused. */
	expires: number;
	/** The uploader's bare JID. */
	uploader: string;
}

/** A slot id: 16 random bytes as base64url (22 characters). */
export const SLOT_ID = /^[A-Za-z0-9_-]{22}$/;

export function newSlotId(): string {
	return randomBytes(16).toString("base64url");
}

function mac(secret: Buffer, payload: string): Buffer {
	return createHmac("sha256", secret).update("parley xep-0363 slot\0").update(payload).digest();
}

export function signSlot(secret: Buffer, slot: Slot): string {
	const payload = Buffer.from(
		JSON.stringify([slot.id, slot.name, slot.size, slot.type, slot.expires, slot.uploader]),
	).toString("base64url");
	return `${payload}.${mac(secret, payload).toString("base64url")}`;
}

/** The slot a token stands for, or null when it is malformed or not signed with `secret`. */
export function verifySlot(secret: Buffer, token: string): Slot | null {
	const dot = token.indexOf(".");
	if (dot < 0) return null;
	const payload = token.slice(0, dot);
	const given = Buffer.from(token.slice(dot + 1), "base64url");
	const want = mac(secret, payload);
	if (given.length !== want.length || !timingSafeEqual(given, want)) return null;
	try {
		const v: unknown = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
		if (!Array.isArray(v) || v.length !== 6) return null;
		const [id, name, size, type, expires, uploader] = v as unknown[];
		if (
			typeof id !== "string" ||
			!SLOT_ID.test(id) ||
			typeof name !== "string" ||
			typeof size !== "number" ||
			typeof type !== "string" ||
			typeof expires !== "number" ||
			typeof uploader !== "string"
		)
			return null;
		return { id, name, size, type, expires, uploader };
	} catch {
		return null;
	}
}

/** Bytes of a stored file name at most. */
const MAX_NAME_BYTES = 200;

/**
 * A file name that is safe in a URL path segment and a Content-Disposition header: no path
 * separators or control characters, not "." or "..", at most 200 bytes of UTF-8 (cut at a
 * character boundary, keeping the extension when it is short).
 */
export function safeFileName(name: string): string {
	let n = name
		.normalize("NFC")
		// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed
		.replace(/[\u0000-\u001f\u007f-\u009f/\\]/g, "_")
		.trim();
	if (n === "" || n === "." || n === "..") n = "file";
	if (Buffer.byteLength(n) <= MAX_NAME_BYTES) return n;
	const dot = n.lastIndexOf(".");
	const ext = dot > 0 && n.length - dot <= 16 ? n.slice(dot) : "";
	let stem = [...n.slice(0, n.length - ext.length)];
	while (Buffer.byteLength(stem.join("") + ext) > MAX_NAME_BYTES) stem = stem.slice(0, -1);
	return stem.join("") + ext;
}

/** RFC 9110 §8.3.1 media type `type/subtype` (parameters dropped), lower case; null if invalid. */
export function mediaType(value: string | undefined): string | null {
	if (value === undefined) return null;
	const t = (value.split(";")[0] ?? "").trim().toLowerCase();
	return /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/.test(t) ? t : null;
}
