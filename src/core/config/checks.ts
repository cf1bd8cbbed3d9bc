/**
 * Checks zod cannot make: host names and the certificate files the configuration names.
 *
 * Host names: must be lower-case ASCII domain names (IDNs in their xn-- form). Upper case is
 * rejected with a hint rather than silently normalised, so that the name in the file, the name
 * in the logs and the name in the JIDs are the same string.
 */
import { accessSync, constants, statSync } from "node:fs";
import { isAbsolute, relative, resolve, sep } from "node:path";
import { domainToASCII } from "node:url";
import { formatKeyPath, type Report } from "./report.ts";

function isTable(v: unknown): v is Record<string, unknown> {
	return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date);
}

/** Why `name` is not a usable host name, or undefined if it is one. */
export function hostNameProblem(name: string): string | undefined {
	if (name === "") return "a host name cannot be empty";
	if (/[A-Z]/.test(name)) {
		return `host names are lower case; write ${JSON.stringify(name.toLowerCase())}`;
	}
	if (name.endsWith(".")) return `remove the trailing dot: ${JSON.stringify(name.slice(0, -1))}`;
	if (/^[0-9.]+$/.test(name) || name.includes(":") || name.startsWith("[")) {
		return 'an IP address is not a host name; use a domain name ("localhost" for local tests)';
	}
	if ([...name].some((c) => (c.codePointAt(0) ?? 0) > 0x7f)) {
		const ascii = domainToASCII(name);
		return ascii === ""
			? "not a valid internationalised domain name"
			: `write internationalised names in their ASCII form: ${JSON.stringify(ascii)}`;
	}
	if (name.length > 253) return "a domain name has at most 253 characters";
	for (const label of name.split(".")) {
		if (label === "") return 'a domain name cannot have empty labels ("..")';
		if (label.length > 63)
			return `the label "${label.slice(0, 10)}..." is longer than 63 characters`;
		if (!/^[a-z0-9-]+$/.test(label)) {
			return `the label ${JSON.stringify(label)} may only contain a-z, 0-9 and "-"`;
		}
		if (label.startsWith("-") || label.endsWith("-")) {
			return `the label ${JSON.stringify(label)} cannot start or end with "-"`;
		}
	}
	return undefined;
}

export function checkHostNames(raw: Record<string, unknown>, report: Report): void {
	// Component domains ([components."x"]) are domains like hosts, with the same rules.
	for (const table of ["hosts", "components"]) {
		const hosts = raw[table];
		if (!isTable(hosts)) continue;
		for (const name of Object.keys(hosts)) {
			const problem = hostNameProblem(name);
			if (problem !== undefined) {
				report([table, name], `${formatKeyPath([table, name])}: invalid host name: ${problem}`);
			}
		}
	}
}

export function checkTlsFiles(raw: Record<string, unknown>, baseDir: string, report: Report): void {
	const checkTable = (path: string[], table: unknown, requirePair: boolean): void => {
		if (!isTable(table)) return;
		const cert = table.cert;
		const key = table.key;
		for (const [name, value] of [
			["cert", cert],
			["key", key],
		] as const) {
			if (typeof value !== "string") continue;
			const problem = fileProblem(resolve(baseDir, value));
			if (problem !== undefined) {
				const shown = isAbsolute(value)
					? JSON.stringify(value)
					: `${JSON.stringify(value)} (${resolve(baseDir, value)})`;
				report(
					[...path, name],
					`${formatKeyPath([...path, name])}: cannot read ${shown}: ${problem}`,
				);
			}
		}
		// A host's own tls table is a strictObject with both keys required: zod reports that one.
		if (requirePair && typeof cert === "string" && key === undefined) {
			report(
				[...path, "key"],
				`${formatKeyPath([...path, "key"])}: missing; ${formatKeyPath([...path, "cert"])} is set, so the private key is needed too`,
				[...path, "cert"],
			);
		}
		if (requirePair && typeof key === "string" && cert === undefined) {
			report(
				[...path, "cert"],
				`${formatKeyPath([...path, "cert"])}: missing; ${formatKeyPath([...path, "key"])} is set, so the certificate is needed too`,
				[...path, "key"],
			);
		}
	};

	checkTable(["tls"], raw.tls, true);
	const hosts = raw.hosts;
	if (isTable(hosts)) {
		for (const [name, host] of Object.entries(hosts)) {
			if (isTable(host)) checkTable(["hosts", name, "tls"], host.tls, false);
		}
	}
}

function fileProblem(path: string): string | undefined {
	try {
		if (!statSync(path).isFile()) return "not a file";
		accessSync(path, constants.R_OK);
		return undefined;
	} catch (err) {
		return fsReason(err);
	}
}

export function fsReason(err: unknown): string {
	const code = (err as { code?: unknown }).code;
	switch (code) {
		case "ENOENT":
			return "no such file (ENOENT)";
		case "EACCES":
		case "EPERM":
			return `permission denied (${code})`;
		case "EISDIR":
			return "it is a directory (EISDIR)";
		default:
			return err instanceof Error ? err.message : String(err);
	}
}

/** `inner` is `outer` or inside it (both absolute). */
function within(inner: string, outer: string): boolean {
	const rel = relative(outer, inner);
	return rel === "" || (rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/**
 * `backup.dir` outside `server.data_dir` and not holding it (src/admin/backup): a restore
 * replaces the data directory, and the backups must survive it. Paths as written, resolved
 * against `baseDir` as the loader resolves them.
 */
export function checkBackupDir(
	config: { server: { data_dir: string }; backup: { dir: string } },
	baseDir: string,
	report: Report,
): void {
	const data = resolve(baseDir, config.server.data_dir);
	const backups = resolve(baseDir, config.backup.dir);
	if (within(backups, data))
		report(
			["backup", "dir"],
			`backup.dir (${backups}) is inside server.data_dir (${data}), which a restore replaces: choose a directory outside it`,
		);
	else if (within(data, backups))
		report(
			["backup", "dir"],
			`server.data_dir (${data}) is inside backup.dir (${backups}): choose a backup directory that does not hold the data`,
		);
}
