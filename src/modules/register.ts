/**
 * In-Band Registration (XEP-0077), off unless a host lists the `register` module: accounts
 * created over an unauthenticated stream (§3.1.1), password change (§3.3) and account removal
 * (§3.2) once authenticated, with a per-IP rate limit on creation.
 *
 * Pre-authenticated registration (XEP-0445): a client sends the token of an invitation
 * (src/auth/invites.ts, made by the `invite.*` admin commands) in `<preauth
 * xmlns='urn:xmpp:pars:0' token='...'/>` before registering. With `invite_only`, registering
 * needs one. A use is counted once the account exists; an invitation that names an inviter
 * leaves the newcomer and the inviter subscribed to each other (`roster/befriend`).
 *
 * Emits on the host bus: `account/created` { username, host }, for modules that react (the
 * welcome message, for one); `account/deleted` comes from the account manager, however an
 * account is removed.
 */
import { z } from "zod";
import { AccountManager } from "../auth/accounts.ts";
import { type Invite, type InviteRefusal, InviteStore, NS_PARS } from "../auth/invites.ts";
import type { Host, PreauthEvent } from "../core/contracts.ts";
import { HANDLED } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import { ModuleError } from "../core/modules/manager.ts";
import { addressMatcher } from "../security/addresses.ts";
import { type Element, x } from "../xml/element.ts";
import { StanzaError } from "../xmpp/errors.ts";
import { accountError, accountHandlers, errorWithoutPayload, NS_REGISTER } from "./account.ts";
import type { RosterBefriendEvent } from "./roster.ts";

export { NS_REGISTER } from "./account.ts";
export const NS_REGISTER_FEATURE = "http://jabber.org/features/iq-register";
/**
 * Stream features saying tokens are accepted: XEP-0445 §4's `urn:xmpp:ibr-token:0`, and
 * `urn:xmpp:invite`, which Prosody, Conversations and docs.modernxmpp.org use.
 */
const NS_IBR_TOKEN = "urn:xmpp:ibr-token:0";
const NS_INVITE_FEATURE = "urn:xmpp:invite";
/** `PreauthEvent.data` key: the token this stream pre-authenticated with. */
const TOKEN = "register:preauth";

const options = z.strictObject({
	/**
	 * Seconds between two registrations from one IP address; 0 switches the limit off
	 * (load tests). Prosody's `min_seconds_between_registrations` works the same way.
	 */
	min_seconds_between_registrations_per_ip: z.number().min(0).default(300),
	/**
	 * Addresses or CIDR ranges ("10.0.0.0/8", "2001:db8::/32") never throttled (a trusted
	 * web sign-up front end, an office); Prosody's `registration_whitelist`.
	 */
	registration_allow_ips: z.array(z.string().min(1)).default([]),
	/** Addresses or CIDR ranges that may not register at all; Prosody's `registration_blacklist`. */
	registration_block_ips: z.array(z.string().min(1)).default([]),
	/** Allow in-band password changes (§3.3). */
	allow_password_change: z.boolean().default(true),
	/** Allow in-band account removal (§3.2). */
	allow_remove: z.boolean().default(true),
	instructions: z.string().default("Choose a username and password to register with this server."),
	/**
	 * Registration only with an invitation (XEP-0445 pre-authentication); without one the
	 * request is refused with not-allowed. Prosody's `registration_invite_only`, on by default as
	 * there: an open registration form is what spam bots look for (issue 19). False opens it.
	 */
	invite_only: z.boolean().default(true),
});

/** An option's address list; a malformed entry fails the module's load, naming it. */
function addressList(entries: readonly string[]): (ip: string) => boolean {
	try {
		return addressMatcher(entries);
	} catch (e) {
		throw new ModuleError((e as Error).message);
	}
}

const REFUSALS: Record<InviteRefusal, string> = {
	unknown: "the invitation is not valid",
	expired: "the invitation has expired",
	used: "the invitation has been used",
};

export interface AccountEvent {
	host: Host;
	username: string;
}

