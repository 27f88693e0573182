import { invalidOption } from '../core/errors.js';
import type { NestRequest } from './options.js';

/**
 * The authenticated user (`request.user`, as Passport and most auth guards set it) as the key: by default
 * its `id`, `sub` or `userId`. A request without a user yields no key, and the module's `onMissingKey`
 * decides (by IP, by default). Runs after the auth guard only if that guard is registered first.
 */
export function byUser(
  select: (user: never) => string | number | undefined = defaultId,
): (request: NestRequest) => string | undefined {
  if (typeof select !== 'function') throw invalidOption('byUser', 'a function of the user', select, 'type');
  return (request) => {
    const user = request.user;
    if (user === undefined || user === null) return undefined;
    const id = select(user as never);
    return id === undefined || id === '' ? undefined : `user:${id}`;
  };
}

function defaultId(user: never): string | number | undefined {
  const u = user as { id?: unknown; sub?: unknown; userId?: unknown };
  for (const id of [u.id, u.sub, u.userId]) if (typeof id === 'string' || typeof id === 'number') return id;
  return undefined;
}
