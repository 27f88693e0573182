import type { IncomingMessage } from 'node:http';
import type { RequestView } from 'floodgate/http';
import { hostName } from './host.js';
import { matchPath } from './rules.js';

/** Where a request goes, read from its target and Host: what is forwarded, and what rules are matched on. */
export interface Target {
  /** The path and query sent upstream. */
  readonly forwardPath: string;
  /** The path rules are matched on. */
  readonly matchPath: string;
  /** The host rules and keys see (see `hostName`); '' when the request names none (HTTP/1.0). */
  readonly host: string;
  /** The Host value to forward, as the client wrote it: the absolute-form target's authority, else Host. */
  readonly authority: string | undefined;
}

/** An encoded slash, backslash or NUL in a path: upstreams that decode before routing see another path. */
const ENCODED_SEPARATOR = /%(?:2f|5c|00)/i;

/**
 * The request's path, resolved (see `targetOf`); a string (the detail of a 400) when it is not one. Rules
 * match the path as the upstream will route it: dot segments resolved, and path parameters (`;jsessionid=`,
 * `..;`) left out, as Java servers drop them; a path that could route two ways (an encoded `/`) is refused,
 * as Envoy's `path_with_escaped_slashes_action: REJECT_REQUEST` does.
 */
function pathsOf(raw: string): { forwardPath: string; matchPath: string } | string {
  if (!raw.startsWith('/')) return 'The request target is not a path.';
  // The common case, nothing to resolve or decode: no URL parser on the hot path.
  if (!/[.%\\;]|\/\/|#/.test(raw)) {
    const query = raw.indexOf('?');
    return { forwardPath: raw, matchPath: query === -1 ? raw : raw.slice(0, query) };
  }
  const query = raw.indexOf('?');
  if (ENCODED_SEPARATOR.test(query === -1 ? raw : raw.slice(0, query)))
    return 'The request path holds an encoded slash, backslash or NUL.';
  try {
    // Concatenated, not resolved against a base: `//x` is a path here, not a host.
    const url = new URL(`http://proxy.invalid${raw}`);
    const routed = url.pathname.includes(';')
      ? new URL(`http://proxy.invalid${url.pathname.replace(/;[^/]*/g, '')}`).pathname
      : url.pathname;
    // Forwarded with dot segments resolved, so the upstream serves exactly the path the rules were matched on.
    return { forwardPath: url.pathname + url.search, matchPath: matchPath(routed) };
  } catch {
    return 'The request target is not a path.';
  }
}

/** `http://authority/path`: the absolute form (RFC 9112, section 3.2.2); no userinfo (RFC 9110, 4.2.4). */
const ABSOLUTE = /^https?:\/\/([^/?#@]+)(.*)$/is;

/** The Host field lines of a request: RFC 9112 allows exactly one in HTTP/1.1 (Node keeps only the first). */
function hostLines(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') n++;
  }
  return n;
}

/**
 * Parses the request target and its host, once for rules, keys and forwarding; a string (the detail of a
 * 400) when the request cannot be routed: a target that is neither a path nor an absolute http(s) URL, two
 * Host fields, or a host that is no host name. The absolute form's authority replaces Host, as RFC 9112
 * requires of a server, so the rule, the key and the upstream all see the same host.
 */
export function targetOf(req: IncomingMessage): Target | string {
  let raw = req.url ?? '';
  let authority = req.headers.host;
  if (hostLines(req.rawHeaders) > 1) return 'The request has more than one Host field.';
  if (!raw.startsWith('/')) {
    const absolute = ABSOLUTE.exec(raw);
    if (absolute === null) return 'The request target is not a path.';
    authority = absolute[1]!;
    raw = absolute[2] === '' ? '/' : absolute[2]!;
  }
  const paths = pathsOf(raw);
  if (typeof paths === 'string') return paths;
  if (authority === undefined) return { ...paths, host: '', authority };
  const host = hostName(authority);
  if (host === undefined || (host === '' && raw !== req.url)) return 'The request host is not a host name.';
  return { ...paths, host, authority };
}

/** The guard's view of a request, matched on its resolved path; its Host is the normalised host. */
export function viewOf(req: IncomingMessage, target: Target): RequestView {
  return {
    method: req.method ?? 'GET',
    path: target.matchPath,
    header(name) {
      if (name === 'host') return target.host === '' ? undefined : target.host;
      const value = req.headers[name];
      return Array.isArray(value) ? value.join(', ') : value;
    },
    peer: req.socket.remoteAddress,
  };
}
