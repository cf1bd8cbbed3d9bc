/**
 * What a pubsub request that names no node costs in a cluster (issue 16, docs/scaling.md
 * "PubSub nodes across nodes"): §5.6 subscriptions and the root's disco#items are answered from
 * every node's stored meta, a request to one node by the node's owner from memory.
 *
 *   npx node bench/pubsub-spread.ts [nodes=1000]
 *
 * One cluster node in process on the local PostgreSQL (a private schema) and Redis (a private
 * prefix), both removed at the end; one client creates the nodes and subscribes to every tenth.
 * Not a test: prints the mean wall time per request.
 */

import { Redis } from "ioredis";
import pg from "pg";
import { iq, online } from "../test/helpers/raw-stanzas.ts";
import { startTestServer } from "../test/helpers/server.ts";
import { TEST_PG_URL } from "../test/helpers/services.ts";

const N = Number(process.argv[2] ?? 1000);
const TAG = `${process.pid}`;
const PREFIX = `parley-psbench-${TAG}`;
const SCHEMA = `parley_psbench_${TAG}`;
const SERVICE = "pubsub.localhost";
const PS = "http://jabber.org/protocol/pubsub";
const a = await startTestServer({
	storage: "sqlite",
	config: {
		auth: { require_encryption: false, allow_plain_without_tls: true },
		cluster: { enabled: true, prefix: PREFIX, node: `bench-${TAG}`, heartbeat: 2, node_timeout: 6 },
		storage: { backend: "postgres" as const, url: TEST_PG_URL, schema: SCHEMA },
		components: { [SERVICE]: { type: "pubsub" as const } },
	},
	users: [["alice@localhost", "pw-alice"]],
});
const c = await online(a.port, "alice", "r");
let seq = 0;
const ask = (t: string, p: string) => {
	const id = `b${++seq}`;
	return iq(c, id, `<iq type='${t}' id='${id}' to='${SERVICE}'>${p}</iq>`, 60_000);
};
for (let i = 0; i < N; i++) {
	await ask("set", `<pubsub xmlns='${PS}'><create node='n${i}'/></pubsub>`);
	if (i % 10 === 0)
		await ask(
			"set",
			`<pubsub xmlns='${PS}'><subscribe node='n${i}' jid='alice@localhost/r'/></pubsub>`,
		);
}
await ask(
	"set",
	`<pubsub xmlns='${PS}'><publish node='n1'><item id='x'><e xmlns='u'/></item></publish></pubsub>`,
);
const time = async (label: string, p: string, runs: number) => {
	const t0 = performance.now();
	let r = "";
	for (let i = 0; i < runs; i++) r = await ask("get", p);
	console.log(
		label,
		((performance.now() - t0) / runs).toFixed(2),
		"ms per request",
		r.length,
		"bytes answer",
	);
};
await time(
	"subscriptions (all nodes, from storage)",
	`<pubsub xmlns='${PS}'><subscriptions/></pubsub>`,
	20,
);
await time(
	"disco#items of the root (from storage)",
	`<query xmlns='http://jabber.org/protocol/disco#items'/>`,
	20,
);
await time("items of one owned node", `<pubsub xmlns='${PS}'><items node='n1'/></pubsub>`, 200);
c.end();
await a.stop();
const r = new Redis();
const keys = await r.keys(`${PREFIX}:*`);
if (keys.length) await r.del(...keys);
await r.quit();
const pc = new pg.Client({ connectionString: TEST_PG_URL });
await pc.connect();
await pc.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`);
await pc.end();
