/** S2SResolver (resolver.ts): static routes, SRV order (RFC 2782, XEP-0368), the fallback of RFC 6120 §3.2.2. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseRoute, S2SResolver, type SrvLookup } from "./resolver.ts";

type Srv = { name: string; port: number; priority: number; weight: number };

function lookup(records: Record<string, Srv[]>): SrvLookup {
	return {
		resolveSrv: async (name) => {
			const r = records[name];
			if (!r) throw Object.assign(new Error("queryNotFound"), { code: "ENOTFOUND" });
			return r;
		},
	};
}

test("a static route wins over DNS; tls: means XEP-0368 direct TLS; IPv6 in brackets", async () => {
	const r = new S2SResolver(
		{ "a.example": "10.0.0.5:5269", "b.example": "tls:[::1]:5270" },
		lookup({
			"_xmpp-server._tcp.a.example": [{ name: "x.example", port: 1, priority: 0, weight: 0 }],
		}),
	);
	assert.deepEqual(await r.resolve("a.example"), [
		{ host: "10.0.0.5", port: 5269, directTls: false },
	]);
	assert.deepEqual(await r.resolve("b.example"), [{ host: "::1", port: 5270, directTls: true }]);
	assert.deepEqual(parseRoute("localhost:1"), { host: "localhost", port: 1, directTls: false });
});

test("RFC 6120 §3.2.2: without SRV records, the domain itself on 5269", async () => {
	const r = new S2SResolver({}, lookup({}));
	assert.deepEqual(await r.resolve("c.example"), [
		{ host: "c.example", port: 5269, directTls: false },
	]);
});

test("RFC 2782: lowest priority first; XEP-0368: direct TLS first on a tie of priority without weight", async () => {
	const r = new S2SResolver(
		{},
		lookup({
			"_xmpp-server._tcp.d.example": [
				{ name: "late.d.example.", port: 5269, priority: 20, weight: 0 },
				{ name: "plain.d.example.", port: 5269, priority: 10, weight: 0 },
			],
			"_xmpps-server._tcp.d.example": [
				{ name: "tls.d.example.", port: 5270, priority: 10, weight: 0 },
			],
		}),
	);
	assert.deepEqual(await r.resolve("d.example"), [
		{ host: "tls.d.example", port: 5270, directTls: true },
		{ host: "plain.d.example", port: 5269, directTls: false },
		{ host: "late.d.example", port: 5269, directTls: false },
	]);
});

test("RFC 2782: a single '.' target says the service is not offered", async () => {
	const dot = [{ name: ".", port: 0, priority: 0, weight: 0 }];
	const r = new S2SResolver(
		{},
		lookup({ "_xmpp-server._tcp.e.example": dot, "_xmpps-server._tcp.e.example": dot }),
	);
	assert.deepEqual(await r.resolve("e.example"), []);
});

test("RFC 2782: within a priority every record is tried once, heavier ones first more often", async () => {
	const r = new S2SResolver(
		{},
		lookup({
			"_xmpp-server._tcp.f.example": [
				{ name: "heavy", port: 1, priority: 0, weight: 90 },
				{ name: "light", port: 2, priority: 0, weight: 10 },
			],
		}),
	);
	let heavyFirst = 0;
	for (let i = 0; i < 200; i++) {
		const t = await r.resolve("f.example");
		assert.deepEqual(t.map((x) => x.host).sort(), ["heavy", "light"]);
		if (t[0]?.host === "heavy") heavyFirst++;
	}
	assert.ok(heavyFirst > 100, `heavy first ${heavyFirst} times of 200`);
});
