/**
 * `parley storage migrate [--dry-run]`: brings the configured backend's schema to the version
 * this code understands, or reports what that would do. The server does the same on start.
 */
import { resolve } from "node:path";
import pg from "pg";
import type { StorageConfig } from "../index.ts";
import { type MigrationPlan, migratePostgres } from "./postgres.ts";
import { migrateSqlite } from "./sqlite.ts";

export type { MigrationPlan } from "./postgres.ts";
export { POSTGRES_MIGRATIONS, POSTGRES_SCHEMA_VERSION } from "./postgres.ts";

export async function migrateStorage(
	cfg: StorageConfig,
	dataDir: string,
	opts: { dryRun?: boolean } = {},
): Promise<MigrationPlan> {
	switch (cfg.backend) {
		case "memory":
			return { backend: "memory", current: 0, target: 0, pending: [], applied: false };
		case "sqlite":
			return migrateSqlite(cfg.path === ":memory:" ? cfg.path : resolve(dataDir, cfg.path), opts);
		case "postgres": {
			if (!cfg.url) throw new Error('storage.url is required when storage.backend is "postgres"');
			const client = new pg.Client({ connectionString: cfg.url });
			// An error on an idle connection must not crash the command; the query rejects anyway.
			client.on("error", () => {});
			await client.connect();
			try {
				return await migratePostgres(client, cfg.schema ?? "public", opts);
			} finally {
				await client.end();
			}
		}
	}
}

/** One human-readable paragraph about a plan, for the CLI. */
export function describePlan(p: MigrationPlan): string {
	if (p.pending.length === 0) return `${p.backend}: schema is at version ${p.current}, up to date`;
	const verb = p.applied ? "migrated" : "would migrate";
	const steps = p.pending.map((m) => `  ${m.version}: ${m.description}`).join("\n");
	return `${p.backend}: ${verb} schema from version ${p.current} to ${p.target}\n${steps}`;
}
