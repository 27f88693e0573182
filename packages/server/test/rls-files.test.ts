import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { startRls } from '../src/rls/rls.js';
import { ask, clientOf } from './helpers/rls.js';

// The configuration on disk as deployments hand it over: a Kubernetes ConfigMap's symlinks.

const dir = mkdtempSync(join(tmpdir(), 'floodgate-rls-files-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const config = (n: number) =>
  `domain: cm\ndescriptors:\n  - key: k\n    rate_limit: { unit: minute, requests_per_unit: ${n} }\n`;

/**
 * A ConfigMap volume as the kubelet writes it: `config.yaml -> ..data/config.yaml`, `..data -> ..<version>`.
 * An update writes a new version's folder, points `..data_tmp` at it, renames that over `..data` (one
 * atomic step) and removes the old folder; `config.yaml` itself is never touched.
 */
function configMap(at: string, n: number): { update(n: number): void } {
  mkdirSync(at);
  let version = 0;
  const write = (limit: number) => {
    version += 1;
    const folder = `..2026_12_07_15_00_0${version}`;
    mkdirSync(join(at, folder));
    writeFileSync(join(at, folder, 'config.yaml'), config(limit));
    return folder;
  };
  let current = write(n);
  symlinkSync(current, join(at, '..data'));
  symlinkSync('..data/config.yaml', join(at, 'config.yaml'));
  return {
    update(limit) {
      const next = write(limit);
      symlinkSync(next, join(at, '..data_tmp'));
      renameSync(join(at, '..data_tmp'), join(at, '..data'));
      rmSync(join(at, current), { recursive: true });
      current = next;
    },
  };
}

describe('floodgate rls: a ConfigMap', () => {
  for (const given of ['the file', 'the folder'] as const) {
    it(`follows the ..data swap of an update, twice, when given ${given}`, { timeout: 20_000 }, async () => {
      const at = join(dir, given.replace(' ', '-'));
      const map = configMap(at, 3);
      const lines = new PassThrough();
      const reloads: (() => void)[] = [];
      lines.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('configuration reloaded')) reloads.shift()?.();
      });
      const rls = await startRls(
        given === 'the file' ? join(at, 'config.yaml') : at,
        { listen: { host: '127.0.0.1', port: 0 }, admin: false, store: 'memory' },
        { log: pino(lines) },
      );
      const client = clientOf(rls.address);
      const limit = async () =>
        (await ask(client, { domain: 'cm', descriptors: [{ entries: [{ key: 'k', value: 'v' }] }] }))
          .statuses[0]!.current_limit?.requests_per_unit;
      try {
        assert.equal(await limit(), 3);
        for (const n of [7, 11]) {
          const reloaded = new Promise<void>((resolve) => reloads.push(resolve));
          map.update(n);
          await reloaded;
          assert.equal(await limit(), n);
        }
      } finally {
        client.close();
        await rls.stop();
      }
    });
  }
});
