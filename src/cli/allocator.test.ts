import assert from "node:assert/strict";
import { test } from "node:test";
import { allocatorEnv, JEMALLOC_CONF, JEMALLOC_PATHS } from "./allocator.ts";

const DEBIAN = JEMALLOC_PATHS[0] as string;
const installed = (p: string) => p === DEBIAN;

test("serve preloads jemalloc where it is installed, once, unless told to keep glibc's malloc", () => {
	assert.equal(allocatorEnv({ A: "1" }, "linux", installed)?.LD_PRELOAD, DEBIAN);
	assert.equal(allocatorEnv({ A: "1" }, "linux", installed)?.A, "1");
	assert.equal(allocatorEnv({}, "linux", installed)?.MALLOC_CONF, JEMALLOC_CONF);
	// An operator's jemalloc settings are theirs.
	assert.equal(
		allocatorEnv({ MALLOC_CONF: "narenas:2" }, "linux", installed)?.MALLOC_CONF,
		"narenas:2",
	);
	// Already preloaded (the process after its execve, or an operator's LD_PRELOAD): go on.
	assert.equal(allocatorEnv({ LD_PRELOAD: DEBIAN }, "linux", installed), null);
	assert.equal(allocatorEnv({ LD_PRELOAD: "/opt/libjemalloc.so" }, "linux", installed), null);
	// Another preloaded library is kept after it.
	assert.equal(
		allocatorEnv({ LD_PRELOAD: "/x/libfoo.so" }, "linux", installed)?.LD_PRELOAD,
		`${DEBIAN}:/x/libfoo.so`,
	);
	assert.equal(allocatorEnv({ PARLEY_MALLOC: "system" }, "linux", installed), null);
	assert.equal(
		allocatorEnv({}, "linux", () => false),
		null,
	);
	assert.equal(allocatorEnv({}, "darwin", installed), null);
	// A library named by path, if it is there.
	const mi = "/opt/mimalloc/libmimalloc.so.2";
	assert.equal(allocatorEnv({ PARLEY_MALLOC: mi }, "linux", (p) => p === mi)?.LD_PRELOAD, mi);
	assert.equal(allocatorEnv({ PARLEY_MALLOC: mi }, "linux", installed), null);
	assert.equal(
		allocatorEnv({ PARLEY_MALLOC: mi, LD_PRELOAD: mi }, "linux", () => true),
		null,
	);
});
