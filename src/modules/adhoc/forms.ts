/**
 * XEP-0004 data forms built from an admin command's zod arguments, and the submitted form read
 * back into arguments (XEP-0050 §4.4: the payload of a command is a data form).
 *
 * Each key of the command's `args` object is one field whose `var` is the key (so a command
 * that names its arguments as XEP-0133 does, `accountjid`, `password`, `announcement`, speaks
 * XEP-0133's forms). The field type follows the schema (XEP-0004 §3.3):
 *
 * - boolean → `boolean`; an enum → `list-single` with an option per value;
 * - an array of strings → `jid-multi` when its name ends in `jids`, else `text-multi`;
 * - a string → `text-private` when its name says password or secret, `jid-single` when its
 *   name ends in `jid`, else `text-single`; a number → `text-single`.
 *
 * `.meta({ xdata: "<type>" })` on an argument overrides the type (`text-multi` for an
 * announcement's body), `.meta({ var: "<name>" })` the field's var (a XEP's name that is no
 * good as an argument name, XEP-0401's `roster-subscription`), `.describe()` gives the label. An argument named `host` is not shown:
 * over XMPP it is the host the command was sent to (`CommandContext.host`).
 */
import { z } from "zod";
import { type Element, x } from "../../xml/element.ts";
import { field, NS_DATA, parseBoolean } from "../../xmpp/data-form.ts";

/** The argument named so is the host the command runs on, never asked in a form. */
export const HOST_ARG = "host";

type FieldType =
	| "boolean"
	| "fixed"
	| "hidden"
	| "jid-multi"
	| "jid-single"
	| "list-multi"
	| "list-single"
	| "text-multi"
	| "text-private"
	| "text-single";

interface FieldInfo {
	/** The field's var: the argument's name unless its meta says otherwise. */
	var: string;
	type: FieldType;
	label: string | undefined;
	required: boolean;
	default: unknown;
	options: readonly string[] | undefined;
	/** The schema under its optional/default wrappers. */
	inner: z.ZodType;
}

/** What a form needs to know of one argument, looking through optional/default wrappers. */
export function describeArg(name: string, schema: z.ZodType): FieldInfo {
	let t: z.ZodType = schema;
	let required = true;
	let dflt: unknown;
	let label = t.description;
	let override: unknown = t.meta()?.xdata;
	let fieldVar: unknown = t.meta()?.var;
	for (;;) {
		if (t instanceof z.ZodOptional || t instanceof z.ZodNullable) {
			required = false;
			t = t.unwrap() as z.ZodType;
		} else if (t instanceof z.ZodDefault || t instanceof z.ZodPrefault) {
			required = false;
			dflt = t.def.defaultValue;
			t = t.unwrap() as z.ZodType;
		} else break;
		label ??= t.description;
		override ??= t.meta()?.xdata;
		fieldVar ??= t.meta()?.var;
	}
	let type: FieldType;
	let options: readonly string[] | undefined;
	if (t instanceof z.ZodBoolean) type = "boolean";
	else if (t instanceof z.ZodEnum) {
		type = "list-single";
		options = t.options.map(String);
	} else if (t instanceof z.ZodArray) type = /jids$/i.test(name) ? "jid-multi" : "text-multi";
	else if (/password|secret/i.test(name)) type = "text-private";
	else if (/jid$/i.test(name)) type = "jid-single";
	else type = "text-single";
	if (typeof override === "string") type = override as FieldType;
	return {
		var: typeof fieldVar === "string" ? fieldVar : name,
		type,
		label,
		required,
		default: dflt,
		options,
		inner: t,
	};
}

/** The form asking for a command's arguments (XEP-0050 §3.4, XEP-0004 §3.1 type `form`). */
export function argsForm(
	args: z.ZodObject,
	formType: string,
	title: string,
	instructions?: string,
): Element {
	const fields: Element[] = [field("FORM_TYPE", "hidden", undefined, formType)];
	for (const [name, schema] of Object.entries(args.shape)) {
		if (name === HOST_ARG) continue;
		const info = describeArg(name, schema as z.ZodType);
		const value =
			info.default === undefined
				? []
				: Array.isArray(info.default)
					? info.default.map(String)
					: info.type === "boolean"
						? [info.default ? "1" : "0"]
						: [String(info.default)];
		const f = field(
			info.var,
			info.type,
			info.label ?? name,
			value,
			info.options?.map((o) => [o, o] as const),
		);
		// XEP-0004 §3.2: <required/> marks a field the form cannot be submitted without.
		if (info.required && info.type !== "boolean") f.append(x("required"));
		fields.push(f);
	}
	return x(
		"x",
		{ xmlns: NS_DATA, type: "form" },
		x("title", null, title),
		instructions ? x("instructions", null, instructions) : undefined,
		fields,
	);
}

