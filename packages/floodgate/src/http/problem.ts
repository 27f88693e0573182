import type { Decision } from '../core/decision.js';
import type { HeaderList } from './headers.js';

/** A response the middleware sends itself (429, 403...). `body` is sent as is. */
export interface HttpResponse {
  readonly status: number;
  readonly headers: HeaderList;
  readonly body: string;
}

/**
 * An `application/problem+json` response (RFC 9457): `type`, `title`, `status` and `detail`, plus `extra`
 * members; `headers` go before its Content-Type.
 */
export function problem(
  status: number,
  title: string,
  detail: string,
  extra: object = {},
  headers: HeaderList = [],
): HttpResponse {
  return {
    status,
    headers: [...headers, ['Content-Type', 'application/problem+json']],
    body: JSON.stringify({ type: 'about:blank', title, status, detail, ...extra }),
  };
}

/** The detail of a 429: how long to wait, in the words of the tutorial this project started from. */
export function waitMessage(decision: Decision): string {
  if (!Number.isFinite(decision.retryAfter)) return 'This request costs more than the limit allows.';
  const s = Math.max(1, Math.ceil(decision.retryAfter / 1000));
  return `Wait ${s} second${s === 1 ? '' : 's'} before trying again.`;
}

/** 503: rate limiting cannot decide now (a store that rejects, or one whose outage policy is "closed"). */
export function unavailable(seconds: number): HttpResponse {
  return problem(503, 'Service Unavailable', 'Rate limiting is unavailable; try again shortly.', {}, [
    ['Retry-After', String(seconds)],
  ]);
}

/** The default 429 for a refused decision: the wait in words, `retryAfter` and the policy in the body. */
export function limited(decision: Decision, headers: HeaderList, extra: object = {}): HttpResponse {
  const retryAfter = Number.isFinite(decision.retryAfter)
    ? Math.max(1, Math.ceil(decision.retryAfter / 1000))
    : null;
  return problem(
    429,
    'Too Many Requests',
    waitMessage(decision),
    { retryAfter, policy: decision.policy, ...extra },
    headers,
  );
}
