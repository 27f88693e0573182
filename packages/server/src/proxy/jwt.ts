import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { errors, jwtVerify } from 'jose';
import { usageError } from '../shared/errors.js';
import type { ProxyConfig } from './config.js';

type JwtConfig = NonNullable<ProxyConfig['jwt']>;

/**
 * Why a request's JWT gave no key, as the log says it: never the token, nor a claim's value. `claim`: the
 * token verified but lacks the claim the rule keys on.
 */
export type JwtFailure =
  | 'missing'
  | 'malformed'
  | 'algorithm'
  | 'signature'
  | 'expired'
  | 'not-yet-valid'
  | 'issuer'
  | 'audience'
  | 'claims'
  | 'claim';

/** Verified claims of a bearer token, or why there are none. */
export type JwtResult = { readonly claims: Record<string, unknown> } | { readonly failure: JwtFailure };

export type JwtVerifier = (authorization: string | undefined) => Promise<JwtResult>;

const BY_CLAIM: Record<string, JwtFailure> = { iss: 'issuer', aud: 'audience', nbf: 'not-yet-valid' };

/** The failure a jose error stands for; undefined for an error that is not about the token. */
function failureOf(error: unknown): JwtFailure | undefined {
  if (!(error instanceof errors.JOSEError)) return undefined;
  if (error instanceof errors.JWTExpired) return 'expired';
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'signature';
  if (error instanceof errors.JOSEAlgNotAllowed) return 'algorithm';
  if (error instanceof errors.JWTClaimValidationFailed) return BY_CLAIM[error.claim] ?? 'claims';
  return 'malformed';
}

/** Verified tokens kept, so a client sending the same token does not pay a signature check per request. */
const CACHE_MAX = 10_000;

function keyOf(config: JwtConfig, env: NodeJS.ProcessEnv): { key: KeyObject; algorithms: string[] } {
  if (config.secret !== undefined || config.secretEnv !== undefined) {
    const secret = config.secret ?? env[config.secretEnv!];
    if (secret === undefined || secret.length < 16) {
      throw usageError(
        `jwt.secretEnv: environment variable ${config.secretEnv} must hold a secret of at least 16 characters`,
      );
    }
    return { key: createSecretKey(Buffer.from(secret, 'utf8')), algorithms: config.algorithms ?? ['HS256'] };
  }
  let pem = config.publicKey;
  if (pem === undefined) {
    try {
      pem = readFileSync(config.publicKeyFile!, 'utf8');
    } catch (error) {
      throw usageError(
        `jwt.publicKeyFile: cannot read "${config.publicKeyFile}": ${(error as NodeJS.ErrnoException).code}`,
      );
    }
  }
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (error) {
    throw usageError(`jwt.publicKey: not a usable public key: ${(error as Error).message}`);
  }
  const byType: Record<string, string[]> = {
    rsa: ['RS256'],
    ec: ['ES256'],
    ed25519: ['EdDSA'],
    'rsa-pss': ['PS256'],
  };
  const algorithms = config.algorithms ?? byType[key.asymmetricKeyType ?? ''];
  if (algorithms === undefined) throw usageError('jwt.algorithms: required for this key type');
  if (algorithms.some((a) => a.startsWith('HS'))) {
    throw usageError('jwt.algorithms: HS* algorithms need a secret, not a public key');
  }
  return { key, algorithms };
}

/**
 * Builds the token check for `{ jwt: CLAIM }` keys. Signature, expiry, not-before, and the configured
 * issuer and audience are all verified: a claim from a token that fails any of them is never used as a key.
 */
export function jwtVerifier(config: JwtConfig, env: NodeJS.ProcessEnv = process.env): JwtVerifier {
  const { key, algorithms } = keyOf(config, env);
  const options = {
    algorithms,
    ...(config.issuer === undefined ? {} : { issuer: config.issuer }),
    ...(config.audience === undefined ? {} : { audience: config.audience }),
    clockTolerance: Math.floor((config.clockTolerance ?? 0) / 1000),
  };
  const cache = new Map<string, { claims: Record<string, unknown>; until: number }>();
  return async (authorization) => {
    if (authorization === undefined || !/^bearer\s/i.test(authorization)) return { failure: 'missing' };
    const match = /^bearer\s+([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)\s*$/i.exec(authorization);
    if (match === null) return { failure: 'malformed' };
    const token = match[1]!;
    const now = Date.now();
    const hit = cache.get(token);
    if (hit !== undefined && hit.until > now) return { claims: hit.claims };
    try {
      const { payload } = await jwtVerify(token, key, options);
      // Kept until the token expires (at most a minute, so a changed key is picked up soon).
      const until = Math.min(
        now + 60_000,
        typeof payload.exp === 'number' ? payload.exp * 1000 : now + 60_000,
      );
      if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
      cache.set(token, { claims: payload as Record<string, unknown>, until });
      return { claims: payload as Record<string, unknown> };
    } catch (error) {
      const failure = failureOf(error);
      if (failure === undefined) throw error;
      return { failure };
    }
  };
}

/** A claim by dotted path (`org.id`), as a key part: strings and numbers only. */
export function claimOf(claims: Record<string, unknown>, path: string): string | undefined {
  let value: unknown = claims;
  for (const part of path.split('.')) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  if (typeof value === 'string' && value !== '') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return undefined;
}
