import assert from "node:assert/strict";
import { test } from "node:test";
import { endpointLinks, hostMetaJson, hostMetaXml, REL_BOSH, REL_WEBSOCKET } from "./host-meta.ts";

test("XEP-0156 §3: links follow the scheme the client used", () => {
	const paths = { websocket: "/xmpp-websocket", bosh: "/http-bind" };
	assert.deepEqual(endpointLinks({ secure: true, host: "chat.example:5281" }, paths), [
		{ rel: REL_BOSH, href: "https://chat.example:5281/http-bind" },
		{ rel: REL_WEBSOCKET, href: "wss://chat.example:5281/xmpp-websocket" },
	]);
	assert.deepEqual(endpointLinks({ secure: false, host: "h" }, { websocket: "/ws" }), [
		{ rel: REL_WEBSOCKET, href: "ws://h/ws" },
	]);
});

test("RFC 6415 XRD and JRD documents", () => {
	const links = [{ rel: REL_BOSH, href: "https://h/a?b&c" }];
	const xml = hostMetaXml(links);
	assert.match(
		xml,
		/^<\?xml version='1.0' encoding='utf-8'\?>\n<XRD xmlns='http:\/\/docs.oasis-open.org\/ns\/xri\/xrd-1.0'>/,
	);
	assert.ok(xml.includes(`<Link rel="${REL_BOSH}" href="https://h/a?b&amp;c"/>`), xml);
	assert.deepEqual(JSON.parse(hostMetaJson(links)), { links });
});
