/**
 * A logged-in raw client with a parsed view of what it receives, for protocol tests that look
 * at exact stanzas (PEP, PubSub): IQ round trips, roster set-up and XEP-0115 caps answers.
 */
import type { Server } from "../../src/core/server.ts";
import { capsVer } from "../../src/modules/caps.ts";
import type { Json } from "../../src/storage/types.ts";
import { type Element, x } from "../../src/xml/element.ts";
import type { RawClient } from "./raw.ts";
import { StanzaReader } from "./stanza-reader.ts";
import { login } from "./xmpp-raw-login.ts";

export interface User {
	c: RawClient;
	r: StanzaReader;
	/** Full JID. */
	jid: string;
	bare: string;
}

let seq = 0;
export const nextId = (): string => `u${++seq}`;

/** Logs in `user@localhost/resource` with the password `<user>-pw` unless given. */
export async function connectUser(
	port: number,
	user: string,
	resource = "r",
	password = `${user}-pw`,
): Promise<User> {
	const c = await login(port, user, password, { resource, mechanism: "PLAIN" });
	return {
		c,
		r: new StanzaReader(c),
		jid: `${user}@localhost/${resource}`,
		bare: `${user}@localhost`,
	};
}

/** Sends an IQ (no `to` when `to` is empty) and waits for its answer. */
export async function iq(u: User, type: "get" | "set", to: string, body: string): Promise<Element> {
	const id = nextId();
	const mark = u.r.mark();
	const toAttr = to ? ` to='${to}'` : "";
	u.c.send(`<iq type='${type}' id='${id}'${toAttr}>${body}</iq>`);
	return u.r.wait(
		(el) => el.is("iq") && el.attrs.id === id && el.attrs.type !== "get" && el.attrs.type !== "set",
		mark,
		`answer to iq ${id}`,
	);
}

/** The stanza error condition of an answer, and its application-specific condition. */
export function errorOf(el: Element): { condition?: string; app?: string } {
	const error = el.getChild("error");
	return {
		condition: error?.getChildByNs("urn:ietf:params:xml:ns:xmpp-stanzas")?.name,
		app: error?.elements().find((e) => e.ns !== "urn:ietf:params:xml:ns:xmpp-stanzas")?.name,
	};
}

/** Mutual presence subscriptions (RFC 6121 §3.1 "both"), written straight into the roster store. */
export async function befriend(
	server: Server,
	a: string,
	b: string,
	groups: string[] = [],
): Promise<void> {
	for (const [user, contact] of [
		[a, b],
		[b, a],
	] as const) {
		const [local, domain] = user.split("@") as [string, string];
		const store = server.hosts.get(domain)?.keyval("roster");
		if (!store) throw new Error(`no host ${domain}`);
		const roster = ((await store.get(local)) ?? { ver: 0, items: {}, pending: {} }) as {
			ver: number;
			items: Record<string, Json>;
			pending: Record<string, string>;
		};
		roster.ver++;
		roster.items[contact] = { groups, subscription: "both" };
		await store.set(local, roster);
	}
}

/** A XEP-0030 disco#info of a client that wants notifications for `notify` (XEP-0163 §4.2). */
export function clientInfo(notify: string[], node?: string): Element {
	return x(
		"query",
		{ xmlns: "http://jabber.org/protocol/disco#info", node },
		x("identity", { category: "client", type: "pc", name: "test" }),
		["http://jabber.org/protocol/disco#info", ...notify.flatMap((n) => [n, `${n}+notify`])].map(
			(v) => x("feature", { var: v }),
		),
	);
}

/**
 * Sends available presence with XEP-0115 caps for `notify` and answers the server's caps
 * query. The features include one of this call's own, so the hash is new to the server and
 * it asks (a hash it knows is not asked again); `answer: false` leaves the query unanswered.
 * Returns the mark before the presence.
 */
export async function availableWithCaps(
	u: User,
	notify: string[],
	opts: { answer?: boolean } = {},
): Promise<number> {
	const node = "urn:parley:test";
	notify = [...notify, `urn:parley:test:${nextId()}`];
	const ver = capsVer(clientInfo(notify));
	const mark = u.r.mark();
	u.c.send(
		`<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='${node}' ver='${ver}'/></presence>`,
	);
	if (opts.answer === false) return mark;
	const query = await u.r.wait(
		(el) =>
			el.is("iq") &&
			el.attrs.type === "get" &&
			el.getChild("query", "http://jabber.org/protocol/disco#info")?.attrs.node ===
				`${node}#${ver}`,
		mark,
		"caps query",
	);
	const answer = x(
		"iq",
		{ type: "result", id: query.attrs.id, to: query.attrs.from },
		clientInfo(notify, `${node}#${ver}`),
	);
	u.c.send(answer.toString());
	return mark;
}
