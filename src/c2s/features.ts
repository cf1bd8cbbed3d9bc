/**
 * What a client stream offers (RFC 6120 §4.3.2 stream features) and the SASL context its
 * mechanisms run in: pure functions of the host, the transport's security and the config.
 */
import type { ChannelBindingSource } from "../auth/channel-binding.ts";
import { type AnonymousPolicy, offeredMechanisms, type SaslContext } from "../auth/sasl.ts";
import type { Config } from "../core/config/schema.ts";
import type { Host, Session } from "../core/contracts.ts";
import { type Element, x } from "../xml/element.ts";
import { makeJID } from "../xmpp/jid.ts";
import {
	NS_BIND,
	NS_BIND2,
	NS_FAST,
	NS_LIMITS,
	NS_SASL,
	NS_SASL_CB,
	NS_SASL_UPGRADE,
	NS_SASL2,
	NS_SESSION,
	NS_TLS,
} from "../xmpp/ns.ts";
import { NS_SM } from "./sm.ts";

/** Features before authentication: STARTTLS, SASL mechanisms, XEP-0440, XEP-0478. */
export function preauthFeatures(opts: {
	/** STARTTLS can be offered (the transport can, and TLS is not in place yet). */
	canStartTls: boolean;
	/** TLS is mandatory-to-negotiate and not done yet (RFC 6120 §5.3.1). */
	tlsRequired: boolean;
	sasl: SaslContext;
	maxBytes: number;
	/** XEP-0388 `<authentication/>`, beside the RFC 6120 mechanisms (see `sasl2Feature`). */
	sasl2?: Element;
}): Element {
	const f = x("stream:features");
	if (opts.canStartTls) {
		f.append(x("starttls", { xmlns: NS_TLS }, opts.tlsRequired ? x("required") : undefined));
	}
	// RFC 6120 §5.3.1: while TLS is mandatory-to-negotiate, nothing else is offered.
	if (!opts.tlsRequired) {
		const mechs = offeredMechanisms(opts.sasl);
		f.append(
			x(
				"mechanisms",
				{ xmlns: NS_SASL },
				mechs.map((m) => x("mechanism", null, m)),
			),
		);
		if (opts.sasl2) f.append(opts.sasl2);
		const cb = opts.sasl.channelBinding;
		if (cb?.types().length) {
			// XEP-0440: tell the client which channel binding types we support.
			f.append(
				x(
					"sasl-channel-binding",
					{ xmlns: NS_SASL_CB },
					cb.types().map((t) => x("channel-binding", { type: t })),
				),
			);
		}
	}
	f.append(limitsFeature(opts.maxBytes));
	return f;
}

/**
 * XEP-0388 §2.1 `<authentication/>`: the same mechanisms as RFC 6120 SASL, and in `<inline/>`
 * what a client may ask for in its `<authenticate/>`: XEP-0386 Bind 2 with the features it can
 * enable (`<feature var>`), XEP-0198 resumption (`<sm/>`, §6.2 of its SASL2 section), XEP-0484
 * FAST with its token mechanisms; then XEP-0480's `<upgrade/>` tasks.
 */
export function sasl2Feature(opts: {
	mechanisms: string[];
	bind2: string[];
	sm: boolean;
	fast: string[];
	/** XEP-0480 §2.1 upgrade tasks. */
	upgrades?: string[];
}): Element {
	const inline = x(
		"inline",
		null,
		x(
			"bind",
			{ xmlns: NS_BIND2 },
			x(
				"inline",
				null,
				opts.bind2.map((v) => x("feature", { var: v })),
			),
		),
		opts.sm ? x("sm", { xmlns: NS_SM }) : undefined,
		opts.fast.length
			? x(
					"fast",
					{ xmlns: NS_FAST },
					opts.fast.map((m) => x("mechanism", null, m)),
				)
			: undefined,
	);
	return x(
		"authentication",
		{ xmlns: NS_SASL2 },
		opts.mechanisms.map((m) => x("mechanism", null, m)),
		inline,
		(opts.upgrades ?? []).map((u) => x("upgrade", { xmlns: NS_SASL_UPGRADE }, u)),
	);
}

/** Features after authentication: RFC 6120 §7.4 bind; RFC 3921 §3 session, marked optional
 * (RFC 6121 Appendix E); XEP-0478 limits. */
export function boundFeatures(maxBytes: number, bound = false): Element {
	const f = x("stream:features");
	// `bound`: after XEP-0386 Bind 2 (no stream restart), nothing is left to bind.
	if (!bound) {
		f.append(x("bind", { xmlns: NS_BIND }));
		f.append(x("session", { xmlns: NS_SESSION }, x("optional")));
	}
	f.append(limitsFeature(maxBytes));
	return f;
}

/** XEP-0478: advertise the stanza size limit. */
function limitsFeature(maxBytes: number): Element {
	return x("limits", { xmlns: NS_LIMITS }, x("max-bytes", null, String(maxBytes)));
}

