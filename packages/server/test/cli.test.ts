import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, it } from 'node:test';

const bin = resolve(import.meta.dirname, '../bin/floodgate.js');
const floodgate = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });

describe('floodgate command', () => {
  it('demo replays the token-bucket tutorial: 7 of 10 allowed at 2 requests per second', () => {
    const { status, stdout } = floodgate('demo');
    assert.equal(status, 0);
    const lines = stdout.trim().split('\n');
    assert.equal(lines[0], 'policy token-bucket-5-per-10s, 10 requests 500 ms apart');
    assert.equal(lines.filter((l) => l.includes('200 allowed')).length, 7);
    assert.match(lines[7]!, /^t=3\.0s\s+429 limited\s+retry after 1 s$/);
  });

  it('demo takes the Redis tutorial: 5 per 60 s in a fixed window', () => {
    const { status, stdout } = floodgate(
      'demo',
      '--algorithm',
      'fixed-window',
      '--limit',
      '5',
      '--window',
      '60s',
      '--every',
      '5000',
    );
    assert.equal(status, 0);
    assert.match(stdout, /policy fixed-window-5-per-1m/);
    assert.equal(stdout.match(/200 allowed/g)?.length, 5);
    assert.match(stdout, /t=25\.0s\s+429 limited\s+retry after 35 s/);
  });

  it('demo --algorithm concurrency: --window is the lease timeout', () => {
    const { status, stdout } = floodgate(
      'demo',
      '--algorithm',
      'concurrency',
      '--limit',
      '2',
      '--requests',
      '3',
    );
    assert.equal(status, 0);
    assert.match(stdout, /policy concurrency-2/);
    assert.match(stdout, /t=1\.0s\s+429 limited\s+retry after 9 s/);
  });

  // Usage errors: exit 2, one line saying what is wrong (the flag named, never "floodgate:" twice), no stack.
  const errors: [string[], RegExp][] = [
    [
      ['demo', '--limit', '0'],
      /^floodgate: option '--limit <n>' argument '0' is invalid\. must be an integer from 1 to 1000000000$/m,
    ],
    [['demo', '--limit', 'many'], /argument 'many' is invalid\. must be an integer from 1/],
    [
      ['demo', '--requests', '100000000'],
      /argument '100000000' is invalid\. must be an integer from 1 to 100000$/m,
    ],
    [
      ['demo', '--window', 'soon'],
      /^floodgate: --window must be a positive integer of milliseconds or a string like "10s"/,
    ],
    [['demo', '--algorithm', 'leaky'], /^floodgate: --algorithm must be one of "token-bucket"/],
    [['demo', '--bogus'], /^floodgate: unknown option '--bogus'/],
    [['serve', '--bogus'], /^floodgate: unknown option '--bogus'/],
    [['serve', '--por', '1'], /^floodgate: unknown option '--por'/],
    [['serve', '--port'], /^floodgate: option '--port <n>' argument missing/],
    [
      ['proxy', '--no-admin', '--admin-port', '1', '--upstream', 'http://127.0.0.1:1'],
      /--admin-port cannot be combined with --no-admin/,
    ],
    [['proxy', '--upstream', 'http://127.0.0.1:1', '--leases'], /^floodgate: --leases needs --redis$/m],
    [['users', 'add'], /^floodgate: missing required argument 'name'/],
    [['users', 'frobnicate'], /^floodgate: unknown command 'frobnicate'/],
    [['launch'], /^floodgate: unknown command 'launch'/],
    [[], /^Usage: floodgate \[options\] \[command\]/m],
  ];
  for (const [args, message] of errors) {
    it(`fails clearly, exit code 2, no stack trace: floodgate ${args.join(' ')}`, () => {
      const { status, stdout, stderr } = floodgate(...args);
      assert.equal(status, 2, stderr);
      assert.match(stdout + stderr, message);
      assert.doesNotMatch(stderr, /floodgate: floodgate:/);
      assert.doesNotMatch(stderr, /\n\s+at /);
    });
  }

  it('each command has its own help, with -h too; --version and -V print the version; all exit 0', () => {
    const { version } = JSON.parse(readFileSync(resolve(import.meta.dirname, '../package.json'), 'utf8'));
    for (const args of [['--version'], ['-V']]) {
      const r = floodgate(...args);
      assert.equal(r.status, 0);
      assert.equal(r.stdout, `${version}\n`);
    }
    const helps: [string[], RegExp][] = [
      [['--help'], /Commands:\n\s+serve \[options\]/],
      [['help'], /Commands:/],
      [['help', 'serve'], /Usage: floodgate serve/],
      [['serve', '--help'], /--grace <duration>.*FLOODGATE_GRACE/s],
      [['serve', '-h'], /--redis <url>/],
      [['proxy', '--help'], /--no-admin/],
      [['users', '--help'], /passwd \[options\] <name>/],
      [['users', 'add', '--help'], /--db <url>.*env: FLOODGATE_DB/s],
      [['demo', '--help'], /--requests <n>/],
    ];
    for (const [args, text] of helps) {
      const r = floodgate(...args);
      assert.equal(r.status, 0, args.join(' '));
      assert.match(r.stdout, text, args.join(' '));
    }
  });
});

describe('a closed stdout', () => {
  /** Runs `floodgate ...args` with stdout piped, closed by the reader after `afterFirst` chunks (0: at once). */
  async function closedEarly(args: string[], afterFirst: boolean) {
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    if (afterFirst) child.stdout.once('data', () => child.stdout.destroy());
    else child.stdout.destroy();
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
    return { code, signal, stderr };
  }

  // As `floodgate serve --help | head -1`: the reader has what it wanted, so the command ends quietly.
  const cases: [string[], boolean][] = [
    [['serve', '--help'], false],
    [['--help'], false],
    [['help', 'proxy'], false],
    [['--version'], false],
    [['demo', '--requests', '100000'], true],
  ];
  for (const [args, afterFirst] of cases) {
    it(`floodgate ${args.join(' ')}: exits 0 without a stack trace`, async () => {
      const { code, signal, stderr } = await closedEarly(args, afterFirst);
      assert.equal(signal, null);
      assert.equal(stderr, '', 'nothing on stderr');
      assert.equal(code, 0);
    });
  }
});
