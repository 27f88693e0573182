import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RedisServer } from '@floodgate/test-support';
import { ManualClock, MemoryStore } from 'floodgate';
import { loadRlsConfig } from '../src/rls/config.js';
import type { RlsSettings } from '../src/rls/rls.js';
import { RateLimitService } from '../src/rls/service.js';
import { ask, type Entry, jsonOf, type Reply, type RlsClient, withRls } from './helpers/rls.js';

// envoyproxy/ratelimit's own expectations, from its config and integration tests, as data
// (peer/envoyproxy-ratelimit/cases.json, over its YAML files vendored beside it), asked of `floodgate rls`
// over gRPC. Where Floodgate answers otherwise on purpose, the case says so (`differs`) and docs/rls.md lists it.

const PEER = fileURLToPath(new URL('./peer/envoyproxy-ratelimit/', import.meta.url));

interface Limit {
  requests_per_unit: number;
  unit: string;
  name?: string;
}
interface Lookup {
  entries: Entry[];
  /** The limit upstream's GetLimit finds: none (null), `unlimited`, or one. */
  limit: Limit | 'unlimited' | null;
  /** upstream's stat key after the domain, which is Floodgate's descriptor label. */
  metric?: string;
  /** Floodgate's label when it differs: a wildcard value of a detailed_metric descriptor is a digest. */
  floodgateMetric?: string;
  /** A limit sent with the descriptor. */
  send?: Limit;
  shadow?: boolean;
  /** The `metadata` of the response's dynamic_metadata (the group's settings turn it on). */
  metadata?: Record<string, unknown>;
  /** Why the case does not hold yet. */
  todo?: string;
}
interface Expected {
  overall: string;
  /**
   * Per descriptor: code, requests_per_unit and unit of current_limit (null: none), limit_remaining.
   * Absent where upstream's test asserts only the HTTP answer (its integration-test scripts).
   */
  statuses?: [string, number | null, string | null, number][];
  /** The `metadata` of the response's dynamic_metadata; null: none. */
  metadata?: Record<string, unknown> | null;
  differs?: string;
}
interface Step {
  note?: string;
  request: { domain: string; descriptors: Entry[][]; hits_addend: number };
  expect: Expected[];
  /** `domain/descriptor`: the descriptors counted by code so far. */
  metrics?: Record<string, Record<string, number>>;
}
/** Upstream's settings the case is run with (MERGE_DOMAIN_CONFIG, RESPONSE_DYNAMIC_METADATA), as Floodgate's. */
type Settings = Pick<RlsSettings, 'mergeDomains' | 'dynamicMetadata'>;
interface Cases {
  lookups: { from: string; files: string[]; domain: string; settings?: Settings; cases: Lookup[] }[];
  errors: { from: string; files: string[]; settings?: Settings; upstream: string; floodgate: string }[];
  sequences: {
    from: string;
    files: string[];
    settings?: Settings;
    /** Values sent as written (the file names them), rather than made the run's own. */
    exactValues?: boolean;
    steps: Step[];
  }[];
}

const cases = JSON.parse(readFileSync(join(PEER, 'cases.json'), 'utf8')) as Cases;

