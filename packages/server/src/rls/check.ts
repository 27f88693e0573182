import { CliError, ENVIRONMENT } from '../shared/errors.js';
import { readTls, type TlsFiles } from '../shared/tls.js';
import { type Level, type LoadOptions, loadRlsConfig } from './config.js';
import { TLS_NAMES } from './tls.js';

// `floodgate rls --check PATH`: the configuration validated as a start would, without serving it, for CI.

function nodes(level: Level): number {
  let n = 0;
  for (const slot of level.values())
    for (const node of [
      ...slot.exact.values(),
      ...slot.wildcards.map((w) => w.node),
      ...(slot.any ? [slot.any] : []),
    ])
      n += 1 + nodes(node.children);
  return n;
}

/**
 * What the file or folder at `path` holds, one line, and the TLS files, read as a start reads them; an
 * invalid one throws the message a start would print, exiting 1 (the check failed) rather than 2, which
 * stays for a command line that is itself wrong.
 */
export function checkRlsConfig(path: string, options: LoadOptions = {}, tls?: TlsFiles): string {
  let domains: ReturnType<typeof loadRlsConfig>;
  try {
    domains = loadRlsConfig(path, options);
    if (tls !== undefined) readTls(tls, TLS_NAMES);
  } catch (error) {
    if (error instanceof CliError) throw new CliError(ENVIRONMENT, error.message);
    throw error;
  }
  const each = [...domains.values()].map((d) => `${d.domain} (${nodes(d.root)} descriptors)`);
  const secure =
    tls === undefined
      ? ''
      : `; TLS: ${tls.cert} and ${tls.key} load together${tls.clientCa === undefined ? '' : `, clients checked against ${tls.clientCa}`}`;
  return `${path}: valid: ${each.join(', ')}${secure}`;
}
