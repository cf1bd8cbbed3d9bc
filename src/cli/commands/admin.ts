/**
 * `parley admin ...` (issue 15): the CLI against a running server's admin API.
 *
 *   parley admin token [jid]          a bearer token, issued with local access to storage
 *   parley admin status|reload|restart
 *   parley admin <words> --flags      every command of the registry: `user.add` is
 *                                     `parley admin user add --jid a@b --password p`
 *
 * The API is found on `[listeners.admin]` of the configuration (or `--api-url`). The token is
 * `--api-token`, else `PARLEY_ADMIN_TOKEN`, else one the CLI issues for the operator (`cli`) with
 * its access to the storage, valid a minute and revoked after the call.
 */
import { readFileSync } from "node:fs";
import { type Command, Option } from "commander";
import { parse as parseToml, stringify as stringifyToml } from "smol-toml";
import { coerceTextArgs } from "../../admin/args.ts";
import { adminCommands } from "../../admin/commands/index.ts";
import { CLI_ACTOR, TokenStore } from "../../admin/tokens.ts";
import { AccountManager } from "../../auth/accounts.ts";
import type { AnyAdminCommand } from "../../core/commands.ts";
import { findConfigFile, parseConfig } from "../../core/config/load.ts";
import type { Config } from "../../core/config/schema.ts";
import { CliError, CONFIG_HELP, EXIT, loadConfig, storageFailure, withStorage } from "../common.ts";

interface ApiOptions {
	config?: string;
	apiUrl?: string;
	apiToken?: string;
}

/** Flags of the API itself: a command's argument of one of these names gets `--arg-<name>`. */
const RESERVED = new Set(["config", "api-url", "api-token", "help", "version"]);

export function addAdminCommands(program: Command): void {
	const admin = program
		.command("admin")
		.description("talk to a running server's admin API (see also: parley admin token)");

	admin
		.command("token [jid]")
		.description(
			"issue an admin API token with local access to storage: for an admin account, or for the operator",
		)
		.option("-c, --config <file>", CONFIG_HELP)
		.option("--lifetime <seconds>", "how long the token is valid (default: admin.token_lifetime)")
		.action(async (jid: string | undefined, opts: { config?: string; lifetime?: string }) => {
			const config = loadConfig(opts.config);
			const lifetime =
				opts.lifetime === undefined ? config.admin.token_lifetime : Number(opts.lifetime);
			if (!Number.isInteger(lifetime) || lifetime < 1)
				throw new CliError("--lifetime: expected a number of seconds", EXIT.USAGE);
			const issued = await withStorage(config, async (storage) => {
				if (jid !== undefined) await mustBeAdmin(config, storage, jid);
				return new TokenStore(storage).issue(jid?.toLowerCase() ?? CLI_ACTOR, lifetime);
			}).catch(storageFailure);
			console.log(issued.token);
		});

	apiOptions(admin.command("status").description("the admin state, errors and sessions")).action(
		(opts: ApiOptions) => call(opts, "GET", "/status", undefined, false),
	);
	apiOptions(
		admin.command("reload").description("read the configuration again and apply it"),
	).action((opts: ApiOptions) => call(opts, "POST", "/lifecycle/reload", undefined));
	apiOptions(
		admin.command("restart").description("a new XMPP server instance in the running process"),
	).action((opts: ApiOptions) => call(opts, "POST", "/lifecycle/restart", undefined));

	// One subcommand per command of the registry, grouped by its first word: `user.add` is
	// `admin user add`, `users.online.count` `admin users online-count`, `announce` `admin announce`.
	const groups = new Map<string, Command>();
	for (const command of adminCommands) {
		const [area = "", ...rest] = command.name.split(".");
		let parent = admin;
		if (rest.length > 0) {
			let group = groups.get(area);
			if (!group) {
				group = admin.command(area).description(`${area} commands`);
				groups.set(area, group);
			}
			parent = group;
		}
		const words = rest.length > 0 ? rest.join("-") : area;
		const sub = apiOptions(parent.command(words).description(command.description));
		/** Argument name → the attribute commander stores its flag's value under. */
		const attributes = new Map<string, string>();
		for (const [key, schema] of Object.entries(command.args.shape as Record<string, unknown>)) {
			const s = schema as { description?: string; safeParse(v: unknown): { success: boolean } };
			const kebab = key.replaceAll("_", "-");
			const option = new Option(
				`--${RESERVED.has(kebab) ? `arg-${kebab}` : kebab} <value>`,
				s.description ?? key,
			);
			if (!s.safeParse(undefined).success) option.makeOptionMandatory();
			sub.addOption(option);
			attributes.set(key, option.attributeName());
		}
		sub.action((opts: ApiOptions & Record<string, string>) =>
			runCommand(command, attributes, opts),
		);
	}
}

function apiOptions(cmd: Command): Command {
	return cmd
		.option("-c, --config <file>", CONFIG_HELP)
		.option("--api-url <url>", "the admin API (default: from [listeners.admin])")
		.option(
			"--api-token <token>",
			"an admin API token (default: $PARLEY_ADMIN_TOKEN, else one issued here)",
		);
}

