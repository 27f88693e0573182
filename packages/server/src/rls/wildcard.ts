// A descriptor `value` with `*` in it, as envoyproxy/ratelimit matches one: each `*` stands for any run of
// characters, none included (`bar*b` matches `barb` and `bar123b`; `foo*` is a prefix). Split once at load,
// so that a request only compares strings.

/** A value pattern: the literal parts between its `*`s (at least two). */
export type Wildcard = readonly string[];

export const isWildcard = (value: string): boolean => value.includes('*');

export const wildcardOf = (value: string): Wildcard => value.split('*');

/** Whether `value` matches: it starts with the first part, ends with the last, and holds the others in order. */
export function matchesWildcard(parts: Wildcard, value: string): boolean {
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  if (value.length < parts.reduce((n, p) => n + p.length, 0)) return false;
  if (!value.startsWith(first) || !value.endsWith(last)) return false;
  // The middle parts are looked for in order between the first and the last, never overlapping them.
  const end = value.length - last.length;
  let at = first.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const found = value.indexOf(parts[i]!, at);
    if (found === -1 || found + parts[i]!.length > end) return false;
    at = found + parts[i]!.length;
  }
  return true;
}
