import assert from "node:assert/strict";
import { test } from "node:test";
import { x } from "../xml/element.ts";
import { parseDocument } from "../xml/parser.ts";
import { streamErrorElement } from "../xmpp/errors.ts";
import { NS_CLIENT, NS_SASL } from "../xmpp/ns.ts";
import { standaloneXml } from "./serialize.ts";

const limits = { maxStanzaBytes: 65536, maxDepth: 16 };

test("RFC 7395 §3.3.3: server-built stanzas get xmlns='jabber:client'", () => {
	const el = x("iq", { type: "result", id: "1" }, x("query", { xmlns: "urn:x" }));
	const s = standaloneXml(el);
	assert.equal(s, '<iq xmlns="jabber:client" type="result" id="1"><query xmlns="urn:x"/></iq>');
	// The element itself is not changed (it may be fanned out to other sessions).
	assert.equal(el.ns, null);
	assert.equal(parseDocument(s, limits).ns, NS_CLIENT);
});

test("parsed jabber:client stanzas keep their children's namespaces", () => {
	const el = parseDocument(
		"<message xmlns='jabber:client' to='a@b'><body>hi &amp; bye</body><x xmlns='urn:y'/></message>",
		limits,
	);
	const round = parseDocument(standaloneXml(el), limits);
	assert.equal(round.ns, NS_CLIENT);
	assert.equal(round.getChildText("body"), "hi & bye");
	assert.equal(round.getChild("x")?.ns, "urn:y");
});

test("stream: elements declare the streams prefix; other namespaces are written as they are", () => {
	const err = standaloneXml(streamErrorElement("policy-violation", "too big"));
	assert.match(err, /^<stream:error xmlns:stream="http:\/\/etherx.jabber.org\/streams">/);
	assert.equal(parseDocument(err, limits).ns, "http://etherx.jabber.org/streams");
	assert.equal(standaloneXml(x("success", { xmlns: NS_SASL })), `<success xmlns="${NS_SASL}"/>`);
});
