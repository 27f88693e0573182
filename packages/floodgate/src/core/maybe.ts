/**
 * Values that are there at once on the memory store's path and promised on others. Each step of a pipeline
 * is written once over them: a promise is awaited, a value is used as it is (no microtask, no allocation
 * of a promise), so the synchronous path stays synchronous without a second copy of the steps.
 */
export type MaybePromise<T> = T | Promise<T>;

function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return value instanceof Promise;
}

/** `next(value)`, after the value is there. */
export function andThen<T, R>(value: MaybePromise<T>, next: (value: T) => MaybePromise<R>): MaybePromise<R> {
  return isPromise(value) ? value.then(next) : next(value);
}

/**
 * `next` of what `work` gives, or `fail` of what it throws or rejects with. An error thrown by `next` itself
 * is not `fail`'s: it propagates (or rejects).
 */
export function attempt<T, R>(
  work: () => MaybePromise<T>,
  next: (value: T) => MaybePromise<R>,
  fail: (error: unknown) => MaybePromise<R>,
): MaybePromise<R> {
  let value: MaybePromise<T>;
  try {
    value = work();
  } catch (error) {
    return fail(error);
  }
  return isPromise(value) ? value.then(next, fail) : next(value);
}

/** Hands the outcome of `work` to callbacks, whether it is there at once or later: for middleware `next`s. */
export function deliver<T>(
  work: () => MaybePromise<T>,
  onValue: (value: T) => void,
  onError: (error: unknown) => void,
): void {
  let value: MaybePromise<T>;
  try {
    value = work();
  } catch (error) {
    onError(error);
    return;
  }
  if (isPromise(value)) value.then(onValue, onError);
  else onValue(value);
}

/** What `work` gives, as a promise; a thrown error becomes a rejection. */
export function promised<T>(work: () => MaybePromise<T>): Promise<T> {
  try {
    return Promise.resolve(work());
  } catch (error) {
    return Promise.reject(error);
  }
}

/** Every value, as one: an array at once when none is promised, else a promise of it. */
export function allOf<T>(values: readonly MaybePromise<T>[]): MaybePromise<T[]> {
  for (const value of values) if (isPromise(value)) return Promise.all(values);
  return values as T[];
}
