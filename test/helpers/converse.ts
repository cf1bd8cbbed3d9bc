/**
 * What the Converse.js browser tests share (test/e2e/browser.test.ts, browser-omemo.test.ts): the
 * static site that serves test/browser/ and Converse's own dist build, Debian's headless Chromium,
 * and the guard that keeps the page off the network.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import http from "node:http";
import { extname, join, normalize, sep } from "node:path";
import { type Browser, type BrowserContext, chromium } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/** A test's `skip` option: a reason when Chromium is missing. */
export const skipWithoutChromium: string | false = existsSync(CHROMIUM)
	? false
	: `${CHROMIUM} not found: install Debian's chromium (apt-get install chromium; .ci/run does)`;

const PAGE_DIR = join(import.meta.dirname, "../browser");
export const DIST_DIR = join(import.meta.dirname, "../../node_modules/converse.js/dist");

const TYPES: Record<string, string> = {
	".html": "text/html; charset=utf-8",
	".js": "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	".json": "application/json",
	".map": "application/json",
	".wasm": "application/wasm",
	".ttf": "font/ttf",
	".woff": "font/woff",
	".woff2": "font/woff2",
	".svg": "image/svg+xml",
	".png": "image/png",
	".ico": "image/x-icon",
	".mp3": "audio/mpeg",
	".ogg": "audio/ogg",
};

/** A file under `dir`, or null (never outside it). */
function fileUnder(dir: string, rel: string): string | null {
	const p = normalize(join(dir, rel));
	if (!p.startsWith(dir + sep)) return null;
	try {
		return statSync(p).isFile() ? p : null;
	} catch {
		return null;
	}
}

/**
 * The static site: the page, its harness script, and Converse's dist directory at /dist. `extra`
 * maps further paths to files of the dist directory (for what a plugin fetches by a path of its
 * own). Every request it cannot answer is pushed onto `missing`.
 */
export function startStaticServer(
	missing: string[],
	extra: Record<string, string> = {},
): Promise<http.Server> {
	const srv = http.createServer((req, res) => {
		const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
		let file: string | null = null;
		if (path === "/") file = join(PAGE_DIR, "index.html");
		else if (path === "/harness.js") file = join(PAGE_DIR, "harness.js");
		else if (path.startsWith("/dist/")) file = fileUnder(DIST_DIR, path.slice("/dist/".length));
		else if (Object.hasOwn(extra, path)) file = fileUnder(DIST_DIR, extra[path] as string);
		if (req.method !== "GET" || file === null) {
			missing.push(`${req.method} ${path}`);
			res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
			return;
		}
		res.writeHead(200, {
			"content-type": TYPES[extname(file)] ?? "application/octet-stream",
			"cache-control": "no-store",
		});
		res.end(readFileSync(file));
	});
	return new Promise((resolve) => srv.listen(0, "127.0.0.1", () => resolve(srv)));
}

/** Debian's Chromium, headless; playwright-core gives every launch a fresh --user-data-dir. */
export function launchChromium(timeout: number): Promise<Browser> {
	return chromium.launch({
		executablePath: CHROMIUM,
		headless: true,
		args: [
			"--headless",
			"--no-sandbox",
			"--disable-gpu",
			"--disable-quic",
			"--no-first-run",
			"--disable-background-networking",
			"--disable-component-update",
			"--disable-sync",
		],
		timeout,
	});
}

/**
 * No network: anything not on loopback is refused and remembered in `external`. The one
 * exception is images (kept apart in `images`): Converse's fullscreen login page shows its
 * sponsors' logos from conversejs.org (src/shared/components/footer.js, no setting turns them off).
 */
export async function refuseNetwork(
	context: BrowserContext,
): Promise<{ external: string[]; images: string[] }> {
	const external: string[] = [];
	const images: string[] = [];
	await context.route(
		(url) => url.hostname !== "127.0.0.1",
		(route) => {
			const r = route.request();
			(r.resourceType() === "image" ? images : external).push(r.url());
			return route.abort();
		},
	);
	return { external, images };
}
