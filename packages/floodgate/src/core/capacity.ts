import { parseDuration } from './duration.js';
import { invalidOption, knownKeys } from './errors.js';

/**
 * How many requests a server can have in flight, learned from what its requests tell it. Each finished
 * request is a sample: how long it took, how many were in flight when it started, and whether it was
 * dropped (failed, timed out, or seen while the event loop was late). The answer is the new limit.
 * Pure: no clock, no timers; the shedder feeds it, with the time of each sample.
 */
export interface CapacityEstimator {
  /** The current limit, at least `minLimit`. */
  readonly limit: number;
  /**
   * `mayShrink` false: the sample may raise the limit or leave it, not lower it (a request admitted before
   * the last cut was slowed by the overload that cut already answered).
   */
  sample(latency: number, inflight: number, dropped: boolean, mayShrink?: boolean, now?: number): number;
}

export interface CapacityBounds {
  /** Where the limit starts. Default 20. */
  readonly initialLimit?: number;
  /** Never below. Default 2 (the lowest limit that keeps a slot for critical requests and one for the rest). */
  readonly minLimit?: number;
  /** Never above. Default 1000. */
  readonly maxLimit?: number;
}

export interface Gradient2Options extends CapacityBounds {
  /** How much of each new estimate is taken: low values move slowly. Default 0.2. */
  readonly smoothing?: number;
  /** Latency may grow to this multiple of the baseline before the limit shrinks. Default 1.2. */
  readonly tolerance?: number;
  /**
   * A baseline no request has come back to (within `tolerance`) for this long is measured again: the
   * server's latency without queueing has changed. Default `"1s"`.
   */
  readonly relearnAfter?: number | string;
}

export interface AimdOptions extends CapacityBounds {
  /** A drop multiplies the limit by this. Default 0.9. */
  readonly backoff?: number;
}

function bounds(options: CapacityBounds, prefix: string): { initial: number; min: number; max: number } {
  const int = (name: keyof CapacityBounds, fallback: number) => {
    const value = options[name] ?? fallback;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
      throw invalidOption(`${prefix}${name}`, 'a positive integer', value);
    }
    return value;
  };
  const max = int('maxLimit', 1000);
  const min = int('minLimit', Math.min(2, max));
  const initial = int('initialLimit', Math.min(max, Math.max(min, 20)));
  if (min > max) throw invalidOption(`${prefix}minLimit`, `at most maxLimit (${max})`, min);
  if (initial < min || initial > max) {
    throw invalidOption(`${prefix}initialLimit`, `between minLimit (${min}) and maxLimit (${max})`, initial);
  }
  return { initial, min, max };
}

function fraction(value: unknown, fallback: number, option: string, max = 1): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !(v > 0 && v <= max)) {
    throw invalidOption(option, `a number above 0 and at most ${max}`, v);
  }
  return v;
}

/**
 * Gradient2's rule, after Netflix's concurrency-limits: compare the latency of each request with a baseline
 * (the server's latency without queueing). While it stays within `tolerance` times the baseline the limit
 * grows by a queue allowance (the square root of the limit), smoothed; past it, the server is queueing, and
 * the limit moves toward the concurrency it actually ran without queueing (Little's law: requests in flight
 * times baseline over latency), at most halving per sample.
 *
 * The baseline is the lowest latency seen, but not forever. A minimum that no sample has come back to (within
 * `tolerance`) for `relearnAfter` is stale (a database that became slower for good); Netflix follows such a
 * new normal with a long-term average of every latency, which under a sustained overload becomes the
 * overloaded latency itself (the limit then stops shrinking: in our simulation a server that runs 20 at once
 * settled at 201). We re-measure instead, as Envoy's adaptive concurrency does: the limit drops to a few
 * slots until a few requests admitted then, with the queue drained, have finished; their lowest latency is the
 * new baseline, and the limit goes back to where it was. `resetBaseline()` starts that measurement at once.
 */
export class Gradient2 implements CapacityEstimator {
  #limit: number;
  #baseline = Number.POSITIVE_INFINITY;
  readonly #min: number;
  readonly #max: number;
  readonly #smoothing: number;
  readonly #tolerance: number;
  readonly #relearnAfter: number;
  /** When a sample last agreed with the baseline, and how many have disagreed since. */
  #confirmedAt: number | undefined;
  #disagreed = 0;
  /** Until the first sign of queueing: growing fast, as TCP's slow start. */
  #sizing = true;
  /** While re-measuring the baseline: since when, at how many slots, and what the measure has found. */
  #probe: { since: number | undefined; slots: number; found: number[] } | undefined;

  constructor(options: Gradient2Options = {}, prefix = '') {
    knownKeys(
      options,
      ['initialLimit', 'minLimit', 'maxLimit', 'smoothing', 'tolerance', 'relearnAfter'],
      prefix,
    );
    const { initial, min, max } = bounds(options, prefix);
    this.#limit = initial;
    this.#min = min;
    this.#max = max;
    this.#smoothing = fraction(options.smoothing, 0.2, `${prefix}smoothing`);
    const tolerance = options.tolerance ?? 1.2;
    if (typeof tolerance !== 'number' || !(tolerance >= 1 && tolerance <= 10)) {
      throw invalidOption(`${prefix}tolerance`, 'a number from 1 to 10', tolerance);
    }
    this.#tolerance = tolerance;
    this.#relearnAfter = parseDuration(options.relearnAfter ?? 1000, `${prefix}relearnAfter`);
  }

  get limit(): number {
    return this.#probe === undefined ? Math.floor(this.#limit) : this.#probe.slots;
  }

