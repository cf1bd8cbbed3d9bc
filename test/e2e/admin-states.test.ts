/**
 * Issue 15, "The admin API and its state machine": every state × every route. Each state is
 * reached the way it is in production (a start held open, a bad file and a reload, a start that
 * throws, an operation run through `runOperation`, a stop held open), then every route of the
 * API is asked: a route the state does not serve answers 503 with `Retry-After` and the state's
 * name as the code; a route it serves never does. `/health` is 200 exactly in the states that
 * serve XMPP. Also: two lifecycle operations at once get 409 naming the one that runs.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { adminCommands } from "../../src/admin/commands/index.ts";
import {
	type RouteGroup,
	STATE_SPECS,
	STATES,
	type StateName,
	serves,
} from "../../src/admin/states.ts";
import type { Server } from "../../src/core/server.ts";
import { type AdminHarness, startAdmin } from "../helpers/admin.ts";
import { waitFor } from "../helpers/wait.ts";

/** Every route of the API with its group (states.ts), the command routes from the registry. */
const ROUTES: [method: string, path: string, group: RouteGroup][] = [
	["GET", "/health", "always"],
	["GET", "/status", "always"],
	["GET", "/openapi.json", "always"],
	["POST", "/lifecycle/reload", "reload"],
	["POST", "/lifecycle/restart", "restart"],
	["PUT", "/init/first-account", "init"],
	["POST", "/auth/tokens", "auth"],
	["GET", "/auth/tokens", "auth"],
	["DELETE", "/auth/tokens/0123456789abcdef", "auth"],
	...adminCommands.map(
		(c) =>
			[
				c.http.method,
				c.http.path.replace(/:([A-Za-z0-9_]+)/g, "nobody@localhost"),
				c.http.method === "GET" ? "read" : "write",
			] as [string, string, RouteGroup],
	),
];

/** A promise and its resolve, to hold a start, a stop or an operation open. */
function gate(): { promise: Promise<void>; open: () => void } {
	let open = () => {};
	const promise = new Promise<void>((r) => {
		open = r;
	});
	return { promise, open };
}

const BAD = '[limits]\nstanza_size = "x"\n';

/**
 * Puts a fresh harness in `state`; returns it and a function that lets the held operation go
 * on. Only real transitions: nothing sets a state by hand.
 */
async function reach(state: StateName): Promise<{ h: AdminHarness; release: () => Promise<void> }> {
	const hold = gate();
	let holdStart = false;
	let holdStop = false;
	let failStart = false;
	const wrap = (server: Server) => {
		const start = server.start.bind(server);
		const stop = server.stop.bind(server);
		server.start = async () => {
			if (failStart) throw new Error("the test's server does not start");
			if (holdStart) await hold.promise;
			return start();
		};
		server.stop = async () => {
			if (holdStop) await hold.promise;
			return stop();
		};
	};
	const deferred =
		state === "starting" || state === "configuration_needed" || state === "start_failed";
	const h = await startAdmin({ wrap, deferStart: deferred });
	const s = h.supervisor;
	let pending: Promise<unknown> = Promise.resolve();
	switch (state) {
		case "starting":
			holdStart = true;
			pending = s.start();
			break;
		case "configuration_needed":
			h.write(BAD);
			await s.start();
			break;
		case "start_failed":
			failStart = true;
			await s.start();
			break;
		case "running":
			break;
		case "running_misconfigured":
			h.write(BAD);
			await s.reload().catch(() => undefined);
			break;
		case "restarting":
			holdStart = true;
			pending = s.restart();
			break;
		case "backing_up":
		case "restoring":
		case "factory_resetting":
			pending = s.runOperation(state, state, () => hold.promise);
			break;
		case "stopping":
			holdStop = true;
			pending = s.stop();
			break;
		case "stopped":
			await s.stop();
			break;
	}
	await waitFor(() => s.state === state, `state ${state} (is ${s.state})`);
	return {
		h,
		release: async () => {
			hold.open();
			await pending.catch(() => undefined);
		},
	};
}

