/**
 * The memory allocator `parley serve` runs with (issue 21: memory comes back after hostile
 * input). After thousands of connections glibc's malloc keeps 15-40 MiB of freed native memory
 * (socket, stream and V8 bookkeeping allocations of the main thread) in its main arena: free, but
 * in pages it only gives back on `malloc_trim`, which Node cannot call. jemalloc gives freed
 * pages back on its own (after `dirty_decay_ms`, 10 s), measured +1 MiB instead of +20-27 MiB
 * (docs/architecture.md, "Memory per connection, and after hostile input").
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
	return { ...env, LD_PRELOAD: preloaded ? `${path}:${preloaded}` : path };
}
