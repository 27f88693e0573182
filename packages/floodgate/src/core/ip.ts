import { isIP } from 'node:net';

/**
 * Client identity by address, decided once for every front door (HTTP adapters, `LoginGuard`, the
 * commands): an address is normalised by its value, not its notation, and IPv6 is grouped by prefix for
 * rate keys. Allow and deny lists match the normalised address itself, never the group.
 */

/** Expands an IPv6 address (already valid) to 8 groups of 16 bits, an embedded IPv4 tail included. */
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

/** The IPv4 address an IPv4-mapped IPv6 address (`::ffff:0:0/96`) stands for, in any notation; else undefined. */
function mappedIpv4(groups: readonly number[]): string | undefined {
  for (let i = 0; i < 5; i++) if (groups[i] !== 0) return undefined;
  if (groups[5] !== 0xffff) return undefined;
  const hi = groups[6]!;
  const lo = groups[7]!;
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
}

/**
 * The address a client is known by: brackets, a zone and surrounding space removed, IPv4-mapped IPv6
 * folded to IPv4 by value (`::ffff:7f00:1`, `0:0:0:0:0:ffff:127.0.0.1` and `127.0.0.1` are one client), IPv6
 * in lower case. '' when `raw` is not an IP address.
 */
export function normalizeIp(raw: string | undefined): string {
  if (raw === undefined) return '';
  let ip = raw.trim();
  if (ip.startsWith('[') && ip.includes(']')) ip = ip.slice(1, ip.indexOf(']'));
  else if (/^[\d.]+:\d+$/.test(ip)) ip = ip.slice(0, ip.indexOf(':')); // an IPv4 hop with its port
  const zone = ip.indexOf('%');
  if (zone !== -1) ip = ip.slice(0, zone);
  const family = isIP(ip);
  if (family === 4) return ip;
  if (family !== 6) return '';
  return mappedIpv4(ipv6Groups(ip)) ?? ip.toLowerCase();
}

/**
 * The identifier for a normalised client address: IPv4 as is; IPv6 reduced to its first `prefix` bits
 * (default /64, what one subscriber usually gets), so a client cannot walk through its own block to dodge
 * a limit.
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

/** `normalizeIp` then `groupIp`: the rate key of a raw address; '' when it is not one. */
export function clientKeyOf(raw: string | undefined, prefix: number): string {
  const ip = normalizeIp(raw);
  return ip === '' ? '' : groupIp(ip, prefix);
}
