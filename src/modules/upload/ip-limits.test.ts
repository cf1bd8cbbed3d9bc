import assert from "node:assert/strict";
import { test } from "node:test";
import { IpUploadLimits, ipKey } from "./ip-limits.ts";

test("IPv4 counts by address, IPv6 by its /64", () => {
	assert.equal(ipKey("192.0.2.7"), "192.0.2.7");
	assert.equal(ipKey("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
	assert.equal(ipKey("2001:0db8:0001:0002::9"), "2001:db8:1:2::/64");
	assert.equal(ipKey("2001:db8::1"), "2001:db8:0:0::/64");
	assert.equal(ipKey("::a:b:c:d:e:f:1"), "0:a:b:c::/64");
	assert.equal(ipKey("::1"), "0:0:0:0::/64");
	assert.equal(ipKey("64:ff9b::192.0.2.1"), "64:ff9b:0:0::/64");
});

test("uploads at once, per address", () => {
	const l = new IpUploadLimits({ maxUploads: 2, dailyBytes: 0 });
	const a = l.begin("192.0.2.1", 10);
	const b = l.begin("192.0.2.1", 10);
	assert.equal(typeof a, "function");
	assert.equal(typeof b, "function");
	const c = l.begin("192.0.2.1", 10);
	assert.equal(typeof c === "function" ? 0 : c.status, 429);
	assert.equal(typeof l.begin("192.0.2.2", 10), "function");
	if (typeof a === "function") a(10);
	assert.equal(typeof l.begin("192.0.2.1", 10), "function");
});

test("bytes per 24 hours, counting what was received, with a Retry-After", () => {
	let now = 1_000_000;
	const l = new IpUploadLimits({ maxUploads: 0, dailyBytes: 100, now: () => now });
	const big = l.begin("2001:db8::1", 101);
	assert.equal(typeof big === "function" ? 0 : big.status, 413);
	const a = l.begin("2001:db8::1", 60);
	assert.equal(typeof a, "function");
	// Reserved while in progress: 60 + 50 > 100.
	const b = l.begin("2001:db8::2", 50);
	assert.equal(typeof b === "function" ? 0 : b.status, 429);
	now += 1000;
	if (typeof a === "function") a(30); // cut off after 30 bytes
	const c = l.begin("2001:db8::3", 70);
	assert.equal(typeof c, "function");
	if (typeof c === "function") c(70);
	now += 1000;
	const d = l.begin("2001:db8::1", 10);
	assert.ok(typeof d !== "function" && d.status === 429);
	// The first 30 bytes leave the window 24 h after they ended.
	assert.equal(d.retryAfter, 86_400 - 1);
	now += 86_400_000 - 1000;
	assert.equal(typeof l.begin("2001:db8::1", 30), "function");
	assert.equal(typeof l.begin("2001:db9::1", 100), "function");
});

test("prune forgets addresses with nothing in the window", () => {
	let now = 0;
	const l = new IpUploadLimits({ maxUploads: 5, dailyBytes: 1000, now: () => now });
	const a = l.begin("192.0.2.1", 10);
	if (typeof a === "function") a(10);
	assert.equal(l.size, 1);
	now += 86_400_001;
	l.prune();
	assert.equal(l.size, 0);
});
