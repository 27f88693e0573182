/**
 * A process's own time, for what it times locally (how long a quota lease lives, how long a refusal is
 * remembered, how late the event loop runs) and the timers that end those: monotonic, so a wall clock stepped back or forward (NTP, a
 * VM resumed) cannot stretch a lease past the window Redis charged it in. Tests pass one they move by hand.
 */
export interface Timers {
  /** Milliseconds on a clock that never steps back (any origin). */
  now(): number;
  /** Calls `callback` once, `ms` from now; must not keep the process alive on its own. */
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** `performance.now()` and Node's timers, unref'd. */
export const monotonicTimers: Timers = {
  now: () => performance.now(),
  setTimeout(callback, ms) {
    const timer = setTimeout(callback, ms);
    timer.unref();
    return timer;
  },
  clearTimeout(handle) {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

/** A clock's time with Node's timers: the time a simulation moves (a store given a `clock` and no `timers`). */
export function timersOn(clock: { now(): number }): Timers {
  return { ...monotonicTimers, now: () => clock.now() };
}
