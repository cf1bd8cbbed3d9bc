/**
 * Memory back after a storm (issue 21). V8 collects garbage when JavaScript allocates, so a
 * server that goes quiet after thousands of connections ended (a login storm, a hostile burst)
 * keeps their garbage, and the heap grown for it, for as long as it stays quiet: measured
 * +115 to +155 MiB RSS after 6,000 hostile connections (docs/architecture.md, "Memory per
 * connection, and after hostile input"). So when many streams have ended since the last look
 * and few new ones came, the server asks V8 for one full collection, which also gives the
 * freed heap pages back to the system.
 *
 * A collection of a large heap pauses the process (tens to a few hundred ms); it only runs
 * after at least `minEnded` streams ended while at most `maxOpenedWhileQuiet` opened in the
 * last interval, so a server with steady traffic never sees it.
 *
 * This brings back V8's heap only; what glibc's malloc keeps of the storm is why `parley serve`
 * runs with jemalloc where it is installed (src/cli/allocator.ts).
 *
 * Node offers `gc()` only with `--expose-gc`; the flag is set at run time and the function
 * read from a fresh context (the documented way for `v8.setFlagsFromString`). It runs at most
 * once per `intervalMs`, only when the server is quiet, so it never costs a busy server.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

export interface QuietGcOptions {
	/** How often to look (ms). */
	intervalMs: number;
	/** Streams ended since the last collection that make one worth it. */
	minEnded: number;
	/** At most this many streams opened during the last interval: the server is quiet. */
	maxOpenedWhileQuiet: number;
}

/** V8's `gc()` as `--expose-gc` gives it, with the options its GC extension reads. */
type GcFunction = (opts?: { type: "major"; execution: "sync"; flavor: "last-resort" }) => void;

let collect: GcFunction | null | undefined;

/** The process's `gc()`, made available once (a process-wide facility, not server state). */
function collector(): GcFunction | null {
	if (collect !== undefined) return collect;
	try {
		setFlagsFromString("--expose-gc");
		collect = runInNewContext("gc") as GcFunction;
	} catch {
		collect = null;
	}
	return collect;
}

/** Counts streams opened and ended, and collects once a storm is over. */
export class QuietGc {
	readonly #opts: QuietGcOptions;
	#timer: NodeJS.Timeout | null = null;
	#ended = 0;
	#opened = 0;
	/** Collections run so far (for tests and the logs). */
	runs = 0;

	constructor(opts: QuietGcOptions) {
		this.#opts = opts;
	}

	start(): void {
		this.#timer = setInterval(() => this.check(), this.#opts.intervalMs);
		this.#timer.unref();
	}

	stop(): void {
		if (this.#timer) clearInterval(this.#timer);
		this.#timer = null;
	}

	opened(): void {
		this.#opened++;
	}

	ended(): void {
		this.#ended++;
	}

	/** One look (the timer's; public for tests): collects if a storm is over. */
	check(): void {
		const quiet = this.#opened <= this.#opts.maxOpenedWhileQuiet;
		this.#opened = 0;
		if (!quiet || this.#ended < this.#opts.minEnded) return;
		const gc = collector();
		if (!gc) return;
		this.#ended = 0;
		this.runs++;
		// "last-resort" is V8's collection of all available garbage (what a low-memory
		// notification runs): it also compacts and gives the emptied pages back, where a plain
		// `gc()` leaves the grown heap mapped (measured: 512 MiB RSS left of 522 after 200k
		// objects ×30 with a plain gc(), 69 MiB with this).
		gc({ type: "major", execution: "sync", flavor: "last-resort" });
	}
}
