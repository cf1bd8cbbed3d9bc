import assert from "node:assert/strict";
import { test } from "node:test";
import { parseDocument } from "../xml/parser.ts";
import { capsVer, verificationString } from "./caps.ts";

const parse = (s: string) => parseDocument(s, { maxStanzaBytes: 65_536, maxDepth: 16 });

test("XEP-0115 §5.2: the simple example hashes to QgayPKawpkPSDYmwT/WM94uAlu0=", () => {
	const info = parse(
		`<query xmlns='http://jabber.org/protocol/disco#info'>
			<identity category='client' name='Exodus 0.9.1' type='pc'/>
			<feature var='http://jabber.org/protocol/muc'/>
			<feature var='http://jabber.org/protocol/disco#info'/>
			<feature var='http://jabber.org/protocol/disco#items'/>
			<feature var='http://jabber.org/protocol/caps'/>
		</query>`,
	);
	assert.equal(
		verificationString(info),
		"client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<",
	);
	assert.equal(capsVer(info), "QgayPKawpkPSDYmwT/WM94uAlu0=");
});

test("XEP-0115 §5.3: the complex example (languages, extended forms) hashes to q07IKJEyjvHSyhy//CH0CxmKi8w=", () => {
	const info = parse(
		`<query xmlns='http://jabber.org/protocol/disco#info'>
			<identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
			<identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
			<feature var='http://jabber.org/protocol/caps'/>
			<feature var='http://jabber.org/protocol/disco#info'/>
			<feature var='http://jabber.org/protocol/disco#items'/>
			<feature var='http://jabber.org/protocol/muc'/>
			<x xmlns='jabber:x:data' type='result'>
				<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
				<field var='ip_version'><value>ipv4</value><value>ipv6</value></field>
				<field var='os'><value>Mac</value></field>
				<field var='os_version'><value>10.5.1</value></field>
				<field var='software'><value>Psi</value></field>
				<field var='software_version'><value>0.11</value></field>
			</x>
		</query>`,
	);
	assert.equal(capsVer(info), "q07IKJEyjvHSyhy//CH0CxmKi8w=");
});
