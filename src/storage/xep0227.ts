/**
 * Export and import in the portable format of XEP-0227 (Portable Import/Export Format for XMPP
 * servers, namespace urn:xmpp:pie:0), through the ordinary storage interface, so any backend.
 *
 * What is carried, per account of a host (the users of the "accounts" keyval store):
 * - accounts: one `<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-…'>` per
 *   hash (iter-count, salt, server-key, stored-key, base64), as XEP-0227 §2 defines; other fields
 *   of the account record in `<account xmlns='urn:parley:pie:0'>` as JSON. On import, a `password`
 *   attribute (servers that keep plaintext) is turned into SCRAM credentials.
 * - roster ("roster" keyval): `<query xmlns='jabber:iq:roster' ver>` with RFC 6121 items; pending
 *   inbound subscription requests as `<pending xmlns='urn:parley:pie:0' jid>` holding the stanza.
 * - vCard ("vcard" keyval, XML text): the `<vCard xmlns='vcard-temp'>` element.
 * - private XML ("private" map, "name namespace" -> XML text): `<query xmlns='jabber:iq:private'>`.
 * - offline messages ("offline" archive, `{ xml }`): `<offline-messages>` with the messages, each
 *   with a `<delay xmlns='urn:xmpp:delay' from=host stamp>` that import turns back into the time.
 * - PEP nodes (XEP-0163; "pep" keyval with every node's meta, "pep_items" map keyed
 *   "node\nitem id"), as XEP-0227 §2 has them: `<pubsub xmlns='…pubsub#owner'>` with a
 *   `<configure node>` form per node, and `<pubsub xmlns='…pubsub'>` with `<items node>`; the
 *   affiliations and subscriptions ride along as JSON in `<node xmlns='urn:parley:pie:0'>`.
 *
 * - the message archive (XEP-0313; "mam" archive of `{ xml }`, "mam_prefs" keyval) as XEP-0227
 *   (v1.1) has it: `<archive xmlns='urn:xmpp:pie:0#mam'>` holding the preferences as
 *   `<prefs xmlns='urn:xmpp:mam:2'>` and each message as a MAM `<result id>` with its
 *   `<forwarded><delay stamp/><message/></forwarded>`. Ids and times are kept on import, so the
 *   stanza-ids clients hold stay valid; an id already present is skipped (importing twice adds
 *   nothing).
 *
 * Data-driven and tolerant: a store that is empty or absent is skipped, a value that does not
 * parse is reported through `warn` and left out, and unknown elements on import are ignored.
 * Not carried yet: PubSub component nodes and MUC room archives (`parley storage copy` moves
 * those), and archive ids of offline messages (new ones are given on import).
 */
import { type Element, x } from "../xml/element.ts";
import { parseDocument } from "../xml/parser.ts";
import type { Json, StorageBackend } from "./types.ts";

export const NS_PIE = "urn:xmpp:pie:0";
export const NS_PIE_SCRAM = "urn:xmpp:pie:0#scram";
export const NS_PIE_MAM = "urn:xmpp:pie:0#mam";
const NS_MAM = "urn:xmpp:mam:2";
const NS_FORWARD = "urn:xmpp:forward:0";
/** Archived messages read per storage round trip on export. */
const EXPORT_PAGE = 1000;
const NS_PARLEY = "urn:parley:pie:0";
const NS_ROSTER = "jabber:iq:roster";
const NS_PRIVATE = "jabber:iq:private";
const NS_DELAY = "urn:xmpp:delay";
const NS_CLIENT = "jabber:client";
const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_PUBSUB_OWNER = "http://jabber.org/protocol/pubsub#owner";
const NS_DATA = "jabber:x:data";
const NS_NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config";
/** The separator of PEP item keys (src/modules/pubsub/store.ts). */
const PEP_SEP = "\n";

/** SCRAM hash names as stored (src/auth/scram.ts) <-> SASL mechanism names. */
const MECHANISMS: Record<string, string> = { "SHA-1": "SCRAM-SHA-1", "SHA-256": "SCRAM-SHA-256" };

const LIMITS = { maxStanzaBytes: 1 << 30, maxDepth: 1000, maxAttributes: 10_000 };

type Obj = { [key: string]: Json };
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

export interface PieOptions {
	/** Told about data left out (a stored value that does not parse, ...). */
	warn?: (message: string) => void;
}

function parseXml(xml: string): Element {
	return parseDocument(xml, LIMITS);
}

/** XML text of a fragment, with `ns` as its namespace when it had none. */
function fragment(xml: string, ns: string): Element {
	const el = parseXml(xml);
	if (!el.ns) el.ns = ns;
	return el;
}

