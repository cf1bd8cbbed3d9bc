import assert from "node:assert/strict";
import { test } from "node:test";
import { type Element, x } from "../../xml/element.ts";
import { StanzaError } from "../../xmpp/errors.ts";
import { JIDCache } from "../../xmpp/jid.ts";
import type { RoomConfig } from "./form.ts";
import { type OccupantSession, Room, type RoomHost } from "./room.ts";

const config: RoomConfig = {
	name: "",
	description: "",
	persistent: false,
	public: true,
	members_only: false,
	moderated: false,
	password: "",
	max_occupants: 100,
	whois: "moderators",
	change_subject: false,
	allow_invites: false,
	allow_pm: "anyone",
	history_length: 20,
	max_history_fetch: 20,
	archive: false,
	enforce_nicks: false,
	lang: "",
};

function setup() {
	const jids = new JIDCache(100);
	const sent: { to: string; el: Element }[] = [];
	const discarded: Room[] = [];
	const host: RoomHost = {
		deliver: (s: OccupantSession, el: Element) => sent.push({ to: s.key, el }),
		route: (el: Element) => sent.push({ to: el.attrs.to ?? "", el }),
		parseJid: (s) => jids.parse(s),
		isServiceAdmin: (bare) => bare === "admin@example",
		sessionIndex: () => {},
		discard: (r) => discarded.push(r),
		limits: { maxOccupants: 100, maxHistory: 100, maxText: 100 },
		now: () => 1_000_000,
		occupantId: (room, bare) => `${room}|${bare}`,
		voiceRequestInterval: 60_000,
	};
	const room = new Room(jids.parse("room@muc.example"), { ...config }, host, "owner@example", 0);
	room.affiliations.set("owner@example", { affiliation: "owner" });
	const enter = (real: string, nick: string) =>
		room.presence(x("presence"), jids.parse(real), nick, null, false);
	return { room, sent, discarded, enter, jid: (s: string) => jids.parse(s) };
}

const fails = (fn: () => unknown, condition: string) =>
	assert.throws(fn, (e: unknown) => e instanceof StanzaError && e.condition === condition);

test("XEP-0045 §7.4: a broadcast builds the message once; every occupant gets the same children", () => {
	const { room, sent, enter, jid } = setup();
	enter("owner@example/a", "owner");
	enter("u1@example/a", "u1");
	enter("u2@example/a", "u2");
	sent.length = 0;
	room.groupchat(
		x("message", { type: "groupchat", id: "m1" }, x("body", null, "hi")),
		jid("u1@example/a"),
	);
	assert.deepEqual(sent.map((s) => s.to).sort(), [
		"owner@example/a",
		"u1@example/a",
		"u2@example/a",
	]);
	const children = new Set(sent.map((s) => s.el.children));
	assert.equal(children.size, 1, "one shared payload");
	for (const s of sent) assert.equal(s.el.attrs.to, s.to);
	assert.equal(room.history.length, 1);
});

test("§5.1.1, §8.2, §9.6: role changes by role and affiliation (Prosody's may_set_role)", () => {
	const { room, enter, jid } = setup();
	room.affiliations.set("admin2@example", { affiliation: "admin" });
	enter("owner@example/a", "owner");
	enter("admin2@example/a", "adm");
	enter("u1@example/a", "u1");
	enter("u2@example/a", "u2");
	const item = (attrs: Record<string, string>) => [x("item", attrs)];
	// A participant changes no roles.
	fails(() => room.adminSet(jid("u1@example/a"), item({ nick: "u2", role: "none" })), "forbidden");
	// Nobody changes an admin's or owner's role.
	fails(
		() => room.adminSet(jid("owner@example/a"), item({ nick: "adm", role: "visitor" })),
		"not-allowed",
	);
	// A moderator without admin rights cannot grant moderator.
	room.adminSet(jid("admin2@example/a"), item({ nick: "u1", role: "moderator" }));
	assert.equal(room.occupants.get("u1")?.role, "moderator");
	fails(
		() => room.adminSet(jid("u1@example/a"), item({ nick: "u2", role: "moderator" })),
		"not-allowed",
	);
	// But kicks a participant.
	room.adminSet(jid("u1@example/a"), item({ nick: "u2", role: "none" }));
	assert.equal(room.occupants.has("u2"), false);
	// Several items: all or nothing.
	fails(
		() =>
			room.adminSet(jid("admin2@example/a"), [
				x("item", { nick: "u1", role: "visitor" }),
				x("item", { nick: "nobody", role: "none" }),
			]),
		"item-not-found",
	);
	assert.equal(room.occupants.get("u1")?.role, "moderator");
});

test("§5.2: service admins are owners; admins cannot make owners; the last owner cannot leave", () => {
	const { room, jid } = setup();
	assert.equal(room.affiliationOf("admin@example"), "owner");
	room.affiliations.set("adm@example", { affiliation: "admin" });
	const set = (actor: string, j: string, affiliation: string) =>
		room.adminSet(jid(actor), [x("item", { jid: j, affiliation })]);
	fails(() => set("adm@example/r", "x@example", "owner"), "not-allowed");
	fails(() => set("adm@example/r", "owner@example", "none"), "not-allowed");
	fails(() => set("nobody@example/r", "x@example", "member"), "forbidden");
	assert.equal(set("adm@example/r", "x@example", "member"), true);
	fails(() => set("owner@example/r", "owner@example", "admin"), "conflict");
	set("owner@example/r", "second@example", "owner");
	set("owner@example/r", "owner@example", "admin");
	assert.equal(room.affiliationOf("owner@example"), "admin");
});

test("multi-session nicks: the nick stays until the user's last session leaves; then a temporary room goes", () => {
	const { room, sent, discarded, enter } = setup();
	enter("owner@example/a", "owner");
	enter("owner@example/b", "owner");
	fails(() => enter("other@example/a", "owner"), "conflict");
	assert.equal(room.occupants.get("owner")?.sessions.size, 2);
	room.leave("owner@example/a", null);
	assert.equal(room.occupants.get("owner")?.sessions.size, 1);
	sent.length = 0;
	room.leave("owner@example/b", null);
	assert.equal(room.occupants.size, 0);
	// §7.14: the leaving session gets its unavailable self-presence (110).
	const self = sent.find((s) => s.to === "owner@example/b");
	assert.match(self?.el.toString() ?? "", /type="unavailable"[\s\S]*code="110"/);
	assert.deepEqual(discarded, [room]);
});

test("§7.2: a persistent room is not discarded when empty; stored state round-trips", () => {
	const { room, discarded, enter } = setup();
	room.config.persistent = true;
	room.affiliations.set("m@example", { affiliation: "member", nick: "em" });
	room.subject = { text: "t", nick: "owner", when: 5 };
	enter("owner@example/a", "owner");
	room.leave("owner@example/a", null);
	assert.deepEqual(discarded, []);
	const restored = setup();
	restored.room.restore(JSON.parse(JSON.stringify(room.toStored())));
	assert.deepEqual(restored.room.toStored(), room.toStored());
	// §7.2.9: the nick the member reserved is refused to others, and open to the member.
	fails(() => restored.enter("z@example/r", "em"), "conflict");
	restored.enter("m@example/r", "em");
});
