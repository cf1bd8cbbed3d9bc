import assert from "node:assert/strict";
import { test } from "node:test";
import { register } from "prom-client";
import { ConnectionLimiter } from "../security/limits.ts";
import { MemoryBackend } from "../storage/memory.ts";
import { type Core, HIBERNATING, type Host, type Session } from "./contracts.ts";
import { EventBus } from "./events.ts";
import { ServerMetrics } from "./metrics.ts";

/** A core with one host holding `sessions`, as far as the metrics read it. */
function fakeCore(sessions: Partial<Session>[], s2s = { incoming: 0, outgoing: 0 }): Core {
	const byUser = new Map<string, Map<string, Session>>();
	for (const [i, s] of sessions.entries()) byUser.set(`u${i}`, new Map([["r", s as Session]]));
	const host = { name: "example.com", sessions: byUser, events: new EventBus() } as unknown as Host;
	return {
		hosts: new Map([["example.com", host]]),
		remote: { streamCounts: () => s2s },
		connectionLimiter: new ConnectionLimiter(1),
		unauthenticatedLimiter: new ConnectionLimiter(1),
	} as unknown as Core;
}

async function samples(m: ServerMetrics): Promise<Map<string, number>> {
	const out = new Map<string, number>();
	for (const line of (await m.text()).body.split("\n")) {
		if (!line || line.startsWith("#")) continue;
		const i = line.lastIndexOf(" ");
		out.set(line.slice(0, i), Number(line.slice(i + 1)));
	}
	return out;
}

test("counts and gauges read at scrape time", async () => {
	const core = fakeCore(
		[
			{ transport: "tcp", data: new Map() },
			{ transport: "tcp", data: new Map([[HIBERNATING, true]]) },
			{ transport: "bosh", data: new Map() },
			// A replica of another cluster node's session: not ours to count.
			{ data: new Map() },
		],
		{ incoming: 2, outgoing: 3 },
	);
	const m = new ServerMetrics(core);
	m.stanzaIn("c2s", "message");
	m.stanzaIn("c2s", "message");
	m.stanzaIn("s2s", "presence");
	m.stanzaOut("component", "iq");
	m.stanzaIn("c2s", "stream:features"); // not a stanza: ignored
	m.auth("SCRAM-SHA-256", true);
	m.auth("SCRAM-SHA-256", false);
	m.auth("", false);
	m.deadPeer("c2s");
	m.componentStream(1);
	m.refused("s2s.max_streams_per_domain");
	core.connectionLimiter.acquire("192.0.2.1");
	core.connectionLimiter.acquire("192.0.2.1"); // over the limit of 1
	core.unauthenticatedLimiter.acquire("192.0.2.2");
	core.unauthenticatedLimiter.acquire("192.0.2.2");
	core.unauthenticatedLimiter.acquire("192.0.2.2");
	const s = await samples(m);
	assert.equal(s.get('parley_stanzas_received_total{stream="c2s",kind="message"}'), 2);
	assert.equal(s.get('parley_stanzas_received_total{stream="s2s",kind="presence"}'), 1);
	assert.equal(s.get('parley_stanzas_sent_total{stream="component",kind="iq"}'), 1);
	assert.equal(s.get('parley_stanzas_sent_total{stream="c2s",kind="message"}'), 0);
	assert.equal(s.get('parley_auth_total{mechanism="SCRAM-SHA-256",result="success"}'), 1);
	assert.equal(s.get('parley_auth_total{mechanism="SCRAM-SHA-256",result="failure"}'), 1);
	assert.equal(s.get('parley_auth_total{mechanism="",result="failure"}'), 1);
	assert.equal(s.get('parley_dead_peers_total{stream="c2s"}'), 1);
	assert.equal(s.get("parley_component_streams"), 1);
	assert.equal(s.get('parley_connections_refused_total{limit="limits.connections_per_ip"}'), 1);
	assert.equal(s.get('parley_connections_refused_total{limit="limits.unauthenticated_per_ip"}'), 2);
	assert.equal(s.get('parley_connections_refused_total{limit="s2s.max_streams_per_domain"}'), 1);
	assert.equal(s.get('parley_sessions{transport="tcp"}'), 2);
	assert.equal(s.get('parley_sessions{transport="bosh"}'), 1);
	assert.equal(s.get('parley_sessions{transport="websocket"}'), 0);
	assert.equal(s.get("parley_sessions_hibernating"), 1);
	assert.equal(s.get('parley_s2s_streams{direction="incoming"}'), 2);
	assert.equal(s.get('parley_s2s_streams{direction="outgoing"}'), 3);
	// Counters keep counting across scrapes (they are copied, not moved).
	m.stanzaIn("c2s", "message");
	const again = await samples(m);
	assert.equal(again.get('parley_stanzas_received_total{stream="c2s",kind="message"}'), 3);
});

