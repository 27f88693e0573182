import type { IncomingMessage } from 'node:http';
import type { RequestView } from 'floodgate/http';
import { matchPath } from './rules.js';

/** Where a request goes, read from its target: what is forwarded, and what rules are matched on. */
export interface Target {
  /** The path and query sent upstream. */
  readonly forwardPath: string;
  /** The path rules are matched on. */
  readonly matchPath: string;
}

/** Parses the request target; undefined when it is not a path (a 400). */
export function targetOf(req: IncomingMessage): Target | undefined {
  const raw = req.url ?? '';
  if (!raw.startsWith('/')) return undefined;
  // The common case, nothing to resolve or decode: no URL parser on the hot path.
  if (!/[.%\\]|\/\/|#/.test(raw)) {
    const query = raw.indexOf('?');
    return { forwardPath: raw, matchPath: query === -1 ? raw : raw.slice(0, query) };
  }
  try {
    // Concatenated, not resolved against a base: `//x` is a path here, not a host.
    const url = new URL(`http://proxy.invalid${raw}`);
    // Forwarded with dot segments resolved, so the upstream serves exactly the path the rules were matched on.
    return { forwardPath: url.pathname + url.search, matchPath: matchPath(url.pathname) };
  } catch {
    return undefined;
  }
}

/** The Host header's name, lower-cased, without a port (and without the brackets of an IPv6 literal). */
export function hostOf(header: string | undefined): string {
  const host = (header ?? '').toLowerCase();
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

/** The guard's view of a request, matched on `path` (the resolved one). */
export function viewOf(req: IncomingMessage, path: string): RequestView {
  return {
    method: req.method ?? 'GET',
    path,
    header(name) {
      const value = req.headers[name];
      return Array.isArray(value) ? value.join(', ') : value;
    },
    peer: req.socket.remoteAddress,
  };
}
