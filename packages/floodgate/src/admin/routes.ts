/** A request to the admin handler, parsed: the method, the path below the handler's base, the query. */
export interface AdminRoute {
  readonly method: string;
  readonly segments: readonly string[];
  readonly query: URLSearchParams;
}

/** Splits a URL below `base` into decoded segments; undefined when it is not below `base`, null when garbled. */
export function routeOf(method: string, url: string, base: string): AdminRoute | undefined | null {
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (base !== '' && path !== base && !path.startsWith(`${base}/`)) return undefined;
  const rest = path.slice(base.length);
  const segments: string[] = [];
  for (const raw of rest.split('/')) {
    if (raw === '') continue;
    try {
      segments.push(decodeURIComponent(raw));
    } catch {
      return null;
    }
  }
  return { method, segments, query: new URLSearchParams(q === -1 ? '' : url.slice(q + 1)) };
}
