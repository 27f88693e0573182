import { BlockList, isIP } from 'node:net';
import { invalidOption } from '../core/errors.js';
import { normalizeIp } from '../core/ip.js';

export { groupIp, normalizeIp } from '../core/ip.js';

/**
 * Which proxies in front of the server may be believed about the client's address:
 * - `false` (default): none; the socket's peer is the client and `X-Forwarded-For` is ignored, so a client
 *   cannot spoof it to dodge its limit;
 * - a number N: the last N hops (the socket's peer and the N-1 proxies before it) are trusted proxies;
 * - a list of addresses and CIDR blocks (`"10.0.0.0/8"`, `"::1"`, `"loopback"`): trusted proxies;
 * - `true`: every hop (the left-most `X-Forwarded-For` entry wins; only behind a proxy that overwrites it).
 */
export type TrustProxy = boolean | number | readonly string[];

const NAMED: Record<string, string[]> = {
  loopback: ['127.0.0.0/8', '::1/128'],
  private: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
  linklocal: ['169.254.0.0/16', 'fe80::/10'],
};

/** A set of addresses and CIDR blocks, IPv4 and IPv6. */
export class AddressSet {
  readonly #list = new BlockList();

  /** Adds `entry`; false when it is not an address or a block (the caller decides whether that is an error). */
  add(entry: string): boolean {
    for (const named of NAMED[entry] ?? [entry]) {
      const [address, bits, extra] = named.split('/');
      const ip = normalizeIp(address);
      if (ip === '' || extra !== undefined) return false;
      const family = isIP(ip) === 4 ? 'ipv4' : 'ipv6';
      if (bits === undefined) {
        this.#list.addAddress(ip, family);
        continue;
      }
      const prefix = Number(bits);
      if (!/^\d+$/.test(bits) || prefix > (family === 'ipv4' ? 32 : 128)) return false;
      this.#list.addSubnet(ip, prefix, family);
    }
    return true;
  }

  has(ip: string): boolean {
    if (ip === '') return false;
    return this.#list.check(ip, isIP(ip) === 4 ? 'ipv4' : 'ipv6');
  }
}

/** Validates a trust-proxy setting once, returning a function from (peer, X-Forwarded-For) to the client IP. */
export function clientIpResolver(
  trust: TrustProxy,
  option = 'trustProxy',
): (peer: string | undefined, forwarded: string | undefined) => string {
  if (trust === false) return (peer) => normalizeIp(peer);
  let trusted: (ip: string, hop: number) => boolean;
  if (trust === true) trusted = () => true;
  else if (typeof trust === 'number') {
    if (!Number.isSafeInteger(trust) || trust < 0) {
      throw invalidOption(option, 'a boolean, a number of hops, or a list of addresses/CIDR blocks', trust);
    }
    trusted = (_ip, hop) => hop < trust;
  } else if (Array.isArray(trust)) {
    const set = new AddressSet();
    for (const [i, entry] of trust.entries()) {
      if (typeof entry !== 'string' || !set.add(entry)) {
        throw invalidOption(
          `${option}[${i}]`,
          'an IP address, a CIDR block, or "loopback"/"private"/"linklocal"',
          entry,
        );
      }
    }
    trusted = (ip) => set.has(ip);
  } else {
    throw invalidOption(
      option,
      'a boolean, a number of hops, or a list of addresses/CIDR blocks',
      trust,
      'type',
    );
  }
  return (peer, forwarded) => {
    // Walk from the nearest hop outwards; the first address not vouched for by a trusted proxy is the client.
    let ip = normalizeIp(peer);
    if (forwarded === undefined || forwarded === '') return ip;
    const hops = forwarded.split(',');
    let hop = 0;
    while (ip !== '' && trusted(ip, hop) && hops.length > 0) {
      ip = normalizeIp(hops.pop());
      hop++;
    }
    return ip;
  };
}
