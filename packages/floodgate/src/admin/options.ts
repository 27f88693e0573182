import type { IncomingMessage, ServerResponse } from 'node:http';
import { invalidOption, knownKeys } from '../core/errors.js';
import { Limiter } from '../limiter/limiter.js';
import type { Shedder } from '../limiter/shedder.js';
import type { Fleet } from './fleet.js';

/** The limiters an admin handler shows, by name: fixed, or asked for on each request (a reloaded configuration). */
export type LimiterSource =
  | Readonly<Record<string, Limiter>>
  | ReadonlyMap<string, Limiter>
  | (() => Iterable<readonly [string, Limiter]>);

/** An action taken through the admin API, for the application's log. */
export interface AdminAction {
  readonly action: 'reset' | 'set-override' | 'remove-override';
  readonly limiter: string;
  /** The identifier acted on, and how an operator reads it. */
  readonly key: string;
  readonly client: string;
  /** Who asked: the socket address and user agent of the request that carried the token. */
  readonly by: { readonly address: string | undefined; readonly userAgent: string | undefined };
  readonly policies?: unknown;
}

export interface AdminOptions {
  readonly limiters: LimiterSource;
  /** The server's own shedder, whose limit and in-flight count the dashboard shows. */
  readonly shedder?: Shedder | (() => Shedder | undefined);
  /**
   * The token every action needs (`Authorization: Bearer TOKEN`), and every request from another machine.
   * Without it, the handler only answers reads from loopback.
   */
  readonly token?: string;
  /** The path the handler is mounted at, e.g. `/admin`. Default: the root. */
  readonly base?: string;
  /** A readable name for an identifier (an API key's label from the application's table), if it has one. */
  readonly labels?: (key: string) => string | undefined;
  /** Called after each action that changed something, with who and what. */
  readonly onAction?: (action: AdminAction) => void;
  /** The processes sharing a Redis store (`new Fleet(...).start()`): `GET /api/fleet` merges their traffic. */
  readonly fleet?: Fleet;
  /** Time for the views. Default: `Date.now`. */
  readonly clock?: { now(): number };
}

/**
 * A `node:http` handler with the admin API and the dashboard; unknown paths go to `next`, or get 404.
 * Mount it on a port of its own, never on the public one:
 *
 *     const limiter = new Limiter({ policies: { limit: 100, window: '1m' } });
 *     http.createServer(adminHandler({ limiters: { api: limiter }, token: process.env.ADMIN_TOKEN }))
 *       .listen(9090, '127.0.0.1');
 */
export type AdminHandler = (req: IncomingMessage, res: ServerResponse, next?: () => void) => void;

/** The limiters of a source, as they are now. */
export function limitersOf(source: LimiterSource): Map<string, Limiter> {
  if (typeof source === 'function') return new Map(source());
  if (source instanceof Map) return new Map(source);
  return new Map(Object.entries(source as Record<string, Limiter>));
}

/** Refuses, at start and naming the option, what the handler could not use. */
export function checkOptions(options: AdminOptions): void {
  if (typeof options !== 'object' || options === null)
    throw invalidOption('options', 'an object such as { limiters: { api: limiter } }', options, 'type');
  knownKeys(options, ['limiters', 'shedder', 'token', 'base', 'labels', 'onAction', 'fleet', 'clock']);
  const { limiters, token, base = '', labels, onAction } = options;
  if (typeof limiters !== 'function' && (typeof limiters !== 'object' || limiters === null))
    throw invalidOption(
      'limiters',
      'a record or Map of limiters by name, or a function answering one',
      limiters,
      'type',
    );
  if (typeof limiters === 'object')
    for (const [name, limiter] of limitersOf(limiters))
      if (!(limiter instanceof Limiter))
        throw invalidOption(`limiters.${name}`, 'a Limiter', limiter, 'type');
  if (token !== undefined && (typeof token !== 'string' || token.length < 16))
    throw invalidOption(
      'token',
      'a string of at least 16 characters',
      token === undefined ? token : '(hidden)',
    );
  if (typeof base !== 'string' || (base !== '' && (!base.startsWith('/') || base.endsWith('/'))))
    throw invalidOption('base', 'a path such as "/admin" (no trailing slash), or ""', base);
  for (const [name, value] of [
    ['labels', labels],
    ['onAction', onAction],
  ] as const)
    if (value !== undefined && typeof value !== 'function')
      throw invalidOption(name, 'a function', value, 'type');
}
