import type { Decision, PolicyDecision } from '../core/decision.js';

/**
 * Which rate-limit header fields to send:
 * - `draft-10` (default): the IETF httpapi draft's `RateLimit-Policy` and `RateLimit`, lists with one
 *   named item per policy (`"per-minute";q=100;w=60` and `"per-minute";r=42;t=18`);
 * - `draft-7`: `RateLimit-Policy: 100;w=60` and `RateLimit: limit=100, remaining=42, reset=18`, for clients
 *   of express-rate-limit's `draft-7` mode;
 * - `draft-6`: `RateLimit-Policy`, `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`;
 * - `false`: none.
 */
export type HeaderMode = 'draft-10' | 'draft-7' | 'draft-6' | false;

export type HeaderList = [name: string, value: string][];

const seconds = (ms: number) => Math.max(0, Math.ceil(ms / 1000));

/** A structured-field string: policy names are validated to letters, digits and `._:-`, so quoting is enough. */
function sfString(value: string): string {
  return `"${value}"`;
}

interface PolicyStrings {
  readonly limit: number;
  readonly window: number;
  readonly algorithm: string;
  readonly name: string;
  /** The policy's `RateLimit-Policy` item. */
  readonly item: string;
}

/**
 * A policy's strings, built once: they depend on its name, algorithm, limit and window only, and a response
 * carries them on every request. Keyed by name; a name whose parameters changed is rebuilt.
 */
const policyStrings = new Map<string, PolicyStrings>();

function stringsOf(p: PolicyDecision): PolicyStrings {
  const known = policyStrings.get(p.policy);
  if (
    known !== undefined &&
    known.limit === p.limit &&
    known.window === p.window &&
    known.algorithm === p.algorithm
  ) {
    return known;
  }
  const name = sfString(p.policy);
  const window = p.algorithm === 'concurrency' ? '' : `;w=${seconds(p.window)}`;
  const made = {
    limit: p.limit,
    window: p.window,
    algorithm: p.algorithm,
    name,
    item: `${name};q=${p.limit}${window}`,
  };
  // Bounded: names come from configuration, but a limiter can be reconfigured forever.
  if (policyStrings.size >= 1024) policyStrings.clear();
  policyStrings.set(p.policy, made);
  return made;
}

function rateLimitItem(p: PolicyDecision): string {
  return `${stringsOf(p).name};r=${Math.max(0, p.remaining)};t=${seconds(p.resetAfter)}`;
}

/**
 * The header fields for a decision. Every time in them is a duration the store measured on its own clock
 * (`resetAfter`, `retryAfter`), so they agree with each other whatever this machine's clock says; `now`
 * (epoch ms, this machine's) only anchors the legacy `X-RateLimit-Reset`, which is an absolute time.
 */
export function rateLimitHeaders(
  decision: Decision,
  now: number,
  mode: HeaderMode,
  legacy: boolean,
): HeaderList {
  const out: HeaderList = [];
  const reset = seconds(decision.resetAfter);
  const remaining = Math.max(0, decision.remaining);
  if (mode === 'draft-10') {
    const policies = decision.policies;
    if (policies.length === 1) {
      // The common case without the lists' arrays: one policy's item in each field.
      out.push(['RateLimit-Policy', stringsOf(policies[0]!).item]);
      out.push(['RateLimit', rateLimitItem(policies[0]!)]);
    } else {
      out.push(['RateLimit-Policy', policies.map((p) => stringsOf(p).item).join(', ')]);
      out.push(['RateLimit', policies.map(rateLimitItem).join(', ')]);
    }
  } else if (mode === 'draft-7') {
    out.push(['RateLimit-Policy', `${decision.limit};w=${seconds(decision.window)}`]);
    out.push(['RateLimit', `limit=${decision.limit}, remaining=${remaining}, reset=${reset}`]);
  } else if (mode === 'draft-6') {
    out.push(['RateLimit-Policy', `${decision.limit};w=${seconds(decision.window)}`]);
    out.push(['RateLimit-Limit', String(decision.limit)]);
    out.push(['RateLimit-Remaining', String(remaining)]);
    out.push(['RateLimit-Reset', String(reset)]);
  }
  if (legacy) {
    out.push(['X-RateLimit-Limit', String(decision.limit)]);
    out.push(['X-RateLimit-Remaining', String(remaining)]);
    out.push(['X-RateLimit-Reset', String(Math.ceil((now + decision.resetAfter) / 1000))]);
  }
  if (!decision.allowed && Number.isFinite(decision.retryAfter)) {
    out.push(['Retry-After', String(Math.max(1, seconds(decision.retryAfter)))]);
  }
  return out;
}
