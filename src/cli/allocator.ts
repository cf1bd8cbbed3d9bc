/**
 * The memory allocator `parley serve` runs with (issue 21: memory comes back after hostile
 * input). After thousands of connections glibc's malloc keeps 15-40 MiB of freed native memory
 * (socket, stream and V8 bookkeeping allocations of the main thread) in its main arena: free, but
 * in pages it only gives back on `malloc_trim`, which Node cannot call. jemalloc gives freed
 * pages back on its own, measured +1 to +2 MiB instead of +20 to +32 MiB (docs/architecture.md,
 * "Memory per connection, and after hostile input").
 *
 * An allocator is chosen when the process starts (`LD_PRELOAD`), so `bin/parley.js serve`
 * replaces itself once with `process.execve` (the same process id, arguments, Node flags and
 * standard streams: systemd, PID files and signals see one process) when jemalloc is installed
 * and not preloaded already. `PARLEY_MALLOC=system` keeps glibc's malloc; a path to a `.so`
 * preloads that library instead.
 */

/** Where Linux distributions install jemalloc (Debian/Ubuntu libjemalloc2, Fedora/RHEL). */
export const JEMALLOC_PATHS = [
	"/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
	"/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
	"/usr/lib64/libjemalloc.so.2",
	"/usr/lib/libjemalloc.so.2",
	"/usr/local/lib/libjemalloc.so.2",
];

/** jemalloc's settings when Parley chose it and the operator set none (MALLOC_CONF). */
export const JEMALLOC_CONF = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";

/**
 * The environment to start again with, or null to go on as is: not on Linux, `PARLEY_MALLOC`
 * is `system`, the allocator is already preloaded, or none is installed.
 */
export function allocatorEnv(
	env: NodeJS.ProcessEnv,
	platform: NodeJS.Platform,
	exists: (path: string) => boolean,
): NodeJS.ProcessEnv | null {
	if (platform !== "linux") return null;
	const choice = env.PARLEY_MALLOC ?? "";
	if (choice === "system") return null;
	const lib = choice.endsWith(".so") || choice.includes(".so.") ? choice : null;
	const preloaded = env.LD_PRELOAD ?? "";
	if (lib ? preloaded.includes(lib) : /jemalloc/.test(preloaded)) return null;
	const path = lib ?? JEMALLOC_PATHS.find(exists);
	if (!path || !exists(path)) return null;
	const out: NodeJS.ProcessEnv = { ...env, LD_PRELOAD: preloaded ? `${path}:${preloaded}` : path };
	// jemalloc purges freed pages only when it is called, after `dirty_decay_ms` (10 s): an idle
	// server after a storm kept 50 MiB for 15 s and more. A background thread purges them within
	// about a second of the quiet collection freeing them.
	if (!lib && env.MALLOC_CONF === undefined) out.MALLOC_CONF = JEMALLOC_CONF;
	return out;
}
