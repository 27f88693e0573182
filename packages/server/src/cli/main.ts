#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { isInvalidOption } from 'floodgate';
import { pino } from 'pino';
import { startProxy } from '../proxy/proxy.js';
import { checkRlsConfig } from '../rls/check.js';
import { startRls } from '../rls/rls.js';
import { resolveConfig } from '../serve/config.js';
import { serve } from '../serve/serve.js';
import { CliError, ENVIRONMENT } from '../shared/errors.js';
import { redact } from '../shared/redact.js';
import { createPrimary, isWorker, WorkerLink } from '../shared/workers.js';
import { demoCommand } from './demo.js';
import { checkProxyFile, type ProxyFlags, proxyConfigFromFlags, workersOf } from './proxy.js';
import { type RlsFlags, rlsSettingsFromFlags, switched, tlsFromFlags } from './rls.js';
import { type UserAction, users } from './users.js';

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/**
 * Resolves when SIGINT or SIGTERM arrives and `stop` has finished; SIGHUP, if handled, does not stop. A second
 * signal kills, unless `stubborn` (a worker of several, which Ctrl-C reaches as well as its primary's SIGTERM).
 */
async function untilSignalled(
  stop: () => Promise<void>,
  onHangup?: () => void,
  stubborn = false,
): Promise<void> {
  await new Promise<void>((resolve) => {
    const ignore = () => {};
    const end = () => {
      process.off('SIGINT', end);
      process.off('SIGTERM', end);
      if (onHangup !== undefined) process.off('SIGHUP', onHangup);
      if (stubborn) for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, ignore);
      stop().then(resolve, resolve);
    };
    process.on('SIGINT', end);
    process.on('SIGTERM', end);
    if (onHangup !== undefined) process.on('SIGHUP', onHangup);
  });
}

const dbOption = () =>
  new Option('--db <url>', 'the database: sqlite:PATH, sqlite::memory: or mysql://user:pass@host:port/db')
    .env('FLOODGATE_DB')
    .default('sqlite:./floodgate.db');

