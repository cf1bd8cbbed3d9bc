import assert from "node:assert/strict";
import { test } from "node:test";
import { z } from "zod";
import { defineCommand } from "../core/commands.ts";
import { coerceTextArgs } from "./args.ts";

const command = defineCommand({
	name: "test.args",
	description: "arguments of every kind",
	args: z.object({
		limit: z.number().int().optional(),
		ratio: z.number().default(1),
		dry_run: z.boolean().optional(),
		name: z.string(),
		kind: z.enum(["a", "b"]).optional(),
	}),
	role: "admin",
	http: { method: "GET", path: "/test" },
	run: async () => undefined,
});

test("text from a path, a query or a flag is read as the type the schema wants", () => {
	const out = coerceTextArgs(command, {
		limit: "10",
		ratio: "0.5",
		dry_run: "true",
		name: "42",
		kind: "a",
	});
	assert.deepEqual(out, { limit: 10, ratio: 0.5, dry_run: true, name: "42", kind: "a" });
	assert.ok(command.args.safeParse(out).success);
});

test("text that does not read as the type is left for the schema to refuse", () => {
	const out = coerceTextArgs(command, { limit: "ten", dry_run: "yes", name: "x", extra: "1" });
	assert.deepEqual(out, { limit: "ten", dry_run: "yes", name: "x", extra: "1" });
	assert.equal(command.args.safeParse(out).success, false);
});
