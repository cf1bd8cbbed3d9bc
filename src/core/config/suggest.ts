/** "Did you mean ...?" for a misspelt key: the closest valid key by edit distance. */

function editDistance(a: string, b: string): number {
	let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
	for (let i = 1; i <= a.length; i++) {
		const current = [i];
		for (let j = 1; j <= b.length; j++) {
			const cost = a[i - 1] === b[j - 1] ? 0 : 1;
			current[j] = Math.min(
				(previous[j] ?? 0) + 1,
				(current[j - 1] ?? 0) + 1,
				(previous[j - 1] ?? 0) + cost,
			);
		}
		previous = current;
	}
	return previous[b.length] ?? 0;
}

export function closest(key: string, candidates: readonly string[]): string | undefined {
	let best: string | undefined;
	let bestDistance = Number.POSITIVE_INFINITY;
	const normalised = key.toLowerCase().replaceAll("-", "_");
	for (const candidate of candidates) {
		const d = normalised === candidate ? 0 : editDistance(normalised, candidate);
		if (d < bestDistance) {
			best = candidate;
			bestDistance = d;
		}
	}
	const limit = Math.min(3, Math.max(1, Math.floor(key.length / 3)));
	return bestDistance <= limit ? best : undefined;
}
