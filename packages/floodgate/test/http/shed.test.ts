import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request } from 'node:http';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import { Shedder } from '../../src/limiter/shedder.js';
import { MemoryStore } from '../../src/stores/memory.js';
import { ManualTimers } from '../helpers/manual-timers.js';
import { FRAMEWORKS, holdRequests, onCpuRequest } from './servers.js';

// Load shedding through every adapter, on real servers: requests held at a gate fill the server's
// concurrency limit; those past it get 503 at once; every slot comes back, however its request ended.
// Shedders that count slots exactly do not watch the event loop (a busy machine's late loop would shed
// too); the CPU-bound test watches it on timers of its own.

const TYPE = 'https://iana.org/assignments/http-problem-types#temporary-reduced-capacity';

/** Resolves once `check` holds, polling each turn of the event loop (no timer, no sleep). */
async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000 && !check(); i++) await new Promise((r) => setImmediate(r));
  assert.ok(check(), 'the condition never held');
}

/**
 * Ten held requests against a shedder of five slots: four go on (the fifth slot is critical's), six get 503
 * at once; then the gate opens. Returns the ten answers.
 */
async function fillFive(url: string, shedder: Shedder): Promise<Response[]> {
  const open = holdRequests();
  try {
    const replies = Array.from({ length: 10 }, () => fetch(`${url}/wait`));
    await until(() => shedder.inflight === 4 && shedder.stats.shed.default === 6);
    open();
    const answers = await Promise.all(replies);
    assert.deepEqual(answers.map((r) => r.status).sort(), [200, 200, 200, 200, 503, 503, 503, 503, 503, 503]);
    return answers;
  } finally {
    open();
  }
}

