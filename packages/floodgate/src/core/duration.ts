import { invalidOption } from './errors.js';

/** A duration: integer milliseconds, or a string such as `"500ms"`, `"10s"`, `"1.5m"`, `"1h"`, `"1d"`. */
export type Duration = number | `${number}${DurationUnit}` | `${number} ${DurationUnit}`;
export type DurationUnit = 'ms' | 's' | 'm' | 'h' | 'd';

const UNIT_MS: Record<DurationUnit, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PATTERN = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/;

/** Parses a duration to a positive integer number of milliseconds, or throws naming `option`. */
export function parseDuration(value: unknown, option: string): number {
  const expected = 'a positive integer of milliseconds or a string like "10s", "500ms", "1m", "1h"';
  let ms: number;
  if (typeof value === 'number') {
    ms = value;
  } else if (typeof value === 'string') {
    const match = PATTERN.exec(value.trim());
    if (!match) throw invalidOption(option, expected, value);
    ms = Number(match[1]) * UNIT_MS[match[2] as DurationUnit];
  } else {
    throw invalidOption(option, expected, value, 'type');
  }
  if (!Number.isSafeInteger(ms) || ms < 1) throw invalidOption(option, expected, value);
  return ms;
}

/** Formats milliseconds compactly (`10s`, `1m`, `1500ms`), for default policy names. */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