async function runCommand(
	command: AnyAdminCommand,
	attributes: Map<string, string>,
	opts: ApiOptions & Record<string, string>,
): Promise<void> {
	const text: Record<string, string> = {};
	for (const [key, attribute] of attributes) {
		const v = opts[attribute];
		if (v !== undefined) text[key] = v;
	}
	// A JSON body carries numbers and booleans as such; a path or a query carries text.
	const args = coerceTextArgs(command, text);
	let path = command.http.path.replace(/:([A-Za-z0-9_]+)/g, (_m, name: string) => {
		const v = text[name] ?? "";
		delete args[name];
		delete text[name];
		return encodeURIComponent(v);
	});
	let body: Record<string, unknown> | undefined = args;
	if (command.http.method === "GET" || command.http.method === "DELETE") {
		const q = new URLSearchParams(text).toString();
		if (q) path += `?${q}`;
		body = undefined;
	}
	await call(opts, command.http.method, path, body);
}

async function mustBeAdmin(
	config: Config,
	storage: Parameters<Parameters<typeof withStorage>[1]>[0],
	jid: string,
): Promise<void> {
	const at = jid.lastIndexOf("@");
	const host = jid.slice(at + 1).toLowerCase();
	if (at <= 0 || !config.hosts[host])
		throw new CliError(`${jid}: not an account of a configured host`, EXIT.NOT_FOUND);
	const accounts = new AccountManager(storage, host, config.auth.scram_iterations);
	const user = AccountManager.prepUsername(jid.slice(0, at));
	if (!(await accounts.exists(user))) throw new CliError(`${jid} does not exist`, EXIT.NOT_FOUND);
	if ((await accounts.role(user)) !== "admin")
		throw new CliError(`${jid} is not an admin (parley admin user role)`, EXIT.FAILURE);
}

/**
 * The configuration, for the API's address and the storage: a file that does not validate
 * (the server runs misconfigured, and the operator wants its status) is read for
 * `[server]`, `[storage]` and `[listeners.admin]` alone; if those do not validate either, the
 * file's own problems are the answer.
 */
function apiConfig(flag: string | undefined): Config {
	try {
		return loadConfig(flag);
	} catch (err) {
		const source = findConfigFile(flag);
		if (!(err instanceof CliError) || err.exitCode !== EXIT.CONFIG || !source.path) throw err;
		try {
			const raw = parseToml(readFileSync(source.path, "utf8")) as Record<string, unknown>;
			const table = (v: unknown) => (typeof v === "object" && v !== null ? v : {});
			const dataDir = (table(raw.server) as { data_dir?: unknown }).data_dir;
			const admin = (table(raw.listeners) as { admin?: unknown }).admin;
			const pick = {
				server: dataDir === undefined ? {} : { data_dir: dataDir },
				storage: table(raw.storage),
				listeners: { admin: table(admin) },
			};
			return parseConfig(stringifyToml(pick), source.path);
		} catch {
			throw err;
		}
	}
}

/** The admin API's base URL from `[listeners.admin]`: a wildcard address is reached on loopback. */
function baseUrl(config: Config): string {
	const l = config.listeners.admin;
	let host = l.address;
	if (host === "::" || host === "0.0.0.0") host = "127.0.0.1";
	const loopback = host === "localhost" || host === "::1" || host.startsWith("127.");
	if (host.includes(":")) host = `[${host}]`;
	return `${loopback ? "http" : "https"}://${host}:${l.port}`;
}

/** One request; prints the JSON answer; an error answer is a CliError with a mapped exit code. */
async function call(
	opts: ApiOptions,
	method: string,
	path: string,
	body: unknown,
	auth = true,
): Promise<void> {
	const config = apiConfig(opts.config);
	const url = (opts.apiUrl ?? baseUrl(config)).replace(/\/$/, "") + path;
	let token = opts.apiToken ?? process.env.PARLEY_ADMIN_TOKEN;
	let revoke: (() => Promise<void>) | null = null;
	if (auth && !token) {
		// No token given: the operator's own, for this one call.
		const issued = await withStorage(config, (s) => new TokenStore(s).issue(CLI_ACTOR, 60)).catch(
			storageFailure,
		);
		token = issued.token;
		revoke = () =>
			withStorage(config, async (s) => {
				await new TokenStore(s).revoke(issued.id);
			});
	}
	try {
		let res: Response;
		try {
			res = await fetch(url, {
				method,
				headers: {
					...(token && auth ? { authorization: `Bearer ${token}` } : {}),
					...(body === undefined ? {} : { "content-type": "application/json" }),
				},
				...(body === undefined ? {} : { body: JSON.stringify(body) }),
			});
		} catch (err) {
			throw new CliError(
				`no admin API at ${url} (is parley serve running?): ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`,
				EXIT.FAILURE,
			);
		}
		const text = await res.text();
		if (res.ok) {
			if (text) console.log(JSON.stringify(JSON.parse(text), null, 2));
			return;
		}
		let message = text;
		try {
			const e = JSON.parse(text) as {
				code?: string;
				message?: string;
				errors?: { file?: string; line?: number; message: string }[];
			};
			message = `${e.code}: ${e.message}`;
			for (const p of e.errors ?? [])
				message += `\n  ${p.file ?? ""}${p.line === undefined ? "" : `:${p.line}`}: ${p.message}`;
		} catch {}
		const exit =
			res.status === 404
				? EXIT.NOT_FOUND
				: res.status === 409
					? EXIT.EXISTS
					: res.status === 400
						? EXIT.USAGE
						: res.status === 422
							? EXIT.CONFIG
							: EXIT.FAILURE;
		throw new CliError(`${res.status} ${message}`, exit);
	} finally {
		await revoke?.().catch(() => undefined);
	}
}
