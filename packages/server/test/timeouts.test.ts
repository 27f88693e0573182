import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { overdue, sweepEvery, type TimeoutKind, Timeouts } from '../src/proxy/timeouts.js';

// The proxy's timeout sweep, on plain values and a hand-moved clock. proxy.test.ts checks each timeout end
// to end against real upstreams.

const limits = { connect: 100, response: 300, idle: 200 };

function setup(start = 0) {
  let now = start;
  const expired: TimeoutKind[] = [];
  const timeouts = new Timeouts(() => now);
  const exchange = timeouts.watch(limits, (kind) => expired.push(kind));
  return {
    exchange,
    expired,
    timeouts,
    /** Moves the clock without a sweep. */
    set(t: number) {
      now = t;
    },
    at(t: number) {
      now = t;
      timeouts.sweep();
    },
    /** The request is on a connection, and fully sent at the current time when `sent`. */
    connected(sent: boolean) {
      exchange.connected = true;
      if (sent) timeouts.sent(exchange);
    },
  };
}

describe('proxy timeouts: connect', () => {
  it('times the wait for a connection from the request arrival, a wait for a pooled one included', () => {
    const s = setup(1000);
    s.at(1050);
    s.at(1099);
    assert.deepEqual(s.expired, []);
    s.at(1100);
    assert.deepEqual(s.expired, ['connect-timeout']);
    s.at(2000);
    assert.deepEqual(s.expired, ['connect-timeout'], 'an expired exchange is no longer watched');
    assert.equal(s.timeouts.size, 0);
  });

  it('stops timing the connect once connected', () => {
    const s = setup();
    s.connected(false);
    s.exchange.bytes = 10;
    s.at(150);
    assert.deepEqual(s.expired, []);
  });
});

describe('proxy timeouts: response', () => {
  it('times the wait for the response head from the moment the request was fully sent', () => {
    const s = setup();
    s.set(30);
    s.connected(true);
    s.at(50);
    s.at(329);
    assert.deepEqual(s.expired, []);
    s.at(330);
    assert.deepEqual(s.expired, ['response-timeout']);
  });

  it('does not count the time a long upload takes, only the wait after it', () => {
    const s = setup();
    s.connected(false);
    for (let t = 50; t <= 1000; t += 50) {
      s.exchange.bytes += 65_536;
      s.at(t);
    }
    s.set(1020);
    s.timeouts.sent(s.exchange);
    s.at(1050);
    s.at(1319);
    assert.deepEqual(s.expired, []);
    s.at(1320);
    assert.deepEqual(s.expired, ['response-timeout']);
  });

  it('is over once the response head arrived', () => {
    const s = setup();
    s.connected(true);
    s.at(50);
    s.exchange.responded = true;
    for (let t = 100; t <= 1000; t += 50) {
      s.exchange.bytes += 1000;
      s.at(t);
    }
    assert.deepEqual(s.expired, []);
  });
});

describe('proxy timeouts: idle', () => {
  it('cuts an upload that stalls, timed from the sweep that first saw it still, so never early', () => {
    const s = setup();
    s.connected(false);
    s.exchange.bytes = 10;
    s.at(50);
    s.at(249);
    assert.deepEqual(s.expired, []);
    s.at(250);
    assert.deepEqual(s.expired, ['idle-timeout']);
  });

  it('cuts a response body that stalls, not one still moving', () => {
    const s = setup();
    s.connected(true);
    s.exchange.responded = true;
    s.at(50);
    s.exchange.bytes += 1;
    s.at(240);
    s.at(439);
    assert.deepEqual(s.expired, []);
    s.at(440);
    assert.deepEqual(s.expired, ['idle-timeout']);
  });
});

describe('proxy timeouts: the sweep', () => {
  it('forgets an exchange its owner stopped watching', () => {
    const s = setup();
    s.timeouts.unwatch(s.exchange);
    s.at(10_000);
    assert.deepEqual(s.expired, []);
    assert.equal(s.timeouts.size, 0);
  });

  it('sweeps four times per shortest timeout, between 10 ms and 1 s', () => {
    assert.equal(sweepEvery(limits), 25);
    assert.equal(sweepEvery({ connect: 5_000, response: 30_000, idle: 60_000 }), 1_000);
    assert.equal(sweepEvery({ connect: 1, response: 1, idle: 1 }), 10);
  });

  it('checks every exchange at each sweep, each against its own limits', () => {
    let now = 0;
    const expired: string[] = [];
    const timeouts = new Timeouts(() => now);
    const short = timeouts.watch({ ...limits, connect: 50 }, (kind) => expired.push(`short ${kind}`));
    timeouts.watch(limits, (kind) => expired.push(`long ${kind}`));
    now = 60;
    timeouts.sweep();
    assert.deepEqual(expired, ['short connect-timeout']);
    assert.equal(timeouts.size, 1);
    assert.equal(short.connected, false);
    now = 100;
    timeouts.sweep();
    assert.deepEqual(expired, ['short connect-timeout', 'long connect-timeout']);
  });
});

// `overdue` alone: a first look at an exchange that is over on arrival.
describe('proxy timeouts: overdue', () => {
  it('reports nothing for a connected request waiting less than its response timeout', () => {
    const s = setup();
    s.connected(true);
    assert.equal(overdue(s.exchange, 100), undefined);
    assert.equal(overdue(s.exchange, 299), undefined);
    assert.equal(overdue(s.exchange, 300), 'response-timeout');
  });
});
