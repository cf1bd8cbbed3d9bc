import assert from "node:assert/strict";
import { test } from "node:test";
import { x } from "../xml/element.ts";
import { delayStamp, isStorable, withDelay } from "./offline.ts";

const body = x("body", null, "hi");

test("XEP-0160 §3: chat and normal messages with a body are stored; other types are not", () => {
	assert.equal(isStorable(x("message", { type: "chat" }, body.clone())), true);
	assert.equal(isStorable(x("message", null, body.clone())), true, "no type means normal");
	for (const type of ["headline", "groupchat", "error"])
		assert.equal(isStorable(x("message", { type }, body.clone())), false, type);
});

test("XEP-0334 §4: <no-store/> excludes, <store/> includes a bodyless message", () => {
	const noStore = x(
		"message",
		{ type: "chat" },
		body.clone(),
		x("no-store", { xmlns: "urn:xmpp:hints" }),
	);
	assert.equal(isStorable(noStore), false);
	const state = x(
		"message",
		{ type: "chat" },
		x("active", { xmlns: "http://jabber.org/protocol/chatstates" }),
	);
	assert.equal(isStorable(state), false, "XEP-0085 §5.6: standalone chat states are not stored");
	state.append(x("store", { xmlns: "urn:xmpp:hints" }));
	assert.equal(isStorable(state), true);
});

test("XEP-0203 §3: the delay element names the host and a UTC stamp without fractions", () => {
	const when = Date.UTC(2024, 1, 29, 23, 59, 58, 999);
	assert.equal(delayStamp(when), "2024-02-29T23:59:58Z");
	const m = withDelay(x("message", { xmlns: "jabber:client" }, body.clone()), "example.org", when);
	assert.equal(
		m.toString(),
		'<message xmlns="jabber:client"><body>hi</body><delay xmlns="urn:xmpp:delay" from="example.org" stamp="2024-02-29T23:59:58Z"/></message>',
	);
});