const scratch = mkdtempSync(join(tmpdir(), 'floodgate-rls-peer-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
/** A folder holding the case's files, in order (a file named twice is there twice). */
function folderOf(files: readonly string[]): string {
  const made = mkdtempSync(join(scratch, 'case-'));
  files.forEach((f, i) => {
    copyFileSync(join(PEER, f), join(made, `${i}-${basename(f)}`));
  });
  return made;
}

const request = (domain: string, entries: Entry[], send?: Limit) => ({
  domain,
  descriptors: [
    {
      entries: entries.map(([key, value]) => ({ key, value })),
      ...(send === undefined
        ? {}
        : { limit: { requests_per_unit: send.requests_per_unit, unit: send.unit } }),
    },
  ],
});

async function counted(adminUrl: string): Promise<string> {
  return (await fetch(`${adminUrl}/metrics`)).text();
}

const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** The `metadata` of an answer's dynamic_metadata, or null. */
function metadataOf(reply: Reply): unknown {
  return reply.dynamic_metadata === null ? null : (jsonOf(reply.dynamic_metadata).metadata ?? null);
}

/** Asks for one descriptor and checks what upstream's GetLimit finds for it, and its stat. */
async function lookUp(client: RlsClient, adminUrl: string, domain: string, c: Lookup): Promise<void> {
  const what = `${domain} ${JSON.stringify(c.entries)}`;
  const reply = await ask(client, request(domain, c.entries, c.send));
  const status = reply.statuses[0]!;
  assert.equal(status.code, 'OK', what);
  const found = status.current_limit;
  if (c.limit === null) assert.deepEqual([found, status.limit_remaining], [null, 0], what);
  else if (c.limit === 'unlimited')
    assert.deepEqual([found, status.limit_remaining], [null, 2 ** 32 - 1], what);
  else {
    assert.ok(found !== null, `${what}: no limit found`);
    assert.deepEqual([found.requests_per_unit, found.unit], [c.limit.requests_per_unit, c.limit.unit], what);
    if (c.limit.name !== undefined) assert.equal(found.name, c.limit.name, what);
  }
  if (c.metadata !== undefined) assert.deepEqual(metadataOf(reply), c.metadata, `${what}: metadata`);
  if (c.metric !== undefined) {
    const label =
      c.floodgateMetric === undefined ? literal(c.metric) : `${literal(c.floodgateMetric)}[\\w-]{8}`;
    assert.match(
      await counted(adminUrl),
      new RegExp(`floodgate_rls_descriptors_total\\{domain="${domain}",descriptor="${label}",`),
      what,
    );
  }
  if (c.shadow !== undefined && typeof c.limit === 'object' && c.limit !== null) {
    // Past its limit, a shadow-mode descriptor is still OK; the others are refused.
    let last = reply;
    for (let i = 0; i < c.limit.requests_per_unit; i++) last = await ask(client, request(domain, c.entries));
    assert.equal(last.overall_code, c.shadow ? 'OK' : 'OVER_LIMIT', `${what} past its limit`);
  }
}

describe('envoyproxy/ratelimit config_test.go: the limit each descriptor finds', () => {
  for (const group of cases.lookups) {
    const holding = group.cases.filter((c) => c.todo === undefined);
    it(`${group.from}: ${holding.length} descriptors of ${group.files.join(', ')}`, async () => {
      await withRls(
        folderOf(group.files),
        async (client, rls) => {
          for (const c of holding) await lookUp(client, rls.adminUrl!, group.domain, c);
        },
        'memory',
        {},
        group.settings,
      );
    });
    // Reported as to do, never silent: each runs, and says why it does not hold yet.
    for (const c of group.cases.filter((c) => c.todo !== undefined)) {
      it(`${group.from}: ${JSON.stringify(c.entries)}`, { todo: c.todo }, async () => {
        await withRls(folderOf(group.files), (client, rls) => lookUp(client, rls.adminUrl!, group.domain, c));
      });
    }
  }
});

describe('envoyproxy/ratelimit config_test.go: configurations refused, each naming its file and field', () => {
  for (const c of cases.errors) {
    const merged = c.settings?.mergeDomains === true ? ', domains merged' : '';
    it(`${c.from} (${c.files.map((f) => basename(f)).join(' + ')}${merged}): upstream "${c.upstream}"`, () => {
      assert.throws(
        () => loadRlsConfig(folderOf(c.files), { merge: c.settings?.mergeDomains ?? false }),
        new RegExp(c.floodgate),
      );
    });
  }
});

let redis: RedisServer;
before(async () => {
  redis = await RedisServer.start();
});
after(() => redis.stop());

const HELD = Math.floor(Date.now() / 3_600_000) * 3_600_000 + 1_800_500;

for (const store of ['memory', 'redis'] as const) {
  describe(`envoyproxy/ratelimit integration_test.go, ${store} store`, () => {
    for (const sequence of cases.sequences) {
      it(`${sequence.from}: ${sequence.steps.reduce((n, s) => n + s.expect.length, 0)} calls`, async () => {
        await withRls(
          folderOf(sequence.files),
          async (client: RlsClient, rls) => {
            // Values of their own per run, as upstream's random ones: a Redis shared by runs starts afresh.
            const run = `-${store}-${Date.now()}`;
            for (const step of sequence.steps) {
              const sent = {
                domain: step.request.domain,
                hits_addend: step.request.hits_addend,
                descriptors: step.request.descriptors.map((entries) => ({
                  entries: entries.map(([key, value]) => ({
                    key,
                    value: sequence.exactValues === true ? value : `${value}${run}`,
                  })),
                })),
              };
              for (const [i, expected] of step.expect.entries()) {
                const reply = await ask(client, sent);
                const what = `${step.note ?? JSON.stringify(step.request)}, call ${i + 1}`;
                assert.equal(reply.overall_code, expected.overall, what);
                if (expected.statuses !== undefined)
                  assert.deepEqual(
                    reply.statuses.map((s) => [
                      s.code,
                      s.current_limit?.requests_per_unit ?? null,
                      s.current_limit?.unit ?? null,
                      s.limit_remaining,
                    ]),
                    expected.statuses,
                    what,
                  );
                if (expected.metadata !== undefined)
                  assert.deepEqual(metadataOf(reply), expected.metadata, `${what}: metadata`);
              }
              const text = await counted(rls.adminUrl!);
              for (const [at, codes] of Object.entries(step.metrics ?? {})) {
                // A descriptor's path may hold a `/` (a wildcard's value): the domain is up to the first.
                const domain = at.slice(0, at.indexOf('/'));
                const descriptor = at.slice(at.indexOf('/') + 1);
                for (const [code, n] of Object.entries(codes)) {
                  const series = `floodgate_rls_descriptors_total{domain="${domain}",descriptor="${descriptor}",code="${code}",shadow="false"} ${n}`;
                  assert.ok(text.includes(series), `${series} in\n${text}`);
                }
              }
            }
          },
          store === 'memory' ? 'memory' : `redis://127.0.0.1:${redis.port}`,
          // Windows are aligned to their unit: the service's time is held in the middle of an hour, so
          // a wall clock crossing a second or a minute mid-sequence cannot start a new one.
          { now: () => HELD },
          sequence.settings,
        );
      });
    }
  });
}

describe('envoyproxy/ratelimit integration_test.go: duration_until_reset', () => {
  it('counts down between two calls (2 s on an injected clock, instead of a sleep)', async () => {
    const clock = new ManualClock();
    const config = loadRlsConfig(folderOf(['integration/another.yaml']));
    const service = new RateLimitService(config, new MemoryStore({ clock }), () => clock.now());
    const call = {
      domain: 'another',
      hitsAddend: 1,
      descriptors: [{ entries: [{ key: 'key4', value: 'durTest' }] }],
    };
    const first = await service.decide(call);
    clock.advance(2000);
    const second = await service.decide(call);
    assert.equal(first.statuses[0]!.durationUntilReset! - second.statuses[0]!.durationUntilReset!, 2000);
  });
});
