import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Limiter, Shedder } from 'floodgate';
import { adminHandler, type Fleet } from 'floodgate/admin';
import type { Logger } from 'pino';
import { usageError } from './errors.js';

/** What a command's admin listener serves besides `/metrics` and `/health`. */
export type AdminRoute = (req: IncomingMessage, res: ServerResponse, next: () => void) => void;

export interface DashboardOptions {
  /** The command's limiters by name (a proxy rule, an RLS descriptor, a serve policy), read per request. */
  readonly limiters: () => Iterable<readonly [string, Limiter]>;
  readonly shedder?: Shedder;
  /** With a Redis store: the processes sharing it. */
  readonly fleet?: Fleet;
  /** `--admin-token`, else `FLOODGATE_ADMIN_TOKEN`. */
  readonly token: string | undefined;
  readonly log: Logger;
}

/** The admin token a command was given: the flag's, else the environment's; never logged. */
export function adminToken(flag: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  const token = flag ?? env.FLOODGATE_ADMIN_TOKEN;
  if (token !== undefined && token.length < 16)
    throw usageError('--admin-token (or FLOODGATE_ADMIN_TOKEN) must be at least 16 characters');
  return token;
}

/**
 * The admin API and the dashboard (`floodgate/admin`) for a command's admin listener: `/api/...` and the
 * page at `/`. Actions are logged with who asked and what changed.
 */
export function dashboardRoute(options: DashboardOptions): AdminRoute {
  const { log } = options;
  return adminHandler({
    limiters: options.limiters,
    ...(options.shedder === undefined ? {} : { shedder: options.shedder }),
    ...(options.fleet === undefined ? {} : { fleet: options.fleet }),
    ...(options.token === undefined ? {} : { token: options.token }),
    onAction: (action) =>
      log.info(
        { action: action.action, limiter: action.limiter, client: action.client, by: action.by },
        `admin: ${action.action} of ${action.client} on ${action.limiter}`,
      ),
  }) as AdminRoute;
}
