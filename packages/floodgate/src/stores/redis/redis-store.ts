import type { OutagePolicy, PolicyResult } from '../../core/algorithms/types.js';
import { systemClock } from '../../core/clock.js';
import { parseDuration } from '../../core/duration.js';
import { FloodgateError, invalidOption, knownKeys } from '../../core/errors.js';
import type { MaybePromise } from '../../core/maybe.js';
import type { PolicySet } from '../../core/policy.js';
import { monotonicTimers, type Timers, timersOn } from '../../core/timers.js';
import type { GroupMember } from '../group.js';
import { MemoryStore } from '../memory.js';
import type { Store, StoreMode } from '../store.js';
import { type RedisAdapter, redisAdapter } from './adapter.js';
import { Batcher } from './batcher.js';
import { Breaker } from './breaker.js';
import {
  decodeBatch,
  type EncodedOp,
  encodeBatch,
  encodeKeys,
  encodeOp,
  encodePolicies,
  type OpMode,
} from './codec.js';
import { DenyCache } from './deny-cache.js';
import { type LeaseStats, Leases } from './leases.js';
import { BATCH_SCRIPT, BATCH_SHA } from './script.lua.js';
import { hashSlot } from './slot.js';

/**
 * What a decision does while Redis cannot answer (error, timeout, or the circuit breaker is open):
 * - `open`: allow, as if no limit applied;
 * - `closed`: refuse, with `retryAfter` set to when Redis will next be tried;
 * - `fallback`: decide with an in-memory store in this process. Its counts start empty, are never merged
 *   back into Redis, and are per process: with N processes, up to N times the limit gets through.
 */
export type StoreErrorPolicy = OutagePolicy;

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
   * Quota leases (off by default): a process that sees an identifier often takes a slice of its quota in one
   * call and decides from it locally, with no round trip, until it is spent or lapses. Never admits more
   * than the exact limit for a fixed window; widens a token bucket's burst by at most a tenth. Sliding
   * windows and concurrency keep the exact path. `true` takes the defaults: `lifetime` "1s" (longest a
   * lease is held), `maxUnits` 1000 (largest lease), `maxKeys` 10 000 (identifiers followed).
   */
  readonly leases?:
    | boolean
    | {
        readonly lifetime?: number | string;
        readonly maxUnits?: number;
        readonly maxKeys?: number;
      };
  /** Most decisions sent in one script call. Default 100. Decisions made in one turn of the event loop travel together, in up to two calls. */
  readonly maxBatch?: number;
  /**
   * Time source. By default decisions use the Redis server's clock (`TIME`), so app servers with skewed
   * clocks agree; a clock given here is sent to the script instead (tests drive time with it).
   */
  readonly clock?: { now(): number };
  /**
   * What this process times on its own (how long a quota lease lives, a refusal is remembered, Redis was
   * down) and the timers that end a lease: `now()` must never step back. Default `performance.now()` and
   * Node's timers; with a `clock` and no `timers`, that clock's time (a simulation moves one clock).
   */
  readonly timers?: Timers;
  /** Called on every failed call to Redis (never throws into the caller; exceptions here are ignored). */
  readonly onError?: (error: Error) => void;
  /** Called when Redis answers again after failures, with how long it was unavailable (ms). */
  readonly onRecover?: (info: { readonly downFor: number }) => void;
}

/** Counters for metrics and benchmarks. */
export interface RedisStoreStats extends LeaseStats {
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

type Answer = { readonly results: readonly PolicyResult[]; readonly granted: number };

interface Op extends EncodedOp {
  readonly key: string;
  readonly set: PolicySet;
  readonly cost: number;
  readonly mode: OpMode;
  readonly lease: string | undefined;
  resolve(answer: Answer): void;
}

/** Operations charged all or none: they travel as one item, so no call splits them. */
interface Group {
  readonly keys: readonly string[];
  readonly members: readonly Op[];
}

type Item = Op | Group;

const POLICIES: readonly OutagePolicy[] = ['open', 'closed', 'fallback'];
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

/**
 * A store in Redis or Valkey, shared by every process that uses the same server and prefix. Each decision
 * is one atomic Lua script (all policies of an identifier checked and charged together), decided on the
 * server's clock; decisions made in the same turn of the event loop travel together (in up to two calls). Every key expires when its
 * state stops mattering. Keys of one identifier share a hash tag, so it works on a Redis Cluster.
 *
 * Its parts: `codec` builds the script's arguments and reads its reply, `Batcher` groups decisions into
 * calls, `Breaker` stops calling a failing Redis, `DenyCache` remembers refusals, and the outage policy
 * (`onStoreError`) answers whatever Redis cannot.
 */
export class RedisStore implements Store {
  readonly #redis: RedisAdapter;
  readonly #prefix: string;
  readonly #outage: OutagePolicy;
  readonly #timeout: number;
  readonly #clock: { now(): number } | undefined;
  /** Wall time, for the times decisions report (`resetAt`) when Redis does not answer. */
  readonly #local: { now(): number };
  readonly #breaker: Breaker;
  readonly #probeInterval: number;
  readonly #batcher: Batcher<Item>;
  readonly #denied: DenyCache | undefined;
  readonly #leases: Leases | undefined;
  readonly #policies = new WeakMap<PolicySet, readonly string[]>();
  #fallback: MemoryStore | undefined;
  readonly stats: RedisStoreStats = {
    scripts: 0,
    decisions: 0,
    cacheHits: 0,
    degraded: 0,
    failures: 0,
    leases: 0,
    leasedUnits: 0,
    returnedUnits: 0,
    lapsedUnits: 0,
    localDecisions: 0,
  };

