import assert from "node:assert/strict";
import { test } from "node:test";
import { type Config, configSchema } from "./config/schema.ts";
import { changedKeys, planReload, sameValue } from "./reload.ts";

const config = (raw: Record<string, unknown> = {}): Config => configSchema.parse(raw);

test("changedKeys: the same configuration changes nothing", () => {
	assert.deepEqual(changedKeys(config(), config()), []);
	const full = { hosts: { "a.test": { modules: ["disco", "ping"] } }, log: { level: "warn" } };
	assert.deepEqual(changedKeys(config(full), config(full)), []);
});

test("changedKeys: key order is no change (a file rewritten, environment variables merged)", () => {
	const a = config({ hosts: { "a.test": {}, "b.test": {} }, limits: { stanza_size: 4096 } });
	const b = config({ limits: { stanza_size: 4096 }, hosts: { "b.test": {}, "a.test": {} } });
	assert.deepEqual(changedKeys(a, b), []);
});

test("changedKeys: an absent optional key equals an undefined one", () => {
	const a = config({ hosts: { "a.test": {} } });
	const b = structuredClone(a);
	(b.hosts["a.test"] as Config["hosts"][string]).require_encryption = undefined;
	assert.deepEqual(changedKeys(a, b), []);
	assert.equal(sameValue({ x: undefined }, {}), true);
	assert.equal(sameValue({ x: null }, {}), false);
});

test("changedKeys: down to the second level, one entry per changed key", () => {
	const a = config();
	const b = config({
		limits: { stanza_size: 4096, max_depth: 10 },
		http: { websocket: { path: "/ws" } },
		log: { level: "debug" },
	});
	assert.deepEqual(changedKeys(a, b).sort(), [
		"http.websocket",
		"limits.max_depth",
		"limits.stanza_size",
		"log.level",
	]);
});

test("changedKeys: hosts added, removed and changed, including a reordered modules list", () => {
	const a = config({ hosts: { "a.test": { modules: ["disco", "ping"] }, "b.test": {} } });
	const b = config({ hosts: { "a.test": { modules: ["ping", "disco"] }, "c.test": {} } });
	assert.deepEqual(changedKeys(a, b).sort(), ["hosts.a.test", "hosts.b.test", "hosts.c.test"]);
});

test("planReload: what applies in place and what waits for a restart", () => {
	const a = config();
	const b = config({
		log: { level: "debug", format: "json" },
		auth: { sasl2: false, scram_iterations: 8192 },
		sessions: { idle_ping: 30 },
		tls: { self_signed: false },
		listeners: { c2s: { port: 5322 } },
		storage: { path: "other.sqlite" },
		cluster: { heartbeat: 3 },
		s2s: { secure_auth: true },
		server: { name: "Other" },
	});
	const plan = planReload(a, b, false);
	assert.deepEqual(plan.simple.sort(), [
		"auth.sasl2",
		"log.level",
		"server.name",
		"sessions.idle_ping",
		"tls.self_signed",
	]);
	assert.deepEqual(plan.restartNeeded.sort(), [
		"auth.scram_iterations",
		"cluster.heartbeat",
		"listeners.c2s",
		"log.format",
		"s2s.secure_auth",
		"storage.path",
	]);
	assert.deepEqual(plan.hostKeys, []);
});

test("planReload: hosts added, removed, disabled and changed, with the keys of what changed", () => {
	const a = config({
		hosts: {
			stays: { modules: ["disco", "version"], module_options: { ping: { x: 1 } } },
			goes: {},
			disabled: { enabled: false },
			"turned-off": {},
		},
	});
	const b = config({
		hosts: {
			stays: {
				modules: ["disco"],
				module_options: { ping: { x: 2 }, version: {} },
				require_encryption: false,
			},
			disabled: { enabled: false, modules: [] },
			"turned-off": { enabled: false },
			comes: {},
		},
	});
	const plan = planReload(a, b, false);
	assert.deepEqual(plan.addedHosts, ["comes"]);
	assert.deepEqual(plan.removedHosts.sort(), ["goes", "turned-off"]);
	assert.deepEqual(plan.changedHosts, ["stays"]);
	assert.deepEqual(plan.hostKeys.sort(), [
		"hosts.comes",
		"hosts.disabled",
		"hosts.goes",
		"hosts.stays.module_options.ping",
		"hosts.stays.module_options.version",
		"hosts.stays.modules",
		"hosts.stays.require_encryption",
		"hosts.turned-off",
	]);
	assert.deepEqual(plan.restartNeeded, []);
});

test("planReload: an anonymous host added, or a host changing how users log in, waits for a restart (its stores live in memory)", () => {
	const a = config({ hosts: { users: {} } });
	const b = config({
		hosts: { users: { authentication: "anonymous" }, guests: { authentication: "anonymous" } },
	});
	const plan = planReload(a, b, false);
	assert.deepEqual(plan.restartNeeded.sort(), ["hosts.guests", "hosts.users.authentication"]);
	assert.deepEqual([...plan.keptHosts].sort(), ["guests", "users"]);
	assert.deepEqual(plan.addedHosts, []);
	assert.deepEqual(plan.changedHosts, []);
	// Taking an anonymous host away needs no restart.
	const back = planReload(b, config({ hosts: { other: {} } }), false);
	assert.deepEqual(back.removedHosts.sort(), ["guests", "users"]);
	assert.deepEqual(back.restartNeeded, []);
});

test("planReload: components added, removed and changed; an external one without the component port needs a restart", () => {
	const a = config({
		components: {
			"rooms.a.test": { type: "muc" },
			"old.a.test": { type: "pubsub" },
		},
	});
	const b = config({
		components: {
			"rooms.a.test": { type: "muc", name: "Rooms" },
			"gw.a.test": { type: "external", secret: "s" },
		},
	});
	const plan = planReload(a, b, false);
	assert.deepEqual(plan.addedComponents, ["gw.a.test"]);
	assert.deepEqual(plan.removedComponents, ["old.a.test"]);
	assert.deepEqual(plan.changedComponents, ["rooms.a.test"]);
	assert.deepEqual(plan.restartNeeded, ["listeners.component"]);
	// With the port already open, the component only needs to be added.
	assert.deepEqual(planReload(a, b, true).restartNeeded, []);
	// Turning the port off is a change of its own that needs a restart: reported once.
	const closed = config({
		...b,
		listeners: { component: { enabled: false } },
	});
	assert.deepEqual(planReload(a, closed, false).restartNeeded, ["listeners.component"]);
});
