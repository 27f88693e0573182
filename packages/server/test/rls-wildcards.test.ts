import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ask, withRls } from './helpers/rls.js';

// A `*` anywhere in a value, as envoyproxy/ratelimit matches it, over a real gRPC client.

const dir = mkdtempSync(join(tmpdir(), 'floodgate-rls-wildcards-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const CONFIG = `
domain: w
descriptors:
  - key: k
    value: ab*ba
    rate_limit: { name: overlap, unit: minute, requests_per_unit: 1 }
  - key: k
    value: x*
    rate_limit: { name: prefix, unit: minute, requests_per_unit: 2 }
  - key: k
    value: x*y
    rate_limit: { name: later, unit: minute, requests_per_unit: 3 }
  - key: k
    value: "*.example"
    rate_limit: { name: suffix, unit: minute, requests_per_unit: 4 }
  - key: k
    value: a**b
    rate_limit: { name: double, unit: minute, requests_per_unit: 5 }
  - key: k
    value: "xyz"
    rate_limit: { name: exact, unit: minute, requests_per_unit: 6 }
`;

const nameFor = async (client: Parameters<Parameters<typeof withRls>[1]>[0], value: string) =>
  (await ask(client, { domain: 'w', descriptors: [{ entries: [{ key: 'k', value }] }] })).statuses[0]!
    .current_limit?.name ?? null;

describe('floodgate rls: a * inside a value', () => {
  it('matches any run of characters, never letting the first and last parts overlap; the first in file order wins, an exact value first', async () => {
    const path = join(dir, 'w.yaml');
    writeFileSync(path, CONFIG);
    await withRls(path, async (client) => {
      const expected: [string, string | null][] = [
        ['abba', 'overlap'],
        ['ab--ba', 'overlap'],
        ['aba', null], // "ab" and "ba" would share the b
        ['abaa', null],
        ['xy', 'prefix'], // x* comes first in the file
        ['xyz', 'exact'],
        ['mail.example', 'suffix'],
        ['.example', 'suffix'],
        ['example', null],
        ['ab', 'double'],
        ['a-b', 'double'],
        ['b', null],
        ['', null],
      ];
      for (const [value, name] of expected) assert.equal(await nameFor(client, value), name, value);
    });
  });

  it('a wildcard node counts each value on its own, in parallel exactly its limit', async () => {
    const path = join(dir, 'w2.yaml');
    writeFileSync(path, CONFIG);
    await withRls(path, async (client) => {
      const call = (value: string) =>
        ask(client, { domain: 'w', descriptors: [{ entries: [{ key: 'k', value }] }] });
      const replies = await Promise.all([...Array(20)].map((_, i) => call(i % 2 === 0 ? 'ab1ba' : 'ab2ba')));
      assert.equal(replies.filter((r) => r.overall_code === 'OK').length, 2);
    });
  });
});
