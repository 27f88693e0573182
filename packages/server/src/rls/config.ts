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
    /** Other limits, by `name`, that this one drops from a request's decision when both match (upstream's). */
    replaces: z
      .array(
        z.strictObject({
          name: z.string({ error: 'must not be empty' }).min(1, { error: 'must not be empty' }),
        }),
      )
      .optional(),
    /** Floodgate's own: any of its algorithms over the unit (default, as envoyproxy/ratelimit: a fixed window). */
    algorithm: z.enum(ALGORITHMS).optional(),
  })
  .superRefine((value, ctx) => {
    value.replaces?.forEach((r, i) => {
      if (r.name === value.name)
        ctx.addIssue({
          code: 'custom',
          path: ['replaces', i, 'name'],
          message: `must not be this limit's own name ("${r.name}")`,
        });
    });
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
  quota_mode?: boolean | undefined;
  detailed_metric?: boolean | undefined;
  value_to_metric?: boolean | undefined;
  share_threshold?: boolean | undefined;
  metadata?: Metadata | null | undefined;
}

/** What `metadata` may hold: what a google.protobuf.Struct can carry. */
export type MetadataValue = string | number | boolean | null | MetadataValue[] | Metadata;
export interface Metadata {
  readonly [key: string]: MetadataValue;
}
const metadataValue: z.ZodType<MetadataValue> = z.lazy(() =>
  z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(metadataValue), metadata], {
    error: 'must be a string, a finite number, a boolean, null, a list or a mapping',
  }),
);
const metadata: z.ZodType<Metadata> = z.lazy(() =>
  z.record(z.string(), metadataValue, { error: 'must be a mapping' }),
);

