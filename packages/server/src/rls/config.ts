import { createHash } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isInvalidOption, resolvePolicy } from 'floodgate';
import { z } from 'zod';
import { CliError, usageError } from '../shared/errors.js';
import { issueText, pathOf } from '../shared/schema.js';
import { readSettingsFile } from '../shared/yaml.js';
import { isWildcard, type Wildcard, wildcardOf } from './wildcard.js';

// envoyproxy/ratelimit's configuration format, so that a file written for it works here unchanged: one
// domain per file, a tree of descriptors, a rate limit per node. Fields it does not know are refused.

/** envoyproxy/ratelimit's units, as its window lengths (a month is 30 days, a year 365). */
export const UNITS = {
  second: 1_000,
  minute: 60_000,
  hour: 3_600_000,
  day: 86_400_000,
  week: 7 * 86_400_000,
  month: 30 * 86_400_000,
  year: 365 * 86_400_000,
} as const;
export type Unit = keyof typeof UNITS;

/** unit's complaint: what it must be, then what it was (as written, before the case is folded). */
const unitError = (issue: { input?: unknown }) =>
  `must be one of ${Object.keys(UNITS).join(', ')}; got ${JSON.stringify(issue.input)}`;

const unit = z.string({ error: unitError }).transform((value, ctx) => {
  const folded = value.toLowerCase();
  if (Object.hasOwn(UNITS, folded)) return folded as Unit;
  ctx.addIssue({ code: 'custom', message: unitError({ input: value }) });
  return z.NEVER;
});

/** requests_per_unit's complaint, in the project's words: what it must be, then what it was. */
const uint32 = (issue: { input?: unknown }) =>
  `must be an integer from 0 to ${2 ** 32 - 1}; got ${JSON.stringify(issue.input)}`;

const ALGORITHMS = [
  'fixed-window',
  'sliding-window-counter',
  'sliding-window-log',
  'token-bucket',
  'gcra',
] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

const rateLimit = z
  .strictObject({
    unit: unit.optional(),
    requests_per_unit: z
      .number({ error: uint32 })
      .int({ error: uint32 })
      .min(0, { error: uint32 })
      .max(2 ** 32 - 1, { error: uint32 })
      .optional(),
    unlimited: z.boolean().optional(),
    name: z.string().min(1).optional(),
    /** Floodgate's own: any of its algorithms over the unit (default, as envoyproxy/ratelimit: a fixed window). */
    algorithm: z.enum(ALGORITHMS).optional(),
  })
  .superRefine((value, ctx) => {
    if (value.unlimited === true) {
      if (value.unit !== undefined || value.requests_per_unit !== undefined)
        ctx.addIssue({ code: 'custom', message: 'unlimited takes no unit or requests_per_unit' });
      return;
    }
    if (value.unit === undefined) ctx.addIssue({ code: 'custom', path: ['unit'], message: 'is required' });
    if (value.requests_per_unit === undefined)
      ctx.addIssue({ code: 'custom', path: ['requests_per_unit'], message: 'is required' });
  });

interface RawDescriptor {
  key: string;
  value?: string | undefined;
  rate_limit?: z.infer<typeof rateLimit> | undefined;
  descriptors?: RawDescriptor[] | null | undefined;
  shadow_mode?: boolean | undefined;
  detailed_metric?: boolean | undefined;
}

const descriptor: z.ZodType<RawDescriptor> = z.lazy(() =>
  z.strictObject({
    key: z.string().min(1, 'must not be empty'),
    value: z.string().min(1, 'must not be empty').optional(),
    rate_limit: rateLimit.optional(),
    descriptors: z.array(descriptor).nullish(),
    shadow_mode: z.boolean().optional(),
    detailed_metric: z.boolean().optional(),
  }),
);

const domainFile = z.strictObject({
  domain: z.string().min(1, 'must not be empty'),
  // `descriptors:` with nothing under it is YAML's null: a domain without limits, as upstream loads it.
  descriptors: z.array(descriptor).nullish(),
});

/**
 * A node's limit: the Floodgate policy it is, or none at all (`unlimited`). A `requestsPerUnit` of 0 refuses
 * every request that costs anything (envoyproxy/ratelimit's way to block a descriptor), without a store.
 */
export type Limit =
  | { readonly unlimited: true; readonly name: string }
  | {
      readonly unlimited: false;
      readonly name: string;
      readonly unit: Unit;
      readonly requestsPerUnit: number;
      readonly algorithm: Algorithm;
      /** Sent with a request rather than configured: chosen by clients, so it keeps no traffic of its own. */
      readonly sent?: true;
    };

/** A node of the descriptor tree: what a descriptor that ends here is limited by, and what may follow. */
export interface DescriptorNode {
  /** `key` or `key_value`, joined by `.` from the root: for metrics and policy names. */
  readonly path: string;
  readonly limit: Limit | undefined;
  readonly shadow: boolean;
  readonly detailed: boolean;
  /** Whether this node's value came from the configuration (false: a wildcard, any value). */
  readonly literal: boolean;
  readonly children: Level;
}

/**
 * One level of the tree: by key, then by exact value, by a value with `*`s (`"abc*"`, `"bar*b"`: the first
 * in the file's order that matches, as upstream), or any value.
 */
