/**
 * Parsed stanzas for raw-socket tests: everything a RawClient receives after login is parsed
 * (with the server's own streaming parser) into Elements, so a test can look for "the presence
 * from room@service/nick with status 110" instead of matching text.
 */
import type { Element } from "../../src/xml/element.ts";
import { StreamParser } from "../../src/xml/parser.ts";
import type { RawClient } from "./raw.ts";

export class StanzaReader {
	readonly c: RawClient;
	readonly stanzas: Element[] = [];
	#fed: number;
	readonly #parser: StreamParser;

	constructor(c: RawClient) {
		this.c = c;
		this.#fed = c.received.length;
		this.#parser = new StreamParser(
			{
				streamStart() {},
				stanza: (el) => this.stanzas.push(el),
				streamEnd() {},
				error(condition, text) {
					throw new Error(`unparsable server output: ${condition} ${text}`);
				},
			},
			{ maxStanzaBytes: 1 << 20, maxDepth: 64 },
		);
		this.#parser.write(
			"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
		);
	}

	#pump(): void {
		const s = this.c.received.slice(this.#fed);
		this.#fed = this.c.received.length;
		if (s) this.#parser.write(s);
	}

	/** The number of stanzas received so far: pass it to `wait` to look only at later ones. */
	mark(): number {
		this.#pump();
		return this.stanzas.length;
	}

	/** Stanzas received since `from`. */
	since(from: number): Element[] {
		this.#pump();
		return this.stanzas.slice(from);
	}

	/**
	 * Waits for the first stanza after `from` that `pred` accepts. The time limit is a safety
	 * net for a hung test, not a timing assertion.
	 */
	async wait(pred: (el: Element) => boolean, from: number, what: string): Promise<Element> {
		for (;;) {
			this.#pump();
			for (let i = from; i < this.stanzas.length; i++) {
				const el = this.stanzas[i] as Element;
				if (pred(el)) return el;
			}
			try {
				await this.c.waitFor(/[\s\S]/, this.c.received.length);
			} catch (err) {
				const got = this.stanzas
					.slice(from)
					.map((s) => s.toString())
					.join("\n");
				throw new Error(
					`no ${what}; received since mark:\n${got}\n(${(err as Error).message.slice(0, 80)})`,
				);
			}
		}
	}
}
