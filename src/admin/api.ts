/**
 * The admin API (issue 15): JSON over HTTP on `[listeners.admin]` (HTTPS with the hosts'
 * certificates when the address is not loopback), built on Fastify like the HTTP listener.
 *
 * Every route belongs to a group (states.ts); a route the Supervisor's state does not serve
 * answers 503 with `Retry-After` and the state's name as the code, whatever else is wrong with
 * the request. Then: unknown route 404, malformed JSON 400, no or bad token 401, not an admin
 * 403, lifecycle conflict 409. Every error is `{code, message}`; the codes are stable (the
 * table is in docs/architecture.md "Admin API"). Every request but the three always-served
 * reads is written to the audit log (audit.ts).
 *
 * Command routes are generated from the registry (`AdminCommand.http`), their arguments taken
 * from the path, the query and the JSON body and validated by the command's zod schema.
 */
import { createReadStream } from "node:fs";
import http from "node:http";
import https from "node:https";
import { basename } from "node:path";
import fastifyRateLimit from "@fastify/rate-limit";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { z } from "zod";
import { type AnyAdminCommand, CommandError, type CommandErrorCode } from "../core/commands.ts";
import { ConfigError } from "../core/config/load.ts";
import type { Server } from "../core/server.ts";
import { checkPassword, createFirstAdmin, isAdmin } from "./accounts.ts";
import { coerceTextArgs } from "./args.ts";
import { Audit } from "./audit.ts";
import { openApiDocument } from "./openapi.ts";
import { type RouteGroup, STATE_SPECS, serves } from "./states.ts";
import { configProblems, LifecycleConflict, StateRefusal, type Supervisor } from "./supervisor.ts";
import { CLI_ACTOR, TokenStore } from "./tokens.ts";
import { registerWebAdmin } from "./web/index.ts";

export interface AdminApiOptions {
	address: string;
	port: number;
	commands: readonly AnyAdminCommand[];
}

/** The status each command error code gets, on every surface that speaks HTTP. */
export const HTTP_STATUS: { readonly [C in CommandErrorCode]: number } = {
	invalid_argument: 400,
	not_found: 404,
	conflict: 409,
	forbidden: 403,
	unavailable: 503,
	internal: 500,
};

/** An error answer: `{code, message}` and the status, plus fields for some codes. */
class ApiError extends Error {
	readonly status: number;
	readonly code: string;
	readonly extra: Record<string, unknown>;
	constructor(status: number, code: string, message: string, extra: Record<string, unknown> = {}) {
		super(message);
		this.status = status;
		this.code = code;
		this.extra = extra;
	}
}

/** Loopback addresses: the only ones the admin API serves plain HTTP on. */
export function isLoopback(address: string): boolean {
	return (
		address === "localhost" ||
		address === "::1" ||
		/^127\./.test(address) ||
		/^::ffff:127\./.test(address)
	);
}

declare module "fastify" {
	interface FastifyContextConfig {
		/** The route's group (states.ts): which states serve it. */
		group?: RouteGroup;
		/** The action name the audit log gives it; none: not audited. */
		action?: string;
	}
	interface FastifyRequest {
		/** Who made the request, once known (a JID, `cli`, or `anonymous`). */
		actor?: string;
	}
}

export class AdminApi {
	readonly #supervisor: Supervisor;
	readonly #opts: AdminApiOptions;
	readonly audit: Audit;
	#app: FastifyInstance | null = null;
	/** `PUT /init/first-account` one at a time: two at once must not both make an admin. */
	#firstAccount: Promise<unknown> = Promise.resolve();

	constructor(supervisor: Supervisor, opts: AdminApiOptions) {
		this.#supervisor = supervisor;
		this.#opts = opts;
		this.audit = new Audit(supervisor.log);
	}

	/** The bound port (useful when configured as 0). */
	get port(): number {
		const a = this.#app?.server.address();
		return a && typeof a === "object" ? a.port : this.#opts.port;
	}

