/**
 * HTTP File Upload (XEP-0363) as the module of a component:
 *
 *     [components."upload.example.org"]
 *     type = "upload"
 *
 * Over XMPP it answers disco (§3: store/file, urn:xmpp:http:upload:0 and the max-file-size
 * form) and slot requests (§4), checking who asks, the size and the quotas. Over HTTP (the
 * `http/upload` event the HTTP listener fires on this component's bus, src/http/server.ts) it
 * takes the PUT of a slot and serves GET and HEAD (http.ts). Files live on disk (files.ts); the
 * `upload_files` archive store of the component indexes them by uploader and time for the
 * quotas. A periodic sweep deletes what has expired.
 *
 * In a cluster the slot requests are answered by whichever node the client is on (placement
 * "any", issue 16), and the HTTP requests by whichever node's listener receives them: the slot is a signed token
 * (slot.ts) any node can check, the index is in the shared storage, and the directory must be
 * one every node sees (it is, for the workers of one machine).
 */

import { resolveDataPath } from "../../core/config/load.ts";
import type { Host, HostAddedEvent, HttpRequestEvent } from "../../core/contracts.ts";
import { HANDLED } from "../../core/events.ts";
import { defineModule, type ModuleApi } from "../../core/modules/define.ts";
import { ModuleError } from "../../core/modules/manager.ts";
import type { StanzaEvent } from "../../core/router.ts";
import { type Element, x } from "../../xml/element.ts";
import { field, NS_DATA } from "../../xmpp/data-form.ts";
import { StanzaError } from "../../xmpp/errors.ts";
import { NS_DISCO_INFO, NS_DISCO_ITEMS } from "../../xmpp/ns.ts";
import { resultFor } from "../../xmpp/stanza.ts";
import { hostDiscoInfo } from "../disco.ts";
import { FileStore } from "./files.ts";
import { UploadHttp } from "./http.ts";
import { ClusterIpUploadLimits, IpUploadLimits } from "./ip-limits.ts";
import { mediaType, newSlotId, type Slot, safeFileName, signSlot } from "./slot.ts";

export const NS_UPLOAD = "urn:xmpp:http:upload:0";

const DAY = 86_400_000;

/** One uploaded file in the `upload_files` index (user "", `with` = the uploader). */
type IndexEntry = { size: number };