/** Exports the given hosts as one XEP-0227 document. */
export async function exportPie(
	storage: StorageBackend,
	hosts: string[],
	opts: PieOptions = {},
): Promise<string> {
	const warn = opts.warn ?? (() => {});
	const root = x("server-data", { xmlns: NS_PIE });
	for (const host of hosts) {
		const hostEl = x("host", { jid: host });
		const accounts = storage.keyval(host, "accounts");
		for (const user of await accounts.users()) {
			try {
				hostEl.append(await exportUser(storage, host, user, warn));
			} catch (e) {
				warn(`${user}@${host}: left out: ${(e as Error).message}`);
			}
		}
		root.append(hostEl);
	}
	return `<?xml version='1.0' encoding='UTF-8'?>\n${root.toString()}\n`;
}

async function exportUser(
	storage: StorageBackend,
	host: string,
	user: string,
	warn: (m: string) => void,
): Promise<Element> {
	const el = x("user", { name: user });
	const account = await storage.keyval(host, "accounts").get(user);
	if (isObj(account)) {
		const { scram, ...rest } = account;
		if (isObj(scram)) {
			for (const [hash, cred] of Object.entries(scram)) {
				const mechanism = MECHANISMS[hash];
				if (!mechanism || !isObj(cred)) continue;
				el.append(
					x(
						"scram-credentials",
						{ xmlns: NS_PIE_SCRAM, mechanism },
						x("iter-count", null, String(cred.iterations)),
						x("salt", null, String(cred.salt)),
						x("server-key", null, String(cred.serverKey)),
						x("stored-key", null, String(cred.storedKey)),
					),
				);
			}
		}
		if (Object.keys(rest).length > 0)
			el.append(x("account", { xmlns: NS_PARLEY }, JSON.stringify(rest)));
	}

	const roster = await storage.keyval(host, "roster").get(user);
	if (isObj(roster)) {
		const query = x("query", {
			xmlns: NS_ROSTER,
			ver: roster.ver === undefined ? undefined : String(roster.ver),
		});
		for (const [jid, item] of Object.entries(isObj(roster.items) ? roster.items : {})) {
			if (!isObj(item)) continue;
			const groups = Array.isArray(item.groups) ? item.groups : [];
			query.append(
				x(
					"item",
					{
						jid,
						name: typeof item.name === "string" ? item.name : undefined,
						subscription: typeof item.subscription === "string" ? item.subscription : "none",
						ask: item.ask === true ? "subscribe" : undefined,
						approved: item.approved === true ? "true" : undefined,
					},
					groups.map((g) => x("group", null, String(g))),
				),
			);
		}
		for (const [jid, stanza] of Object.entries(isObj(roster.pending) ? roster.pending : {})) {
			query.append(x("pending", { xmlns: NS_PARLEY, jid }, String(stanza)));
		}
		el.append(query);
	}

	const vcard = await storage.keyval(host, "vcard").get(user);
	if (typeof vcard === "string") {
		try {
			el.append(fragment(vcard, "vcard-temp"));
		} catch (e) {
			warn(`${user}@${host}: vCard left out: ${(e as Error).message}`);
		}
	}

	const priv = await storage.map(host, "private").getAll(user);
	if (priv.size > 0) {
		const query = x("query", { xmlns: NS_PRIVATE });
		for (const [key, xml] of priv) {
			try {
				query.append(fragment(String(xml), ""));
			} catch (e) {
				warn(`${user}@${host}: private ${key} left out: ${(e as Error).message}`);
			}
		}
		el.append(query);
	}

	const offline = (await storage.archive(host, "offline").query(user)).items;
	if (offline.length > 0) {
		const box = x("offline-messages");
		for (const item of offline) {
			const xml = isObj(item.value) ? item.value.xml : item.value;
			try {
				const msg = fragment(String(xml), NS_CLIENT);
				msg.append(
					x("delay", { xmlns: NS_DELAY, from: host, stamp: new Date(item.when).toISOString() }),
				);
				box.append(msg);
			} catch (e) {
				warn(`${user}@${host}: offline message ${item.id} left out: ${(e as Error).message}`);
			}
		}
		el.append(box);
	}

	await exportArchive(storage, host, user, el, warn);
	await exportPep(storage, host, user, el, warn);
	return el;
}