	get tls(): boolean {
		return !isLoopback(this.#opts.address);
	}

	async listen(): Promise<void> {
		const supervisor = this.#supervisor;
		const tls = this.tls;
		let tlsOptions: https.ServerOptions | null = null;
		if (tls) {
			const server = supervisor.server;
			if (server?.state !== "running")
				throw new Error(
					"listeners.admin: an address other than loopback needs TLS, and no certificate is loaded (the XMPP server did not start)",
				);
			const first = server.certificates.serverOptions();
			tlsOptions = {
				...first,
				// New handshakes use the certificates of the server in force (reloads, restarts).
				SNICallback: (name, cb) => {
					const current = supervisor.server;
					const sni = current?.state === "running" ? current.certificates.serverOptions() : first;
					if (sni.SNICallback) sni.SNICallback(name, cb);
					else cb(null, undefined);
				},
			};
		}
		const app = Fastify({
			serverFactory: (handler) =>
				(tlsOptions
					? https.createServer(tlsOptions, handler)
					: http.createServer(handler)) as http.Server,
			bodyLimit: 1024 * 1024,
			// The admin log is the audit log; Fastify's own request log would repeat it.
			logger: false,
			return503OnClosing: true,
		});
		this.#app = app;
		await app.register(fastifyRateLimit, { global: false });
		app.setNotFoundHandler((req, reply) => {
			reply
				.code(404)
				.send({ code: "not_found", message: `no route ${req.method} ${req.url.split("?")[0]}` });
		});
		app.setErrorHandler((err: unknown, req, reply) => this.#error(err, req, reply));
		// The state's gate comes first: a route the state does not serve is 503 whatever the rest.
		app.addHook("onRequest", async (req, reply) => {
			const group = req.routeOptions.config.group;
			if (group === undefined) return;
			const state = supervisor.state;
			if (!serves(state, group)) {
				reply.header("Retry-After", String(STATE_SPECS[state].retryAfter));
				throw new ApiError(503, state, `the server is ${state.replaceAll("_", " ")}`);
			}
		});
		app.addHook("onResponse", async (req, reply) => {
			const action = req.routeOptions.config.action;
			// Refusals too (401, 403, 409, 503): who tried what is the point of an audit log.
			if (action === undefined) return;
			this.audit.action({
				actor: req.actor ?? "anonymous",
				action,
				target: (req.params as Record<string, string> | undefined)?.jid,
				status: reply.statusCode,
				address: req.ip,
			});
		});
		this.#routes(app);
		registerWebAdmin(app);
		await app.listen({ host: this.#opts.address, port: this.#opts.port });
		supervisor.log.info(
			{ listener: "admin", address: this.#opts.address, port: this.port },
			"listening",
		);
	}

	async close(): Promise<void> {
		await this.#app?.close();
		this.#app = null;
	}

	// -- routes ----------------------------------------------------------------------------------

	#routes(app: FastifyInstance): void {
		const supervisor = this.#supervisor;
		app.get("/health", { config: { group: "always" } }, async (_req, reply) => {
			const state = supervisor.state;
			const serving = STATE_SPECS[state].serving;
			if (!serving) reply.code(503).header("Retry-After", String(STATE_SPECS[state].retryAfter));
			return serving
				? { serving, state }
				: { serving, state, code: state, message: `XMPP is not serving: ${state}` };
		});
		app.get("/status", { config: { group: "always" } }, async () => supervisor.status());
		app.get("/openapi.json", { config: { group: "always" } }, async () =>
			openApiDocument(this.#opts.commands),
		);

		app.post(
			"/lifecycle/reload",
			{ config: { group: "reload", action: "lifecycle.reload" } },
			async (req) => {
				await this.#authenticateLifecycle(req);
				try {
					const report = await supervisor.reload();
					return { state: supervisor.state, ...report };
				} catch (err) {
					if (err instanceof ConfigError)
						throw new ApiError(422, "config_invalid", "the configuration does not validate", {
							state: supervisor.state,
							errors: configProblems(err),
						});
					if (err instanceof LifecycleConflict || err instanceof StateRefusal) throw err;
					throw new ApiError(500, "reload_failed", (err as Error).message, {
						state: supervisor.state,
					});
				}
			},
		);
		app.post(
			"/lifecycle/restart",
			{ config: { group: "restart", action: "lifecycle.restart" } },
			async (req) => {
				await this.#authenticateLifecycle(req);
				try {
					await supervisor.restart();
				} catch (err) {
					if (err instanceof LifecycleConflict || err instanceof StateRefusal) throw err;
					throw new ApiError(500, "restart_failed", (err as Error).message, {
						state: supervisor.state,
					});
				}
				return { state: supervisor.state };
			},
		);

		app.put(
			"/init/first-account",
			{ config: { group: "init", action: "init.first-account" } },
			async (req, reply) => {
				const body = z
					.object({ jid: z.string().min(3), password: z.string().min(1).max(1024) })
					.safeParse(req.body);
				if (!body.success) throw invalid(body.error);
				req.actor = body.data.jid;
				const run = this.#firstAccount.then(() =>
					createFirstAdmin(this.#server(), body.data.jid, body.data.password),
				);
				this.#firstAccount = run.catch(() => undefined);
				const jid = await run;
				reply.code(201);
				return { jid, role: "admin" };
			},
		);

		app.post(
			"/auth/tokens",
			{
				config: {
					group: "auth",
					action: "auth.token.issue",
					rateLimit: {
						max: () => this.#supervisor.server?.config.admin.token_requests_per_minute ?? 10,
						timeWindow: 60_000,
					},
				},
			},
			async (req, reply) => {
				const body = z
					.object({ jid: z.string().min(3), password: z.string().min(1).max(1024) })
					.safeParse(req.body);
				if (!body.success) throw invalid(body.error);
				const server = this.#server();
				req.actor = body.data.jid;
				// One answer for an unknown account and a wrong password (no account enumeration).
				if (!(await checkPassword(server, body.data.jid, body.data.password)))
					throw new ApiError(401, "unauthorized", "wrong JID or password");
				if (!(await isAdmin(server, body.data.jid)))
					throw new ApiError(403, "forbidden", `${body.data.jid} is not an admin`);
				const issued = await new TokenStore(server.storage).issue(
					body.data.jid.toLowerCase(),
					server.config.admin.token_lifetime,
				);
				reply.code(201);
				return issued;
			},
		);
		app.get(
			"/auth/tokens",
			{ config: { group: "auth", action: "auth.token.list" } },
			async (req) => {
				await this.#authenticate(req);
				return { tokens: await new TokenStore(this.#server().storage).list() };
			},
		);
		app.delete<{ Params: { id: string } }>(
			"/auth/tokens/:id",
			{ config: { group: "auth", action: "auth.token.revoke" } },
			async (req, reply) => {
				const me = await this.#authenticate(req);
				const id = req.params.id === "current" ? me.id : req.params.id;
				if (!(await new TokenStore(this.#server().storage).revoke(id)))
					throw new ApiError(404, "not_found", `no token ${id}`);
				reply.code(204);
			},
		);

		// Prometheus / OpenMetrics text of the running server (src/core/metrics.ts). A scraper
		// on the same machine needs no token; from elsewhere it sends an admin's (Prometheus'
		// `authorization` setting).
		app.get("/metrics", { config: { group: "read" } }, async (req, reply) => {
			if (!isLoopback(req.socket.remoteAddress ?? "")) await this.#authenticate(req);
			const { contentType, body } = await this.#server().metricsText();
			reply.header("Content-Type", contentType);
			return body;
		});

		// A backup's archive, streamed (it may be large): what `backup.get` describes.
		const describe = this.#opts.commands.find((c) => c.name === "backup.get");
		if (describe)
			app.get<{ Params: { id: string } }>(
				"/backups/:id/download",
				{ config: { group: "read", action: "backup.download" } },
				async (req, reply) => {
					const me = await this.#authenticate(req);
					const args = describe.args.safeParse({ id: req.params.id });
					if (!args.success) throw invalid(args.error);
					const info = (await describe.run({ core: this.#server(), actor: me.jid }, args.data)) as {
						archive: { file: string; bytes: number; sha256: string };
					};
					reply
						.header("Content-Type", "application/gzip")
						.header("Content-Length", String(info.archive.bytes))
						.header("Content-Disposition", `attachment; filename="${basename(info.archive.file)}"`)
						// RFC 9530: the checksum the backup was made with, to check the download.
						.header(
							"Repr-Digest",
							`sha-256=:${Buffer.from(info.archive.sha256, "hex").toString("base64")}:`,
						);
					return reply.send(createReadStream(info.archive.file));
				},
			);

		for (const command of this.#opts.commands) this.#commandRoute(app, command);
	}

	#commandRoute(app: FastifyInstance, command: AnyAdminCommand): void {
		const binding = command.http;
		app.route({
			method: binding.method,
			url: binding.path,
			config: { group: binding.method === "GET" ? "read" : "write", action: command.name },
			handler: async (req: FastifyRequest, reply: FastifyReply) => {
				const me = await this.#authenticate(req);
				const body = req.body;
				if (
					body !== undefined &&
					body !== null &&
					(typeof body !== "object" || Array.isArray(body))
				)
					throw new ApiError(400, "invalid_argument", "the body must be a JSON object");
				// The path and the query are text; the body is JSON and keeps its types.
				const input = {
					...coerceTextArgs(command, req.query as Record<string, unknown>),
					...(body as object | undefined),
					...coerceTextArgs(command, req.params as Record<string, unknown>),
				};
				const args = command.args.safeParse(input);
				if (!args.success) throw invalid(args.error);
				const ctx = { core: this.#server(), actor: me.jid };
				if (wantsEvents(req)) {
					await this.#streamProgress(reply, () => command.run(ctx, args.data));
					return reply;
				}
				const result = await command.run(ctx, args.data);
				const status = binding.status ?? 200;
				reply.code(status);
				// RFC 9110 §15.3.5, §15.3.6: 204 and 205 carry no content.
				return status === 204 || status === 205 ? undefined : (result ?? {});
			},
		});
	}

	/**
	 * A command asked for with `Accept: text/event-stream` (a backup, a restore): Server-Sent
	 * Events, one `progress` event per step the operation reports (`{phase, bytes}`), then one
	 * `result` event with what the command returns, or one `error` event with `{code, message}`;
	 * then the stream ends. Checks (token, arguments, state) were made before: their refusals
	 * are ordinary JSON errors.
	 */
	async #streamProgress(reply: FastifyReply, run: () => Promise<unknown>): Promise<void> {
		reply.hijack();
		const res = reply.raw;
		res.writeHead(200, {
			"Content-Type": "text/event-stream; charset=utf-8",
			"Cache-Control": "no-store",
			"X-Accel-Buffering": "no",
		});
		const send = (event: string, data: unknown) =>
			res.write(`event: ${event}\ndata: ${JSON.stringify(data ?? {})}\n\n`);
		const stop = this.#supervisor.onProgress((p) => send("progress", p));
		try {
			send("result", await run());
		} catch (err) {
			const e = knownError(err);
			if (!e) this.#supervisor.log.error({ err }, "admin API error");
			send(
				"error",
				e
					? { code: e.code, message: e.message, ...e.extra }
					: { code: "internal", message: "internal error; see the server's log" },
			);
		} finally {
			stop();
			res.end();
		}
	}

	/** The running server, or 503 (a state that serves the route always has one). */
	#server(): Server {
		const server = this.#supervisor.server;
		if (server?.state !== "running") {
			const state = this.#supervisor.state;
			throw new ApiError(503, state, `no XMPP server runs: ${state}`);
		}
		return server;
	}

	/** The bearer token's id and account: 401 without a valid one, 403 for a non-admin. */
	async #authenticate(req: FastifyRequest): Promise<{ id: string; jid: string }> {
		const header = req.headers.authorization ?? "";
		const m = /^Bearer\s+(\S+)$/i.exec(header);
		if (!m?.[1])
			throw new ApiError(
				401,
				"unauthorized",
				"an admin bearer token is needed (POST /auth/tokens)",
			);
		const server = this.#server();
		const token = await new TokenStore(server.storage).verify(m[1]);
		if (!token) throw new ApiError(401, "unauthorized", "the token is unknown, expired or revoked");
		req.actor = token.jid;
		if (token.jid !== CLI_ACTOR && !(await isAdmin(server, token.jid)))
			throw new ApiError(403, "forbidden", `${token.jid} is not an admin`);
		return token;
	}

	/**
	 * Lifecycle routes: a token while a server runs; with none (no configuration, a failed
	 * start) no token can be checked, so only a loopback peer is served.
	 */
	async #authenticateLifecycle(req: FastifyRequest): Promise<void> {
		if (this.#supervisor.server?.state === "running") {
			await this.#authenticate(req);
			return;
		}
		if (!isLoopback(req.socket.remoteAddress ?? ""))
			throw new ApiError(403, "forbidden", "with no server running, only loopback may do this");
		req.actor = "loopback";
	}

	#error(err: unknown, req: FastifyRequest, reply: FastifyReply): void {
		let e: ApiError;
		if (err instanceof ApiError) e = err;
		else if (err instanceof CommandError)
			e = new ApiError(HTTP_STATUS[err.code], err.code, err.message);
		else if (err instanceof LifecycleConflict)
			e = new ApiError(409, "lifecycle_conflict", err.message, { running: err.running });
		else if (err instanceof StateRefusal) {
			reply.header("Retry-After", String(STATE_SPECS[err.state].retryAfter));
			e = new ApiError(503, err.state, err.message);
		} else {
			const f = err as { statusCode?: number; code?: string; message?: string };
			const status = f.statusCode ?? 500;
			if (status === 429) e = new ApiError(429, "rate_limited", "too many requests; wait a minute");
			else if (status === 415)
				e = new ApiError(
					415,
					"unsupported_media_type",
					"send JSON (Content-Type: application/json)",
				);
			else if (status === 413) e = new ApiError(413, "body_too_large", "the body is too large");
			else if (status === 400)
				e = new ApiError(400, "malformed_json", `the body is not valid JSON: ${f.message ?? ""}`);
			else if (status < 500) e = new ApiError(status, "bad_request", f.message ?? "bad request");
			else {
				this.#supervisor.log.error({ err, url: req.url }, "admin API error");
				e = new ApiError(500, "internal", "internal error; see the server's log");
			}
		}
		reply.code(e.status).send({ code: e.code, message: e.message, ...e.extra });
	}
}

/** The answer for a refusal the API or a command means to give; null for anything else. */
function knownError(err: unknown): ApiError | null {
	if (err instanceof ApiError) return err;
	if (err instanceof CommandError)
		return new ApiError(HTTP_STATUS[err.code], err.code, err.message);
	if (err instanceof LifecycleConflict)
		return new ApiError(409, "lifecycle_conflict", err.message, { running: err.running });
	if (err instanceof StateRefusal) return new ApiError(503, err.state, err.message);
	return null;
}

/** `Accept: text/event-stream` (EventSource, or fetch reading a stream). */
function wantsEvents(req: FastifyRequest): boolean {
	return (req.headers.accept ?? "").includes("text/event-stream");
}

function invalid(error: z.ZodError): ApiError {
	return new ApiError(400, "invalid_argument", z.prettifyError(error).replaceAll("\n", "; "));
}
