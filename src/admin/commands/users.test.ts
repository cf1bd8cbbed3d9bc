import assert from "node:assert/strict";
import { test } from "node:test";
import { argsFromForm, describeArg } from "../../modules/adhoc/forms.ts";
import { userAdd, userPassword, userRemove } from "./users.ts";

test("XEP-0133 §4.1, §4.2, §4.7: the ad-hoc forms of user.add, user.remove and user.password name the account accountjid", () => {
	for (const command of [userAdd, userRemove, userPassword]) {
		const shape = command.args.shape as Record<string, Parameters<typeof describeArg>[1]>;
		const jid = describeArg("jid", shape.jid as Parameters<typeof describeArg>[1]);
		assert.equal(jid.var, "accountjid", command.name);
		assert.equal(jid.type, "jid-single", command.name);
		if (shape.password)
			assert.equal(describeArg("password", shape.password).type, "text-private", command.name);
	}
});

test("a submitted XEP-0133 add-user form reads back into user.add's arguments", () => {
	const values = new Map([
		["accountjid", ["newbie@localhost"]],
		["password", ["s3cret"]],
		["password-verify", ["s3cret"]],
	]);
	const args = argsFromForm(userAdd.args, values);
	assert.deepEqual(userAdd.args.parse(args), {
		jid: "newbie@localhost",
		password: "s3cret",
		role: "user",
	});
});