export type Level = ReadonlyMap<
  string,
  {
    readonly exact: ReadonlyMap<string, DescriptorNode>;
    readonly wildcards: readonly { readonly parts: Wildcard; readonly node: DescriptorNode }[];
    readonly any: DescriptorNode | undefined;
  }
>;

export interface RlsDomain {
  readonly domain: string;
  readonly file: string;
  readonly root: Level;
}

export type RlsConfig = ReadonlyMap<string, RlsDomain>;

/**
 * A policy name from a node's path when its `rate_limit` has none (`database_users`): Floodgate's names are
 * letters, digits and `._:-`, 64 at most, so other characters become `_` and a long path keeps a digest.
 */
function nameOf(path: string): string {
  const plain = path.replace(/[^A-Za-z0-9._:-]/g, '_').replace(/^[^A-Za-z0-9]+/, '') || 'descriptor';
  if (plain.length <= 64) return plain;
  return `${plain.slice(0, 52)}~${createHash('sha256').update(path).digest('hex').slice(0, 11)}`;
}

function limitOf(raw: RawDescriptor['rate_limit'], path: string, where: string): Limit | undefined {
  if (raw === undefined) return undefined;
  const name = raw.name ?? nameOf(path);
  if (raw.unlimited === true) return { unlimited: true, name };
  const u = raw.unit!;
  const limit = raw.requests_per_unit!;
  return {
    unlimited: false,
    name,
    unit: u,
    requestsPerUnit: limit,
    // Checked by the library now (a bad name fails with its path), so that requests never meet it; a limit
    // of 0 needs no policy, but its name and algorithm are checked all the same.
    algorithm: resolvePolicy(
      { name, algorithm: raw.algorithm ?? 'fixed-window', limit: Math.max(1, limit), window: UNITS[u] },
      where,
    ).algorithm as Algorithm,
  };
}

function level(raws: readonly RawDescriptor[] | null | undefined, parent: string, where: string): Level {
  const out = new Map<
    string,
    {
      exact: Map<string, DescriptorNode>;
      wildcards: { parts: Wildcard; node: DescriptorNode }[];
      any?: DescriptorNode;
    }
  >();
  (raws ?? []).forEach((raw, i) => {
    const at = `${where}[${i}]`;
    const own = raw.value === undefined ? raw.key : `${raw.key}_${raw.value}`;
    const path = parent === '' ? own : `${parent}.${own}`;
    const node: DescriptorNode = {
      path,
      limit: limitOf(raw.rate_limit, path, `${at}.rate_limit`),
      shadow: raw.shadow_mode ?? false,
      detailed: raw.detailed_metric ?? false,
      literal: raw.value !== undefined && !isWildcard(raw.value),
      children: level(raw.descriptors, path, `${at}.descriptors`),
    };
    let slot = out.get(raw.key);
    if (slot === undefined) {
      slot = { exact: new Map(), wildcards: [] };
      out.set(raw.key, slot);
    }
    const duplicate = () => usageError(`${where}: a second descriptor "${own}" at the same level (${at})`);
    if (raw.value === undefined) {
      if (slot.any !== undefined) throw duplicate();
      slot.any = node;
    } else if (isWildcard(raw.value)) {
      slot.wildcards.push({ parts: wildcardOf(raw.value), node });
    } else {
      if (slot.exact.has(raw.value)) throw duplicate();
      slot.exact.set(raw.value, node);
    }
  });
  return out as unknown as Level;
}

/** One domain's file, validated: errors name the file and the path of the field. */
export function parseDomain(data: unknown, file: string): RlsDomain {
  const parsed = domainFile.safeParse(data);
  if (!parsed.success) {
    // An unknown field first: a misspelt or non-string key (`0.25: test-domain`) also leaves a required one missing.
    const issues = parsed.error.issues;
    const issue = issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0]!;
    throw usageError(`${file}: ${pathOf(issue.path)}: ${issueText(issue)}`);
  }
  try {
    return { domain: parsed.data.domain, file, root: level(parsed.data.descriptors, '', 'descriptors') };
  } catch (error) {
    if (error instanceof CliError) throw usageError(`${file}: ${error.message}`);
    if (!isInvalidOption(error)) throw error;
    // The library names its own options: say them as this file's fields.
    const field = error.option.replace(/\.limit$/, '.requests_per_unit').replace(/\.window$/, '.unit');
    throw usageError(`${file}: ${field}: must be ${error.expected}; got ${error.got}`);
  }
}

/** The configuration in `path`: one YAML file, or every `.yaml`/`.yml` file of a directory (one domain each). */
export function loadRlsConfig(path: string): RlsConfig {
  let files: string[];
  try {
    files = statSync(path).isDirectory()
      ? readdirSync(path)
          .filter((f) => /\.ya?ml$/.test(f))
          .sort()
          .map((f) => join(path, f))
      : [path];
  } catch (error) {
    throw usageError(
      `cannot read "${path}": ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  if (files.length === 0) throw usageError(`${path}: no .yaml or .yml files`);
  const domains = new Map<string, RlsDomain>();
  for (const file of files) {
    const domain = parseDomain(readSettingsFile(file, 'domain, descriptors'), file);
    const before = domains.get(domain.domain);
    if (before !== undefined)
      throw usageError(`${file}: domain "${domain.domain}" is also in ${before.file}`);
    domains.set(domain.domain, domain);
  }
  return domains;
}
