import type { Unit } from './config.js';

// A ShouldRateLimit request as the service reads it, and what it must be before it is decided.

export interface Entry {
  readonly key: string;
  readonly value: string;
}

export interface RequestDescriptor {
  readonly entries: readonly Entry[];
  /** A limit the proxy sends with the descriptor, which replaces the configured one (envoyproxy/ratelimit's). */
  readonly limit?: { readonly requests_per_unit: number; readonly unit: Unit } | undefined;
  /**
   * The descriptor's own cost (Envoy's per-descriptor `hits_addend`), which replaces the request's: 0 charges
   * nothing (a check). Undefined when the proxy did not set it.
   */
  readonly hitsAddend?: number | undefined;
}

export interface RlsRequest {
  readonly domain: string;
  readonly descriptors: readonly RequestDescriptor[];
  /** The cost of each descriptor without its own; 0 (unset on the wire) means 1, as in Envoy. */
  readonly hitsAddend: number;
}

/** A request that cannot be decided as sent: gRPC's INVALID_ARGUMENT, with this message. */
export class InvalidRequest extends Error {}

/** Bounds on what one request may carry: far past any real proxy's, short of what could hurt the server. */
export const BOUNDS = { domain: 256, descriptors: 64, entries: 32, key: 256, value: 4096 } as const;

/**
 * The largest cost charged: above every limit (a uint32), so a larger `hits_addend` is refused just the
 * same, and a safe integer, which the library requires of a cost.
 */
export const MAX_COST = 2 ** 32;

function checkHits(hits: number, field: string): void {
  if (!Number.isInteger(hits) || hits < 0)
    throw new InvalidRequest(`${field} must be a non-negative integer; got ${hits}`);
}

/** Throws `InvalidRequest`, naming the field, for a request that cannot be decided. */
export function checkRequest(request: RlsRequest): void {
  if (request.domain === '') throw new InvalidRequest('domain must not be empty');
  // Digested once per descriptor: unbounded, one request could cost as much hashing as it likes.
  if (request.domain.length > BOUNDS.domain)
    throw new InvalidRequest(`domain is longer than ${BOUNDS.domain} characters`);
  checkHits(request.hitsAddend, 'hits_addend');
  if (request.descriptors.length === 0) throw new InvalidRequest('descriptors must not be empty');
  if (request.descriptors.length > BOUNDS.descriptors)
    throw new InvalidRequest(`at most ${BOUNDS.descriptors} descriptors per request`);
  request.descriptors.forEach((d, i) => {
    if (d.entries.length === 0) throw new InvalidRequest(`descriptors[${i}]: entries must not be empty`);
    if (d.entries.length > BOUNDS.entries)
      throw new InvalidRequest(`descriptors[${i}]: at most ${BOUNDS.entries} entries`);
    d.entries.forEach((e, j) => {
      const at = `descriptors[${i}].entries[${j}]`;
      if (e.key === '') throw new InvalidRequest(`${at}.key must not be empty`);
      if (e.key.length > BOUNDS.key)
        throw new InvalidRequest(`${at}.key is longer than ${BOUNDS.key} characters`);
      if (e.value.length > BOUNDS.value)
        throw new InvalidRequest(`${at}.value is longer than ${BOUNDS.value} characters`);
    });
    if (d.hitsAddend !== undefined) checkHits(d.hitsAddend, `descriptors[${i}].hits_addend`);
    const limit = d.limit;
    if (limit !== undefined) {
      const n = limit.requests_per_unit;
      if (!Number.isInteger(n) || n < 0 || n > 2 ** 32 - 1)
        throw new InvalidRequest(`descriptors[${i}].limit.requests_per_unit must be a uint32; got ${n}`);
    }
  });
}

/** What a descriptor costs: its own `hits_addend` (0 included), else the request's (0 meaning 1). */
export function costOf(request: RlsRequest, descriptor: RequestDescriptor): number {
  const hits = descriptor.hitsAddend ?? (request.hitsAddend === 0 ? 1 : request.hitsAddend);
  return Math.min(hits, MAX_COST);
}
