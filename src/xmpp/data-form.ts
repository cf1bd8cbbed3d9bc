/**
 * Data Forms (XEP-0004): building fields and reading submitted values. Shared by every form a
 * module speaks (MUC room configuration, PubSub node configuration, subscription options).
 */
import { type Element, x } from "../xml/element.ts";

export const NS_DATA = "jabber:x:data";

/** One `<field/>` with its values and, for list fields, its options ([value, label]). */
export function field(
	v: string,
	type: string,
	label: string | undefined,
	value: string | readonly string[],
	options?: readonly (readonly [string, string])[],
): Element {
	const values = typeof value === "string" ? [value] : value;
	return x(
		"field",
		{ var: v, type, label },
		options?.map(([val, lab]) => x("option", { label: lab }, x("value", null, val))),
		values.map((val) => x("value", null, val)),
	);
}

/** The values of a submitted form: var -> values (XEP-0004 §3.2). */
export function formValues(form: Element): Map<string, string[]> {
	const out = new Map<string, string[]>();
	for (const f of form.getChildren("field")) {
		const v = f.attrs.var;
		if (v === undefined) continue;
		out.set(
			v,
			f.getChildren("value").map((e) => e.text()),
		);
	}
	return out;
}

/** XEP-0004 §3.3: a boolean value is 0/1/false/true; anything else is undefined. */
export function parseBoolean(v: string): boolean | undefined {
	const t = v.trim();
	if (t === "1" || t === "true") return true;
	if (t === "0" || t === "false") return false;
	return undefined;
}

/** The `jabber:x:data` child of `el` whose FORM_TYPE is `formType`, if any. */
export function findForm(el: Element | undefined, formType: string): Element | undefined {
	for (const form of el?.getChildren("x", NS_DATA) ?? []) {
		if (formValues(form).get("FORM_TYPE")?.[0] === formType) return form;
	}
	return undefined;
}
