import { isInvalidOption } from '../core/errors.js';

/**
 * An option error said again where it belongs: under another option path (a tier's policies), or on a
 * route (`@RateLimit on AppModule.AuthController.login`). Its fields stay structured; other errors pass.
 */
export function relocated(
  error: unknown,
  where: { readonly option?: string; readonly route?: string },
): unknown {
  if (!isInvalidOption(error)) return error;
  const option = where.option ?? error.option;
  const on = where.route === undefined ? '' : `@RateLimit on ${where.route}: `;
  const message = `floodgate: ${on}option "${option}" must be ${error.expected}; got ${error.got}`;
  const moved = error instanceof TypeError ? new TypeError(message) : new RangeError(message);
  const fields = { code: error.code, option, expected: error.expected, got: error.got };
  for (const [name, value] of Object.entries(fields))
    Object.defineProperty(moved, name, { value, enumerable: true });
  return moved;
}
