import type { DescriptorStatus, Matched } from './answer.js';
import type { Metadata, MetadataValue } from './config.js';
import type { RlsRequest } from './request.js';

// The response's dynamic_metadata, in envoyproxy/ratelimit's shape (its RESPONSE_DYNAMIC_METADATA), which
// Envoy's rate-limit filter puts under `envoy.filters.http.ratelimit` for routes and logs to read: the
// request as received, and the `metadata` of every descriptor within its limit, so that a route can choose
// the backend of the quotas still left (quota_mode).

const isMapping = (value: MetadataValue | undefined): value is Metadata =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** `from` added into `into`: a field already there stays (the earlier descriptor's), mappings are merged. */
function mergeInto(into: Record<string, MetadataValue>, from: Metadata): void {
  for (const [key, value] of Object.entries(from)) {
    // Own fields only: `into.constructor` or `into.toString` would be Object.prototype's, and a field of
    // that name in the file would be dropped (or, for a mapping, merged into Object.prototype itself).
    const there = Object.hasOwn(into, key) ? into[key] : undefined;
    if (there === undefined)
      Object.defineProperty(into, key, {
        value: structuredClone(value),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    else if (isMapping(there) && isMapping(value)) mergeInto(there as Record<string, MetadataValue>, value);
  }
}

export function dynamicMetadata(
  request: RlsRequest,
  matched: readonly Matched[],
  statuses: readonly DescriptorStatus[],
): Metadata {
  const passed: Record<string, MetadataValue> = {};
  matched.forEach((m, i) => {
    // Unlimited descriptors are not among those that passed, as upstream counts them.
    if (m.metadata !== undefined && m.limit?.unlimited !== true && statuses[i]?.code === 'OK')
      mergeInto(passed, m.metadata);
  });
  return {
    domain: request.domain,
    descriptors: request.descriptors.map((d) => ({
      entries: d.entries.map((e) => `${e.key}=${e.value}`),
      ...(d.limit === undefined
        ? {}
        : { limit: `requests_per_unit:${d.limit.requests_per_unit} unit:${d.limit.unit.toUpperCase()}` }),
      ...(d.hitsAddend === undefined ? {} : { hitsAddend: d.hitsAddend }),
    })),
    ...(request.hitsAddend === 0 ? {} : { hitsAddend: request.hitsAddend }),
    ...(Object.keys(passed).length === 0 ? {} : { metadata: passed }),
  };
}
