/** XML namespaces used across the server, named after what they are for. */
export const NS_CLIENT = "jabber:client";
export const NS_STREAMS = "http://etherx.jabber.org/streams";
export const NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams";
export const NS_STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas";
export const NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls";
export const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";
export const NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind";
export const NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session";
export const NS_SASL_CB = "urn:xmpp:sasl-cb:0";
export const NS_LIMITS = "urn:xmpp:stream-limits:0";
export const NS_DISCO_INFO = "http://jabber.org/protocol/disco#info";
export const NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items";
export const NS_PING = "urn:xmpp:ping";
export const NS_VERSION = "jabber:iq:version";
export const NS_TIME = "urn:xmpp:time";
export const NS_DELAY = "urn:xmpp:delay";
export const NS_XML = "http://www.w3.org/XML/1998/namespace";
export const NS_SERVER = "jabber:server";
export const NS_DIALBACK = "jabber:server:dialback";
/** XEP-0114: the content namespace of an external component's stream. */
export const NS_COMPONENT_ACCEPT = "jabber:component:accept";
export const NS_DIALBACK_FEATURE = "urn:xmpp:features:dialback";
/** XEP-0388 Extensible SASL Profile (SASL2). */
export const NS_SASL2 = "urn:xmpp:sasl:2";
/** XEP-0386 Bind 2. */
export const NS_BIND2 = "urn:xmpp:bind:0";
/** XEP-0484 Fast Authentication Streamlining Tokens. */
export const NS_FAST = "urn:xmpp:fast:0";
/** XEP-0480 SASL Upgrade Tasks: the `<upgrade/>` offered and asked for. */
export const NS_SASL_UPGRADE = "urn:xmpp:sasl:upgrade:0";
/** XEP-0480 §3: the SCRAM upgrade task's `<salt/>` and `<hash/>`. */
export const NS_SCRAM_UPGRADE = "urn:xmpp:scram-upgrade:0";
