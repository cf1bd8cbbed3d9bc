/** ModuleManager (src/core/modules/manager.ts): options, load/unload bookkeeping, failed loads. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { z } from "zod";
import builtinVersion from "../../modules/version.ts";
import { MemoryBackend } from "../../storage/memory.ts";
import { x } from "../../xml/element.ts";
import { configSchema } from "../config/schema.ts";
import type { Host } from "../contracts.ts";
import { HANDLED } from "../events.ts";
import { VirtualHost } from "../host.ts";
import { createSilentLogger } from "../log.ts";
import { Server } from "../server.ts";
import { defineModule, type ModuleDefinition } from "./define.ts";
import { ModuleError, ModuleManager } from "./manager.ts";

const HOST = "a.example";

/** A host on a server that is never started: enough for the module manager. */
function setup(
	modules: ModuleDefinition<never>[],
	moduleOptions: Record<string, Record<string, unknown>> = {},
): { host: Host; manager: ModuleManager } {
	const config = configSchema.parse({
		hosts: { [HOST]: { modules: [], module_options: moduleOptions } },
	});
	const server = new Server(
		config,
		{ modules: [], openStorage: () => new MemoryBackend() },
		{ log: createSilentLogger() },
	);
	const hostConfig = config.hosts[HOST];
	assert.ok(hostConfig);
	const host = new VirtualHost(HOST, hostConfig, server);
	const registry = new Map<string, ModuleDefinition<unknown>>(
		modules.map((m) => [m.name, m as ModuleDefinition<unknown>]),
	);
	const manager = new ModuleManager(host, registry);
	host.modules = manager;
	return { host, manager };
}

/** A module that registers one of everything the API can register. */
const everything = defineModule({
	name: "everything",
	description: "test",
	load(api) {
		api.hook("iq-get/host/urn:test:query", () => HANDLED);
		api.hook("message/bare", () => undefined, 5);
		api.addFeature("urn:test:feature");
		api.addAccountFeature("urn:test:account");
		api.addIdentity({ category: "pubsub", type: "pep" });
		api.addExtension(x("x", { xmlns: "jabber:x:data", type: "result" }));
	},
});

const snapshot = (host: Host) => ({
	features: [...host.features.keys()],
	accountFeatures: [...host.accountFeatures.keys()],
	identities: host.identities.length,
	extensions: host.extensions.length,
	hooks: ["iq-get/host/urn:test:query", "message/bare"].filter((e) => host.events.has(e)),
});

test("unload removes exactly what load added: hooks, features, identities, extensions", async () => {
	const { host, manager } = setup([everything as ModuleDefinition<never>]);
	const before = snapshot(host);
	await manager.load("everything");
	assert.deepEqual(manager.loaded, ["everything"]);
	const loaded = snapshot(host);
	assert.deepEqual(loaded.features, ["urn:test:feature"]);
	assert.deepEqual(loaded.accountFeatures, ["urn:test:account"]);
	assert.equal(loaded.identities, before.identities + 1);
	assert.equal(loaded.extensions, 1);
	assert.equal(loaded.hooks.length, 2);
	assert.equal(await host.events.fire("iq-get/host/urn:test:query", {}), true);

	await manager.unload("everything");
	assert.equal(manager.isLoaded("everything"), false);
	assert.deepEqual(snapshot(host), before);
	assert.equal(await host.events.fire("iq-get/host/urn:test:query", {}), false);

	// Loading again works and registers everything once more.
	await manager.load("everything");
	assert.deepEqual(snapshot(host), loaded);
});

test("a feature two modules add stays until both are unloaded (reference count)", async () => {
	const a = defineModule({ name: "a", description: "", load: (api) => api.addFeature("urn:f") });
	const b = defineModule({ name: "b", description: "", load: (api) => api.addFeature("urn:f") });
	const { host, manager } = setup([a, b] as ModuleDefinition<never>[]);
	await manager.load("a");
	await manager.load("b");
	await manager.unload("a");
	assert.ok(host.features.has("urn:f"));
	await manager.unload("b");
	assert.ok(!host.features.has("urn:f"));
});

