/** One second of a history: its start (ms since the epoch) and each value, null for a second not sampled. */
export type HistoryPoint<Name extends string> = { readonly at: number } & Readonly<
  Record<Name, number | null>
>;

/**
 * Sampled values (a shedder's limit, a store's counters) once a second for the last `seconds`, in a ring
 * allocated once; a second sampled twice keeps the later sample.
 */
export class History<Name extends string> {
  readonly names: readonly Name[];
  readonly seconds: number;
  readonly #values: Float64Array;
  /** The second each row was written for, so a row from more than a ring ago reads as unsampled. */
  readonly #written: Float64Array;

  constructor(names: readonly Name[], seconds = 900) {
    this.names = names;
    this.seconds = seconds;
    this.#values = new Float64Array(seconds * names.length);
    this.#written = new Float64Array(seconds).fill(Number.NaN);
  }

  record(now: number, values: readonly number[]): void {
    const second = Math.floor(now / 1000);
    const row = ((second % this.seconds) + this.seconds) % this.seconds;
    this.#written[row] = second;
    for (let i = 0; i < this.names.length; i++)
      this.#values[row * this.names.length + i] = values[i] ?? Number.NaN;
  }

  /** The last `last` seconds up to `now`, oldest first. */
  points(now: number, last = this.seconds): HistoryPoint<Name>[] {
    const newest = Math.floor(now / 1000);
    const n = Math.min(Math.max(0, Math.floor(last)), this.seconds);
    const out: HistoryPoint<Name>[] = [];
    for (let s = newest - n + 1; s <= newest; s++) {
      const row = ((s % this.seconds) + this.seconds) % this.seconds;
      const live = this.#written[row] === s;
      const point: Record<string, number | null> = { at: s * 1000 };
      this.names.forEach((name, i) => {
        const v = this.#values[row * this.names.length + i]!;
        point[name] = live && Number.isFinite(v) ? v : null;
      });
      out.push(point as HistoryPoint<Name>);
    }
    return out;
  }
}

/** Counters sampled as running totals, as the increase over each second (null where a neighbour is missing). */
export function perSecond<Name extends string>(
  points: readonly HistoryPoint<Name>[],
  names: readonly Name[],
) {
  return points.slice(1).map((p, i) => {
    const before = points[i]!;
    const out: Record<string, number | null> = { at: p.at };
    for (const name of names) {
      const a = before[name];
      const b = p[name];
      out[name] = a === null || b === null ? null : Math.max(0, b - a);
    }
    return out as HistoryPoint<Name>;
  });
}
