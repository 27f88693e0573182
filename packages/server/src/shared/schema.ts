import { isInvalidOption, parseDuration, resolvePolicies } from 'floodgate';
import { z } from 'zod';

// Pieces of the two configurations (serve's and the proxy's), validated the same way: zod, with the
// library's own checks called from the schema, their structured fields turned into zod issues.

/** A duration such as "500ms", "10s" or "1m" (or ms), as milliseconds. */
export const duration = z.union([z.number(), z.string()]).transform((value, ctx) => {
  try {
    return parseDuration(value, 'duration');
  } catch {
    ctx.addIssue({
      code: 'custom',
      message: `must be a duration such as "500ms", "10s" or "1m"; got ${JSON.stringify(value)}`,
    });
    return z.NEVER;
  }
});

/** `[1].limit` → [1, 'limit']: an option's path below the one given to `resolvePolicies`, as zod's. */
function pathBelow(option: string, base: string): (string | number)[] {
  return [...option.slice(base.length).matchAll(/\[(\d+)\]|\.([^.[\]]+)/g)].map((m) =>
    m[1] !== undefined ? Number(m[1]) : m[2]!,
  );
}

/** One policy or a list of them, checked by the library itself; its complaint lands on the field's path. */
export const policies = z.unknown().superRefine((value, ctx) => {
  try {
    resolvePolicies(value, 'policies');
  } catch (error) {
    if (!isInvalidOption(error)) throw error;
    ctx.addIssue({
      code: 'custom',
      path: pathBelow(error.option, 'policies'),
      message: `must be ${error.expected}; got ${error.got}`,
    });
  }
});

/** Where a zod issue is: `rules[0].policies[1].limit`. */
export function pathOf(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path)
    out += typeof part === 'number' ? `[${part}]` : out === '' ? String(part) : `.${String(part)}`;
  return out === '' ? '(top level)' : out;
}

/** A zod issue in words: an unknown key is named as such. */
export function issueText(issue: z.core.$ZodIssue): string {
  return issue.code === 'unrecognized_keys'
    ? `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`
    : issue.message;
}
