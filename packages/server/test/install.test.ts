import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { startCommand } from './helpers/command.js';
import { statuses as codes } from './helpers/requests.js';
import { type NodeUpstream, startNodeUpstream } from './helpers/upstreams.js';

// The command as someone outside the clone installs it: the tarball of scripts/pack-command.mjs, installed
// globally into a prefix of its own with the optional database drivers omitted, offline and with an empty
// npm cache, so nothing can come from the registry nor be compiled. Then the installed `floodgate` runs.

const root = resolve(import.meta.dirname, '../../..');
const dir = mkdtempSync(join(tmpdir(), 'floodgate-install-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const prefix = join(dir, 'prefix');
const installed = join(prefix, 'lib/node_modules/floodgate-server');
const floodgateBin = join(prefix, 'bin/floodgate');

let up: NodeUpstream;
before(async () => {
  up = await startNodeUpstream();
});
after(() => up.close());

const floodgate = (...args: string[]) =>
  spawnSync(floodgateBin, args, { encoding: 'utf8', timeout: 20_000, cwd: dir });

/** Every file under `folder` whose name ends with `suffix`. */
const filesEndingWith = (folder: string, suffix: string) =>
  readdirSync(folder, { recursive: true }).filter((f) => String(f).endsWith(suffix));

describe('the command installed from its tarball, without the optional drivers', () => {
  before(() => {
    // The tests run on the built packages; the script packs those as they are.
    const tarball = execFileSync(
      process.execPath,
      [join(root, 'scripts/pack-command.mjs'), '--no-build', '--out', dir],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
    ).trim();
    mkdirSync(join(dir, 'empty-cache'));
    execFileSync(
      'npm',
      [
        'install',
        '--global',
        '--prefix',
        prefix,
        '--omit=optional',
        '--offline',
        '--cache',
        join(dir, 'empty-cache'),
        '--no-audit',
        '--no-fund',
        tarball,
      ],
      { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
    );
  });

  it('installs with no registry and no compiler: no driver, no native addon, the library carried along', () => {
    const modules = join(installed, 'node_modules');
    for (const driver of ['better-sqlite3', 'mysql2'])
      assert.equal(existsSync(join(modules, driver)), false, `${driver} is not installed`);
    assert.deepEqual(filesEndingWith(installed, '.node'), [], 'nothing was compiled');
    assert.ok(existsSync(join(modules, 'floodgate/dist/esm/index.js')), 'the library is bundled');
    const version = floodgate('--version');
    assert.equal(version.status, 0, version.stderr);
    assert.equal(version.stdout.trim(), '0.1.0');
  });

  it('proxy --check and rls --check run from the installed command', () => {
    const proxyFile = join(dir, 'proxy.yaml');
    writeFileSync(
      proxyFile,
      stringify({ upstream: up.url, rules: [{ name: 'all', policies: { limit: 5, window: '1m' } }] }),
    );
    const proxy = floodgate('proxy', '--check', proxyFile);
    assert.equal(proxy.status, 0, proxy.stderr);
    assert.match(proxy.stdout, /the configuration is valid \(1 rule/);

    const rlsFile = join(dir, 'rls.yaml');
    writeFileSync(
      rlsFile,
      stringify({
        domain: 'edge',
        descriptors: [{ key: 'client', rate_limit: { unit: 'minute', requests_per_unit: 5 } }],
      }),
    );
    const rls = floodgate('rls', '--check', rlsFile);
    assert.equal(rls.status, 0, rls.stderr);
    assert.match(rls.stdout, /edge/);
  });

  it('a real proxy from the installed command forwards and limits HTTP requests', async () => {
    const proxy = await startCommand(
      ['proxy', '--upstream', up.url, '--port', '0', '--admin-port', '0', '--limit', '2', '--window', '1m'],
      { command: [floodgateBin], cwd: dir },
    );
    try {
      assert.deepEqual(await codes(`${proxy.url}/echo`, 3), [200, 200, 429]);
    } finally {
      assert.equal(await proxy.stop(), 0);
    }
  });

  it('serve on SQLite says which package is missing and how to install it, and exits 1', () => {
    const run = floodgate('serve', '--db', 'sqlite::memory:', '--port', '0', '--admin-port', '0');
    assert.equal(run.status, 1, run.stderr);
    assert.match(run.stderr, /needs the package better-sqlite3, which is not installed/);
    assert.ok(
      run.stderr.includes(`npm install --no-save --prefix "${installed}" better-sqlite3@^12`),
      run.stderr,
    );
    assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
  });
});
