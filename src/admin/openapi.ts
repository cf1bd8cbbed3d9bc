/**
 * `GET /openapi.json` (issue 15): an OpenAPI 3.1 document generated from the same definitions
 * as the routes — the registry's commands (their zod schemas through `z.toJSONSchema`) and the
 * fixed routes of api.ts — so it cannot drift from what the API does.
 */
import { z } from "zod";
import pkg from "../../package.json" with { type: "json" };
import type { AnyAdminCommand } from "../core/commands.ts";

type Json = Record<string, unknown>;

const ERROR = {
	description: "an error: `code` is stable, `message` is for people",
	content: {
		"application/json": {
			schema: {
				type: "object",
				required: ["code", "message"],
				properties: { code: { type: "string" }, message: { type: "string" } },
			},
		},
	},
};

const CREDENTIALS = {
	type: "object",
	required: ["jid", "password"],
	properties: { jid: { type: "string" }, password: { type: "string" } },
};

function json(schema: Json = { type: "object" }) {
	return { content: { "application/json": { schema } } };
}

/** `/users/:jid` → `/users/{jid}` and the parameters it names. */
function pathOf(path: string): { path: string; params: string[] } {
	const params: string[] = [];
	const out = path.replace(/:([A-Za-z0-9_]+)/g, (_m, name: string) => {
		params.push(name);
		return `{${name}}`;
	});
	return { path: out, params };
}

function commandOperation(command: AnyAdminCommand): { path: string; method: string; op: Json } {
	const { path, params } = pathOf(command.http.path);
	const shape = command.args.shape as Record<string, z.ZodType>;
	const rest = Object.keys(shape).filter((k) => !params.includes(k));
	const parameters: Json[] = params.map((name) => ({
		name,
		in: "path",
		required: true,
		schema: shape[name] ? z.toJSONSchema(shape[name], { io: "input" }) : { type: "string" },
	}));
	const op: Json = {
		operationId: command.name,
		summary: command.description,
		tags: [command.name.split(".")[0]],
		security: [{ bearer: [] }],
		"x-parley-role": command.role,
		...(command.adhoc === undefined ? {} : { "x-xep0050-node": command.adhoc }),
	};
	const method = command.http.method;
	if (rest.length > 0) {
		if (method === "GET" || method === "DELETE") {
			const required = new Set(
				(z.toJSONSchema(command.args, { io: "input" }) as { required?: string[] }).required ?? [],
			);
			for (const name of rest)
				parameters.push({
					name,
					in: "query",
					required: required.has(name),
					schema: z.toJSONSchema(shape[name] as z.ZodType, { io: "input" }),
				});
		} else {
			const mask = Object.fromEntries(params.map((p) => [p, true])) as Record<string, true>;
			op.requestBody = {
				required: true,
				...json(z.toJSONSchema(command.args.omit(mask), { io: "input" }) as Json),
			};
		}
	}
	if (parameters.length > 0) op.parameters = parameters;
	const status = String(command.http.status ?? 200);
	op.responses = {
		[status]:
			status === "204" || status === "205"
				? { description: "done" }
				: { description: "done", ...json() },
		"400": ERROR,
		"401": ERROR,
		"403": ERROR,
		"404": ERROR,
		"409": ERROR,
		"503": ERROR,
	};
	return { path, method: method.toLowerCase(), op };
}

export function openApiDocument(commands: readonly AnyAdminCommand[]): Json {
	const paths: Record<string, Record<string, Json>> = {
		"/health": {
			get: {
				operationId: "health",
				summary: "whether the XMPP service is serving (200) or not (503 with Retry-After)",
				security: [],
				responses: { "200": { description: "serving", ...json() }, "503": ERROR },
			},
		},
		"/status": {
			get: {
				operationId: "status",
				summary: "the admin state, the last error and the configuration's problems",
				security: [],
				responses: { "200": { description: "the state", ...json() } },
			},
		},
		"/openapi.json": {
			get: {
				operationId: "openapi",
				summary: "this document",
				security: [],
				responses: { "200": { description: "OpenAPI 3.1", ...json() } },
			},
		},
		"/lifecycle/reload": {
			post: {
				operationId: "lifecycle.reload",
				summary:
					"read the configuration again (defaults, file, PARLEY_* variables) and apply it in place",
				security: [{ bearer: [] }],
				responses: {
					"200": { description: "applied", ...json() },
					"409": ERROR,
					"422": ERROR,
					"503": ERROR,
				},
			},
		},
		"/lifecycle/restart": {
			post: {
				operationId: "lifecycle.restart",
				summary: "a new XMPP server instance in this process",
				security: [{ bearer: [] }],
				responses: { "200": { description: "running", ...json() }, "409": ERROR, "503": ERROR },
			},
		},
		"/init/first-account": {
			put: {
				operationId: "init.first-account",
				summary: "create the first admin; 409 once an admin exists",
				security: [],
				requestBody: { required: true, ...json(CREDENTIALS) },
				responses: { "201": { description: "created", ...json() }, "409": ERROR },
			},
		},
		"/auth/tokens": {
			post: {
				operationId: "auth.token.issue",
				summary: "a bearer token for an admin's credentials (rate-limited)",
				security: [],
				requestBody: { required: true, ...json(CREDENTIALS) },
				responses: {
					"201": { description: "the token, shown once", ...json() },
					"401": ERROR,
					"403": ERROR,
					"429": ERROR,
				},
			},
			get: {
				operationId: "auth.token.list",
				summary: "the tokens that have not expired (never the tokens themselves)",
				security: [{ bearer: [] }],
				responses: { "200": { description: "the tokens", ...json() }, "401": ERROR },
			},
		},
		"/auth/tokens/{id}": {
			delete: {
				operationId: "auth.token.revoke",
				summary: "revoke a token by id (`current`: the one used)",
				security: [{ bearer: [] }],
				parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
				responses: { "204": { description: "revoked" }, "404": ERROR },
			},
		},
	};
	for (const command of commands) {
		const { path, method, op } = commandOperation(command);
		paths[path] ??= {};
		(paths[path] as Record<string, Json>)[method] = op;
	}
	return {
		openapi: "3.1.0",
		info: { title: "Parley admin API", version: pkg.version },
		components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
		paths,
	};
}
