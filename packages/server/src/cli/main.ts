#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { runDemo } from './demo.js';

const USAGE = `usage: floodgate <command> [options]

commands:
  demo    replay the token-bucket tutorial on a simulated clock
          --algorithm NAME   (default token-bucket)   --limit N   (default 5)
          --window DURATION  (default 10s)            --requests N (default 10)  --every MS (default 500)
`;

function integer(value: string | undefined, option: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new RangeError(`option --${option} must be a non-negative integer; got "${value}"`);
  return n;
}

export function main(argv: string[]): number {
  const [command, ...rest] = argv;
  try {
    if (command === 'demo') {
      const { values } = parseArgs({
        args: rest,
        options: {
          algorithm: { type: 'string', default: 'token-bucket' },
          limit: { type: 'string' },
          window: { type: 'string', default: '10s' },
          requests: { type: 'string' },
          every: { type: 'string' },
        },
        strict: true,
      });
      const { lines } = runDemo({
        algorithm: values.algorithm as 'token-bucket',
        limit: integer(values.limit, 'limit', 5),
        window: values.window,
        requests: integer(values.requests, 'requests', 10),
        every: integer(values.every, 'every', 500),
      });
      process.stdout.write(`${lines.join('\n')}\n`);
      return 0;
    }
    if (command === undefined || command === 'help' || command === '--help') {
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    }
    process.stderr.write(`floodgate: unknown command "${command}"\n\n${USAGE}`);
    return 2;
  } catch (error) {
    process.stderr.write(`floodgate: ${(error as Error).message}\n`);
    return 2;
  }
}

process.exitCode = main(process.argv.slice(2));
