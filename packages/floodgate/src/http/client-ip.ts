import { BlockList, isIP } from 'node:net';
import { invalidOption } from '../core/errors.js';
import { groupIp, normalizeIp } from '../core/ip.js';

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

  /**
   * Adds `entry`: true when it is an address or a block; false when it is neither (a key, for the lists);
   * `'invalid'` when it is an address with a block that cannot be one (`10.0.0.0/33`, `1.2.3.4/8/9`).
   * Blocks written in IPv4-mapped IPv6 (`::ffff:10.0.0.0/104`) are the IPv4 block they map, as clients
   * are folded to IPv4; an IPv6 block that holds all of `::ffff:0:0/96` (`::/0`) holds every IPv4 client.
   */
  add(entry: string): boolean | 'invalid' {
    for (const named of NAMED[entry] ?? [entry]) {
      const [address, bits, extra] = named.split('/');
      const ip = normalizeIp(address);
      if (ip === '') return false;
      if (extra !== undefined) return 'invalid';
      const family = isIP(ip) === 4 ? 'ipv4' : 'ipv6';
      if (bits === undefined) {
        this.#list.addAddress(ip, family);
        continue;
      }
      if (!/^\d{1,3}$/.test(bits)) return 'invalid';
      const prefix = Number(bits);
      const written = isIP(address!.replace(/^\[|\]$/g, '')) === 6 ? 'ipv6' : family;
      if (prefix > (written === 'ipv4' ? 32 : 128)) return 'invalid';
      if (written === 'ipv6' && family === 'ipv4') {
        // A mapped block: its last 32 bits are the IPv4 block (a prefix under 96 reaches past the mapping).
        if (prefix < 96) return 'invalid';
        this.#list.addSubnet(ip, prefix - 96, 'ipv4');
        continue;
      }
      this.#list.addSubnet(ip, prefix, family);
      if (family === 'ipv6' && prefix <= 96 && groupIp('::ffff:0:0', prefix) === groupIp(ip, prefix))
        this.#list.addSubnet('0.0.0.0', 0, 'ipv4');
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
      if (typeof entry !== 'string' || set.add(entry) !== true) {
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
