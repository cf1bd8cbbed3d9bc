import assert from "node:assert/strict";
import { test } from "node:test";
import { NS_CLIENT } from "../xmpp/ns.ts";
import { x } from "./element.ts";
import { PreparedStanza } from "./prepared.ts";

const message = () =>
	x(
		"message",
		{ from: "room@muc.example/nick", type: "groupchat", id: "a&b", to: "ignored@example" },
		x("body", null, '1 < 2 & "quotes"'),
		x("x", { xmlns: "http://jabber.org/protocol/muc#user" }, x("status", { code: "110" })),
	);

test("an addressed stanza serialises exactly like the same element built by hand", () => {
	const p = new PreparedStanza(message());
	for (const to of ["bob@example/r", "o'hara@example/<weird>&"]) {
		const expected = message();
		delete expected.attrs.to;
		expected.attrs.to = to;
		for (const ns of [NS_CLIENT, null]) assert.equal(p.to(to).toString(ns), expected.toString(ns));
	}
});

test("the prepared `to` is replaced, not added to, and other attributes are kept", () => {
	const el = new PreparedStanza(message()).to("bob@example/r");
	assert.equal(el.attrs.to, "bob@example/r");
	assert.equal(el.attrs.from, "room@muc.example/nick");
	assert.equal((el.toString(NS_CLIENT).match(/ to=/g) ?? []).length, 1);
});

test("a recipient's element that was changed afterwards is serialised from its new state", () => {
	const el = new PreparedStanza(message()).to("bob@example/r");
	el.children = [x("body", null, "changed")];
	assert.match(el.toString(NS_CLIENT), /<body>changed<\/body>/);
	// clone() gives an ordinary, independent element.
	const c = new PreparedStanza(message()).to("carol@example/r").clone();
	c.attrs.to = "dave@example/r";
	assert.match(c.toString(NS_CLIENT), /to="dave@example\/r"/);
});

test("an empty element stays self-closing", () => {
	const p = new PreparedStanza(x("presence", { from: "r@m/n", type: "unavailable" }));
	assert.equal(
		p.to("a@b/c").toString(NS_CLIENT),
		'<presence from="r@m/n" type="unavailable" to="a@b/c"/>',
	);
});
