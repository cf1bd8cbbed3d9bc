import assert from "node:assert/strict";
import { test } from "node:test";
import { x } from "./element.ts";
import { parseDocument } from "./parser.ts";

const NS_DIALBACK = "jabber:server:dialback";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";

test("a prefixed name declares its prefix, not the default namespace (XEP-0220 §2.4, ejabberd)", () => {
	const el = x(
		"db:result",
		{ xmlns: NS_DIALBACK, from: "a.example", to: "b.example", type: "error" },
		x("error", { type: "cancel" }, x("item-not-found", { xmlns: NS_STANZAS })),
	);
	const text = el.toString("jabber:client");
	// ejabberd 23.01 reads `<db:result xmlns='jabber:server:dialback'>` as an unknown element
	// and answers bad-request; the <error/> inside belongs to the stream's namespace.
	assert.equal(
		text,
		`<db:result xmlns:db="${NS_DIALBACK}" from="a.example" to="b.example" type="error"><error type="cancel"><item-not-found xmlns="${NS_STANZAS}"/></error></db:result>`,
	);
	const back = parseDocument(text, { maxStanzaBytes: 10_000, maxDepth: 10 });
	assert.equal(back.name, "result");
	assert.equal(back.ns, NS_DIALBACK);
});

test("an unprefixed name in another namespace still declares it as the default", () => {
	assert.equal(
		x("query", { xmlns: "urn:x" }, x("item")).toString("jabber:client"),
		`<query xmlns="urn:x"><item/></query>`,
	);
});
