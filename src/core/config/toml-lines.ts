/** Where is a key in the TOML text? Finds the line an error message should point at. */

export interface KeyLines {
	/** Line (1-based) where `path` or, failing that, its closest written parent is defined. */
	lookup(path: readonly (string | number)[]): number | undefined;
}

/**
 * Scans (already valid) TOML text and records the line where each key path first appears:
 * table headers, dotted keys, keys inside inline tables, array elements (by index; arrays of
 * tables `[[x]]` are not indexed and map to their first header). Best effort: on anything unexpected it stops and keeps what it
 * has, since the text was parsed successfully before and this only serves error messages.
 */
export function indexKeyLines(text: string): KeyLines {
	const lines = new Map<string, number>();
	type Path = readonly (string | number)[];
	const id = (path: Path): string => JSON.stringify(path);
	const record = (path: Path, line: number): void => {
		for (let i = 1; i <= path.length; i++) {
			const k = id(path.slice(0, i));
			if (!lines.has(k)) lines.set(k, line);
		}
	};

	let pos = 0;
	let line = 1;
	const peek = (n = 0): string => text[pos + n] ?? "";
	const startsWith = (s: string): boolean => text.startsWith(s, pos);
	const advance = (n = 1): void => {
		for (let i = 0; i < n && pos < text.length; i++) {
			if (text[pos] === "\n") line++;
			pos++;
		}
	};
	const skipSpaces = (): void => {
		while (peek() === " " || peek() === "\t") advance();
	};
	const skipComment = (): void => {
		if (peek() === "#") while (pos < text.length && peek() !== "\n") advance();
	};
	/** Whitespace, newlines and comments (inside arrays and between statements). */
	const skipBlank = (): void => {
		for (;;) {
			const c = peek();
			if (c === " " || c === "\t" || c === "\r" || c === "\n") advance();
			else if (c === "#") skipComment();
			else return;
		}
	};

	const parseString = (): string | undefined => {
		if (startsWith('"""') || startsWith("'''")) {
			const delim = text.slice(pos, pos + 3);
			advance(3);
			const start = pos;
			while (pos < text.length && !startsWith(delim))
				advance(delim === '"""' && peek() === "\\" ? 2 : 1);
			const value = text.slice(start, pos);
			advance(3);
			while (peek() === delim[0]) advance(); // up to two extra quotes belong to the string
			return value;
		}
		const quote = peek();
		if (quote !== '"' && quote !== "'") return undefined;
		advance();
		const start = pos;
		while (pos < text.length && peek() !== quote && peek() !== "\n") {
			advance(quote === '"' && peek() === "\\" ? 2 : 1);
		}
		const body = text.slice(start, pos);
		advance();
		if (quote === "'") return body;
		try {
			return JSON.parse(`"${body}"`) as string;
		} catch {
			return body;
		}
	};

	const parseKey = (): string[] | undefined => {
		const segments: string[] = [];
		for (;;) {
			skipSpaces();
			let segment: string | undefined;
			if (peek() === '"' || peek() === "'") segment = parseString();
			else {
				const m = /^[A-Za-z0-9_-]+/.exec(text.slice(pos, pos + 256));
				if (m !== null) {
					segment = m[0];
					advance(segment.length);
				}
			}
			if (segment === undefined) return undefined;
			segments.push(segment);
			skipSpaces();
			if (peek() !== ".") return segments;
			advance();
		}
	};

	const parseValue = (path: Path): boolean => {
		const c = peek();
		if (c === '"' || c === "'") return parseString() !== undefined;
		if (c === "[") {
			advance();
			for (let index = 0; ; index++) {
				skipBlank();
				if (peek() === "]") {
					advance();
					return true;
				}
				record([...path, index], line);
				if (!parseValue([...path, index])) return false;
				skipBlank();
				if (peek() === ",") advance();
				else if (peek() !== "]") return false;
			}
		}
		if (c === "{") {
			advance();
			for (;;) {
				skipBlank();
				if (peek() === "}") {
					advance();
					return true;
				}
				const keyLine = line;
				const key = parseKey();
				if (key === undefined) return false;
				record([...path, ...key], keyLine);
				skipSpaces();
				if (peek() !== "=") return false;
				advance();
				skipSpaces();
				if (!parseValue([...path, ...key])) return false;
				skipBlank();
				if (peek() === ",") advance();
				else if (peek() !== "}") return false;
			}
		}
		// Scalar: number, boolean, date-time (which may contain one space).
		const start = pos;
		while (pos < text.length && !/[,\]}\n#]/.test(peek())) advance();
		return pos > start;
	};

	let table: string[] = [];
	while (pos < text.length) {
		skipBlank();
		if (pos >= text.length) break;
		const headerLine = line;
		if (peek() === "[") {
			const arrayOfTables = peek(1) === "[";
			advance(arrayOfTables ? 2 : 1);
			const key = parseKey();
			if (key === undefined) break;
			table = key;
			record(table, headerLine);
			advance(arrayOfTables ? 2 : 1);
		} else {
			const key = parseKey();
			if (key === undefined) break;
			record([...table, ...key], headerLine);
			skipSpaces();
			if (peek() !== "=") break;
			advance();
			skipSpaces();
			if (!parseValue([...table, ...key])) break;
		}
		skipSpaces();
		skipComment();
	}

	return {
		lookup(path) {
			for (let n = path.length; n > 0; n--) {
				const found = lines.get(id(path.slice(0, n)));
				if (found !== undefined) return found;
			}
			return undefined;
		},
	};
}

