/** When calls to Redis keep failing, stop making them for a while and probe in the background instead. */
export interface BreakerOptions {
  /** Failed calls in a row that trip the breaker (Infinity: never). */
  readonly failures: number;
  /** How often a tripped breaker probes. */
  readonly probeInterval: number;
  readonly clock: { now(): number };
  /** One call to Redis, made by a probe. */
  readonly probe: () => Promise<unknown>;
  readonly onError: ((error: Error) => void) | undefined;
  readonly onRecover: ((info: { readonly downFor: number }) => void) | undefined;
}

/**
 * A circuit breaker. After `failures` failed calls in a row it trips: decisions stop waiting for Redis and
 * are answered by the outage policy at once, while a probe every `probeInterval` asks Redis again; the
 * first answer resets it. Listeners are told of each failure and of the recovery, and cannot break anything.
 */
export class Breaker {
  readonly #o: BreakerOptions;
  #failuresInRow = 0;
  #downSince: number | undefined;
  #tripped = false;
  #stopped = false;
  #probe: ReturnType<typeof setTimeout> | undefined;

  constructor(options: BreakerOptions) {
    this.#o = options;
  }

  /** False while Redis is failing (after a failed call, until one succeeds). */
  get healthy(): boolean {
    return this.#downSince === undefined;
  }

  /** True while calls are not being made (tripped, or stopped for good). */
  get tripped(): boolean {
    return this.#tripped || this.#stopped;
  }

  succeeded(): void {
    this.#failuresInRow = 0;
    if (this.#downSince === undefined) return;
    const downFor = this.#o.clock.now() - this.#downSince;
    this.#downSince = undefined;
    this.#tripped = false;
    clearTimeout(this.#probe);
    this.#probe = undefined;
    try {
      this.#o.onRecover?.({ downFor });
    } catch {
      // A listener's failure must not turn into a failed decision.
    }
  }

  failed(cause: unknown): void {
    const error = cause instanceof Error ? cause : new Error(String(cause));
    this.#failuresInRow++;
    this.#downSince ??= this.#o.clock.now();
    try {
      this.#o.onError?.(error);
    } catch {
      // As above: listeners cannot break decisions.
    }
    if (!this.#tripped && this.#failuresInRow >= this.#o.failures) {
      this.#tripped = true;
      this.#scheduleProbe();
    }
  }

  /** Stops probing for good; every decision from now on is the outage policy's. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#probe);
    this.#probe = undefined;
  }

  #scheduleProbe(): void {
    if (this.#stopped) return;
    this.#probe = setTimeout(() => {
      this.#o.probe().then(
        () => this.succeeded(),
        (error: unknown) => {
          this.failed(error);
          this.#scheduleProbe();
        },
      );
    }, this.#o.probeInterval);
    this.#probe.unref();
  }
}
