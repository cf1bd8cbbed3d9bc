/**
 * Cost of the spam module's room check per groupchat message (issue 19): `muc/admit` fired on
 * the parent host's bus, as src/modules/muc/index.ts does for every groupchat message, with one
 * block list of N entries followed (none matching) and the message-rate limit on, against the
 * same bus without the spam module. Prints microseconds per message.
 *
 *   npx node bench/spam-admit.ts [entries=10000] [messages=200000]
 */

import { DEFAULT_HOST_MODULES } from "../src/core/config/schema.ts";
import type { MucAdmitEvent } from "../src/core/contracts.ts";
import { sha256 } from "../src/modules/spam/rtbl.ts";
import { startTestServer } from "../test/helpers/server.ts";

const entries = Number(process.argv[2] ?? 10_000);
const messages = Number(process.argv[3] ?? 200_000);

async function measure(withSpam: boolean): Promise<number> {
	const t = await startTestServer({
		config: {
			hosts: {
				localhost: {
					modules: DEFAULT_HOST_MODULES.filter((m) => withSpam || m !== "spam"),
					module_options: {
						spam: {
							rtbl: [{ service: "rtbl.invalid", node: "muc_bans_sha256" }],
							muc_message_rate: 1_000_000,
							muc_message_burst: 1_000_000,
						},
					},
				},
			},
		},
	});
	const host = t.server.hosts.get("localhost");
	if (!host) throw new Error("no host");
	if (withSpam) {
		// The list as a restart would load it; the module reads it at load, so reload it.
		await host.keyval<{ ids: string[] }>("rtbl").set("muc_bans_sha256@rtbl.invalid", {
			ids: Array.from({ length: entries }, (_, i) => sha256(`spam${i}@x`)),
		});
		await host.modules.unload("spam");
		await host.modules.load("spam");
	}
	const room = t.server.jids.parse("room@conference.localhost");
	const senders = Array.from({ length: 100 }, (_, i) =>
		t.server.jids.parse(`user${i}@remote.example/r`),
	);
	const ev = (i: number): MucAdmitEvent => ({
		room,
		from: senders[i % senders.length] as MucAdmitEvent["from"],
		kind: "groupchat",
		affiliation: "none",
		creates: false,
	});
	for (let i = 0; i < 20_000; i++) await host.events.fire("muc/admit", ev(i));
	const start = process.hrtime.bigint();
	for (let i = 0; i < messages; i++) await host.events.fire("muc/admit", ev(i));
	const us = Number(process.hrtime.bigint() - start) / 1000 / messages;
	await t.stop();
	return us;
}

const without = await measure(false);
const withSpam = await measure(true);
console.log(
	`muc/admit per groupchat message: ${withSpam.toFixed(2)} µs with the spam module (1 list of ${entries}, rate limit on), ${without.toFixed(2)} µs without`,
);
