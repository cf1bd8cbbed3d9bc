/**
 * PEP (XEP-0163) steps for federation tests with real peers (test/e2e/prosody-pep.test.ts,
 * test/e2e/ejabberd-s2s.test.ts): a client that wants notifications by XEP-0115 caps, a tune
 * published, a tune event awaited.
 */
import { type XmlElement, xml } from "@xmpp/client";
import { capsVer } from "../../src/modules/caps.ts";
import type { Element } from "../../src/xml/element.ts";
import { waitFor } from "./wait.ts";
import type { XmppConnection } from "./xmpp-client.ts";
import { clientInfo } from "./xmpp-user.ts";

export const TUNE = "http://jabber.org/protocol/tune";
const EVENT = "http://jabber.org/protocol/pubsub#event";
const PUBSUB = "http://jabber.org/protocol/pubsub";
const CAPS_NODE = "urn:parley:test";

/**
 * XEP-0115: announce caps that +notify `notify`, and answer whoever asks for them (the servers
 * of the contacts, over s2s) with the disco#info the hash was computed from.
 */
export async function wantNotifications(c: XmppConnection, notify: string[]): Promise<void> {
	const info = clientInfo(notify);
	const ver = capsVer(info);
	c.xmpp.on("stanza", (s: XmlElement) => {
		const q = s.getChild("query", "http://jabber.org/protocol/disco#info");
		if (!s.is("iq") || s.attrs.type !== "get" || q?.attrs.node !== `${CAPS_NODE}#${ver}`) return;
		const answer = toXmpp(clientInfo(notify, q.attrs.node));
		void c.xmpp.send(xml("iq", { type: "result", id: s.attrs.id, to: s.attrs.from }, answer));
	});
	await c.xmpp.send(
		xml(
			"presence",
			{},
			xml("c", { xmlns: "http://jabber.org/protocol/caps", hash: "sha-1", node: CAPS_NODE, ver }),
		),
	);
}

/** One of the server's elements as an xmpp.js element. */
function toXmpp(el: Element): XmlElement {
	const attrs: Record<string, string> = { ...el.attrs };
	if (el.ns) attrs.xmlns = el.ns;
	return xml(el.name, attrs, ...el.children.map((c) => (typeof c === "string" ? c : toXmpp(c))));
}

export const tuneEvent = (c: XmppConnection, from: string, title: string) =>
	waitFor(
		() =>
			c.stanzas.find(
				(s) =>
					s.is("message") &&
					s.attrs.from === from &&
					s
						.getChild("event", EVENT)
						?.getChild("items")
						?.getChild("item")
						?.getChild("tune", TUNE)
						?.getChildText("title") === title,
			),
		`${title} from ${from}`,
		20_000,
	);

export const publishTune = (c: XmppConnection, title: string) =>
	c.xmpp.iqCaller.request(
		xml(
			"iq",
			{ type: "set" },
			xml(
				"pubsub",
				{ xmlns: PUBSUB },
				xml(
					"publish",
					{ node: TUNE },
					xml("item", {}, xml("tune", { xmlns: TUNE }, xml("title", {}, title))),
				),
			),
		),
		20_000,
	);
