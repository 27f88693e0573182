import { createHash } from 'node:crypto';

/**
 * Digest of a secret (an API key, an Authorization header) to use as an identifier: the same input gives
 * the same key, and the store never holds the secret itself.
 */
export function hashKey(secret: string, prefix = ''): string {
  return prefix + createHash('sha256').update(secret).digest('base64url');
}

/** Keeps identifiers to at most `max` characters: longer ones are replaced by their digest. */
export function boundKey(key: string, max: number): string {
  return key.length <= max ? key : hashKey(key, '~');
}
