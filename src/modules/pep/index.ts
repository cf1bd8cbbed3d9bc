/**
 * Personal Eventing Protocol (XEP-0163): every account is a PubSub service (XEP-0060) at its
 * bare JID, where clients keep OMEMO keys, avatars, bookmarks, nicknames and profiles.
 *
 * - The account owns every node and is the only publisher; publishing creates the node
 *   (§3, auto-create), with publish-options applied (XEP-0060 §7.1.5).
 * - Contacts subscribed to the account's presence (from/both) get notifications without
 *   subscribing, for the nodes whose name their client advertises with "+notify" in its
 *   entity capabilities (§4.3, XEP-0115), and the last item of each such node when they come
 *   online. So do the account's own resources. Explicit XEP-0060 subscriptions work too.
 * - Contacts on other servers are learned from the presence they send the account; local
 *   ones (this node's or another cluster node's sessions) are read from their sessions.
 *
 * State: one PubSubService per account, loaded from the `pep` / `pep_items` stores on first
 * use and kept in a bounded cache; a write on one cluster node makes the others drop theirs.
 */
import { z } from "zod";
import type { ClusterNotice, Session } from "../../core/contracts.ts";
import { HANDLED, Priority } from "../../core/events.ts";
import { defineModule } from "../../core/modules/define.ts";
import type { StanzaEvent } from "../../core/router.ts";
import { type Element, x } from "../../xml/element.ts";
import { parseDocument } from "../../xml/parser.ts";
import { StanzaError } from "../../xmpp/errors.ts";
import type { JID } from "../../xmpp/jid.ts";
import { NS_DISCO_INFO, NS_DISCO_ITEMS } from "../../xmpp/ns.ts";
import { resultFor } from "../../xmpp/stanza.ts";
import { fragmentKey, PRIVATE_STORE, type PrivateChangedEvent } from "../private.ts";
import { PEP_NODE_DEFAULTS } from "../pubsub/defaults.ts";
import { discoItems, nodeInfo } from "../pubsub/disco.ts";
import type { PubSubNode } from "../pubsub/node.ts";
import { NS_PUBSUB, NS_PUBSUB_OWNER, PEP_FEATURES, PUBSUB_FEATURES } from "../pubsub/ns.ts";
import { pubsubIqHandler } from "../pubsub/protocol.ts";
import { rosterRelation } from "../pubsub/relation.ts";
import { type NodeChange, PubSubService, type Recipient } from "../pubsub/service.ts";
import { AccountNodeStore } from "../pubsub/store.ts";
import { hasFrom, loadRoster, loadRosterItem } from "../roster.ts";
import { NS_VCARD, parseStoredVCard, VCARD_STORE, type VCardChangedEvent } from "../vcard.ts";
import { CapsCache, type CapsRef, capsOf } from "./caps.ts";
import {
	avatarMetadata,
	BOOKMARKS_OPTIONS,
	bookmarksToLegacy,
	legacyToBookmarks,
	metadataInfo,
	NS_AVATAR_DATA,
	NS_AVATAR_METADATA,
	NS_BOOKMARKS_LEGACY,
	NS_BOOKMARKS2,
	NS_VCARD_CONVERSION,
	publishOptions,
	sameBookmark,
	vcardPhoto,
	withPhoto,
} from "./conversions.ts";

const options = z.strictObject({
	/** Nodes one account may have (OMEMO adds one per device). */
	max_nodes: z.number().int().min(1).default(200),
	/** Items one node may keep: what `pubsub#max_items = max` means. */
	max_items: z.number().int().min(1).default(256),
	/** Bytes of one item's payload (an avatar's data node is the largest common one). */
	max_payload_size: z.number().int().min(1024).default(131_072),
	/** Explicit subscriptions one node may hold. */
	max_subscriptions_per_node: z.number().int().min(1).default(1000),
	/** Accounts whose PEP services stay in memory. */
	cache_size: z.number().int().min(1).default(10_000),
});

/** The session data key: the caps ver of the session's last presence, "" without caps. */
const SEEN = "pep";

