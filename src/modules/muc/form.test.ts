import assert from "node:assert/strict";
import { test } from "node:test";
import { type Element, x } from "../../xml/element.ts";
import { StanzaError } from "../../xmpp/errors.ts";
import {
	applyConfigForm,
	checkFormSize,
	configForm,
	logsUrl,
	MAX_FORM_CHARS,
	MAX_FORM_FIELDS,
	MAX_FORM_VALUES,
	NS_ROOMCONFIG,
	type RoomConfig,
	reasonOf,
	roomFeatures,
} from "./form.ts";

const base: RoomConfig = {
	name: "",
	description: "",
	persistent: false,
	public: true,
	members_only: false,
	moderated: false,
	password: "",
	max_occupants: 200,
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
const limits = { maxOccupants: 1000, maxHistory: 100, maxText: 50 };

const submit = (fields: Record<string, string>): Element =>
	x(
		"x",
		{ xmlns: "jabber:x:data", type: "submit" },
		x("field", { var: "FORM_TYPE" }, x("value", null, NS_ROOMCONFIG)),
		Object.entries(fields).map(([k, v]) => x("field", { var: k }, x("value", null, v))),
	);

const notAcceptable = (fn: () => unknown) =>
	assert.throws(fn, (e: unknown) => e instanceof StanzaError && e.condition === "not-acceptable");

test("XEP-0045 §10.2: a submitted form changes what it names and keeps the rest", () => {
	const c = applyConfigForm(
		base,
		submit({
			"muc#roomconfig_roomname": "Room",
			"muc#roomconfig_persistentroom": "1",
			"muc#roomconfig_whois": "anyone",
			"muc#roomconfig_allowpm": "moderators",
			"muc#roomconfig_maxusers": "10",
			"muc#roomconfig_historylength": "0",
			"muc#roomconfig_passwordprotectedroom": "true",
			"muc#roomconfig_roomsecret": "pw",
			"x-unknown#field": "ignored",
		}),
		limits,
	);
	assert.deepEqual(c, {
		...base,
		name: "Room",
		persistent: true,
		whois: "anyone",
		allow_pm: "moderators",
		max_occupants: 10,
		history_length: 0,
		password: "pw",
	});
	// §10.1.2: an empty submitted form (instant room) changes nothing.
	assert.deepEqual(
		applyConfigForm(base, x("x", { xmlns: "jabber:x:data", type: "submit" }), limits),
		base,
	);
	// Switching password protection off forgets the secret.
	const off = applyConfigForm(
		{ ...base, password: "pw" },
		submit({ "muc#roomconfig_passwordprotectedroom": "0" }),
		limits,
	);
	assert.equal(off.password, "");
});

test("§10.2: values outside the service's limits are not-acceptable", () => {
	notAcceptable(() => applyConfigForm(base, submit({ "muc#roomconfig_maxusers": "1001" }), limits));
	notAcceptable(() => applyConfigForm(base, submit({ "muc#roomconfig_maxusers": "ten" }), limits));
	notAcceptable(() =>
		applyConfigForm(base, submit({ "muc#roomconfig_historylength": "101" }), limits),
	);
	notAcceptable(() =>
		applyConfigForm(base, submit({ "muc#roomconfig_whois": "everyone" }), limits),
	);
	notAcceptable(() =>
		applyConfigForm(base, submit({ "muc#roomconfig_persistentroom": "yes" }), limits),
	);
	notAcceptable(() =>
		applyConfigForm(base, submit({ "muc#roomconfig_roomname": "n".repeat(51) }), limits),
	);
	notAcceptable(() =>
		applyConfigForm(base, submit({ "muc#roomconfig_passwordprotectedroom": "1" }), limits),
	);
	notAcceptable(() =>
		applyConfigForm(
			base,
			x(
				"x",
				{ xmlns: "jabber:x:data", type: "submit" },
				x("field", { var: "FORM_TYPE" }, x("value", null, "urn:other")),
			),
			limits,
		),
	);
});

test("the form an owner gets shows the current values", () => {
	const form = configForm({ ...base, name: "Shown", moderated: true }, limits);
	const value = (v: string) =>
		form
			.getChildren("field")
			.find((f) => f.attrs.var === v)
			?.getChildText("value");
	assert.equal(form.attrs.type, "form");
	assert.equal(value("FORM_TYPE"), NS_ROOMCONFIG);
	assert.equal(value("muc#roomconfig_roomname"), "Shown");
	assert.equal(value("muc#roomconfig_moderatedroom"), "1");
	assert.equal(value("muc#roomconfig_membersonly"), "0");
});

test("§6.4: one feature per room type pair", () => {
	assert.deepEqual(roomFeatures(base).slice(1), [
		"muc_temporary",
		"muc_open",
		"muc_public",
		"muc_semianonymous",
		"muc_unmoderated",
		"muc_unsecured",
	]);
	assert.deepEqual(
		roomFeatures({
			...base,
			persistent: true,
			members_only: true,
			public: false,
			whois: "anyone",
			moderated: true,
			password: "x",
		}).slice(1),
		[
			"muc_persistent",
			"muc_membersonly",
			"muc_hidden",
			"muc_nonanonymous",
			"muc_moderated",
			"muc_passwordprotected",
		],
	);
});

test("RFC 6120 §8.3.3.13: forms at the bounds pass, one field, value or character more is not-acceptable", () => {
	const form = (fields: number, values = 1, chars = 1) =>
		x(
			"x",
			{ xmlns: "jabber:x:data", type: "submit" },
			Array.from({ length: fields }, (_, i) =>
				x(
					"field",
					{ var: `f${i}` },
					Array.from({ length: values }, () => x("value", null, "v".repeat(chars))),
				),
			),
		);
	checkFormSize(form(MAX_FORM_FIELDS), "t");
	notAcceptable(() => checkFormSize(form(MAX_FORM_FIELDS + 1), "t"));
	checkFormSize(form(1, MAX_FORM_VALUES), "t");
	notAcceptable(() => checkFormSize(form(1, MAX_FORM_VALUES + 1), "t"));
	checkFormSize(form(1, 1, MAX_FORM_CHARS), "t");
	notAcceptable(() => checkFormSize(form(1, 1, MAX_FORM_CHARS + 1), "t"));
	notAcceptable(() =>
		applyConfigForm(
			base,
			submit({ "muc#roomconfig_roomdesc": "d", junk: "j".repeat(20_000) }),
			limits,
		),
	);
	assert.equal(reasonOf(x("item", null, x("reason", null, "r".repeat(1024)))), "r".repeat(1024));
	notAcceptable(() => reasonOf(x("item", null, x("reason", null, "r".repeat(1025)))));
});

test("XEP-0045 §15.5.4 muc#roominfo_logs: the template for public, open, archived rooms only", () => {
	const t = "https://logs.example/{service}/{room}";
	const open = { ...base, archive: true };
	assert.equal(logsUrl(t, "conf.example", "a b", open), "https://logs.example/conf.example/a%20b");
	assert.equal(logsUrl("", "conf.example", "a", open), null);
	assert.equal(logsUrl(t, "conf.example", "a", base), null);
	assert.equal(logsUrl(t, "conf.example", "a", { ...open, public: false }), null);
	assert.equal(logsUrl(t, "conf.example", "a", { ...open, members_only: true }), null);
	assert.equal(logsUrl(t, "conf.example", "a", { ...open, password: "pw" }), null);
});
