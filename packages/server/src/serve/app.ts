import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Decision, hashKey, type Limiter, type LoginGuard } from 'floodgate';
import { basicCredentials, rateLimitHeaders, waitMessage } from 'floodgate/http';
import type { Logger } from 'pino';
import type { Client } from './client.js';
import type { Database } from './database.js';
import type { Metrics } from './metrics.js';
import { PasswordChecks } from './passwords.js';
import { loginName } from './user-names.js';

export interface AppDeps {
  db: Database;
  limiter: Limiter;
  logins: LoginGuard;
  metrics: Metrics;
  log: Logger;
  /** Who sent a request, as the limits key it (see `clientResolver`). */
  clientOf: (req: IncomingMessage) => Client;
}

/** A failure of the database: the API answers 503 until it is back, and never crashes. */
class DatabaseUnavailable extends Error {}

async function fromDb<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    throw new DatabaseUnavailable((error as Error).message);
  }
}

function json(res: ServerResponse, status: number, body: unknown, headers: [string, string][] = []): void {
  for (const [name, value] of headers) res.setHeader(name, value);
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.end(`${JSON.stringify(body)}\n`);
}

function unauthorized(res: ServerResponse, message: string): void {
  json(res, 401, { error: 'Unauthorized', message }, [
    ['WWW-Authenticate', 'Basic realm="continents", charset="UTF-8"'],
  ]);
}

function limited(res: ServerResponse, decision: Decision, message: string): void {
  if (decision.reason === 'store-closed') {
    // Refused by the outage policy (--on-store-error closed) while Redis is down: nobody is over a limit.
    const seconds = Math.max(1, Math.ceil(decision.retryAfter / 1000));
    json(
      res,
      503,
      { error: 'Service Unavailable', message: 'The rate-limit store is unavailable; try again shortly.' },
      [['Retry-After', String(seconds)]],
    );
    return;
  }
  const headers = rateLimitHeaders(decision, Date.now(), 'draft-10', false);
  json(
    res,
    429,
    { error: 'Too Many Requests', message, retryAfter: Math.ceil(decision.retryAfter / 1000) },
    headers,
  );
}

/** The continents API of the tutorial, with authentication done right and the limit per user. */
export function createApp({ db, limiter, logins, metrics, log, clientOf }: AppDeps) {
  const checks = new PasswordChecks();

  type Auth = { user: string } | { blocked: Decision } | undefined;
  /** Logins in progress, by digest: concurrent requests with one credential share one attempt. */
  const pending = new Map<string, Promise<Auth>>();

  function authenticate(header: string, ip: string): Promise<Auth> {
    const digest = createHash('sha256').update(header).update('\u0000').update(ip).digest('base64url');
    let login = pending.get(digest);
    if (login === undefined) {
      login = attempt(header, ip).finally(() => pending.delete(digest));
      pending.set(digest, login);
    }
    return login;
  }

  // Every request is a login. The user's row is read first (one indexed read, each time, so a removed user
  // or a changed password takes effect on the next request): the attempt is then counted under the user the
  // database matched, whatever spelling it took, or under the one form of an unknown name, so spellings
  // share one budget and an unknown name is counted as a known one is. The attempt is charged before the
  // password is looked at (the lockout holds even for a password checked a moment ago). Only the slow hash
  // check is cached, keyed by the stored hash; an unknown name costs a hash check too.
  async function attempt(header: string, client: string): Promise<Auth> {
    const credentials = basicCredentials(header);
    if (credentials === undefined) return undefined;
    const row = await fromDb(db.findUser(credentials.user));
    const login = await logins.attempt(loginName(row?.name ?? credentials.user), client);
    if (!login.allowed) return { blocked: login.decision };
    const ok = await checks.verify(credentials.password, row?.hash);
    if (!ok || row === undefined) return undefined;
    // Never rejects: a store that cannot take the give-back now leaves the count to lapse with its window.
    await login.succeeded();
    // The row's name: the per-user limit is the user's, whichever spelling logged in.
    return { user: row.name };
  }

  async function continents(
    req: IncomingMessage,
    res: ServerResponse,
    entry: Record<string, unknown>,
    client: string,
  ): Promise<void> {
    const header = req.headers.authorization;
    if (header === undefined || header === '')
      return unauthorized(res, 'Send a user name and password (HTTP Basic).');
    const auth = await authenticate(header, client);
    if (auth === undefined)
      return unauthorized(res, 'Wrong user name or password, or a malformed Authorization header.');
    if ('blocked' in auth) {
      entry.login = 'blocked';
      return limited(res, auth.blocked, `Too many failed logins. ${waitMessage(auth.blocked)}`);
    }
    entry.user = auth.user;
    const started = performance.now();
    const key = hashKey(auth.user, 'user:');
    const decision = await limiter.consume(key);
    // A concurrency limit (--algorithm concurrency): the slot is the request's until it ends.
    const lease = decision.leaseId;
    if (lease !== undefined) res.once('close', () => void limiter.release(key, lease).catch(() => {}));
    metrics.storeLatency.observe((performance.now() - started) / 1000);
    metrics.decisions.inc({ policy: decision.policy, outcome: decision.allowed ? 'allowed' : 'denied' });
    entry.decision = {
      allowed: decision.allowed,
      remaining: decision.remaining,
      retryAfter: decision.retryAfter,
    };
    if (!decision.allowed)
      return limited(res, decision, `You're not allowed to access this resource. ${waitMessage(decision)}`);
    const headers = rateLimitHeaders(decision, Date.now(), 'draft-10', false);
    json(res, 200, await fromDb(db.continents()), headers);
  }

  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const path = (req.url ?? '/').split('?')[0]!;
    const { ip, client } = clientOf(req);
    const entry: Record<string, unknown> = { method: req.method, path, ip, client };
    let route = 'other';
    try {
      // /health stays here, where load balancers probe the API; /metrics is on the admin listener only.
      if (path === '/health') {
        route = 'health';
        json(res, 200, { status: 'ok' });
      } else if (path === '/' || path === '/continents') {
        route = 'continents';
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          json(res, 405, { error: 'Method Not Allowed', message: 'Use GET.' }, [['Allow', 'GET, HEAD']]);
        } else {
          // The address itself: LoginGuard groups it (by the same --ipv6-prefix) as the library keys by IP.
          await continents(req, res, entry, ip === '' ? 'unknown' : ip);
        }
      } else {
        json(res, 404, { error: 'Not Found', message: `No route ${path}; try GET /continents.` });
      }
    } catch (error) {
      if (error instanceof DatabaseUnavailable) {
        log.warn({ err: error.message, ...entry }, 'database unavailable');
        if (!res.headersSent) {
          json(
            res,
            503,
            { error: 'Service Unavailable', message: 'The database is unavailable; try again shortly.' },
            [['Retry-After', '5']],
          );
        }
        return;
      }
      log.error({ err: error, ...entry }, 'request failed');
      if (!res.headersSent)
        json(res, 500, { error: 'Internal Server Error', message: 'Something went wrong; see the log.' });
      else res.destroy();
    } finally {
      const ms = performance.now() - started;
      metrics.requests.observe({ route, status: String(res.statusCode) }, ms / 1000);
      log.info({ ...entry, status: res.statusCode, ms: Math.round(ms * 10) / 10 }, 'request');
    }
  };
}