/** The XEP-0313 archive and its preferences, as XEP-0227 v1.1 `<archive xmlns='…#mam'>`. */
async function exportArchive(
	storage: StorageBackend,
	host: string,
	user: string,
	el: Element,
	warn: (message: string) => void,
): Promise<void> {
	const archive = x("archive", { xmlns: NS_PIE_MAM });
	const prefs = await storage.keyval(host, "mam_prefs").get(user);
	if (isObj(prefs)) {
		const list = (name: string) =>
			x(
				name,
				null,
				(Array.isArray(prefs[name]) ? (prefs[name] as Json[]) : []).map((j) =>
					x("jid", null, String(j)),
				),
			);
		archive.append(
			x(
				"prefs",
				{ xmlns: NS_MAM, default: String(prefs.default ?? "always") },
				list("always"),
				list("never"),
			),
		);
	}
	const store = storage.archive(host, "mam");
	let after: string | undefined;
	for (;;) {
		const page = await store.query(user, { after, limit: EXPORT_PAGE });
		for (const item of page.items) {
			const xml = isObj(item.value) ? item.value.xml : item.value;
			try {
				archive.append(
					x(
						"result",
						{ xmlns: NS_MAM, id: item.id },
						x(
							"forwarded",
							{ xmlns: NS_FORWARD },
							x("delay", { xmlns: NS_DELAY, stamp: new Date(item.when).toISOString() }),
							fragment(String(xml), NS_CLIENT),
						),
					),
				);
			} catch (e) {
				warn(`${user}@${host}: archived message ${item.id} left out: ${(e as Error).message}`);
			}
		}
		const last = page.items.at(-1);
		if (page.complete || !last) break;
		after = last.id;
	}
	if (archive.children.length > 0) el.append(archive);
}

/** XEP-0227 v1.1 `<archive xmlns='…#mam'>`: preferences and messages, ids and times kept. */
async function importArchive(
	storage: StorageBackend,
	host: string,
	user: string,
	u: Element,
): Promise<void> {
	const archive = u.getChild("archive", NS_PIE_MAM);
	if (!archive) return;
	const prefs = archive.getChild("prefs", NS_MAM);
	if (prefs) {
		const list = (name: string) =>
			(prefs.getChild(name, NS_MAM)?.getChildren("jid", NS_MAM) ?? []).map((j) => j.text().trim());
		await storage.keyval(host, "mam_prefs").set(user, {
			default: prefs.attr("default") ?? "always",
			always: list("always"),
			never: list("never"),
		});
	}
	const store = storage.archive(host, "mam");
	const own = `${user}@${host}`;
	for (const result of archive.getChildren("result", NS_MAM)) {
		const fwd = result.getChild("forwarded", NS_FORWARD);
		const msg = fwd?.getChild("message");
		if (!fwd || !msg) continue;
		const stampText = fwd.getChild("delay", NS_DELAY)?.attr("stamp");
		const when = stampText ? Date.parse(stampText) : Number.NaN;
		const from = bareFrom(msg.attr("from")).toLowerCase();
		const peer = from === own ? bareFrom(msg.attr("to")) : from;
		const copy = msg.clone();
		if (copy.ns === null) copy.ns = NS_CLIENT;
		const id = result.attr("id");
		try {
			await store.append(user, {
				value: { xml: copy.toString() },
				with: peer.toLowerCase(),
				when: Number.isFinite(when) ? when : Date.now(),
				...(id ? { id } : {}),
			});
		} catch (e) {
			// Imported before: the same id is the same message.
			if ((e as { code?: string }).code !== "conflict") throw e;
		}
	}
}

/** The XEP-0060 §16.4.4 form of a stored node configuration (JSON values as field values). */
function configForm(config: Obj): Element {
	const fields = Object.entries(config).map(([k, v]) => {
		const values = Array.isArray(v)
			? v.map(String)
			: [typeof v === "boolean" ? (v ? "1" : "0") : String(v)];
		return x(
			"field",
			{ var: `pubsub#${k}` },
			values.map((val) => x("value", null, val)),
		);
	});
	return x(
		"x",
		{ xmlns: NS_DATA, type: "submit" },
		x("field", { var: "FORM_TYPE", type: "hidden" }, x("value", null, NS_NODE_CONFIG)),
		fields,
	);
}

