import type { Priority, Shedder } from '../../src/limiter/shedder.js';

/**
 * A server of fixed parallelism on a controlled clock, for the shedder to protect: `parallel` requests are
 * served at once, each taking `service` ms; the rest wait in a FIFO queue (a database's connection pool).
 * Requests arrive open loop, evenly spaced at `rate` per second, whatever happened to the earlier ones, and
 * each first asks the shedder for a slot. Everything is deterministic: events run in time order and
 * nothing sleeps.
 */
export class QueueServer {
  /** Time, ms. */
  t = 0;
  readonly clock = { now: () => this.t };
  /** Each request's service time, ms (change it to make the database slower or faster). */
  service: number;
  /** Arrivals per second. */
  rate: number;
  priority: Priority = 'default';
  #busy = 0;
  readonly #queue: { arrived: number; release: (outcome?: 'ok') => void }[] = [];
  /** Completions, by time (a binary heap would be faster; a few hundred entries need none). */
  readonly #completions: { at: number; arrived: number; release: (outcome?: 'ok') => void }[] = [];
  #nextArrival = 0;
  shedder!: Shedder;
  readonly parallel: number;

  constructor(parallel: number, service: number, rate: number) {
    this.parallel = parallel;
    this.service = service;
    this.rate = rate;
  }

  /** Requests per second it can serve. */
  get capacity(): number {
    return (this.parallel * 1000) / this.service;
  }

  /**
   * Runs for `ms`: what happened meanwhile (`goodput` counts completions within `objective` ms of arrival,
   * per second), and the limit at the end of every `every` ms.
   */
  run(ms: number, objective = Number.POSITIVE_INFINITY, every = 100) {
    const end = this.t + ms;
    const out = { served: 0, good: 0, shed: 0, latencies: [] as number[], limits: [] as number[] };
    let nextTick = this.t + every;
    for (;;) {
      const completion = this.#completions[0];
      const at = Math.min(completion?.at ?? Number.POSITIVE_INFINITY, this.#nextArrival, nextTick);
      if (at > end) break;
      this.t = at;
      if (at === nextTick) {
        out.limits.push(this.shedder.limit);
        nextTick += every;
      } else if (completion !== undefined && at === completion.at) {
        this.#completions.shift();
        this.#busy--;
        completion.release();
        const latency = this.t - completion.arrived;
        out.served++;
        out.latencies.push(latency);
        if (latency <= objective) out.good++;
        this.#start();
      } else {
        this.#nextArrival += 1000 / this.rate;
        const permit = this.shedder.acquire(this.priority);
        if (permit === undefined) out.shed++;
        else {
          this.#queue.push({ arrived: this.t, release: (o) => permit.release(o) });
          this.#start();
        }
      }
    }
    this.t = end;
    const seconds = ms / 1000;
    const sorted = [...out.latencies].sort((a, b) => a - b);
    return {
      ...out,
      goodput: out.good / seconds,
      p50: sorted[Math.floor(sorted.length * 0.5)] ?? 0,
      p99: sorted[Math.floor(sorted.length * 0.99)] ?? 0,
    };
  }

  #start(): void {
    while (this.#busy < this.parallel && this.#queue.length > 0) {
      const request = this.#queue.shift()!;
      this.#busy++;
      const at = this.t + this.service;
      let i = this.#completions.length;
      while (i > 0 && this.#completions[i - 1]!.at > at) i--;
      this.#completions.splice(i, 0, { at, arrived: request.arrived, release: request.release });
    }
  }
}
