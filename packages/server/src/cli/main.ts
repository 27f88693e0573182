#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { ProxyConfigError } from '../proxy/config.js';
import { startProxy } from '../proxy/proxy.js';
import { ConfigError, resolveConfig } from '../server/config.js';
import { DatabaseError } from '../server/database.js';
import { StartError, serve } from '../server/serve.js';
import { redact } from '../shared/redact.js';
import { runDemo } from './demo.js';
import { proxyConfigFromArgs } from './proxy.js';
import { UsageError, users } from './users.js';

const USAGE = `usage: floodgate <command> [options]

commands:
  serve   the continents API, rate-limited per user (HTTP Basic), on embedded defaults
          --port N (8080)  --host H (127.0.0.1)  --db URL (sqlite:./floodgate.db; sqlite::memory:; mysql://...)
          --redis URL (redis://, rediss://, redis-cluster://h:p,h:p; default: in memory)
          --limit N (5)  --window DURATION (60s)  --algorithm NAME (fixed-window)  --config FILE.yaml
          each also from FLOODGATE_PORT, FLOODGATE_HOST, ... and from the config file
  proxy   rate-limit any HTTP service: a gateway in front of it
          --config FILE.yaml (rules, keys, JWT, shadow mode...; reloaded on SIGHUP and on change)
          or, for one limit per client IP: --upstream URL  --port N (8080)  --host H (127.0.0.1)
          --limit N (100)  --window DURATION (1m)  --algorithm NAME (token-bucket)  --redis URL
          --admin-port N (9464: /metrics and /health)  --shadow (log and count, never refuse)
  users   add NAME | passwd NAME (password from a prompt or stdin) | list | remove NAME   [--db URL]
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

const SERVE_OPTIONS = {
  port: { type: 'string' },
  host: { type: 'string' },
  db: { type: 'string' },
  redis: { type: 'string' },
  limit: { type: 'string' },
  window: { type: 'string' },
  algorithm: { type: 'string' },
  grace: { type: 'string' },
  config: { type: 'string' },
} as const;

async function runServe(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: SERVE_OPTIONS, strict: true });
  const running = await serve(resolveConfig(values));
  await untilSignalled(running.stop);
  return 0;
}

async function untilSignalled(stop: () => Promise<void>, onHangup?: () => void): Promise<void> {
  await new Promise<void>((resolve) => {
    const end = () => {
      process.off('SIGINT', end);
      process.off('SIGTERM', end);
      if (onHangup !== undefined) process.off('SIGHUP', onHangup);
      stop().then(resolve, resolve);
    };
    process.on('SIGINT', end);
    process.on('SIGTERM', end);
    if (onHangup !== undefined) process.on('SIGHUP', onHangup);
  });
}

async function runProxy(args: string[]): Promise<number> {
  const { config, file } = proxyConfigFromArgs(args);
  const running = await startProxy(config, file === undefined ? {} : { file, watch: true });
  await untilSignalled(running.stop, () => void running.reload());
  return 0;
}

async function runUsers(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { db: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  const db = values.db ?? process.env.FLOODGATE_DB ?? 'sqlite:./floodgate.db';
  const out = await users(positionals[0], positionals[1], db);
  if (out !== '') process.stdout.write(`${out}\n`);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'serve') return await runServe(rest);
    if (command === 'users') return await runUsers(rest);
    if (command === 'proxy') return await runProxy(rest);
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
    // Messages may echo what the operator gave, URLs with passwords included.
    process.stderr.write(`floodgate: ${redact((error as Error).message)}\n`);
    // 1: the environment is wrong (database, Redis, port); 2: the command line or configuration is.
    if (error instanceof StartError || error instanceof DatabaseError) return 1;
    if (error instanceof ConfigError || error instanceof ProxyConfigError || error instanceof UsageError)
      return 2;
    if ((error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) return 2;
    if (error instanceof RangeError || error instanceof TypeError) return 2;
    process.stderr.write(`${redact(String((error as Error).stack))}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
