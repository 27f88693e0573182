import assert from 'node:assert/strict';
import type { Agent } from 'node:http';
import { describe, it } from 'node:test';
import {
  overdue,
  POOL_IDLE,
  type SocketView,
  sweepEvery,
  type TimeoutKind,
  Timeouts,
  type UpstreamRequest,
} from '../src/proxy/timeouts.js';

// The proxy's timeout sweep, on plain values and a hand-moved clock. proxy.test.ts checks each timeout end
// to end against real upstreams.

const limits = { connect: 100, response: 300, idle: 200 };

class FakeSocket implements SocketView {
  connecting = true;
  bytesRead = 0;
  bytesWritten = 0;
  destroyed = false;
  destroy() {
    this.destroyed = true;
  }
}

class FakeRequest implements UpstreamRequest {
  socket: FakeSocket | null = null;
  reusedSocket = false;
  writableFinished = false;
}

function setup(start = 0) {
  let now = start;
  const expired: TimeoutKind[] = [];
  const timeouts = new Timeouts(undefined, () => now);
  const request = new FakeRequest();
  const exchange = timeouts.watch(request, limits, (kind) => expired.push(kind));
  return {
    request,
    exchange,
    expired,
    timeouts,
    at(t: number) {
      now = t;
      timeouts.sweep();
    },
    /** Gives the request a connected socket, the request already sent when `sent`. */
    connected(sent: boolean): FakeSocket {
      const socket = new FakeSocket();
      socket.connecting = false;
      request.socket = socket;
      request.writableFinished = sent;
      return socket;
    },
  };
}

describe('proxy timeouts: connect', () => {
  it('times the wait for a connection from the request arrival, a wait for a pooled one included', () => {
    const s = setup(1000);
    s.at(1050);
    s.request.socket = new FakeSocket(); // assigned, still connecting
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
    s.request.socket = new FakeSocket();
    s.request.socket.connecting = false;
    s.at(150);
    assert.deepEqual(s.expired, []);
  });
});

describe('proxy timeouts: response', () => {
  it('times a request on a fresh connection from the sweep that first saw it sent, so never early', () => {
    const s = setup();
    s.connected(true);
    s.at(50); // first seen sent here: it may have been sent at any time since 0
    s.at(349);
    assert.deepEqual(s.expired, []);
    s.at(350);
    assert.deepEqual(s.expired, ['response-timeout']);
  });

  it('times a request on a pooled connection from its arrival, when that connection was ready', () => {
    const s = setup();
    s.connected(true);
    s.request.reusedSocket = true;
    s.at(50);
    s.at(299);
    assert.deepEqual(s.expired, []);
    s.at(300);
    assert.deepEqual(s.expired, ['response-timeout']);
  });

  it('does not count the time a long upload takes, only the wait after it', () => {
    const s = setup();
    const socket = s.connected(false);
    for (let t = 50; t <= 1000; t += 50) {
      socket.bytesWritten += 65_536;
      s.at(t);
    }
    s.request.writableFinished = true;
    s.at(1050);
    s.at(1349);
    assert.deepEqual(s.expired, []);
    s.at(1350);
    assert.deepEqual(s.expired, ['response-timeout']);
  });

  it('is over once the response head arrived', () => {
    const s = setup();
    const socket = s.connected(true);
    s.at(50);
    s.exchange.responded = true;
    for (let t = 100; t <= 1000; t += 50) {
      socket.bytesRead += 1000;
      s.at(t);
    }
    assert.deepEqual(s.expired, []);
  });
});

describe('proxy timeouts: idle', () => {
  it('cuts an upload that stalls', () => {
    const s = setup();
    const socket = s.connected(false);
    socket.bytesWritten = 10;
    s.at(50);
    s.at(249);
    assert.deepEqual(s.expired, []);
    s.at(250);
    assert.deepEqual(s.expired, ['idle-timeout']);
  });

  it('cuts a response body that stalls, not one still moving', () => {
    const s = setup();
    const socket = s.connected(true);
    s.exchange.responded = true;
    s.at(50);
    socket.bytesRead += 1;
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

  it('closes pooled connections idle for POOL_IDLE, and only those', () => {
    let now = 0;
    const quiet = new FakeSocket();
    const busy = new FakeSocket();
    const agent = { freeSockets: { 'upstream:80:': [quiet, busy] } } as unknown as Agent;
    const timeouts = new Timeouts(agent, () => now);
    for (now = 0; now <= POOL_IDLE; now += 500) {
      busy.bytesRead += 100; // used between two sweeps
      timeouts.sweep();
    }
    assert.equal(quiet.destroyed, true);
    assert.equal(busy.destroyed, false);
  });

  it('keeps a pooled connection that has not been idle long enough', () => {
    let now = 0;
    const socket = new FakeSocket();
    const timeouts = new Timeouts({ freeSockets: { a: [socket] } } as unknown as Agent, () => now);
    timeouts.sweep();
    now = POOL_IDLE - 1;
    timeouts.sweep();
    assert.equal(socket.destroyed, false);
    now = POOL_IDLE;
    timeouts.sweep();
    assert.equal(socket.destroyed, true);
  });
});

// `overdue` alone: a first look at an exchange that is over on arrival.
describe('proxy timeouts: overdue', () => {
  it('reports nothing for a connected request waiting less than its response timeout', () => {
    const s = setup();
    s.connected(true);
    assert.equal(overdue(s.exchange, 100), undefined);
    assert.equal(overdue(s.exchange, 399), undefined);
    assert.equal(overdue(s.exchange, 400), 'response-timeout');
  });
});
