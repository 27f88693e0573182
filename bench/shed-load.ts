// The open-loop load of bench/shed.ts: Poisson arrivals at a given rate, sent on schedule whatever the
// answers, each request's latency counted from when it was due (so a load generator that falls behind
// shows as latency, never hides it: no coordinated omission).
import { Agent, request } from 'node:http';

export interface Answer {
  /** When it was due, ms from the start of the run. */
  readonly due: number;
  /** 200, 503, or 0 (a timeout, a reset, an abort). */
  readonly status: number;
  /** From when it was due to the end of the response, ms. */
  readonly latency: number;
}

export interface LoadOptions {
  readonly port: number;
  /** Arrivals per second, on average. */
  readonly rate: number;
  readonly ms: number;
  /** A client gives up on a request after this long (counted as status 0). */
  readonly timeout: number;
  /** Called at these times (ms into the run), e.g. to slow the database down. */
  readonly at?: readonly { readonly ms: number; readonly run: () => void }[];
}

/** A pseudo-random source with a seed, so runs of the same shape offer the same arrivals. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function openLoop(options: LoadOptions): Promise<Answer[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  const next = random(options.rate * 7919 + options.ms);
  const answers: Answer[] = [];
  const pending: Promise<void>[] = [];
  const events = [...(options.at ?? [])].sort((a, b) => a.ms - b.ms);
  const start = performance.now();
  let due = 0;
  const send = (at: number) =>
    new Promise<void>((done) => {
      const finish = (status: number) => {
        answers.push({ due: at, status, latency: performance.now() - start - at });
        done();
      };
      const req = request(
        { host: '127.0.0.1', port: options.port, path: '/', agent, timeout: options.timeout },
        (res) => {
          res.resume();
          res.on('end', () => finish(res.statusCode ?? 0));
          res.on('error', () => finish(0));
        },
      );
      req.on('timeout', () => req.destroy());
      req.on('error', () => finish(0));
      req.end();
    });
  await new Promise<void>((finish) => {
    const tick = () => {
      const now = performance.now() - start;
      while (events.length > 0 && events[0]!.ms <= now) events.shift()!.run();
      for (; due <= now && due < options.ms; due += -Math.log(1 - next()) * (1000 / options.rate)) {
        pending.push(send(due));
      }
      if (due >= options.ms) finish();
      else setTimeout(tick, 1);
    };
    tick();
  });
  await Promise.all(pending);
  agent.destroy();
  return answers;
}

/** `n` requests whose clients give up `ms` after sending them (early aborts). */
export function abortive(port: number, n: number, ms: number): void {
  for (let i = 0; i < n; i++) {
    const req = request({ host: '127.0.0.1', port, path: '/' });
    req.on('error', () => {});
    req.end();
    setTimeout(() => req.destroy(), ms);
  }
}
