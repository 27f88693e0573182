import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { RedisServer } from '@floodgate/test-support';
import type { PolicySpec } from '../../src/core/policy.js';

// 4 processes x 250 concurrent requests on one identifier against one Redis: exactly the limit gets through.

const PROCESSES = 4;
const REQUESTS = 250;
let server: RedisServer;
let workers: ChildProcess[] = [];

before(async () => {
  server = await RedisServer.start();
  workers = Array.from({ length: PROCESSES }, () =>
    fork(new URL('./workers/consumer.ts', import.meta.url), {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, REDIS_PORT: String(server.port) },
    }),
  );
  await Promise.all(workers.map((w) => once(w, 'message')));
});

after(async () => {
  for (const w of workers) w.disconnect();
  await Promise.all(workers.map((w) => (w.exitCode === null ? once(w, 'exit') : undefined)));
  await server.stop();
});

async function round(
  key: string,
  policy: PolicySpec | PolicySpec[],
  maxBatch: number,
  leases = false,
): Promise<{ allowed: number; lapsed: number }> {
  const answers = workers.map(
    (w) => once(w, 'message') as Promise<[{ allowed: number; failures: number; lapsed: number }]>,
  );
  for (const w of workers) w.send({ key, policy, requests: REQUESTS, maxBatch, leases });
  const results = (await Promise.all(answers)).map(([r]) => r);
  assert.deepEqual(
    results.map((r) => r.failures),
    workers.map(() => 0),
    'no Redis call failed',
  );
  return {
    allowed: results.reduce((sum, r) => sum + r.allowed, 0),
    lapsed: results.reduce((sum, r) => sum + r.lapsed, 0),
  };
}

const POLICIES: [string, PolicySpec][] = [
  ['fixed window of 5', { algorithm: 'fixed-window', limit: 5, window: '1h' }],
  // 5 per day: no token comes back during the test.
  ['token bucket of 5', { algorithm: 'token-bucket', limit: 5, window: '1d' }],
];

describe(`exactness: ${PROCESSES} processes x ${REQUESTS} concurrent requests on one identifier`, () => {
  for (const [name, policy] of POLICIES) {
    for (const [mode, maxBatch] of [
      ['coalesced', 100],
      ['one script call per decision', 1],
    ] as const) {
      it(`${name} allows exactly 5, five times over (${mode})`, async () => {
        for (let i = 0; i < 5; i++) {
          const { allowed } = await round(`exact:${name}:${mode}:${i}`, policy, maxBatch);
          assert.equal(allowed, 5, `round ${i}: ${allowed} of ${PROCESSES * REQUESTS} allowed`);
        }
      });
    }
  }
});

describe(`quota leases: ${PROCESSES} processes x ${REQUESTS} concurrent requests on one identifier`, () => {
  const cases: [string, PolicySpec | PolicySpec[], number][] = [
    ['fixed window of 5', { algorithm: 'fixed-window', limit: 5, window: '1h' }, 5],
    ['fixed window of 500', { algorithm: 'fixed-window', limit: 500, window: '1h' }, 500],
    ['token bucket of 500', { algorithm: 'token-bucket', limit: 500, window: '1d' }, 500],
    [
      'a fixed window of 300 and a token bucket of 400, together',
      [
        { algorithm: 'fixed-window', limit: 300, window: '1h' },
        { algorithm: 'token-bucket', limit: 400, window: '1d' },
      ],
      300,
    ],
  ];
  for (const [name, policy, limit] of cases) {
    it(`${name}: never more than ${limit}; short of it only by units a lease held unspent`, async () => {
      for (let i = 0; i < 3; i++) {
        const { allowed, lapsed } = await round(`leased:${name}:${i}`, policy, 100, true);
        assert.ok(allowed <= limit, `round ${i}: ${allowed} allowed, over ${limit}`);
        assert.equal(allowed + lapsed, limit, `round ${i}: ${allowed} allowed, ${lapsed} lapsed`);
      }
    });
  }
});
