import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { startCommand } from './helpers/command.js';
import { statuses as codes } from './helpers/requests.js';
import { ask, clientOf } from './helpers/rls.js';
import { type NodeUpstream, startNodeUpstream } from './helpers/upstreams.js';

// The command as one executable file (scripts/build-sea.mjs), run from a folder without the workspace
// and with an empty environment, so it can find neither the packages nor their files on disk: whatever it
// reads must be inside the file.

const root = resolve(import.meta.dirname, '../../..');
const dir = mkdtempSync(join(tmpdir(), 'floodgate-sea-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const exe = join(dir, 'floodgate');
const bare = { cwd: dir, env: { PATH: '/usr/bin:/bin' } };

let up: NodeUpstream;
before(async () => {
  up = await startNodeUpstream();
});
after(() => up.close());

const floodgate = (...args: string[]) => spawnSync(exe, args, { ...bare, encoding: 'utf8', timeout: 20_000 });

describe('the single executable file', () => {
  before(() => {
    // The tests run on the built packages; the script bundles those as they are.
    execFileSync(process.execPath, [join(root, 'scripts/build-sea.mjs'), '--no-build', '--out', exe], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  });

  it('prints its version, with no warning, and checks a proxy file', () => {
    const version = floodgate('--version');
    assert.equal(version.status, 0, version.stderr);
    assert.equal(version.stdout.trim(), '0.1.0');
    assert.equal(version.stderr, '', 'no warning');

    const proxyFile = join(dir, 'proxy.yaml');
    writeFileSync(
      proxyFile,
      stringify({ upstream: up.url, rules: [{ name: 'all', policies: { limit: 5, window: '1m' } }] }),
    );
    const proxy = floodgate('proxy', '--check', proxyFile);
    assert.equal(proxy.status, 0, proxy.stderr);
    assert.match(proxy.stdout, /the configuration is valid \(1 rule/);
  });

  it('a real proxy from it forwards and limits HTTP requests', async () => {
    const proxy = await startCommand(
      ['proxy', '--upstream', up.url, '--port', '0', '--admin-port', '0', '--limit', '2', '--window', '1m'],
      { ...bare, command: [exe] },
    );
    try {
      assert.deepEqual(await codes(`${proxy.url}/echo`, 3), [200, 200, 429]);
      const health = await fetch(`${proxy.logs()[0]!.admin as string}/health`);
      assert.equal(health.status, 200);
    } finally {
      assert.equal(await proxy.stop(), 0);
    }
  });

  it('a real rls from it answers gRPC with the protos it carries', async () => {
    const file = join(dir, 'rls.yaml');
    writeFileSync(
      file,
      stringify({
        domain: 'd',
        descriptors: [{ key: 'k', rate_limit: { unit: 'hour', requests_per_unit: 1 } }],
      }),
    );
    const rls = await startCommand(['rls', '--config', file, '--port', '0', '--no-admin'], {
      ...bare,
      command: [exe],
    });
    const client = clientOf(rls.url.slice('grpc://'.length));
    try {
      const request = { domain: 'd', descriptors: [{ entries: [{ key: 'k', value: 'v' }] }] };
      assert.equal((await ask(client, request)).overall_code, 'OK');
      assert.equal((await ask(client, request)).overall_code, 'OVER_LIMIT');
    } finally {
      client.close();
      assert.equal(await rls.stop(), 0);
    }
  });

  it('serve on SQLite says that the file does not carry better-sqlite3, and exits 1', () => {
    const run = floodgate('serve', '--db', 'sqlite::memory:', '--port', '0', '--admin-port', '0');
    assert.equal(run.status, 1, run.stderr);
    assert.match(
      run.stderr,
      /needs the package better-sqlite3, which the single executable file does not carry/,
    );
    assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
  });
});
