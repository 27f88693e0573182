import { createHash } from 'node:crypto';

/**
 * Digest of a secret (an API key, an Authorization header) to use as an identifier: the same input gives
 * the same key, and the store never holds the secret itself.
 */
export function hashKey(secret: string, prefix = ''): string {
  return prefix + createHash('sha256').update(secret).digest('base64url');
}

/**
 * Keeps identifiers to at most about `max` characters: longer ones are replaced by their digest, marked
 * `~#`. An identifier that itself starts with `~` gets one more in front, so no identifier, however
 * chosen, can name another's digest (the two namespaces stay apart).
 */
export function boundKey(key: string, max: number): string {
  if (key.length > max) return hashKey(key, '~#');
  return key.charCodeAt(0) === 0x7e ? `~${key}` : key;
}
