/**
 * `parley report list|resolve` (issue 19) as a process, on the storage the server writes the
 * XEP-0377 report queue to (a report put there as the spam module stores it).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { loadConfig, withStorage } from "../../src/cli/common.ts";
import { REPORT_STORE, type StoredReport } from "../../src/modules/spam/reports.ts";

const BIN = fileURLToPath(new URL("../../bin/parley.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "parley-report-cli-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const config = join(dir, "parley.toml");
writeFileSync(
	config,
	`[server]\ndata_dir = "${join(dir, "data")}"\n[storage]\nbackend = "sqlite"\n[hosts.localhost]\n`,
);
const parley = (...args: string[]) =>
	spawnSync(process.execPath, [BIN, ...args, "--config", config], {
		encoding: "utf8",
		env: { ...process.env, PARLEY_CONFIG: "" },
	});

test("report list shows the open reports; report resolve closes one; an unknown id exits 4", async () => {
	const report: StoredReport = {
		id: "r-1",
		when: Date.parse("2026-12-01T10:00:00Z"),
		reporter: "alice@localhost",
		jid: "spammer@example.net",
		reason: "urn:xmpp:reporting:spam",
		version: 1,
		text: "pills",
		stanzaIds: [],
		reportOrigin: false,
		thirdParty: false,
		status: "open",
		resolution: "",
		resolvedBy: "",
		resolvedAt: 0,
		forwardedTo: [],
	};
	await withStorage(loadConfig(config), (s) =>
		s.keyval<StoredReport>("localhost", REPORT_STORE).set(report.id, report),
	);
	let r = parley("report", "list");
	assert.equal(r.status, 0, r.stderr);
	assert.match(
		r.stdout,
		/^r-1 {2}2026-12-01T10:00:00.000Z {2}open {6}spam {2}spammer@example.net {2}by alice@localhost {2}"pills"$/m,
	);
	r = parley("report", "resolve", "r-1", "--note", "banned the account");
	assert.equal(r.status, 0, r.stderr);
	assert.equal(parley("report", "list").stdout.trim(), "no reports");
	const all = JSON.parse(
		parley("report", "list", "--status", "all", "--json").stdout,
	) as StoredReport[];
	assert.equal(all[0]?.status, "resolved");
	assert.equal(all[0]?.resolution, "banned the account");
	assert.equal(parley("report", "resolve", "nope").status, 4);
	assert.equal(parley("report", "list", "--status", "bogus").status, 2);
});
