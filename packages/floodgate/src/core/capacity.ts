import { invalidOption, knownKeys } from './errors.js';

/**
 * How many requests a server can have in flight, learned from what its requests tell it. Each finished
 * request is a sample: how long it took, how many were in flight when it started, and whether it was
 * dropped (failed, timed out, or seen while the event loop was late). The answer is the new limit.
 * Pure: no clock, no timers; the shedder feeds it.
 */
export interface CapacityEstimator {
  /** The current limit, at least `minLimit`. */
  readonly limit: number;
  /**
   * `mayShrink` false: the sample may raise the limit or leave it, not lower it (a request admitted before
   * the last cut was slowed by the overload that cut already answered).
   */
  sample(latency: number, inflight: number, dropped: boolean, mayShrink?: boolean): number;
}

export interface CapacityBounds {
  /** Where the limit starts. Default 20. */
  readonly initialLimit?: number;
  /** Never below. Default 1. */
  readonly minLimit?: number;
  /** Never above. Default 1000. */
  readonly maxLimit?: number;
}

export interface Gradient2Options extends CapacityBounds {
  /** How much of each new estimate is taken: low values move slowly. Default 0.2. */
  readonly smoothing?: number;
  /** Latency may grow to this multiple of the baseline before the limit shrinks. Default 1.5. */
  readonly tolerance?: number;
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
  const min = int('minLimit', 1);
  const max = int('maxLimit', 1000);
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
 * Gradient2's rule, after Netflix's concurrency-limits: compare the latency of each request with a baseline;
 * while it stays within `tolerance` times the baseline the limit grows by a queue allowance (the square root
 * of the limit), and past it the limit shrinks in proportion (at most by half per sample), smoothed.
 *
 * Where we depart: the baseline is the lowest latency seen (as Gradient and Vegas keep a no-load latency),
 * not a long-term average. Under a sustained overload an average becomes the overloaded latency and the
 * limit stops shrinking; in our simulation a server with a true capacity of 20 settled at 201, and a
 * minimum over a sliding window forgot the no-load latency the same way once a window held only loaded
 * samples. `resetBaseline()` forgets it on purpose, after a change that makes every request dearer.
 */
export class Gradient2 implements CapacityEstimator {
  #limit: number;
  #baseline = Number.POSITIVE_INFINITY;
  readonly #min: number;
  readonly #max: number;
  readonly #smoothing: number;
  readonly #tolerance: number;

  constructor(options: Gradient2Options = {}, prefix = '') {
    knownKeys(options, ['initialLimit', 'minLimit', 'maxLimit', 'smoothing', 'tolerance'], prefix);
    const { initial, min, max } = bounds(options, prefix);
    this.#limit = initial;
    this.#min = min;
    this.#max = max;
    this.#smoothing = fraction(options.smoothing, 0.2, `${prefix}smoothing`);
    const tolerance = options.tolerance ?? 1.5;
    if (typeof tolerance !== 'number' || !(tolerance >= 1 && tolerance <= 10)) {
      throw invalidOption(`${prefix}tolerance`, 'a number from 1 to 10', tolerance);
    }
    this.#tolerance = tolerance;
  }

  get limit(): number {
    return Math.floor(this.#limit);
  }

  /** The latency the limit is judged against: the lowest seen. */
  get baseline(): number {
    return this.#baseline;
  }

  resetBaseline(): void {
    this.#baseline = Number.POSITIVE_INFINITY;
  }

  sample(latency: number, inflight: number, dropped: boolean, mayShrink = true): number {
    const observed = Math.max(latency, 1e-3);
    if (!dropped) this.#baseline = Math.min(this.#baseline, observed);
    const gradient = dropped
      ? 0.5
      : Math.max(0.5, Math.min(1, (this.#tolerance * this.#baseline) / observed));
    // A server using under half its limit says nothing about how far it could go: no growth on that.
    if (gradient === 1 && inflight < this.#limit / 2) return this.limit;
    // Room for a queue of the square root of the limit: enough to keep a server busy, not enough to hurt.
    const estimate = this.#limit * gradient + (gradient === 1 ? Math.sqrt(this.#limit) : 0);
    const next = this.#limit * (1 - this.#smoothing) + estimate * this.#smoothing;
    if (next < this.#limit && !mayShrink) return this.limit;
    this.#limit = Math.max(this.#min, Math.min(this.#max, next));
    return this.limit;
  }
}

/** Additive increase, multiplicative decrease: one more per sample while busy, times `backoff` on a drop. */
export class Aimd implements CapacityEstimator {
  #limit: number;
  readonly #min: number;
  readonly #max: number;
  readonly #backoff: number;

  constructor(options: AimdOptions = {}, prefix = '') {
    knownKeys(options, ['initialLimit', 'minLimit', 'maxLimit', 'backoff'], prefix);
    const { initial, min, max } = bounds(options, prefix);
    this.#limit = initial;
    this.#min = min;
    this.#max = max;
    this.#backoff = fraction(options.backoff, 0.9, `${prefix}backoff`);
    if (this.#backoff >= 1)
      throw invalidOption(`${prefix}backoff`, 'a number above 0 and below 1', this.#backoff);
  }

  get limit(): number {
    return Math.floor(this.#limit);
  }

  sample(_latency: number, inflight: number, dropped: boolean, mayShrink = true): number {
    if (dropped) {
      if (mayShrink) this.#limit = Math.max(this.#min, this.#limit * this.#backoff);
    } else if (inflight * 2 >= this.#limit) this.#limit = Math.min(this.#max, this.#limit + 1);
    return this.limit;
  }
}
