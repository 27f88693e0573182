import { BlockList, isIP } from 'node:net';
import { invalidOption } from '../core/errors.js';

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

/** Strips an IPv4-mapped IPv6 prefix and brackets; '' when not an IP address. */
export function normalizeIp(raw: string | undefined): string {
  if (raw === undefined) return '';
  let ip = raw.trim();
  if (ip.startsWith('[') && ip.includes(']')) ip = ip.slice(1, ip.indexOf(']'));
  if (ip.toLowerCase().startsWith('::ffff:') && isIP(ip.slice(7)) === 4) ip = ip.slice(7);
  const zone = ip.indexOf('%');
  if (zone !== -1) ip = ip.slice(0, zone);
  return isIP(ip) === 0 ? '' : ip;
}

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

/** Expands an IPv6 address to 8 groups of 16 bits. */
function ipv6Groups(ip: string): number[] {
  let text = ip;
  if (text.includes('.')) {
    // An embedded IPv4 tail, e.g. 64:ff9b::1.2.3.4: rewrite it as two hex groups.
    const at = text.lastIndexOf(':');
    const v4 = text
      .slice(at + 1)
      .split('.')
      .map(Number);
    const hi = ((v4[0]! << 8) | v4[1]!).toString(16);
    const lo = ((v4[2]! << 8) | v4[3]!).toString(16);
    text = `${text.slice(0, at + 1)}${hi}:${lo}`;
  }
  const [head = '', rest] = text.split('::');
  const parse = (s: string) => (s === '' ? [] : s.split(':').map((g) => Number.parseInt(g, 16)));
  const left = parse(head);
  const right = rest === undefined ? [] : parse(rest);
  return [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
}

/**
 * The identifier for a client address: IPv4 as is; IPv6 reduced to its first `prefix` bits (default /64,
 * what one subscriber usually gets), so a client cannot walk through its own block to dodge a limit.
 */
export function groupIp(ip: string, prefix: number): string {
  if (isIP(ip) !== 6) return ip;
  const groups = ipv6Groups(ip);
  const out: string[] = [];
  for (let i = 0; i < 8; i++) {
    const keep = Math.max(0, Math.min(16, prefix - i * 16));
    const mask = keep === 0 ? 0 : (0xffff << (16 - keep)) & 0xffff;
    out.push(((groups[i]! & mask) >>> 0).toString(16));
  }
  return `${out.join(':')}/${prefix}`;
}
