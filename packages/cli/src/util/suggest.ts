/** "Did you mean" suggestions: Levenshtein distance over a list of known names. */

export function levenshtein(a: string, b: string): number {
  if (a === b) return 0;
  if (a.length === 0) return b.length;
  if (b.length === 0) return a.length;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * The known names closest to `input` (case-insensitive), best first: those
 * within a distance of about a third of the longer name (at least 2), or that
 * contain / are contained in the input.
 */
export function suggest(input: string, known: Iterable<string>, max = 3): string[] {
  const low = input.toLowerCase();
  const scored: { name: string; d: number }[] = [];
  for (const name of new Set(known)) {
    if (name === input) continue;
    const n = name.toLowerCase();
    const d = levenshtein(low, n);
    const limit = Math.max(2, Math.floor(Math.max(low.length, n.length) / 3));
    if (d <= limit || (low.length >= 3 && (n.includes(low) || low.includes(n)))) scored.push({ name, d });
  }
  return scored.sort((x, y) => x.d - y.d || x.name.localeCompare(y.name)).slice(0, max).map((s) => s.name);
}

/** ` did you mean "x"?` or ` did you mean "x" or "y"?`, or "" without suggestion. */
export function didYouMean(input: string, known: Iterable<string>): string {
  const s = suggest(input, known);
  if (s.length === 0) return "";
  return ` Did you mean ${s.map((x) => `"${x}"`).join(" or ")}?`;
}
