import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { dispositionName, parseRange } from "./http.ts";
import { mediaType, newSlotId, safeFileName, signSlot, verifySlot } from "./slot.ts";

test("a slot token verifies with its secret only, and any change breaks it", () => {
	const secret = randomBytes(32);
	const slot = {
		id: newSlotId(),
		name: "a.png",
		size: 10,
		type: "image/png",
		expires: 1_800_000_000_000,
		uploader: "alice@localhost",
	};
	const token = signSlot(secret, slot);
	assert.deepEqual(verifySlot(secret, token), slot);
	assert.equal(verifySlot(randomBytes(32), token), null);
	const [payload, mac] = token.split(".") as [string, string];
	const forged = Buffer.from(
		JSON.stringify([slot.id, slot.name, 10_000, slot.type, slot.expires, slot.uploader]),
	).toString("base64url");
	assert.equal(verifySlot(secret, `${forged}.${mac}`), null);
	assert.equal(verifySlot(secret, payload), null);
	assert.equal(verifySlot(secret, ""), null);
});

test("file names are made safe for a URL segment and a header", () => {
	assert.equal(safeFileName("../../etc/passwd"), ".._.._etc_passwd");
	assert.equal(safeFileName("a\nb\u0000c.txt"), "a_b_c.txt");
	assert.equal(safeFileName(".."), "file");
	assert.equal(safeFileName("  "), "file");
	const long = safeFileName(`${"é".repeat(300)}.jpeg`);
	assert.ok(Buffer.byteLength(long) <= 200 && long.endsWith(".jpeg"), long);
	assert.equal(safeFileName("Ünïcödé 🎉.png"), "Ünïcödé 🎉.png");
});

test("media types: parameters dropped, lower case, junk refused", () => {
	assert.equal(mediaType("Image/JPEG; charset=x"), "image/jpeg");
	assert.equal(
		mediaType("application/vnd.oasis.opendocument.text"),
		"application/vnd.oasis.opendocument.text",
	);
	assert.equal(mediaType("text"), null);
	assert.equal(mediaType("text/html\r\nx: y"), null);
	assert.equal(mediaType(undefined), null);
});

test("RFC 9110 §14.1.2 byte ranges", () => {
	assert.deepEqual(parseRange("bytes=0-9", 100), { start: 0, end: 9 });
	assert.deepEqual(parseRange("bytes=90-", 100), { start: 90, end: 99 });
	assert.deepEqual(parseRange("bytes=-10", 100), { start: 90, end: 99 });
	assert.deepEqual(parseRange("bytes=-1000", 100), { start: 0, end: 99 });
	assert.deepEqual(parseRange("bytes=50-1000", 100), { start: 50, end: 99 });
	assert.equal(parseRange("bytes=100-", 100), "unsatisfiable");
	assert.equal(parseRange("bytes=-0", 100), "unsatisfiable");
	// Ignored: the whole file is sent.
	assert.equal(parseRange("bytes=0-1,5-6", 100), null);
	assert.equal(parseRange("bytes=9-1", 100), null);
	assert.equal(parseRange("items=0-1", 100), null);
	assert.equal(parseRange(undefined, 100), null);
});

test("RFC 6266 file names: an ASCII fallback and the exact UTF-8 name", () => {
	assert.equal(
		dispositionName('naïve "quote".txt'),
		`filename="na_ve _quote_.txt"; filename*=UTF-8''na%C3%AFve%20%22quote%22.txt`,
	);
});