function program(): Command {
  const root = new Command('floodgate')
    .description("Floodgate's rate limits as ready-to-run services.")
    .version(version, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .helpCommand('help [command]', 'show help for a command')
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`floodgate: ${text.replace(/^error: /, '')}`) });

  root
    .command('serve')
    .description('the continents API, rate-limited per user (HTTP Basic), on embedded defaults')
    .option('--port <n>', 'port to listen on (FLOODGATE_PORT; default 8080)')
    .option('--host <host>', 'address to listen on (FLOODGATE_HOST; default 127.0.0.1)')
    .option('--db <url>', 'sqlite:PATH, sqlite::memory: or mysql://user:pass@host:port/db (FLOODGATE_DB)')
    .option(
      '--redis <url>',
      'redis://host:port[/db], rediss://... or redis-cluster://h:p,h:p (FLOODGATE_REDIS)',
    )
    .option(
      '--on-store-error <policy>',
      'with --redis, while it is down: open (let through), closed (503) or fallback (in memory; the default) (FLOODGATE_ON_STORE_ERROR)',
    )
    .option('--limit <n>', 'requests per window per user (FLOODGATE_LIMIT; default 5)')
    .option(
      '--window <duration>',
      'the window, or a concurrency lease timeout (FLOODGATE_WINDOW; default 60s)',
    )
    .option(
      '--algorithm <name>',
      'fixed-window, token-bucket, gcra, sliding-window-log, sliding-window-counter or concurrency (FLOODGATE_ALGORITHM)',
    )
    .option(
      '--grace <duration>',
      'at a stop, the longest wait for requests in flight (FLOODGATE_GRACE; default 10s)',
    )
    .option(
      '--trust-proxy <value>',
      'proxies believed about the client (X-Forwarded-For): false, true, a hop count, or addresses/CIDRs, comma-separated (FLOODGATE_TRUST_PROXY; default false)',
    )
    .option(
      '--ipv6-prefix <n>',
      'IPv6 clients are grouped by this prefix, for the login limits (FLOODGATE_IPV6_PREFIX; default 64)',
    )
    .option(
      '--admin-port <n>',
      'port of GET /metrics and /health, on 127.0.0.1 (FLOODGATE_ADMIN_PORT; default 9463)',
    )
    .option('--no-admin', 'no admin listener')
    .option(
      '--admin-token <token>',
      'the token the admin API needs for actions, and for anything not from loopback (FLOODGATE_ADMIN_TOKEN)',
    )
    .option('--config <file>', 'a YAML file with the same settings (FLOODGATE_CONFIG)')
    .addHelpText('after', '\nFlags beat environment variables, which beat the config file.')
    .action(async (flags: Record<string, string> & { admin?: boolean }) => {
      const running = await serve(resolveConfig(flags));
      await untilSignalled(running.stop);
    });

  root
    .command('proxy')
    .description('rate-limit any HTTP service: a gateway in front of it')
    .option(
      '--config <file>',
      'the full configuration: rules, keys, JWT, shadow mode... (reloaded on SIGHUP and on change)',
    )
    .option('--upstream <url>', 'without --config: the service to forward to')
    .option('--port <n>', 'port to listen on (default 8080, or the file\'s "listen")')
    .option('--host <host>', 'address to listen on (default 127.0.0.1)')
    .option('--limit <n>', 'without --config: requests per window per client IP (default 100)')
    .option(
      '--window <duration>',
      'without --config: the window, or a concurrency lease timeout (default 1m)',
    )
    .option('--algorithm <name>', 'without --config: the algorithm (default token-bucket)')
    .option('--redis <url>', 'without --config: share limits through Redis')
    .option(
      '--leases',
      'without --config, with --redis: quota leases for busy clients (see "Quota grants" in docs/stores.md)',
    )
    .option(
      '--on-store-error <policy>',
      'without --config, with --redis: while Redis is down, open (let through), closed (503) or fallback (in memory; the default)',
    )
    .option('--shadow', 'without --config: log and count what would be refused, refuse nothing')
    .option(
      '--grace <duration>',
      'at a stop, the longest wait for requests in flight (default 10s, or the file\'s "grace")',
    )
    .option(
      '--admin-port <n>',
      'port of GET /metrics, /health, the admin API and the dashboard (default 9464)',
    )
    .option('--no-admin', 'no admin listener')
    .option(
      '--admin-token <token>',
      'the token the admin API needs for actions, and for anything not from loopback (FLOODGATE_ADMIN_TOKEN)',
    )
    .option(
      '--workers <n>',
      "processes serving the port, as nginx's worker_processes: a number, or auto for one per core (default: auto with a Redis store, 1 with memory, where more are refused)",
    )
    .option(
      '--check <file>',
      'validate a configuration file and exit: 0 when valid, 1 when not (as nginx -t)',
    )
    .action(async (flags: ProxyFlags & { adminToken?: string }) => {
      if (flags.check !== undefined) {
        for (const line of checkProxyFile(flags.check)) process.stdout.write(`${line}\n`);
        return;
      }
      const { config, file, grace } = proxyConfigFromFlags(flags);
      const workers = workersOf(flags.workers, config.store);
      if (workers > 1 && !isWorker()) {
        const log = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime });
        const primary = createPrimary({
          workers,
          log,
          admin: config.admin,
          adminNames: { port: '--admin-port or "admin"', host: '"admin"' },
        });
        let code = 0;
        // Signals are heard from the start: a stop may come while the workers are starting.
        const signalled = untilSignalled(async () => {
          code = await primary.stop();
        }, primary.reload);
        await primary.start();
        await signalled;
        if (code !== 0) throw new CliError(ENVIRONMENT, 'a worker did not stop cleanly');
        return;
      }
      const worker = isWorker() ? new WorkerLink() : undefined;
      const running = await startProxy(config, {
        ...(file === undefined ? {} : { file, watch: true }),
        ...(grace === undefined ? {} : { grace }),
        ...(flags.adminToken === undefined ? {} : { adminToken: flags.adminToken }),
        ...(worker === undefined ? {} : { worker }),
      });
      const signalled = untilSignalled(running.stop, () => void running.reload(), worker !== undefined);
      worker?.ready(running.url);
      await signalled;
    });

  root
    .command('rls')
    .description("Envoy's rate-limit service (RLS v3 gRPC), configured as envoyproxy/ratelimit is")
    .option(
      '--config <path>',
      'an envoyproxy/ratelimit YAML file, or a folder of them, one domain each (reloaded on SIGHUP and on change)',
    )
    .option('--port <n>', 'gRPC port to listen on (default 8081)')
    .option('--host <host>', 'address to listen on (default 127.0.0.1)')
    .option('--redis <url>', 'share limits through Redis (default: in memory)')
    .option(
      '--leases',
      'with --redis: quota leases for busy descriptors (see "Quota grants" in docs/stores.md)',
    )
    .option(
      '--on-store-error <policy>',
      "with --redis: while Redis is down, open (OK), closed (UNAVAILABLE: Envoy's failure_mode_deny decides) or fallback (in memory; the default)",
    )
    .option(
      '--admin-port <n>',
      'port of GET /metrics, /health, the admin API and the dashboard (default 9465)',
    )
    .option('--no-admin', 'no admin listener')
    .option(
      '--admin-token <token>',
      'the token the admin API needs for actions, and for anything not from loopback (FLOODGATE_ADMIN_TOKEN)',
    )
    .option(
      '--shadow',
      'every descriptor in shadow mode: counted, never refused (also SHADOW_MODE=true, as envoyproxy/ratelimit)',
    )
    .option(
      '--quota-mode',
      'every descriptor in quota mode: over its limit it says so, and refuses only when all quota ones are over (also QUOTA_MODE=true)',
    )
    .option(
      '--dynamic-metadata',
      "answers carry dynamic_metadata: the request and the passing descriptors' metadata (also RESPONSE_DYNAMIC_METADATA=true)",
    )
    .option(
      '--merge-domains',
      'one domain in several files: their descriptors together, instead of refused (also MERGE_DOMAIN_CONFIG=true)',
    )
    .option(
      '--tls-cert <file>',
      'gRPC over TLS: the certificate (PEM), with --tls-key; both read again when they change (also GRPC_SERVER_TLS_CERT with GRPC_SERVER_USE_TLS=true)',
    )
    .option('--tls-key <file>', "the certificate's private key (PEM) (also GRPC_SERVER_TLS_KEY)")
    .option(
      '--tls-client-ca <file>',
      'mutual TLS: clients must present a certificate from this CA (PEM) (also GRPC_CLIENT_TLS_CACERT)',
    )
    .option(
      '--check <path>',
      'validate a configuration file or folder (and the --tls-* files), print what it holds and exit (1 if invalid)',
    )
    .action(async (flags: RlsFlags & { check?: string; adminToken?: string }) => {
      if (flags.check !== undefined) {
        process.stdout.write(
          `${checkRlsConfig(flags.check, { merge: switched(flags.mergeDomains, 'MERGE_DOMAIN_CONFIG') }, tlsFromFlags(flags))}\n`,
        );
        return;
      }
      const { path, settings } = rlsSettingsFromFlags(flags);
      const running = await startRls(
        path,
        settings,
        flags.adminToken === undefined ? {} : { adminToken: flags.adminToken },
      );
      await untilSignalled(running.stop, () => void running.reload());
    });

  const usersCommand = root.command('users').description('manage the users of `floodgate serve`');
  const actions: [UserAction, string, string][] = [
    ['add', 'add <name>', 'add a user; the password comes from a prompt, or the first line of stdin'],
    ['passwd', 'passwd <name>', "change a user's password (a prompt, or the first line of stdin)"],
    ['list', 'list', 'list the users'],
    ['remove', 'remove <name>', 'remove a user; it loses access on its next request'],
  ];
  for (const [action, usage, description] of actions) {
    usersCommand
      .command(usage)
      .description(description)
      .addOption(dbOption())
      .action(async (...args: unknown[]) => {
        // Commander passes the <name> argument (when the command has one), then the options.
        const name = action === 'list' ? undefined : (args[0] as string);
        const { db } = args[action === 'list' ? 0 : 1] as { db: string };
        const out = await users(action, name, db);
        if (out !== '') process.stdout.write(`${out}\n`);
      });
  }

  demoCommand(root.command('demo'));
  return root;
}

