/**
 * The layering of src/ (docs/architecture.md, "Layers"), checked in CI by `npm run deps`.
 * Rules apply to source files; a test may reach for whatever real part it exercises, but it may
 * not create a cycle either.
 */
const TRANSPORTS = "^src/(c2s|bosh|http|websocket|component|s2s)/";
const LOWER = "^src/(xml|xmpp|storage|auth|tls|security|net)/";
const TEST = "\\.test\\.ts$";

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
	forbidden: [
		{
			name: "no-circular",
			comment: "No import cycles anywhere, type-only imports included.",
			severity: "error",
			from: { path: "^src/" },
			to: { circular: true },
		},
		{
			name: "core-knows-no-part",
			comment:
				"core/ owns the interfaces (core/contracts.ts); transports, services, the cluster link, modules, the CLI and the composition root implement or use them, never the reverse.",
			severity: "error",
			from: { path: "^src/core/", pathNot: TEST },
			to: { path: "^src/(admin|app|cli|cluster|modules|c2s|bosh|http|websocket|component|s2s)/" },
		},
		{
			name: "admin-sees-the-core-and-building-blocks",
			comment:
				"The admin layer (Supervisor, admin API, commands) drives servers through the core; the CLI hands it the composition root's createServer as a factory.",
			severity: "error",
			from: { path: "^src/admin/", pathNot: [TEST, "^src/admin/commands/"] },
			to: { path: "^src/(app|cli|cluster|modules|c2s|bosh|http|websocket|component|s2s)/" },
		},
		{
			name: "admin-commands-see-no-transport",
			comment:
				"A command of a module's area (spam reports, quarantine) may use the module's stores and types; like the rest of admin/, never the composition root, the CLI, a transport or the cluster link.",
			severity: "error",
			from: { path: "^src/admin/commands/", pathNot: TEST },
			to: { path: "^src/(app|cli|cluster|c2s|bosh|http|websocket|component|s2s)/" },
		},
		{
			name: "lower-layers-stay-below",
			comment:
				"XML, JIDs and errors, storage, SASL, TLS and limits are building blocks: they know no server (a Logger type is all they may take from core/).",
			severity: "error",
			from: { path: LOWER, pathNot: TEST },
			to: {
				path: "^src/(admin|app|cli|cluster|modules|c2s|bosh|http|websocket|component|s2s|core)/",
				pathNot: "^src/core/log\\.ts$",
			},
		},
		{
			name: "modules-see-only-the-core",
			comment:
				"A module talks to the server through its ModuleApi and the core's interfaces, never to a transport or the cluster link.",
			severity: "error",
			from: { path: "^src/modules/", pathNot: TEST },
			to: { path: "^src/(admin|app|cli|cluster|c2s|bosh|http|websocket|component|s2s)/" },
		},
		{
			name: "transports-know-no-module",
			comment: "A transport carries streams; what a roster or a room is, it does not know.",
			severity: "error",
			from: { path: TRANSPORTS, pathNot: TEST },
			to: { path: "^src/(admin|app|cli|cluster|modules)/" },
		},
		{
			name: "cluster-knows-no-transport",
			comment: "The cluster link sees sessions through the core's Session contract.",
			severity: "error",
			from: { path: "^src/cluster/", pathNot: TEST },
			to: { path: "^src/(app|cli|modules|c2s|bosh|http|websocket|component|s2s)/" },
		},
		{
			name: "admin-sees-the-core-and-the-blocks",
			comment:
				"src/admin/ (backups, the admin commands) works on a server through core/ and the building blocks (storage, xml, xmpp), never the composition root or the CLI.",
			severity: "error",
			from: { path: "^src/admin/", pathNot: TEST },
			to: { path: "^src/(app|cli)/" },
		},
		{
			name: "only-the-cli-uses-the-composition-root",
			comment: "src/app/ builds servers; the CLI (and tests) call it. Nothing imports the CLI.",
			severity: "error",
			from: { path: "^src/", pathNot: ["^src/(app|cli)/", TEST] },
			to: { path: "^src/(app|cli)/" },
		},
	],
	options: {
		// Type-only imports are edges too: a cycle of types is still a cycle for the reader.
		tsPreCompilationDeps: true,
		doNotFollow: { path: "node_modules" },
		tsConfig: { fileName: "tsconfig.json" },
	},
};
