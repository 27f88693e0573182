import type { OutagePolicy } from '../../core/algorithms/types.js';
import { systemClock } from '../../core/clock.js';
import { parseDuration } from '../../core/duration.js';
import { invalidOption, knownKeys } from '../../core/errors.js';
import { monotonicTimers, type Timers, timersOn } from '../../core/timers.js';
import { redisAdapter } from './adapter.js';
import type { RunnerOptions } from './runner.js';

/**
 * What a decision does while Redis cannot answer (error, timeout, or the circuit breaker is open):
 * - `open`: allow, as if no limit applied;
 * - `closed`: refuse, with `retryAfter` set to when Redis will next be tried;
 * - `fallback`: decide with an in-memory store in this process. Its counts start empty, are never merged
 *   back into Redis, and are per process: with N processes, up to N times the limit gets through.
 */
export type StoreErrorPolicy = OutagePolicy;

/** Quota grants: `true` takes the defaults. */
export type QuotaGrantOptions =
  | boolean
  | {
      /** Longest a grant is held before its unused units go back. Default `"1s"`. */
      readonly lifetime?: number | string;
      /** Most units one grant may take. Default 1000. */
      readonly maxUnits?: number;
      /** Most identifiers followed at once. Default 10 000. */
      readonly maxKeys?: number;
    };

export interface RedisStoreOptions {
  /** An ioredis, iovalkey or node-redis client (standalone or Cluster), connected, or a `RedisAdapter`. */
  readonly client: unknown;
  /** Prefix of every key. Default `"floodgate:"`. */
  readonly prefix?: string;
  /** Behaviour while Redis is unavailable. Default `"fallback"`. */
  readonly onStoreError?: StoreErrorPolicy;
  /** Longest a decision waits for Redis before answering by `onStoreError`. Default `"250ms"`. */
  readonly timeout?: number | string;
  /**
   * Circuit breaker: after `failures` failed calls in a row, decisions are answered by `onStoreError` at
   * once and Redis is probed in the background every `probeInterval` until it answers. `false` disables
   * it. Default `{ failures: 3, probeInterval: "1s" }`.
   */
  readonly breaker?: false | { readonly failures?: number; readonly probeInterval?: number | string };
  /**
   * Remembers in this process that an identifier is over its limit until its retry time, so a flood from
   * one identifier costs no round trips. A `refund`/`reset` in another process is not seen until then.
   * `true` keeps up to 10 000 identifiers. Default `false`.
   */
  readonly denyCache?: boolean | { readonly maxKeys?: number };
  /**
   * Quota grants (off by default): a process that sees an identifier often takes a slice of its quota in
   * one call and decides from it locally, with no round trip, until it is spent or lapses. Never admits
   * more than the exact limit for a fixed window; widens a token bucket's burst by at most a tenth.
   * Sliding windows and concurrency keep the exact path. `true` takes the defaults: `lifetime` "1s"
   * (longest a grant is held), `maxUnits` 1000 (largest grant), `maxKeys` 10 000 (identifiers followed).
   */
  readonly quotaGrants?: QuotaGrantOptions;
  /** @deprecated The former name of `quotaGrants` (a concurrency policy's leases are another thing). */
  readonly leases?: QuotaGrantOptions;
  /** Most decisions sent in one script call. Default 100. Decisions made in one turn of the event loop travel together, in up to two calls. */
  readonly maxBatch?: number;
  /**
   * Time source. By default decisions use the Redis server's clock (`TIME`), so app servers with skewed
   * clocks agree; a clock given here is sent to the script instead (tests drive time with it).
   */
  readonly clock?: { now(): number };
  /**
   * What this process times on its own (how long a quota grant lives, a refusal is remembered, Redis was
   * down) and the timers that end a grant: `now()` must never step back. Default `performance.now()` and
   * Node's timers; with a `clock` and no `timers`, that clock's time (a simulation moves one clock).
   */
  readonly timers?: Timers;
  /** Called on every failed call to Redis (never throws into the caller; exceptions here are ignored). */
  readonly onError?: (error: Error) => void;
  /** Called when Redis answers again after failures, with how long it was unavailable (ms). */
  readonly onRecover?: (info: { readonly downFor: number }) => void;
}

/** Quota grants' settings, resolved. */
export interface GrantSettings {
  /** Longest a grant is held before its unused units go back (ms); shortened per policy set, see `lifetimeOf`. */
  readonly lifetime: number;
  /** Most units one grant may ask for. */
  readonly maxUnits: number;
  /** Most identifiers followed at once (per policy set); past it, new identifiers take the exact path. */
  readonly maxKeys: number;
  /** Local monotonic time, and the timers that end grants. */
  readonly timers: Timers;
}

/** A store's options, validated and resolved once; every part reads them from here. */
export interface ResolvedRedisOptions {
  readonly prefix: string;
  readonly outage: OutagePolicy;
  readonly runner: RunnerOptions;
  /** Identifiers the deny cache keeps (0: no deny cache). */
  readonly denyMax: number;
  readonly grants: GrantSettings | undefined;
  /** Wall time, for the times decisions report (`resetAt`) when Redis does not answer. */
  readonly local: { now(): number };
}

const POLICIES: readonly OutagePolicy[] = ['open', 'closed', 'fallback'];
const KEYS = [
  'client',
  'prefix',
  'onStoreError',
  'timeout',
  'breaker',
  'denyCache',
  'maxBatch',
  'quotaGrants',
  'leases',
  'clock',
  'timers',
  'onError',
  'onRecover',
];
/** Node fires a timer of more than 2^31 - 1 ms at once (after 1 ms): longer durations are refused. */
const MAX_TIMER = 2 ** 31 - 1;

