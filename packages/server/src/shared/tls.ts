import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { environmentError, usageError } from './errors.js';
import { watchConfig } from './watch.js';

// A listener's certificate files (the proxy's HTTPS, rls's gRPC): read and checked at start, where a bad
// one stops the start naming its option, and read again when they change, where a bad one is logged and the
// certificate served so far kept.

/** A listener's PEM files: its certificate (chain) and key, and the CA its clients must chain to (mTLS). */
export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
  readonly clientCa?: string | undefined;
}

/** How the operator names each file (a field of a YAML file, a flag), for messages; `pair` for both. */
export interface TlsNames {
  readonly cert: string;
  readonly key: string;
  readonly clientCa?: string;
  readonly pair: string;
}

/** The files' contents, checked: the key is the certificate's, the CA holds a certificate. */
export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly clientCa?: Buffer;
}

function read(file: string, name: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw environmentError(`${name}: cannot read ${file}: ${(error as NodeJS.ErrnoException).code}`);
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * A file of trusted certificates (a CA list), checked: OpenSSL skips what is not a certificate in a CA
 * list without a word, so a wrong file would trust no one and only fail the first connection.
 */
export function readCertificates(file: string, name: string): Buffer {
  const ca = read(file, name);
  const pems = ca.toString('latin1').match(PEM_CERTIFICATE) ?? [];
  try {
    if (pems.length === 0) throw new Error('no PEM certificate ("-----BEGIN CERTIFICATE-----") in it');
    for (const pem of pems) new X509Certificate(pem);
  } catch (error) {
    throw usageError(`${name}: ${file} is not a PEM certificate file: ${(error as Error).message}`);
  }
  return ca;
}

/** Reads the files and checks they load; throws naming the option (a file it cannot read exits 1, a bad one 2). */
export function readTls(files: TlsFiles, names: TlsNames): TlsMaterial {
  const cert = read(files.cert, names.cert);
  const key = read(files.key, names.key);
  try {
    createSecureContext({ cert, key });
  } catch (error) {
    throw usageError(
      `${names.pair}: the certificate and key do not load together (${files.cert}, ${files.key}): ${(error as Error).message}`,
    );
  }
  if (files.clientCa === undefined) return { cert, key };
  const clientCa = readCertificates(files.clientCa, names.clientCa ?? 'clientCa');
  return { cert, key, clientCa };
}

/**
 * Calls `apply` with the files read again whenever one of them changes. What does not load (a key
 * replaced before its certificate, a file half written) is logged, and `apply` not called: the listener
 * keeps what it has until the files load together.
 */
export function watchTls(
  files: TlsFiles,
  names: TlsNames,
  apply: (material: TlsMaterial) => void,
  log: Logger,
): { close(): void } {
  const reload = () => {
    try {
      apply(readTls(files, names));
    } catch (error) {
      log.error(
        { cert: files.cert, err: (error as Error).message },
        'TLS certificate not reloaded; still serving the previous one',
      );
      return;
    }
    log.info({ cert: files.cert }, 'TLS certificate reloaded');
  };
  const paths = [files.cert, files.key, ...(files.clientCa === undefined ? [] : [files.clientCa])];
  const watchers = [...new Set(paths)].map((file) => watchConfig(file, reload, log));
  return {
    close() {
      for (const watcher of watchers) watcher.close();
    },
  };
}
