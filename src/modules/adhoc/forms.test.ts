import assert from "node:assert/strict";
import { test } from "node:test";
import { z } from "zod";
import { formValues } from "../../xmpp/data-form.ts";
import { argsForm, argsFromForm, describeArg, resultForm, resultLabel } from "./forms.ts";

test("XEP-0004 §3.3 field types follow the schema and the argument's name", () => {
	const type = (name: string, s: z.ZodType) => describeArg(name, s).type;
	assert.equal(type("enabled", z.boolean().default(false)), "boolean");
	assert.equal(type("color", z.enum(["a", "b"])), "list-single");
	assert.equal(type("accountjids", z.array(z.string())), "jid-multi");
	assert.equal(type("lines", z.array(z.string())), "text-multi");
	assert.equal(type("password", z.string()), "text-private");
	assert.equal(type("accountjid", z.string().optional()), "jid-single");
	assert.equal(type("name", z.string()), "text-single");
	assert.equal(type("body", z.string().meta({ xdata: "text-multi" })), "text-multi");
	const renamed = describeArg(
		"roster_subscription",
		z.boolean().default(false).meta({ var: "roster-subscription" }),
	);
	assert.equal(renamed.var, "roster-subscription");
	assert.equal(renamed.required, false);
	assert.equal(describeArg("x", z.string().describe("Label")).label, "Label");
	assert.equal(describeArg("x", z.string().describe("Label").optional()).label, "Label");
});

test("a submitted form reads back into arguments: booleans, numbers, lines, lists, renamed vars", () => {
	const args = z.object({
		host: z.string().optional(),
		flag: z.boolean().default(false).meta({ var: "the-flag" }),
		n: z.number().int().default(1),
		text: z.string().meta({ xdata: "text-multi" }),
		jids: z.array(z.string()).default([]),
		empty: z.string().optional(),
	});
	const form = argsForm(args, "urn:test", "Title");
	assert.doesNotMatch(form.toString(), /var="host"/, "host is never asked");
	assert.match(form.toString(), /var="the-flag"/);
	const values = new Map<string, string[]>([
		["host", ["evil.example"]],
		["the-flag", ["true"]],
		["n", ["3"]],
		["text", ["a", "b"]],
		["jids", ["a@x", "", "b@x"]],
		["empty", [""]],
	]);
	assert.deepEqual(argsFromForm(args, values), {
		flag: true,
		n: 3,
		text: "a\nb",
		jids: ["a@x", "b@x"],
	});
});

test("a result becomes a result form; nothing to show is no form", () => {
	const form = resultForm({ count: 2, ok: true, jids: ["a@x"], skip: undefined }, "urn:test", "T");
	assert.ok(form);
	const v = formValues(form);
	assert.deepEqual(v.get("count"), ["2"]);
	assert.deepEqual(v.get("ok"), ["1"]);
	assert.deepEqual(v.get("jids"), ["a@x"]);
	assert.equal(v.has("skip"), false);
	assert.equal(resultForm(undefined, "urn:test", "T"), undefined);
});

test("result fields are labelled: XEP-0133's own labels, other keys in words", () => {
	assert.equal(resultLabel("onlineusersnum"), "The number of online users");
	assert.equal(resultLabel("sessionsTotal"), "Sessions total");
	assert.equal(resultLabel("max_rooms"), "Max rooms");
	const form = resultForm({ onlineusersnum: 3, ok: true }, "urn:test", "T");
	assert.match(
		String(form),
		/<field var="onlineusersnum" type="text-single" label="The number of online users">/,
	);
	assert.match(String(form), /<field var="ok" type="boolean" label="Ok">/);
});