async function exportPep(
	storage: StorageBackend,
	host: string,
	user: string,
	el: Element,
	warn: (m: string) => void,
): Promise<void> {
	const stored = await storage.keyval(host, "pep").get(user);
	const nodes = isObj(stored) && isObj(stored.nodes) ? stored.nodes : {};
	if (Object.keys(nodes).length === 0) return;
	const items = new Map<string, Obj[]>();
	for (const [key, value] of await storage.map(host, "pep_items").getAll(user)) {
		const at = key.indexOf(PEP_SEP);
		if (at < 0 || !isObj(value)) continue;
		const node = key.slice(0, at);
		items.set(node, [...(items.get(node) ?? []), value]);
	}
	const owner = x("pubsub", { xmlns: NS_PUBSUB_OWNER });
	const pubsub = x("pubsub", { xmlns: NS_PUBSUB });
	for (const [name, meta] of Object.entries(nodes)) {
		if (!isObj(meta)) continue;
		const { config, ...rest } = meta;
		owner.append(
			x("configure", { node: name }, isObj(config) ? configForm(config) : undefined),
			x("node", { xmlns: NS_PARLEY, node: name }, JSON.stringify(rest)),
		);
		const list = (items.get(name) ?? []).sort((a, b) => Number(a.t) - Number(b.t));
		const itemsEl = x("items", { node: name });
		for (const item of list) {
			try {
				const payload = typeof item.xml === "string" && item.xml ? parseXml(item.xml) : undefined;
				itemsEl.append(
					x(
						"item",
						{ id: String(item.id), publisher: item.publisher ? String(item.publisher) : undefined },
						payload,
					),
				);
			} catch (e) {
				warn(
					`${user}@${host}: PEP item ${name}/${String(item.id)} left out: ${(e as Error).message}`,
				);
			}
		}
		pubsub.append(itemsEl);
	}
	el.append(owner, pubsub);
}

/** Configuration values whose JSON type is not a string (src/modules/pubsub/config.ts). */
const BOOLEAN_CONFIG = new Set([
	"persist_items",
	"deliver_payloads",
	"deliver_notifications",
	"notify_retract",
	"notify_delete",
	"notify_config",
	"notify_sub",
]);

/** A submitted node_config form back into stored configuration; unknown fields are kept as text. */
function configFromForm(form: Element | undefined): Obj {
	const config: Obj = {};
	for (const f of form?.getChildren("field") ?? []) {
		const v = f.attr("var") ?? "";
		if (!v.startsWith("pubsub#")) continue;
		const key = v.slice(7);
		const values = f.getChildren("value").map((e) => e.text());
		const first = values[0] ?? "";
		if (key === "roster_groups_allowed") config[key] = values;
		else if (BOOLEAN_CONFIG.has(key)) config[key] = first === "1" || first === "true";
		else if (key === "max_payload_size") config[key] = Number(first);
		else if (key === "max_items") config[key] = first === "max" ? "max" : Number(first);
		else config[key] = first;
	}
	return config;
}

async function importPep(
	storage: StorageBackend,
	host: string,
	user: string,
	u: Element,
): Promise<void> {
	const owner = u.getChild("pubsub", NS_PUBSUB_OWNER);
	const pubsub = u.getChild("pubsub", NS_PUBSUB);
	if (!owner && !pubsub) return;
	const nodes: Obj = {};
	for (const c of owner?.getChildren("configure") ?? []) {
		const name = c.attr("node");
		if (!name) continue;
		nodes[name] = {
			config: configFromForm(c.getChild("x", NS_DATA)),
			affiliations: {},
			subscriptions: {},
			created: Date.now(),
		};
	}
	for (const n of owner?.getChildren("node", NS_PARLEY) ?? []) {
		const name = n.attr("node");
		const meta = name ? nodes[name] : undefined;
		const rest = JSON.parse(n.text()) as Json;
		if (isObj(meta) && isObj(rest)) Object.assign(meta, rest);
	}
	const map = storage.map(host, "pep_items");
	let t = Date.now();
	for (const itemsEl of pubsub?.getChildren("items") ?? []) {
		const name = itemsEl.attr("node");
		if (!name) continue;
		nodes[name] ??= { config: {}, affiliations: {}, subscriptions: {}, created: Date.now() };
		for (const item of itemsEl.getChildren("item")) {
			const id = item.attr("id");
			if (!id) continue;
			const payload = item.elements()[0];
			await map.set(user, name + PEP_SEP + id, {
				id,
				publisher: item.attr("publisher") ?? `${user}@${host}`,
				t: t++,
				xml: payload ? payload.toString() : "",
			});
		}
	}
	if (Object.keys(nodes).length > 0) await storage.keyval(host, "pep").set(user, { nodes });
}

export interface ImportStats {
	users: number;
	skipped: string[];
}

/**
 * Imports a XEP-0227 document. `hosts`, when given, limits the import to those hosts. Existing
 * accounts are overwritten; offline messages are appended. `iterations` is used for accounts
 * that come with a plaintext password.
 */
