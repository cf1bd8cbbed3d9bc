#!/usr/bin/env node
import nodeModule from "node:module";

// Parley is TypeScript run by Node's type stripping, which needs Node 24 or later.
const major = Number(process.versions.node.split(".")[0]);
if (major < 24) {
	console.error(
		`parley: Node.js ${process.versions.node} is too old; Parley needs Node.js 24 or later ` +
			"(run it through npx or npm scripts in the project, which use the bundled Node 24).",
	);
	process.exit(1);
}
// node:sqlite announces itself as experimental on every start; that line is noise for operators.
process.removeAllListeners("warning");
process.on("warning", (w) => {
	if (w.name === "ExperimentalWarning" && /SQLite/.test(w.message)) return;
	console.error(`${w.name}: ${w.message}`);
});
// `parley serve` runs with jemalloc where it is installed: glibc's malloc keeps the freed memory
// of a connection storm (issue 21; src/cli/allocator.ts). The allocator is chosen at exec time,
// so the process replaces itself once (same pid, arguments and streams); PARLEY_MALLOC=system
// keeps glibc's.
if (process.argv[2] === "serve" && typeof process.execve === "function") {
	const { existsSync } = await import("node:fs");
	const { allocatorEnv } = await import("../src/cli/allocator.ts");
	const env = allocatorEnv(process.env, process.platform, existsSync);
	if (env) {
		// The inspector's listening socket would outlive the exec and hold its port.
		const inspector = await import("node:inspector");
		if (inspector.url()) inspector.close();
		const args = [process.execPath, ...process.execArgv, ...process.argv.slice(1)];
		try {
			process.execve(process.execPath, args, env);
		} catch (err) {
			// Serve with glibc's malloc rather than not at all.
			console.error(`parley: running with the system allocator (${err.message})`);
		}
	}
}
// Keep compiled, type-stripped code between runs (in the OS temp directory): every command,
// and scripts that call `parley user add` many times, start about twice as fast.
nodeModule.enableCompileCache();
const { main } = await import("../src/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
