import type { IncomingMessage } from 'node:http';
import { clientIpResolver, groupIp, type TrustProxy } from 'floodgate/http';

/** Who sent a request: its address, and the client that address belongs to as limits key it. */
export interface Client {
  /** The client's address: the socket's peer, or what trusted proxies say; IPv4-mapped folded; '' if none. */
  readonly ip: string;
  /** The address as one client: IPv6 grouped by prefix (one /64 by default), IPv4 as is. */
  readonly client: string;
}

/**
 * Resolves the client of a request the way the library's middleware does (the same functions, the same
 * settings), so one /64 is one client here as it is everywhere the library keys by IP, and a forged
 * X-Forwarded-For counts only when it came through a trusted proxy.
 */
export function clientResolver(trustProxy: TrustProxy, ipv6Prefix: number): (req: IncomingMessage) => Client {
  const resolve = clientIpResolver(trustProxy, 'trustProxy');
  const trusts = trustProxy !== false;
  return (req) => {
    const forwarded = trusts ? req.headers['x-forwarded-for'] : undefined;
    // Several X-Forwarded-For fields are one list, in order.
    const ip = resolve(req.socket.remoteAddress, Array.isArray(forwarded) ? forwarded.join(',') : forwarded);
    return { ip, client: ip === '' ? 'unknown' : groupIp(ip, ipv6Prefix) };
  };
}
