/**
 * Push Notifications (XEP-0357): a phone whose app sleeps registers an app server (the push
 * service of Conversations, Monal, Siskin...) and a node; when a message waits for it, the server
 * publishes a small notification there, and the app server wakes the phone.
 *
 * - `<enable/>` / `<disable/>` (§5, §6) on the account, with the publish-options the client gives
 *   (its secret) kept and sent with every notification (§7).
 * - A notification goes out for a message that is stored offline (every registration of the
 *   account) and for a message queued for a session that waits to be resumed (XEP-0198
 *   hibernation: the registration that session enabled). Not for what a connected session got,
 *   CSI-inactive ones included (they get important messages at once), nor for carbons.
 * - The summary form (§7, urn:xmpp:push:summary): message count, last sender, and the body only
 *   when `include_body` is on and the message is not encrypted (privacy).
 * - An app server that answers with an error of type cancel or auth has the registration
 *   disabled (§8: the registration is no longer valid); wait errors keep it.
 * - Group chat (XEP-0045) messages to a hibernated session only when they mention the nickname
 *   the session uses in that room, as Prosody's mod_cloud_notify does: a busy room would
 *   otherwise wake the phone for every line. Private messages from a room are pushed like chats.
 * - Diagnostics: each decision (sent, skipped and why, the app server's answer) is kept per
 *   account, the last `diagnostics_kept`, in the `push_log` store; `parley push <jid>` shows them.
 *
 * App servers on other domains are reached over federation like any IQ.
 */
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { HIBERNATING, type Session } from "../core/contracts.ts";
import { HANDLED, Priority } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import type { DeliveredEvent, StanzaEvent } from "../core/router.ts";
import { type Element, x } from "../xml/element.ts";
import { field, formValues, NS_DATA } from "../xmpp/data-form.ts";
import { StanzaError } from "../xmpp/errors.ts";
import { resultFor } from "../xmpp/stanza.ts";

export const NS_PUSH = "urn:xmpp:push:0";
const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options";
const NS_SUMMARY = "urn:xmpp:push:summary";
const ENCRYPTED = ["eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2", "jabber:x:encrypted"];

/** The `Session.data` key: which registration the session enabled (`jid\nnode`). */
const SESSION_KEY = "push";
/**
 * The `Session.data` key: the rooms the session joined, room bare JID -> its nickname there, as
 * the client's own presences say (Prosody's mod_track_muc_joins), for group chat mentions.
 */
const ROOMS_KEY = "push:rooms";
const NS_MUC = "http://jabber.org/protocol/muc";

const options = z.strictObject({
	/** Put the message body in notifications (off: app servers and push gateways see no text). */
	include_body: z.boolean().default(false),
	/** Registrations one account may have. */
	max_registrations: z.number().int().min(1).default(20),
	/** Diagnostic entries kept per account (`parley push <jid>`). */
	diagnostics_kept: z.number().int().min(0).default(20),
});

/** One registration (§5): the app server, its node, and the publish-options fields it wants. */
export type Registration = {
	jid: string;
	node: string;
	options: Record<string, string[]>;
	enabled: number;
};

/** One decision, for diagnostics. */
export type PushLogEntry = {
	when: number;
	/** "sent", "answered", "skipped", "disabled" */
	what: string;
	/** The registration, when one is concerned. */
	to?: string;
	why: string;
};

const keyOf = (jid: string, node: string) => `${jid}\n${node}`;

function hasBody(m: Element): boolean {
	return (
		m.getChild("body") !== undefined ||
		m.elements().some((c) => c.ns !== null && ENCRYPTED.includes(c.ns))
	);
}

