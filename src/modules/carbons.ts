/**
 * Message Carbons (XEP-0280, urn:xmpp:carbons:2): every resource that enabled carbons gets a
 * copy of the messages its account sends and receives on other resources, so all of a user's
 * clients see whole conversations. The on/off state lives in session.data.
 */

import type { Bind2Event, Bind2FeaturesEvent, Session } from "../core/contracts.ts";
import { HANDLED, Priority } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { DeliveredEvent, StanzaEvent } from "../core/router.ts";
import { type Element, x } from "../xml/element.ts";
import { StanzaError } from "../xmpp/errors.ts";
import type { JID } from "../xmpp/jid.ts";
import { NS_CLIENT } from "../xmpp/ns.ts";
import { resultFor } from "../xmpp/stanza.ts";

export const NS_CARBONS = "urn:xmpp:carbons:2";
export const NS_FORWARD = "urn:xmpp:forward:0";
const NS_HINTS = "urn:xmpp:hints";
const NS_MUC_USER = "http://jabber.org/protocol/muc#user";
/** session.data key. */
const ENABLED = "carbons";

/**
 * XEP-0280 §6 (eligible messages): type "chat", or "normal" with a body; never MUC traffic
 * (groupchat, or private messages marked with muc#user); never a message marked
 * `<private/>` (§9) or XEP-0334 `<no-copy/>` (§4.4), nor a carbon itself. Errors would need
 * the message tracking §6 calls unlikely to be appropriate, so they are not copied.
 */
export function isEligible(stanza: Element): boolean {
	if (stanza.getChild("private", NS_CARBONS) || stanza.getChild("no-copy", NS_HINTS)) return false;
	if (stanza.getChild("received", NS_CARBONS) || stanza.getChild("sent", NS_CARBONS)) return false;
	if (stanza.getChild("x", NS_MUC_USER)) return false;
	const type = stanza.attrs.type ?? "normal";
	if (type === "chat") return true;
	return type === "normal" && stanza.getChild("body") !== undefined;
}

/**
 * The carbon copy (XEP-0280 §7, §8): from the user's bare JID to the resource getting the copy,
 * same type, the original inside `<received/>` or `<sent/>` and XEP-0297 `<forwarded/>`.
 */
export function carbonCopy(
	kind: "received" | "sent",
	stanza: Element,
	account: JID,
	to: JID,
): Element {
	const original = stanza.clone();
	// The forwarded message keeps its jabber:client namespace inside the foreign wrapper.
	if (original.ns === null) original.ns = NS_CLIENT;
	return x(
		"message",
		{ from: account.bare.toString(), to: to.toString(), type: stanza.attrs.type },
		x(kind, { xmlns: NS_CARBONS }, x("forwarded", { xmlns: NS_FORWARD }, original)),
	);
}

const wantsCarbons = (s: Session) => s.data.get(ENABLED) === true;

export default defineModule({
	name: "carbons",
	description: "XEP-0280 Message Carbons",
	load(api) {
		const host = api.host;
		api.addFeature(NS_CARBONS);
		// Inbound messages that carried <private/>: the element is removed before delivery
		// (XEP-0280 §9), and this remembers not to copy them.
		const privateMessages = new WeakSet<Element>();

		const toggle =
			(on: boolean) =>
			({ stanza, origin, from, to }: StanzaEvent) => {
				// XEP-0280 §4, §5: only a client of this server, for itself.
				if (!origin || !from.bare.equals(to)) throw new StanzaError("not-allowed");
				// §10.1: enabling or disabling twice is not an error.
				origin.data.set(ENABLED, on);
				origin.send(resultFor(stanza));
				return HANDLED;
			};
		api.hook(`iq-set/bare/${NS_CARBONS}:enable`, toggle(true));
		api.hook(`iq-set/bare/${NS_CARBONS}:disable`, toggle(false));
		// XEP-0386 §4.2: enabled inside a Bind 2 request, with no answer ("MUST succeed").
		api.hook("bind2/features", ({ features }: Bind2FeaturesEvent) => {
			features.push(NS_CARBONS);
		});
		api.hook("bind2/bind", ({ session, request }: Bind2Event) => {
			if (request.getChild("enable", NS_CARBONS)) session.data.set(ENABLED, true);
		});

		// XEP-0280 §9: the receiving server removes <private/> before delivering.
		const stripPrivate = ({ stanza }: StanzaEvent) => {
			if (!stanza.getChild("private", NS_CARBONS)) return;
			privateMessages.add(stanza);
			stanza.removeChildren("private", NS_CARBONS);
		};
		api.hook("message/bare", stripPrivate, Priority.TRANSFORM);
		api.hook("message/full", stripPrivate, Priority.TRANSFORM);

		// XEP-0280 §7: a copy to each carbons-enabled resource of the recipient that did not get
		// the message under the RFC 6121 rules, and never back to the resource that sent it.
		api.hook("message/delivered", ({ stanza, to, sessions, origin }: DeliveredEvent) => {
			if (!to.local || privateMessages.has(stanza) || !isEligible(stanza)) return;
			for (const s of host.sessionsOf(to.local)) {
				if (!s.jid || !wantsCarbons(s) || s === origin || sessions.includes(s)) continue;
				s.send(carbonCopy("received", stanza, to, s.jid));
			}
		});

		// XEP-0280 §8: a copy of what a client sends to the user's other carbons-enabled
		// resources, whether or not the sender enabled carbons. Runs after blocking (BLOCK), so
		// a refused message is not copied.
		const sent = ({ stanza, origin, from, to }: StanzaEvent) => {
			if (!origin || !isEligible(stanza)) return;
			// To one's own account the other resources get it as a received carbon (§7).
			if (to.bare.equals(from.bare)) return;
			for (const s of host.sessionsOf(from.local)) {
				if (!s.jid || s === origin || !wantsCarbons(s)) continue;
				s.send(carbonCopy("sent", stanza, from, s.jid));
			}
		};
		api.hook("pre-message/bare", sent);
		api.hook("pre-message/full", sent);
	},
});
