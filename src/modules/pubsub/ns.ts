/** XEP-0060 namespaces and its application-specific error conditions (§§6-8, §14). */
import { x } from "../../xml/element.ts";
import { StanzaError, type StanzaErrorCondition } from "../../xmpp/errors.ts";

export const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
export const NS_PUBSUB_OWNER = "http://jabber.org/protocol/pubsub#owner";
export const NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event";
export const NS_PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors";
export const NS_NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config";
export const NS_PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options";
export const NS_SUBSCRIBE_OPTIONS = "http://jabber.org/protocol/pubsub#subscribe_options";
export const NS_SUBSCRIBE_AUTH = "http://jabber.org/protocol/pubsub#subscribe_authorization";
export const NS_META_DATA = "http://jabber.org/protocol/pubsub#meta-data";
export const NS_RSM = "http://jabber.org/protocol/rsm";

/**
 * The XEP-0060 §11 features a service implementing all of this advertises. Not here:
 * get-pending (§8.7, XEP-0050 commands, not implemented), and last-published and
 * presence-subscribe, which PEP has (§9, §4.3: last-published means on_sub_and_presence by
 * default, a service's nodes default to never).
 */
export const PUBSUB_FEATURES = [
	"access-authorize",
	"access-open",
	"access-presence",
	"access-roster",
	"access-whitelist",
	"auto-create",
	"config-node",
	"config-node-max",
	"create-and-configure",
	"create-nodes",
	"delete-items",
	"delete-nodes",
	"instant-nodes",
	"item-ids",
	"manage-subscriptions",
	"member-affiliation",
	"meta-data",
	"modify-affiliations",
	"multi-items",
	"outcast-affiliation",
	"persistent-items",
	"publish",
	"publish-only-affiliation",
	"publish-options",
	"publisher-affiliation",
	"purge-nodes",
	"retract-items",
	"retrieve-affiliations",
	"retrieve-default",
	"retrieve-items",
	"retrieve-subscriptions",
	"subscribe",
	"subscription-notifications",
	"subscription-options",
].map((f) => `${NS_PUBSUB}#${f}`);

/** PEP adds these (XEP-0163 §8). */
export const PEP_FEATURES = [
	"auto-subscribe",
	"last-published",
	"presence-subscribe",
	"filtered-notifications",
	"presence-notifications",
].map((f) => `${NS_PUBSUB}#${f}`);

/**
 * A stanza error with a XEP-0060 application condition (§14): `app` is the element name in
 * pubsub#errors (`precondition-not-met`, `closed-node`, ...); `feature` goes with `unsupported`.
 */
export function pubsubError(
	condition: StanzaErrorCondition,
	app?: string,
	text?: string,
	feature?: string,
): StanzaError {
	return new StanzaError(condition, text, {
		appCondition: app ? x(app, { xmlns: NS_PUBSUB_ERRORS, feature }) : undefined,
	});
}
