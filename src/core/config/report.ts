/** How configuration problems are reported: one line each, at the line of the key they are about. */

export interface Problem {
	line: number | undefined;
	message: string;
}

export type Report = (
	path: readonly (string | number)[],
	message: string,
	lineOf?: readonly (string | number)[],
) => void;

/** `hosts."a.example".modules[2]`: the way the key is written in TOML. */
export function formatKeyPath(path: readonly PropertyKey[]): string {
	let out = "";
	for (const segment of path) {
		if (typeof segment === "number") out += `[${segment}]`;
		else {
			const s = String(segment);
			const written = /^[A-Za-z0-9_-]+$/.test(s) ? s : JSON.stringify(s);
			out += out === "" ? written : `.${written}`;
		}
	}
	return out;
}
