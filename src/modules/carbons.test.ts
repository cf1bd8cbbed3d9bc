import assert from "node:assert/strict";
import { test } from "node:test";
import { x } from "../xml/element.ts";
import { parseJID } from "../xmpp/jid.ts";
import { carbonCopy, isEligible } from "./carbons.ts";

const body = () => x("body", null, "hi");

test("XEP-0280 §6: chat, and normal with a body, are eligible; the rest is not", () => {
	assert.equal(isEligible(x("message", { type: "chat" })), true);
	assert.equal(isEligible(x("message", null, body())), true);
	assert.equal(isEligible(x("message", null)), false, "normal without a body");
	for (const type of ["headline", "groupchat", "error"])
		assert.equal(isEligible(x("message", { type }, body())), false, type);
	// §6: MUC private messages are not copied.
	const pm = x(
		"message",
		{ type: "chat" },
		body(),
		x("x", { xmlns: "http://jabber.org/protocol/muc#user" }),
	);
	assert.equal(isEligible(pm), false);
});

test("XEP-0280 §9 private, XEP-0334 §4.4 no-copy, and carbons themselves are never copied", () => {
	assert.equal(
		isEligible(
			x("message", { type: "chat" }, body(), x("private", { xmlns: "urn:xmpp:carbons:2" })),
		),
		false,
	);
	assert.equal(
		isEligible(x("message", { type: "chat" }, body(), x("no-copy", { xmlns: "urn:xmpp:hints" }))),
		false,
	);
	assert.equal(
		isEligible(x("message", { type: "chat" }, x("sent", { xmlns: "urn:xmpp:carbons:2" }))),
		false,
	);
});

test("XEP-0280 §7: the copy comes from the bare JID and keeps the original in jabber:client", () => {
	const original = x(
		"message",
		{ type: "chat", from: "juliet@capulet.example/balcony", to: "romeo@montague.example/garden" },
		body(),
	);
	const copy = carbonCopy(
		"received",
		original,
		parseJID("romeo@montague.example/garden"),
		parseJID("romeo@montague.example/home"),
	);
	assert.equal(
		copy.toString("jabber:client"),
		'<message from="romeo@montague.example" to="romeo@montague.example/home" type="chat">' +
			'<received xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0">' +
			'<message xmlns="jabber:client" type="chat" from="juliet@capulet.example/balcony" to="romeo@montague.example/garden"><body>hi</body></message>' +
			"</forwarded></received></message>",
	);
});
