import { type Decision, Limiter, ManualClock, type RatePolicySpec } from 'floodgate';

export interface DemoOptions {
  readonly algorithm: NonNullable<RatePolicySpec['algorithm']>;
  readonly limit: number;
  readonly window: string;
  readonly requests: number;
  readonly every: number;
}

/**
 * Replays the token-throttler tutorial's scenario (one identifier, 5 tokens per 10 s) on a simulated
 * clock: `requests` requests `every` ms apart, one line per decision.
 */
export function runDemo(options: DemoOptions): { lines: string[]; decisions: Decision[] } {
  const clock = new ManualClock(0);
  const limiter = new Limiter({
    clock,
    policies: {
      algorithm: options.algorithm,
      limit: options.limit,
      window: options.window as RatePolicySpec['window'],
    },
  });
  const decisions: Decision[] = [];
  const lines = [
    `policy ${limiter.policiesFor('user_id')[0]!.name}, ${options.requests} requests ${options.every} ms apart`,
  ];
  for (let i = 0; i < options.requests; i++) {
    const d = limiter.consumeSync('user_id');
    decisions.push(d);
    const t = `t=${(clock.now() / 1000).toFixed(1)}s`.padEnd(9);
    lines.push(
      d.allowed
        ? `${t} 200 allowed   remaining ${d.remaining}`
        : `${t} 429 limited   retry after ${Math.ceil(d.retryAfter / 1000)} s`,
    );
    clock.advance(options.every);
  }
  return { lines, decisions };
}
