/**
 * A real client library (xmpp.js) for end-to-end tests: `connect` logs in and binds and records
 * what arrives (wait for it with test/helpers/wait.ts).
 */
import { type Client, client, type XmlElement } from "@xmpp/client";

/** xmpp.js's wait for each step when a test does not say (see `XmppConnectOptions.timeout`). */
export const CLIENT_TIMEOUT_MS = 10_000;

export interface XmppConnectOptions {
	/** The JID domain; "localhost" unless given. */
	domain?: string;
	/**
	 * A resource to ask for at bind time (RFC 6120 §7.7); the server picks one otherwise. Only
	 * RFC 6120 binding lets the client choose: with XEP-0386 Bind 2 the server makes the
	 * resource (`<tag>/<id>`), so a test that names its resource logs in the RFC 6120 way
	 * unless `sasl2` says otherwise (then the resource is xmpp.js's Bind 2 tag).
	 */
	resource?: string;
	/**
	 * XEP-0388 SASL2 (with Bind 2, inline stream management and FAST), which xmpp.js 0.14 uses
	 * whenever the server offers it; false hides the offer from xmpp.js, which then logs in with
	 * RFC 6120 SASL and binding. Default: true, except when a `resource` is named and on
	 * xmpps:// (direct TLS). There xmpp.js 0.14 starts waiting for the server's stream header
	 * only once the TLS write of its own header has completed (@xmpp/connection `open()`); with
	 * client and server in one process that completes after the server's header has arrived,
	 * and the wait would time out, were it not for the stream restart of RFC 6120 SASL, whose
	 * second header ends it. SASL2 has no restart.
	 */
	sasl2?: boolean;
	/** The SASL mechanism to use; the first one the server offers otherwise. */
	mechanism?: string;
	/**
	 * How long xmpp.js waits for the stream opening and other steps, in ms (not in the option
	 * types: test/types/xmpp-client.d.ts). Default 10 s: xmpp.js's own 2 s is shorter than a TLS
	 * handshake and stream opening take on a loaded CI machine (seen: TimeoutError in
	 * `Client.open` after STARTTLS with the load at 14 on 2 cores).
	 */
	timeout?: number;
}

export interface XmppConnection {
	xmpp: Client;
	/** The bound full JID. */
	jid: string;
	/** Every stanza received, in arrival order. */
	stanzas: XmlElement[];
	/** The SASL mechanisms the server offered (those xmpp.js supports, in its order). */
	mechanisms: string[];
	/** Every `<stream:features/>` received up to the end of the login, as XML text. */
	features: string;
}

/** Connects to `service` (xmpp://, xmpps://, ws:// or wss://), authenticates and binds. */
export async function connect(
	service: string,
	username: string,
	password: string,
	opts: XmppConnectOptions = {},
): Promise<XmppConnection> {
	const stanzas: XmlElement[] = [];
	const offered: string[] = [];
	let features = "";
	const xmpp = client({
		service,
		domain: opts.domain ?? "localhost",
		resource: opts.resource,
		credentials: async (authenticate, mechanisms) => {
			offered.push(...mechanisms);
			await authenticate({ username, password }, opts.mechanism ?? (mechanisms[0] as string));
		},
	});
	return started(
		xmpp,
		stanzas,
		offered,
		() => features,
		(f) => (features += f),
		opts,
	);
}

/**
 * Connects with no credentials at all, as a web page's guest does: xmpp.js then picks SASL
 * ANONYMOUS by itself when the server offers it (RFC 4505, XEP-0175; @xmpp/client's
 * createOnAuthenticate). `mechanisms` stays empty: xmpp.js does not show its choice.
 */
export async function connectAnonymous(
	service: string,
	opts: Omit<XmppConnectOptions, "mechanism"> = {},
): Promise<XmppConnection> {
	const stanzas: XmlElement[] = [];
	let features = "";
	const xmpp = client({ service, domain: opts.domain ?? "localhost", resource: opts.resource });
	return started(
		xmpp,
		stanzas,
		[],
		() => features,
		(f) => (features += f),
		opts,
	);
}

async function started(
	xmpp: Client,
	stanzas: XmlElement[],
	offered: string[],
	features: () => string,
	addFeatures: (f: string) => void,
	opts: XmppConnectOptions,
): Promise<XmppConnection> {
	xmpp.reconnect.stop();
	(xmpp as unknown as { timeout: number }).timeout = opts.timeout ?? CLIENT_TIMEOUT_MS;
	xmpp.on("error", () => {});
	const service = (xmpp as unknown as { options: { service: string } }).options.service;
	if (!(opts.sasl2 ?? (opts.resource === undefined && !service.startsWith("xmpps:")))) {
		// Before xmpp.js's own listener (its middleware) sees the features.
		xmpp.prependListener("element", (el: XmlElement) => {
			if (el.name === "stream:features") el.remove("authentication", "urn:xmpp:sasl:2");
		});
	}
	xmpp.on("stanza", (s: XmlElement) => stanzas.push(s));
	xmpp.on("element", (el: XmlElement) => {
		if (el.name === "stream:features") addFeatures(el.toString());
	});
	const jid = await xmpp.start();
	return { xmpp, jid: jid.toString(), stanzas, mechanisms: offered, features: features() };
}