/**
 * The arguments a submitted form gives (XEP-0004 §3.2 type `submit`), before validation: a
 * field left out or empty is left out, so the schema's defaults and `required` apply.
 */
export function argsFromForm(
	args: z.ZodObject,
	values: Map<string, string[]>,
): Record<string, unknown> {
	const out: Record<string, unknown> = {};
	for (const [name, schema] of Object.entries(args.shape)) {
		if (name === HOST_ARG) continue;
		const info = describeArg(name, schema as z.ZodType);
		const got = values.get(info.var);
		if (got === undefined) continue;
		const vals = got.filter((v) => v !== "");
		if (info.inner instanceof z.ZodArray) {
			out[name] = vals;
			continue;
		}
		if (vals.length === 0) continue;
		if (info.type === "boolean") {
			// XEP-0004 §3.3: 0/1/false/true; anything else stays a string and fails validation.
			out[name] = parseBoolean(vals[0] as string) ?? vals[0];
		} else if (info.inner instanceof z.ZodNumber) {
			const n = Number(vals[0]);
			out[name] = Number.isNaN(n) ? vals[0] : n;
		} else if (info.type === "text-multi") {
			// XEP-0004 §3.3: each line of a text-multi is its own <value/>.
			out[name] = vals.join("\n");
		} else out[name] = vals[0];
	}
	return out;
}

/** XEP-0133 §4's result fields, labelled as the XEP's examples label them. */
const RESULT_LABELS: Record<string, string> = {
	onlineusersnum: "The number of online users",
	registeredusersnum: "The number of registered users",
	activeusersnum: "The number of active users",
	idleusersnum: "The number of idle users",
	disabledusersnum: "The number of disabled users",
	onlineuserjids: "The list of online users",
	registereduserjids: "The list of registered users",
	activeuserjids: "The list of active users",
	idleuserjids: "The list of idle users",
	disableduserjids: "The list of disabled users",
};

/**
 * A result field's label: XEP-0133's own where it is one of its fields, else the key in words
 * (`sessionsTotal`, `sessions_total` -> "Sessions total"), so a client that shows labels (Gajim)
 * does not show a bare key.
 */
export function resultLabel(name: string): string {
	const known = RESULT_LABELS[name];
	if (known) return known;
	const words = name
		.replace(/([a-z0-9])([A-Z])/g, "$1 $2")
		.replace(/[_-]+/g, " ")
		.trim()
		.toLowerCase();
	return words ? words[0]?.toUpperCase() + words.slice(1) : name;
}

/**
 * A command's result as a form of type `result` (XEP-0004 §3.4): each key of an object one
 * field (a list a `text-multi`, a boolean a `boolean`), any other value one field `result`.
 */
export function resultForm(result: unknown, formType: string, title: string): Element | undefined {
	if (result === undefined || result === null) return undefined;
	const fields: Element[] = [field("FORM_TYPE", "hidden", undefined, formType)];
	const entries =
		typeof result === "object" && !Array.isArray(result)
			? Object.entries(result as Record<string, unknown>)
			: [["result", result] as const];
	for (const [name, value] of entries) {
		if (value === undefined) continue;
		if (typeof value === "boolean")
			fields.push(field(name, "boolean", resultLabel(name), value ? "1" : "0"));
		else if (Array.isArray(value))
			fields.push(
				field(
					name,
					/jids$/i.test(name) ? "jid-multi" : "text-multi",
					resultLabel(name),
					value.map((v) => (typeof v === "object" ? JSON.stringify(v) : String(v))),
				),
			);
		else if (value !== null && typeof value === "object")
			fields.push(field(name, "text-single", resultLabel(name), JSON.stringify(value)));
		else if (value !== null)
			fields.push(
				field(
					name,
					/jid$/i.test(name) ? "jid-single" : "text-single",
					resultLabel(name),
					String(value),
				),
			);
	}
	return x("x", { xmlns: NS_DATA, type: "result" }, x("title", null, title), fields);
}
