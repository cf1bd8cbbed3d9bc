/** Per-IP limits (src/security/limits.ts): open connections and SASL failure slow-down. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { addressMatcher } from "./addresses.ts";
import { AuthFailureTracker, ConnectionLimiter } from "./limits.ts";

test("ConnectionLimiter: at most `max` open connections per address", () => {
	const l = new ConnectionLimiter(2);
	assert.equal(l.acquire("10.0.0.1"), true);
	assert.equal(l.acquire("10.0.0.1"), true);
	assert.equal(l.acquire("10.0.0.1"), false);
	// Another address has its own count.
	assert.equal(l.acquire("10.0.0.2"), true);
	// Closing one frees a slot.
	l.release("10.0.0.1");
	assert.equal(l.acquire("10.0.0.1"), true);
	assert.equal(l.acquire("10.0.0.1"), false);
});

test("ConnectionLimiter: a refused acquire does not count, releases never go negative", () => {
	const l = new ConnectionLimiter(1);
	assert.equal(l.acquire("a"), true);
	assert.equal(l.acquire("a"), false);
	assert.equal(l.acquire("a"), false);
	l.release("a");
	assert.equal(l.acquire("a"), true);
	l.release("a");
	l.release("a"); // extra release of an address with nothing open
	l.release("never-seen");
	assert.equal(l.acquire("a"), true);
	assert.equal(l.acquire("a"), false, "the extra release did not create a spare slot");
});

test("ConnectionLimiter: 0 means unlimited", () => {
	const l = new ConnectionLimiter(0);
	for (let i = 0; i < 1000; i++) assert.equal(l.acquire("a"), true);
});

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
	let t = start;
	return {
		now: () => t,
		advance: (ms) => {
			t += ms;
		},
	};
}

test("ConnectionLimiter: exempt addresses and ranges are never counted, IPv4-mapped IPv6 included", () => {
	const l = new ConnectionLimiter(1, ["127.0.0.1", "::1", "10.0.0.0/8"]);
	for (const ip of ["127.0.0.1", "::ffff:127.0.0.1", "::1", "10.1.2.3"]) {
		assert.ok(l.acquire(ip));
		assert.ok(l.acquire(ip), `${ip} is exempt`);
		l.release(ip);
	}
	assert.ok(l.acquire("127.0.0.2"));
	assert.equal(l.acquire("127.0.0.2"), false, "127.0.0.2 is not on the list");
	assert.equal(l.refused, 1);
	l.exempt = addressMatcher([]); // a reload that empties the list
	assert.ok(l.acquire("127.0.0.1"));
	assert.equal(l.acquire("127.0.0.1"), false);
});

test("AuthFailureTracker: failures within the allowance cost nothing, then the delay doubles up to 10 s", () => {
	const c = clock();
	const tr = new AuthFailureTracker(3, c.now);
	const delays: number[] = [];
	for (let i = 0; i < 9; i++) {
		delays.push(tr.delayFor("1.2.3.4"));
		tr.recordFailure("1.2.3.4");
		c.advance(1000);
	}
	assert.deepEqual(delays, [0, 0, 0, 1000, 2000, 4000, 8000, 10_000, 10_000]);
	// Other addresses are not punished for this one.
	assert.equal(tr.delayFor("5.6.7.8"), 0);
});

test("AuthFailureTracker: failures older than one minute are forgotten", () => {
	const c = clock();
	const tr = new AuthFailureTracker(2, c.now);
	for (let i = 0; i < 4; i++) tr.recordFailure("ip");
	assert.equal(tr.delayFor("ip"), 4000);
	c.advance(59_999);
	assert.equal(tr.delayFor("ip"), 4000, "still inside the window");
	c.advance(1);
	assert.equal(tr.delayFor("ip"), 0, "the window of 60 s has passed");
});

test("AuthFailureTracker: the window slides (only recent failures count)", () => {
	const c = clock();
	const tr = new AuthFailureTracker(1, c.now);
	tr.recordFailure("ip"); // t = 0
	c.advance(30_000);
	tr.recordFailure("ip"); // t = 30 s
	assert.equal(tr.delayFor("ip"), 2000);
	c.advance(30_000); // the first one is now 60 s old
	assert.equal(tr.delayFor("ip"), 1000);
});

test("AuthFailureTracker: allowance 0 switches the tracker off", () => {
	const c = clock();
	const tr = new AuthFailureTracker(0, c.now);
	for (let i = 0; i < 100; i++) tr.recordFailure("ip");
	assert.equal(tr.delayFor("ip"), 0);
});

test("AuthFailureTracker: sweep drops stale addresses and keeps recent ones", () => {
	const c = clock();
	const tr = new AuthFailureTracker(1, c.now);
	tr.recordFailure("old");
	tr.recordFailure("old");
	c.advance(61_000);
	tr.recordFailure("new");
	tr.recordFailure("new");
	tr.sweep();
	assert.equal(tr.delayFor("old"), 0);
	assert.equal(tr.delayFor("new"), 2000);
});

test("AuthFailureTracker: failures() is the count inside the window, per address", () => {
	const c = clock();
	const tr = new AuthFailureTracker(5, c.now);
	assert.equal(tr.failures("ip"), 0);
	tr.recordFailure("ip");
	c.advance(30_000);
	tr.recordFailure("ip");
	assert.equal(tr.failures("ip"), 2);
	assert.equal(tr.failures("other"), 0);
	c.advance(30_000);
	assert.equal(tr.failures("ip"), 1, "the first one left the window");
});

test("AuthFailureTracker: parallel attempts from one address past the allowance wait their turn, one after another", () => {
	const c = clock();
	const tr = new AuthFailureTracker(2, c.now);
	// Within the allowance nothing waits, however many run at once.
	assert.deepEqual([tr.reserve("ip"), tr.reserve("ip")], [0, 0]);
	for (let i = 0; i < 6; i++) tr.recordFailure("ip");
	// Past it (delay 10 s), 32 connections asking at once are spaced 10 s apart: still 6 guesses
	// a minute, not 32 every 10 s.
	const waits = Array.from({ length: 32 }, () => tr.reserve("ip"));
	assert.deepEqual(waits.slice(0, 4), [10_000, 20_000, 30_000, 40_000]);
	assert.equal(waits[31], 320_000);
	// Another address is not queued behind this one.
	assert.equal(tr.reserve("other"), 0);
	// One connection alone waits exactly the delay, as before.
	c.advance(320_000);
	for (let i = 0; i < 6; i++) tr.recordFailure("solo");
	assert.equal(tr.reserve("solo"), 10_000);
	c.advance(10_000);
	assert.equal(tr.reserve("solo"), 10_000);
	// Turns that have passed are swept.
	c.advance(60_000);
	tr.sweep();
	assert.equal(tr.reserve("solo"), 0);
});
