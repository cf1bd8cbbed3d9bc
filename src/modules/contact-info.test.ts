import assert from "node:assert/strict";
import { test } from "node:test";
import { contactForm } from "./contact-info.ts";

const none = {
	abuse: [],
	admin: [],
	feedback: [],
	sales: [],
	security: [],
	status: [],
	support: [],
};

test("XEP-0157 §3: a serverinfo result form with one list-multi field per configured kind", () => {
	const form = contactForm({
		...none,
		security: ["mailto:sec@example.org"],
		admin: ["xmpp:a@example.org"],
	});
	assert.ok(form);
	assert.equal(
		form.toString(),
		'<x xmlns="jabber:x:data" type="result"><field var="FORM_TYPE" type="hidden"><value>http://jabber.org/network/serverinfo</value></field>' +
			'<field var="admin-addresses" type="list-multi"><value>xmpp:a@example.org</value></field>' +
			'<field var="security-addresses" type="list-multi"><value>mailto:sec@example.org</value></field></x>',
	);
});

test("XEP-0157: nothing configured, nothing published", () => {
	assert.equal(contactForm(none), null);
});
