import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks';
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
   * Watch the event loop: while its delay (p99 over each `interval`) is above `maxDelay`, the limit is cut
   * at every interval and may not grow; it may grow again after three intervals in a row below. `false`
   * (default) to not watch.
   */
  readonly eventLoop?: false | { readonly maxDelay?: number | string; readonly interval?: number | string };
  /** `Retry-After` of a shed request. Default `"1s"`. */
  readonly retryAfter?: number | string;
  /** Time source for latencies. Default `performance.now`-like system time. */
  readonly clock?: { now(): number };
}

/** Counts for metrics. */
export interface ShedderStats {
  admitted: number;
  shed: Record<Priority, number>;
  /** Requests whose class function returned something else, admitted as `default`. */
  unknownPriority: number;
}

/** A request let through: release it once, when it ends (however it ends). */
export interface Permit {
  readonly priority: Priority;
  /** `ok` (default) feeds its latency to the limit; `dropped` counts as overload; `ignore` frees the slot only. */
  release(outcome?: 'ok' | 'dropped' | 'ignore'): void;
}

const RECOVERY_INTERVALS = 3;

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
  };
  readonly retryAfter: number;
  #inflight = 0;
  readonly #estimator: CapacityEstimator;
  readonly #objective: number;
  readonly #shares: Record<Priority, number>;
  readonly #clock: { now(): number };
  readonly #loop: { histogram: IntervalHistogram; timer: NodeJS.Timeout; maxDelay: number } | undefined;
  #calmIntervals = RECOVERY_INTERVALS;
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
    knownKeys(options, ['limit', 'latencyObjective', 'shares', 'eventLoop', 'retryAfter', 'clock'], path);
    this.#estimator = estimatorOf(options.limit ?? 'gradient2', path);
    this.#objective =
      options.latencyObjective === undefined
        ? Number.POSITIVE_INFINITY
        : parseDuration(options.latencyObjective, `${path}latencyObjective`);
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
    const clock = options.clock ?? { now: () => performance.now() };
    if (typeof clock?.now !== 'function')
      throw invalidOption(`${path}clock`, 'an object with a now() method', clock, 'type');
    this.#clock = clock === systemClock ? { now: () => performance.now() } : clock;
    this.#loop = this.#watchLoop(options.eventLoop ?? false, path);
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

  /** Whether the event loop is late now (and the limit held from growing). */
  get overloaded(): boolean {
    return this.#calmIntervals < RECOVERY_INTERVALS;
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
    const limit = this.limit;
    const share = this.#shares[cls];
    // A class short of the whole limit never takes its last slot: at a limit of 4 or less, its share rounded
    // up would be all of it, and a critical health check would be shed exactly when overload cut that low.
    const room = share < 1 ? Math.min(Math.ceil(limit * share), limit - 1) : limit;
    if (this.#inflight >= room) {
      this.stats.shed[cls]++;
      return undefined;
    }
    this.#inflight++;
    this.stats.admitted++;
    const started = this.#clock.now();
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
        // While the event loop is late, a good sample may not grow the limit; and one overload cuts the
        // limit once, not once per request it slowed (those admitted before the cut say nothing new).
        if (!dropped && this.overloaded) return;
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
    if (this.#loop !== undefined) {
      clearInterval(this.#loop.timer);
      this.#loop.histogram.disable();
    }
  }

  /** One reading of the event loop's delay (ms, p99 over the interval): cuts fast, recovers slowly. */
  observeLoopDelay(delay: number, maxDelay: number): void {
    if (delay > maxDelay) {
      this.#calmIntervals = 0;
      this.#estimator.sample(delay, this.#inflight, true);
    } else if (this.#calmIntervals < RECOVERY_INTERVALS) {
      this.#calmIntervals++;
    }
  }

  #watchLoop(option: ShedderOptions['eventLoop'], path: string) {
    if (option === false) return undefined;
    if (typeof option !== 'object' || option === null) {
      throw invalidOption(`${path}eventLoop`, 'false or { maxDelay, interval }', option, 'type');
    }
    knownKeys(option, ['maxDelay', 'interval'], `${path}eventLoop.`);
    const maxDelay = parseDuration(option.maxDelay ?? 100, `${path}eventLoop.maxDelay`);
    const interval = parseDuration(option.interval ?? 500, `${path}eventLoop.interval`);
    const histogram = monitorEventLoopDelay({ resolution: 10 });
    histogram.enable();
    const timer = setInterval(() => {
      this.observeLoopDelay(histogram.percentile(99) / 1e6, maxDelay);
      histogram.reset();
    }, interval);
    timer.unref();
    return { histogram, timer, maxDelay };
  }
}

function estimatorOf(spec: NonNullable<ShedderOptions['limit']>, path: string): CapacityEstimator {
  const limit = `${path}limit`;
  if (spec === 'gradient2') return new Gradient2({}, `${limit}.`);
  if (spec === 'aimd') return new Aimd({}, `${limit}.`);
  if (typeof spec !== 'object' || spec === null) {
    throw invalidOption(limit, '"gradient2", "aimd" or { algorithm, ... }', spec, 'type');
  }
  const { algorithm, ...rest } = spec;
  if (algorithm === 'gradient2') return new Gradient2(rest, `${limit}.`);
  if (algorithm === 'aimd') return new Aimd(rest, `${limit}.`);
  throw invalidOption(`${limit}.algorithm`, 'one of "gradient2", "aimd"', algorithm);
}
