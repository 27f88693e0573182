import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';

/** Whether a socket address is this machine's own (127.0.0.0/8, ::1, or IPv4-mapped 127.x). */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

/** An IPv6 address in its canonical form (`::1`, `::ffff:7f00:1`), as a browser's URL writes it. */
function canonicalV6(address: string): string {
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

/**
 * Whether a request's Host names this machine by a name no DNS answers for, with or without a port:
 * `localhost`, an address of 127.0.0.0/8 in dotted form (`127.0.0.1`, `127.8.9.10`), `[::1]`, or an
 * IPv4-mapped loopback address (`[::ffff:127.0.0.1]`, which a browser writes `[::ffff:7f00:1]`); IPv6 in
 * any of its notations. A page on another site that rebinds its own name to 127.0.0.1 still sends that
 * name as the Host, so it is refused the open reads.
 */
export function isLoopbackHost(host: string | undefined): boolean {
  if (host === undefined) return false;
  const match = /^(?:\[([0-9a-f:.]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/i.exec(host);
  if (match === null) return false;
  const [, bracketed, name] = match;
  if (bracketed !== undefined) {
    if (isIP(bracketed) !== 6) return false;
    const v6 = canonicalV6(bracketed);
    return v6 === '::1' || /^::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}$/.test(v6);
  }
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