/** Runs the command line; resolves with the exit code: 0, 1 (the environment failed) or 2 (a usage error). */
export async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    // Commander has printed its own message (or the help, or the version) already.
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    // Messages may echo what the operator gave, URLs with passwords included.
    const say = (message: string) => process.stderr.write(`floodgate: ${redact(message)}\n`);
    if (error instanceof CliError) {
      say(error.message);
      return error.exitCode;
    }
    if (isInvalidOption(error)) {
      say(`option ${error.option} must be ${error.expected}; got ${error.got}`);
      return 2;
    }
    say(redact(String((error as Error).stack)));
    return 1;
  }
}

/**
 * A reader that stops early (`floodgate serve --help | head -1`) closes the pipe: the rest of the output is
 * unwanted, which is no error, so the command ends quietly rather than with a stack trace. Other errors of
 * the stream are left to crash as before: they are not the reader's choice.
 */
function endQuietlyWhenOutputCloses(stream: NodeJS.WriteStream): void {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(process.exitCode ?? 0);
  });
}

/** Runs the command line of this process: what bin/floodgate.js and the single executable start. */
export async function run(): Promise<void> {
  endQuietlyWhenOutputCloses(process.stdout);
  endQuietlyWhenOutputCloses(process.stderr);
  process.exitCode = await main(process.argv.slice(2));
  // A worker of several (`proxy --workers`) is done once its command is: the cluster's channel to the primary
  // would otherwise keep it running.
  if (isWorker()) process.exit();
}
