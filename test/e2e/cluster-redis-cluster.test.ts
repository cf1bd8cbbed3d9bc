/**
 * A Parley cluster on a Redis Cluster (`cluster.redis_cluster`, docs/scaling.md "Redis
 * Cluster"): a private Redis Cluster of three masters and their replicas
 * (test/helpers/redis-cluster.ts), two nodes in this process and one child process, in both
 * registry modes; then the failover of the shard that holds a node's stream. Every multi-key command of the
 * link must be slot-safe there (a CROSSSLOT error fails the chat, presence, room or offline
 * step that needs it), and the pub/sub channels are sharded ones.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, before, describe, test } from "node:test";
import { Cluster } from "ioredis";
import { EXIT } from "../../src/cli/common.ts";
import type { ClusterLink } from "../../src/cluster/link.ts";
import { keysFor } from "../../src/cluster/redis.ts";
import { childNodeToml, spawnChildNode } from "../helpers/cluster-node.ts";
import { freePort } from "../helpers/pg-cluster.ts";
import type { RawClient } from "../helpers/raw.ts";
import { iq, message, online } from "../helpers/raw-stanzas.ts";
import {
	type RedisCluster,
	redisClusterSkip,
	startRedisCluster,
} from "../helpers/redis-cluster.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";
import { connectAnonymous, type XmppConnection } from "../helpers/xmpp-client.ts";
import { befriend } from "../helpers/xmpp-user.ts";

const BIN = new URL("../../bin/parley.js", import.meta.url).pathname;

/** `parley ARGS`, its exit code and output (never rejects). */
const parley = (args: string[]) =>
	new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
		execFile(process.execPath, [BIN, ...args], (err, stdout, stderr) =>
			resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
		);
	});

const USERS = ["alice", "bob", "carol", "dave", "erin"];
const ROOM = "talk@conference.localhost";

/** A client of the test's Redis Cluster, to look at the keys the nodes left. */
const inspect = () =>
	new Cluster(rc.seeds.map((s) => ({ host: "127.0.0.1", port: Number(s.split(":")[1]) })));

let rc: RedisCluster;

