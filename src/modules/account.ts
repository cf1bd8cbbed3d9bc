/**
 * In-Band Registration (XEP-0077) for an account that is logged in: its password change (§3.3)
 * and cancelling its registration (§3.2). Every host that has accounts loads it (the `account`
 * module, in the default list), so clients can change a password without an admin, as on
 * Prosody, where mod_register answers these with registration closed; the `register` module,
 * which adds registration before login, serves them itself with its own options, and this
 * module then stays out of the way.
 */
import { z } from "zod";
import { AccountError, AccountManager } from "../auth/accounts.ts";
import { HANDLED } from "../core/events.ts";
import type { ModuleApi } from "../core/modules/define.ts";
import { defineModule } from "../core/modules/define.ts";
import type { StanzaEvent } from "../core/router.ts";
import { type Element, x } from "../xml/element.ts";
import { StanzaError } from "../xmpp/errors.ts";
import type { JID } from "../xmpp/jid.ts";

export const NS_REGISTER = "jabber:iq:register";

/** What a logged-in account may do with its registration. */
export interface AccountRules {
	/** §3.3 password change. */
	allowPasswordChange: boolean;
	/** §3.2 cancelling the registration (the account is deleted). */
	allowRemove: boolean;
	/** `auth.allow_plain_without_tls`: a new password may travel without TLS (tests only). */
	allowPlain: boolean;
}

/**
 * An IQ error without the original payload: XEP-0077 §3.3 says not to echo what a client
 * sent in errors about passwords, and registration payloads carry passwords too.
 */
export function errorWithoutPayload(iq: Element, err: StanzaError): Element {
	return x(
		"iq",
		{ type: "error", id: iq.attrs.id, to: iq.attrs.from, from: iq.attrs.to },
		err.toElement(),
	);
}

export function accountError(err: unknown): StanzaError {
	if (!(err instanceof AccountError)) throw err;
	switch (err.code) {
		case "exists":
			return new StanzaError("conflict", "that username is taken"); // §3.1
		case "invalid-username":
			// RFC 6120 §8.3.3.8: the username cannot be a JID localpart.
			return new StanzaError("jid-malformed", err.message);
		case "invalid-password":
			return new StanzaError("not-acceptable", err.message); // §3.1
		case "not-found":
			return new StanzaError("registration-required"); // §3.2
		case "not-allowed":
			return new StanzaError("not-allowed", err.message); // an anonymous host
	}
}

/** Hooks the logged-in jabber:iq:register requests (get, §3.3 and §3.2) on `api`'s host. */
export function accountHandlers<O>(api: ModuleApi<O>, rules: AccountRules): void {
	const host = api.host;
	// Once authenticated the request goes to the server (`to` = host) or, without `to`, to
	// the account itself (RFC 6120 §10.3); both mean "my registration here".
	const onGet = ({ stanza, origin, from, to }: StanzaEvent) => {
		if (to.local && !from.bare.equals(to)) return undefined;
		// §3.1: an authenticated entity is registered: <registered/> and its username.
		origin?.send(
			x(
				"iq",
				{ type: "result", id: stanza.attrs.id, to: stanza.attrs.from, from: stanza.attrs.to },
				x(
					"query",
					{ xmlns: NS_REGISTER },
					x("registered"),
					x("username", null, from.local),
					x("password"),
				),
			),
		);
		return HANDLED;
	};

	const onSet = async ({ stanza, origin, from, to }: StanzaEvent) => {
		if (to.local && !from.bare.equals(to)) return undefined;
		const query = stanza.elements()[0] as Element;
		const removing = query.getChild("remove") !== undefined;
		const err = removing
			? await remove(query, from)
			: await changePassword(query, from, origin?.secure ?? false);
		origin?.send(
			err
				? errorWithoutPayload(stanza, err)
				: x("iq", {
						type: "result",
						id: stanza.attrs.id,
						to: stanza.attrs.from,
						from: stanza.attrs.to,
					}),
		);
		if (removing && !err) {
			// §3.2: end every session of the account with a not-authorized stream error.
			for (const s of host.sessionsOf(from.local)) s.close("not-authorized", "account removed");
		}
		return HANDLED;
	};

	/** §3.2: cancel the registration of the sender's own account. */
	const remove = async (query: Element, from: JID): Promise<StanzaError | undefined> => {
		// §3.2 table: <remove/> must be the only child.
		if (query.elements().length !== 1) return new StanzaError("bad-request");
		if (!rules.allowRemove) return new StanzaError("not-allowed");
		try {
			await host.accounts.delete(from.local);
		} catch (err) {
			return accountError(err);
		}
		// The account manager fired `account/deleted` (src/core/server.ts).
		host.log.info({ user: from.local }, "account removed in-band");
		return undefined;
	};

	/** §3.3: change the sender's own password. */
	const changePassword = async (
		query: Element,
		from: JID,
		secure: boolean,
	): Promise<StanzaError | undefined> => {
		if (!rules.allowPasswordChange) return new StanzaError("not-allowed");
		if (!secure && !rules.allowPlain)
			return new StanzaError("not-authorized", "use an encrypted connection");
		const username = query.getChildText("username")?.trim();
		const password = query.getChildText("password") ?? "";
		// §3.3: incomplete request; an empty password never replaces the existing one.
		if (!username || !password)
			return new StanzaError("bad-request", "username and password are required");
		if (!isOwnUsername(username, from)) {
			// §3.2's forbidden ("not sufficient permissions") for another account's password.
			return new StanzaError("forbidden", "you can only change your own password");
		}
		try {
			await host.accounts.setPassword(from.local, password);
		} catch (err) {
			return accountError(err);
		}
		host.log.info({ user: from.local }, "password changed in-band");
		return undefined;
	};

	/** `bill` or `bill@host` names the sender's account. */
	const isOwnUsername = (username: string, from: JID): boolean => {
		try {
			if (username.includes("@")) return host.server.jids.parse(username).bare.equals(from.bare);
			return AccountManager.prepUsername(username) === from.local;
		} catch {
			return false;
		}
	};

	for (const dest of ["host", "bare"] as const) {
		api.hook(`iq-get/${dest}/${NS_REGISTER}:query`, onGet);
		api.hook(`iq-set/${dest}/${NS_REGISTER}:query`, onSet);
	}
}

const options = z.strictObject({
	/** Allow in-band password changes (§3.3). */
	allow_password_change: z.boolean().default(true),
	/** Allow in-band account removal (§3.2). */
	allow_remove: z.boolean().default(true),
});

export default defineModule({
	name: "account",
	description: "XEP-0077 password change and account removal for logged-in users",
	options,
	load(api) {
		const host = api.host;
		// A guest has no password and no registration to cancel; with `register` listed, that
		// module answers these requests itself (its own allow_password_change / allow_remove).
		if (host.config.authentication === "anonymous") return;
		if (host.config.modules.includes("register")) return;
		api.addFeature(NS_REGISTER);
		accountHandlers(api, {
			allowPasswordChange: api.options.allow_password_change,
			allowRemove: api.options.allow_remove,
			allowPlain: host.server.config.auth.allow_plain_without_tls,
		});
	},
});