/** An array or inline table still open at some point of the text, and where it began. */
export interface OpenConstruct {
	kind: "array" | "inline table";
	/** 1-based, as the TOML parser counts. */
	line: number;
	column: number;
}

/**
 * The outermost array or inline table still open at `line`:`column` (where a TOML parser
 * stopped): an unclosed `[` is found only at the next table header, lines after it began, and
 * this is where it began. Undefined when the position is not inside a value that spans lines.
 */
export function openConstructAt(
	text: string,
	line: number,
	column: number,
): OpenConstruct | undefined {
	const stack: OpenConstruct[] = [];
	let l = 1;
	let c = 1;
	let i = 0;
	/** Only blanks so far on this line (a `[` here, outside a value, is a table header). */
	let lineStart = true;
	/** After `=` of a key at the top level, until the end of its value. */
	let inValue = false;
	const before = () => l < line || (l === line && c < column);
	const advance = () => {
		if (text[i] === "\n") {
			l++;
			c = 1;
			lineStart = true;
			if (stack.length === 0) inValue = false;
		} else c++;
		i++;
	};
	const toLineEnd = () => {
		while (i < text.length && text[i] !== "\n" && before()) advance();
	};
	while (i < text.length && before()) {
		const ch = text[i] ?? "";
		if (ch === "#") {
			toLineEnd();
			continue;
		}
		if (ch === '"' || ch === "'") {
			const triple = text.startsWith(ch.repeat(3), i);
			const delim = triple ? ch.repeat(3) : ch;
			for (let k = 0; k < delim.length; k++) advance();
			while (i < text.length && before() && !text.startsWith(delim, i)) {
				if (!triple && text[i] === "\n") break;
				if (ch === '"' && text[i] === "\\") advance();
				advance();
			}
			for (let k = 0; k < delim.length && text.startsWith(delim, i); k++) advance();
			lineStart = false;
			continue;
		}
		if (stack.length === 0 && !inValue) {
			if (ch === "=") inValue = true;
			else if (ch === "[" && lineStart) {
				toLineEnd();
				continue;
			}
		} else if (ch === "[" || ch === "{") {
			stack.push({ kind: ch === "[" ? "array" : "inline table", line: l, column: c });
		} else if (ch === "]" || ch === "}") {
			stack.pop();
		}
		if (ch !== " " && ch !== "\t" && ch !== "\r" && ch !== "\n") lineStart = false;
		advance();
	}
	return stack[0];
}
