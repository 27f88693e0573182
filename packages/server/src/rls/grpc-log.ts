import { format } from 'node:util';
import { setLogger } from '@grpc/grpc-js';
import type { Logger } from 'pino';

/**
 * grpc-js's own log lines, which it writes to stderr by default (a busy port printed "E No address added
 * ..." before floodgate's own message), sent to the service's log at debug level instead: every failure
 * they describe reaches the service too (a bind's error, a call's status) and is reported there, once, in
 * the log's format. grpc-js keeps one logger per process: the last service started gets them.
 */
export function routeGrpcLog(log: Logger): void {
  const line =
    (level: string) =>
    (message?: unknown, ...rest: unknown[]) =>
      log.debug({ grpc: level }, format(message, ...rest));
  setLogger({ error: line('error'), info: line('info'), debug: line('debug') });
}
