import {
  Aimd,
  type AimdOptions,
  type CapacityEstimator,
  Gradient2,
  type Gradient2Options,
} from '../core/capacity.js';
import { systemClock } from '../core/clock.js';
import { parseDuration } from '../core/duration.js';
import { invalidOption, knownKeys } from '../core/errors.js';
import { LoopQueue } from '../core/loop-queue.js';
import { monotonicTimers, type Timers } from '../core/timers.js';

/** How much a request matters when the server is short of capacity: the lower classes are shed first. */
export type Priority = 'critical' | 'default' | 'sheddable';
export const PRIORITIES: readonly Priority[] = ['critical', 'default', 'sheddable'];

export interface ShedderOptions {
  /**
   * How the limit is learned: `"gradient2"` (default) from latency against the latency without queueing, `"aimd"`
   * from drops (errors, requests over `latencyObjective`, a late event loop). Options of either go in
   * `{ algorithm, ...options }`.
   */
  readonly limit?:
    | 'gradient2'
    | 'aimd'
    | ({ readonly algorithm: 'gradient2' } & Gradient2Options)
    | ({ readonly algorithm: 'aimd' } & AimdOptions);
  /** A request slower than this counts as dropped. Default: none (only errors do). */
  readonly latencyObjective?: number | string;
  /**
   * The share of the limit each class may fill; `critical` may fill all of it, so the rest stays reserved
   * for it (at least one slot, at any limit, for a share below 1). Default `{ default: 0.8, sheddable: 0.5 }`.
   */
  readonly shares?: { readonly default?: number; readonly sheddable?: number };
  /**
   * Admission by the event loop's queue, for work that is CPU (a synchronous handler never has two requests
   * in flight, so the limit alone sees nothing): while requests have waited for the loop longer than
   * `target` for `interval` without a break, those that waited past `target` are refused (sheddable ones
   * whatever they waited; critical ones never). Default `{ target: "10ms", interval: "100ms" }` (`false`
   * with a `clock` but no `timers`: a simulated time nothing ticks); `false` to not watch.
   */
  readonly eventLoop?: false | { readonly target?: number | string; readonly interval?: number | string };
  /** `Retry-After` of a shed request. Default `"1s"`. */
  readonly retryAfter?: number | string;
  /** Time source for latencies. Default `performance.now`-like system time. */
  readonly clock?: { now(): number };
  /** Time and timers for the event loop's watch (and latencies, without `clock`). Default Node's, unref'd. */
  readonly timers?: Timers;
}

/** Counts for metrics. */
export interface ShedderStats {
  admitted: number;
  shed: Record<Priority, number>;
  /** Requests whose class function returned something else, admitted as `default`. */
  unknownPriority: number;
  /** Of the shed, those refused for having waited for a late event loop (`eventLoop`). */
  waitedTooLong: number;
}

/** A request let through: release it once, when it ends (however it ends). */
export interface Permit {
  readonly priority: Priority;
  /** `ok` (default) feeds its latency to the limit; `dropped` counts as overload; `ignore` frees the slot only. */
  release(outcome?: 'ok' | 'dropped' | 'ignore'): void;
}

/**
 * An adaptive concurrency limit with priorities: protects the server itself when per-client limits do not
 * (many clients each under their limit, or a slow dependency). Every admitted request holds a slot until it
 * is released; the limit on slots is learned from the latencies of released requests, so it settles near
 * what the server can run at once without queueing. Past the limit a request is refused at once (the HTTP
 * guard answers 503 with `Retry-After`). Classes fill at most their share of the limit: under pressure
 * `sheddable` requests go first, then `default`, and a share stays for `critical`.
 */
export class Shedder {
  readonly stats: ShedderStats = {
    admitted: 0,
    shed: { critical: 0, default: 0, sheddable: 0 },
    unknownPriority: 0,
    waitedTooLong: 0,
  };
  readonly retryAfter: number;
  #inflight = 0;
  readonly #estimator: CapacityEstimator;
  readonly #objective: number;
  readonly #shares: Record<Priority, number>;
  readonly #clock: { now(): number };
  readonly #timers: Timers;
  readonly #loop: LoopQueue | undefined;
  #tick: unknown;
  /** When the limit last went down: a drop of a request admitted before then is old news. */
  #cutAt = Number.NEGATIVE_INFINITY;

