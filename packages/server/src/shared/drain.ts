import type { Server } from 'node:http';
import type { Logger } from 'pino';

/** How long a stop waits for requests in flight when the operator says nothing. */
export const DEFAULT_GRACE = 10_000;

/**
 * Stops accepting, lets requests in flight finish for up to `grace` ms, then closes every connection left.
 * Without the deadline one client that never finishes sending a request holds the process up to Node's
 * `requestTimeout` (5 minutes), whatever the operator asked.
 */
export function drain(server: Server, grace: number, log: Logger): Promise<void> {
  return new Promise<void>((resolve) => {
    const deadline = setTimeout(() => {
      log.warn({ grace }, 'grace period over: closing the connections still open');
      server.closeAllConnections();
    }, grace);
    server.close(() => {
      clearTimeout(deadline);
      resolve();
    });
    server.closeIdleConnections();
  });
}
