import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Logger } from 'pino';
import { environmentError, usageError } from '../shared/errors.js';
import { watchConfig } from '../shared/watch.js';
import type { ProxyConfig } from './config.js';

function read(file: string, field: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw environmentError(`${field}: cannot read ${file}: ${(error as NodeJS.ErrnoException).code}`);
  }
}

/** The CA `upstreamCa` names, read once (a change takes effect at the next restart). */
export function upstreamCaOf(config: ProxyConfig): Buffer | undefined {
  return config.upstreamCa === undefined ? undefined : read(config.upstreamCa, 'upstreamCa');
}

/**
 * The proxy's listener: plain HTTP, or with `tls` HTTPS over HTTP/1.1 (ALPN offers only http/1.1; HTTP/2
 * is not served). The certificate and key are read again when either file changes, for the connections
 * that follow; a pair that does not load (a key replaced before its certificate) is logged and the
 * previous one kept until the pair matches.
 */
export function proxyServer(config: ProxyConfig, handle: RequestListener, log: Logger): Server {
  const tls = config.tls;
  if (tls === undefined) return createHttpServer(handle);
  const pair = () => ({ cert: read(tls.cert, 'tls.cert'), key: read(tls.key, 'tls.key') });
  let server: ReturnType<typeof createHttpsServer>;
  try {
    server = createHttpsServer({ ...pair(), ALPNProtocols: ['http/1.1'] }, handle);
  } catch (error) {
    if ((error as Error).name === 'CliError') throw error;
    throw usageError(`tls: the certificate and key do not load together: ${(error as Error).message}`);
  }
  const reload = () => {
    try {
      server.setSecureContext(pair());
      log.info({ cert: tls.cert }, 'TLS certificate reloaded');
    } catch (error) {
      log.error(
        { cert: tls.cert, err: (error as Error).message },
        'TLS certificate not reloaded; still serving the previous one',
      );
    }
  };
  const watchers = [...new Set([tls.cert, tls.key])].map((file) => watchConfig(file, reload, log));
  server.once('close', () => {
    for (const watcher of watchers) watcher.close();
  });
  // An HTTPS server is an HTTP server over TLS sockets: the same events and methods.
  return server as unknown as Server;
}
