import { hashKey } from '../core/keys.js';
import type { RequestView } from './request.js';

/**
 * A built-in way to name the client of a request. Returns `undefined` when the request does not carry what
 * it needs (no header, a garbled Authorization); the middleware then follows its `onMissingKey` option.
 */
export interface KeyExtractor {
  readonly kind: 'floodgate-key';
  /** What the key is made of, for messages: "client IP", "header x-api-key"... */
  readonly describes: string;
  extract(request: RequestView, clientIp: string): string | undefined;
}

/** The client's IP address (IPv6 grouped by the middleware's `ipv6Prefix`); the default key. */
export function byIp(): KeyExtractor {
  // The same key string for an address every time: the store's lookup then finds its hash already computed,
  // where a string built per request is hashed (and flattened) on every request.
  const keys = new Map<string, string>();
  return {
    kind: 'floodgate-key',
    describes: 'client IP',
    extract: (_request, ip) => {
      if (ip === '') return undefined;
      let key = keys.get(ip);
      if (key === undefined) {
        if (keys.size >= KEY_CACHE_SIZE) keys.clear();
        key = `ip:${ip}`;
        keys.set(ip, key);
      }
      return key;
    },
  };
}

/** Addresses whose key strings are kept; past it the cache starts over, costing only the strings. */
const KEY_CACHE_SIZE = 10_000;

/** A header's value; hashed by default, so a token or credential never becomes a stored key. */
export function byHeader(name: string, { hash = true }: { hash?: boolean } = {}): KeyExtractor {
  const header = name.toLowerCase();
  return {
    kind: 'floodgate-key',
    describes: `header ${header}`,
    extract(request) {
      const value = request.header(header)?.trim();
      if (value === undefined || value === '') return undefined;
      return hash ? hashKey(value, `h:${header}:`) : `h:${header}:${value}`;
    },
  };
}

/** An API key from `header` (default `x-api-key`), or from `Authorization: Bearer`; always hashed. */
export function byApiKey({ header = 'x-api-key' }: { header?: string } = {}): KeyExtractor {
  const name = header.toLowerCase();
  return {
    kind: 'floodgate-key',
    describes: `API key (${name} or Authorization: Bearer)`,
    extract(request) {
      let value = request.header(name)?.trim();
      if (value === undefined || value === '') {
        const auth = /^bearer\s+(\S+)\s*$/i.exec(request.header('authorization') ?? '');
        value = auth?.[1];
      }
      return value === undefined || value === '' ? undefined : hashKey(value, 'key:');
    },
  };
}

/** The user name of HTTP Basic authentication, hashed; a missing or garbled header yields no key. */
export function byBasicUser(): KeyExtractor {
  return {
    kind: 'floodgate-key',
    describes: 'HTTP Basic user',
    extract(request) {
      const user = basicCredentials(request.header('authorization'))?.user;
      return user === undefined ? undefined : hashKey(user, 'user:');
    },
  };
}

/** Parses `Authorization: Basic base64(user:password)`; undefined for anything else or a garbled value. */
export function basicCredentials(header: string | undefined): { user: string; password: string } | undefined {
  const match = /^basic\s+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(header ?? '');
  if (match === null || match[1]!.length % 4 !== 0) return undefined;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 1 || decoded.includes('\uFFFD')) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
