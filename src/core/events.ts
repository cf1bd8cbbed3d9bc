/**
 * Named events with numeric priorities (Prosody's model, DESIGN.md "Events and hooks").
 *
 * Handlers run highest priority first; equal priorities run in registration order (Prosody
 * leaves that undefined; a stable order makes module behaviour reproducible). A handler that
 * returns `true` (HANDLED) claims the event and stops the chain. Handlers may be async; the
 * chain awaits each one in turn, so a later handler never sees an event an earlier one is
 * still working on.
 */
export const HANDLED = true;

export type Handler<T> = (data: T) => unknown;

/** Named priority bands (docs/architecture.md). */
export const Priority = {
	SECURITY: 1000,
	POLICY: 500,
	BLOCK: 100,
	TRANSFORM: 10,
	DEFAULT: 0,
	LATE: -1,
} as const;

interface Entry {
	handler: Handler<never>;
	priority: number;
	seq: number;
}

export class EventBus {
	#handlers = new Map<string, Entry[]>();
	#seq = 0;

	/** Returns a function that removes the handler. */
	on<T>(event: string, handler: Handler<T>, priority: number = Priority.DEFAULT): () => void {
		const entry: Entry = { handler: handler as Handler<never>, priority, seq: this.#seq++ };
		const list = [...(this.#handlers.get(event) ?? []), entry];
		list.sort((a, b) => b.priority - a.priority || a.seq - b.seq);
		// A new array each time: a chain being fired keeps iterating over the list it started with.
		this.#handlers.set(event, list);
		return () => {
			const cur = this.#handlers.get(event);
			if (!cur) return;
			const next = cur.filter((e) => e !== entry);
			if (next.length) this.#handlers.set(event, next);
			else this.#handlers.delete(event);
		};
	}

	has(event: string): boolean {
		return this.#handlers.has(event);
	}

	/** How many handlers are registered, all events together (a module's unload must undo its own). */
	get size(): number {
		let n = 0;
		for (const list of this.#handlers.values()) n += list.length;
		return n;
	}

	/**
	 * Runs the chain. Resolves to true when a handler claimed the event. A handler that throws
	 * rejects the whole fire; the caller (the router) turns that into a stanza error.
	 */
	async fire<T>(event: string, data: T): Promise<boolean> {
		const list = this.#handlers.get(event);
		if (!list) return false;
		for (const e of list) {
			let r = (e.handler as Handler<T>)(data);
			if (r instanceof Promise) r = await r;
			if (r === true) return true;
		}
		return false;
	}
}
