import assert from "node:assert/strict";
import { test } from "node:test";
import { parseJID } from "../xmpp/jid.ts";
import { isBlocked } from "./blocking.ts";

const blocked = (items: string[], jid: string) => isBlocked(new Set(items), parseJID(jid));

test("XEP-0191 §6: a full JID item matches only that resource", () => {
	assert.equal(blocked(["romeo@montague.net/orchard"], "romeo@montague.net/orchard"), true);
	assert.equal(blocked(["romeo@montague.net/orchard"], "romeo@montague.net/garden"), false);
	assert.equal(blocked(["romeo@montague.net/orchard"], "romeo@montague.net"), false);
});

test("XEP-0191 §6: a bare JID item matches every resource", () => {
	assert.equal(blocked(["romeo@montague.net"], "romeo@montague.net/garden"), true);
	assert.equal(blocked(["romeo@montague.net"], "romeo@montague.net"), true);
	assert.equal(blocked(["romeo@montague.net"], "tybalt@montague.net"), false);
});

test("XEP-0191 §6: a domain/resource item matches only that resource of the domain", () => {
	assert.equal(blocked(["montague.net/bot"], "montague.net/bot"), true);
	assert.equal(blocked(["montague.net/bot"], "montague.net"), false);
	assert.equal(blocked(["montague.net/bot"], "romeo@montague.net/bot"), false);
});

test("XEP-0191 §6: a domain item matches the domain, its users, resources and subdomains", () => {
	for (const jid of [
		"montague.net",
		"romeo@montague.net",
		"romeo@montague.net/x",
		"montague.net/r",
		"chat.montague.net",
		"a@b.chat.montague.net/c",
	])
		assert.equal(blocked(["montague.net"], jid), true, jid);
	assert.equal(blocked(["montague.net"], "notmontague.net"), false);
	assert.equal(blocked([], "montague.net"), false);
});
