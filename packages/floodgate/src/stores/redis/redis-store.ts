import type { PolicyResult } from '../../core/algorithms/types.js';
import { systemClock } from '../../core/clock.js';
import { parseDuration } from '../../core/duration.js';
import { FloodgateError, invalidOption } from '../../core/errors.js';
import type { Policy, PolicySet } from '../../core/policy.js';
import { MemoryStore } from '../memory.js';
import type { Store, StoreMode } from '../store.js';
import { type RedisAdapter, redisAdapter } from './adapter.js';
import { BATCH_SCRIPT, BATCH_SHA } from './script.lua.js';
import { hashSlot } from './slot.js';

/**
 * What a decision does while Redis cannot answer (error, timeout, or the circuit breaker is open):
 * - `open`: allow, as if no limit applied;
 * - `closed`: refuse, with `retryAfter` set to when Redis will next be tried;
 * - `fallback`: decide with an in-memory store in this process. Its counts start empty, are never merged
 *   back into Redis, and are per process: with N processes, up to N times the limit gets through.
 */
export type StoreErrorPolicy = 'open' | 'closed' | 'fallback';

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
  /** Most decisions sent in one script call. Default 100. Decisions made in one tick share a call. */
  readonly maxBatch?: number;
  /**
   * Time source. By default decisions use the Redis server's clock (`TIME`), so app servers with skewed
   * clocks agree; a clock given here is sent to the script instead (tests drive time with it).
   */
  readonly clock?: { now(): number };
  /** Called on every failed call to Redis (never throws into the caller; exceptions here are ignored). */
  readonly onError?: (error: Error) => void;
  /** Called when Redis answers again after failures, with how long it was unavailable (ms). */
  readonly onRecover?: (info: { readonly downFor: number }) => void;
}

/** Counters for metrics and benchmarks. */
export interface RedisStoreStats {
  /** Script calls sent to Redis for decisions (round trips; background probes are not counted). */
  scripts: number;
  /** Decisions sent to Redis inside those calls. */
  decisions: number;
  /** Decisions answered from the deny cache. */
  cacheHits: number;
  /** Decisions answered by `onStoreError`. */
  degraded: number;
  /** Failed calls to Redis. */
  failures: number;
}

interface Op {
  readonly key: string;
  readonly set: PolicySet;
  readonly cost: number;
  readonly mode: StoreMode;
  readonly lease: string | undefined;
  readonly keys: readonly string[];
  readonly args: readonly string[];
  resolve(results: readonly PolicyResult[]): void;
}

interface Denial {
  readonly set: PolicySet;
  readonly cost: number;
  readonly until: number;
  readonly results: readonly PolicyResult[];
  /** Local time it was remembered at: a hit counts the results' durations down from it. */
  readonly at: number;
}

const CODES: Record<Policy['algorithm'], string> = {
  'token-bucket': '1',
  gcra: '1',
  'fixed-window': '2',
  'sliding-window-log': '3',
  'sliding-window-counter': '4',
  concurrency: '5',
};
const MODES: Record<StoreMode, string> = { consume: 'c', peek: 'p', refund: 'r' };

const POLICIES = ['open', 'closed', 'fallback'] as const;

/** Keeps an identifier inside its `{hash tag}`: braces would end the tag early, so they are escaped. */
function tag(key: string): string {
  return /[{}%]/.test(key) ? key.replace(/[{}%]/g, (c) => `%${c.charCodeAt(0).toString(16)}`) : key;
}

function positiveInteger(value: unknown, option: string): number {
  if (typeof value !== 'number') throw invalidOption(option, 'a positive integer', value, 'type');
  if (!Number.isSafeInteger(value) || value < 1) throw invalidOption(option, 'a positive integer', value);
  return value;
}

/**
 * A store in Redis or Valkey, shared by every process that uses the same server and prefix. Each decision
 * is one atomic Lua script (all policies of an identifier checked and charged together), decided on the
 * server's clock; decisions made in the same tick travel in one script call. Every key expires when its
 * state stops mattering. Keys of one identifier share a hash tag, so it works on a Redis Cluster.
 */
