/**
 * Metrics of a server instance (issue 15 "Metrics", issue 21 "counted in metrics"): real
 * clients log in over TCP and WebSocket, chat, fail a login, and `Server.metricsText()` shows
 * it in the Prometheus text format (docs/architecture.md "Metrics"). Two servers in one process
 * count apart.
 */
import assert from "node:assert/strict";
import { connect as tcpConnect } from "node:net";
import { after, before, describe, test } from "node:test";
import { xml } from "@xmpp/client";
import type { Server } from "../../src/core/server.ts";
import { startTestServer, type TestServer } from "../helpers/server.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect } from "../helpers/xmpp-client.ts";

/** The samples of a text exposition: `name{label="v",...}` -> value, labels as written. */
async function scrape(server: Server): Promise<Map<string, number>> {
	const { contentType, body } = await server.metricsText();
	assert.match(contentType, /^text\/plain; version=0\.0\.4/);
	const samples = new Map<string, number>();
	for (const line of body.split("\n")) {
		if (line === "" || line.startsWith("#")) continue;
		const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
		assert.ok(m, `a sample line: ${line}`);
		samples.set(m[1] as string, Number(m[2]));
	}
	return samples;
}

function value(samples: Map<string, number>, key: string): number | undefined {
	return samples.get(key);
}

const USERS: [string, string][] = [
	["alice@localhost", "alice-secret"],
	["bob@localhost", "bob-secret"],
];

