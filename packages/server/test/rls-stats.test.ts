import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { startRls } from '../src/rls/rls.js';
import { ask, clientOf, withRls } from './helpers/rls.js';

// envoyproxy/ratelimit's stats beside Floodgate's, and its global shadow mode, over a real gRPC client.

const dir = mkdtempSync(join(tmpdir(), 'floodgate-rls-stats-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const CONFIG = `
domain: s
descriptors:
  - key: k
    rate_limit: { unit: hour, requests_per_unit: 10 }
  - key: quiet
    shadow_mode: true
    rate_limit: { unit: hour, requests_per_unit: 2 }
  - key: free
    rate_limit: { unlimited: true }
`;
const path = join(dir, 's.yaml');
writeFileSync(path, CONFIG);

const call = (key: string, hits: number) => ({
  domain: 's',
  hits_addend: hits,
  descriptors: [{ entries: [{ key, value: 'v' }] }],
});

async function stat(adminUrl: string, name: string, descriptor: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`ratelimit_service_rate_limit_${name}{domain="s",descriptor="${descriptor}"}`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

describe("floodgate rls: envoyproxy/ratelimit's stats", () => {
  it('total_hits, within_limit, near_limit (past 80%), over_limit and shadow_mode, counted in hits; none for unlimited', async () => {
    await withRls(path, async (client, rls) => {
      const url = rls.adminUrl!;
      // 10 an hour: 3 + 4 (7 used: within), 2 (9: one past 8 is near), 3 (over), 1 (10: near).
      for (const hits of [3, 4, 2, 3, 1]) await ask(client, call('k', hits));
      const got = async (d: string) =>
        Object.fromEntries(
          await Promise.all(
            ['total_hits', 'within_limit', 'near_limit', 'over_limit', 'shadow_mode'].map(
              async (n) => [n, await stat(url, n, d)] as const,
            ),
          ),
        );
      assert.deepEqual(await got('k'), {
        total_hits: 13,
        within_limit: 10,
        near_limit: 2,
        over_limit: 3,
        shadow_mode: 0,
      });
      for (let i = 0; i < 3; i++) assert.equal((await ask(client, call('quiet', 1))).overall_code, 'OK');
      assert.deepEqual(await got('quiet'), {
        total_hits: 3,
        within_limit: 2,
        near_limit: 1,
        over_limit: 1,
        shadow_mode: 1,
      });
      await ask(client, call('free', 5));
      assert.equal(await stat(url, 'total_hits', 'free'), 0);
    });
  });

  it('100 parallel calls: total_hits counts every hit, within_limit exactly the limit', async () => {
    await withRls(path, async (client, rls) => {
      await Promise.all([...Array(100)].map(() => ask(client, call('k', 1))));
      assert.equal(await stat(rls.adminUrl!, 'total_hits', 'k'), 100);
      assert.equal(await stat(rls.adminUrl!, 'within_limit', 'k'), 10);
      assert.equal(await stat(rls.adminUrl!, 'over_limit', 'k'), 90);
    });
  });

  it('config_load_success at start and per reload, config_load_error per refused reload', async () => {
    await withRls(path, async (_client, rls) => {
      const loads = async () => {
        const text = await (await fetch(`${rls.adminUrl}/metrics`)).text();
        const of = (n: string) =>
          Number(text.match(new RegExp(`^ratelimit_service_config_load_${n} (\\d+)`, 'm'))![1]);
        return [of('success'), of('error')];
      };
      assert.deepEqual(await loads(), [1, 0]);
      assert.equal(rls.reload(), true);
      writeFileSync(path, 'domain: s\ndescriptors: 3\n');
      assert.equal(rls.reload(), false);
      writeFileSync(path, CONFIG);
      assert.deepEqual(await loads(), [2, 1]);
    });
  });
});

describe('floodgate rls --shadow (SHADOW_MODE)', () => {
  it('every descriptor, sent limits included, is counted and never refuses; no header names them', async () => {
    const rls = await startRls(
      path,
      {
        listen: { host: '127.0.0.1', port: 0 },
        admin: { host: '127.0.0.1', port: 0 },
        store: 'memory',
        shadow: true,
      },
      { log: pino({ level: 'silent' }), watch: false },
    );
    const client = clientOf(rls.address);
    try {
      const replies = await Promise.all([...Array(30)].map(() => ask(client, call('k', 1))));
      assert.ok(replies.every((r) => r.overall_code === 'OK' && r.statuses[0]!.code === 'OK'));
      assert.ok(replies.every((r) => r.response_headers_to_add.length === 0));
      const sent = await ask(client, {
        domain: 's',
        descriptors: [
          { entries: [{ key: 'k', value: 'w' }], limit: { requests_per_unit: 0, unit: 'SECOND' } },
        ],
      });
      assert.equal(sent.overall_code, 'OK');
      // 20 past the limit of 10, and the sent limit of 0's one.
      assert.equal(await stat(rls.adminUrl!, 'over_limit', 'k'), 21);
      assert.equal(await stat(rls.adminUrl!, 'shadow_mode', 'k'), 21);
    } finally {
      client.close();
      await rls.stop();
    }
  });
});
