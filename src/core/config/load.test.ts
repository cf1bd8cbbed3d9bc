import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { after, test } from "node:test";
import { hostNameProblem } from "./checks.ts";
import {
	ConfigError,
	defaultConfig,
	envOverrides,
	findConfigFile,
	loadConfigFile,
	loadConfigSource,
	parseConfig,
	resolveDataPath,
} from "./load.ts";

const dir = mkdtempSync(join(tmpdir(), "parley-config-"));
after(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, "cert.pem"), "not checked here: only existence and readability");
writeFileSync(join(dir, "key.pem"), "same");

/** The problems of a config that must fail. */
function problems(text: string, fileName = "parley.toml"): string[] {
	try {
		parseConfig(text, fileName, { baseDir: dir });
	} catch (err) {
		assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
		return err.problems;
	}
	assert.fail("the configuration was accepted");
}

test("an empty file gives the defaults, with data_dir and backup.dir made absolute against the file's directory", () => {
	const config = parseConfig("", "/etc/parley/parley.toml");
	assert.equal(config.server.data_dir, "/etc/parley/data");
	assert.equal(config.backup.dir, "/etc/parley/backups");
	assert.deepEqual(Object.keys(config.hosts), ["localhost"]);
	assert.equal(config.limits.stanza_size, 262_144);
	assert.deepEqual(
		{ ...config, server: {}, backup: {} },
		{ ...defaultConfig(), server: {}, backup: {} },
	);
});

test("a valid file is parsed and its tls paths resolved against the file's directory", () => {
	const config = parseConfig(
		[
			"[server]",
			'data_dir = "/var/lib/parley"',
			"[limits]",
			"stanza_size = 65536",
			"[tls]",
			'cert = "cert.pem"',
			'key = "key.pem"',
			'[hosts."example.org"]',
			'modules = ["disco"]',
			'tls = { cert = "cert.pem", key = "key.pem" }',
			'[hosts."xn--bcher-kva.example"]',
		].join("\n"),
		"parley.toml",
		{ baseDir: dir },
	);
	assert.equal(config.server.data_dir, "/var/lib/parley");
	assert.equal(config.limits.stanza_size, 65536);
	assert.equal(config.tls.cert, join(dir, "cert.pem"));
	assert.equal(config.hosts["example.org"]?.tls?.key, join(dir, "key.pem"));
	assert.deepEqual(config.hosts["example.org"]?.modules, ["disco"]);
	assert.ok(config.hosts["xn--bcher-kva.example"]);
});

test("a wrong value names the file, the line, the key, what was expected and what was found", () => {
	assert.deepEqual(problems('# c\n\n[limits]\nmax_depth = 8\nstanza_size = "x"\n'), [
		'parley.toml:5: limits.stanza_size: expected an integer >= 1024, got "x"',
	]);
	assert.deepEqual(problems("[limits]\nauth_timeout = 0"), [
		"parley.toml:2: limits.auth_timeout: expected a number > 0, got 0",
	]);
	assert.deepEqual(problems('[log]\nlevel = "loud"'), [
		'parley.toml:2: log.level: expected one of "trace", "debug", "info", "warn", "error", "fatal", "silent", got "loud"',
	]);
	assert.deepEqual(problems("[listeners.c2s]\nport = 70000"), [
		"parley.toml:2: listeners.c2s.port: expected an integer >= 0 and <= 65535, got 70000",
	]);
	assert.deepEqual(problems("server = 3"), ["parley.toml:1: server: expected a table, got 3"]);
});