  constructor(options: RedisStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption('RedisStore options', 'an object with a client', options, 'type');
    }
    knownKeys(options, [
      'client',
      'prefix',
      'onStoreError',
      'timeout',
      'breaker',
      'denyCache',
      'maxBatch',
      'leases',
      'clock',
      'timers',
      'onError',
      'onRecover',
    ]);
    this.#redis = redisAdapter(options.client);
    const prefix = options.prefix ?? 'floodgate:';
    if (typeof prefix !== 'string') throw invalidOption('prefix', 'a string', prefix, 'type');
    this.#prefix = prefix;
    const outage = options.onStoreError ?? 'fallback';
    if (!POLICIES.includes(outage)) {
      throw invalidOption('onStoreError', 'one of "open", "closed", "fallback"', outage);
    }
    this.#outage = outage;
    this.#timeout = timerDuration(options.timeout ?? 250, 'timeout');
    const breaker = options.breaker ?? {};
    let failures: number;
    if (breaker === false) {
      failures = Number.POSITIVE_INFINITY;
      this.#probeInterval = 1000;
    } else if (!isOptions(breaker)) {
      throw invalidOption('breaker', 'false or { failures, probeInterval }', breaker, 'type');
    } else {
      knownKeys(breaker, ['failures', 'probeInterval'], 'breaker.');
      failures = positiveInteger(breaker.failures ?? 3, 'breaker.failures');
      this.#probeInterval = timerDuration(breaker.probeInterval ?? 1000, 'breaker.probeInterval');
    }
    const deny = options.denyCache ?? false;
    let denyMax: number;
    if (typeof deny === 'boolean') denyMax = deny ? 10_000 : 0;
    else if (isOptions(deny)) {
      knownKeys(deny, ['maxKeys'], 'denyCache.');
      denyMax = positiveInteger(deny.maxKeys ?? 10_000, 'denyCache.maxKeys');
    } else throw invalidOption('denyCache', 'a boolean or { maxKeys }', deny, 'type');
    const maxBatch = positiveInteger(options.maxBatch ?? 100, 'maxBatch');
    const leases = options.leases ?? false;
    if (typeof leases !== 'boolean' && !isOptions(leases)) {
      throw invalidOption('leases', 'a boolean or { lifetime, maxUnits, maxKeys }', leases, 'type');
    }
    if (typeof leases === 'object') knownKeys(leases, ['lifetime', 'maxUnits', 'maxKeys'], 'leases.');
    const lease = typeof leases === 'object' ? leases : {};
    const clock = options.clock;
    if (clock !== undefined && typeof clock?.now !== 'function') {
      throw invalidOption('clock', 'an object with a now() method', clock, 'type');
    }
    this.#clock = clock;
    this.#local = clock ?? systemClock;
    const timers = options.timers;
    if (
      timers !== undefined &&
      (!isOptions(timers) ||
        typeof (timers as Partial<Timers>).now !== 'function' ||
        typeof (timers as Partial<Timers>).setTimeout !== 'function' ||
        typeof (timers as Partial<Timers>).clearTimeout !== 'function')
    ) {
      throw invalidOption('timers', 'an object with now(), setTimeout() and clearTimeout()', timers, 'type');
    }
    const monotonic = timers ?? (clock === undefined ? monotonicTimers : timersOn(clock));
    for (const name of ['onError', 'onRecover'] as const) {
      if (options[name] !== undefined && typeof options[name] !== 'function') {
        throw invalidOption(name, 'a function', options[name], 'type');
      }
    }
    this.#breaker = new Breaker({
      failures,
      probeInterval: this.#probeInterval,
      clock: monotonic,
      probe: () => this.#call([], encodeBatch([], undefined).args),
      onError: options.onError,
      onRecover: options.onRecover,
    });
    this.#denied = denyMax > 0 ? new DenyCache(denyMax, monotonic) : undefined;
    this.#batcher = new Batcher(this.#redis.cluster, maxBatch, (ops) => void this.#send(ops));
    this.#leases =
      leases === false
        ? undefined
        : new Leases(
            {
              lifetime: timerDuration(lease.lifetime ?? 1000, 'leases.lifetime'),
              maxUnits: positiveInteger(lease.maxUnits ?? 1000, 'leases.maxUnits'),
              maxKeys: positiveInteger(lease.maxKeys ?? 10_000, 'leases.maxKeys'),
              timers: monotonic,
            },
            {
              call: (key, set, mode, cost, id) => this.#op(key, set, cost, mode, id),
              degrade: (key, set, cost) => this.#degrade(key, set, cost, 'consume', undefined),
            },
            this.stats,
          );
  }

  /** Gives back the units of lapsed quota leases now (each lease also gives them back at its end, on a timer). */
  sweep(): void {
    this.#leases?.sweep();
  }

  /** False while Redis is failing (after a failed call, until one succeeds). */
  get healthy(): boolean {
    return this.#breaker.healthy;
  }

  apply(
    key: string,
    set: PolicySet,
    cost: number,
    mode: StoreMode,
    lease?: string,
  ): MaybePromise<readonly PolicyResult[]> {
    const denied = this.#denied;
    if (denied !== undefined) {
      if (mode === 'refund') denied.forget(key);
      else {
        const hit = denied.lookup(key, set, cost);
        if (hit !== undefined) {
          this.stats.cacheHits++;
          return hit;
        }
      }
    }
    if (mode === 'consume' && this.#leases?.covers(set)) return this.#leases.take(key, set, cost);
    return this.#op(key, set, cost, mode, lease).then((answer) => answer.results);
  }

  /**
   * Several identifiers charged all or none, in one script call (on a Cluster, only when they share a hash
   * slot: otherwise undefined, and the Limiter charges each and gives back). Exact: no quota lease and no
   * deny cache answer for a group.
   */
  applyGroup(members: readonly GroupMember[]): Promise<(readonly PolicyResult[])[]> | undefined {
    const keys = members.map((m) => encodeKeys(this.#prefix, m.key, m.set));
    if (this.#redis.cluster) {
      const slot = hashSlot(keys[0]![0]!);
      if (keys.some((k) => hashSlot(k[0]!) !== slot)) return undefined;
    }
    if (this.#breaker.tripped) return Promise.resolve(this.#degradeGroup(members));
    const size = String(members.length);
    const answers: Promise<Answer>[] = [];
    const ops = members.map((m, i): Op => {
      let resolve!: (answer: Answer) => void;
      answers.push(
        new Promise<Answer>((r) => {
          resolve = r;
        }),
      );
      return {
        key: m.key,
        set: m.set,
        cost: m.cost,
        mode: 'group',
        lease: size,
        keys: keys[i]!,
        policies: this.#policiesOf(m.set),
        args: encodeOp('group', m.cost, size),
        resolve,
      };
    });
    this.#batcher.add({ keys: keys[0]!, members: ops });
    return Promise.all(answers).then((all) => all.map((a) => a.results));
  }

  /** One operation in the next script call, or the outage policy's answer while the breaker is tripped. */
  #op(key: string, set: PolicySet, cost: number, mode: OpMode, lease: string | undefined): Promise<Answer> {
    if (this.#breaker.tripped) {
      return Promise.resolve({ results: this.#degrade(key, set, cost, mode, lease), granted: 0 });
    }
    return new Promise((resolve) => {
      const policies = this.#policiesOf(set);
      this.#batcher.add({
        key,
        set,
        cost,
        mode,
        lease,
        keys: encodeKeys(this.#prefix, key, set),
        policies,
        args: encodeOp(mode, cost, lease),
        resolve,
      });
    });
  }

  /** Deletes the identifier's state. Rejects if Redis cannot be reached within the timeout. */
  async reset(key: string, set: PolicySet): Promise<void> {
    this.#denied?.forget(key);
    await this.#fallback?.reset(key, set);
    const op = {
      keys: encodeKeys(this.#prefix, key, set),
      policies: this.#policiesOf(set),
      args: encodeOp('reset', 0, undefined),
    };
    const { keys, args } = encodeBatch([op], undefined);
    try {
      await this.#call(keys, args);
      this.#breaker.succeeded();
    } catch (error) {
      this.stats.failures++;
      this.#breaker.failed(error);
      throw error;
    }
  }

  /**
   * Gives back the units of quota leases still held and stops the background probe; from now on every
   * decision is the outage policy's. Resolves once what it gave back is in Redis or has failed (never
   * rejects): await it before closing the client, which is yours to close.
   */
  async close(): Promise<void> {
    // The give-backs are queued before the breaker stops: they still go to Redis, the decisions after do not.
    const returned = this.#leases?.close();
    this.#breaker.stop();
    await returned;
  }

  #policiesOf(set: PolicySet): readonly string[] {
    let args = this.#policies.get(set);
    if (args === undefined) {
      args = encodePolicies(set);
      this.#policies.set(set, args);
    }
    return args;
  }

  async #send(items: Item[]): Promise<void> {
    // Groups are rare beside single decisions: the batch is unrolled only when it holds one.
    const ops = items.some((item) => 'members' in item)
      ? items.flatMap((item) => ('members' in item ? item.members : [item]))
      : (items as Op[]);
    const { keys, args } = encodeBatch(ops, this.#clock?.now());
    this.stats.scripts++;
    let decoded: PolicyResult[][];
    const grants: number[] = [];
    try {
      const reply = await this.#call(keys, args);
      // A reply that cannot be read is a failure like any other: the outage policy answers, never a hang.
      decoded = decodeBatch(
        reply,
        ops.map((op) => op.set.policies.length),
        ops.map((op) => op.mode === 'lease'),
        grants,
      );
      this.stats.decisions += ops.length;
      this.#breaker.succeeded();
    } catch (error) {
      this.stats.failures++;
      this.#breaker.failed(error);
      for (const item of items) {
        if ('members' in item) {
          const results = this.#degradeGroup(item.members);
          item.members.forEach((op, i) => {
            op.resolve({ results: results[i]!, granted: 0 });
          });
        } else {
          item.resolve({
            results: this.#degrade(item.key, item.set, item.cost, item.mode, item.lease),
            granted: 0,
          });
        }
      }
      return;
    }
    ops.forEach((op, i) => {
      const results = decoded[i]!;
      if (this.#denied !== undefined && (op.mode === 'consume' || op.mode === 'lease'))
        this.#denied.remember(op.key, op.set, op.cost, results);
      op.resolve({ results, granted: grants[i] ?? 0 });
    });
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

  /** The outage policy's answer for a group: the fallback store decides it all or none too. */
  #degradeGroup(members: readonly GroupMember[]): (readonly PolicyResult[])[] {
    if (this.#outage !== 'fallback')
      return members.map((m) => this.#degrade(m.key, m.set, m.cost, 'consume', undefined));
    this.stats.degraded += members.length;
    this.#fallback ??= new MemoryStore({ clock: this.#local, maxKeys: 100_000 });
    return this.#fallback
      .applyGroup(members)
      .map((results) => results.map((r) => ({ ...r, outage: 'fallback' as const })));
  }

  /** The outage policy's answer, marked as such (a decision's `reason` then says `store-open`...). */
  #degrade(
    key: string,
    set: PolicySet,
    cost: number,
    opMode: OpMode,
    lease: string | undefined,
  ): readonly PolicyResult[] {
    this.stats.degraded++;
    // A lease asked for in an outage is a decision like any other; units given back are simply lost
    // (they were charged in Redis, not in the fallback).
    const mode: StoreMode =
      opMode === 'lease' || opMode === 'group'
        ? 'consume'
        : opMode === 'unlease' || opMode === 'reset'
          ? 'peek'
          : opMode;
    if (opMode === 'lease') lease = undefined;
    if (this.#outage === 'fallback') {
      this.#fallback ??= new MemoryStore({ clock: this.#local, maxKeys: 100_000 });
      return this.#fallback
        .applySync(key, set, cost, mode, lease)
        .map((r) => ({ ...r, outage: 'fallback' as const }));
    }
    const now = this.#local.now();
    if (this.#outage === 'open' || mode === 'refund') {
      return set.policies.map((p) => ({
        allowed: true,
        remaining: p.burst,
        resetAt: now,
        retryAfter: 0,
        resetAfter: 0,
        outage: this.#outage,
      }));
    }
    const wait = this.#probeInterval;
    return set.policies.map(() => ({
      allowed: false,
      remaining: 0,
      resetAt: now + wait,
      retryAfter: wait,
      resetAfter: wait,
      outage: 'closed' as const,
    }));
  }
}
