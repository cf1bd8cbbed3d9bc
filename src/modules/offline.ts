/**
 * Offline messages (XEP-0160, RFC 6121 §8.5.2.2.1): a chat or normal message for an account
 * with no available resource is stored, and delivered with a XEP-0203 delay stamp, oldest
 * first, when the account next sends non-negative available presence.
 *
 * Per account, storing and delivering run one after the other (a queue per user), so the
 * per-user limit is exact and a message stored while a resource comes online is not left
 * behind until the next login.
 */
import { z } from "zod";
import type { ClusterNotice, Host, Session } from "../core/contracts.ts";
import { HANDLED } from "../core/events.ts";
import { defineModule } from "../core/modules/define.ts";
import { pickMessageTargets, type StanzaEvent } from "../core/router.ts";
import type { ArchiveStore } from "../storage/types.ts";
import { type Element, x } from "../xml/element.ts";
import { parseDocument } from "../xml/parser.ts";
import { StanzaError } from "../xmpp/errors.ts";
import { NS_CLIENT, NS_DELAY } from "../xmpp/ns.ts";

export const NS_HINTS = "urn:xmpp:hints";
/** XEP-0160 §5: the disco feature of servers that store offline messages. */
export const FEATURE_OFFLINE = "msgoffline";

const options = z.strictObject({
	/** Messages kept per account; beyond it senders get service-unavailable (XEP-0160 §4). */
	max_messages: z.number().int().min(0).default(1000),
});

/** What one stored message is: the stanza as XML text, with its namespace declared. */
type Stored = { xml: string };

/** Messages delivered per storage round trip when a resource comes online. */
const BATCH = 100;

/**
 * Whether a message that found no available resource is kept: XEP-0160 §3 stores types
 * "normal" and "chat"; XEP-0334 §4 `<no-store/>` excludes and `<store/>` includes a message
 * whatever its content. Without a hint only messages with a body are kept, so standalone chat
 * states (XEP-0085 §5.6 says they SHOULD NOT be stored) are not.
 */
export function isStorable(stanza: Element): boolean {
	const type = stanza.attrs.type ?? "normal";
	if (type !== "chat" && type !== "normal") return false;
	if (stanza.getChild("no-store", NS_HINTS)) return false;
	if (stanza.getChild("store", NS_HINTS)) return true;
	return stanza.getChild("body") !== undefined;
}

/** XEP-0082 DateTime in UTC without fractions, as XEP-0203 §3 shows it. */
export function delayStamp(when: number): string {
	return `${new Date(when).toISOString().slice(0, 19)}Z`;
}

/** The stored message as it is delivered: with `<delay/>` (XEP-0203 §3) from the host. */
export function withDelay(stanza: Element, host: string, when: number): Element {
	return stanza.append(x("delay", { xmlns: NS_DELAY, from: host, stamp: delayStamp(when) }));
}

/** Runs async jobs one after the other per key; different keys run concurrently. */
function perKeyQueue() {
	const tails = new Map<string, Promise<void>>();
	return <T>(key: string, job: () => Promise<T>): Promise<T> => {
		const run = (tails.get(key) ?? Promise.resolve()).then(job);
		const tail = run.then(
			() => {},
			() => {},
		);
		tails.set(key, tail);
		void tail.then(() => {
			if (tails.get(key) === tail) tails.delete(key);
		});
		return run;
	};
}

export default defineModule({
	name: "offline",
	description: "XEP-0160 offline message storage with XEP-0203 delay stamps",
	options,
	load(api) {
		const host = api.host;
		const store = api.archive<Stored>("offline");
		const queue = perKeyQueue();
		api.addFeature(FEATURE_OFFLINE);

		// RFC 6121 §8.5.2.2.1 / XEP-0160 §4: the router found no available resource.
		api.hook("message/offline", async (event: StanzaEvent) => {
			const { stanza, to, from } = event;
			if (!isStorable(stanza)) return undefined;
			// RFC 6121 §8.5.1: no such account -> unclaimed, the router answers service-unavailable.
			if (!to.local || !(await host.accounts.exists(to.local))) return undefined;
			await queue(to.local, async () => {
				if ((await store.count(to.local)) >= api.options.max_messages) {
					// XEP-0160 §4 step 3: the queue is full -> service-unavailable to the sender.
					throw new StanzaError("service-unavailable", "the recipient's offline storage is full");
				}
				const copy = stanza.clone();
				if (copy.ns === null) copy.ns = NS_CLIENT;
				// The promise resolves once the write is durable: only then is the message accepted.
				await store.append(to.local, {
					value: { xml: copy.toString() },
					with: from.bare.toString(),
				});
				// A resource that became available while this was being written gets it now, if it
				// is on this node. One on another node is flushed by its own node, in that node's
				// per-user order: two nodes reading the store at once would both deliver what neither
				// had deleted yet (XEP-0160 §4: each stored message delivered once; seen in a rolling
				// restart, test/e2e/cluster-rolling.test.ts). And the user may have come online on
				// another node an instant ago, whose login flush ran before this write: it looks again.
				const online = pickMessageTargets(host.sessionsOf(to.local), "chat");
				const here = online.filter((s) => s.node === undefined);
				if (here.length) await flush(host, store, to.local, here);
				if (here.length < online.length || !online.length)
					host.server.cluster?.notify(host, "offline", to.local);
			});
			return HANDLED;
		});

		// Another node stored a message for a user who may be online here (see above).
		api.hook("cluster/offline", async ({ data: user }: ClusterNotice) => {
			const here = host.sessionsOf(user).filter((s) => s.node === undefined && s.priority >= 0);
			if (!here.some((s) => s.available)) return;
			try {
				await queue(user, () => flush(host, store, user, here));
			} catch (err) {
				api.log.error({ err, user }, "offline delivery failed");
			}
		});

		// XEP-0160 §4 step 5: delivered to the resource that sends non-negative available presence.
		api.hook("presence/initial", async ({ session }: { session: Session }) => {
			const user = session.jid?.local;
			if (!user || session.priority < 0) return;
			try {
				await queue(user, () => flush(host, store, user, [session]));
			} catch (err) {
				api.log.error({ err, user }, "offline delivery failed");
			}
		});
	},
});

/** Sends every stored message of `user` to `sessions`, oldest first, deleting what was sent. */
async function flush(
	host: Host,
	store: ArchiveStore<Stored>,
	user: string,
	sessions: Session[],
): Promise<void> {
	const limits = {
		maxStanzaBytes: host.server.config.limits.stanza_size * 2,
		maxDepth: host.server.config.limits.max_depth + 1,
	};
	for (;;) {
		const live = sessions.filter((s) => s.available);
		if (!live.length) return;
		const page = await store.query(user, { limit: BATCH });
		if (!page.items.length) return;
		for (const item of page.items) {
			let stanza: Element;
			try {
				stanza = parseDocument(item.value.xml, limits);
			} catch (err) {
				host.log.error({ err, user, id: item.id }, "unreadable offline message dropped");
				continue;
			}
			withDelay(stanza, host.name, item.when);
			for (const s of live) s.send(live.length > 1 ? stanza.clone() : stanza);
		}
		// Deleted only after the stanzas were handed to the sessions' streams.
		const deleted = await store.delete(user, { ids: page.items.map((i) => i.id) });
		if (deleted === 0 || page.complete) return;
	}
}
