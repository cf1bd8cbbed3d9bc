import assert from "node:assert/strict";
import { test } from "node:test";
import { parseDocument } from "../../xml/parser.ts";
import { StanzaError } from "../../xmpp/errors.ts";
import {
	NS_MODERATE_0,
	NS_MODERATE_1,
	NS_RETRACT_0,
	NS_RETRACT_1,
	parseModeration,
	retractionTarget,
	tombstone,
	withoutForgedModeration,
} from "./moderation.ts";
import { NS_OCCUPANT_ID, occupantId, withoutOccupantIds } from "./occupant-id.ts";

const xml = (s: string) => parseDocument(s, { maxStanzaBytes: 1 << 16, maxDepth: 16 });
const FASTEN = "urn:xmpp:fasten:0";

test("XEP-0425 §4: both request forms, 0.2 (apply-to/moderate:0) and 0.3 (moderate:1 id)", () => {
	assert.deepEqual(
		parseModeration(
			xml(
				`<apply-to xmlns='${FASTEN}' id='s1'><moderate xmlns='${NS_MODERATE_0}'><retract xmlns='${NS_RETRACT_0}'/><reason>spam</reason></moderate></apply-to>`,
			),
		),
		{ id: "s1", reason: "spam" },
	);
	assert.deepEqual(
		parseModeration(
			xml(
				`<moderate xmlns='${NS_MODERATE_1}' id='s2'><retract xmlns='${NS_RETRACT_1}'/></moderate>`,
			),
		),
		{ id: "s2", reason: undefined },
	);
	// Something else entirely: not a moderation request.
	assert.equal(parseModeration(xml(`<apply-to xmlns='${FASTEN}' id='s'/>`)), null);
	assert.equal(parseModeration(xml("<query xmlns='jabber:iq:version'/>")), null);
	// No id: bad-request; no retraction: feature-not-implemented.
	const condition = (s: string) => {
		try {
			parseModeration(xml(s));
		} catch (e) {
			return (e as StanzaError).condition;
		}
		return "none";
	};
	assert.equal(
		condition(`<moderate xmlns='${NS_MODERATE_1}'><retract xmlns='${NS_RETRACT_1}'/></moderate>`),
		"bad-request",
	);
	assert.equal(condition(`<moderate xmlns='${NS_MODERATE_1}' id='x'/>`), "feature-not-implemented");
	assert.ok(new StanzaError("forbidden") instanceof Error);
});

test("XEP-0424 §4: an occupant's retraction names the stanza-id, in either form", () => {
	assert.equal(
		retractionTarget(
			xml(`<message xmlns='jabber:client'><retract xmlns='${NS_RETRACT_1}' id='a'/></message>`),
		),
		"a",
	);
	assert.equal(
		retractionTarget(
			xml(
				`<message xmlns='jabber:client'><apply-to xmlns='${FASTEN}' id='b'><retract xmlns='${NS_RETRACT_0}'/></apply-to></message>`,
			),
		),
		"b",
	);
	assert.equal(
		retractionTarget(xml("<message xmlns='jabber:client'><body>hi</body></message>")),
		undefined,
	);
});

test("XEP-0425 §7, XEP-0421 §4: forged moderation marks and every occupant-id are stripped", () => {
	const msg = xml(
		`<message xmlns='jabber:client'><body>x</body><moderated xmlns='${NS_MODERATE_0}' by='r/a'/><retracted xmlns='${NS_RETRACT_1}'/><retract xmlns='${NS_RETRACT_1}' id='i'><moderated xmlns='${NS_MODERATE_1}' by='r/a'/></retract><occupant-id xmlns='${NS_OCCUPANT_ID}' id='1'/><occupant-id xmlns='${NS_OCCUPANT_ID}' id='2'/></message>`,
	);
	const kept = withoutOccupantIds(withoutForgedModeration(msg.children));
	const names = kept.flatMap((c) => (typeof c === "string" ? [] : [`${c.name}`]));
	assert.deepEqual(names, ["body", "retract"]);
	const retract = kept.find((c) => typeof c !== "string" && c.name === "retract");
	assert.ok(retract && typeof retract !== "string");
	assert.equal(retract.getChild("moderated"), undefined);
	// The client's own element is not changed (a copy is made).
	assert.ok(msg.getChild("retract", NS_RETRACT_1)?.getChild("moderated", NS_MODERATE_1));
});

test("XEP-0425 §5: a tombstone keeps the ids, drops the content, says who and why in both forms", () => {
	const original = xml(
		`<message xmlns='jabber:client' from='r@m/bob' type='groupchat' id='m1'><body>spam</body><stanza-id xmlns='urn:xmpp:sid:0' by='r@m' id='s1'/><occupant-id xmlns='${NS_OCCUPANT_ID}' id='bob'/></message>`,
	);
	const stone = tombstone(original, Date.UTC(2026, 0, 1), {
		by: "r@m/alice",
		occupantId: "alice",
		reason: "spam",
	});
	assert.equal(stone.getChild("body"), undefined);
	assert.equal(stone.attrs.id, "m1");
	assert.equal(stone.getChild("stanza-id", "urn:xmpp:sid:0")?.attrs.id, "s1");
	assert.equal(stone.getChild("occupant-id", NS_OCCUPANT_ID)?.attrs.id, "bob");
	const r1 = stone.getChild("retracted", NS_RETRACT_1);
	assert.equal(r1?.attrs.stamp, "2026-01-01T00:00:00.000Z");
	assert.equal(r1?.getChild("moderated", NS_MODERATE_1)?.attrs.by, "r@m/alice");
	assert.equal(r1?.getChildText("reason"), "spam");
	assert.ok(stone.getChild("moderated", NS_MODERATE_0)?.getChild("retracted", NS_RETRACT_0));
});

test("XEP-0421 §4: one id per user and room, different across rooms and keys", () => {
	const key = Buffer.alloc(32, 1);
	const a = occupantId(key, "r1@m", "bob@x");
	assert.equal(a, occupantId(key, "r1@m", "bob@x"));
	assert.notEqual(a, occupantId(key, "r2@m", "bob@x"));
	assert.notEqual(a, occupantId(key, "r1@m", "carol@x"));
	assert.notEqual(a, occupantId(Buffer.alloc(32, 2), "r1@m", "bob@x"));
});