for (const [name, start] of Object.entries(FRAMEWORKS)) {
  describe(`load shedding through ${name}`, () => {
    it('admits up to the limit, answers the rest 503 at once, and frees every slot', async () => {
      // The default class fills 80% of the limit: 4 of 5 (the fifth stays for critical).
      const shedder = new Shedder({ limit: { algorithm: 'aimd', initialLimit: 5 }, eventLoop: false });
      const server = await start({ policies: { limit: 1000, window: '1m' }, shed: shedder });
      try {
        const answers = await fillFive(server.url, shedder);
        const refused = answers.find((r) => r.status === 503)!;
        assert.equal(refused.headers.get('retry-after'), '1');
        assert.match(refused.headers.get('content-type') ?? '', /application\/problem\+json/);
        const body = (await refused.json()) as { type: string; status: number };
        assert.equal(body.type, TYPE);
        assert.equal(body.status, 503);
        await until(() => shedder.inflight === 0);
        assert.equal(shedder.stats.admitted, 4);
      } finally {
        await server.close();
      }
    });

    it('sheds with no policies and no limiter: no rate limit, no header fields, no store', async () => {
      const shedder = new Shedder({ limit: { algorithm: 'aimd', initialLimit: 5 }, eventLoop: false });
      const server = await start({ shed: shedder });
      try {
        await fillFive(server.url, shedder);
        // Past the shedder nothing counts: far more requests than any policy would allow, none refused.
        const passed = await Promise.all(
          Array.from({ length: 200 }, () =>
            fetch(`${server.url}/decision`).then(async (r) => ({
              status: r.status,
              fields: [...r.headers.keys()].filter((name) => name.startsWith('ratelimit')),
              body: await r.text(),
            })),
          ),
        );
        const shed = passed.filter((r) => r.status === 503).length;
        assert.equal(shed, shedder.stats.shed.default - 6, 'a refusal is a shed one, never a 429');
        for (const r of passed.filter((r) => r.status !== 503)) {
          assert.deepEqual(r, { status: 200, fields: [], body: 'none' });
        }
        await until(() => shedder.inflight === 0);
      } finally {
        await server.close();
      }
    });

    it('sheds alone with the deny and allow lists still applied', async () => {
      const shedder = new Shedder({ limit: { algorithm: 'aimd', initialLimit: 5 }, eventLoop: false });
      const denied = await start({ shed: shedder, deny: ['127.0.0.0/8'] });
      try {
        assert.equal((await fetch(`${denied.url}/`)).status, 403);
      } finally {
        await denied.close();
      }
      const allowed = await start({ shed: shedder, allow: ['127.0.0.1'], deny: ['127.0.0.0/8'] });
      try {
        assert.equal((await fetch(`${allowed.url}/`)).status, 403, 'deny wins, as with limits');
      } finally {
        await allowed.close();
      }
      assert.equal(shedder.inflight, 0);
    });

    it('a CPU-bound handler: once the event loop has run late for 100 ms, requests that waited are 503, counted', async () => {
      // Time moved by hand: each /cpu request holds the loop 5 ms; the watch's tick runs only when the test
      // gives the loop its turn (timers.advance), as Node runs timers between batches of I/O.
      const timers = new ManualTimers(0);
      const shedder = new Shedder({ timers, limit: { algorithm: 'aimd', initialLimit: 1000 } });
      onCpuRequest(() => {
        timers.t += 5;
      });
      const server = await start({ shed: shedder });
      const { port } = new URL(server.url);
      /** `n` requests on `n` connections, written at once: the server reads them in one batch. */
      const batch = async (n: number) => {
        const sockets = await Promise.all(
          Array.from({ length: n }, () => {
            const socket = connect(Number(port), '127.0.0.1');
            return once(socket, 'connect').then(() => socket);
          }),
        );
        const replies = sockets.map((socket) => {
          let text = '';
          socket.on('data', (chunk) => {
            text += chunk;
          });
          return once(socket, 'close').then(() => Number(text.slice(9, 12)));
        });
        for (const socket of sockets)
          socket.write('GET /cpu HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        return (await Promise.all(replies)).sort();
      };
      try {
        // One long batch (150 ms) is no standing queue: the tick has not run late yet.
        assert.deepEqual(await batch(30), Array(30).fill(200));
        timers.advance(0); // the tick, 145 ms late
        // The loop late since 15 ms, for 135 ms now: 10 ms of work per batch, then 503 to the rest.
        const second = await batch(30);
        assert.deepEqual(second, [...Array(3).fill(200), ...Array(27).fill(503)]);
        assert.equal(shedder.stats.waitedTooLong, 27);
        assert.equal(shedder.stats.shed.default, 27);
        timers.advance(0); // late again, by what the batch worked
        timers.advance(5);
        timers.advance(5); // on time: drained
        assert.deepEqual(await batch(5), Array(5).fill(200));
      } finally {
        onCpuRequest(() => {});
        shedder.close();
        await server.close();
      }
    });

    it('a client that goes away still gives its slot back', async () => {
      const shedder = new Shedder({ limit: { algorithm: 'aimd', initialLimit: 4 }, eventLoop: false });
      const server = await start({ policies: { limit: 1000, window: '1m' }, shed: shedder });
      const open = holdRequests();
      try {
        const req = request(`${server.url}/wait`);
        req.on('error', () => {});
        req.end();
        await until(() => shedder.inflight === 1);
        req.destroy();
        // Frameworks see the disconnect when the response ends or the socket closes.
        open();
        await until(() => shedder.inflight === 0);
      } finally {
        open();
        await server.close();
      }
    });

    it('five clients giving up 2 ms into their requests change the limit by at most 10%', async () => {
      // The shedder's time is the test's: every request takes exactly what the clock is moved by.
      const clock = { t: 0, now: () => clock.t };
      const shedder = new Shedder({ limit: 'gradient2', clock });
      const server = await start({ policies: { limit: 1000, window: '1m' }, shed: shedder });
      /** `n` requests admitted together; after `ms`, they complete (or their clients give up). */
      const batch = async (n: number, ms: number, abort: boolean) => {
        const open = holdRequests();
        const admitted = shedder.stats.admitted + n;
        const clients = Array.from({ length: n }, () => new AbortController());
        const replies = clients.map((c) =>
          fetch(`${server.url}/wait`, { signal: c.signal }).then(
            (r) => r.text(),
            () => 'gave up',
          ),
        );
        await until(() => shedder.stats.admitted === admitted); // the guard has decided on each
        clock.t += ms;
        if (abort) for (const c of clients) c.abort();
        else open();
        await until(() => shedder.inflight === 0);
        open();
        return Promise.all(replies);
      };
      try {
        // A server whose requests take 20 ms (five at a time: too few to grow the limit).
        for (let i = 0; i < 4; i++) assert.deepEqual(await batch(5, 20, false), Array(5).fill('ok'));
        const before = shedder.limit;
        assert.deepEqual(await batch(5, 2, true), Array(5).fill('gave up'));
        // A healthy load after them: were the aborts latency samples, 2 ms would be the server's norm and
        // every 20 ms request a sign of overload.
        for (let i = 0; i < 8; i++) await batch(5, 20, false);
        const after = shedder.limit;
        assert.ok(
          Math.abs(after - before) <= before * 0.1,
          `limit ${before} before the aborts, ${after} after`,
        );
      } finally {
        await server.close();
      }
    });

    it('a handler that never answers holds no slot once its clients have gone', async () => {
      const shedder = new Shedder({ limit: { algorithm: 'aimd', initialLimit: 16 }, eventLoop: false });
      const server = await start({ policies: { limit: 1000, window: '1m' }, shed: shedder });
      const open = holdRequests(); // opened only after the test: the handlers never answer
      try {
        const clients = Array.from({ length: 12 }, () => new AbortController());
        const replies = clients.map((c) => fetch(`${server.url}/wait`, { signal: c.signal }).catch(() => 0));
        await until(() => shedder.inflight === 12);
        for (const c of clients) c.abort();
        await Promise.all(replies);
        await until(() => shedder.inflight === 0);
        assert.equal((await fetch(`${server.url}/`)).status, 200, 'the server still admits');
      } finally {
        open();
        await server.close();
      }
    });

    it('a streamed body holds its slot until the stream ends', async () => {
      const shedder = new Shedder({ limit: { algorithm: 'aimd', initialLimit: 4 }, eventLoop: false });
      const server = await start({ policies: { limit: 1000, window: '1m' }, shed: shedder });
      const open = holdRequests();
      try {
        const res = await fetch(`${server.url}/stream`);
        assert.equal(res.status, 200);
        const reader = res.body!.getReader();
        const first = await reader.read();
        assert.equal(new TextDecoder().decode(first.value), 'first ');
        // The handler has returned and the client holds the first chunk: the response has not ended.
        assert.equal(shedder.inflight, 1, 'the slot is held while the body streams');
        open();
        let rest = '';
        for (let r = await reader.read(); !r.done; r = await reader.read())
          rest += new TextDecoder().decode(r.value);
        assert.equal(rest, 'last');
        await until(() => shedder.inflight === 0);
      } finally {
        open();
        await server.close();
      }
    });

    if (name !== 'node:http') {
      // (A raw node:http handler that throws leaves its response open: nothing ends it but the client.)
      it('a handler that crashes gives its slot back, and tells the shedder of trouble', async () => {
        const shedder = new Shedder({ limit: { algorithm: 'aimd', initialLimit: 10 }, eventLoop: false });
        const server = await start({ policies: { limit: 1000, window: '1m' }, shed: shedder });
        try {
          const replies = await Promise.all(Array.from({ length: 5 }, () => fetch(`${server.url}/boom`)));
          assert.deepEqual(
            replies.map((r) => r.status),
            [500, 500, 500, 500, 500],
          );
          await until(() => shedder.inflight === 0);
          assert.ok(shedder.limit < 10, `a 5xx counts as overload: limit ${shedder.limit}`);
        } finally {
          await server.close();
        }
      });
    }

    it('sheds lower classes first, by a priority function of the request', async () => {
      const shedder = new Shedder({ limit: { algorithm: 'aimd', initialLimit: 4 }, eventLoop: false });
      const server = await start({
        policies: { limit: 1000, window: '1m' },
        shed: shedder,
        priority: (req: unknown) => {
          const url = String((req as { url?: string }).url ?? (req as { req?: { url?: string } }).req?.url);
          return url.includes('critical') ? 'critical' : 'sheddable';
        },
      });
      const open = holdRequests();
      try {
        const low = Array.from({ length: 3 }, () => fetch(`${server.url}/wait?sheddable`));
        await until(() => shedder.inflight === 2 && shedder.stats.shed.sheddable === 1);
        const high = Array.from({ length: 3 }, () => fetch(`${server.url}/wait?critical`));
        await until(() => shedder.inflight === 4 && shedder.stats.shed.critical === 1);
        open();
        const lowCodes = (await Promise.all(low)).map((r) => r.status).sort();
        const highCodes = (await Promise.all(high)).map((r) => r.status).sort();
        assert.deepEqual(lowCodes, [200, 200, 503], 'sheddable fill half the limit');
        assert.deepEqual(highCodes, [200, 200, 503], 'critical the rest');
      } finally {
        open();
        await server.close();
      }
    });
  });
}

describe('load shedding options', () => {
  it('refuses a bad shed option or priority, naming it', async () => {
    const start = FRAMEWORKS['node:http']!;
    await assert.rejects(
      start({ policies: { limit: 1, window: '1m' }, shed: 3 }),
      /"shed" must be a Shedder/,
    );
    await assert.rejects(
      start({ policies: { limit: 1, window: '1m' }, shed: { limit: 'vegas' } }),
      /"shed\.limit" must be "gradient2", "aimd"/,
    );
    await assert.rejects(start({}), /"policies" must be given \(or a limiter, or only shed\)/);
    await assert.rejects(
      start({ shed: {}, store: new MemoryStore() }),
      /"policies" must be given \(or a limiter, or only shed\)/,
    );
    // Options of per-client limits would do nothing with shedding alone.
    const limitsOnly: Record<string, unknown> = {
      cost: 2,
      countOnly: 'failed',
      headers: 'draft-7',
      onLimited: (): undefined => undefined,
      key: (): string => 'k',
    };
    for (const [name, value] of Object.entries(limitsOnly)) {
      await assert.rejects(
        start({ shed: {}, [name]: value }),
        new RegExp(`"${name}" must be absent without policies or a limiter`),
      );
    }
    await assert.rejects(
      start({ policies: { limit: 1, window: '1m' }, priority: 'high' }),
      /"priority" must be a function/,
    );
  });
});