/** What the SASL mechanisms (src/auth/sasl.ts) need to know of the host and the stream. */
export function saslContextFor(
	host: Host,
	stream: {
		secure: boolean;
		channelBinding: ChannelBindingSource | null;
		remoteAddress: string;
	},
	auth: Config["auth"],
): SaslContext {
	const anonymous: AnonymousPolicy | undefined =
		host.config.authentication === "anonymous"
			? { refuse: () => guestLimit(host, stream.remoteAddress) }
			: undefined;
	return {
		...(anonymous && { anonymous }),
		domain: host.name,
		secure: stream.secure,
		channelBinding: stream.channelBinding,
		allowPlainWithoutTls: auth.allow_plain_without_tls,
		prepUsername: (raw) => makeJID(raw, host.name).local,
		getCredentials: (user) => host.accounts.getCredentials(user),
		verifiedPasswords: host.accounts.verifiedPasswords,
		// Unknown users get a stable fake salt, so they look like real ones across restarts.
		unknownUserSecret: host.secret,
		unknownUserIterations: auth.scram_iterations,
		strictChannelBindingDowngrade: auth.strict_channel_binding,
	};
}

/**
 * Why one more guest may not log in to an anonymous host from `ip`, or null: the host's
 * `anonymous.max_sessions` (bound sessions in the whole cluster: every node holds them all with
 * the replicated registry; the sharded one counts them in Redis) and
 * `anonymous.max_sessions_per_ip` (in a cluster, a counter in Redis that every node's guests
 * count in, src/cluster/counters.ts, whatever the registry; on one node, its sessions). Checked
 * at SASL time and again when the resource is bound (`self` is then left out, and in a cluster
 * counted: {@link releaseGuest} takes it out when the stream ends, the leader when its node
 * dies), so guests that authenticate together cannot pass it before any binds. A refusal is
 * counted (`parley_connections_refused_total`).
 */
export async function guestLimit(
	host: Host,
	ip: string,
	self?: Session,
): Promise<{ text: string; reason: string; throttle: boolean } | null> {
	const { max_sessions: maxTotal, max_sessions_per_ip: maxPerIp } = host.config.anonymous;
	let total = 0;
	let fromIp = 0;
	for (const resources of host.sessions.values()) {
		for (const s of resources.values()) {
			if (s === self) continue;
			total++;
			if (s.remoteAddress === ip) fromIp++;
		}
	}
	if (maxTotal > 0) {
		// Sharded registry: `host.sessions` holds this node's and the cached ones only. `self` is
		// not bound yet, so not in Redis. When Redis does not answer, the local count stands.
		const counted = await host.server.cluster?.onlineCounts?.(host)?.catch((err: unknown) => {
			host.log.warn({ err }, "cluster: the guest count could not be read");
			return undefined;
		});
		if (counted) total = Math.max(total, counted.sessions);
	}
	if (maxTotal > 0 && total >= maxTotal) {
		host.server.metrics.refused("anonymous.max_sessions");
		return {
			text: "too many guests are connected; try again later",
			reason: `anonymous.max_sessions (${maxTotal}) reached`,
			throttle: false,
		};
	}
	const counters = host.server.cluster?.counters;
	if (maxPerIp > 0 && fromIp < maxPerIp && counters && !self?.data.has(GUEST_COUNTED)) {
		// The whole cluster's guests from `ip`: read at SASL time, taken at bind time (atomic, so
		// two nodes binding at once cannot both pass). When Redis does not answer, the local count
		// stands (and nothing is taken).
		const name = guestCounter(host, ip);
		try {
			if (!self) fromIp = Math.max(fromIp, await counters.total(name));
			else if ((await counters.tryAdd(name, 1, maxPerIp)) === true)
				self.data.set(GUEST_COUNTED, name);
			else fromIp = maxPerIp;
		} catch (err) {
			host.log.warn({ err }, "cluster: the guests of an address could not be counted");
		}
	}
	if (maxPerIp > 0 && fromIp >= maxPerIp) {
		host.server.metrics.refused("anonymous.max_sessions_per_ip");
		return {
			text: "too many guest sessions from this address",
			reason: `anonymous.max_sessions_per_ip (${maxPerIp}) reached`,
			throttle: true,
		};
	}
	return null;
}

/** Session data: the cluster counter a bound guest counts in (`anonymous.max_sessions_per_ip`). */
const GUEST_COUNTED = "parley.guest-counted";

/** The counter of `host`'s guests from `ip` in the whole cluster (src/cluster/counters.ts). */
export function guestCounter(host: Host, ip: string): string {
	return `guests:${host.name}:${ip}`;
}

/** A guest's stream ended: what it counted in the cluster's guests of its address goes. */
export function releaseGuest(session: Session): void {
	const name = session.data.get(GUEST_COUNTED);
	if (typeof name !== "string") return;
	session.data.delete(GUEST_COUNTED);
	session.host.server.cluster?.counters
		?.release(name, 1)
		.catch((err: unknown) => session.host.log.warn({ err }, "cluster: a guest was not uncounted"));
}
