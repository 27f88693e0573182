import { createServer as createHttpServer, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Logger } from 'pino';
import { readCertificates, readTls, type TlsNames, watchTls } from '../shared/tls.js';
import type { ProxyConfig } from './config.js';

const NAMES: TlsNames = { cert: 'tls.cert', key: 'tls.key', pair: 'tls' };

/** The CA `upstreamCa` names, read once and checked (a change takes effect at the next restart). */
export function upstreamCaOf(config: ProxyConfig): Buffer | undefined {
  return config.upstreamCa === undefined ? undefined : readCertificates(config.upstreamCa, 'upstreamCa');
}

/** What a start reads of the TLS files, read now (for `--check`): the listener's pair and `upstreamCa`. */
export function checkTlsFiles(config: ProxyConfig): void {
  if (config.tls !== undefined) readTls(config.tls, NAMES);
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
  const { cert, key } = readTls(tls, NAMES);
  const server = createHttpsServer({ cert, key, ALPNProtocols: ['http/1.1'] }, handle);
  const watcher = watchTls(
    tls,
    NAMES,
    (next) => server.setSecureContext({ cert: next.cert, key: next.key }),
    log,
  );
  server.once('close', () => watcher.close());
  // An HTTPS server is an HTTP server over TLS sockets: the same events and methods.
  return server as unknown as Server;
}