test("lines are found for dotted keys, inline tables, quoted keys and arrays spanning lines", () => {
	const text = [
		"limits.max_depth = 10", // 1
		"auth = { scram_iterations = 4096, require_encryption = 1 }", // 2
		'[hosts."a.example"]', // 3
		"modules = [", // 4
		'  "disco", # comment', // 5
		"  7,", // 6
		"]", // 7
		'[hosts."b.example"]', // 8
		"module_options = { ping = { interval = 1 } }", // 9
		'require_encryption = "yes"', // 10
		"'c.example'.enabled = 0", // 11
	].join("\n");
	assert.deepEqual(problems(text), [
		"parley.toml:2: auth.require_encryption: expected true or false, got 1",
		'parley.toml:6: hosts."a.example".modules[1]: expected a string, got 7',
		'parley.toml:10: hosts."b.example".require_encryption: expected true or false, got "yes"',
		'parley.toml:11: unknown key "c.example" in [hosts."b.example"]',
	]);
	assert.deepEqual(problems("x = 1\nlimits = { stanza_size = 1 }"), [
		'parley.toml:1: unknown key "x" at the top level',
		"parley.toml:2: limits.stanza_size: expected an integer >= 1024, got 1",
	]);
});

test("unknown keys are reported with the table they are in and a suggestion when close", () => {
	assert.deepEqual(problems('[server]\nname = "x"\ndata_dr = "d"\nbogus = 1\n'), [
		'parley.toml:3: unknown key "data_dr" in [server]; did you mean data_dir?',
		'parley.toml:4: unknown key "bogus" in [server]',
	]);
	assert.deepEqual(problems('[hosts."a.example"]\nmodule = ["x"]'), [
		'parley.toml:2: unknown key "module" in [hosts."a.example"]; did you mean modules?',
	]);
	assert.deepEqual(problems("[limits]\nstanza-size = 2000"), [
		'parley.toml:2: unknown key "stanza-size" in [limits]; did you mean stanza_size?',
	]);
});

test("a component's table is the one its type chooses: its keys, its errors, suggestions", () => {
	const gw = '[components."gw.localhost"]\n';
	// An external component (XEP-0114) has a secret and no MUC keys, and the reverse.
	assert.deepEqual(problems(`${gw}type = "external"\nsecret = "s"\nsubdomain = true\n`), [
		'parley.toml:4: unknown key "subdomain" in [components."gw.localhost"]; did you mean subdomains?',
	]);
	assert.deepEqual(problems(`${gw}type = "external"\nsecret = "s"\nroom_creation = "local"\n`), [
		'parley.toml:4: unknown key "room_creation" in [components."gw.localhost"]',
	]);
	assert.deepEqual(problems(`${gw}type = "muc"\nsecret = "s"\n`), [
		'parley.toml:3: unknown key "secret" in [components."gw.localhost"]',
	]);
	assert.deepEqual(problems(`${gw}type = "external"\n`), [
		'parley.toml:1: components."gw.localhost".secret: missing (the shared secret the component authenticates with)',
	]);
	assert.deepEqual(problems(`${gw}type = "external"\nsecret = 3\nsubdomains = "yes"\n`), [
		'parley.toml:3: components."gw.localhost".secret: expected a string, got 3',
		'parley.toml:4: components."gw.localhost".subdomains: expected true or false, got "yes"',
	]);
	assert.deepEqual(problems(`${gw}type = "externa"\n`), [
		'parley.toml:2: components."gw.localhost".type: expected one of "muc", "external", "pubsub", "upload", got "externa"',
	]);
	assert.deepEqual(problems(`${gw}name = "x"\n`), [
		'parley.toml:1: components."gw.localhost".type: missing (one of "muc", "external", "pubsub", "upload")',
	]);
});

test("every problem is reported, in line order", () => {
	const found = problems('[log]\nlevel = 1\n[server]\nnope = 1\n[hosts."Bad.example"]\n');
	assert.deepEqual(
		found.map((p) => p.split(":")[1]),
		["2", "4", "5"],
	);
});

test("TOML syntax errors give the line and column", () => {
	const found = problems('[server]\nname = "x"\nname = "y"\n');
	assert.equal(found.length, 1);
	assert.match(found[0] ?? "", /^parley\.toml:3:\d+: TOML syntax error: /);
	assert.match(problems("a = [1,\n2\nb = 3")[0] ?? "", /^parley\.toml:3:1: TOML syntax error: /);
});