  /** The latency the limit is judged against: the lowest seen since it was last measured. */
  get baseline(): number {
    return this.#baseline;
  }

  /** Measures the baseline again, from the next few requests (after a change that makes every request dearer). */
  resetBaseline(now?: number): void {
    // Few enough slots that nothing queues on any server worth protecting; as many samples to measure on.
    const slots = Math.max(this.#min, Math.min(5, Math.floor(this.#limit)));
    this.#probe = { since: now, slots, found: [] };
  }

  sample(latency: number, inflight: number, dropped: boolean, mayShrink = true, now?: number): number {
    const observed = Math.max(latency, 1e-3);
    if (this.#probe !== undefined) return this.#measure(observed, inflight, dropped, now);
    if (!dropped) this.#baseline = Math.min(this.#baseline, observed);
    const limit = this.#limit;
    const queueing = dropped || observed > this.#tolerance * this.#baseline;
    if (now !== undefined && !dropped) this.#watchBaseline(queueing, now);
    let estimate: number;
    // A server using under half its limit says nothing about how far it could go, nor about where it would
    // queue: a slow request, even one past the objective, is then noise (a pause, a neighbour on the
    // machine) or a new normal, which `relearnAfter` finds; and cutting a limit nobody reaches sheds
    // nothing. (Netflix's "app limited" rule; of the whole slots: at a limit of 2.5 the default class may
    // hold 1, the other one stays for critical.)
    if (inflight * 2 < this.limit) return this.limit;
    if (!queueing) {
      // Room for a queue of the square root of the limit, per round trip (a limit's worth of samples): enough
      // to follow a server that can do more, not enough to outrun the cuts (one per round trip) into a queue.
      // Until the first sign of queueing, per sample: the limit finds the server's size fast.
      estimate = limit + (this.#sizing ? Math.sqrt(limit) : Math.sqrt(limit) / limit);
    } else {
      this.#sizing = false;
      // What ran without queueing (Little's law), never below half the limit: one outlier is not a collapse.
      const ran = dropped ? 0 : (inflight * this.#baseline) / observed;
      estimate = Math.max(limit / 2, Math.min(limit, ran));
    }
    const next = limit * (1 - this.#smoothing) + estimate * this.#smoothing;
    if (next < limit && !mayShrink) return this.limit;
    this.#limit = Math.max(this.#min, Math.min(this.#max, next));
    return this.limit;
  }

  /** A baseline that no sample has agreed with for `relearnAfter` (and a dozen samples) is measured again. */
  #watchBaseline(queueing: boolean, now: number): void {
    if (!queueing || this.#confirmedAt === undefined) {
      this.#confirmedAt = now;
      this.#disagreed = 0;
      return;
    }
    this.#disagreed++;
    if (this.#disagreed >= 12 && now - this.#confirmedAt >= this.#relearnAfter) this.resetBaseline(now);
  }

  /**
   * A sample while re-measuring: only a request admitted since, with no more in flight than the measure's
   * slots (the old queue drained), tells the latency without queueing.
   */
  #measure(observed: number, inflight: number, dropped: boolean, now: number | undefined): number {
    const probe = this.#probe!;
    if (probe.since === undefined) probe.since = now === undefined ? undefined : now - observed;
    const admittedSince = now === undefined || probe.since === undefined || now - observed >= probe.since;
    if (dropped || !admittedSince || inflight > probe.slots) return this.limit;
    probe.found.push(observed);
    // One fewer than the slots: the last one is critical's, which may never come.
    if (probe.found.length >= Math.max(1, probe.slots - 1)) {
      this.#baseline = Math.min(...probe.found);
      this.#probe = undefined;
      this.#confirmedAt = now;
      this.#disagreed = 0;
    }
    return this.limit;
  }
}

/**
 * Additive increase, multiplicative decrease, as TCP's congestion control: while the server is busy the
 * limit grows by one per round trip (a limit's worth of samples), and a drop (an error, or a request past
 * the latency objective) multiplies it by `backoff`, or by objective ÷ latency when that is lower (a
 * request four times over the objective says the limit was four times too high: one cut, not a dozen).
 * It reads no baseline, so requests of very different costs behind one limit do not confuse it; it lets a
 * queue form up to the objective, no further.
 */
export class Aimd implements CapacityEstimator {
  #limit: number;
  readonly #min: number;
  readonly #max: number;
  readonly #backoff: number;
  readonly #objective: number;

  /** `objective`: the latency past which a request counts as dropped (the shedder's `latencyObjective`). */
  constructor(options: AimdOptions = {}, prefix = '', objective = Number.POSITIVE_INFINITY) {
    knownKeys(options, ['initialLimit', 'minLimit', 'maxLimit', 'backoff'], prefix);
    const { initial, min, max } = bounds(options, prefix);
    this.#limit = initial;
    this.#min = min;
    this.#max = max;
    this.#backoff = fraction(options.backoff, 0.9, `${prefix}backoff`);
    if (this.#backoff >= 1)
      throw invalidOption(`${prefix}backoff`, 'a number above 0 and below 1', this.#backoff);
    this.#objective = objective;
  }

  get limit(): number {
    return Math.floor(this.#limit);
  }

  sample(latency: number, inflight: number, dropped: boolean, mayShrink = true): number {
    if (dropped) {
      if (!mayShrink) return this.limit;
      const over = latency > this.#objective ? this.#objective / latency : 1;
      this.#limit = Math.max(this.#min, this.#limit * Math.min(this.#backoff, over));
    } else if (inflight * 2 >= this.limit) {
      this.#limit = Math.min(this.#max, this.#limit + 1 / Math.max(1, this.#limit));
    }
    return this.limit;
  }
}
