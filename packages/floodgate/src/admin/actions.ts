import type { IncomingMessage } from 'node:http';
import { isInvalidOption } from '../core/errors.js';
import type { PolicySpec } from '../core/policy.js';
import type { Limiter } from '../limiter/limiter.js';
import { displayClient } from '../observe/client.js';
import { type Answer, badRequest, notFound, unbound } from './answer.js';
import { BODY_LIMIT, isJson, readBody } from './body.js';
import type { AdminAction } from './options.js';
import { overrideOf } from './views.js';

/** What an action needs besides the request: the limiters now, the labels, and who hears of it. */
export interface ActionContext {
  readonly found: Map<string, Limiter>;
  readonly labels: ((key: string) => string | undefined) | undefined;
  readonly onAction: ((action: AdminAction) => void) | undefined;
}

/**
 * The actions of the admin API, by the path's segments below `api`: `POST limiters/NAME/clients/KEY/reset`,
 * and `PUT` or `DELETE limiters/NAME/overrides/KEY`. Each one done is told to `onAction`.
 */
export async function act(
  req: IncomingMessage,
  segments: readonly string[],
  { found, labels, onAction }: ActionContext,
): Promise<Answer> {
  if (segments[0] !== 'limiters' || (segments.length !== 4 && segments.length !== 5))
    return notFound('such endpoint');
  const name = segments[1]!;
  const limiter = found.get(name);
  if (limiter === undefined) return notFound(`limiter named ${JSON.stringify(name)}`);
  const stored = segments[3]!;
  const key = unbound(stored);
  if (key === undefined)
    return badRequest('a long identifier (~#) is known only by its digest; act on it by its full value');
  const by = { address: req.socket.remoteAddress, userAgent: req.headers['user-agent'] };
  const done = (action: AdminAction['action'], body: unknown, policies?: unknown): Answer => {
    onAction?.({
      action,
      limiter: name,
      key: stored,
      client: displayClient(stored, labels).label,
      by,
      ...(policies === undefined ? {} : { policies }),
    });
    return { status: 200, body };
  };
  if (req.method === 'POST' && segments[2] === 'clients' && segments[4] === 'reset') {
    await limiter.reset(key);
    return done('reset', { reset: stored });
  }
  if (segments[2] !== 'overrides' || segments.length !== 4) return notFound('such endpoint');
  if (req.method === 'DELETE') return done('remove-override', { removed: limiter.removeOverride(key) });
  if (req.method !== 'PUT') return { status: 405, body: { error: 'PUT or DELETE an override' } };
  const policies = await overrideBody(req);
  if ('status' in policies) return policies;
  try {
    limiter.setOverride(key, policies.given);
  } catch (error) {
    if (isInvalidOption(error)) return badRequest((error as Error).message);
    throw error;
  }
  return done('set-override', { override: stored, policies: overrideOf(limiter, key) }, policies.given);
}

/** An override's policies from the request's body, or the answer refusing the body. */
async function overrideBody(req: IncomingMessage): Promise<{ given: PolicySpec | PolicySpec[] } | Answer> {
  // A body only as JSON, so that no form of another site (text/plain, urlencoded) could be one.
  if (!isJson(req.headers['content-type']))
    return { status: 415, body: { error: 'the body must be sent as Content-Type: application/json' } };
  const body = await readBody(req);
  if (body === 'too-large')
    return {
      status: 413,
      body: { error: `the body must be at most ${BODY_LIMIT} bytes` },
      closeAfter: req,
    };
  if (body === 'failed') return badRequest('the body broke off');
  try {
    return { given: JSON.parse(body.text) };
  } catch {
    return badRequest('the body must be JSON: a policy or a list of policies');
  }
}
