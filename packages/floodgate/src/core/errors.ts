/** Codes carried by every error Floodgate throws, so callers can branch without parsing messages. */
export type FloodgateErrorCode =
  | 'ERR_FLOODGATE_INVALID_OPTION'
  | 'ERR_FLOODGATE_UNKNOWN_OPTION'
  | 'ERR_FLOODGATE_RATE_LIMITED'
  | 'ERR_FLOODGATE_STORE_NOT_SYNC'
  | 'ERR_FLOODGATE_STORE_TIMEOUT'
  /** A request's cost or key (from a function of the request) was not one: the request was refused with 400. */
  | 'ERR_FLOODGATE_INVALID_REQUEST_VALUE'
  /** The runtime gives no client address and the limit needs one (Bun, Deno, Workers without `address`). */
  | 'ERR_FLOODGATE_NO_CLIENT_ADDRESS';

/** Base class of the errors Floodgate defines itself (invalid options are plain TypeError/RangeError). */
export class FloodgateError extends Error {
  readonly code: FloodgateErrorCode;
  constructor(code: FloodgateErrorCode, message: string) {
    super(message);
    this.name = 'FloodgateError';
    this.code = code;
  }
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

/** The fields of an invalid-option error, so a caller can say it in its own terms (a flag, a file's key). */
export interface InvalidOption {
  /** `ERR_FLOODGATE_INVALID_OPTION` for a value out of range or of the wrong type; `ERR_FLOODGATE_UNKNOWN_OPTION` for a key nothing reads. */
  readonly code: 'ERR_FLOODGATE_INVALID_OPTION' | 'ERR_FLOODGATE_UNKNOWN_OPTION';
  /** The option's path, e.g. `policies[1].limit`. */
  readonly option: string;
  /** What it accepts, e.g. `a positive integer`. */
  readonly expected: string;
  /** What it got, described: `0`, `"soon"`, `an array`. */
  readonly got: string;
}

/** Whether `error` is an invalid- or unknown-option error from Floodgate, with its fields. */
export function isInvalidOption(error: unknown): error is Error & InvalidOption {
  const code = error instanceof Error ? (error as { code?: unknown }).code : undefined;
  return code === 'ERR_FLOODGATE_INVALID_OPTION' || code === 'ERR_FLOODGATE_UNKNOWN_OPTION';
}

/**
 * Builds the error for an invalid option: a TypeError when the type is wrong, a RangeError when the value
 * is out of range. The message names the option, what it accepts, and what it got; so do its fields.
 */
export function invalidOption(
  option: string,
  expected: string,
  got: unknown,
  kind: 'type' | 'range' = 'range',
  code: InvalidOption['code'] = 'ERR_FLOODGATE_INVALID_OPTION',
): TypeError | RangeError {
  const described = describe(got);
  const message = `floodgate: option "${option}" must be ${expected}; got ${described}`;
  const error = kind === 'type' ? new TypeError(message) : new RangeError(message);
  const fields: InvalidOption = { code, option, expected, got: described };
  for (const [name, value] of Object.entries(fields)) {
    Object.defineProperty(error, name, { value, enumerable: true });
  }
  return error;
}

/**
 * Refuses option keys nothing reads, as a misspelt option would otherwise be ignored in silence
 * (`windowMs` for `window`, `onStoreErorr`). `prefix` names where the options sit (e.g. `policies[0].`).
 */
export function knownKeys(options: object, known: readonly string[], prefix = ''): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      const accepted = known.map((k) => `"${k}"`).join(', ');
      throw invalidOption(
        `${prefix}${key}`,
        `absent: the options are ${accepted}`,
        (options as Record<string, unknown>)[key],
        'range',
        'ERR_FLOODGATE_UNKNOWN_OPTION',
      );
    }
  }
}