test("an unclosed array or inline table: also the line where it began", () => {
	// Issue 22: the array opened on line 5 was reported only at line 7, the next table header.
	const unclosed =
		'[server]\nname = "x"\n\n[hosts.localhost]\nmodules = ["disco", "ping"\n\n[limits]\nstanza_size = 2000\n';
	assert.deepEqual(problems(unclosed), [
		'parley.toml:7:1: TOML syntax error: expected comma or end of structure, in the array that begins at parley.toml:5:11 (is a "]" missing?)',
	]);
	// Strings, comments and brackets inside them do not count; a nested array is inside the outer one.
	const nested = 'a = "[" # [\nb = [ "]", [1, 2],\n  # ]\n  \'x]\'\n\n[c]\n';
	assert.match(problems(nested)[0] ?? "", /in the array that begins at parley\.toml:2:5 /);
	assert.match(
		problems("t = { a = 1\n\n[x]\n")[0] ?? "",
		/^parley\.toml:3:1: TOML syntax error: .*, in the inline table that begins at parley\.toml:1:5 \(is a "}" missing\?\)$/,
	);
	// A mistake on the line of its own array needs no second position.
	assert.doesNotMatch(problems("a = [1 2]\n")[0] ?? "", /begins at/);
});

test("host names must be lower-case domain names", () => {
	assert.deepEqual(problems('[hosts."Example.ORG"]'), [
		'parley.toml:1: hosts."Example.ORG": invalid host name: host names are lower case; write "example.org"',
	]);
	assert.equal(hostNameProblem("localhost"), undefined);
	assert.equal(hostNameProblem("conference.example-1.org"), undefined);
	assert.match(hostNameProblem("example.org.") ?? "", /trailing dot/);
	assert.match(hostNameProblem("a..b") ?? "", /empty labels/);
	assert.match(hostNameProblem("-a.example") ?? "", /cannot start or end/);
	assert.match(hostNameProblem("a_b.example") ?? "", /may only contain/);
	assert.match(hostNameProblem("127.0.0.1") ?? "", /IP address/);
	assert.match(hostNameProblem("bücher.example") ?? "", /xn--bcher-kva\.example/);
	assert.match(hostNameProblem(`${"a".repeat(64)}.example`) ?? "", /63/);
});

test("certificate files must exist; tls.cert needs tls.key", () => {
	assert.deepEqual(problems('[tls]\ncert = "cert.pem"\n'), [
		"parley.toml:2: tls.key: missing; tls.cert is set, so the private key is needed too",
	]);
	assert.deepEqual(problems('[tls]\nkey = "key.pem"\n'), [
		"parley.toml:2: tls.cert: missing; tls.key is set, so the certificate is needed too",
	]);
	assert.deepEqual(problems('[hosts."a.example".tls]\ncert = "cert.pem"\nkey = "nope.pem"\n'), [
		`parley.toml:3: hosts."a.example".tls.key: cannot read "nope.pem" (${join(dir, "nope.pem")}): no such file (ENOENT)`,
	]);
	assert.deepEqual(problems(`[tls]\ncert = "${dir}"\nkey = "key.pem"\n`), [
		`parley.toml:2: tls.cert: cannot read "${dir}": not a file`,
	]);
	assert.deepEqual(problems('[hosts."a.example".tls]\ncert = "cert.pem"\n'), [
		'parley.toml:1: hosts."a.example".tls.key: missing (path to a PEM private key)',
	]);
});

test("an unreadable certificate file is reported", { skip: process.getuid?.() === 0 }, () => {
	const locked = join(dir, "locked.pem");
	writeFileSync(locked, "x");
	chmodSync(locked, 0o000);
	assert.match(
		problems('[tls]\ncert = "locked.pem"\nkey = "key.pem"')[0] ?? "",
		/^parley\.toml:2: tls\.cert: cannot read "locked\.pem" .*permission denied/,
	);
});

