import assert from "node:assert/strict";
import { test } from "node:test";
import { isSafeHost, normalizeIp, parseForwarded, trustedProxies } from "./client-info.ts";

test("trusted proxies: addresses and CIDR ranges, IPv4-mapped IPv6 included", () => {
	const trusted = trustedProxies(["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"]);
	assert.equal(trusted("127.0.0.1"), true);
	assert.equal(trusted("::ffff:127.0.0.1"), true);
	assert.equal(trusted("10.20.30.40"), true);
	assert.equal(trusted("2001:db8::1"), true);
	assert.equal(trusted("192.0.2.1"), false);
	assert.equal(trusted("::1"), false);
	assert.equal(trusted("not an ip"), false);
	assert.equal(trustedProxies([])("127.0.0.1"), false);
	assert.throws(() => trustedProxies(["localhost"]), /not an IP address/);
});

test("normalizeIp unwraps IPv4-mapped addresses only", () => {
	assert.equal(normalizeIp("::ffff:192.0.2.7"), "192.0.2.7");
	assert.equal(normalizeIp("::ffff:abcd"), "::ffff:abcd");
	assert.equal(normalizeIp("2001:db8::1"), "2001:db8::1");
});

test("Forwarded: the last element wins, quoted values and ports (RFC 7239 §4, §6)", () => {
	assert.deepEqual(parseForwarded("for=192.0.2.60;proto=https;host=chat.example"), {
		for: "192.0.2.60",
		proto: "https",
		host: "chat.example",
	});
	// The nearest proxy appended the last element; earlier ones could be forged by the client.
	assert.deepEqual(parseForwarded("for=6.6.6.6;proto=http, for=198.51.100.17"), {
		for: "198.51.100.17",
	});
	assert.deepEqual(parseForwarded('For="[2001:db8:cafe::17]:4711"'), { for: "2001:db8:cafe::17" });
	assert.deepEqual(parseForwarded("for=192.0.2.43:47011"), { for: "192.0.2.43" });
	assert.deepEqual(parseForwarded("for=_hidden"), { for: "_hidden" });
	assert.equal(parseForwarded(""), null);
	assert.equal(parseForwarded("for=1.2.3.4,"), null);
});

test("only plain host[:port] values are echoed into URLs", () => {
	for (const ok of ["chat.example.org", "chat.example.org:5281", "127.0.0.1:80", "[::1]:5280"])
		assert.equal(isSafeHost(ok), true, ok);
	for (const bad of ['evil"><x', "a b", "host/path", "user@host", "", "host:99999999"])
		assert.equal(isSafeHost(bad), false, bad);
});
