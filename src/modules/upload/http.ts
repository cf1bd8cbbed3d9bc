/**
 * The HTTP side of XEP-0363 (§5, §7 security considerations): the PUT that stores a file for a
 * slot, and the GET/HEAD that serve it. The listener (src/http/) hands each request over as an
 * `HttpRequestEvent`; this file answers it with an `HttpResponse` and knows no HTTP server.
 */
import type { HttpRequestEvent, HttpResponse } from "../../core/contracts.ts";
import type { Logger } from "../../core/log.ts";
import { type FileMeta, type FileStore, SizeMismatch } from "./files.ts";
import type { UploadLimiter } from "./ip-limits.ts";
import { mediaType, SLOT_ID, type Slot, verifySlot } from "./slot.ts";

/** Shown inline by a browser; anything else (HTML, SVG, PDF, ...) is a download. */
const INLINE = /^(image\/(?!svg)|video\/|audio\/)/;

/**
 * No script, style, frame or connection from a served file, and it may not be framed: an
 * uploaded HTML or SVG file opened in a browser can do nothing on the service's origin.
 */
const CSP = "default-src 'none'; frame-ancestors 'none'; sandbox";

export interface UploadHttpOptions {
	files: FileStore;
	secret: Buffer;
	/** Milliseconds a file is kept; 0: for ever. */
	expireAfter: number;
	/** Records a received file in the index before it is published (quota accounting). */
	record(slot: Slot, when: number): Promise<void>;
	/** What one client address may PUT (ip-limits.ts). */
	ipLimits?: UploadLimiter;
	log: Logger;
	now?: () => number;
}

const text = (
	status: number,
	body: string,
	headers: Record<string, string> = {},
): HttpResponse => ({
	status,
	headers: { "content-type": "text/plain; charset=utf-8", ...headers },
	body: `${body}\n`,
});

export class UploadHttp {
	readonly #o: UploadHttpOptions;
	readonly #now: () => number;

	constructor(o: UploadHttpOptions) {
		this.#o = o;
		this.#now = o.now ?? Date.now;
	}

	async handle(e: HttpRequestEvent): Promise<HttpResponse> {
		const [id = "", name, ...more] = e.path.split("/");
		if (!SLOT_ID.test(id) || name === undefined || more.length > 0) return text(404, "not found");
		if (e.method === "PUT") return this.#put(e, id);
		return this.#get(e, id);
	}

	async #put(e: HttpRequestEvent, id: string): Promise<HttpResponse> {
		const slot = verifySlot(this.#o.secret, e.query.get("token") ?? "");
		if (!slot || slot.id !== id) return text(403, "not a valid upload slot for this URL");
		const now = this.#now();
		if (slot.expires < now) return text(403, "the upload slot has expired: request a new one");
		const length = header(e, "content-length");
		if (length === undefined || !/^\d+$/.test(length))
			return text(411, "Content-Length is required, and must be the slot's size");
		if (Number(length) !== slot.size)
			return text(
				Number(length) > slot.size ? 413 : 400,
				`Content-Length ${length} is not the slot's size, ${slot.size}`,
			);
		const given = header(e, "content-type");
		if (given !== undefined && mediaType(given) !== slot.type)
			return text(415, `Content-Type ${given} is not the slot's type, ${slot.type}`);
		if (await this.#o.files.exists(id)) return text(409, "this slot was already used");
		// Per address, after the slot's checks so that junk requests count for nothing.
		const limit = await this.#o.ipLimits?.begin(e.ip, slot.size);
		if (limit !== undefined && typeof limit !== "function") {
			this.#o.log.info({ ip: e.ip, size: slot.size, status: limit.status }, limit.reason);
			// RFC 6585 §4: 429, with when to come back if known (RFC 9110 §10.2.3); RFC 9110
			// §15.5.14: 413 for a file larger than the address may ever send in a day.
			return text(
				limit.status,
				limit.reason,
				limit.status === 429 && limit.retryAfter !== undefined
					? { "retry-after": String(limit.retryAfter) }
					: {},
			);
		}
		const received = { bytes: 0 };
		try {
			return await this.#receive(e, id, slot, received);
		} finally {
			limit?.(received.bytes);
		}
	}

	async #receive(
		e: HttpRequestEvent,
		id: string,
		slot: Slot,
		received: { bytes: number },
	): Promise<HttpResponse> {
		try {
			await this.#o.files.receive(id, e.body, slot.size, e.signal, received);
		} catch (err) {
			if ((err as { code?: string }).code === "EEXIST")
				return text(409, "this slot is being used by another upload");
			if (err instanceof SizeMismatch) return text(400, err.message);
			// The client went away: there is nobody to answer.
			this.#o.log.debug({ id, err: (err as Error).message }, "upload aborted");
			return text(400, "the upload was interrupted");
		}
		// Another PUT of the slot may have completed while this one was being received.
		if (await this.#o.files.completed(id)) {
			await this.#o.files.discard(id);
			return text(409, "this slot was already used");
		}
		const when = this.#now();
		try {
			await this.#o.record(slot, when);
		} catch (err) {
			await this.#o.files.discard(id);
			throw err;
		}
		const meta: FileMeta = {
			name: slot.name,
			type: slot.type,
			size: slot.size,
			uploader: slot.uploader,
			created: when,
		};
		await this.#o.files.commit(id, meta);
		this.#o.log.info({ id, size: slot.size, uploader: slot.uploader }, "file uploaded");
		return text(201, "created");
	}