export default defineModule({
	name: "register",
	description: "XEP-0077 In-Band Registration",
	options,
	load(api) {
		const host = api.host;
		const opts = api.options;
		const allowPlain = host.server.config.auth.allow_plain_without_tls;
		/** IP -> time of the last registration from it (ms). */
		const lastByIp = new Map<string, number>();
		const windowMs = opts.min_seconds_between_registrations_per_ip * 1000;
		const allowIps = addressList(opts.registration_allow_ips);
		const blockIps = addressList(opts.registration_block_ips);

		api.addFeature(NS_REGISTER);
		if (windowMs > 0) {
			// Forget addresses whose window is over, so the map stays small.
			api.every(Math.max(1000, Math.min(windowMs, 60_000)), () => {
				const now = Date.now();
				for (const [ip, t] of lastByIp) if (now - t >= windowMs) lastByIp.delete(ip);
			});
		}

		/** XEP-0077 §10: passwords travel in the clear inside the stream, so TLS first. */
		const channelOk = (secure: boolean) => secure || allowPlain;

		// XEP-0077 §8: advertise registration in the pre-authentication stream features only
		// when it will be accepted (and so never when the module is not loaded).
		api.hook(
			"stream-features/preauth",
			({ features, secure }: PreauthEvent & { features: Element }) => {
				if (!channelOk(secure)) return;
				features.append(x("register", { xmlns: NS_REGISTER_FEATURE }));
				// XEP-0445 §4: tokens are accepted before registration.
				features.append(x("register", { xmlns: NS_IBR_TOKEN }));
				features.append(x("register", { xmlns: NS_INVITE_FEATURE }));
			},
		);

		const invites = new InviteStore(api.keyval<Invite>("invites"));
		// Invitations expired a day ago go (the day lets an operator still see why one failed).
		api.every(3_600_000, () => {
			invites
				.purge(86_400_000)
				.catch((err: unknown) => api.log.warn({ err }, "purging expired invitations failed"));
		});

		// XEP-0445 §3: the token, checked now, used by the registration that follows on this
		// stream. "Single-use tokens MUST NOT be considered used until the actual registration
		// has succeeded": nothing is counted here.
		api.hook(`preauth-iq/${NS_PARS}:preauth`, async (ev: PreauthEvent & { stanza: Element }) => {
			const { stanza, send } = ev;
			if (!channelOk(ev.secure)) return undefined;
			const token = (stanza.elements()[0] as Element).attrs.token ?? "";
			const invite = await invites.get(token);
			const refusal = InviteStore.check(invite) ?? (invite?.register ? null : "unknown");
			if (stanza.attrs.type !== "set" || refusal) {
				ev.data.delete(TOKEN);
				// XEP-0445 §3: an invalid or expired token is item-not-found.
				send(
					errorWithoutPayload(
						stanza,
						stanza.attrs.type !== "set"
							? new StanzaError("bad-request")
							: new StanzaError("item-not-found", REFUSALS[refusal ?? "unknown"]),
					),
				);
				return HANDLED;
			}
			ev.data.set(TOKEN, token);
			send(x("iq", { type: "result", id: stanza.attrs.id }));
			return HANDLED;
		});

		// §3.1: the fields to fill in, asked before authentication.
		api.hook(`preauth-iq/${NS_REGISTER}:query`, async (ev: PreauthEvent & { stanza: Element }) => {
			const { stanza, send } = ev;
			if (!channelOk(ev.secure)) return undefined; // not offered: the stream's default applies
			if (stanza.attrs.to !== undefined && stanza.attrs.to !== host.name) {
				send(errorWithoutPayload(stanza, new StanzaError("service-unavailable")));
				return HANDLED;
			}
			if (stanza.attrs.type === "get") {
				send(
					x(
						"iq",
						{ type: "result", id: stanza.attrs.id },
						x(
							"query",
							{ xmlns: NS_REGISTER },
							x("instructions", null, opts.instructions),
							x("username"),
							x("password"),
						),
					),
				);
				return HANDLED;
			}
			try {
				const token = ev.data.get(TOKEN) as string | undefined;
				await register(stanza.elements()[0] as Element, ev.remoteAddress, token);
				if (token !== undefined) ev.data.delete(TOKEN);
				send(x("iq", { type: "result", id: stanza.attrs.id }));
			} catch (err) {
				if (!(err instanceof StanzaError)) throw err;
				send(errorWithoutPayload(stanza, err));
			}
			return HANDLED;
		});

		const register = async (query: Element, ip: string, token?: string): Promise<void> => {
			if (query.getChild("remove")) {
				// §3.2 table: cancelling needs an account, hence authentication first.
				throw new StanzaError("registration-required", "log in to remove an account");
			}
			const username = query.getChildText("username")?.trim() ?? "";
			const password = query.getChildText("password") ?? "";
			// §3.1: every field asked for, and an empty password counts as missing.
			if (!username || !password) {
				throw new StanzaError("not-acceptable", "a username and a password are required");
			}
			if (blockIps(ip)) {
				host.log.info({ ip }, "registration refused: address on registration_block_ips");
				// §3.1.1: the server decides; RFC 6120 §8.3.3.10 not-allowed, type cancel.
				throw new StanzaError("not-allowed", "registration is not allowed from your address");
			}
			if (token === undefined && opts.invite_only) {
				// XEP-0077 §3.1.1: not-allowed, registration is closed; XEP-0445 opens it per invitation.
				throw new StanzaError("not-allowed", "registration on this server needs an invitation");
			}
			const trusted = allowIps(ip);
			const last = lastByIp.get(ip);
			// An invitation is the server's own permission: no per-address limit on it.
			if (
				token === undefined &&
				!trusted &&
				windowMs > 0 &&
				last !== undefined &&
				Date.now() - last < windowMs
			) {
				// §3.1.1 leaves the policy to the server; RFC 6120 §8.3.3.12 policy-violation
				// with type wait: try again later.
				throw new StanzaError("policy-violation", "too many registrations from your address", {
					type: "wait",
				});
			}
			// The address's turn is taken now, before the account is created (PBKDF2 and storage
			// take a while): otherwise registrations sent at once on parallel connections all pass
			// the check above. A registration that fails gives it back.
			const throttled = windowMs > 0 && !trusted && token === undefined;
			if (throttled) lastByIp.set(ip, Date.now());
			const giveBack = () => {
				if (!throttled) return;
				if (last === undefined) lastByIp.delete(ip);
				else lastByIp.set(ip, last);
			};
			let invite: Invite | undefined;
			if (token !== undefined) {
				// One use taken before the account exists, given back if it cannot be created, so
				// a one-time token never makes two accounts (src/auth/invites.ts).
				const claimed = await invites.claim(token);
				if (typeof claimed === "string") throw new StanzaError("not-allowed", REFUSALS[claimed]);
				invite = claimed;
			}
			let user: string;
			try {
				if (invite?.username !== undefined) {
					// XEP-0445 §2.1: an invitation for a given username registers that one only.
					let wanted: string | undefined;
					try {
						wanted = AccountManager.prepUsername(username);
					} catch {}
					if (wanted !== AccountManager.prepUsername(invite.username))
						throw new StanzaError("not-allowed", `this invitation is for ${invite.username}`);
				}
				try {
					user = await host.accounts.create(username, password);
				} catch (err) {
					throw accountError(err);
				}
			} catch (err) {
				giveBack();
				if (token !== undefined) await invites.release(token);
				throw err;
			}
			host.log.info({ user, ip, invited: token !== undefined }, "account registered in-band");
			if (token !== undefined) await invites.recordUse(token, user);
			await host.events.fire("account/created", { host, username: user } satisfies AccountEvent);
			if (invite?.roster && (await host.accounts.exists(invite.roster))) {
				await host.events.fire<RosterBefriendEvent>("roster/befriend", {
					user,
					contact: invite.roster,
				});
			}
		};

		// Logged-in requests: password change (§3.3) and cancelling (§3.2), as the `account`
		// module serves them on hosts without this one.
		accountHandlers(api, {
			allowPasswordChange: opts.allow_password_change,
			allowRemove: opts.allow_remove,
			allowPlain,
		});
	},
});
