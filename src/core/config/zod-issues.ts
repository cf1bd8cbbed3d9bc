/**
 * zod's issues as messages an operator can act on: what the key expects (read from the schema),
 * what the file has, and for an unknown key the closest valid one.
 */
import { z } from "zod";
import { formatKeyPath, type Report } from "./report.ts";
import { configSchema } from "./schema.ts";
import { closest } from "./suggest.ts";

function tableName(path: readonly PropertyKey[]): string {
	return path.length === 0 ? "at the top level" : `in [${formatKeyPath(path)}]`;
}

export function describeIssue(issue: z.core.$ZodIssue, raw: unknown, report: Report): void {
	const path = issue.path.filter((s): s is string | number => typeof s !== "symbol");
	const key = formatKeyPath(path);

	if (issue.code === "unrecognized_keys") {
		const valid = Object.keys(objectShapeAt(path, raw) ?? {});
		for (const unknown of issue.keys) {
			const suggestion = closest(unknown, valid);
			const hint = suggestion === undefined ? "" : `; did you mean ${suggestion}?`;
			report(
				[...path, unknown],
				`unknown key ${JSON.stringify(unknown)} ${tableName(path)}${hint}`,
			);
		}
		return;
	}

	const schema = schemaAt(path, raw);
	const found = valueAt(raw, path);
	// A refinement's own message says what is wrong better than the key's type would.
	if (issue.code === "custom" && found.present !== false) {
		report(path, `${key}: ${issue.message}, got ${describeValue(found.value)}`);
		return;
	}
	const expected = schema === undefined ? undefined : describeExpected(schema);

	if (found.present === false) {
		const what = schema?.description ?? expected;
		report(path, `${key}: missing${what === undefined ? "" : ` (${what})`}`);
		return;
	}
	if (expected !== undefined) {
		report(path, `${key}: expected ${expected}, got ${describeValue(found.value)}`);
		return;
	}
	report(path, `${key}: ${issue.message}, got ${describeValue(found.value)}`);
}

// --- schema walking --------------------------------------------------------------------------

function unwrap(schema: z.ZodType): z.ZodType {
	let s = schema;
	while (s instanceof z.ZodDefault || s instanceof z.ZodPrefault || s instanceof z.ZodOptional) {
		s = s.unwrap() as z.ZodType;
	}
	return s;
}

/**
 * The schema of the value at `path`, or undefined where the schema does not say (unknown). A
 * discriminated union (the `[components.*]` tables, by `type`) is the member the file's value
 * chooses; its discriminator key itself is described as the choice of the members' values.
 */
function schemaAt(path: readonly (string | number)[], raw: unknown): z.ZodType | undefined {
	let s: z.ZodType = configSchema;
	for (const [i, segment] of path.entries()) {
		let u = unwrap(s);
		if (u instanceof z.ZodDiscriminatedUnion) {
			const key = u._zod.def.discriminator;
			const values = unionValues(u, key);
			if (segment === key) return z.enum(values.map(([v]) => v));
			const found = valueAt(raw, [...path.slice(0, i), key]);
			const member = values.find(([v]) => found.present && v === found.value)?.[1];
			if (member === undefined) return undefined;
			u = member;
		}
		if (u instanceof z.ZodObject && typeof segment === "string") {
			const next = (u.shape as Record<string, z.ZodType>)[segment];
			if (next === undefined) return undefined;
			s = next;
		} else if (u instanceof z.ZodRecord) {
			s = u.valueType as z.ZodType;
		} else if (u instanceof z.ZodArray) {
			s = u.element as z.ZodType;
		} else {
			return undefined;
		}
	}
	return s;
}

function objectShapeAt(
	path: readonly (string | number)[],
	raw: unknown,
): Record<string, unknown> | undefined {
	const s = path.length === 0 ? configSchema : schemaAt(path, raw);
	if (s === undefined) return undefined;
	let u = unwrap(s);
	if (u instanceof z.ZodDiscriminatedUnion) {
		const key = u._zod.def.discriminator;
		const found = valueAt(raw, [...path, key]);
		u = unionValues(u, key).find(([v]) => found.present && v === found.value)?.[1] ?? u;
	}
	return u instanceof z.ZodObject ? (u.shape as Record<string, unknown>) : undefined;
}

/** Each member of a discriminated union of objects with the string literal it is chosen by. */
function unionValues(u: z.ZodDiscriminatedUnion, key: string): [string, z.ZodObject][] {
	const out: [string, z.ZodObject][] = [];
	for (const option of u.options) {
		if (!(option instanceof z.ZodObject)) continue;
		const literal = (option.shape as Record<string, z.ZodType>)[key];
		if (!(literal instanceof z.ZodLiteral)) continue;
		for (const v of literal.values) if (typeof v === "string") out.push([v, option]);
	}
	return out;
}

interface BoundCheck {
	check?: string;
	value?: unknown;
	inclusive?: boolean;
}

function describeExpected(schema: z.ZodType): string | undefined {
	const s = unwrap(schema);
	if (s instanceof z.ZodNumber) {
		const integer = s.format === "safeint" || s.format === "int32" || s.format === "uint32";
		const noun = integer ? "an integer" : "a number";
		let lower: string | undefined;
		let upper: string | undefined;
		for (const check of s._zod.def.checks ?? []) {
			const def = check._zod.def as BoundCheck;
			if (typeof def.value !== "number") continue;
			if (def.check === "greater_than") lower = `${def.inclusive ? ">=" : ">"} ${def.value}`;
			if (def.check === "less_than") upper = `${def.inclusive ? "<=" : "<"} ${def.value}`;
		}
		if (lower !== undefined && upper !== undefined) return `${noun} ${lower} and ${upper}`;
		return [noun, lower ?? upper].filter(Boolean).join(" ");
	}
	if (s instanceof z.ZodString) return "a string";
	if (s instanceof z.ZodBoolean) return "true or false";
	if (s instanceof z.ZodEnum) {
		return `one of ${s.options.map((o) => JSON.stringify(o)).join(", ")}`;
	}
	if (s instanceof z.ZodArray) {
		const element = describeExpected(s.element as z.ZodType);
		return element === undefined ? "an array" : `an array of ${plural(element)}`;
	}
	if (s instanceof z.ZodObject || s instanceof z.ZodRecord) return "a table";
	return undefined;
}

function plural(description: string): string {
	// "a string" -> "strings", "an integer >= 1" -> "integers >= 1"; anything else stays as is.
	const m = /^an? (string|integer|number|table)\b(.*)$/.exec(description);
	return m === null ? description : `${m[1]}s${m[2]}`;
}

// --- raw values ------------------------------------------------------------------------------

function valueAt(
	raw: unknown,
	path: readonly (string | number)[],
): { present: true; value: unknown } | { present: false } {
	let v: unknown = raw;
	for (const segment of path) {
		if (v === null || typeof v !== "object" || !Object.hasOwn(v, segment))
			return { present: false };
		v = (v as Record<string | number, unknown>)[segment];
	}
	return { present: true, value: v };
}

function describeValue(v: unknown): string {
	if (typeof v === "string") return JSON.stringify(v);
	if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
	if (Array.isArray(v)) return "an array";
	if (v instanceof Date) return `a date (${v.toISOString()})`;
	if (v !== null && typeof v === "object") return "a table";
	return String(v);
}
