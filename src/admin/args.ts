/**
 * Arguments that arrive as text (a URL's path and query, a CLI flag) read as the type the
 * command's zod schema wants: `"5"` for a number, `"true"` for a boolean. Text that does not
 * read as that type is left as it is, for the schema to refuse with its own message.
 */
import { z } from "zod";
import type { AnyAdminCommand } from "../core/commands.ts";

export function coerceTextArgs(
	command: AnyAdminCommand,
	input: Record<string, unknown>,
): Record<string, unknown> {
	const shape = command.args.shape as Record<string, z.ZodType>;
	const out: Record<string, unknown> = { ...input };
	for (const [key, value] of Object.entries(input)) {
		const schema = shape[key];
		if (typeof value !== "string" || !schema) continue;
		const json = z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as {
			type?: string | string[];
		};
		const types = Array.isArray(json.type) ? json.type : [json.type];
		if (types.includes("string")) continue;
		if ((types.includes("integer") || types.includes("number")) && value.trim() !== "") {
			const n = Number(value);
			if (Number.isFinite(n)) out[key] = n;
		} else if (types.includes("boolean") && (value === "true" || value === "false"))
			out[key] = value === "true";
	}
	return out;
}
