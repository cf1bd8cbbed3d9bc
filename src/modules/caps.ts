/**
 * Entity Capabilities of the server (XEP-0115): the verification string of the host's
 * disco#info goes into the stream features after authentication (§6.3), so a client that
 * has seen this ver before can skip asking for disco#info. The disco#info for `node#ver`
 * (§6.2) is answered here too.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { HANDLED, Priority } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { StanzaEvent } from "../core/router.ts";
import { type Element, x } from "../xml/element.ts";
import { NS_DISCO_INFO } from "../xmpp/ns.ts";
import { resultFor } from "../xmpp/stanza.ts";
import { hostDiscoInfo } from "./disco.ts";

export const NS_CAPS = "http://jabber.org/protocol/caps";

const options = z.strictObject({
	/** XEP-0115 §4: a URI naming the software. */
	node: z.string().min(1).default("urn:parley:caps"),
});

/** "i;octet" collation (XEP-0115 §5.1 via RFC 4790 §9.3): compare UTF-8 bytes. */
function octetCompare(a: string, b: string): number {
	return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/** XEP-0115 §5.1: the string S that is hashed, built from a disco#info query element. */
export function verificationString(info: Element): string {
	let s = "";
	// Steps 2-3: identities sorted by category, type, xml:lang; "category/type/lang/name<".
	const identities = info.getChildren("identity").map((i) => ({
		category: i.attrs.category ?? "",
		type: i.attrs.type ?? "",
		lang: i.attrs["xml:lang"] ?? "",
		name: i.attrs.name ?? "",
	}));
	identities.sort(
		(a, b) =>
			octetCompare(a.category, b.category) ||
			octetCompare(a.type, b.type) ||
			octetCompare(a.lang, b.lang),
	);
	for (const i of identities) s += `${i.category}/${i.type}/${i.lang}/${i.name}<`;
	// Steps 4-5: features sorted, each followed by "<".
	const features = info.getChildren("feature").map((f) => f.attrs.var ?? "");
	for (const f of features.sort(octetCompare)) s += `${f}<`;
	// Steps 6-8: extended info forms sorted by FORM_TYPE; fields sorted by var, values sorted.
	const forms = info
		.getChildren("x", "jabber:x:data")
		.map((form) => {
			const fields = form.getChildren("field").map((f) => ({
				var: f.attrs.var ?? "",
				values: f.getChildren("value").map((v) => v.text()),
			}));
			const formType = fields.find((f) => f.var === "FORM_TYPE")?.values[0] ?? "";
			return { formType, fields: fields.filter((f) => f.var !== "FORM_TYPE") };
		})
		.sort((a, b) => octetCompare(a.formType, b.formType));
	for (const form of forms) {
		s += `${form.formType}<`;
		for (const field of form.fields.sort((a, b) => octetCompare(a.var, b.var))) {
			s += `${field.var}<`;
			for (const v of field.values.sort(octetCompare)) s += `${v}<`;
		}
	}
	return s;
}

/** XEP-0115 §5.1 step 9-10: base64 of the SHA-1 of S. */
export function capsVer(info: Element): string {
	return createHash("sha1").update(verificationString(info), "utf8").digest("base64");
}

export default defineModule({
	name: "caps",
	description: "XEP-0115 Entity Capabilities of the server",
	options,
	load(api) {
		const host = api.host;
		const node = api.options.node;
		// Features, identities and forms change only when modules load or unload; a cheap key of
		// them spares every login from rebuilding and hashing the whole disco#info.
		let cache = { key: "", ver: "" };
		const currentVer = (): string => {
			let key = `${host.identities.length}|${host.extensions.length}|`;
			for (const f of host.features.keys()) key += `${f}\n`;
			if (key !== cache.key) cache = { key, ver: capsVer(hostDiscoInfo(host)) };
			return cache.ver;
		};

		// XEP-0115 §6.3: the server's caps in the stream features (handlers must be synchronous:
		// the stream writes the features as soon as the event returns).
		api.hook("stream-features", ({ features }: { features: Element }) => {
			features.append(x("c", { xmlns: NS_CAPS, hash: "sha-1", node, ver: currentVer() }));
		});

		// XEP-0115 §6.2: disco#info for node#ver is the same info, echoing the node.
		api.hook(
			`iq-get/host/${NS_DISCO_INFO}:query`,
			({ stanza, origin }: StanzaEvent) => {
				const asked = (stanza.elements()[0] as Element).attrs.node;
				if (asked === undefined || asked !== `${node}#${currentVer()}`) return undefined;
				api.reply(origin, resultFor(stanza, hostDiscoInfo(host, asked)));
				return HANDLED;
			},
			Priority.TRANSFORM,
		);
	},
});
