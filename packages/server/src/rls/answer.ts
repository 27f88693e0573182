import type { Decision } from 'floodgate';
import { type HeaderList, rateLimitHeaders } from 'floodgate/http';
import type { AlignedWindow } from './aligned.js';
import { type DescriptorNode, type Limit, type Metadata, UNITS, type Unit } from './config.js';

// The answer to a ShouldRateLimit call, from what each descriptor matched and what its limit decided.

export type Code = 'OK' | 'OVER_LIMIT';

export interface DescriptorStatus {
  readonly code: Code;
  readonly currentLimit?: { readonly name: string; readonly requestsPerUnit: number; readonly unit: Unit };
  readonly limitRemaining: number;
  /** ms until the limit is whole again. */
  readonly durationUntilReset?: number;
}

export interface RlsResponse {
  readonly overallCode: Code;
  readonly statuses: readonly DescriptorStatus[];
  readonly responseHeadersToAdd: HeaderList;
  /** With `dynamicMetadata` on: the response's dynamic_metadata, as upstream's RESPONSE_DYNAMIC_METADATA. */
  readonly dynamicMetadata?: Metadata;
}

/** What became of one descriptor, for metrics. */
export interface Outcome {
  readonly domain: string;
  /** The node's path, or with `detailed_metric` the descriptor's own values (wildcard values digested). */
  readonly descriptor: string;
  /** With `detailed_metric`, the node's path: its distinct values are bounded under it. */
  readonly detailedOf?: string | undefined;
  readonly code: Code;
  readonly shadow: boolean;
  /** For a descriptor with a limit: its cost, the limit, and how much of it is used after this call. */
  readonly hits?: { readonly cost: number; readonly limit: number; readonly used: number } | undefined;
}

export type Limited = Extract<Limit, { unlimited: false }>;

export interface Matched {
  readonly node: DescriptorNode | undefined;
  readonly limit: Limit | undefined;
  /** Counted but never refusing: a shadow-mode node's own limit (a limit sent with it is enforced, as upstream). */
  readonly shadow: boolean;
  /**
   * Quota mode: over its limit, it is `OVER_LIMIT` in its status but refuses the request only when every
   * quota-mode descriptor of the request is over (upstream's rule), so that Envoy can route elsewhere.
   */
  readonly quota: boolean;
  /** The node's `metadata`, for the response's dynamic_metadata. */
  readonly metadata: Metadata | undefined;
  readonly cost: number;
  readonly key: string;
  readonly metric: string;
  readonly detailedOf: string | undefined;
  /** A fixed window's, aligned to its unit's boundaries. */
  readonly aligned?: AlignedWindow | undefined;
}

/** A limit that takes the store: one of 0 refuses without it. */
export const counted = (m: Matched): m is Matched & { limit: Limited } =>
  m.limit !== undefined && !m.limit.unlimited && m.limit.requestsPerUnit > 0;

/** A limit of 0 refuses whatever costs anything; a check (cost 0) passes, as a full window's does. */
export const refusesAll = (m: Matched): boolean =>
  m.limit !== undefined && !m.limit.unlimited && m.limit.requestsPerUnit === 0 && m.cost > 0;

/** Whether a descriptor is over its limit, by its decision (none: a limit of 0, or no limit). */
export const isOver = (m: Matched, d: Decision | undefined): boolean =>
  m.limit !== undefined && !m.limit.unlimited && (d === undefined ? refusesAll(m) : !d.allowed);

/** Whether the request's quota-mode descriptors refuse it: there are some, and each is over its limit. */
export function quotaRefuses(
  matched: readonly Matched[],
  decisions: readonly (Decision | undefined)[],
): boolean {
  const quota = matched.flatMap((m, i) => (m.quota ? [i] : []));
  return quota.length > 0 && quota.every((i) => isOver(matched[i]!, decisions[i]));
}

const OK_UNLIMITED: DescriptorStatus = { code: 'OK', limitRemaining: 2 ** 32 - 1 };
export const OK_NO_LIMIT: DescriptorStatus = { code: 'OK', limitRemaining: 0 };

/**
 * The answer from each descriptor's decision. Shadow-mode descriptors are invisible to clients: no header
 * field names them. One `Retry-After`, the longest wait of the refusing descriptors, in whole seconds; none
 * when one of them can never admit the request (a limit of 0, a cost past the limit).
 */
export function answer(
  domain: string,
  matched: readonly Matched[],
  decisions: readonly (Decision | undefined)[],
  blocked: boolean,
  now: number,
  outcomes: ((outcome: Outcome) => void) | undefined,
): RlsResponse {
  const headers: HeaderList = [];
  const quotaRefused = quotaRefuses(matched, decisions);
  let refused = blocked || quotaRefused;
  let wait = 0;
  // Made for every descriptor of every call: built in one piece each, no object spread into another.
  const statuses = matched.map((m, i): DescriptorStatus => {
    const d = decisions[i];
    if (m.limit === undefined || m.limit.unlimited) {
      outcomes?.(outcomeOf(domain, m, 'OK', undefined));
      return m.limit === undefined ? OK_NO_LIMIT : OK_UNLIMITED;
    }
    const over = isOver(m, d);
    const limit = m.limit.requestsPerUnit;
    outcomes?.(
      outcomeOf(domain, m, over ? 'OVER_LIMIT' : 'OK', {
        cost: m.cost,
        limit,
        used: d === undefined ? 0 : limit - d.remaining,
      }),
    );
    if (over && !m.shadow && (!m.quota || quotaRefused)) {
      refused = true;
      wait = Math.max(wait, d === undefined ? Number.POSITIVE_INFINITY : d.retryAfter);
    }
    if (d !== undefined && !m.shadow)
      for (const header of rateLimitHeaders(d, now, 'draft-10', false))
        if (header[0] !== 'Retry-After') merge(headers, header);
    return {
      code: over && !m.shadow ? 'OVER_LIMIT' : 'OK',
      currentLimit: { name: m.limit.name, requestsPerUnit: limit, unit: m.limit.unit },
      limitRemaining: d === undefined ? 0 : d.remaining,
      durationUntilReset: d === undefined ? (m.aligned?.until ?? UNITS[m.limit.unit]) : d.resetAfter,
    };
  });
  if (refused && Number.isFinite(wait))
    headers.push(['Retry-After', String(Math.max(1, Math.ceil(wait / 1000)))]);
  return { overallCode: refused ? 'OVER_LIMIT' : 'OK', statuses, responseHeadersToAdd: headers };
}

function outcomeOf(domain: string, m: Matched, code: Code, hits: Outcome['hits']): Outcome {
  return { domain, descriptor: m.metric, detailedOf: m.detailedOf, code, shadow: m.shadow, hits };
}

/** Adds a header field, the RateLimit lists of several descriptors joined into one field each. */
function merge(headers: HeaderList, [name, value]: [string, string]): void {
  const at = headers.findIndex(([n]) => n === name);
  if (at === -1) headers.push([name, value]);
  else headers[at] = [name, `${headers[at]![1]}, ${value}`];
}
