/** Codes carried by every error Floodgate throws, so callers can branch without parsing messages. */
export type FloodgateErrorCode =
  | 'ERR_FLOODGATE_INVALID_OPTION'
  | 'ERR_FLOODGATE_RATE_LIMITED'
  | 'ERR_FLOODGATE_STORE_NOT_SYNC'
  | 'ERR_FLOODGATE_STORE_TIMEOUT';

/** Base class of the errors Floodgate defines itself (invalid options are plain TypeError/RangeError). */
export class FloodgateError extends Error {
  readonly code: FloodgateErrorCode;
  constructor(code: FloodgateErrorCode, message: string) {
    super(message);
    this.name = 'FloodgateError';
    this.code = code;
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

/**
 * Builds the error for an invalid option: a TypeError when the type is wrong, a RangeError when the value
 * is out of range. The message names the option, what it accepts, and what it got.
 */
export function invalidOption(
  option: string,
  expected: string,
  got: unknown,
  kind: 'type' | 'range' = 'range',
): TypeError | RangeError {
  const message = `floodgate: option "${option}" must be ${expected}; got ${describe(got)}`;
  const error = kind === 'type' ? new TypeError(message) : new RangeError(message);
  Object.defineProperty(error, 'code', { value: 'ERR_FLOODGATE_INVALID_OPTION', enumerable: true });
  return error;
}