test("two registries count apart, and prom-client's global one gets nothing", async () => {
	const a = new ServerMetrics(fakeCore([]));
	const b = new ServerMetrics(fakeCore([]));
	a.stanzaIn("c2s", "iq");
	assert.equal((await samples(a)).get('parley_stanzas_received_total{stream="c2s",kind="iq"}'), 1);
	assert.equal((await samples(b)).get('parley_stanzas_received_total{stream="c2s",kind="iq"}'), 0);
	assert.equal((await register.metrics()).trim(), "");
});

test("in a cluster every series carries the node's name", async () => {
	const m = new ServerMetrics(fakeCore([]));
	m.setNode("n1");
	const keys = [...(await samples(m)).keys()];
	assert.ok(keys.length > 20);
	for (const k of keys) assert.match(k, /node="n1"/, k);
});

test("storage operations are timed, through one view per backend", async () => {
	const m = new ServerMetrics(fakeCore([]));
	const raw = new MemoryBackend();
	const timed = m.timeStorage(raw);
	assert.equal(m.timeStorage(raw), timed);
	assert.equal(timed.keyval("h", "s"), timed.keyval("h", "s"));
	await timed.keyval("h", "s").set("u", { a: 1 });
	assert.deepEqual(await timed.keyval("h", "s").get("u"), { a: 1 });
	await timed.archive("h", "a").append("u", { value: "x" });
	const s = await samples(m);
	assert.equal(s.get('parley_storage_operation_seconds_count{operation="keyval_set"}'), 1);
	assert.equal(s.get('parley_storage_operation_seconds_count{operation="keyval_get"}'), 1);
	assert.equal(s.get('parley_storage_operation_seconds_count{operation="archive_append"}'), 1);
	assert.equal(
		s.get('parley_storage_operation_seconds_bucket{le="+Inf",operation="keyval_get"}'),
		1,
	);
	// What the raw backend holds is what went through the view.
	assert.deepEqual(await raw.keyval("h", "s").get("u"), { a: 1 });
});

test("the timed view hands an archive append's options to the backend (lazy appends stay lazy)", async () => {
	const m = new ServerMetrics(fakeCore([]));
	const raw = new MemoryBackend();
	const seen: unknown[] = [];
	const store = raw.archive("h", "a");
	const archive = raw.archive.bind(raw);
	raw.archive = ((host: string, name: string) =>
		host === "h" && name === "a"
			? {
					...store,
					append: (
						user: string,
						item: Parameters<typeof store.append>[1],
						opts?: { lazy?: boolean },
					) => {
						seen.push(opts);
						return store.append(user, item, opts);
					},
				}
			: archive(host, name)) as typeof raw.archive;
	const timed = m.timeStorage(raw).archive("h", "a");
	await timed.append("u", { value: "x" }, { lazy: true });
	await timed.append("u", { value: "y" });
	assert.deepEqual(seen, [{ lazy: true }, undefined]);
	assert.equal(
		(await samples(m)).get('parley_storage_operation_seconds_count{operation="archive_append"}'),
		2,
	);
});

test("event loop lag is measured between start and stop", async () => {
	const m = new ServerMetrics(fakeCore([]));
	m.start();
	// The monitor's timer is running once the loop has turned.
	await new Promise((r) => setTimeout(r, 50));
	const until = Date.now() + 100;
	while (Date.now() < until) {
		// Blocks the loop for a moment, so there is a delay to see.
	}
	await new Promise((r) => setTimeout(r, 50));
	const s = await samples(m);
	m.stop();
	// The monitor's 20 ms timer was held up for at least 80 of the 100 ms blocked.
	assert.ok((s.get("nodejs_eventloop_lag_max_seconds") ?? 0) > 0.05);
	assert.ok((s.get("process_resident_memory_bytes") ?? 0) > 0);
	assert.ok((s.get("process_cpu_seconds_total") ?? 0) > 0);
});