describe("every state × every route", () => {
	for (const state of STATES) {
		test(`${state}: unserved routes 503 + Retry-After ${STATE_SPECS[state].retryAfter} + code ${state}; served ones not`, async () => {
			const { h, release } = await reach(state);
			try {
				for (const [method, path, group] of ROUTES) {
					// What a route does once served is tested elsewhere; here, whether it is.
					const body = method === "GET" || method === "DELETE" ? undefined : {};
					const r = await h.request(method, path, { body });
					const what = `${state}: ${method} ${path} -> ${r.status} ${JSON.stringify(r.body)}`;
					if (path === "/health") {
						assert.equal(r.status, STATE_SPECS[state].serving ? 200 : 503, what);
						assert.equal(r.body.serving, STATE_SPECS[state].serving, what);
						if (!STATE_SPECS[state].serving)
							assert.equal(
								r.headers.get("retry-after"),
								String(STATE_SPECS[state].retryAfter),
								what,
							);
					} else if (serves(state, group)) {
						assert.notEqual(r.status, 503, what);
						assert.notEqual(r.body.code, state, what);
					} else {
						assert.equal(r.status, 503, what);
						assert.equal(r.headers.get("retry-after"), String(STATE_SPECS[state].retryAfter), what);
						assert.equal(r.body.code, state, what);
						assert.equal(typeof r.body.message, "string", what);
					}
				}
				const status = await h.request("GET", "/status");
				assert.equal(status.body.state, state);
				// The state did not move while it was asked (a served reload may have run, and left it).
				assert.equal(h.supervisor.state, state);
			} finally {
				await release();
				await h.close();
			}
		});
	}
});

describe("lifecycle conflicts and failures", () => {
	let h: AdminHarness;
	after(() => h?.close());

	test("a second lifecycle operation while one runs: 409 naming it", async () => {
		const reached = await reach("backing_up");
		h = reached.h;
		try {
			const r = await h.request("POST", "/lifecycle/reload");
			// backing_up serves no reload: 503 naming the state.
			assert.equal(r.status, 503);
			assert.equal(r.body.code, "backing_up");
			// A second operation through the Supervisor itself is refused with the running one named.
			await assert.rejects(
				h.supervisor.runOperation("restoring", "restore", async () => undefined),
				(err: Error & { running?: string }) =>
					err.name === "LifecycleConflict" && err.running === "backing_up",
			);
		} finally {
			await reached.release();
		}
		assert.equal(h.supervisor.state, "running");
	});

	test("two reloads at once over HTTP: one 200, the other 409 lifecycle_conflict naming reload", async () => {
		const token = await tokenFor(h);
		const [a, b] = await Promise.all([
			h.request("POST", "/lifecycle/reload", { token }),
			h.request("POST", "/lifecycle/reload", { token }),
		]);
		const statuses = [a.status, b.status].sort();
		assert.deepEqual(statuses, [200, 409], JSON.stringify([a.body, b.body]));
		const conflict = a.status === 409 ? a : b;
		assert.equal(conflict.body.code, "lifecycle_conflict");
		assert.equal(conflict.body.running, "reload");
	});

	test("a failed operation leaves a named state with the error", async () => {
		await assert.rejects(
			h.supervisor.runOperation("backing_up", "backup", async () => {
				throw new Error("disk full");
			}),
		);
		const status = await h.request("GET", "/status");
		assert.equal(status.body.state, "running", "the server ran on");
		assert.deepEqual(
			(status.body.error as { operation: string; message: string }).message,
			"disk full",
		);
		// One that stopped the server and could not start it again: start_failed, with why.
		await assert.rejects(
			h.supervisor.runOperation("restoring", "restore", async (ctx) => {
				await ctx.stopServer();
				throw new Error("the archive is damaged");
			}),
		);
		const after = await h.request("GET", "/status");
		assert.equal(after.body.state, "start_failed");
		assert.equal((after.body.error as { message: string }).message, "the archive is damaged");
		assert.equal((await h.request("GET", "/health")).status, 503);
		// Restart (loopback, no server to check a token) brings it back.
		const restart = await h.request("POST", "/lifecycle/restart");
		assert.equal(restart.status, 200, JSON.stringify(restart.body));
		assert.equal(h.supervisor.state, "running");
	});
});

async function tokenFor(h: AdminHarness): Promise<string> {
	const r = await h.request("PUT", "/init/first-account", {
		body: { jid: "root@localhost", password: "root-pw" },
	});
	assert.ok(r.status === 201 || r.status === 409);
	return h.token("root@localhost", "root-pw");
}
