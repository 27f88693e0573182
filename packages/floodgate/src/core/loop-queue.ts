/**
 * How long requests wait for the event loop, and whether that wait is a standing queue: admission for a
 * server whose work is CPU. A synchronous handler never has more than one request in flight, so a limit on
 * requests in flight sees nothing; its queue forms in the sockets, before any middleware runs, and shows as
 * an event loop that runs late. Pure: the shedder ticks it on a timer and asks it about each request.
 *
 * The measure: a tick is due every `tick` ms. While the loop is busy the tick cannot run, so at any moment
 * `now - due` is how long the loop has been busy past the tick, at least: how long the request being handled
 * now has waited for its turn (to within a tick). It is read from the clock the shedder reads anyway, at
 * no cost.
 *
 * The rule, after CoDel (Nichols and Jacobson): a wait above `target` is a burst (a GC pause, a flurry of
 * arrivals) until it has lasted `interval` without a break, over ticks that ran late each time (Node runs
 * timers between batches of I/O, so under a CPU overload the tick runs between batches, each late); only then is it a standing queue, and only then
 * are requests refused: those that have already waited past `target` (the old ones, as CoDel drops at the
 * head). Requests that waited less go on, so the loop keeps working at its capacity and what it admits
 * waited little (two batches of `target`); the ones refused cost a few microseconds each. @fastify/under-pressure, by
 * contrast, compares the mean delay over a whole second with a threshold and refuses every request or none
 * for the next second. Envoy's admission control and Google SRE's client-side throttling refuse a random
 * share of requests, from a success rate: they need randomness because their signal is a rate; the wait
 * here is each request's own, so the refusal can pick exactly the requests that waited too long.
 */
export class LoopQueue {
  readonly target: number;
  readonly interval: number;
  readonly tick: number;
  /** When the pending tick is due, and when the last one ran (the loop's last turn). */
  #due: number;
  #ran: number;
  /** Whether a request has gone on since the last tick. */
  #served = false;
  /** Since when every tick has come later than `target` (undefined: the last one came on time). */
  #lateSince: number | undefined;

  constructor(target: number, interval: number, now: number) {
    this.target = target;
    this.interval = interval;
    // Half the target: a request's wait is known to within half of what it may wait.
    this.tick = Math.max(1, target / 2);
    this.#due = now + this.tick;
    this.#ran = now;
  }

  /**
   * The tick ran at `now`: notes how late it came. `busy`: whether the loop was at work for most of the
   * time since the last one (a tick late because the machine gave the process no CPU while its loop sat
   * idle is no queue of its own). Returns in how many ms the next one is due.
   */
  ticked(now: number, busy = true): number {
    const late = busy ? now - this.#due : 0;
    // A queue is said to stand past `target`, and to have drained only below half of it: the batches cut
    // at `target` keep the tick about that late, and must not pass for a drained queue.
    if (late > this.target) this.#lateSince ??= this.#due + this.target;
    else if (late < this.target / 2) this.#lateSince = undefined;
    this.#due = now + this.tick;
    this.#ran = now;
    this.#served = false;
    return this.tick;
  }

  /** How long a request handled at `now` has waited for the loop (at least). */
  wait(now: number): number {
    return Math.max(0, now - this.#due);
  }

  /**
   * Whether the loop has run later than `target` for `interval` without a break, as of `now`. Only ticks that
   * ran say so: one long stretch of work alone (a slow start, a large synchronous job) is no queue that
   * re-formed after the loop had its turn, and the requests it held are not refused for it.
   */
  standing(now: number): boolean {
    return this.#lateSince !== undefined && now - this.#lateSince >= this.interval;
  }

  /**
   * Whether a request handled at `now` may go on: refused only in a standing queue, and then if the loop has
   * worked for more than `target` since its last turn (`default`: the request waited at least that, plus
   * the batch before), or at all (`sheddable`); `critical` is never refused for the loop's sake. So each
   * batch of work is cut at `target`, and what is admitted waited at most about two batches. The first
   * `default` request of a batch always goes on: a process the machine left without CPU for a while still
   * serves one request per turn of its loop.
   */
  admit(now: number, priority: 'critical' | 'default' | 'sheddable'): boolean {
    if (priority !== 'critical' && this.standing(now)) {
      if (priority === 'sheddable') return false;
      if (this.#served && now - this.#ran > this.target) return false;
    }
    this.#served = true;
    return true;
  }
}