export default defineModule({
	name: "pep",
	description: "XEP-0163 Personal Eventing Protocol: a PubSub service on every account",
	options,
	load(api) {
		const host = api.host;
		const core = host.server;
		const opts = api.options;
		const caps = new CapsCache(
			api.keyval<string[]>("caps"),
			(s) => void api.send(s),
			api.log,
			(ver) => core.cluster?.notify(host, "caps", ver),
		);
		api.hook("cluster/caps", ({ data: ver }: ClusterNotice) => {
			caps.storedElsewhere(ver);
		});
		api.every(30_000, () => caps.sweep());
		const services = new Map<string, PubSubService>();
		/**
		 * Per account, the contacts' resources that sent it available presence (full JID -> caps,
		 * null without): to send last items only for a new resource or new caps, and, for contacts
		 * on other servers, as the notification recipients.
		 */
		const contacts = new Map<string, Map<string, CapsRef | null>>();

		const wants = (ref: CapsRef | null | undefined, node: string): boolean =>
			ref ? (caps.known(ref.ver)?.has(`${node}+notify`) ?? false) : false;
		/** The caps of a session's presence, read once per presence element (fan-out reads it often). */
		const sessionCaps = new WeakMap<Element, CapsRef | null>();
		const capsOfSession = (s: Session): CapsRef | null => {
			const p = s.presence;
			if (!p) return null;
			let ref = sessionCaps.get(p);
			if (ref === undefined) {
				ref = capsOf(p) ?? null;
				sessionCaps.set(p, ref);
			}
			return ref;
		};

		function parse(s: string): JID | null {
			try {
				return core.jids.parse(s);
			} catch {
				return null;
			}
		}

		/** XEP-0163 §4.3: who gets a node's notifications without subscribing. */
		async function recipients(user: string, node: PubSubNode): Promise<Recipient[]> {
			const out: Recipient[] = [];
			const notify = `${node.name}+notify`;
			const interested = async (sessions: Session[], into: Recipient[]) => {
				for (const s of sessions) {
					if (!s.available || !s.jid) continue;
					const ref = capsOfSession(s);
					if (!ref) continue;
					// A session of another cluster node: its node learned the caps into the store.
					const features = caps.known(ref.ver) ?? (await caps.features(ref.ver));
					// Written to directly (the service's fan-out), as the router would for a full JID.
					if (features?.has(notify)) into.push({ jid: s.jid.toString(), send: (st) => s.send(st) });
				}
			};
			await interested(host.sessionsOf(user), out);
			const model = node.config.access_model;
			// Closed models: only the owner's resources and explicit subscribers (§4.3.1).
			if (model === "whitelist" || model === "authorize") return out;
			const remote = contacts.get(user);
			const { items } = await loadRoster(host, user);
			let owner: JID | undefined;
			for (const [contact, item] of items) {
				if (!hasFrom(item.subscription)) continue;
				if (
					model === "roster" &&
					!item.groups.some((g) => node.config.roster_groups_allowed.includes(g))
				)
					continue;
				const cjid = parse(contact);
				if (!cjid?.local) continue;
				const theirs: Recipient[] = [];
				const chost = core.hosts.get(cjid.domain);
				if (chost) {
					await core.cluster?.resolve?.(chost, cjid.local);
					await interested(chost.sessionsOf(cjid.local), theirs);
				} else if (remote)
					for (const [full, ref] of remote)
						if (full.startsWith(`${contact}/`) && wants(ref, node.name)) theirs.push(full);
				if (!theirs.length) continue;
				// XEP-0191 §3.3: nothing goes to a contact the account blocked, nor (written past the
				// router's inbound check) to a local contact that blocked the account.
				if (await host.events.fire("blocking/outbound", { user, jid: cjid })) continue;
				owner ??= core.jids.parse(`${user}@${host.name}`);
				if (
					chost &&
					(await chost.events.fire("blocking/outbound", { user: cjid.local, jid: owner }))
				)
					continue;
				out.push(...theirs);
			}
			return out;
		}

		function serviceFor(user: string): PubSubService {
			const cached = services.get(user);
			if (cached) {
				services.delete(user);
				services.set(user, cached);
				return cached;
			}
			const owner = `${user}@${host.name}`;
			const store = new AccountNodeStore(api.keyval("pep"), api.map("pep_items"), user, () =>
				core.cluster?.notify(host, "pep", user),
			);
			const service = new PubSubService({
				pepOwner: owner,
				jid: owner,
				defaults: { ...PEP_NODE_DEFAULTS, max_payload_size: opts.max_payload_size },
				limits: {
					maxItems: opts.max_items,
					maxPayloadSize: opts.max_payload_size,
					maxNodes: opts.max_nodes,
					maxSubscriptionsPerNode: opts.max_subscriptions_per_node,
				},
				store,
				mayCreate: () => false,
				relation: (o, r) => rosterRelation(core, o, r),
				send: (s) => void api.send(s),
				implicitRecipients: (node) => recipients(user, node),
				changed: (change) => converted(user, change),
			});
			services.set(user, service);
			if (services.size > opts.cache_size) services.delete(services.keys().next().value as string);
			return service;
		}

		/** §4.3.2: the last item of each node `to` wants and may see. */
		async function sendLastItems(user: string, to: JID, ref: CapsRef): Promise<void> {
			const service = serviceFor(user);
			await service.run(async () => {
				for (const node of service.nodes.values()) {
					if (node.config.send_last_published_item !== "on_sub_and_presence") continue;
					if (!wants(ref, node.name) || !(await service.canAccess(node, to))) continue;
					service.sendLast(node, to.toString());
				}
			});
		}

		const learn = (user: string, ref: CapsRef, to: JID) =>
			caps.learn(ref, `${user}@${host.name}`, to.toString(), () => {
				sendLastItems(user, to, ref).catch((err: unknown) =>
					api.log.warn({ err }, "PEP last items failed"),
				);
			});

		// --- XEP-0398 and XEP-0402 #compat: avatars and bookmarks kept in step (conversions.ts) ---
		const vcards = api.keyval<string>(VCARD_STORE);
		const privateStore = api.map<string>(PRIVATE_STORE);
		const LEGACY_KEY = fragmentKey(x("storage", { xmlns: NS_BOOKMARKS_LEGACY }));
		/** Accounts whose conversion is running: what it publishes is not converted back. */
		const converting = new Set<string>();
		const parseStored = (xml: string) =>
			parseDocument(xml, { maxStanzaBytes: Buffer.byteLength(xml) + 1, maxDepth: 64 });
		const ownerOf = (user: string) => core.jids.parse(`${user}@${host.name}`);

		async function asConversion(
			user: string,
			fn: (service: PubSubService, owner: JID) => Promise<void>,
		) {
			converting.add(user);
			try {
				const service = serviceFor(user);
				await service.load();
				await fn(service, ownerOf(user));
			} catch (err) {
				api.log.warn({ err, user }, "PEP conversion failed");
			} finally {
				converting.delete(user);
			}
		}

		/** The newest payload of a node, if any. */
		const lastPayload = (service: PubSubService, node: string): Element | undefined => {
			const last = service.nodes.get(node)?.last;
			return last ? service.payloadOf(last) : undefined;
		};

		/** XEP-0398 §3: an avatar published to PEP becomes the vCard's PHOTO. */
		async function avatarToVCard(user: string, metadata: Element | undefined): Promise<void> {
			const info = metadataInfo(metadata);
			const xml = await vcards.get(user);
			const vcard = xml ? parseStoredVCard(xml) : x("vCard", { xmlns: NS_VCARD });
			if (!info) {
				if (vcard.getChild("PHOTO")) await vcards.set(user, withPhoto(vcard, null).toString());
				return;
			}
			if (vcardPhoto(vcard)?.id === info.id) return;
			const service = serviceFor(user);
			const item = service.nodes.get(NS_AVATAR_DATA)?.items.get(info.id);
			const data = item ? service.payloadOf(item) : undefined;
			if (!data) return; // the data node is published first (XEP-0084 §4.1); nothing to copy yet
			const base64 = data.text().replace(/\s+/g, "");
			await vcards.set(user, withPhoto(vcard, { type: info.type, base64 }).toString());
		}

		/** XEP-0398 §4: a vCard's PHOTO is published as the XEP-0084 avatar. */
		async function vcardToAvatar(user: string, vcard: Element): Promise<void> {
			const photo = vcardPhoto(vcard);
			if (!photo && vcard.getChild("PHOTO")) return; // an EXTVAL: nothing to publish
			await asConversion(user, async (service, owner) => {
				const current = metadataInfo(lastPayload(service, NS_AVATAR_METADATA));
				if ((photo?.id ?? null) === (current?.id ?? null)) return;
				if (photo)
					await service.publish(owner, NS_AVATAR_DATA, {
						id: photo.id,
						payload: x("data", { xmlns: NS_AVATAR_DATA }, photo.base64),
					});
				await service.publish(owner, NS_AVATAR_METADATA, {
					id: photo?.id,
					payload: avatarMetadata(photo),
				});
			});
		}

		/** Publishes a Bookmarks 2 item with XEP-0402's node configuration, or as the node is. */
		async function publishBookmark(
			service: PubSubService,
			owner: JID,
			id: string,
			payload: Element,
		) {
			try {
				await service.publish(
					owner,
					NS_BOOKMARKS2,
					{ id, payload },
					publishOptions(BOOKMARKS_OPTIONS),
				);
			} catch {
				// A node the user configured otherwise: keep its configuration (precondition-not-met).
				await service.publish(owner, NS_BOOKMARKS2, { id, payload });
			}
		}

		/** XEP-0402 §5.3: XEP-0048 bookmarks (private XML or PEP) into Bookmarks 2 items. */
		async function legacyToBookmarks2(user: string, storage: Element): Promise<void> {
			const wanted = legacyToBookmarks(storage);
			await asConversion(user, async (service, owner) => {
				const node = service.nodes.get(NS_BOOKMARKS2);
				const existing = new Map<string, Element | undefined>();
				for (const item of node?.items.values() ?? [])
					existing.set(item.id, service.payloadOf(item));
				for (const [jid, conference] of wanted)
					if (!sameBookmark(existing.get(jid), conference))
						await publishBookmark(service, owner, jid, conference);
				const gone = [...existing.keys()].filter((jid) => !wanted.has(jid));
				if (gone.length) await service.retract(owner, NS_BOOKMARKS2, gone, true);
			});
		}

		/** XEP-0402 §5.3: Bookmarks 2 items back into XEP-0048 private XML (and PEP, if used). */
		async function bookmarks2ToLegacy(user: string): Promise<void> {
			await asConversion(user, async (service, owner) => {
				const items: [string, Element][] = [];
				for (const item of service.nodes.get(NS_BOOKMARKS2)?.items.values() ?? []) {
					const payload = service.payloadOf(item);
					if (payload) items.push([item.id, payload]);
				}
				const xml = await privateStore.get(user, LEGACY_KEY);
				const keep = xml
					? parseStored(xml)
							.elements()
							.filter((e) => e.name !== "conference")
					: [];
				const storage = bookmarksToLegacy(items, keep);
				await privateStore.set(user, LEGACY_KEY, storage.toString());
				if (service.nodes.has(NS_BOOKMARKS_LEGACY))
					await service.publish(owner, NS_BOOKMARKS_LEGACY, { id: "current", payload: storage });
			});
		}

		async function converted(user: string, change: NodeChange): Promise<void> {
			if (converting.has(user)) return;
			if (change.node === NS_AVATAR_METADATA && change.published)
				await avatarToVCard(user, change.published.payload);
			else if (change.node === NS_BOOKMARKS2) await bookmarks2ToLegacy(user);
			else if (change.node === NS_BOOKMARKS_LEGACY && change.published?.payload) {
				const storage = change.published.payload;
				await legacyToBookmarks2(user, storage);
				await bookmarks2ToLegacy(user);
			}
		}

		api.hook("vcard/changed", async ({ user, vcard }: VCardChangedEvent) => {
			await vcardToAvatar(user, vcard);
			return undefined;
		});
		api.hook("private/changed", async ({ user, fragments }: PrivateChangedEvent) => {
			const storage = fragments.find((f) => f.is("storage", NS_BOOKMARKS_LEGACY));
			if (storage) await legacyToBookmarks2(user, storage);
			return undefined;
		});
		api.addAccountFeature(NS_VCARD_CONVERSION);
		api.addAccountFeature(`${NS_BOOKMARKS2}#compat`);
		api.addAccountFeature(`${NS_BOOKMARKS2}#compat-pep`);

		// XEP-0163 §1 / §8: the account is a PEP service.
		api.addAccountIdentity({ category: "pubsub", type: "pep" });
		api.addAccountFeature(NS_PUBSUB);
		for (const f of [...PUBSUB_FEATURES, ...PEP_FEATURES]) api.addAccountFeature(f);

		const answer = pubsubIqHandler(api, core, async (e) => {
			if (!(await host.accounts.exists(e.to.local))) throw new StanzaError("service-unavailable");
			return serviceFor(e.to.local);
		});
		for (const ns of [NS_PUBSUB, NS_PUBSUB_OWNER])
			for (const type of ["get", "set"]) api.hook(`iq-${type}/bare/${ns}:pubsub`, answer);

		// XEP-0060 §5.3-§5.5 on the account: node info, the nodes, a node's items.
		api.hook(
			`iq-get/bare/${NS_DISCO_INFO}:query`,
			async (e: StanzaEvent) => {
				const node = (e.stanza.elements()[0] as Element).attrs.node;
				if (node === undefined) return undefined; // the account's own (disco module)
				if (!(await host.accounts.exists(e.to.local))) throw new StanzaError("service-unavailable");
				api.reply(
					e.origin,
					resultFor(e.stanza, await nodeInfo(serviceFor(e.to.local), e.from, node)),
				);
				return HANDLED;
			},
			Priority.TRANSFORM,
		);
		api.hook(
			`iq-get/bare/${NS_DISCO_ITEMS}:query`,
			async (e: StanzaEvent) => {
				if (!(await host.accounts.exists(e.to.local))) throw new StanzaError("service-unavailable");
				const node = (e.stanza.elements()[0] as Element).attrs.node;
				api.reply(
					e.origin,
					resultFor(e.stanza, await discoItems(serviceFor(e.to.local), e.from, node)),
				);
				return HANDLED;
			},
			Priority.TRANSFORM,
		);

		// Answers to our caps queries (XEP-0115 §6.2), addressed to an account's bare JID.
		const capsAnswer = async ({ stanza }: StanzaEvent) => {
			const type = stanza.attrs.type;
			if (type !== "result" && type !== "error") return undefined;
			return (await caps.answer(stanza)) ? HANDLED : undefined;
		};
		api.hook("iq/self", capsAnswer, Priority.TRANSFORM);
		api.hook("iq/bare", capsAnswer, Priority.TRANSFORM);

		// The account's own resources (§4.3.1): a new resource or new caps gets the last items.
		api.hook(
			"presence/self",
			async ({ stanza, origin }: StanzaEvent) => {
				if (!origin?.jid || stanza.attrs.to !== undefined || stanza.attrs.type !== undefined)
					return undefined;
				const ref = capsOf(stanza);
				const ver = ref?.ver ?? "";
				if (origin.data.get(SEEN) === ver) return undefined;
				origin.data.set(SEEN, ver);
				if (ref) await learn(origin.jid.local, ref, origin.jid);
				return undefined;
			},
			Priority.TRANSFORM,
		);

		// Contacts' presence to the account (§4.3.2): available from a subscribed contact's new
		// resource (or with new caps) brings the last items it wants.
		api.hook(
			"presence/bare",
			async ({ stanza, from, to }: StanzaEvent) => {
				if (!from.resource || from.bare.equals(to)) return undefined;
				const type = stanza.attrs.type;
				const user = to.local;
				const key = from.toString();
				if (type === "unavailable") {
					const m = contacts.get(user);
					m?.delete(key);
					if (m?.size === 0) contacts.delete(user);
					return undefined;
				}
				if (type !== undefined) return undefined;
				const ref = capsOf(stanza) ?? null;
				const m = contacts.get(user);
				const prev = m?.get(key);
				if (prev !== undefined && (prev?.ver ?? "") === (ref?.ver ?? "")) return undefined;
				const item = await loadRosterItem(host, user, from.bareString);
				if (!hasFrom(item?.subscription)) return undefined;
				if (m) m.set(key, ref);
				else contacts.set(user, new Map([[key, ref]]));
				if (ref) await learn(user, ref, from);
				return undefined;
			},
			Priority.TRANSFORM,
		);

		// Another cluster node changed an account's PEP nodes: read them again when needed.
		api.hook("cluster/pep", ({ data: user }: ClusterNotice) => {
			services.delete(user);
		});
		api.hook("account/deleted", ({ username }: { username: string }) => {
			services.delete(username);
			contacts.delete(username);
		});
	},
});
