/**
 * XEP-0480 SASL Upgrade Tasks, server side, for SCRAM (§3): an account that lacks the
 * credential of a SCRAM hash (imported from a server that kept only SCRAM-SHA-1, say) gets it
 * during a SASL2 login (XEP-0388 §2.6.3 tasks) from a client that knows the password, without
 * the password crossing the wire: the server hands out a fresh salt and the iteration count,
 * the client answers SaltedPassword (RFC 5802 §3), and the server keeps StoredKey and ServerKey
 * derived from it, as for any credential.
 *
 * The stream (src/c2s/stream.ts) runs the `<continue>`/`<next>`/`<task-data>` exchange; this
 * file knows the task names, what to send and what to check.
 */
import { randomBytes } from "node:crypto";
import { type Element, x } from "../xml/element.ts";
import { NS_SASL2, NS_SCRAM_UPGRADE } from "../xmpp/ns.ts";
import { strictBase64Decode } from "./sasl.ts";
import {
	keysFromSaltedPassword,
	SALT_BYTES,
	SCRAM_HASH_INFO,
	type ScramCredential,
	type ScramHash,
	type StoredCredentials,
} from "./scram.ts";

/**
 * The tasks offered (§2.1: "UPGR-" and the mechanism without -PLUS, since channel binding has
 * nothing to do with what is stored), with the hash each one adds.
 */
export const UPGRADE_TASKS: Readonly<Record<string, ScramHash>> = {
	"UPGR-SCRAM-SHA-256": "SHA-256",
	"UPGR-SCRAM-SHA-1": "SHA-1",
};

export const taskName = (hash: ScramHash): string => `UPGR-SCRAM-${hash}`;

/**
 * The upgrades to run after a login (§2.2): those asked for whose hash the account lacks, in
 * the order asked. One it already has is skipped: its credential is never replaced this way
 * (that would be a password change without the old password's say).
 */
export function upgradesToRun(asked: readonly string[], creds: StoredCredentials): ScramHash[] {
	const out: ScramHash[] = [];
	for (const name of asked) {
		const hash = UPGRADE_TASKS[name];
		if (hash && creds[hash] === undefined && !out.includes(hash)) out.push(hash);
	}
	return out;
}

/** One SCRAM upgrade task under way: the salt sent, then the client's SaltedPassword checked. */
export class ScramUpgrade {
	readonly hash: ScramHash;
	readonly #salt: Buffer;
	readonly #iterations: number;

	constructor(hash: ScramHash, iterations: number, salt: Buffer = randomBytes(SALT_BYTES)) {
		this.hash = hash;
		this.#iterations = iterations;
		this.#salt = salt;
	}

	get name(): string {
		return taskName(this.hash);
	}

	/** §3: `<task-data><salt iterations>` with the salt as SCRAM's s= value (base64). */
	start(): Element {
		return x(
			"task-data",
			{ xmlns: NS_SASL2 },
			x(
				"salt",
				{ xmlns: NS_SCRAM_UPGRADE, iterations: String(this.#iterations) },
				this.#salt.toString("base64"),
			),
		);
	}

	/**
	 * §3: the client's `<task-data><hash>`, base64 of SaltedPassword; the credential to store,
	 * or why it is refused.
	 */
	finish(taskData: Element): ScramCredential | string {
		const text = taskData.getChild("hash", NS_SCRAM_UPGRADE)?.text().trim();
		if (text === undefined) return "no <hash xmlns='urn:xmpp:scram-upgrade:0'/> in <task-data/>";
		const salted = strictBase64Decode(text);
		if (salted === null) return "the hash is not base64";
		if (salted.length !== SCRAM_HASH_INFO[this.hash].length)
			return `the hash is not a SaltedPassword of ${this.hash}`;
		const { storedKey, serverKey } = keysFromSaltedPassword(this.hash, salted);
		return {
			salt: this.#salt.toString("base64"),
			iterations: this.#iterations,
			storedKey: storedKey.toString("base64"),
			serverKey: serverKey.toString("base64"),
			upgraded: Date.now(),
		};
	}
}
