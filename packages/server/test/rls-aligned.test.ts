import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock, MemoryStore } from 'floodgate';
import { parseDomain } from '../src/rls/config.js';
import { RateLimitService } from '../src/rls/service.js';

// Fixed windows aligned to the unit's boundaries, as envoyproxy/ratelimit counts: on an injected clock.

const domain = parseDomain(
  {
    domain: 'a',
    descriptors: [{ key: 'k', rate_limit: { unit: 'minute', requests_per_unit: 2 } }],
  },
  'a.yaml',
);

describe('floodgate rls: fixed windows aligned to the unit', () => {
  it('a minute limit resets on the minute, however late in it the first request came; the waits end there', async () => {
    const clock = new ManualClock(1_800_000_000_000 + 59_000); // 59 s into a minute
    const service = new RateLimitService(new Map([['a', domain]]), new MemoryStore({ clock }), () =>
      clock.now(),
    );
    const call = (key: string) => ({
      domain: 'a',
      hitsAddend: 1,
      descriptors: [{ entries: [{ key, value: 'v' }] }],
    });
    const replies = await Promise.all([...Array(10)].map(() => service.decide(call('k'))));
    assert.equal(replies.filter((r) => r.overallCode === 'OK').length, 2);
    const refused = replies.find((r) => r.overallCode === 'OVER_LIMIT')!;
    assert.equal(refused.statuses[0]!.durationUntilReset, 1000);
    assert.deepEqual(
      refused.responseHeadersToAdd.filter(([n]) => n === 'Retry-After'),
      [['Retry-After', '1']],
    );
    clock.advance(1000);
    const next = await service.decide(call('k'));
    assert.equal(next.overallCode, 'OK');
    assert.equal(next.statuses[0]!.durationUntilReset, 60_000);
  });
});
