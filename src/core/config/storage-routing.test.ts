/** The [storage] routing keys (issue 4: a backend per host and per store). */
import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { describe, test } from "node:test";
import { ConfigError, parseConfig } from "./load.ts";

const parse = (text: string) => parseConfig(text, "parley.toml", { baseDir: tmpdir() });

function problems(text: string): string[] {
	try {
		parse(text);
	} catch (e) {
		assert.ok(e instanceof ConfigError, String(e));
		return e.problems;
	}
	assert.fail("the configuration was accepted");
}

const BACKENDS = `
[storage]
backend = "sqlite"

[storage.backends.pg]
backend = "postgres"
url = "postgres://parley@127.0.0.1/parley"
pool_size = 4

[storage.backends.cache]
backend = "memory"
`;

describe("storage backends per store and per host", () => {
	test("named backends, store routes and host routes are read with their defaults", () => {
		const c = parse(`${BACKENDS}
[storage.stores]
archive = "pg"
offline = "cache"

[storage.hosts."example.org"]
default = "pg"
stores = { vcard = "default" }

[hosts."example.org"]
`);
		assert.equal(c.storage.backends.pg?.backend, "postgres");
		assert.equal(c.storage.backends.pg?.pool_size, 4);
		assert.equal(c.storage.backends.pg?.schema, "public");
		assert.equal(c.storage.backends.cache?.backend, "memory");
		assert.deepEqual(c.storage.stores, { archive: "pg", offline: "cache" });
		assert.deepEqual(c.storage.hosts, {
			"example.org": { default: "pg", stores: { vcard: "default" } },
		});
	});

	test("without routing keys the storage table is as before", () => {
		const c = parse("");
		assert.deepEqual(c.storage.backends, {});
		assert.deepEqual(c.storage.stores, {});
		assert.deepEqual(c.storage.hosts, {});
	});

	test("an unknown backend name is an error naming the key and its line", () => {
		assert.deepEqual(
			problems(`${BACKENDS}
[storage.stores]
offline = "memory"

[storage.hosts."example.org"]
default = "pgg"

[hosts."example.org"]
`),
			[
				'parley.toml:14: storage.stores.offline: no such storage backend (known: default, pg, cache), got "memory"',
				'parley.toml:17: storage.hosts."example.org".default: no such storage backend (known: default, pg, cache), got "pgg"',
			],
		);
	});

	test("a route for a host that is not configured, a backend named default, a postgres backend without url", () => {
		const p = problems(`
[storage.backends.default]
backend = "memory"

[storage.backends.pg]
backend = "postgres"

[storage.hosts."typo.example"]
stores = { offline = "default" }
`);
		assert.equal(p.length, 3, p.join("\n"));
		assert.match(
			p[0] ?? "",
			/^parley\.toml:2: storage\.backends\.default: "default" is the backend \[storage\] itself describes/,
		);
		assert.match(p[1] ?? "", /^parley\.toml:5: storage\.backends\.pg\.url: missing/);
		assert.match(
			p[2] ?? "",
			/^parley\.toml:8: storage\.hosts\."typo\.example": "typo\.example" is not a host/,
		);
	});

	test("unknown keys inside a backend are errors", () => {
		assert.deepEqual(
			problems('[storage.backends.pg]\nbackend = "postgres"\nurl = "x"\nbogus = 1\n'),
			['parley.toml:4: unknown key "bogus" in [storage.backends.pg]'],
		);
	});
});

describe("anonymous hosts (issue 20)", () => {
	test("authentication and the anonymous limits are read with their defaults", () => {
		const c = parse(
			'[hosts."guest.example"]\nauthentication = "anonymous"\n[hosts."example.org"]\n',
		);
		assert.equal(c.hosts["guest.example"]?.authentication, "anonymous");
		assert.deepEqual(c.hosts["guest.example"]?.anonymous, {
			max_sessions: 1000,
			max_sessions_per_ip: 16,
			allow_s2s: false,
			allow_local_users: true,
		});
		assert.equal(c.hosts["example.org"]?.authentication, "accounts");
	});

	test("no registration module and no storage route for an anonymous host", () => {
		const p = problems(`
[hosts."guest.example"]
authentication = "anonymous"
modules = ["disco", "register"]

[storage.backends.pg]
backend = "postgres"
url = "postgres://x"

[storage.hosts."guest.example"]
default = "pg"
`);
		assert.equal(p.length, 2, p.join("\n"));
		assert.match(p[0] ?? "", /modules\[1\]: an anonymous host cannot offer in-band registration/);
		assert.match(p[1] ?? "", /storage\.hosts\."guest\.example": .* is an anonymous host/);
	});

	test("an unknown authentication method is an error", () => {
		const p = problems('[hosts."guest.example"]\nauthentication = "internal_hashed"\n');
		assert.equal(p.length, 1);
		assert.match(p[0] ?? "", /hosts\."guest\.example"\.authentication/);
	});
});
