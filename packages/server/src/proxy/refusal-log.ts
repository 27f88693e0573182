import type { Logger } from 'pino';

/** How often refusals are summed up in the log. */
const REFUSAL_LOG_EVERY = 10_000;

/**
 * Refusals in the log, real or shadow (`message` says which), or JWT key failures: the first of each group
 * (a rule and a decision, or a rule and a reason) at once, then one line per group every 10 s with the
 * count (the field `counted`) and the last one's details. A line per refused request would let a flood
 * fill the disk and slow the proxy down exactly when it is needed; the exact counts are in the metrics.
 */
export function refusalLog(log: Logger, message: string, counted = 'refused') {
  const pending = new Map<string, { count: number; last: Record<string, unknown> }>();
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    for (const { count, last } of pending.values()) {
      if (count > 0) log.info({ ...last, [counted]: count, seconds: REFUSAL_LOG_EVERY / 1000 }, message);
    }
    pending.clear();
  };
  return {
    note(group: string, fields: Record<string, unknown>) {
      const entry = pending.get(group);
      if (entry === undefined) {
        log.info({ ...fields, [counted]: 1 }, message);
        pending.set(group, { count: 0, last: fields });
        timer ??= setTimeout(flush, REFUSAL_LOG_EVERY).unref();
        return;
      }
      entry.count++;
      entry.last = fields;
    },
    flush,
  };
}

export type RefusalLog = ReturnType<typeof refusalLog>;