test("timers from api.every and onUnload callbacks are cleaned up on unload", async (t) => {
	t.mock.timers.enable({ apis: ["setInterval"] });
	let ticks = 0;
	let unloaded = 0;
	const m = defineModule({
		name: "timer",
		description: "",
		load(api) {
			api.every(1000, () => void ticks++);
			api.onUnload(async () => {
				unloaded++;
			});
		},
	});
	const { manager } = setup([m as ModuleDefinition<never>]);
	await manager.load("timer");
	t.mock.timers.tick(3000);
	assert.equal(ticks, 3);
	await manager.unload("timer");
	assert.equal(unloaded, 1);
	t.mock.timers.tick(5000);
	assert.equal(ticks, 3, "the interval was cleared");
	await manager.unload("timer"); // unloading twice is a no-op
	assert.equal(unloaded, 1);
});

test("a load that throws removes what it registered before failing, and can be retried", async () => {
	let fail = true;
	const flaky = defineModule({
		name: "flaky",
		description: "",
		async load(api) {
			api.hook("presence/bare", () => HANDLED);
			api.addFeature("urn:flaky");
			api.addIdentity({ category: "x", type: "y" });
			if (fail) throw new Error("cannot start");
		},
	});
	const { host, manager } = setup([flaky as ModuleDefinition<never>]);
	const identities = host.identities.length;
	await assert.rejects(manager.load("flaky"), /cannot start/);
	assert.equal(manager.isLoaded("flaky"), false);
	assert.equal(host.events.has("presence/bare"), false);
	assert.equal(host.features.has("urn:flaky"), false);
	assert.equal(host.identities.length, identities);
	fail = false;
	await manager.load("flaky");
	assert.ok(manager.isLoaded("flaky"));
	assert.ok(host.features.has("urn:flaky"));
});

test("an unknown module is a ModuleError naming it and the host", async () => {
	const { manager } = setup([]);
	await assert.rejects(manager.load("nope"), (err: unknown) => {
		assert.ok(err instanceof ModuleError);
		assert.match(err.message, /"nope"/);
		assert.match(err.message, /a\.example/);
		return true;
	});
});

test("invalid options: the error names the key path in the config file", async () => {
	const { manager } = setup([builtinVersion as ModuleDefinition<never>], {
		version: { show_os: "yes" },
	});
	await assert.rejects(manager.load("version"), (err: unknown) => {
		assert.ok(err instanceof ModuleError);
		assert.match(err.message, /^hosts\."a\.example"\.module_options\.version: show_os: /);
		return true;
	});
	assert.equal(manager.isLoaded("version"), false);
});

test("invalid options: nested keys and unknown keys are named too", async () => {
	const nested = defineModule({
		name: "nested",
		description: "",
		options: z.strictObject({
			limits: z.strictObject({ max: z.number().int().default(1) }).prefault({}),
		}),
		load() {},
	});
	const { manager } = setup([nested as ModuleDefinition<never>], {
		nested: { limits: { max: "many" }, colour: "red" },
	});
	await assert.rejects(manager.load("nested"), (err: unknown) => {
		assert.ok(err instanceof ModuleError);
		assert.match(err.message, /module_options\.nested: /);
		assert.match(err.message, /limits\.max: /);
		assert.match(err.message, /colour/);
		return true;
	});
});

test("valid options are parsed with defaults and given to load()", async () => {
	let seen: unknown;
	const withOpts = defineModule({
		name: "opts",
		description: "",
		options: z.strictObject({ a: z.number().default(1), b: z.string().default("x") }),
		load(api) {
			seen = api.options;
		},
	});
	const { manager } = setup([withOpts as ModuleDefinition<never>], { opts: { a: 5 } });
	await manager.load("opts");
	assert.deepEqual(seen, { a: 5, b: "x" });
});

test("unloadAll unloads in reverse load order", async () => {
	const order: string[] = [];
	const mk = (name: string) =>
		defineModule({
			name,
			description: "",
			load: (api) => api.onUnload(() => void order.push(name)),
		});
	const { manager } = setup([mk("one"), mk("two"), mk("three")] as ModuleDefinition<never>[]);
	for (const n of ["one", "two", "three"]) await manager.load(n);
	await manager.unloadAll();
	assert.deepEqual(order, ["three", "two", "one"]);
	assert.deepEqual(manager.loaded, []);
});
