/** What happened to a request, as the per-second series count it. */
export const OUTCOMES = ['allowed', 'limited', 'shed', 'rejected', 'degraded'] as const;
export type Outcome = (typeof OUTCOMES)[number];

/** Index of each outcome in a second's row. */
export const ALLOWED = 0;
export const LIMITED = 1;
export const SHED = 2;
export const REJECTED = 3;
export const DEGRADED = 4;

const WIDTH = OUTCOMES.length;

/** One second of a series: its start (ms since the epoch) and a count per outcome. */
export interface SeriesPoint {
  readonly at: number;
  readonly allowed: number;
  readonly limited: number;
  readonly shed: number;
  readonly rejected: number;
  readonly degraded: number;
}

/**
 * Counts per outcome per second for the last `seconds`, in a ring allocated once: counting is an index and
 * an increment; a second that passes clears its row as it is reused.
 */
export class SeriesRing {
  readonly seconds: number;
  readonly #rows: Uint32Array;
  /** The second (since the epoch) of the newest row; rows for later seconds are cleared when reached. */
  #newest = 0;

  constructor(seconds: number) {
    this.seconds = seconds;
    this.#rows = new Uint32Array(seconds * WIDTH);
  }

  count(now: number, outcome: number): void {
    const second = Math.floor(now / 1000);
    if (second !== this.#newest) this.#advance(second);
    this.#rows[(second % this.seconds) * WIDTH + outcome]!++;
  }

  /** The last `last` seconds up to `now`, oldest first; seconds without traffic count zeros. */
  points(now: number, last = this.seconds): SeriesPoint[] {
    const newest = Math.floor(now / 1000);
    const n = Math.min(Math.max(0, Math.floor(last)), this.seconds);
    const out: SeriesPoint[] = [];
    for (let s = newest - n + 1; s <= newest; s++) {
      // A row is current only if it was written for this second (not more than a ring ago, not in the future).
      const live = s <= this.#newest && s > this.#newest - this.seconds;
      const r = (((s % this.seconds) + this.seconds) % this.seconds) * WIDTH;
      const row = this.#rows;
      out.push({
        at: s * 1000,
        allowed: live ? row[r]! : 0,
        limited: live ? row[r + LIMITED]! : 0,
        shed: live ? row[r + SHED]! : 0,
        rejected: live ? row[r + REJECTED]! : 0,
        degraded: live ? row[r + DEGRADED]! : 0,
      });
    }
    return out;
  }

  #advance(second: number): void {
    // A clock that steps back writes into the row it finds (the counts stay, their second is approximate).
    if (second < this.#newest) return;
    const gap = Math.min(second - this.#newest, this.seconds);
    for (let i = 1; i <= gap; i++) {
      const r = ((second - gap + i) % this.seconds) * WIDTH;
      this.#rows.fill(0, r, r + WIDTH);
    }
    this.#newest = second;
  }
}
