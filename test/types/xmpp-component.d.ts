// @xmpp/component ships no type declarations either; this is the part the tests use.
declare module "@xmpp/component" {
	import type { EventEmitter } from "node:events";
	import type { JIDLike, XmlElement } from "@xmpp/client";

	export interface Component extends EventEmitter {
		jid: JIDLike | null;
		status: string;
		start(): Promise<JIDLike>;
		stop(): Promise<void>;
		send(...el: XmlElement[]): Promise<void>;
		iqCallee: {
			get(
				ns: string,
				name: string,
				handler: (ctx: { stanza: XmlElement }) => XmlElement | Promise<XmlElement>,
			): void;
		};
		reconnect: { stop(): void };
	}

	export function component(options: {
		service: string;
		domain: string;
		password: string;
	}): Component;

	export function xml(
		name: string,
		attrs?: Record<string, string | undefined> | null,
		...children: (XmlElement | string)[]
	): XmlElement;
}