describe("metrics", () => {
	let a: TestServer;
	let b: TestServer;

	before(async () => {
		a = await startTestServer({ users: USERS });
		b = await startTestServer({ users: USERS });
	});
	after(async () => {
		await a?.stop();
		await b?.stop();
	});

	test("sessions by transport, stanzas by kind, auth by mechanism and storage latency are exposed", async () => {
		const alice = await connect(`xmpp://127.0.0.1:${a.port}`, "alice", "alice-secret", {
			mechanism: "SCRAM-SHA-1",
			resource: "laptop",
		});
		const bob = await connect(
			`wss://localhost:${a.httpsPort}/xmpp-websocket`,
			"bob",
			"bob-secret",
			{ mechanism: "SCRAM-SHA-1", resource: "phone" },
		);
		try {
			await assert.rejects(
				connect(`xmpp://127.0.0.1:${a.port}`, "alice", "wrong", { mechanism: "SCRAM-SHA-1" }),
				// RFC 6120 §6.5.10 not-authorized.
				(err: Error & { condition?: string }) => err.condition === "not-authorized",
			);
			for (const id of ["m1", "m2", "m3"])
				await alice.xmpp.send(
					xml("message", { to: "bob@localhost/phone", type: "chat", id }, xml("body", {}, id)),
				);
			await waitFor(
				() => bob.stanzas.find((s) => s.is("message") && s.attrs.id === "m3"),
				"bob to receive m3",
			);
			// An IQ the server answers itself (XEP-0199 §4.3 server ping): one in, one out.
			await alice.xmpp.iqCaller.get(xml("ping", { xmlns: "urn:xmpp:ping" }), "localhost");

			const s = await scrape(a.server);
			assert.equal(value(s, 'parley_sessions{transport="tcp"}'), 1);
			assert.equal(value(s, 'parley_sessions{transport="websocket"}'), 1);
			assert.equal(value(s, 'parley_sessions{transport="bosh"}'), 0);
			assert.equal(value(s, "parley_sessions_hibernating"), 0);
			assert.equal(value(s, 'parley_stanzas_received_total{stream="c2s",kind="message"}'), 3);
			assert.equal(value(s, 'parley_stanzas_sent_total{stream="c2s",kind="message"}'), 3);
			assert.equal(value(s, 'parley_stanzas_received_total{stream="c2s",kind="iq"}'), 1);
			assert.equal(value(s, 'parley_stanzas_sent_total{stream="c2s",kind="iq"}'), 1);
			assert.equal(value(s, 'parley_stanzas_received_total{stream="s2s",kind="message"}'), 0);
			assert.equal(value(s, 'parley_auth_total{mechanism="SCRAM-SHA-1",result="success"}'), 2);
			assert.equal(value(s, 'parley_auth_total{mechanism="SCRAM-SHA-1",result="failure"}'), 1);
			assert.equal(
				value(s, 'parley_connections_refused_total{limit="limits.connections_per_ip"}'),
				0,
			);
			assert.equal(value(s, 'parley_s2s_streams{direction="incoming"}'), 0);
			assert.equal(value(s, "parley_component_streams"), 0);
			// Logging in reads the account's credentials (SCRAM, RFC 5802) from storage.
			assert.ok(
				(value(s, 'parley_storage_operation_seconds_count{operation="keyval_get"}') ?? 0) > 0,
			);
			assert.ok((value(s, "process_resident_memory_bytes") ?? 0) > 0);
			assert.ok((value(s, "nodejs_heap_size_used_bytes") ?? 0) > 0);
			assert.ok(value(s, "nodejs_eventloop_lag_p99_seconds") !== undefined);
			// Not in a cluster: no node label.
			assert.ok(![...s.keys()].some((k) => k.includes("node=")));

			// The other server in this process saw none of it.
			const other = await scrape(b.server);
			assert.equal(value(other, 'parley_sessions{transport="tcp"}'), 0);
			assert.equal(value(other, 'parley_stanzas_received_total{stream="c2s",kind="message"}'), 0);
			assert.equal(
				value(other, 'parley_auth_total{mechanism="SCRAM-SHA-1",result="success"}'),
				undefined,
			);
		} finally {
			await alice.xmpp.stop();
			await bob.xmpp.stop();
		}
		// A session that ended leaves the gauge (read at scrape time, never out of step).
		await waitFor(async () => {
			const s = await scrape(a.server);
			return value(s, 'parley_sessions{transport="tcp"}') === 0 ? true : undefined;
		}, "alice's session to end");
	});

	test("a second server counts its own logins", async () => {
		const before = await scrape(a.server);
		const carol = await connect(`xmpp://127.0.0.1:${b.port}`, "alice", "alice-secret", {
			mechanism: "PLAIN",
			resource: "desk",
		});
		try {
			const s = await scrape(b.server);
			assert.equal(value(s, 'parley_auth_total{mechanism="PLAIN",result="success"}'), 1);
			assert.equal(value(s, 'parley_sessions{transport="tcp"}'), 1);
			const same = await scrape(a.server);
			assert.equal(value(same, 'parley_auth_total{mechanism="PLAIN",result="success"}'), undefined);
			assert.equal(
				value(same, 'parley_auth_total{mechanism="SCRAM-SHA-1",result="success"}'),
				value(before, 'parley_auth_total{mechanism="SCRAM-SHA-1",result="success"}'),
			);
		} finally {
			await carol.xmpp.stop();
		}
	});
});

test("a connection over limits.connections_per_ip is counted as refused", async () => {
	const t = await startTestServer({
		config: { limits: { connections_per_ip: 1, exempt_ips: [] } },
	});
	const open = (port: number) =>
		new Promise<ReturnType<typeof tcpConnect>>((resolve, reject) => {
			const s = tcpConnect(port, "127.0.0.1", () => resolve(s));
			s.once("error", reject);
		});
	try {
		const first = await open(t.port);
		const second = await open(t.port);
		// The server closes the one over the limit at once (src/c2s/tcp.ts).
		await new Promise((resolve) => second.once("close", resolve));
		const { body } = await t.server.metricsText();
		assert.match(
			body,
			/^parley_connections_refused_total\{limit="limits\.connections_per_ip"\} 1$/m,
		);
		first.destroy();
	} finally {
		await t.stop();
	}
});

test("metrics.enabled = false: nothing is counted and the exposition is empty", async () => {
	const t = await startTestServer({ users: USERS, config: { metrics: { enabled: false } } });
	try {
		const alice = await connect(`xmpp://127.0.0.1:${t.port}`, "alice", "alice-secret", {
			mechanism: "PLAIN",
			resource: "x",
		});
		await alice.xmpp.stop();
		const { body } = await t.server.metricsText();
		assert.equal(body, "");
	} finally {
		await t.stop();
	}
});