export default defineModule({
	name: "upload",
	description: 'XEP-0363 HTTP File Upload (a component: [components."x"] type = "upload")',
	async load(api: ModuleApi) {
		const host = api.host;
		const cfg = host.component;
		if (host.kind !== "component" || !cfg || cfg.type !== "upload")
			throw new ModuleError(
				`upload runs on a component domain: [components."upload.${host.name}"] type = "upload"`,
			);
		const core = host.server;
		const config = core.config;
		// Issue 16: in a cluster any node answers slot requests (all it needs is shared: the
		// secret, the index in storage, the directory), so none carries them all.
		host.placement = "any";
		api.onUnload(() => {
			if (host.placement === "any") delete host.placement;
		});
		const derived = host.name.slice(host.name.indexOf(".") + 1);
		const parentHost = cfg.parent_host ?? (core.hosts.has(derived) ? derived : undefined);
		const allowed = new Set(
			cfg.allowed_domains.length > 0
				? cfg.allowed_domains
				: parentHost
					? [parentHost]
					: [...core.hosts.keys()],
		);
		const limit = Math.min(cfg.max_file_size, ...[cfg.quota, cfg.daily_quota].filter((q) => q > 0));
		const expireAfter = cfg.expire_after * 1000;
		const files = new FileStore(resolveDataPath(config, cfg.directory ?? `upload/${host.name}`));
		await files.init();
		const index = api.archive<IndexEntry>("upload_files");

		const base = (cfg.url_base ?? defaultBase(host.name, config.listeners)).replace(/\/+$/, "");

		// §3: an upload service, its namespace and its maximum file size (XEP-0128).
		api.addIdentity({ category: "store", type: "file", name: cfg.name });
		api.addFeature(NS_UPLOAD);
		api.addExtension(
			x(
				"x",
				{ xmlns: NS_DATA, type: "result" },
				field("FORM_TYPE", "hidden", undefined, NS_UPLOAD),
				field("max-file-size", "text-single", undefined, String(limit)),
			),
		);
		api.hook(`iq-get/host/${NS_DISCO_INFO}:query`, (e: StanzaEvent) => {
			if ((e.stanza.elements()[0] as Element).attrs.node !== undefined)
				throw new StanzaError("item-not-found");
			api.reply(e.origin, resultFor(e.stanza, hostDiscoInfo(host)));
			return HANDLED;
		});
		api.hook(`iq-get/host/${NS_DISCO_ITEMS}:query`, (e: StanzaEvent) => {
			api.reply(e.origin, resultFor(e.stanza, x("query", { xmlns: NS_DISCO_ITEMS })));
			return HANDLED;
		});

		/**
		 * Slots handed out whose file has not arrived yet, by uploader: they count against the
		 * quotas until they expire, so that many slots asked for at once cannot pass them.
		 * (Memory of the leader only; a new leader starts without them.)
		 */
		const pending = new Map<string, Map<string, { size: number; expires: number }>>();

		/** What a user has stored (unexpired) and has uploaded in the last 24 hours. */
		async function usage(user: string, now: number) {
			const stored: { id: string; when: number; size: number }[] = [];
			let after: string | undefined;
			for (;;) {
				const page = await index.query("", {
					with: user,
					...(expireAfter > 0 ? { start: now - expireAfter + 1 } : {}),
					...(after ? { after } : {}),
					limit: 500,
				});
				for (const i of page.items) stored.push({ id: i.id, when: i.when, size: i.value.size });
				if (page.complete || page.items.length === 0) break;
				after = page.items.at(-1)?.id;
			}
			const ids = new Set(stored.map((s) => s.id));
			const mine = pending.get(user);
			let reserved = 0;
			for (const [id, p] of mine ?? []) {
				if (p.expires < now || ids.has(id)) mine?.delete(id);
				else reserved += p.size;
			}
			if (mine?.size === 0) pending.delete(user);
			const today = stored.filter((s) => s.when > now - DAY);
			return {
				total: stored.reduce((n, s) => n + s.size, 0) + reserved,
				daily: today.reduce((n, s) => n + s.size, 0) + reserved,
				oldest: stored[0]?.when,
				oldestToday: today[0]?.when,
			};
		}

		// Slot requests one at a time, so that two at once cannot both pass a quota.
		let queue: Promise<unknown> = Promise.resolve();
		const serially = <T>(fn: () => Promise<T>): Promise<T> => {
			const run = queue.then(fn, fn);
			queue = run.catch(() => {});
			return run;
		};

		// §4: a slot request.
		api.hook(`iq-get/host/${NS_UPLOAD}:request`, (e: StanzaEvent) =>
			serially(async () => {
				const req = e.stanza.getChild("request", NS_UPLOAD) as Element;
				const user = e.from.bareString;
				if (!e.from.local || !allowed.has(e.from.domain))
					throw new StanzaError(
						"forbidden",
						`only users of ${[...allowed].join(", ")} may upload files here`,
					);
				const filename = req.attrs.filename ?? "";
				const sizeAttr = req.attrs.size ?? "";
				if (filename === "" || !/^\d{1,15}$/.test(sizeAttr) || Number(sizeAttr) < 1)
					throw new StanzaError(
						"bad-request",
						"a slot request needs a filename and a size in bytes (XEP-0363 §4)",
					);
				const size = Number(sizeAttr);
				const type =
					req.attrs["content-type"] === undefined || req.attrs["content-type"] === ""
						? "application/octet-stream"
						: mediaType(req.attrs["content-type"]);
				if (type === null)
					throw new StanzaError("bad-request", "content-type is not a media type (RFC 6838)");
				// §4.4: too large, with the maximum.
				if (size > limit)
					throw new StanzaError(
						"not-acceptable",
						`File too large. The maximum file size is ${limit} bytes`,
						{
							type: "modify",
							appCondition: x(
								"file-too-large",
								{ xmlns: NS_UPLOAD },
								x("max-file-size", null, String(limit)),
							),
						},
					);
				const now = Date.now();
				const use = await usage(user, now);
				// §4.4: a quota reached is resource-constraint (wait), with when to retry if known.
				const quotaError = (text: string, retry: number | undefined) =>
					new StanzaError("resource-constraint", text, {
						type: "wait",
						...(retry !== undefined
							? {
									appCondition: x("retry", {
										xmlns: NS_UPLOAD,
										stamp: new Date(retry).toISOString().replace(/\.\d{3}Z$/, "Z"),
									}),
								}
							: {}),
					});
				if (cfg.daily_quota > 0 && use.daily + size > cfg.daily_quota)
					throw quotaError(
						`Daily quota reached: ${use.daily} of ${cfg.daily_quota} bytes uploaded in the last 24 hours`,
						use.oldestToday !== undefined ? use.oldestToday + DAY : now + cfg.slot_lifetime * 1000,
					);
				if (cfg.quota > 0 && use.total + size > cfg.quota)
					throw quotaError(
						`Quota reached: ${use.total} of ${cfg.quota} bytes stored`,
						expireAfter > 0
							? use.oldest !== undefined
								? use.oldest + expireAfter
								: now + cfg.slot_lifetime * 1000
							: undefined,
					);
				const slot: Slot = {
					id: newSlotId(),
					name: safeFileName(filename),
					size,
					type,
					expires: now + cfg.slot_lifetime * 1000,
					uploader: user,
				};
				const mine = pending.get(user) ?? new Map<string, { size: number; expires: number }>();
				pending.set(user, mine);
				mine.set(slot.id, { size, expires: slot.expires });
				const get = `${base}/${slot.id}/${encodeURIComponent(slot.name)}`;
				const put = `${get}?token=${signSlot(host.secret, slot)}`;
				api.log.debug({ user, id: slot.id, size, type }, "upload slot");
				api.reply(
					e.origin,
					resultFor(
						e.stanza,
						x("slot", { xmlns: NS_UPLOAD }, x("put", { url: put }), x("get", { url: get })),
					),
				);
				return HANDLED;
			}),
		);

		// Per client address, on the HTTP side (ip-limits.ts): in this process's memory, or in a
		// cluster in Redis for every node's PUTs (issue 16).
		const ipOptions = { maxUploads: cfg.ip_max_uploads, dailyBytes: cfg.ip_daily_quota };
		const ipLimits = core.config.cluster.enabled
			? new ClusterIpUploadLimits({
					...ipOptions,
					counters: () => core.cluster?.counters,
					service: host.name,
					log: api.log,
				})
			: new IpUploadLimits(ipOptions);
		api.every(Math.min(cfg.cleanup_interval * 1000, 3_600_000), () => ipLimits.prune());
		const http = new UploadHttp({
			files,
			secret: host.secret,
			expireAfter,
			ipLimits,
			record: async (slot, when) => {
				await index.append("", {
					id: slot.id,
					with: slot.uploader,
					when,
					value: { size: slot.size },
				});
			},
			log: api.log,
		});
		api.hook("http/upload", async (e: HttpRequestEvent) => {
			e.response = await http.handle(e);
			return HANDLED;
		});

		/**
		 * A deleted account's files go with it, as its other data does (Prosody's
		 * mod_http_file_share does the same): the links it shared stop working at once, and what
		 * it stored no longer takes room. Heard on the bus of each domain whose users may upload.
		 */
		const forget = async (uploader: string) => {
			pending.delete(uploader);
			let removed = 0;
			for (;;) {
				const page = await index.query("", { with: uploader, limit: 500 });
				for (const item of page.items) await files.remove(item.id);
				const n = await index.delete("", { with: uploader, ids: page.items.map((i) => i.id) });
				removed += n;
				// Each page is read from the start again, so a page that deleted nothing would
				// come back the same: stop there rather than loop.
				if (page.complete || n === 0) break;
			}
			if (removed > 0) api.log.info({ uploader, removed }, "a deleted account's uploads deleted");
		};
		const follow = (h: Host) => {
			if (!allowed.has(h.name)) return;
			api.onUnload(
				h.events.on("account/deleted", async ({ username }: { username: string }) => {
					// Logged, not thrown: the account is gone either way, and the sweep still expires them.
					await forget(`${username}@${h.name}`).catch((err: Error) =>
						api.log.warn({ err: err.message }, "could not delete a deleted account's uploads"),
					);
					return undefined;
				}),
			);
		};
		for (const h of core.hosts.values()) follow(h);
		api.hook("host/added", ({ host: added }: HostAddedEvent) => {
			follow(added);
			return undefined;
		});

		// Expired files go, on the leader only in a cluster (the others see the same directory).
		let sweeping = false;
		const sweep = async () => {
			if (sweeping || (core.cluster && !core.cluster.leader)) return;
			sweeping = true;
			try {
				const now = Date.now();
				const cutoff = expireAfter > 0 ? now - expireAfter : 0;
				// Parts not written to for 10 minutes: uploads abandoned (an upload stalls 60 s at most).
				const removed = await files.sweep(cutoff, now - 600_000);
				if (expireAfter > 0) await index.delete("", { end: cutoff });
				if (removed > 0) api.log.info({ removed }, "expired uploads deleted");
			} catch (err) {
				api.log.warn({ err: (err as Error).message }, "upload sweep failed");
			} finally {
				sweeping = false;
			}
		};
		api.every(cfg.cleanup_interval * 1000, () => void sweep());
		await sweep();
	},
});

/**
 * The URL base when `url_base` is not set: Parley's own listener at the component's domain,
 * HTTPS when it is on (XEP-0363 §11 wants TLS), with the port unless it is the scheme's default.
 */
function defaultBase(
	domain: string,
	l: { http: { enabled: boolean; port: number }; https: { enabled: boolean; port: number } },
): string {
	const tls = l.https.enabled;
	const port = tls ? l.https.port : l.http.port;
	const shown = port === (tls ? 443 : 80) ? "" : `:${port}`;
	return `${tls ? "https" : "http"}://${domain}${shown}/upload/${domain}`;
}
