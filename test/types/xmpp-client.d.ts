// @xmpp/client ships no type declarations (xmpp.js issue #542); this is the part the tests use.
declare module "@xmpp/client" {
	import type { EventEmitter } from "node:events";

	export interface XmlElement {
		name: string;
		attrs: Record<string, string>;
		children: (XmlElement | string)[];
		is(name: string, xmlns?: string): boolean;
		getChild(name: string, xmlns?: string): XmlElement | undefined;
		getChildren(name: string, xmlns?: string): XmlElement[];
		getChildText(name: string, xmlns?: string): string | null;
		getText(): string;
		toString(): string;
	}

	export interface JIDLike {
		toString(): string;
		bare(): JIDLike;
		local: string;
		domain: string;
		resource: string;
	}

	export interface Client extends EventEmitter {
		jid: JIDLike | null;
		status: string;
		start(): Promise<JIDLike>;
		stop(): Promise<void>;
		send(...el: XmlElement[]): Promise<void>;
		iqCaller: {
			request(el: XmlElement, timeout?: number): Promise<XmlElement>;
			get(el: XmlElement, to?: string, timeout?: number): Promise<XmlElement>;
			set(el: XmlElement, to?: string, timeout?: number): Promise<XmlElement>;
		};
		reconnect: { stop(): void };
	}

	export type Authenticate = (
		credentials: { username: string; password: string },
		mechanism: string,
		userAgent?: unknown,
	) => Promise<void>;

	export function client(options: {
		service: string;
		domain?: string;
		username?: string;
		password?: string;
		resource?: string;
		credentials?: (authenticate: Authenticate, mechanisms: string[]) => Promise<void>;
	}): Client;

	export function xml(
		name: string,
		attrs?: Record<string, string | undefined> | null,
		...children: (XmlElement | string)[]
	): XmlElement;
}
