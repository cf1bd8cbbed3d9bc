/** `parley user add|import|del|passwd|list`: accounts, on the configured storage. */
import { createInterface } from "node:readline";
import type { Command } from "commander";
import { AccountError, AccountManager } from "../../auth/accounts.ts";
import type { Config } from "../../core/config/schema.ts";
import type { StorageBackend } from "../../storage/types.ts";
import { JIDError, parseJID } from "../../xmpp/jid.ts";
import { CliError, CONFIG_HELP, EXIT, loadConfig, readStdinLines, withStorage } from "../common.ts";

export function addUserCommands(program: Command): void {
	const user = program.command("user").description("manage accounts (works while the server runs)");
	passwordCommand(
		user
			.command("add <jid>")
			.description("create an account; asks for the password unless one is given"),
		"the password (visible in the process list: prefer the prompt)",
		async (accounts, name, password) =>
			`created ${await accounts.create(name, password)}@${accounts.host}`,
	);
	user
		.command("import [file]")
		.description('create many accounts from lines "JID PASSWORD" (a file, or standard input)')
		.option("-c, --config <file>", CONFIG_HELP)
		.option("--skip-existing", "skip accounts that already exist instead of failing")
		.action(async (file: string | undefined, opts: { config?: string; skipExisting?: boolean }) => {
			const config = loadConfig(opts.config);
			const { readFileSync } = await import("node:fs");
			const lines =
				file && file !== "-" ? readFileSync(file, "utf8").split(/\r?\n/) : await readStdinLines();
			const entries = lines
				.map((l, i) => ({ line: i + 1, text: l.trim() }))
				.filter((e) => e.text && !e.text.startsWith("#"));
			let created = 0;
			let skipped = 0;
			await withStorage(config, async (storage) => {
				// PBKDF2 runs on the thread pool: a few in flight keep every core busy.
				const width = 8;
				let next = 0;
				const errors: string[] = [];
				const worker = async () => {
					while (next < entries.length) {
						const e = entries[next++] as { line: number; text: string };
						const space = e.text.search(/\s/);
						if (space < 0) {
							errors.push(`line ${e.line}: expected "JID PASSWORD"`);
							continue;
						}
						const jid = e.text.slice(0, space);
						const password = e.text.slice(space).trim();
						try {
							const { accounts, user: name } = openAccounts(config, storage, jid);
							await accounts.create(name, password);
							created++;
						} catch (err) {
							if (err instanceof AccountError && err.code === "exists" && opts.skipExisting)
								skipped++;
							else errors.push(`line ${e.line}: ${(err as Error).message}`);
						}
					}
				};
				await Promise.all(Array.from({ length: width }, worker));
				console.log(`created ${created} accounts${skipped ? `, skipped ${skipped} existing` : ""}`);
				if (errors.length) throw new CliError(errors.join("\n"), EXIT.FAILURE);
			});
		});
	user
		.command("del <jid>")
		.description("delete an account and all its data")
		.option("-c, --config <file>", CONFIG_HELP)
		.action(async (jid: string, opts: { config?: string }) => {
			const config = loadConfig(opts.config);
			await withStorage(config, async (storage) => {
				const { accounts, user: name } = openAccounts(config, storage, jid);
				await accounts.delete(name).catch(accountError);
				console.log(`deleted ${name}@${accounts.host}`);
			});
		});
	passwordCommand(
		user.command("passwd <jid>").description("set an account's password"),
		"the new password",
		async (accounts, name, password) => {
			await accounts.setPassword(name, password);
			return `password changed for ${name}@${accounts.host}`;
		},
	);
	user
		.command("list [host]")
		.description("list the accounts of one host, or of every host")
		.option("-c, --config <file>", CONFIG_HELP)
		.action(async (host: string | undefined, opts: { config?: string }) => {
			const config = loadConfig(opts.config);
			const hosts = host ? [host] : Object.keys(config.hosts);
			if (host && !config.hosts[host])
				throw new CliError(`${host} is not a host in the configuration`, EXIT.USAGE);
			await withStorage(config, async (storage) => {
				for (const h of hosts) {
					const accounts = new AccountManager(storage, h, config.auth.scram_iterations);
					for (const u of await accounts.list()) console.log(`${u}@${h}`);
				}
			});
		});
}

/** Opens the accounts of the host a JID belongs to, on the configured storage. */
function openAccounts(
	config: Config,
	storage: StorageBackend,
	jidText: string,
): { accounts: AccountManager; user: string } {
	let jid: ReturnType<typeof parseJID>;
	try {
		jid = parseJID(jidText);
	} catch (err) {
		if (err instanceof JIDError) throw new CliError(`"${jidText}" is not a valid JID`, EXIT.USAGE);
		throw err;
	}
	if (!jid.local || jid.resource)
		throw new CliError(`"${jidText}" must be a bare JID like user@host`, EXIT.USAGE);
	const host = config.hosts[jid.domain];
	if (!host) throw new CliError(`${jid.domain} is not a host in the configuration`, EXIT.USAGE);
	if (host.authentication === "anonymous")
		throw new CliError(`${jid.domain} is an anonymous host: it has no accounts`, EXIT.USAGE);
	return {
		accounts: new AccountManager(storage, jid.domain, config.auth.scram_iterations),
		user: jid.local,
	};
}

function accountError(err: unknown): never {
	if (err instanceof AccountError) {
		const code =
			err.code === "exists" ? EXIT.EXISTS : err.code === "not-found" ? EXIT.NOT_FOUND : EXIT.USAGE;
		throw new CliError(err.message, code);
	}
	throw err;
}

/** Asks for a password twice on a terminal without echoing it. */
async function promptPassword(): Promise<string> {
	if (!process.stdin.isTTY) {
		const [first] = await readStdinLines();
		if (!first) throw new CliError("no password given on standard input", EXIT.USAGE);
		return first;
	}
	const ask = (q: string) =>
		new Promise<string>((resolve) => {
			const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
			const out = rl as unknown as { _writeToOutput: (s: string) => void };
			rl.question(q, (answer) => {
				rl.close();
				process.stderr.write("\n");
				resolve(answer);
			});
			// Echo nothing while the password is typed.
			out._writeToOutput = () => {};
		});
	const a = await ask("Password: ");
	const b = await ask("Again: ");
	if (a !== b) throw new CliError("the passwords do not match", EXIT.USAGE);
	return a;
}

async function resolvePassword(opts: {
	password?: string;
	passwordStdin?: boolean;
}): Promise<string> {
	if (opts.password !== undefined) return opts.password;
	if (opts.passwordStdin) {
		const [first] = await readStdinLines();
		if (first === undefined) throw new CliError("no password on standard input", EXIT.USAGE);
		return first;
	}
	return promptPassword();
}

/**
 * `user add` and `user passwd`: `<jid>` and a password (from an option, standard input or the
 * prompt), then `change` on that account; prints the line `change` resolves to.
 */
function passwordCommand(
	command: Command,
	passwordHelp: string,
	change: (accounts: AccountManager, user: string, password: string) => Promise<string>,
): Command {
	return command
		.option("-c, --config <file>", CONFIG_HELP)
		.option("-p, --password <password>", passwordHelp)
		.option("--password-stdin", "read the password from the first line of standard input")
		.action(
			async (
				jid: string,
				opts: { config?: string; password?: string; passwordStdin?: boolean },
			) => {
				const config = loadConfig(opts.config);
				const password = await resolvePassword(opts);
				await withStorage(config, async (storage) => {
					const { accounts, user: name } = openAccounts(config, storage, jid);
					console.log(await change(accounts, name, password).catch(accountError));
				});
			},
		);
}
