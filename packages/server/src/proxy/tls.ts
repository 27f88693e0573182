import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createSecureContext } from 'node:tls';
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

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * The CA `upstreamCa` names, read once (a change takes effect at the next restart). Checked here, as
 * Node would take a file of no certificate and only fail the first https:// connection.
 */
export function upstreamCaOf(config: ProxyConfig): Buffer | undefined {
  const file = config.upstreamCa;
  if (file === undefined) return undefined;
  const ca = read(file, 'upstreamCa');
  const pems = ca.toString('latin1').match(PEM_CERTIFICATE) ?? [];
  try {
    if (pems.length === 0) throw new Error('no PEM certificate ("-----BEGIN CERTIFICATE-----") in it');
    for (const pem of pems) new X509Certificate(pem);
  } catch (error) {
    throw usageError(`upstreamCa: ${file} is not a PEM certificate file: ${(error as Error).message}`);
  }
  return ca;
}

/** The `tls` pair, read and loaded together (a key of another certificate is refused), naming both files. */
export function tlsPairOf(tls: NonNullable<ProxyConfig['tls']>): { cert: Buffer; key: Buffer } {
  const pair = { cert: read(tls.cert, 'tls.cert'), key: read(tls.key, 'tls.key') };
  try {
    createSecureContext(pair);
  } catch (error) {
    throw usageError(
      `tls: the certificate and key do not load together (${tls.cert}, ${tls.key}): ${(error as Error).message}`,
    );
  }
  return pair;
}

/** What a start reads of the TLS files, read now (for `--check`): the listener's pair and `upstreamCa`. */
export function checkTlsFiles(config: ProxyConfig): void {
  if (config.tls !== undefined) tlsPairOf(config.tls);
  upstreamCaOf(config);
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
  const pair = () => tlsPairOf(tls);
  const server = createHttpsServer({ ...pair(), ALPNProtocols: ['http/1.1'] }, handle);
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
