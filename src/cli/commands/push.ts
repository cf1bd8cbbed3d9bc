/**
 * `parley push <jid>`: why did my phone not ring? The push registrations of an account (XEP-0357)
 * and the server's last decisions about them (sent, skipped and why, the app server's answer),
 * read from the storage the server writes them to (src/modules/push.ts).
 */
import type { Command } from "commander";
import type { PushLogEntry, Registration } from "../../modules/push.ts";
import { JIDError, parseJID } from "../../xmpp/jid.ts";
import { CliError, CONFIG_HELP, EXIT, loadConfig, withStorage } from "../common.ts";

export function addPushCommand(program: Command): void {
	program
		.command("push <jid>")
		.description("show an account's push registrations and the last push decisions (XEP-0357)")
		.option("-c, --config <file>", CONFIG_HELP)
		.option("--json", "print them as JSON")
		.action(async (jidText: string, opts: { config?: string; json?: boolean }) => {
			const config = loadConfig(opts.config);
			let jid: ReturnType<typeof parseJID>;
			try {
				jid = parseJID(jidText);
			} catch (err) {
				if (err instanceof JIDError)
					throw new CliError(`"${jidText}" is not a valid JID`, EXIT.USAGE);
				throw err;
			}
			if (!jid.local || !config.hosts[jid.domain])
				throw new CliError(
					`"${jidText}" must be an account of a host in the configuration`,
					EXIT.USAGE,
				);
			await withStorage(config, async (storage) => {
				// The stores hold JSON the push module wrote; the casts restore its shapes.
				const registrations = [
					...(await storage.map(jid.domain, "push").getAll(jid.local)).values(),
				] as Registration[];
				const log = ((await storage.keyval(jid.domain, "push_log").get(jid.local)) ??
					[]) as PushLogEntry[];
				if (opts.json) {
					console.log(JSON.stringify({ registrations, log }));
					return;
				}
				if (registrations.length === 0) console.log(`${jid.bareString}: no push registration`);
				for (const r of registrations)
					console.log(
						`registered: ${r.jid} node ${r.node} since ${new Date(r.enabled).toISOString()}`,
					);
				if (log.length === 0) console.log("no push decision recorded yet");
				for (const e of log)
					console.log(
						`${new Date(e.when).toISOString()}  ${e.what.padEnd(8)}  ${e.to ? `${e.to.replace("\n", " node ")}  ` : ""}${e.why}`,
					);
			});
		});
}
