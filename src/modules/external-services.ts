/**
 * External Service Discovery (XEP-0215): the STUN and TURN servers of the configuration, so
 * that audio and video calls (XEP-0167 Jingle RTP) find a relay. TURN credentials are made per
 * request from a secret shared with the TURN server, the "TURN REST API" scheme coturn
 * implements (`use-auth-secret`, `static-auth-secret`): username `<expiry unix time>:<bare JID>`,
 * password base64(HMAC-SHA1(secret, username)); coturn accepts them until the expiry.
 *
 *     [hosts."example.org"]
 *     modules = [..., "external_services"]
 *     [hosts."example.org".module_options.external_services]
 *     secret = "the coturn static-auth-secret"
 *     services = [
 *       { type = "stun", host = "turn.example.org", port = 3478, transport = "udp" },
 *       { type = "turn", host = "turn.example.org", port = 3478, transport = "udp" },
 *     ]
 *
 * Only the host's own users (authenticated, on this server) are answered.
 */
import { createHmac } from "node:crypto";
import { z } from "zod";
import { HANDLED } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { StanzaEvent } from "../core/router.ts";
import { type Element, x } from "../xml/element.ts";
import { StanzaError } from "../xmpp/errors.ts";
import { resultFor } from "../xmpp/stanza.ts";

export const NS_EXTDISCO = "urn:xmpp:extdisco:2";
/** The namespace of XEP-0215 before 2015, still asked for by some clients; same answers. */
const NS_EXTDISCO_1 = "urn:xmpp:extdisco:1";

const service = z.strictObject({
	/** XEP-0215 §6 registry: "stun", "turn", "stuns", "turns", ... */
	type: z.string().regex(/^[a-z0-9-]+$/, "a service type such as stun or turn"),
	host: z.string().min(1),
	port: z.number().int().min(1).max(65535).optional(),
	transport: z.enum(["udp", "tcp"]).optional(),
	name: z.string().optional(),
	/**
	 * Give time-limited credentials for this service (from `secret`). Default: for "turn" and
	 * "turns" when a secret is set.
	 */
	restricted: z.boolean().optional(),
});

const options = z.strictObject({
	/** The services announced, in this order. */
	services: z.array(service).default([]),
	/** The secret shared with the TURN server (coturn's static-auth-secret). */
	secret: z.string().min(1).optional(),
	/** Seconds the credentials are valid. */
	ttl: z.number().int().min(60).default(86_400),
});

type Service = z.infer<typeof service>;

/** The TURN REST API credentials of `user` valid until `expires` (seconds since the epoch). */
export function turnCredentials(
	secret: string,
	user: string,
	expires: number,
): { username: string; password: string } {
	const username = `${expires}:${user}`;
	return { username, password: createHmac("sha1", secret).update(username).digest("base64") };
}

export default defineModule({
	name: "external_services",
	description:
		"XEP-0215 External Service Discovery: STUN/TURN servers with TURN REST API credentials",
	options,
	load(api) {
		const host = api.host;
		const { services, secret, ttl } = api.options;
		const restricted = (s: Service) =>
			secret !== undefined && (s.restricted ?? (s.type === "turn" || s.type === "turns"));
		api.addFeature(NS_EXTDISCO);

		const element = (s: Service, user: string, now: number): Element => {
			const attrs: Record<string, string | undefined> = {
				type: s.type,
				host: s.host,
				port: s.port === undefined ? undefined : String(s.port),
				transport: s.transport,
				name: s.name,
			};
			if (secret !== undefined && restricted(s)) {
				const expires = Math.floor(now / 1000) + ttl;
				const c = turnCredentials(secret, user, expires);
				Object.assign(attrs, {
					restricted: "1",
					username: c.username,
					password: c.password,
					// XEP-0082 DateTime.
					expires: new Date(expires * 1000).toISOString().replace(/\.\d{3}Z$/, "Z"),
				});
			}
			return x("service", attrs);
		};

		/** Authenticated users of this host only: the credentials open a relay that costs money. */
		const check = (e: StanzaEvent) => {
			if (!e.origin || !e.from.local || e.from.domain !== host.name)
				throw new StanzaError("forbidden", `only users of ${host.name} may discover its services`);
		};

		for (const ns of [NS_EXTDISCO, NS_EXTDISCO_1]) {
			// §3.1 all services, or §3.2 those of one type.
			api.hook(`iq-get/host/${ns}:services`, (e: StanzaEvent) => {
				check(e);
				const type = (e.stanza.getChild("services", ns) as Element).attrs.type;
				const now = Date.now();
				const list = services
					.filter((s) => type === undefined || s.type === type)
					.map((s) => element(s, e.from.bareString, now));
				api.reply(e.origin, resultFor(e.stanza, x("services", { xmlns: ns }, list)));
				return HANDLED;
			});
			// §3.3 credentials for one service (by host and type, and port when given).
			api.hook(`iq-get/host/${ns}:credentials`, (e: StanzaEvent) => {
				check(e);
				const want = (e.stanza.getChild("credentials", ns) as Element).getChild("service");
				const { host: h, type, port } = want?.attrs ?? {};
				if (h === undefined) throw new StanzaError("bad-request", "the service's host is required");
				const found = services.find(
					(s) =>
						s.host === h &&
						(type === undefined || s.type === type) &&
						(port === undefined || String(s.port) === port) &&
						restricted(s),
				);
				if (!found) throw new StanzaError("item-not-found", "no such service with credentials");
				api.reply(
					e.origin,
					resultFor(
						e.stanza,
						x("credentials", { xmlns: ns }, element(found, e.from.bareString, Date.now())),
					),
				);
				return HANDLED;
			});
		}
	},
});
