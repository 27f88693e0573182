import type { IncomingMessage } from 'node:http';
import { byApiKey, byBasicUser, byHeader, byIp, type KeyExtractor } from 'floodgate/http';
import type { RuleConfig } from './config.js';
import { claimOf, type JwtFailure, type JwtVerifier } from './jwt.js';

export type KeySpec = NonNullable<RuleConfig['key']>;

/** What a request counts under, for a key of the configuration: a library extractor, or a JWT claim's. */
export type RequestKey = KeyExtractor | ((req: IncomingMessage) => Promise<string | undefined>);

/**
 * The key a configured `key` describes; a `{ jwt: CLAIM }` key needs the configuration's verifier, and
 * tells `failed` why a request has no key from its token (never the token).
 */
export function keyOf(
  key: KeySpec,
  jwt: JwtVerifier | undefined,
  failed?: (req: IncomingMessage, failure: JwtFailure) => void,
): RequestKey {
  if (key === 'ip') return byIp();
  if (key === 'basic-user') return byBasicUser();
  if (key === 'api-key') return byApiKey();
  if ('header' in key) return byHeader(key.header);
  if ('apiKey' in key) return byApiKey({ header: key.apiKey });
  const claim = key.jwt;
  const verify = jwt!;
  return async (req: IncomingMessage): Promise<string | undefined> => {
    const result = await verify(req.headers.authorization);
    const value = 'claims' in result ? claimOf(result.claims, claim) : undefined;
    if (value !== undefined) return `jwt:${claim}:${value}`;
    failed?.(req, 'failure' in result ? result.failure : 'claim');
    return undefined;
  };
}

/** How a key is named in a 400 for a request without one. */
export function describeKey(key: RequestKey): string {
  return typeof key === 'function' ? 'verified token claim' : key.describes;
}