export default defineModule({
	name: "push",
	description: "XEP-0357 Push Notifications",
	options,
	load(api) {
		const host = api.host;
		const opts = api.options;
		// user -> registration key -> registration
		const registrations = api.map<Registration>("push");
		const log = api.keyval<PushLogEntry[]>("push_log");
		/** IQ id -> what it published, to read the app server's answer. */
		const pending = new Map<string, { user: string; key: string; since: number }>();
		api.every(60_000, () => {
			const now = Date.now();
			for (const [id, p] of pending) if (now - p.since > 60_000) pending.delete(id);
		});

		api.addAccountFeature(NS_PUSH);

		async function note(user: string, entry: Omit<PushLogEntry, "when">): Promise<void> {
			if (opts.diagnostics_kept === 0) return;
			const list = (await log.get(user)) ?? [];
			list.push({ when: Date.now(), ...entry });
			await log.set(user, list.slice(-opts.diagnostics_kept));
		}

		// §5 enable, §6 disable: only the account itself, for itself.
		api.hook(`iq-set/bare/${NS_PUSH}:enable`, async ({ stanza, origin, from, to }: StanzaEvent) => {
			if (!from.bare.equals(to))
				throw new StanzaError("forbidden", "push is enabled by the account itself");
			const el = stanza.elements()[0] as Element;
			const jid = el.attrs.jid;
			const node = el.attrs.node;
			if (!jid || !node)
				throw new StanzaError("bad-request", "enable needs jid and node (XEP-0357 §5)");
			try {
				host.server.jids.parse(jid);
			} catch {
				throw new StanzaError("jid-malformed", "the app server's JID is not valid");
			}
			const form = el.getChild("x", NS_DATA);
			const fields: Record<string, string[]> = {};
			if (form) {
				const values = formValues(form);
				if (values.get("FORM_TYPE")?.[0] !== NS_PUBLISH_OPTIONS)
					throw new StanzaError(
						"bad-request",
						`the form's FORM_TYPE must be ${NS_PUBLISH_OPTIONS}`,
					);
				for (const [k, v] of values) if (k !== "FORM_TYPE") fields[k] = v;
			}
			const key = keyOf(jid, node);
			const existing = await registrations.getAll(to.local);
			if (!existing.has(key) && existing.size >= opts.max_registrations)
				throw new StanzaError(
					"resource-constraint",
					`at most ${opts.max_registrations} push registrations`,
				);
			await registrations.set(to.local, key, { jid, node, options: fields, enabled: Date.now() });
			// The session that enabled it is the one whose hibernation it covers.
			origin?.data.set(SESSION_KEY, key);
			await note(to.local, {
				what: "enabled",
				to: key,
				why: `by ${from.resource || "the account"}`,
			});
			api.reply(origin, resultFor(stanza));
			return HANDLED;
		});

		api.hook(
			`iq-set/bare/${NS_PUSH}:disable`,
			async ({ stanza, origin, from, to }: StanzaEvent) => {
				if (!from.bare.equals(to))
					throw new StanzaError("forbidden", "push is disabled by the account itself");
				const el = stanza.elements()[0] as Element;
				const jid = el.attrs.jid;
				if (!jid) throw new StanzaError("bad-request", "disable needs jid (XEP-0357 §6)");
				const node = el.attrs.node;
				for (const [key, r] of await registrations.getAll(to.local)) {
					if (r.jid !== jid || (node !== undefined && r.node !== node)) continue;
					await registrations.set(to.local, key, undefined);
					await note(to.local, { what: "disabled", to: key, why: "by the client (§6)" });
				}
				if (origin?.data.get(SESSION_KEY) !== undefined) origin.data.delete(SESSION_KEY);
				api.reply(origin, resultFor(stanza));
				return HANDLED;
			},
		);

		/** §7: the notification, with the summary and the registration's publish-options. */
		async function push(
			user: string,
			key: string,
			r: Registration,
			message: Element,
			count: number,
		) {
			const id = `push-${randomUUID()}`;
			const summary: Element[] = [
				field("FORM_TYPE", "hidden", undefined, NS_SUMMARY),
				field("message-count", "text-single", undefined, String(count)),
			];
			const sender = message.attrs.from?.split("/")[0];
			if (sender) summary.push(field("last-message-sender", "jid-single", undefined, sender));
			const body = message.getChildText("body");
			const encrypted = message.elements().some((c) => c.ns !== null && ENCRYPTED.includes(c.ns));
			if (opts.include_body && body && !encrypted)
				summary.push(field("last-message-body", "text-single", undefined, body));
			const publishOptions = Object.keys(r.options).length
				? x(
						"publish-options",
						null,
						x(
							"x",
							{ xmlns: NS_DATA, type: "submit" },
							field("FORM_TYPE", "hidden", undefined, NS_PUBLISH_OPTIONS),
							Object.entries(r.options).map(([k, v]) => field(k, "text-single", undefined, v)),
						),
					)
				: undefined;
			const iq = x(
				"iq",
				{ type: "set", id, from: `${user}@${host.name}`, to: r.jid },
				x(
					"pubsub",
					{ xmlns: NS_PUBSUB },
					x(
						"publish",
						{ node: r.node },
						x(
							"item",
							null,
							x(
								"notification",
								{ xmlns: NS_PUSH },
								x("x", { xmlns: NS_DATA, type: "submit" }, summary),
							),
						),
					),
					publishOptions,
				),
			);
			pending.set(id, { user, key, since: Date.now() });
			await note(user, { what: "sent", to: key, why: `message from ${sender ?? "?"}` });
			await api.send(iq);
		}

		/** Every registration of `user` (an offline message), or the one `only` names. */
		async function notify(
			user: string,
			message: Element,
			why: string,
			only?: string,
		): Promise<void> {
			const all = await registrations.getAll(user);
			if (all.size === 0) {
				await note(user, { what: "skipped", why: `${why}: no push registration` });
				return;
			}
			for (const [key, r] of all) {
				if (only !== undefined && key !== only) continue;
				await push(user, key, r, message, 1);
			}
		}

		// A message stored offline (XEP-0160): every registration (LATE: after the offline module
		// decided to store it; it is not claimed here).
		api.hook(
			"message/offline",
			async ({ stanza, to }: StanzaEvent) => {
				if (!to.local || !hasBody(stanza)) return undefined;
				const type = stanza.attrs.type ?? "normal";
				if (type !== "chat" && type !== "normal") return undefined;
				await notify(to.local, stanza, "offline message");
				return undefined;
			},
			Priority.TRANSFORM,
		);

		// The rooms a session is in, and its nickname in each, from the presences its client
		// sends (XEP-0045 §7.2 join with <x/>, §7.6 nickname change, §7.14 exit). Before the
		// presence module routes them (POLICY); nothing is claimed.
		api.hook(
			"pre-presence/full",
			({ stanza, origin, to }: StanzaEvent) => {
				if (!origin || !to.resource) return undefined;
				const type = stanza.attrs.type;
				const room = to.bare.toString();
				let rooms = origin.data.get(ROOMS_KEY) as Map<string, string> | undefined;
				if (type === "unavailable") rooms?.delete(room);
				else if (type !== undefined) return undefined;
				else if (stanza.getChild("x", NS_MUC)) {
					if (!rooms) {
						rooms = new Map();
						origin.data.set(ROOMS_KEY, rooms);
					}
					rooms.set(room, to.resource);
				} else if (rooms?.has(room)) rooms.set(room, to.resource);
				return undefined;
			},
			Priority.POLICY,
		);

		// A message queued for a session that waits to be resumed (XEP-0198): its registration.
		// The MUC service fires this too when it writes to a hibernating session.
		api.hook("message/delivered", async ({ stanza, from, to, sessions }: DeliveredEvent) => {
			if (!to.local || !hasBody(stanza)) return;
			let asleep = sessions.filter((s: Session) => s.data.get(HIBERNATING) === true);
			// A connected session got it: nothing to wake (CSI-inactive ones get bodies at once).
			if (asleep.length === 0 || asleep.length < sessions.length) return;
			if (stanza.attrs.type === "groupchat") {
				// Only a mention of the session's nickname in that room (not noted otherwise: a
				// diagnostics write per room message would cost more than the push it decides).
				if (stanza.getChild("subject")) return;
				const body = (stanza.getChildText("body") ?? "").toLowerCase();
				const room = from.bare.toString();
				asleep = asleep.filter((s) => {
					const nick = (s.data.get(ROOMS_KEY) as Map<string, string> | undefined)?.get(room);
					return nick !== undefined && nick !== "" && body.includes(nick.toLowerCase());
				});
			}
			for (const s of asleep) {
				const key = s.data.get(SESSION_KEY);
				if (typeof key === "string") await notify(to.local, stanza, "hibernated session", key);
				else
					await note(to.local, {
						what: "skipped",
						why: `${s.jid?.resource ?? "?"} hibernates without push`,
					});
			}
		});

		// The app server's answer (§8): errors of type cancel or auth end the registration.
		api.hook(
			"iq/bare",
			async ({ stanza }: StanzaEvent) => {
				const id = stanza.attrs.id ?? "";
				const p = pending.get(id);
				if (!p) return undefined;
				pending.delete(id);
				if (stanza.attrs.type === "result") {
					await note(p.user, { what: "answered", to: p.key, why: "the app server accepted it" });
					return HANDLED;
				}
				const error = stanza.getChild("error");
				const type = error?.attrs.type ?? "cancel";
				const condition = error?.elements()[0]?.name ?? "unknown";
				if (type === "cancel" || type === "auth") {
					await registrations.set(p.user, p.key, undefined);
					await note(p.user, {
						what: "disabled",
						to: p.key,
						why: `the app server answered ${condition} (${type})`,
					});
				} else
					await note(p.user, {
						what: "answered",
						to: p.key,
						why: `error ${condition} (${type}), kept`,
					});
				return HANDLED;
			},
			Priority.TRANSFORM,
		);
	},
});
