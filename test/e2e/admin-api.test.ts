/**
 * Issue 15, the admin API over real HTTP: the first admin (`PUT /init/first-account`, and from
 * the environment), bearer tokens (issue, expiry, revocation, hashed in storage), the error
 * answers (400/401/403/404/409 as `{code, message}`), the command routes generated from the
 * registry, the OpenAPI document listing every command, and the audit log without secrets.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import https from "node:https";
import { after, before, describe, test } from "node:test";
import { adminCommands } from "../../src/admin/commands/index.ts";
import { TokenStore } from "../../src/admin/tokens.ts";
import { type AdminHarness, startAdmin } from "../helpers/admin.ts";
import { trustServerCertificates } from "../helpers/tls.ts";
import { waitFor } from "../helpers/wait.ts";
import { connect } from "../helpers/xmpp-client.ts";

describe("first account and tokens", () => {
	let h: AdminHarness;
	before(async () => {
		h = await startAdmin();
	});
	after(() => h.close());

	test("PUT /init/first-account makes the first admin (201), then 409; free again once no admin is left", async () => {
		const first = await h.request("PUT", "/init/first-account", {
			body: { jid: "root@localhost", password: "root-pw" },
		});
		assert.equal(first.status, 201, JSON.stringify(first.body));
		assert.deepEqual(first.body, { jid: "root@localhost", role: "admin" });
		const second = await h.request("PUT", "/init/first-account", {
			body: { jid: "other@localhost", password: "x" },
		});
		assert.equal(second.status, 409);
		assert.equal(second.body.code, "conflict");

		// Removing the last admin opens it again.
		const token = await h.token("root@localhost", "root-pw");
		const add = await h.request("POST", "/users", {
			token,
			body: { jid: "temp@localhost", password: "temp-pw", role: "admin" },
		});
		assert.equal(add.status, 201);
		const tempToken = await h.token("temp@localhost", "temp-pw");
		assert.equal(
			(await h.request("DELETE", "/users/root@localhost", { token: tempToken })).status,
			204,
		);
		assert.equal(
			(
				await h.request("PUT", "/init/first-account", {
					body: { jid: "x@localhost", password: "x" },
				})
			).status,
			409,
			"temp is still an admin",
		);
		assert.equal(
			(
				await h.request("PUT", "/users/temp@localhost/role", {
					token: tempToken,
					body: { role: "user" },
				})
			).status,
			200,
		);
		const again = await h.request("PUT", "/init/first-account", {
			body: { jid: "root@localhost", password: "root-pw" },
		});
		assert.equal(again.status, 201, JSON.stringify(again.body));
		// The demoted account's token is refused now: 403, checked at each request.
		const refused = await h.request("GET", "/users", { token: tempToken });
		assert.equal(refused.status, 403);
		assert.equal(refused.body.code, "forbidden");
	});

	test("tokens: issued for an admin's credentials, stored as SHA-256 only, expiring, revocable", async () => {
		const wrong = await h.request("POST", "/auth/tokens", {
			body: { jid: "root@localhost", password: "nope" },
		});
		assert.equal(wrong.status, 401);
		assert.equal(wrong.body.code, "unauthorized");
		const unknown = await h.request("POST", "/auth/tokens", {
			body: { jid: "ghost@localhost", password: "nope" },
		});
		assert.equal(unknown.status, 401, "the same answer as a wrong password");

		const issued = await h.request("POST", "/auth/tokens", {
			body: { jid: "root@localhost", password: "root-pw" },
		});
		assert.equal(issued.status, 201);
		const token = issued.body.token as string;
		assert.match(token, /^parley_[A-Za-z0-9_-]{43}$/);
		assert.ok(Date.parse(issued.body.expires as string) > Date.now());

		// Storage holds the hash, never the token.
		const server = h.supervisor.server;
		assert.ok(server);
		const stored = await server.storage.keyval("", "admin_tokens").get(issued.body.id as string);
		assert.equal(
			(stored as { hash: string }).hash,
			createHash("sha256").update(token).digest("hex"),
		);
		assert.ok(!JSON.stringify(stored).includes(token));

		const ok = await h.request("GET", "/users", { token });
		assert.equal(ok.status, 200);
		assert.ok((ok.body.users as { jid: string }[]).some((u) => u.jid === "root@localhost"));

		// Revoked: 401 from then on.
		assert.equal((await h.request("DELETE", "/auth/tokens/current", { token })).status, 204);
		const revoked = await h.request("GET", "/users", { token });
		assert.equal(revoked.status, 401);
		assert.equal(revoked.body.code, "unauthorized");

		// Expired: a token whose time is over is refused and forgotten.
		const store = new TokenStore(server.storage);
		const old = await store.issue("root@localhost", 60, Date.now() - 61_000);
		const expired = await h.request("GET", "/users", { token: old.token });
		assert.equal(expired.status, 401);
		assert.equal(await server.storage.keyval("", "admin_tokens").get(old.id), undefined);
	});

	test("a non-admin's credentials get no token (403)", async () => {
		const token = await h.token("root@localhost", "root-pw");
		await h.request("POST", "/users", { token, body: { jid: "plain@localhost", password: "pw" } });
		const r = await h.request("POST", "/auth/tokens", {
			body: { jid: "plain@localhost", password: "pw" },
		});
		assert.equal(r.status, 403);
		assert.equal(r.body.code, "forbidden");
	});

	test("400 malformed JSON, 400 invalid argument, 401 no token, 404 unknown route and account, 409 existing account: each {code, message}", async () => {
		const token = await h.token("root@localhost", "root-pw");
		const cases: [string, Awaited<ReturnType<AdminHarness["request"]>>, number, string][] = [
			[
				"malformed",
				await h.request("POST", "/users", { token, raw: '{"jid": ' }),
				400,
				"malformed_json",
			],
			[
				"invalid",
				await h.request("POST", "/users", { token, body: { jid: "a@localhost", password: "" } }),
				400,
				"invalid_argument",
			],
			["no token", await h.request("GET", "/users"), 401, "unauthorized"],
			[
				"bad token",
				await h.request("GET", "/users", { token: "parley_nope" }),
				401,
				"unauthorized",
			],
			["unknown route", await h.request("GET", "/nowhere", { token }), 404, "not_found"],
			[
				"unknown account",
				await h.request("DELETE", "/users/ghost@localhost", { token }),
				404,
				"not_found",
			],
			[
				"unknown host",
				await h.request("POST", "/users", { token, body: { jid: "a@elsewhere", password: "p" } }),
				404,
				"not_found",
			],
			[
				"existing",
				await h.request("POST", "/users", {
					token,
					body: { jid: "root@localhost", password: "p" },
				}),
				409,
				"conflict",
			],
		];
		for (const [what, r, status, code] of cases) {
			assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
			assert.equal(r.body.code, code, what);
			assert.equal(typeof r.body.message, "string", what);
		}
	});

	test("user and session commands: add, password, list sessions, kick (the client's stream ends)", async () => {
		const token = await h.token("root@localhost", "root-pw");
		assert.equal(
			(
				await h.request("POST", "/users", {
					token,
					body: { jid: "dave@localhost", password: "one" },
				})
			).status,
			201,
		);
		assert.equal(
			(
				await h.request("PUT", "/users/dave@localhost/password", {
					token,
					body: { password: "two" },
				})
			).status,
			204,
		);
		const server = h.supervisor.server;
		assert.ok(server);
		trustServerCertificates(server);
		const dave = await connect(`xmpp://127.0.0.1:${server.port("c2s")}`, "dave", "two", {
			resource: "phone",
		});
		let offline = false;
		dave.xmpp.on("offline", () => {
			offline = true;
		});
		const list = await h.request("GET", "/sessions?host=localhost", { token });
		assert.equal(list.status, 200);
		assert.deepEqual(
			(list.body.sessions as { jid: string }[]).map((s) => s.jid),
			["dave@localhost/phone"],
		);
		const kick = await h.request(
			"DELETE",
			`/sessions/${encodeURIComponent("dave@localhost/phone")}`,
			{
				token,
			},
		);
		assert.equal(kick.status, 200, JSON.stringify(kick.body));
		assert.deepEqual(kick.body.kicked, ["dave@localhost/phone"]);
		await waitFor(
			() => offline || dave.xmpp.status === "offline" || dave.xmpp.status === "disconnect",
			"dave's stream to end",
		);
		await dave.xmpp.stop().catch(() => undefined);
		assert.equal((await h.request("DELETE", "/sessions/dave@localhost", { token })).status, 404);
	});

	test("GET /openapi.json lists every command of the registry with its method and path", async () => {
		const r = await h.request("GET", "/openapi.json");
		assert.equal(r.status, 200);
		assert.equal(r.body.openapi, "3.1.0");
		const paths = r.body.paths as Record<string, Record<string, { operationId: string }>>;
		for (const c of adminCommands) {
			const path = c.http.path.replace(/:([A-Za-z0-9_]+)/g, "{$1}");
			assert.equal(paths[path]?.[c.http.method.toLowerCase()]?.operationId, c.name, c.name);
		}
		for (const fixed of [
			"/health",
			"/status",
			"/lifecycle/reload",
			"/lifecycle/restart",
			"/init/first-account",
			"/auth/tokens",
		])
			assert.ok(paths[fixed], fixed);
	});

	test("the audit log names who did what and the result, and holds no password or token", async () => {
		const token = await h.token("root@localhost", "root-pw");
		await h.request("POST", "/users", {
			token,
			body: { jid: "erin@localhost", password: "erin-secret-pw" },
		});
		const audit = h.lines.filter((l) => l.audit === true);
		const add = audit.find(
			(l) => l.action === "user.add" && l.actor === "root@localhost" && l.status === 201,
		);
		assert.ok(add, JSON.stringify(audit.slice(-3)));
		assert.equal(add.result, "ok");
		assert.ok(typeof add.at === "string");
		assert.ok(audit.some((l) => l.action === "auth.token.issue" && l.result === "refused"));
		const all = JSON.stringify(h.lines);
		for (const secret of ["erin-secret-pw", "root-pw", token, "parley_"])
			assert.ok(!all.includes(secret), `the log holds ${secret}`);
	});
});

describe("first admin from the environment", () => {
	test("PARLEY_ADMIN_JID / PARLEY_ADMIN_PASSWORD at start: created once, idempotent when run again (each start)", async () => {
		const env = { PARLEY_ADMIN_JID: "env-admin@localhost", PARLEY_ADMIN_PASSWORD: "env-pw" };
		const { adminFromEnvironment } = await import("../../src/admin/accounts.ts");
		const h = await startAdmin();
		try {
			const server = h.supervisor.server;
			assert.ok(server);
			assert.equal(await adminFromEnvironment(server, env), "env-admin@localhost");
			assert.equal(
				await adminFromEnvironment(server, { ...env, PARLEY_ADMIN_PASSWORD: "changed" }),
				"env-admin@localhost",
			);
			// The first password stands; the account is an admin.
			const token = await h.token("env-admin@localhost", "env-pw");
			const users = await h.request("GET", "/users", { token });
			assert.deepEqual(users.body.users, [{ jid: "env-admin@localhost", role: "admin" }]);
			assert.equal(
				(
					await h.request("PUT", "/init/first-account", {
						body: { jid: "x@localhost", password: "x" },
					})
				).status,
				409,
			);
		} finally {
			await h.close();
		}
	});
});

describe("token issuance is rate-limited", () => {
	test("more than admin.token_requests_per_minute from one address: 429 rate_limited", async () => {
		const h = await startAdmin({ extra: "[admin]\ntoken_requests_per_minute = 3\n" });
		try {
			const codes: number[] = [];
			for (let i = 0; i < 5; i++)
				codes.push(
					(await h.request("POST", "/auth/tokens", { body: { jid: "a@localhost", password: "b" } }))
						.status,
				);
			assert.deepEqual(codes, [401, 401, 401, 429, 429]);
			const r = await h.request("POST", "/auth/tokens", {
				body: { jid: "a@localhost", password: "b" },
			});
			assert.equal(r.body.code, "rate_limited");
		} finally {
			await h.close();
		}
	});
});

describe("the admin listener off loopback", () => {
	test("an address other than loopback serves HTTPS only, with the hosts' certificate", async () => {
		const h = await startAdmin();
		const { AdminApi } = await import("../../src/admin/api.ts");
		const server = h.supervisor.server;
		assert.ok(server);
		const api = new AdminApi(h.supervisor, {
			address: "0.0.0.0",
			port: 0,
			commands: adminCommands,
		});
		try {
			await api.listen();
			assert.equal(api.tls, true);
			const ca = server.certificates.describe().map((c) => readFileSync(c.path, "utf8"));
			const body = await new Promise<string>((resolve, reject) => {
				https
					.get(
						{ host: "127.0.0.1", port: api.port, path: "/health", servername: "localhost", ca },
						(res) => {
							let text = "";
							res.setEncoding("utf8").on("data", (d: string) => {
								text += d;
							});
							res.on("end", () => resolve(text));
						},
					)
					.on("error", reject);
			});
			assert.deepEqual(JSON.parse(body), { serving: true, state: "running" });
			// Plain HTTP gets no answer from a TLS port.
			await assert.rejects(fetch(`http://127.0.0.1:${api.port}/health`));
		} finally {
			await api.close();
			await h.close();
		}
	});
});

describe("one registry, three surfaces", () => {
	test("every command is a route (OpenAPI), a `parley admin` subcommand and in core.commands (XEP-0133 nodes where defined)", async () => {
		const { buildProgram } = await import("../../src/cli/main.ts");
		const admin = buildProgram().commands.find((c) => c.name() === "admin");
		assert.ok(admin);
		const h = await startAdmin();
		try {
			const paths = (await h.request("GET", "/openapi.json")).body.paths as Record<
				string,
				Record<string, { operationId: string }>
			>;
			const operations = Object.values(paths).flatMap((p) =>
				Object.values(p).map((o) => o.operationId),
			);
			const core = h.supervisor.server?.commands ?? [];
			for (const c of adminCommands) {
				assert.ok(operations.includes(c.name), `${c.name}: HTTP`);
				const [area, ...verb] = c.name.split(".");
				const sub =
					verb.length === 0
						? admin.commands.find((x) => x.name() === area)
						: admin.commands
								.find((x) => x.name() === area)
								?.commands.find((x) => x.name() === verb.join("-"));
				assert.ok(sub, `${c.name}: CLI`);
				assert.ok(core.includes(c), `${c.name}: core.commands`);
			}
			const nodes = core.flatMap((c) => (c.adhoc ? [c.adhoc] : []));
			for (const node of [
				"add-user",
				"delete-user",
				"change-user-password",
				"get-online-users-list",
			])
				assert.ok(nodes.includes(`http://jabber.org/protocol/admin#${node}`), node);
		} finally {
			await h.close();
		}
	});
});
