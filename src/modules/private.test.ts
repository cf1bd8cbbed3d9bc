import assert from "node:assert/strict";
import { test } from "node:test";
import { parseDocument } from "../xml/parser.ts";
import { fragmentKey, isReservedNamespace } from "./private.ts";

test("XEP-0049 §2.3: jabber:*, http://jabber.org/* and vcard-temp are reserved", () => {
	for (const ns of [
		"jabber:iq:private",
		"jabber:client",
		"http://jabber.org/protocol/muc",
		"vcard-temp",
		null,
		"",
	]) {
		assert.equal(isReservedNamespace(ns), true, String(ns));
	}
	for (const ns of [
		"storage:bookmarks",
		"exodus:prefs",
		"http://example.com/jabber:",
		"urn:xmpp:bookmarks:1",
	]) {
		assert.equal(isReservedNamespace(ns), false, ns);
	}
});

test("XEP-0049 §2.3: fragments are keyed by element name and namespace", () => {
	const a = parseDocument("<storage xmlns='storage:bookmarks'/>", {
		maxStanzaBytes: 1000,
		maxDepth: 4,
	});
	const b = parseDocument("<storage xmlns='storage:rosternotes'/>", {
		maxStanzaBytes: 1000,
		maxDepth: 4,
	});
	assert.notEqual(fragmentKey(a), fragmentKey(b));
});
