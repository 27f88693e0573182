import { createServer, type Server } from 'node:http';
import { type AddressInfo, isIP } from 'node:net';
import { Limiter, LoginGuard } from 'floodgate';
import type { Fleet } from 'floodgate/admin';
import { type Logger, pino } from 'pino';
import { drain } from '../shared/drain.js';
import { listen } from '../shared/listen.js';
import { redact } from '../shared/redact.js';
import { ServiceRuntime } from '../shared/runtime.js';
import { createApp } from './app.js';
import { clientResolver } from './client.js';
import { policyOf, type ServeConfig } from './config.js';
import { type Database, EXAMPLE_USER, openDatabase } from './database.js';
import { createMetrics } from './metrics.js';
import { verifyPassword } from './passwords.js';

export interface Running {
  server: Server;
  url: string;
  /** The admin listener's URL (`/metrics`, `/health`), unless `--no-admin`. */
  adminUrl: string | undefined;
  /** With Redis: this process in the fleet sharing it (publishes every 5 s). */
  fleet: Fleet | undefined;
  stop(): Promise<void>;
}

export interface ServeOptions {
  /** Where the log goes. Default: JSON lines on stdout. */
  readonly log?: Logger;
}

/** Whether `host` is reachable from this machine alone. */
function loopbackOnly(host: string): boolean {
  if (host === 'localhost') return true;
  const ip = host.toLowerCase().replace(/^::ffff:(?=\d+\.)/, '');
  return isIP(ip) === 4 ? ip.startsWith('127.') : ip === '::1';
}

/**
 * The tutorial's user has a public password: it is created only where the tutorial runs, the embedded
 * default (no database chosen, or a throwaway one in memory, which no other process can add users to)
 * listening on loopback. Any other database starts without users, and the log says how to add one.
 */
function wantsExampleUser(config: ServeConfig): boolean {
  return (!config.dbGiven || config.db === 'sqlite::memory:') && loopbackOnly(config.host);
}

/** A database seeded on loopback earlier may still hold the tutorial's user, with its public password. */
async function warnOfPublicPassword(db: Database, log: Logger): Promise<void> {
  const row = await db.findUser(EXAMPLE_USER.name);
  if (row === undefined || !(await verifyPassword(EXAMPLE_USER.password, row.hash))) return;
  log.warn(
    { user: EXAMPLE_USER.name },
    `the tutorial's user still has its public password, and this address is reachable from elsewhere: change it with \`floodgate users passwd ${EXAMPLE_USER.name}\` or remove it`,
  );
}

/** Starts the continents API; resolves once it listens. */
export async function serve(config: ServeConfig, options: ServeOptions = {}): Promise<Running> {
  const log = options.log ?? pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime });
  const metrics = createMetrics();
  const { db, seeded, withoutUsers } = await openDatabase(config.db, {
    exampleUser: wantsExampleUser(config),
  });
  if (seeded.continents)
    log.info({ db: redact(config.db) }, 'created the continents table with the seven continents');
  if (seeded.exampleUser) {
    log.info(
      { user: EXAMPLE_USER.name, password: EXAMPLE_USER.password },
      'created the example user; add your own with `floodgate users add NAME`',
    );
  }
  if (!loopbackOnly(config.host)) await warnOfPublicPassword(db, log);
  if (withoutUsers) {
    const where = config.dbGiven ? ` --db ${redact(config.db)}` : '';
    log.warn(
      { db: redact(config.db) },
      `no users yet: nobody can log in until one is added with \`floodgate users add NAME${where}\``,
    );
  }

  let runtime: ServiceRuntime;
  try {
    runtime = await ServiceRuntime.open({
      log,
      registry: metrics.registry,
      store: {
        url: config.redis ?? 'memory',
        ...(config.onStoreError === undefined ? {} : { onStoreError: config.onStoreError }),
      },
    });
  } catch (error) {
    await db.close();
    throw error;
  }
  const { stores } = runtime;
  // "open" lets the API's requests through while Redis is away; it must not switch off brute-force
  // protection with them: failed logins are then counted in memory, in each process.
  const loginStore = config.onStoreError === 'open' ? stores.withOutagePolicy('fallback') : stores.store;
  const limiter = new Limiter({ store: stores.store, policies: policyOf(config), traffic: true });
  const logins = new LoginGuard({ store: loginStore, ipv6Prefix: config.ipv6Prefix });
  const clientOf = clientResolver(config.trustProxy, config.ipv6Prefix);
  const handle = createApp({ db, limiter, logins, metrics, log, clientOf });
  const server = createServer((req, res) => void handle(req, res));
  const limiters = () => [
    ['api', limiter] as const,
    ...Object.entries(logins.limiters).map(([n, l]) => [`login ${n}`, l] as const),
  ];
  let url: string;
  try {
    url = await listen(server, config.host, config.port);
    runtime.joinFleet((server.address() as AddressInfo).port, limiters);
    // On loopback whatever --host says: the metrics are for the operator, not for the API's clients.
    await runtime.startAdmin(
      config.admin && {
        address: { host: '127.0.0.1', port: config.adminPort },
        health: () => ({}),
        names: { port: '--admin-port', host: '--admin-port' },
        more: runtime.dashboard({ limiters, token: config.adminToken }),
      },
    );
  } catch (error) {
    server.close();
    runtime.abandon();
    await db.close();
    throw error;
  }
  log.info(
    {
      url,
      admin: runtime.adminUrl,
      db: db.kind,
      store: stores.kind,
      policy: policyOf(config),
    },
    `listening on ${url}`,
  );

  const stop = () =>
    runtime.stop({
      drain: () => {
        log.info({ grace: config.grace }, 'shutting down: finishing requests in flight');
        return drain(server, config.grace, log);
      },
      release: () => db.close(),
    });
  return { server, url, adminUrl: runtime.adminUrl, fleet: runtime.fleet, stop };
}
