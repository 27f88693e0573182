/**
 * Time and timers moved by hand, for a RedisStore's `clock` and `timers` at once: `advance` fires every
 * timer that falls due, in order, at its own time. Nothing sleeps.
 */
export class ManualTimers {
  t: number;
  #next = 0;
  readonly #due = new Map<number, { at: number; callback: () => void }>();

  constructor(start = 1_700_000_000_000) {
    this.t = start;
  }

  now = (): number => this.t;

  setTimeout = (callback: () => void, ms: number): unknown => {
    const id = ++this.#next;
    this.#due.set(id, { at: this.t + Math.max(0, ms), callback });
    return id;
  };

  clearTimeout = (handle: unknown): void => {
    this.#due.delete(handle as number);
  };

  /** Timers armed and not yet fired or cleared. */
  get pending(): number {
    return this.#due.size;
  }

  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let first: [number, { at: number; callback: () => void }] | undefined;
      for (const entry of this.#due)
        if (entry[1].at <= end && (!first || entry[1].at < first[1].at)) first = entry;
      if (first === undefined) break;
      this.#due.delete(first[0]);
      this.t = Math.max(this.t, first[1].at);
      first[1].callback();
    }
    this.t = end;
  }
}
