import { FloodgateError } from '../../core/errors.js';
import type { Timers } from '../../core/timers.js';
import type { RedisAdapter } from './adapter.js';
import { Batcher } from './batcher.js';
import { Breaker } from './breaker.js';
import { type Answer, decodeBatch, encodeBatch, type Operation, targetsOf } from './codec.js';
import { SCRIPT } from './script.js';
import { hashSlot } from './slot.js';

/** What a runner is built from, resolved and validated once (see `resolveRedisOptions`). */
export interface RunnerOptions {
  readonly redis: RedisAdapter;
  /** Longest a call may take before it fails (ms). */
  readonly timeout: number;
  /** Most operations in one call. */
  readonly maxBatch: number;
  /** Failed calls in a row that trip the breaker (Infinity: never), and how often it then probes (ms). */
  readonly failures: number;
  readonly probeInterval: number;
  /** The time sent to the script; undefined: the script reads the server's `TIME`. */
  readonly clock: { now(): number } | undefined;
  /** This process's monotonic time (how long Redis was down). */
  readonly timers: Timers;
  readonly onError: ((error: Error) => void) | undefined;
  readonly onRecover: ((info: { readonly downFor: number }) => void) | undefined;
}

/** The runner's counters (probes are not counted). */
export interface RunnerStats {
  /** Script calls sent to Redis. */
  scripts: number;
  /** Operations on one identifier sent inside those calls (each member of a group counts). */
  decisions: number;
  /** Failed calls to Redis. */
  failures: number;
}

interface Pending {
  readonly op: Operation;
  resolve(answer: Answer): void;
  reject(error: unknown): void;
}

/**
 * Runs the script for everyone who needs Redis (the store's decisions, the quota grants, the breaker's
 * probe): batches operations into calls, encodes and decodes them, bounds each call by the timeout, runs
 * the script by hash and by source after NOSCRIPT, and keeps the breaker. It knows nothing of outage
 * policies: a failed call rejects each of its operations, and whoever asked decides what that means.
 */
export class ScriptRunner {
  readonly #o: RunnerOptions;
  readonly #stats: RunnerStats;
  readonly #breaker: Breaker;
  readonly #batcher: Batcher<Pending>;
  #outstanding = 0;

  constructor(options: RunnerOptions, stats: RunnerStats) {
    this.#o = options;
    this.#stats = stats;
    this.#breaker = new Breaker({
      failures: options.failures,
      probeInterval: options.probeInterval,
      clock: options.timers,
      probe: () => this.#call([], encodeBatch([], undefined).args),
      onError: options.onError,
      onRecover: options.onRecover,
    });
    const cluster = options.redis.cluster;
    this.#batcher = new Batcher<Pending>(
      (p) => (cluster ? hashSlot(targetsOf(p.op)[0]!.keys[0]!) : 0),
      options.maxBatch,
      (batch) => void this.#send(batch),
      () => this.#outstanding === 0,
    );
  }

  /** False while calls are not made (the breaker is tripped, or the runner stopped): answer without Redis. */
  get available(): boolean {
    return !this.#breaker.tripped;
  }

  /** False while Redis is failing (after a failed call, until one succeeds). */
  get healthy(): boolean {
    return this.#breaker.healthy;
  }

  /** One operation in the next call: its answer, or a rejection if the call failed. */
  run(op: Operation): Promise<Answer> {
    return new Promise((resolve, reject) => this.#batcher.add({ op, resolve, reject }));
  }

  /** Stops probing for good: from now on `available` is false. */
  stop(): void {
    this.#breaker.stop();
  }

  async #send(batch: Pending[]): Promise<void> {
    const ops = batch.map((p) => p.op);
    const { keys, args } = encodeBatch(ops, this.#o.clock?.now());
    this.#stats.scripts++;
    this.#outstanding++;
    let answers: Answer[];
    try {
      const reply = await this.#call(keys, args).finally(() => {
        // Before the answers go out: the decisions they lead to see no call outstanding, and go at once.
        this.#outstanding--;
      });
      // A reply that cannot be read is a failure like any other: never a hang.
      answers = decodeBatch(reply, ops);
    } catch (error) {
      this.#stats.failures++;
      this.#breaker.failed(error);
      for (const p of batch) p.reject(error);
      return;
    }
    for (const op of ops) this.#stats.decisions += op.kind === 'group' ? op.members.length : 1;
    this.#breaker.succeeded();
    batch.forEach((p, i) => {
      p.resolve(answers[i]!);
    });
  }

  /** One script call, by hash, then by source if the server's script cache was emptied; bounded by the timeout. */
  #call(keys: string[], args: string[]): Promise<unknown> {
    const { redis, timeout } = this.#o;
    const work = redis.evalsha(SCRIPT.sha, keys, args).catch((error: unknown) => {
      if (error instanceof Error && error.message.startsWith('NOSCRIPT')) {
        return redis.eval(SCRIPT.source, keys, args);
      }
      throw error;
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new FloodgateError(
            'ERR_FLOODGATE_STORE_TIMEOUT',
            `floodgate: Redis did not answer within ${timeout} ms`,
          ),
        );
      }, timeout);
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
}