export class RedisStore implements Store {
  readonly #redis: RedisAdapter;
  readonly #prefix: string;
  readonly #policy: StoreErrorPolicy;
  readonly #timeout: number;
  readonly #breakAfter: number;
  readonly #probeInterval: number;
  readonly #maxBatch: number;
  readonly #clock: { now(): number } | undefined;
  readonly #local: { now(): number };
  readonly #denyMax: number;
  readonly #denied = new Map<string, Denial>();
  readonly #onError: ((error: Error) => void) | undefined;
  readonly #onRecover: ((info: { readonly downFor: number }) => void) | undefined;
  readonly #args = new WeakMap<PolicySet, readonly string[]>();
  #fallback: MemoryStore | undefined;

  /** Operations waiting for the end of the tick, by hash slot (one group when not on a Cluster). */
  #queue = new Map<number, Op[]>();
  #scheduled = false;
  #failuresInRow = 0;
  #downSince: number | undefined;
  #open = false;
  #probe: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  readonly stats: RedisStoreStats = { scripts: 0, decisions: 0, cacheHits: 0, degraded: 0, failures: 0 };

  constructor(options: RedisStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption('RedisStore options', 'an object with a client', options, 'type');
    }
    this.#redis = redisAdapter(options.client);
    const prefix = options.prefix ?? 'floodgate:';
    if (typeof prefix !== 'string') throw invalidOption('prefix', 'a string', prefix, 'type');
    this.#prefix = prefix;
    const policy = options.onStoreError ?? 'fallback';
    if (!POLICIES.includes(policy)) {
      throw invalidOption('onStoreError', 'one of "open", "closed", "fallback"', policy);
    }
    this.#policy = policy;
    this.#timeout = parseDuration(options.timeout ?? 250, 'timeout');
    const breaker = options.breaker ?? {};
    if (breaker === false) {
      this.#breakAfter = Number.POSITIVE_INFINITY;
      this.#probeInterval = 1000;
    } else if (typeof breaker !== 'object' || breaker === null) {
      throw invalidOption('breaker', 'false or { failures, probeInterval }', breaker, 'type');
    } else {
      this.#breakAfter = positiveInteger(breaker.failures ?? 3, 'breaker.failures');
      this.#probeInterval = parseDuration(breaker.probeInterval ?? 1000, 'breaker.probeInterval');
    }
    const deny = options.denyCache ?? false;
    if (typeof deny === 'boolean') this.#denyMax = deny ? 10_000 : 0;
    else if (typeof deny === 'object' && deny !== null)
      this.#denyMax = positiveInteger(deny.maxKeys ?? 10_000, 'denyCache.maxKeys');
    else throw invalidOption('denyCache', 'a boolean or { maxKeys }', deny, 'type');
    this.#maxBatch = positiveInteger(options.maxBatch ?? 100, 'maxBatch');
    const clock = options.clock;
    if (clock !== undefined && typeof clock?.now !== 'function') {
      throw invalidOption('clock', 'an object with a now() method', clock, 'type');
    }
    this.#clock = clock;
    this.#local = clock ?? systemClock;
    for (const name of ['onError', 'onRecover'] as const) {
      if (options[name] !== undefined && typeof options[name] !== 'function') {
        throw invalidOption(name, 'a function', options[name], 'type');
      }
    }
    this.#onError = options.onError;
    this.#onRecover = options.onRecover;
  }

  /** False while Redis is failing (after a failed call, until one succeeds). */
  get healthy(): boolean {
    return this.#downSince === undefined;
  }

  apply(
    key: string,
    set: PolicySet,
    cost: number,
    mode: StoreMode,
    lease?: string,
  ): Promise<readonly PolicyResult[]> {
    if (this.#denyMax > 0) {
      if (mode === 'refund') this.#denied.delete(key);
      else {
        const hit = this.#cachedDenial(key, set, cost);
        if (hit !== undefined) return Promise.resolve(hit);
      }
    }
    if (this.#open || this.#closed) return Promise.resolve(this.#degrade(key, set, cost, mode, lease));
    return new Promise((resolve) => {
      const op: Op = {
        key,
        set,
        cost,
        mode,
        lease,
        keys: this.#keys(key, set),
        args: this.#opArgs(set, cost, mode, lease),
        resolve,
      };
      const slot = this.#redis.cluster ? hashSlot(op.keys[0]!) : 0;
      const group = this.#queue.get(slot);
      if (group === undefined) this.#queue.set(slot, [op]);
      else group.push(op);
      if (!this.#scheduled) {
        this.#scheduled = true;
        // After the current microtasks settle: decisions started by one batch of replies go out together.
        process.nextTick(() => this.#flush());
      }
    });
  }

  /** Deletes the identifier's state. Rejects if Redis cannot be reached within the timeout. */
  async reset(key: string, set: PolicySet): Promise<void> {
    this.#denied.delete(key);
    await this.#fallback?.reset(key, set);
    const keys = this.#keys(key, set);
    const args = ['', 'x', '0', '', String(set.policies.length), ...this.#policyArgs(set)];
    try {
      await this.#call(keys, args);
      this.#succeeded();
    } catch (error) {
      this.#failed(error);
      throw error;
    }
  }

  /** Stops the background probe. The Redis client is yours: close it yourself. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#probe);
    this.#probe = undefined;
  }

  #keys(key: string, set: PolicySet): string[] {
    const base = `${this.#prefix}{${tag(key)}}:`;
    return set.policies.map((p) => base + p.id);
  }

  #policyArgs(set: PolicySet): readonly string[] {
    let args = this.#args.get(set);
    if (args === undefined) {
      args = set.policies.flatMap((p) => [
        CODES[p.algorithm],
        String(p.limit),
        String(p.window),
        String(p.burst),
      ]);
      this.#args.set(set, args);
    }
    return args;
  }

  #opArgs(set: PolicySet, cost: number, mode: StoreMode, lease: string | undefined): string[] {
    return [
      MODES[mode],
      String(cost),
      lease === undefined ? '' : encodeURIComponent(lease),
      String(set.policies.length),
      ...this.#policyArgs(set),
    ];
  }

  #flush(): void {
    this.#scheduled = false;
    const queue = this.#queue;
    this.#queue = new Map();
    for (const ops of queue.values()) {
      for (let i = 0; i < ops.length; i += this.#maxBatch) void this.#send(ops.slice(i, i + this.#maxBatch));
    }
  }

  async #send(ops: Op[]): Promise<void> {
    const keys: string[] = [];
    const args: string[] = [this.#clock === undefined ? '' : String(this.#clock.now())];
    for (const op of ops) {
      for (const k of op.keys) keys.push(k);
      for (const a of op.args) args.push(a);
    }
    let reply: unknown;
    this.stats.scripts++;
    try {
      reply = await this.#call(keys, args);
      this.stats.decisions += ops.length;
      this.#succeeded();
    } catch (error) {
      this.#failed(error);
      for (const op of ops) op.resolve(this.#degrade(op.key, op.set, op.cost, op.mode, op.lease));
      return;
    }
    const flat = reply as readonly number[];
    const now = Number(flat[0]); // Redis's time (or the injected clock's): resetAt is on it
    let at = 1;
    for (const op of ops) {
      const n = op.set.policies.length;
      const results: PolicyResult[] = new Array(n);
      for (let i = 0; i < n; i++, at += 4) {
        const retry = Number(flat[at + 3]);
        const resetAt = Number(flat[at + 2]);
        results[i] = {
          allowed: Number(flat[at]) === 1,
          remaining: Number(flat[at + 1]),
          resetAt,
          retryAfter: retry < 0 ? Number.POSITIVE_INFINITY : retry,
          resetAfter: resetAt - now,
        };
      }
      if (this.#denyMax > 0 && op.mode === 'consume') this.#remember(op, results);
      op.resolve(results);
    }
  }

  /** One script call, by hash, then by source if the server's script cache was emptied; bounded by the timeout. */
  #call(keys: string[], args: string[]): Promise<unknown> {
    const work = this.#redis.evalsha(BATCH_SHA, keys, args).catch((error: unknown) => {
      if (error instanceof Error && error.message.startsWith('NOSCRIPT')) {
        return this.#redis.eval(BATCH_SCRIPT, keys, args);
      }
      throw error;
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new FloodgateError(
            'ERR_FLOODGATE_STORE_TIMEOUT',
            `floodgate: Redis did not answer within ${this.#timeout} ms`,
          ),
        );
      }, this.#timeout);
      work.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  #succeeded(): void {
    this.#failuresInRow = 0;
    if (this.#downSince === undefined) return;
    const downFor = this.#local.now() - this.#downSince;
    this.#downSince = undefined;
    this.#open = false;
    clearTimeout(this.#probe);
    this.#probe = undefined;
    if (this.#onRecover !== undefined) {
      try {
        this.#onRecover({ downFor });
      } catch {
        // A listener's failure must not turn into a failed decision.
      }
    }
  }

  #failed(cause: unknown): void {
    const error = cause instanceof Error ? cause : new Error(String(cause));
    this.stats.failures++;
    this.#failuresInRow++;
    this.#downSince ??= this.#local.now();
    if (this.#onError !== undefined) {
      try {
        this.#onError(error);
      } catch {
        // As above: listeners cannot break decisions.
      }
    }
    if (!this.#open && this.#failuresInRow >= this.#breakAfter) {
      this.#open = true;
      this.#scheduleProbe();
    }
  }

  #scheduleProbe(): void {
    if (this.#closed) return;
    this.#probe = setTimeout(() => {
      this.#call([], ['']).then(
        () => this.#succeeded(),
        (error: unknown) => {
          this.#failed(error);
          this.#scheduleProbe();
        },
      );
    }, this.#probeInterval);
    this.#probe.unref();
  }

  #degrade(
    key: string,
    set: PolicySet,
    cost: number,
    mode: StoreMode,
    lease: string | undefined,
  ): readonly PolicyResult[] {
    this.stats.degraded++;
    if (this.#policy === 'fallback') {
      this.#fallback ??= new MemoryStore({ clock: this.#local, maxKeys: 100_000 });
      return this.#fallback.applySync(key, set, cost, mode, lease);
    }
    const now = this.#local.now();
    if (this.#policy === 'open' || mode === 'refund') {
      return set.policies.map((p) => ({
        allowed: true,
        remaining: p.burst,
        resetAt: now,
        retryAfter: 0,
        resetAfter: 0,
      }));
    }
    const wait = this.#probeInterval;
    return set.policies.map(() => ({
      allowed: false,
      remaining: 0,
      resetAt: now + wait,
      retryAfter: wait,
      resetAfter: wait,
    }));
  }

  #cachedDenial(key: string, set: PolicySet, cost: number): readonly PolicyResult[] | undefined {
    const hit = this.#denied.get(key);
    if (hit === undefined) return undefined;
    const now = this.#local.now();
    if (now >= hit.until) {
      this.#denied.delete(key);
      return undefined;
    }
    if (hit.set !== set || hit.cost !== cost) return undefined;
    this.stats.cacheHits++;
    // The remembered durations, counted down on this process's clock.
    const elapsed = now - hit.at;
    return hit.results.map((r) => ({
      ...r,
      retryAfter: r.allowed ? 0 : Math.max(1, r.retryAfter - elapsed),
      resetAfter: Math.max(0, r.resetAfter - elapsed),
    }));
  }

  #remember(op: Op, results: readonly PolicyResult[]): void {
    let until = 0;
    const now = this.#local.now();
    for (const r of results) {
      if (!r.allowed && Number.isFinite(r.retryAfter) && now + r.retryAfter > until)
        until = now + r.retryAfter;
    }
    if (until === 0) return;
    if (this.#denied.size >= this.#denyMax && !this.#denied.has(op.key)) {
      // Oldest first: Map keeps insertion order.
      const oldest = this.#denied.keys().next().value;
      if (oldest !== undefined) this.#denied.delete(oldest);
    }
    this.#denied.delete(op.key);
    this.#denied.set(op.key, { set: op.set, cost: op.cost, until, results, at: now });
  }
}
