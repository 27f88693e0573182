import { hash } from 'node:crypto';

// The strings rls makes from a request's parts. Every part may be chosen by a client (a header's value, a
// path), so each is made from an encoding that cannot be forged by putting a separator inside a part:
// a JSON array of the parts, which JSON.parse turns back into exactly those parts (lone surrogates are
// escaped, so the UTF-8 that is digested loses nothing either).

/** A short digest, for store keys and metric labels that must not carry the value itself. */
export function digest(value: string): string {
  // One call, no Hash object: made for every descriptor of every call.
  return hash('sha256', value, 'base64url').slice(0, 22);
}

/** The parts of a descriptor that make its counter: the domain, then each entry's key and value. */
export interface CounterParts {
  readonly domain: string;
  /** `shared`: a `share_threshold` wildcard's pattern, which the entry is counted as instead of its value. */
  readonly entries: readonly { readonly key: string; readonly value: string; readonly shared?: string }[];
}

/**
 * A descriptor's store identifier: a digest of its domain and entries (values may be credentials), then the
 * limit, so that a limit changed by a reload starts afresh. The limit's name is letters, digits and `._:-`,
 * its size an integer and a unit, so the part after the digest reads back one way too.
 */
export function counterKey(
  { domain, entries }: CounterParts,
  limit: { readonly name: string; readonly requestsPerUnit: number; readonly unit: string },
): string {
  // A shared pattern is an object in the encoding, so that no value sent (`files/*` itself) can pass for it.
  const parts: unknown[] = [domain];
  for (const e of entries) parts.push(e.key, e.shared === undefined ? e.value : { shared: e.shared });
  return `rls:${digest(JSON.stringify(parts))}:${limit.name}:${limit.requestsPerUnit}/${limit.unit}`;
}
