import { createHash, timingSafeEqual } from 'node:crypto';

/** Whether a socket address is this machine's own (127.0.0.0/8, ::1, or IPv4-mapped 127.x). */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

/**
 * Checks `Authorization: Bearer TOKEN` against the configured token in constant time: both sides are
 * hashed first, so neither the token's length nor its first differing byte shows in the time taken.
 */
export function tokenChecker(token: string | undefined): (authorization: string | undefined) => boolean {
  if (token === undefined) return () => false;
  const expected = createHash('sha256').update(token).digest();
  return (authorization) => {
    const match = /^bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (match === null) return false;
    return timingSafeEqual(createHash('sha256').update(match[1]!).digest(), expected);
  };
}
