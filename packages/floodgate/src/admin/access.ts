import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';

/** Whether a socket address is this machine's own (127.0.0.0/8, ::1, or IPv4-mapped 127.x). */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

/**
 * Whether a request's Host names this machine by a name no DNS answers for: `localhost`, a loopback
 * address (`127.0.0.1`, `[::1]`), with or without a port. A page on another site that rebinds its own
 * name to 127.0.0.1 still sends that name as the Host, so it is refused the open reads.
 */
export function isLoopbackHost(host: string | undefined): boolean {
  if (host === undefined) return false;
  const match = /^(?:\[([0-9a-f:.]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/i.exec(host);
  if (match === null) return false;
  const [, bracketed, name] = match;
  if (bracketed !== undefined) return isIP(bracketed) === 6 && isLoopback(bracketed.toLowerCase());
  if (name!.toLowerCase() === 'localhost') return true;
  return isIP(name!) === 4 && isLoopback(name);
}

/**
 * Checks `Authorization: Bearer TOKEN` against the configured token in constant time: both sides are
 * hashed first, so neither the token's length nor its first differing byte shows in the time taken.
 * Only the header counts (never a cookie or the query), so no cross-site form or link can carry it.
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
