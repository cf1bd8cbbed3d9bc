/**
 * The pubsub node a stanza to a clustered pubsub service is routed by (issue 16,
 * `pubsubUnitOf`): read from the payload, null when the request names none.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseDocument } from "../../xml/parser.ts";
import { parseJID } from "../../xmpp/jid.ts";
import { pubsubUnitOf } from "./index.ts";

const SERVICE = parseJID("pubsub.example.org");
/** The stanza `xml` (in jabber:client) as the router has it, and its unit. */
const unit = (xml: string, to = SERVICE) =>
	pubsubUnitOf(
		to,
		parseDocument(xml.replace(/^<(\w+)/, "<$1 xmlns='jabber:client'"), {
			maxDepth: 16,
			maxStanzaBytes: 65536,
		}),
	);
const PS = "http://jabber.org/protocol/pubsub";

test("XEP-0060 §§6-8: the node of <pubsub>'s first child, user and owner namespaces", () => {
	assert.equal(
		unit(
			`<iq type='set' id='1'><pubsub xmlns='${PS}'><publish node='n1'><item/></publish></pubsub></iq>`,
		),
		"n1",
	);
	assert.equal(
		unit(
			`<iq type='get' id='1'><pubsub xmlns='${PS}'><items node='n2' max_items='1'/></pubsub></iq>`,
		),
		"n2",
	);
	assert.equal(
		unit(`<iq type='set' id='1'><pubsub xmlns='${PS}#owner'><delete node='n3'/></pubsub></iq>`),
		"n3",
	);
	// §8.1.3: create-and-configure: the node is on <create/>, not on <configure/>.
	assert.equal(
		unit(
			`<iq type='set' id='1'><pubsub xmlns='${PS}'><create node='n4'/><configure/></pubsub></iq>`,
		),
		"n4",
	);
});

test("requests that name no node are answered where they arrive (null)", () => {
	// §8.1.2 instant node, §5.6 every subscription, an empty node attribute.
	assert.equal(unit(`<iq type='set' id='1'><pubsub xmlns='${PS}'><create/></pubsub></iq>`), null);
	assert.equal(
		unit(`<iq type='get' id='1'><pubsub xmlns='${PS}'><subscriptions/></pubsub></iq>`),
		null,
	);
	assert.equal(
		unit(`<iq type='get' id='1'><pubsub xmlns='${PS}'><items node=''/></pubsub></iq>`),
		null,
	);
	// Not pubsub: another namespace, an IQ result, a ping, an address with a localpart.
	assert.equal(
		unit(`<iq type='get' id='1'><pubsub xmlns='urn:x'><items node='n'/></pubsub></iq>`),
		null,
	);
	assert.equal(
		unit(`<iq type='result' id='1'><pubsub xmlns='${PS}'><items node='n'/></pubsub></iq>`),
		null,
	);
	assert.equal(unit(`<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>`), null);
	assert.equal(
		unit(
			`<iq type='get' id='1'><pubsub xmlns='${PS}'><items node='n'/></pubsub></iq>`,
			parseJID("u@pubsub.example.org"),
		),
		null,
	);
});

test("XEP-0030 (XEP-0060 §5.3, §5.5): disco#info and disco#items with a node; the root's without", () => {
	assert.equal(
		unit(
			`<iq type='get' id='1'><query xmlns='http://jabber.org/protocol/disco#info' node='n5'/></iq>`,
		),
		"n5",
	);
	assert.equal(
		unit(
			`<iq type='get' id='1'><query xmlns='http://jabber.org/protocol/disco#items' node='n6'/></iq>`,
		),
		"n6",
	);
	assert.equal(
		unit(`<iq type='get' id='1'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`),
		null,
	);
});

test("XEP-0060 §8.6.2: an owner's answer to a subscription request names its node in the form", () => {
	assert.equal(
		unit(
			`<message><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>${PS}#subscribe_authorization</value></field><field var='pubsub#node'><value>n7</value></field><field var='pubsub#subscriber_jid'><value>a@b</value></field><field var='pubsub#allow'><value>true</value></field></x></message>`,
		),
		"n7",
	);
	assert.equal(unit("<message><body>hi</body></message>"), null);
	assert.equal(unit("<presence/>"), null);
});
