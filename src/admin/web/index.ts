/**
 * The web admin page (issue 15, "a web admin page served by Parley"): plain HTML, one ES module
 * and one style sheet, written by hand (no framework, no build step, no CDN), served at `GET /`
 * and `GET /ui/*` on the admin listener. The routes belong to no route group, so every state
 * serves them (states.ts): the page is how an operator sees a server that does not run. The
 * page itself only calls the admin API (same origin); a strict Content-Security-Policy
 * (`default-src 'self'`, no inline script or style) keeps it that way.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { FastifyInstance, FastifyReply } from "fastify";

/** The page's files, by the name under /ui/, with their media types. */
const FILES: Record<string, string> = {
	"index.html": "text/html; charset=utf-8",
	"app.js": "text/javascript; charset=utf-8",
	"style.css": "text/css; charset=utf-8",
};

/** The policy on every answer of the page: its own files and the API on the same origin only. */
export const WEB_CSP =
	"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Adds the page's routes to the admin API's Fastify instance. */
export function registerWebAdmin(app: FastifyInstance): void {
	const dir = import.meta.dirname;
	// Read once: the files are part of the program, like its source.
	const content = new Map(Object.keys(FILES).map((name) => [name, readFileSync(join(dir, name))]));
	const send = (reply: FastifyReply, name: string) => {
		const body = content.get(name);
		if (!body) return reply.code(404).send({ code: "not_found", message: `no file /ui/${name}` });
		return reply
			.header("content-type", FILES[name])
			.header("content-security-policy", WEB_CSP)
			.header("x-content-type-options", "nosniff")
			.header("referrer-policy", "no-referrer")
			.header("cache-control", "no-cache")
			.send(body);
	};
	app.get("/", async (_req, reply) => send(reply, "index.html"));
	app.get("/ui", async (_req, reply) => reply.redirect("/ui/", 301));
	app.get("/ui/", async (_req, reply) => send(reply, "index.html"));
	app.get<{ Params: { file: string } }>("/ui/:file", async (req, reply) =>
		send(reply, req.params.file),
	);
}