  /**
   * `path`: where these options sit in a larger configuration (`"shed."` under the HTTP middleware), so an
   * error names the option as its user wrote it (`shed.limit.backoff`).
   */
  constructor(options: ShedderOptions = {}, path = '') {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption(path === '' ? 'shedder options' : path.slice(0, -1), 'an object', options, 'type');
    }
    knownKeys(
      options,
      ['limit', 'latencyObjective', 'shares', 'eventLoop', 'retryAfter', 'clock', 'timers'],
      path,
    );
    this.#objective =
      options.latencyObjective === undefined
        ? Number.POSITIVE_INFINITY
        : parseDuration(options.latencyObjective, `${path}latencyObjective`);
    this.#estimator = estimatorOf(options.limit ?? 'gradient2', path, this.#objective);
    const shares = options.shares ?? {};
    if (typeof shares !== 'object' || shares === null)
      throw invalidOption(`${path}shares`, 'an object', shares, 'type');
    knownKeys(shares, ['default', 'sheddable'], `${path}shares.`);
    const share = (name: 'default' | 'sheddable', fallback: number) => {
      const v = shares[name] ?? fallback;
      if (typeof v !== 'number' || !(v > 0 && v <= 1)) {
        throw invalidOption(`${path}shares.${name}`, 'a number above 0 and at most 1', v);
      }
      return v;
    };
    this.#shares = { critical: 1, default: share('default', 0.8), sheddable: share('sheddable', 0.5) };
    if (this.#shares.sheddable > this.#shares.default) {
      throw invalidOption(
        `${path}shares.sheddable`,
        `at most shares.default (${this.#shares.default})`,
        this.#shares.sheddable,
      );
    }
    this.retryAfter = parseDuration(options.retryAfter ?? 1000, `${path}retryAfter`);
    const timers = options.timers ?? monotonicTimers;
    for (const method of ['now', 'setTimeout', 'clearTimeout'] as const) {
      if (typeof timers?.[method] !== 'function')
        throw invalidOption(
          `${path}timers`,
          'an object with now(), setTimeout() and clearTimeout()',
          timers,
          'type',
        );
    }
    this.#timers = timers;
    const clock = options.clock ?? timers;
    if (typeof clock?.now !== 'function')
      throw invalidOption(`${path}clock`, 'an object with a now() method', clock, 'type');
    this.#clock = clock === systemClock ? monotonicTimers : clock;
    // A `clock` of its own without `timers` is a simulated time that no timer ticks with: no watch then, unless
    // asked for (on Node's timers and time).
    const watch = options.clock !== undefined && options.timers === undefined ? false : {};
    this.#loop = this.#watchLoop(options.eventLoop ?? watch, path, options);
  }

  /** The current limit on requests in flight. */
  get limit(): number {
    return this.#estimator.limit;
  }

  /** The latency (ms) the limit is judged against, under Gradient2 once measured; AIMD keeps none. */
  get baseline(): number | undefined {
    if (!(this.#estimator instanceof Gradient2)) return undefined;
    const baseline = this.#estimator.baseline;
    return Number.isFinite(baseline) ? baseline : undefined;
  }

  get inflight(): number {
    return this.#inflight;
  }

  /** Whether requests are waiting for a late event loop now (a standing queue: see `eventLoop`). */
  get overloaded(): boolean {
    return this.#loop?.standing(this.#timers.now()) ?? false;
  }

  /**
   * A slot for a request of this class, or `undefined` when it is shed. A priority that is not one of the
   * three is taken as `default` (and counted in `stats.unknownPriority`).
   */
  acquire(priority: Priority = 'default'): Permit | undefined {
    let cls = priority;
    if (!PRIORITIES.includes(cls)) {
      this.stats.unknownPriority++;
      cls = 'default';
    }
    const started = this.#clock.now();
    const loop = this.#loop;
    if (loop !== undefined && !loop.admit(this.#clock === this.#timers ? started : this.#timers.now(), cls)) {
      this.stats.shed[cls]++;
      this.stats.waitedTooLong++;
      return undefined;
    }
    const limit = this.limit;
    const share = this.#shares[cls];
    // A class short of the whole limit never takes its last slot: at a limit of 4 or less, its share rounded
    // up would be all of it, and a critical health check would be shed exactly when overload cut that low.
    const room = share < 1 ? Math.min(Math.ceil(limit * share), limit - 1) : limit;
    // Nothing in flight: one request of any class is let in, as it cannot queue behind anything; else a limit
    // cut to its floor, with its last slot kept for critical, would never see a request again to grow on.
    if (this.#inflight >= room && this.#inflight > 0) {
      this.stats.shed[cls]++;
      return undefined;
    }
    this.#inflight++;
    this.stats.admitted++;
    const inflight = this.#inflight;
    let released = false;
    return {
      priority: cls,
      release: (outcome = 'ok') => {
        if (released) return;
        released = true;
        this.#inflight--;
        if (outcome === 'ignore') return;
        const now = this.#clock.now();
        const latency = now - started;
        const dropped = outcome === 'dropped' || latency > this.#objective;
        // One overload cuts the limit once, not once per request it slowed (those admitted before the cut
        // say nothing new).
        const before = this.#estimator.limit;
        if (this.#estimator.sample(latency, inflight, dropped, started >= this.#cutAt, now) < before) {
          this.#cutAt = now;
        }
      },
    };
  }

  /**
   * Forgets the latency the limit is judged against and measures it again from the next few requests (the
   * limit holds a few slots meanwhile): after a change that makes every request dearer for good, such as a
   * deploy or a database moved. Gradient2 finds such a change itself within `relearnAfter`; AIMD keeps no
   * baseline, so this does nothing to it.
   */
  resetBaseline(): void {
    if (this.#estimator instanceof Gradient2) this.#estimator.resetBaseline(this.#clock.now());
  }

  /** Stops watching the event loop. */
  close(): void {
    if (this.#tick !== undefined) this.#timers.clearTimeout(this.#tick);
    this.#tick = undefined;
  }

  #watchLoop(
    option: ShedderOptions['eventLoop'],
    path: string,
    options: ShedderOptions,
  ): LoopQueue | undefined {
    if (option === false) return undefined;
    if (typeof option !== 'object' || option === null) {
      throw invalidOption(`${path}eventLoop`, 'false or { target, interval }', option, 'type');
    }
    knownKeys(option, ['target', 'interval'], `${path}eventLoop.`);
    const target = parseDuration(option.target ?? 10, `${path}eventLoop.target`);
    const interval = parseDuration(option.interval ?? 100, `${path}eventLoop.interval`);
    const loop = new LoopQueue(target, interval, this.#timers.now());
    // Whether the loop worked through most of the last stretch, by Node's own accounting of its idle time:
    // on a machine short of CPU, a loop woken late from idle is late for others' sake. Timers of the
    // caller's own are a simulation whose stretches are all work.
    const busy = options.timers === undefined ? loopWorked() : () => true;
    const tick = () => {
      this.#tick = this.#timers.setTimeout(tick, loop.ticked(this.#timers.now(), busy()));
    };
    this.#tick = this.#timers.setTimeout(tick, loop.tick);
    return loop;
  }
}

/** A function that says whether the event loop was at work for at least half the time since its last call. */
function loopWorked(): () => boolean {
  let last = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const busy = performance.eventLoopUtilization(now, last).utilization >= 0.5;
    last = now;
    return busy;
  };
}

function estimatorOf(
  spec: NonNullable<ShedderOptions['limit']>,
  path: string,
  objective: number,
): CapacityEstimator {
  const limit = `${path}limit`;
  if (spec === 'gradient2') return new Gradient2({}, `${limit}.`);
  if (spec === 'aimd') return new Aimd({}, `${limit}.`, objective);
  if (typeof spec !== 'object' || spec === null) {
    throw invalidOption(limit, '"gradient2", "aimd" or { algorithm, ... }', spec, 'type');
  }
  const { algorithm, ...rest } = spec;
  if (algorithm === 'gradient2') return new Gradient2(rest, `${limit}.`);
  if (algorithm === 'aimd') return new Aimd(rest, `${limit}.`, objective);
  throw invalidOption(`${limit}.algorithm`, 'one of "gradient2", "aimd"', algorithm);
}