const descriptor: z.ZodType<RawDescriptor> = z.lazy(() =>
  z.strictObject({
    key: z.string().min(1, 'must not be empty'),
    value: z.string().min(1, 'must not be empty').optional(),
    rate_limit: rateLimit.optional(),
    descriptors: z.array(descriptor).nullish(),
    shadow_mode: z.boolean().optional(),
    /** Over its limit, the descriptor says so but refuses the request only when every quota one is over. */
    quota_mode: z.boolean().optional(),
    detailed_metric: z.boolean().optional(),
    /** The descriptor's value in its stats label (as detailed_metric shows it), at this level. */
    value_to_metric: z.boolean().optional(),
    /** On a wildcard value: every value it matches counts against one counter. */
    share_threshold: z.boolean().optional(),
    /** Returned in the response's dynamic_metadata when the descriptor is within its limit. */
    metadata: metadata.nullish(),
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
export type Limit = (
  | { readonly unlimited: true; readonly name: string }
  | {
      readonly unlimited: false;
      readonly name: string;
      readonly unit: Unit;
      readonly requestsPerUnit: number;
      readonly algorithm: Algorithm;
      /** Sent with a request rather than configured: chosen by clients, so it keeps no traffic of its own. */
      readonly sent?: true;
    }
) & {
  /** The names of the limits this one drops from a request's decision (`replaces`). */
  readonly replaces?: readonly string[];
  /** Whether `name` was given in the file: only such a name can be replaced, as upstream. */
  readonly named?: boolean;
};

/** A node of the descriptor tree: what a descriptor that ends here is limited by, and what may follow. */
export interface DescriptorNode {
  /** `key` or `key_value`, joined by `.` from the root: for metrics and policy names. */
  readonly path: string;
  readonly limit: Limit | undefined;
  readonly shadow: boolean;
  readonly detailed: boolean;
  /** `quota_mode`: over its limit, the request is refused only when every quota descriptor is over. */
  readonly quota: boolean;
  /** `value_to_metric`: the value sent at this level shows in the stats label. */
  readonly valueToMetric: boolean;
  /** `share_threshold`: the wildcard value that every value it matches is counted as. */
  readonly shared: string | undefined;
  readonly metadata: Metadata | undefined;
  /** The configured `value`, a wildcard's pattern included. */
  readonly value: string | undefined;
  /**
   * Known at load, so that a request that needs neither pays for neither: whether a `value_to_metric` node
   * without a configured value is on the way here (the label is then not the path), and a sharing one.
   */
  readonly above: { readonly valueToMetric: boolean; readonly sharing: boolean };
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
  /** The file it came from; with `merge`, the first of its files. */
  readonly file: string;
  readonly root: Level;
}

export type RlsConfig = ReadonlyMap<string, RlsDomain>;

/**
 * A policy name from a node's path when its `rate_limit` has none (`database_users`), or from a `name` as
 * upstream takes it (any string, `Login limit`): Floodgate's policy names are letters, digits and `._:-`,
 * 64 at most, so other characters become `_` and a long one keeps a digest. A name already of that form
 * stays as it is.
 */
export function nameOf(path: string): string {
  const plain = path.replace(/[^A-Za-z0-9._:-]/g, '_').replace(/^[^A-Za-z0-9]+/, '') || 'descriptor';
  if (plain.length <= 64) return plain;
  return `${plain.slice(0, 52)}-${createHash('sha256').update(path).digest('hex').slice(0, 11)}`;
}

function limitOf(raw: RawDescriptor['rate_limit'], path: string, where: string): Limit | undefined {
  if (raw === undefined) return undefined;
  const name = raw.name ?? nameOf(path);
  const replacing = {
    ...(raw.replaces === undefined ? {} : { replaces: raw.replaces.map((r) => r.name) }),
    ...(raw.name === undefined ? {} : { named: true }),
  };
  if (raw.unlimited === true) return { unlimited: true, name, ...replacing };
  const u = raw.unit!;
  const limit = raw.requests_per_unit!;
  return {
    ...replacing,
    unlimited: false,
    name,
    unit: u,
    requestsPerUnit: limit,
    // Checked by the library now (a bad name fails with its path), so that requests never meet it; a limit
    // of 0 needs no policy, but its name and algorithm are checked all the same.
    algorithm: resolvePolicy(
      {
        name: nameOf(name),
        algorithm: raw.algorithm ?? 'fixed-window',
        limit: Math.max(1, limit),
        window: UNITS[u],
      },
      where,
    ).algorithm as Algorithm,
  };
}

type MutableLevel = Map<
  string,
  {
    exact: Map<string, DescriptorNode>;
    wildcards: { parts: Wildcard; node: DescriptorNode }[];
    any?: DescriptorNode;
  }
>;

/** A level of the tree from the file's list; `into`, a level loaded from another file, is added to (merge). */
function level(
  raws: readonly RawDescriptor[] | null | undefined,
  parent: string,
  where: string,
  into: MutableLevel = new Map(),
  merging?: string,
  above: DescriptorNode['above'] = { valueToMetric: false, sharing: false },
): Level {
  const out = into;
  (raws ?? []).forEach((raw, i) => {
    const at = `${where}[${i}]`;
    const own = raw.value === undefined ? raw.key : `${raw.key}_${raw.value}`;
    const path = parent === '' ? own : `${parent}.${own}`;
    const wildcard = raw.value !== undefined && isWildcard(raw.value);
    // As upstream: sharing a counter only means something for the values a wildcard matches.
    if (raw.share_threshold === true && !wildcard)
      throw usageError(`${at}.share_threshold: needs a value with "*"; "${own}" has none`);
    const literal = raw.value !== undefined && !wildcard;
    const here = {
      valueToMetric: above.valueToMetric || (raw.value_to_metric === true && !literal),
      sharing: above.sharing || raw.share_threshold === true,
    };
    const node: DescriptorNode = {
      path,
      above: here,
      limit: limitOf(raw.rate_limit, path, `${at}.rate_limit`),
      shadow: raw.shadow_mode ?? false,
      detailed: raw.detailed_metric ?? false,
      quota: raw.quota_mode ?? false,
      valueToMetric: raw.value_to_metric ?? false,
      shared: raw.share_threshold === true ? raw.value : undefined,
      metadata:
        raw.metadata === null || raw.metadata === undefined || Object.keys(raw.metadata).length === 0
          ? undefined
          : raw.metadata,
      value: raw.value,
      literal,
      children: level(raw.descriptors, path, `${at}.descriptors`, new Map(), undefined, here),
    };
    let slot = out.get(raw.key);
    if (slot === undefined) {
      slot = { exact: new Map(), wildcards: [] };
      out.set(raw.key, slot);
    }
    const duplicate = () =>
      usageError(
        `${where}: a second descriptor "${own}" at the same level (${at})${merging === undefined ? '' : `: the domain's files are merged, and ${merging} has it`}`,
      );
    if (raw.value === undefined) {
      if (slot.any !== undefined) throw duplicate();
      slot.any = node;
    } else if (wildcard) {
      if (merging !== undefined && slot.wildcards.some((w) => w.node.path === path)) throw duplicate();
      slot.wildcards.push({ parts: wildcardOf(raw.value), node });
    } else {
      if (slot.exact.has(raw.value)) throw duplicate();
      slot.exact.set(raw.value, node);
    }
  });
  return out as unknown as Level;
}

/**
 * One domain's file, validated: errors name the file and the path of the field. With `onto`, the same
 * domain loaded from an earlier file, its descriptors are added to that one's (`--merge-domains`).
 */
export function parseDomain(data: unknown, file: string, onto?: RlsDomain): RlsDomain {
  const parsed = domainFile.safeParse(data);
  if (!parsed.success) {
    // An unknown field first: a misspelt or non-string key (`0.25: test-domain`) also leaves a required one missing.
    const issues = parsed.error.issues;
    const issue = issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0]!;
    throw usageError(`${file}: ${pathOf(issue.path)}: ${issueText(issue)}`);
  }
  try {
    if (onto !== undefined) {
      level(parsed.data.descriptors, '', 'descriptors', onto.root as MutableLevel, onto.file);
      return onto;
    }
    return { domain: parsed.data.domain, file, root: level(parsed.data.descriptors, '', 'descriptors') };
  } catch (error) {
    if (error instanceof CliError) throw usageError(`${file}: ${error.message}`);
    if (!isInvalidOption(error)) throw error;
    // The library names its own options: say them as this file's fields.
    const field = error.option.replace(/\.limit$/, '.requests_per_unit').replace(/\.window$/, '.unit');
    throw usageError(`${file}: ${field}: must be ${error.expected}; got ${error.got}`);
  }
}

export interface LoadOptions {
  /**
   * A domain in several files is one domain, its files' descriptors together (envoyproxy/ratelimit's
   * MERGE_DOMAIN_CONFIG); off, as there, a second file of a domain is refused.
   */
  readonly merge?: boolean;
}

/**
 * The configuration in `path`: one YAML file, or every `.yaml`/`.yml` file of a directory (one domain
 * each, or with `merge` one domain in as many files as it likes).
 */
export function loadRlsConfig(path: string, { merge = false }: LoadOptions = {}): RlsConfig {
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
    const data = readSettingsFile(file, 'domain, descriptors');
    const before = typeof data.domain === 'string' ? domains.get(data.domain) : undefined;
    const domain = parseDomain(data, file, merge ? before : undefined);
    if (before !== undefined && !merge)
      throw usageError(`${file}: domain "${domain.domain}" is also in ${before.file}`);
    domains.set(domain.domain, domain);
  }
  return domains;
}