/** A duration that ends in a timer: a positive integer of ms, at most Node's longest timer. */
function timerDuration(value: unknown, option: string): number {
  const ms = parseDuration(value, option);
  if (ms > MAX_TIMER) {
    throw invalidOption(option, `at most ${MAX_TIMER} ms (24.8 days, the longest timer Node keeps)`, value);
  }
  return ms;
}

/** An options object, not a list (`[]` is an object too, and would pass for `{}`). */
function isOptions(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function positiveInteger(value: unknown, option: string): number {
  if (typeof value !== 'number') throw invalidOption(option, 'a positive integer', value, 'type');
  if (!Number.isSafeInteger(value) || value < 1) throw invalidOption(option, 'a positive integer', value);
  return value;
}

function isTimers(value: unknown): value is Timers {
  if (!isOptions(value)) return false;
  const t = value as Partial<Timers>;
  return (
    typeof t.now === 'function' && typeof t.setTimeout === 'function' && typeof t.clearTimeout === 'function'
  );
}

function breakerOf(breaker: unknown): { failures: number; probeInterval: number } {
  if (breaker === false) return { failures: Number.POSITIVE_INFINITY, probeInterval: 1000 };
  if (!isOptions(breaker)) {
    throw invalidOption('breaker', 'false or { failures, probeInterval }', breaker, 'type');
  }
  knownKeys(breaker, ['failures', 'probeInterval'], 'breaker.');
  const b = breaker as { failures?: unknown; probeInterval?: unknown };
  return {
    failures: positiveInteger(b.failures ?? 3, 'breaker.failures'),
    probeInterval: timerDuration(b.probeInterval ?? 1000, 'breaker.probeInterval'),
  };
}

function denyMaxOf(deny: unknown): number {
  if (typeof deny === 'boolean') return deny ? 10_000 : 0;
  if (!isOptions(deny)) throw invalidOption('denyCache', 'a boolean or { maxKeys }', deny, 'type');
  knownKeys(deny, ['maxKeys'], 'denyCache.');
  return positiveInteger((deny as { maxKeys?: unknown }).maxKeys ?? 10_000, 'denyCache.maxKeys');
}

/** Quota grants under the name they were given (`quotaGrants`, or its former name `leases`). */
function grantsOf(options: RedisStoreOptions, timers: Timers): GrantSettings | undefined {
  if (options.quotaGrants !== undefined && options.leases !== undefined) {
    throw invalidOption('leases', 'absent when "quotaGrants" is given (its former name)', options.leases);
  }
  const name = options.leases !== undefined ? 'leases' : 'quotaGrants';
  const value: unknown = options.quotaGrants ?? options.leases ?? false;
  if (value === false) return undefined;
  if (value !== true && !isOptions(value)) {
    throw invalidOption(name, 'a boolean or { lifetime, maxUnits, maxKeys }', value, 'type');
  }
  if (value !== true) knownKeys(value, ['lifetime', 'maxUnits', 'maxKeys'], `${name}.`);
  const g = (value === true ? {} : value) as { lifetime?: unknown; maxUnits?: unknown; maxKeys?: unknown };
  return {
    lifetime: timerDuration(g.lifetime ?? 1000, `${name}.lifetime`),
    maxUnits: positiveInteger(g.maxUnits ?? 1000, `${name}.maxUnits`),
    maxKeys: positiveInteger(g.maxKeys ?? 10_000, `${name}.maxKeys`),
    timers,
  };
}

/** Validates a store's options once, naming the option at fault; the result is frozen. */
export function resolveRedisOptions(options: RedisStoreOptions): ResolvedRedisOptions {
  if (typeof options !== 'object' || options === null) {
    throw invalidOption('RedisStore options', 'an object with a client', options, 'type');
  }
  knownKeys(options, KEYS);
  const redis = redisAdapter(options.client);
  const prefix = options.prefix ?? 'floodgate:';
  if (typeof prefix !== 'string') throw invalidOption('prefix', 'a string', prefix, 'type');
  const outage = options.onStoreError ?? 'fallback';
  if (!POLICIES.includes(outage)) {
    throw invalidOption('onStoreError', 'one of "open", "closed", "fallback"', outage);
  }
  const timeout = timerDuration(options.timeout ?? 250, 'timeout');
  const { failures, probeInterval } = breakerOf(options.breaker ?? {});
  const denyMax = denyMaxOf(options.denyCache ?? false);
  const maxBatch = positiveInteger(options.maxBatch ?? 100, 'maxBatch');
  const clock = options.clock;
  if (clock !== undefined && typeof clock?.now !== 'function') {
    throw invalidOption('clock', 'an object with a now() method', clock, 'type');
  }
  if (options.timers !== undefined && !isTimers(options.timers)) {
    throw invalidOption(
      'timers',
      'an object with now(), setTimeout() and clearTimeout()',
      options.timers,
      'type',
    );
  }
  const timers = options.timers ?? (clock === undefined ? monotonicTimers : timersOn(clock));
  for (const name of ['onError', 'onRecover'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'function') {
      throw invalidOption(name, 'a function', options[name], 'type');
    }
  }
  const runner: RunnerOptions = Object.freeze({
    redis,
    timeout,
    maxBatch,
    failures,
    probeInterval,
    clock,
    timers,
    onError: options.onError,
    onRecover: options.onRecover,
  });
  const grants = grantsOf(options, timers);
  return Object.freeze({
    prefix,
    outage,
    runner,
    denyMax,
    grants: grants && Object.freeze(grants),
    local: clock ?? systemClock,
  });
}
