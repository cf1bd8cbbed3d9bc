import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import { createLogger, createSilentLogger } from "./log.ts";

/** A writable stream that keeps what it is given; `isTTY` makes it pass for a terminal. */
function capture(isTTY = false): { stream: Writable & { isTTY?: boolean }; text: () => string } {
	const chunks: string[] = [];
	const stream: Writable & { isTTY?: boolean } = new Writable({
		write(chunk: Buffer | string, _encoding, callback) {
			chunks.push(chunk.toString());
			callback();
		},
	});
	if (isTTY) stream.isTTY = true;
	return { stream, text: () => chunks.join("") };
}

function jsonLines(text: string): Record<string, unknown>[] {
	return text
		.split("\n")
		.filter((line) => line !== "")
		.map((line) => JSON.parse(line) as Record<string, unknown>);
}

test("json format writes one JSON object per line, at and above the level", () => {
	const out = capture();
	const log = createLogger({ level: "info", format: "json", destination: out.stream });
	log.debug("not shown");
	log.info({ host: "example.org" }, "hello");
	log.warn("careful");
	log.child({ session: "abc" }).error("broken");

	const lines = jsonLines(out.text());
	assert.deepEqual(
		lines.map((l) => [l.level, l.msg]),
		[
			["info", "hello"],
			["warn", "careful"],
			["error", "broken"],
		],
	);
	assert.equal(lines[0]?.host, "example.org");
	assert.equal(lines[2]?.session, "abc");
	assert.match(String(lines[0]?.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/);
});

test("auto format is JSON when the destination is not a terminal", () => {
	const out = capture(false);
	const log = createLogger({ level: "debug", format: "auto", destination: out.stream });
	log.debug("dbg");
	assert.deepEqual(
		jsonLines(out.text()).map((l) => [l.level, l.msg]),
		[["debug", "dbg"]],
	);
});

test("auto format is readable (not JSON) on a terminal, and pretty is readable anywhere", () => {
	for (const [format, tty] of [
		["auto", true],
		["pretty", false],
	] as const) {
		const out = capture(tty);
		const log = createLogger({ level: "info", format, destination: out.stream });
		log.info("hello there");
		log.debug("hidden");
		const text = out.text();
		assert.match(text, /INFO/);
		assert.match(text, /hello there/);
		assert.doesNotMatch(text, /hidden/);
		assert.throws(() => JSON.parse(text.split("\n")[0] ?? ""));
	}
});

test("silent logger writes nothing and does not throw", () => {
	const log = createSilentLogger();
	log.error("nothing");
	assert.equal(log.level, "silent");
});

test("pretty: one plain line per listener and for the running line; JSON keeps the fields", () => {
	const out = capture(false);
	const log = createLogger({ level: "info", format: "pretty", destination: out.stream });
	log.info({ listener: "c2s", address: "::", port: 5222 }, "listening");
	log.info({ listener: "https", address: "127.0.0.1", port: 5281 }, "listening");
	log.info({ hosts: ["localhost", "example.org"] }, "Parley is running");
	log.info({ port: 9 }, "something else");
	const lines = out.text().trimEnd().split("\n");
	assert.match(
		lines[0] ?? "",
		/INFO: listening on \[::\]:5222 \(listeners\.c2s: clients, STARTTLS\)$/,
	);
	assert.match(
		lines[1] ?? "",
		/INFO: listening on 127\.0\.0\.1:5281 \(listeners\.https: BOSH, WebSocket and discovery over HTTPS\)$/,
	);
	assert.match(lines[2] ?? "", /INFO: Parley is running for localhost, example\.org$/);
	// Other records keep their fields, one per line below the message.
	assert.match(lines[3] ?? "", /INFO: something else$/);
	assert.match(lines[4] ?? "", /^\s+port: 9$/);
	assert.equal(lines.length, 5);

	const json = capture(false);
	createLogger({ level: "info", format: "json", destination: json.stream }).info(
		{ listener: "c2s", address: "::", port: 5222 },
		"listening",
	);
	const [record] = jsonLines(json.text());
	assert.deepEqual(
		[record?.msg, record?.listener, record?.address, record?.port],
		["listening", "c2s", "::", 5222],
	);
});