	async #get(e: HttpRequestEvent, id: string): Promise<HttpResponse> {
		const meta = await this.#o.files.meta(id);
		const now = this.#now();
		const expireAfter = this.#o.expireAfter;
		if (!meta || (expireAfter > 0 && meta.created + expireAfter <= now))
			return text(404, "not found (it may have expired)");
		const etag = `"${id}"`;
		const maxAge =
			expireAfter > 0 ? Math.floor((meta.created + expireAfter - now) / 1000) : 31_536_000;
		const headers: Record<string, string | number> = {
			"content-type": meta.type,
			"x-content-type-options": "nosniff",
			"content-security-policy": CSP,
			"content-disposition": `${INLINE.test(meta.type) ? "inline" : "attachment"}; ${dispositionName(meta.name)}`,
			"accept-ranges": "bytes",
			etag,
			"last-modified": new Date(meta.created).toUTCString(),
			"cache-control": `public, max-age=${maxAge}, immutable`,
		};
		// RFC 9110 §13.1.2: the file under an id never changes, so its id is a strong validator.
		const inm = header(e, "if-none-match");
		if (inm !== undefined && (inm.trim() === "*" || inm.split(",").some((t) => t.trim() === etag)))
			return { status: 304, headers };
		// §14.2 / §13.1.5: a Range is honoured unless If-Range names another version.
		const ifRange = header(e, "if-range");
		const range =
			ifRange === undefined || ifRange.trim() === etag
				? parseRange(header(e, "range"), meta.size)
				: null;
		if (range === "unsatisfiable")
			return {
				status: 416,
				headers: { ...headers, "content-range": `bytes */${meta.size}`, "content-length": 0 },
			};
		const { start, end } = range ?? { start: 0, end: meta.size - 1 };
		const length = end - start + 1;
		headers["content-length"] = length;
		if (range) headers["content-range"] = `bytes ${start}-${end}/${meta.size}`;
		const status = range ? 206 : 200;
		if (e.method === "HEAD" || length === 0) return { status, headers };
		return { status, headers, body: this.#o.files.read(id, start, end) };
	}
}

function header(e: HttpRequestEvent, name: string): string | undefined {
	const v = e.headers[name];
	return Array.isArray(v) ? v[0] : v;
}

/**
 * One byte range of a file of `size` bytes (RFC 9110 §14.1.2): `bytes=a-b`, `bytes=a-` or the
 * suffix `bytes=-n`. null when there is no usable Range (a syntax we ignore, as §14.2 allows,
 * including several ranges): the whole file is sent. "unsatisfiable": §15.5.17, 416.
 */
export function parseRange(
	value: string | undefined,
	size: number,
): { start: number; end: number } | "unsatisfiable" | null {
	if (value === undefined) return null;
	const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(value);
	if (!m) return null;
	const [, a = "", b = ""] = m;
	if (a === "" && b === "") return null;
	if (a === "") {
		const n = Number(b);
		if (n === 0 || size === 0) return "unsatisfiable";
		return { start: Math.max(0, size - n), end: size - 1 };
	}
	const start = Number(a);
	if (b !== "" && Number(b) < start) return null;
	if (start >= size) return "unsatisfiable";
	return { start, end: b === "" ? size - 1 : Math.min(Number(b), size - 1) };
}

/** RFC 6266 §4.3: an ASCII `filename` for old agents and the exact name as `filename*`. */
export function dispositionName(name: string): string {
	const ascii = name.replace(/[^\x20-\x7e]|["\\%]/g, "_");
	const encoded = encodeURIComponent(name).replace(
		/['()*]/g,
		(c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
	);
	return `filename="${ascii}"; filename*=UTF-8''${encoded}`;
}
