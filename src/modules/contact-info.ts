/**
 * Contact Addresses for XMPP Services (XEP-0157): who to write to about abuse, security,
 * support..., from the host's module options, published as a XEP-0128 extended disco#info form.
 *
 *   [hosts."example.org".module_options.contact_info]
 *   admin = ["xmpp:admin@example.org", "mailto:admin@example.org"]
 *   abuse = ["mailto:abuse@example.org"]
 */
import { z } from "zod";
import { defineModule } from "../core/modules/define.ts";
import { type Element, x } from "../xml/element.ts";

export const NS_SERVERINFO = "http://jabber.org/network/serverinfo";
export const NS_DATA_FORMS = "jabber:x:data";

/** XEP-0157 §4 (Field Standardization): one field per kind of contact. */
const KINDS = ["abuse", "admin", "feedback", "sales", "security", "status", "support"] as const;

// A URI (RFC 3986 scheme ":" ...); XEP-0157 §3 lists xmpp:, mailto:, http(s):, tel: and so on.
const uri = z.string().regex(/^[a-z][a-z0-9+.-]*:\S+$/i, "must be a URI such as mailto:x@y");

const addresses = z.array(uri).default([]);
const options = z.strictObject({
	abuse: addresses,
	admin: addresses,
	feedback: addresses,
	sales: addresses,
	security: addresses,
	status: addresses,
	support: addresses,
});

export type ContactOptions = z.infer<typeof options>;

/** The XEP-0157 §3 form, or null when no address is configured. */
export function contactForm(opts: ContactOptions): Element | null {
	const fields = KINDS.filter((k) => opts[k].length > 0).map((k) =>
		x(
			"field",
			{ var: `${k}-addresses`, type: "list-multi" },
			opts[k].map((u) => x("value", null, u)),
		),
	);
	if (fields.length === 0) return null;
	return x(
		"x",
		{ xmlns: NS_DATA_FORMS, type: "result" },
		// XEP-0128 §2 / XEP-0068: the FORM_TYPE names the form.
		x("field", { var: "FORM_TYPE", type: "hidden" }, x("value", null, NS_SERVERINFO)),
		fields,
	);
}

export default defineModule({
	name: "contact_info",
	description: "XEP-0157 Contact Addresses for XMPP Services",
	options,
	load(api) {
		const form = contactForm(api.options);
		if (form) api.addExtension(form);
	},
});