export async function importPie(
	storage: StorageBackend,
	xml: string,
	opts: PieOptions & { hosts?: string[]; iterations?: number } = {},
): Promise<ImportStats> {
	const warn = opts.warn ?? (() => {});
	const root = parseXml(xml);
	if (!root.is("server-data", NS_PIE)) throw new Error(`not a XEP-0227 document (${NS_PIE})`);
	const stats: ImportStats = { users: 0, skipped: [] };
	for (const hostEl of root.getChildren("host", NS_PIE)) {
		const host = hostEl.attr("jid");
		if (!host || (opts.hosts && !opts.hosts.includes(host))) continue;
		for (const u of hostEl.getChildren("user", NS_PIE)) {
			const user = u.attr("name");
			if (!user) continue;
			try {
				await importUser(storage, host, user, u, opts.iterations ?? 10_000);
				stats.users++;
			} catch (e) {
				stats.skipped.push(`${user}@${host}`);
				warn(`${user}@${host}: not imported: ${(e as Error).message}`);
			}
		}
	}
	return stats;
}

async function importUser(
	storage: StorageBackend,
	host: string,
	user: string,
	u: Element,
	iterations: number,
): Promise<void> {
	const scram: Obj = {};
	for (const c of u.getChildren("scram-credentials", NS_PIE_SCRAM)) {
		const hash = Object.keys(MECHANISMS).find((h) => MECHANISMS[h] === c.attr("mechanism"));
		if (!hash) continue;
		scram[hash] = {
			salt: c.getChildText("salt") ?? "",
			iterations: Number(c.getChildText("iter-count")),
			storedKey: c.getChildText("stored-key") ?? "",
			serverKey: c.getChildText("server-key") ?? "",
		};
	}
	const password = u.attr("password");
	if (password !== undefined && Object.keys(scram).length === 0) {
		const { deriveAllCredentials } = await import("../auth/scram.ts");
		Object.assign(scram, await deriveAllCredentials(password, iterations));
	}
	const extra = u.getChild("account", NS_PARLEY)?.text();
	const rest = extra ? (JSON.parse(extra) as Json) : {};
	if (Object.keys(scram).length > 0) {
		const record: Obj = isObj(rest) ? { ...rest } : {};
		record.scram = scram;
		record.created ??= Date.now();
		await storage.keyval(host, "accounts").set(user, record);
	}

	const roster = u.getChild("query", NS_ROSTER);
	if (roster) {
		const items: Obj = {};
		for (const it of roster.getChildren("item", NS_ROSTER)) {
			const jid = it.attr("jid");
			if (!jid) continue;
			const item: Obj = {
				groups: it.getChildren("group", NS_ROSTER).map((g) => g.text()),
				subscription: it.attr("subscription") ?? "none",
			};
			const name = it.attr("name");
			if (name !== undefined) item.name = name;
			if (it.attr("ask") === "subscribe") item.ask = true;
			if (it.attr("approved") === "true") item.approved = true;
			items[jid] = item;
		}
		const pending: Obj = {};
		for (const p of roster.getChildren("pending", NS_PARLEY)) {
			const jid = p.attr("jid");
			if (jid) pending[jid] = p.text();
		}
		const ver = Number(roster.attr("ver") ?? 0);
		await storage
			.keyval(host, "roster")
			.set(user, { ver: Number.isFinite(ver) ? ver : 0, items, pending });
	}

	const vcard = u.getChild("vCard", "vcard-temp");
	if (vcard) await storage.keyval(host, "vcard").set(user, vcard.toString());

	const priv = u.getChild("query", NS_PRIVATE);
	if (priv) {
		const map = storage.map(host, "private");
		await Promise.all(
			priv.elements().map((el) => map.set(user, `${el.name} ${el.ns ?? ""}`, el.toString())),
		);
	}

	const box = u.getChild("offline-messages", NS_PIE);
	if (box) {
		const archive = storage.archive(host, "offline");
		const appends = box.getChildren("message").map((msg) => {
			// The delay this server added on export is the stored time, not part of the message.
			const delay = msg
				.getChildren("delay", NS_DELAY)
				.find((d) => d.attr("from") === host && d.attr("stamp"));
			const when = delay ? Date.parse(delay.attr("stamp") as string) : Date.now();
			const copy = msg.clone();
			if (delay) copy.children.splice(msg.children.indexOf(delay), 1);
			return archive.append(user, {
				value: { xml: copy.toString() },
				with: bareFrom(copy.attr("from")),
				when: Number.isFinite(when) ? when : Date.now(),
			});
		});
		await Promise.all(appends);
	}

	await importArchive(storage, host, user, u);
	await importPep(storage, host, user, u);
}

function bareFrom(from: string | undefined): string {
	if (!from) return "";
	const slash = from.indexOf("/");
	return slash < 0 ? from : from.slice(0, slash);
}