describe("a cluster on a Redis Cluster", { skip: redisClusterSkip }, () => {
	before(async () => {
		// A replica each, for the failover at the end.
		rc = await startRedisCluster({ masters: 3, replicas: 1 });
	});
	after(async () => {
		await rc?.stop();
	});

	for (const registry of ["replicated", "sharded"] as const)
		describe(`registry = "${registry}"`, () => {
			const prefix = `parley-rc-${registry}-${process.pid}`;
			let a: TestServer;
			let b: TestServer;
			const clients: RawClient[] = [];
			/** Node A's log (JSON lines, info and up). */
			let logA = "";
			const on = async (port: number, user: string, resource: string, priority?: number) => {
				const c = await online(port, user, resource, priority === undefined ? {} : { priority });
				clients.push(c);
				return c;
			};
			const config = (node: string) => ({
				auth: { require_encryption: false, allow_plain_without_tls: true },
				cluster: {
					enabled: true,
					redis_cluster: rc.seeds,
					prefix,
					node,
					heartbeat: 0.5,
					node_timeout: 3,
					registry,
				},
				components: { "conference.localhost": { type: "muc" as const } },
			});
			/** Waits until `s` has a session of `user` (`resource`) from another node, or none. */
			const sees = async (s: TestServer, user: string, resource: string, present = true) =>
				waitFor(
					async () => {
						const host = s.server.hosts.get("localhost");
						if (!host) return undefined;
						await s.server.cluster?.resolve?.(host, user);
						return (host.sessions.get(user)?.has(resource) ?? false) === present;
					},
					`${user}/${resource} ${present ? "seen" : "gone"} on ${s.server.cluster?.node}`,
				);

			before(async () => {
				const log = new PassThrough();
				log.on("data", (d: Buffer) => {
					logA += d.toString();
				});
				a = await startTestServer({
					storage: "sqlite",
					config: config("node-a"),
					users: USERS.map((u) => [`${u}@localhost`, `pw-${u}`] as [string, string]),
					log,
				});
				b = await startTestServer({
					storage: "sqlite",
					dataDir: a.dataDir,
					config: config("node-b"),
				});
				await befriend(a.server, "alice@localhost", "bob@localhost");
				await befriend(a.server, "alice@localhost", "dave@localhost");
			});
			after(async () => {
				for (const c of clients) c.end();
				await b?.stop();
				await a?.stop();
			});

			test("the nodes use the Redis Cluster: membership in one slot, each node's stream in its own, nothing under one Redis's names", async () => {
				const r = inspect();
				try {
					const status = await a.server.cluster?.status?.();
					assert.deepEqual(
						status?.nodes.map((n) => [n.node, n.health]),
						[
							["node-a", "alive"],
							["node-b", "alive"],
						],
					);
					// Membership is one slot (`{prefix}`); each node's stream is in its own.
					assert.equal(await r.zcard(`{${prefix}}:nodes`), 2);
					assert.equal(await r.exists(`${prefix}:stream:{node-a}`), 1);
					assert.equal(await r.exists(`${prefix}:stream:{node-b}`), 1);
					// and nothing under one Redis's names (a different slot each: one EXISTS each).
					for (const old of [
						`${prefix}:nodes`,
						`${prefix}:stream:node-a`,
						`${prefix}:alive:node-a`,
					])
						assert.equal(await r.exists(old), 0, old);
				} finally {
					r.disconnect();
				}
			});

			test("a request to one node (the BOSH hand-over's `ask`) travels on that node's sharded channel; one to a node nobody serves is answered null at once", {
				timeout: 120_000,
			}, async () => {
				const la = a.server.cluster as ClusterLink;
				const lb = b.server.cluster as ClusterLink;
				lb.answer("test-echo", async (payload) => Buffer.concat([Buffer.from("re:"), payload]));
				const answer = await la.ask("node-b", "test-echo", Buffer.from("\u0001x"), 10_000);
				assert.equal(answer?.toString(), "re:\u0001x");
				// SPUBLISH counts no receiver: null without waiting for the ask's timeout (an hour; the
				// test's own timeout fails it first).
				assert.equal(await la.ask("node-gone", "test-echo", Buffer.from("x"), 3_600_000), null);
			});

			test("parley check pings the Redis Cluster (and says why it cannot); parley cluster status reads the nodes from it", async () => {
				const toml = (name: string, seeds: string[]) => {
					const file = join(a.dataDir, `${name}.toml`);
					writeFileSync(
						file,
						childNodeToml({
							dataDir: a.dataDir,
							port: 0,
							prefix,
							node: name,
							registry,
							redisCluster: seeds,
						}),
					);
					return file;
				};
				const up = toml("check-up", rc.seeds);
				const ok = await parley(["check", "--config", up]);
				assert.equal(ok.code, EXIT.OK, ok.stderr);
				assert.ok(
					ok.stdout.includes(`cluster: Redis Cluster ${rc.seeds.join(",")}: reachable`),
					ok.stdout,
				);
				const status = await parley(["cluster", "status", "--json", "--config", up]);
				assert.equal(status.code, EXIT.OK, status.stderr);
				const nodes = (JSON.parse(status.stdout) as { nodes: { node: string; health: string }[] })
					.nodes;
				assert.deepEqual(
					nodes.map((n) => [n.node, n.health]),
					[
						["node-a", "alive"],
						["node-b", "alive"],
					],
				);
				// Port 1 on loopback: nothing listens there.
				const down = await parley(["check", "--config", toml("check-down", ["127.0.0.1:1"])]);
				assert.equal(down.code, EXIT.CHECK_FAILED, down.stderr);
				assert.match(down.stderr, /cluster\.redis_cluster: not reachable \(.+\)/);
			});

			test("RFC 6121 §4.2.2 and §8.5.3.1: presence and chat between users on two nodes", async () => {
				const alice = await on(a.port, "alice", "a1");
				const markA = alice.received.length;
				const bob = await on(b.port, "bob", "b1");
				// Bob's initial presence reaches his contact on the other node, and alice's reaches him.
				await alice.waitFor(/<presence[^>]*from="bob@localhost\/b1"/, markA);
				await bob.waitFor(/<presence[^>]*from="alice@localhost\/a1"/);
				await sees(a, "bob", "b1");
				if (registry === "sharded") {
					// The sharded registry's entry, in the JID's slot (src/cluster/keys.ts).
					const r = inspect();
					try {
						assert.deepEqual(Object.keys(await r.hgetall(`${prefix}:s:{bob@localhost}`)), ["b1"]);
						assert.equal(await r.get(`${prefix}:u:{localhost}`), "2");
					} finally {
						r.disconnect();
					}
				}
				const mark = bob.received.length;
				alice.send("<message to='bob@localhost' id='x1' type='chat'><body>across</body></message>");
				assert.match(await message(bob, "x1", mark), /from="alice@localhost\/a1"/);
				const mark2 = alice.received.length;
				bob.send(
					"<message to='alice@localhost/a1' id='x2' type='chat'><body>back</body></message>",
				);
				assert.match(await message(alice, "x2", mark2), /<body>back<\/body>/);
				const markGone = alice.received.length;
				bob.end();
				// RFC 6121 §4.5.2: his unavailable presence, from the other node.
				await alice.waitFor(
					/<presence(?=[^>]*from="bob@localhost\/b1")(?=[^>]*type="unavailable")/,
					markGone,
				);
				alice.end();
				await sees(a, "bob", "b1", false);
				await sees(b, "alice", "a1", false);
			});

			test("XEP-0160: a message to a user who is offline is stored and delivered at login on another node", async () => {
				const alice = await on(a.port, "alice", "off");
				alice.send(
					"<message to='carol@localhost' id='o1' type='chat'><body>stored</body></message>",
				);
				// The ping's answer comes after the message was handled (stored).
				await iq(
					alice,
					"p",
					"<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
				);
				const carol = await on(b.port, "carol", "c");
				await carol.waitFor(/id="o1"[\s\S]*?<body>stored<\/body>/);
				alice.end();
				carol.end();
			});

			test("XEP-0045: occupants on two nodes talk in a room one of the nodes holds the lease of", async () => {
				const alice = await on(b.port, "alice", "muc");
				const erin = await on(a.port, "erin", "muc");
				const join = async (c: RawClient, nick: string) => {
					const mark = c.received.length;
					c.send(
						`<presence to='${ROOM}/${nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>`,
					);
					// §7.2.2: the self-presence carries status 110.
					return c.waitFor(new RegExp(`from="${ROOM}/${nick}"[\\s\\S]*?<status code="110"`), mark);
				};
				const created = await join(alice, "Alice");
				if (/<status code="201"/.test(created))
					assert.match(
						await iq(
							alice,
							"inst",
							`<iq type='set' id='inst' to='${ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`,
						),
						/type="result"/,
					);
				await join(erin, "Erin");
				const owners = [a, b].filter(
					(s) => ((s.server.cluster as ClusterLink | null)?.owners.owned ?? 0) > 0,
				);
				assert.equal(owners.length, 1, "one node holds the room's lease");
				const marks = [alice.received.length, erin.received.length];
				erin.send(
					`<message to='${ROOM}' type='groupchat' id='g1'><body>hello room</body></message>`,
				);
				// §7.4: to every occupant, the sender included.
				for (const [i, c] of [alice, erin].entries())
					await c.waitFor(
						/<message[^>]*from="talk@conference.localhost\/Erin"[\s\S]*?hello room/,
						marks[i],
					);
				const markLeave = erin.received.length;
				alice.end(); // §7.14: her stream's end is an exit, seen on the other node
				await erin.waitFor(
					/<presence(?=[^>]*from="talk@conference.localhost\/Alice")(?=[^>]*type="unavailable")/,
					markLeave,
				);
				erin.end();
			});

			test("RFC 6121 §4.5.2, XEP-0160: kill -9 of a node; its user's session ends and messages in flight to it go to offline storage", async () => {
				const alice = await on(a.port, "alice", "watch");
				const port = await freePort();
				const node = spawnChildNode({
					dataDir: a.dataDir,
					port,
					prefix,
					node: "node-c",
					registry,
					redisCluster: rc.seeds,
				});
				let child: typeof node.child | null = node.child;
				try {
					const markOn = alice.received.length;
					await waitFor(
						async () => {
							try {
								const c = await online(port, "dave", "onc");
								clients.push(c);
								return c;
							} catch {
								return undefined;
							}
						},
						"node C to serve",
						30_000,
					).catch((err: Error) => {
						throw new Error(`${err.message}; node C said: ${node.output()}`);
					});
					await alice.waitFor(/<presence[^>]*from="dave@localhost\/onc"/, markOn);
					await sees(a, "dave", "onc");
					const mark = alice.received.length;
					child.kill("SIGKILL");
					child = null;
					// Sent while node C still counts as alive (node_timeout 3 s): into its stream, which the
					// leader takes over once C is declared dead, and routes again: to offline storage.
					alice.send(
						"<message to='dave@localhost' id='k1' type='chat'><body>in flight</body></message>",
					);
					await alice.waitFor(
						/<presence(?=[^>]*from="dave@localhost\/onc")(?=[^>]*type="unavailable")/,
						mark,
						15_000,
					);
					await sees(a, "dave", "onc", false);
					await sees(b, "dave", "onc", false);
					// With dave nowhere, the next one is stored at once.
					alice.send(
						"<message to='dave@localhost' id='k2' type='chat'><body>after</body></message>",
					);
					await iq(
						alice,
						"p2",
						"<iq type='get' id='p2' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
					);
					// The leader routes the dead node's stream after ending its sessions.
					await waitFor(async () => {
						const r = inspect();
						try {
							return (
								(await r.scard(`{${prefix}}:orphans`)) === 0 &&
								(await r.exists(`${prefix}:stream:{node-c}`)) === 0
							);
						} finally {
							r.disconnect();
						}
					}, "node C's stream to be routed again");
					const dave = await on(b.port, "dave", "back");
					await dave.waitFor(/id="k1"[\s\S]*?<body>in flight<\/body>/);
					await dave.waitFor(/id="k2"[\s\S]*?<body>after<\/body>/);
					dave.end();
					// Node A never lost its place: no resynchronisation (ioredis moving subscriptions
					// without a failover would make one), no failed registry write or Redis error.
					assert.match(logA, /joined the cluster/);
					assert.doesNotMatch(
						logA,
						/resynchronising|registry write failed|writes were lost|Redis error|CROSSSLOT/,
					);
				} finally {
					child?.kill("SIGKILL");
				}
				alice.end();
			});
		});
	/**
	 * The cluster-wide counters (src/cluster/counters.ts) on a Redis Cluster: each counter is one
	 * key, but a node's shares are written and released over several shards (no pipeline may span
	 * them). `anonymous.max_sessions_per_ip` is the example: node A in this process (the leader),
	 * node C a `parley serve` process killed with SIGKILL.
	 */
	describe("guests per address on a Redis Cluster", () => {
		const prefix = `parley-rc-ip-${process.pid}`;
		const GUEST = "guest.localhost";
		let a: TestServer;
		let child: ChildProcess | null = null;
		let output = () => "";
		let port = 0;
		const mine: XmppConnection[] = [];
		const guestOn = async (p: number) => {
			const c = await connectAnonymous(`xmpp://127.0.0.1:${p}`, { domain: GUEST });
			mine.push(c);
			return c;
		};

		before(async () => {
			a = await startTestServer({
				storage: "sqlite",
				config: {
					auth: { require_encryption: false, allow_plain_without_tls: true },
					hosts: {
						localhost: {},
						[GUEST]: { authentication: "anonymous", anonymous: { max_sessions_per_ip: 2 } },
					},
					cluster: {
						enabled: true,
						redis_cluster: rc.seeds,
						prefix,
						node: "ip-a",
						heartbeat: 0.5,
						node_timeout: 3,
					},
				},
			});
			port = await freePort();
			const started = spawnChildNode({
				dataDir: a.dataDir,
				port,
				prefix,
				node: "ip-c",
				redisCluster: rc.seeds,
				extra: [
					`[hosts.${JSON.stringify(GUEST)}]`,
					'authentication = "anonymous"',
					`[hosts.${JSON.stringify(GUEST)}.anonymous]`,
					"max_sessions_per_ip = 2",
				],
			});
			child = started.child;
			output = started.output;
		});
		after(async () => {
			for (const c of mine) await c.xmpp.stop().catch(() => {});
			child?.kill("SIGKILL");
			await a?.stop();
		});

		test("RFC 6120 §7.6.2.1: the limit holds over both nodes, and the leader releases a killed node's share", async () => {
			await waitFor(
				() => guestOn(port).catch(() => undefined),
				"node C to serve a guest",
				30_000,
			).catch((err: Error) => {
				throw new Error(`${err.message}; node C said: ${output()}`);
			});
			await guestOn(a.port);
			await assert.rejects(guestOn(a.port), /too many guest sessions from this address/);
			await assert.rejects(guestOn(port), /too many guest sessions from this address/);
			child?.kill("SIGKILL");
			child = null;
			await waitFor(
				() => guestOn(a.port).catch(() => undefined),
				"a guest admitted again once node C is declared dead",
				20_000,
			);
			await assert.rejects(guestOn(a.port), /too many guest sessions from this address/);
		});
	});

	describe("a shard's failover (sharded registry)", () => {
		const prefix = `parley-rc-failover-${process.pid}`;
		let a: TestServer;
		let b: TestServer;
		const clients: RawClient[] = [];
		// Users one of whom has their registry hash (and channel) on the shard that fails over.
		const SPARE = Array.from({ length: 24 }, (_, i) => `u${i}`);
		// node_timeout longer than the Redis Cluster's failover (cluster-node-timeout 2 s and an
		// election): the nodes' heartbeats may be on the failing shard (docs/scaling.md).
		const config = (node: string) => ({
			auth: { require_encryption: false, allow_plain_without_tls: true },
			cluster: {
				enabled: true,
				redis_cluster: rc.seeds,
				prefix,
				node,
				heartbeat: 0.5,
				node_timeout: 15,
				registry: "sharded" as const,
			},
		});
		before(async () => {
			a = await startTestServer({
				storage: "sqlite",
				config: config("node-a"),
				users: [...USERS, ...SPARE].map((u) => [`${u}@localhost`, `pw-${u}`] as [string, string]),
			});
			b = await startTestServer({
				storage: "sqlite",
				dataDir: a.dataDir,
				config: config("node-b"),
			});
		});
		after(async () => {
			for (const c of clients) c.end();
			await b?.stop();
			await a?.stop();
		});

		test("kill -9 of the master that holds node B's stream: after its replica takes over, chat across the nodes and logins go on", async () => {
			const on = async (port: number, user: string, resource: string, priority?: number) => {
				const c = await online(port, user, resource, priority === undefined ? {} : { priority });
				clients.push(c);
				return c;
			};
			const alice = await on(a.port, "alice", "a1");
			const bob = await on(b.port, "bob", "b1");
			const mark0 = bob.received.length;
			alice.send(
				"<message to='bob@localhost/b1' id='f0' type='chat'><body>before</body></message>",
			);
			await message(bob, "f0", mark0);
			const stream = `${prefix}:stream:{node-b}`;
			const old = await rc.masterOf(stream);
			// A user on node B whose registry entry lives on that shard; node A has it cached (it
			// routed a message there) and listens to its changes on the shard's channel.
			const keys = keysFor({ redis: "", redis_cluster: rc.seeds, prefix });
			let user = "";
			for (const u of SPARE)
				if ((await rc.masterOf(keys.jidHash(`${u}@localhost`))) === old) {
					user = u;
					break;
				}
			assert.ok(user, "a spare user's registry hash is on the shard that fails over");
			const x1 = await on(b.port, user, "x1", 1);
			const markX = x1.received.length;
			alice.send(`<message to='${user}@localhost' id='g0' type='chat'><body>hi</body></message>`);
			await message(x1, "g0", markX);
			await rc.kill(old);
			// Its second resource logs in while the shard has no master: the registry change (and
			// its SPUBLISH on the shard) lands on the new master, possibly before node A's sharded
			// subscription has moved there (docs/scaling.md "Redis Cluster", "Failover").
			const x2Login = on(b.port, user, "x2", 5);
			await waitFor(
				async () => (await rc.masterOf(stream).catch(() => old)) !== old,
				"a replica to take the shard over",
				30_000,
			);
			// Sent once the shard has a master again; the XADD and node B's read find it.
			const mark = bob.received.length;
			alice.send("<message to='bob@localhost/b1' id='f1' type='chat'><body>after</body></message>");
			assert.match(
				await bob.waitFor(/id="f1"[\s\S]*?<body>after<\/body>/, mark, 30_000),
				/alice@localhost\/a1/,
			);
			const markA = alice.received.length;
			bob.send("<message to='alice@localhost/a1' id='f2' type='chat'><body>back</body></message>");
			await alice.waitFor(/id="f2"/, markA, 30_000);
			// A login after the failover is found from the other node (its registry entry and channel).
			const erin = await on(b.port, "erin", "e1");
			const markE = erin.received.length;
			alice.send("<message to='erin@localhost' id='f3' type='chat'><body>new</body></message>");
			await erin.waitFor(/id="f3"[\s\S]*?<body>new<\/body>/, markE, 30_000);
			// RFC 6121 §8.5.3.1: a message to an available full JID goes to that resource. Node A
			// knows the resource that logged in during the failover once it resynchronised after the
			// masters changed; without that its cached entry lacks x2, and §8.5.3.2.1 sends the
			// messages to x1 instead. Sent again until one arrives (A resyncs a little after).
			const x2 = await x2Login;
			const markX2 = x2.received.length;
			let n = 0;
			let polls = 0;
			await waitFor(
				() => {
					if (x2.received.slice(markX2).includes('id="g1-')) return true;
					if (polls++ % 50 === 0)
						alice.send(
							`<message to='${user}@localhost/x2' id='g1-${n++}' type='chat'><body>during</body></message>`,
						);
					return false;
				},
				"node A to see the resource that logged in during the failover",
				30_000,
			);
			assert.equal(a.server.cluster?.leader, true, "node A still leads: nobody was declared dead");
		});
	});
});
