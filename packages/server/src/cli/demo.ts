import { type Command, InvalidArgumentError, Option } from 'commander';
import { type Decision, isInvalidOption, Limiter, ManualClock } from 'floodgate';
import { usageError } from '../shared/errors.js';
import { flagOfPolicyOption, type PolicyFlags, policyFromFlags } from '../shared/policy-flags.js';

export interface DemoOptions extends PolicyFlags {
  readonly requests: number;
  readonly every: number;
}

/** The most requests a demo replays: each is a line of output, so more would only fill a terminal (or memory). */
export const MAX_DEMO_REQUESTS = 100_000;

/**
 * Replays the token-throttler tutorial's scenario (one identifier, 5 tokens per 10 s) on a simulated
 * clock: `requests` requests `every` ms apart, one line per decision.
 */
export function runDemo(options: DemoOptions): { lines: string[]; decisions: Decision[] } {
  const clock = new ManualClock(0);
  let limiter: Limiter;
  try {
    limiter = new Limiter({ clock, policies: policyFromFlags(options) });
  } catch (error) {
    if (!isInvalidOption(error)) throw error;
    const flag = flagOfPolicyOption(error.option);
    throw usageError(
      `${flag === undefined ? error.option : `--${flag}`} must be ${error.expected}; got ${error.got}`,
    );
  }
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

/** A flag's integer, from `min` to `max`; anything else is refused naming the range. */
function integer(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max)
      throw new InvalidArgumentError(`must be an integer from ${min} to ${max}`);
    return n;
  };
}

/** Declares `floodgate demo` on `command` (made by the program, so it shares the program's settings). */
export function demoCommand(command: Command): Command {
  return command
    .description('replay the token-bucket tutorial on a simulated clock')
    .addOption(new Option('--algorithm <name>', 'the algorithm').default('token-bucket'))
    .addOption(
      new Option('--limit <n>', 'requests per window').argParser(integer(1, 1_000_000_000)).default(5),
    )
    .addOption(new Option('--window <duration>', 'the window, or a concurrency lease timeout').default('10s'))
    .addOption(
      new Option('--requests <n>', 'how many requests').argParser(integer(1, MAX_DEMO_REQUESTS)).default(10),
    )
    .addOption(
      new Option('--every <ms>', 'ms between requests').argParser(integer(0, 86_400_000)).default(500),
    )
    .action((options: DemoOptions) => {
      process.stdout.write(`${runDemo(options).lines.join('\n')}\n`);
    });
}
