/**
 * What a module is: one file exporting `defineModule({...})`. Importing it has no side effects;
 * everything happens in `load(api)`, and everything `load` registers through `api` is undone
 * automatically on unload (Prosody's bookkeeping in core/moduleapi.lua).
 */
import type { z } from "zod";
import type { ArchiveStore, Json, KeyValStore, MapStore } from "../../storage/types.ts";
import type { Element } from "../../xml/element.ts";
import type { DiscoIdentity, Host, Session } from "../contracts.ts";
import type { Handler } from "../events.ts";
import type { Logger } from "../log.ts";

export interface ModuleApi<O = Record<string, unknown>> {
	readonly name: string;
	readonly host: Host;
	/** The module's options from `[hosts."x".module_options.<name>]`, validated by its schema. */
	readonly options: O;
	readonly log: Logger;
	/** Hook an event on this host's bus. Removed on unload. */
	hook<T>(event: string, handler: Handler<T>, priority?: number): void;
	/** Advertise a feature on the host's disco#info (XEP-0030). */
	addFeature(ns: string): void;
	/** Advertise a feature on every account's bare JID (e.g. PEP, XEP-0163 §4). */
	addAccountFeature(ns: string): void;
	addIdentity(identity: DiscoIdentity): void;
	/** An identity of every account's bare JID (XEP-0163 §1: pubsub/pep). */
	addAccountIdentity(identity: DiscoIdentity): void;
	/** A XEP-0128 data form on the host's disco#info. */
	addExtension(form: Element): void;
	keyval<T extends Json = Json>(store: string): KeyValStore<T>;
	map<T extends Json = Json>(store: string): MapStore<T>;
	archive<T extends Json = Json>(store: string): ArchiveStore<T>;
	/** Route a stanza that carries `from` and `to` as the server. */
	send(stanza: Element): Promise<void>;
	/**
	 * Answers a stanza's sender (an IQ result, an error): straight to `origin` when the answer is
	 * addressed to that session, otherwise through the router, so a sender on another server
	 * (RFC 6120 §10.4) or another node gets it too.
	 */
	reply(origin: Session | null, stanza: Element): void;
	/** A repeating timer, cleared on unload. */
	every(ms: number, fn: () => void): void;
	/** Anything else to undo on unload. */
	onUnload(fn: () => void | Promise<void>): void;
}

export interface ModuleDefinition<O = Record<string, unknown>> {
	name: string;
	description: string;
	/** Validates and fills defaults for the module's options. */
	options?: z.ZodType<O>;
	load(api: ModuleApi<O>): void | Promise<void>;
}

export function defineModule<O = Record<string, unknown>>(
	def: ModuleDefinition<O>,
): ModuleDefinition<O> {
	return def;
}
