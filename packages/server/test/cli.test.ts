import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
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

  const errors: [string[], RegExp][] = [
    [['demo', '--limit', '0'], /option "policies\.limit" must be a positive integer; got 0/],
    [['demo', '--limit', 'many'], /option --limit must be a non-negative integer; got "many"/],
    [['demo', '--window', 'soon'], /option "policies\.window"/],
    [['demo', '--algorithm', 'leaky'], /option "policies\.algorithm" must be one of/],
    [['demo', '--bogus'], /Unknown option '--bogus'/],
    [['launch'], /unknown command "launch"/],
    [[], /usage: floodgate/],
  ];
  for (const [args, message] of errors) {
    it(`fails clearly, exit code 2, no stack trace: floodgate ${args.join(' ')}`, () => {
      const { status, stdout, stderr } = floodgate(...args);
      assert.equal(status, 2);
      assert.match(stdout + stderr, message);
      assert.doesNotMatch(stderr, /\n\s+at /);
    });
  }

  it('help exits 0', () => {
    const { status, stdout } = floodgate('help');
    assert.equal(status, 0);
    assert.match(stdout, /commands:/);
  });
});