test("loadConfigFile reads the file, names it in errors, and resolves paths against its directory", () => {
	const file = join(dir, "parley.toml");
	writeFileSync(file, '[server]\ndata_dir = "state"\n[tls]\ncert = "cert.pem"\nkey = "key.pem"\n');
	const config = loadConfigFile(file);
	assert.equal(config.server.data_dir, join(dir, "state"));
	assert.equal(config.tls.key, join(dir, "key.pem"));
	assert.equal(resolveDataPath(config, config.storage.path), join(dir, "state", "parley.sqlite"));

	writeFileSync(file, "[limits]\nstanza_size = 1\n");
	assert.throws(() => loadConfigFile(file), {
		name: "ConfigError",
		message: `${file}:2: limits.stanza_size: expected an integer >= 1024, got 1`,
	});

	const missing = join(dir, "missing.toml");
	assert.throws(
		() => loadConfigFile(missing),
		(err: unknown) => {
			assert.ok(err instanceof ConfigError);
			assert.deepEqual(err.problems, [
				`${missing}: cannot read the configuration file: no such file (ENOENT)`,
			]);
			return true;
		},
	);
	assert.throws(() => loadConfigFile(dir), /it is a directory/);
});

test("resolveDataPath: relative to data_dir, itself relative to baseDir (cwd by default)", () => {
	const config = defaultConfig();
	assert.equal(resolveDataPath(config, "x.db", "/srv"), "/srv/data/x.db");
	assert.equal(resolveDataPath(config, "/abs/x.db", "/srv"), "/abs/x.db");
	assert.equal(resolveDataPath(config, "certs"), join(process.cwd(), "data", "certs"));
	const absolute = { ...config, server: { ...config.server, data_dir: "/var/lib/parley" } };
	assert.equal(resolveDataPath(absolute, "certs", "/srv"), "/var/lib/parley/certs");
});

test("the configuration is found by one rule: --config, PARLEY_CONFIG, ./parley.toml, none", () => {
	const cwd = mkdtempSync(join(dir, "find-"));
	const env = { PARLEY_CONFIG: "/etc/parley/parley.toml" };
	assert.deepEqual(findConfigFile("given.toml", env, cwd), {
		path: "given.toml",
		from: "--config",
	});
	assert.deepEqual(findConfigFile(undefined, env, cwd), {
		path: "/etc/parley/parley.toml",
		from: "PARLEY_CONFIG",
	});
	// Not there yet: the built-in defaults; an empty PARLEY_CONFIG counts as unset.
	assert.deepEqual(findConfigFile(undefined, { PARLEY_CONFIG: "" }, cwd), { from: "defaults" });
	writeFileSync(join(cwd, "parley.toml"), "");
	assert.deepEqual(findConfigFile(undefined, {}, cwd), {
		path: relative(process.cwd(), join(cwd, "parley.toml")),
		from: "./parley.toml",
	});
	assert.equal(findConfigFile(undefined, env, cwd).from, "PARLEY_CONFIG");
});

test("PARLEY_<SECTION>__<KEY> variables override the file; values are TOML, else strings; others are ignored", () => {
	const env = {
		PARLEY_LOG__LEVEL: "debug",
		PARLEY_LISTENERS__ADMIN__PORT: "0",
		PARLEY_HTTP__CORS_ORIGINS: '["https://a.example"]',
		PARLEY_CONFIG: "ignored.toml",
		PARLEY_ADMIN_JID: "admin@localhost",
		PARLEY_TEST_LOG: "silent",
	};
	assert.deepEqual(
		envOverrides(env).map((o) => o.path.join(".")),
		["http.cors_origins", "listeners.admin.port", "log.level"],
	);
	const file = join(dir, "env.toml");
	writeFileSync(file, '[log]\nlevel = "warn"\n[listeners.admin]\nport = 6000\n');
	const config = loadConfigSource({ path: file, from: "--config" }, env);
	assert.equal(config.log.level, "debug");
	assert.equal(config.listeners.admin.port, 0);
	assert.deepEqual(config.http.cors_origins, ["https://a.example"]);
	// Without a file: the defaults and the variables.
	assert.equal(loadConfigSource({ from: "defaults" }, env).log.level, "debug");
	assert.deepEqual(loadConfigSource({ from: "defaults" }, {}), defaultConfig());
	// A variable that does not validate is a problem like a key of the file.
	assert.throws(
		() => loadConfigSource({ path: file, from: "--config" }, { PARLEY_LIMITS__STANZA_SIZE: "x" }),
		(err: Error) => err instanceof ConfigError && /limits\.stanza_size/.test(err.message),
	);
});
