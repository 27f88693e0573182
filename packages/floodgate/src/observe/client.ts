/** How an identifier is shown to an operator. */
export interface ClientDisplay {
  /** What kind of client: an address, a user, an API key, or an identifier of the application's. */
  readonly kind: 'ip' | 'user' | 'api-key' | 'header' | 'digest' | 'key';
  /** Readable, short, never a secret: an IP or /64, a user, an API key's label or the start of its digest. */
  readonly label: string;
}

/** A SHA-256 digest as `hashKey` writes it (base64url, 43 characters). */
const DIGEST = /^[A-Za-z0-9_-]{43}$/;
/** Shown of a digest: enough to tell clients apart and to find one in the logs, too little to matter. */
const SHOWN = 10;
const LONGEST = 80;

function short(digest: string): string {
  return `${digest.slice(0, SHOWN)}…`;
}

/**
 * An identifier as an operator can read it. Floodgate's key extractors make `ip:ADDRESS` (IPv6 grouped:
 * `ip:2001:db8:1:2::/64`), `key:DIGEST` (an API key), `user:DIGEST` (a Basic user), `h:NAME:DIGEST` (a
 * header), and LoginGuard's `login-ip:ADDRESS` and `login:DIGEST`; credentials reach the limiter only as digests, so a digest is shown by its start, or by the
 * label `labels` gives it (e.g. the API key's name in the application's table). Anything else is the
 * application's own identifier, shown as it is (cut at 80 characters).
 */
export function displayClient(key: string, labels?: (key: string) => string | undefined): ClientDisplay {
  const labelled = labels?.(key);
  if (key.startsWith('ip:')) return { kind: 'ip', label: key.slice(3) };
  // LoginGuard's keys: per address, and a digest of the user with the address.
  if (key.startsWith('login-ip:')) return { kind: 'ip', label: key.slice(9) };
  const colon = key.indexOf(':');
  const rest = key.slice(colon + 1);
  if (key.startsWith('key:') && DIGEST.test(rest))
    return { kind: 'api-key', label: labelled ?? `API key ${short(rest)}` };
  if (key.startsWith('user:'))
    return { kind: 'user', label: labelled ?? `user ${DIGEST.test(rest) ? short(rest) : cut(rest)}` };
  if (key.startsWith('h:')) {
    const at = key.lastIndexOf(':');
    const value = key.slice(at + 1);
    const header = key.slice(2, at);
    return {
      kind: 'header',
      label: labelled ?? `${header} ${DIGEST.test(value) ? short(value) : cut(value)}`,
    };
  }
  if (key.startsWith('~#'))
    return { kind: 'digest', label: labelled ?? `long identifier ${short(key.slice(2))}` };
  return { kind: 'key', label: labelled ?? cut(key) };
}

function cut(text: string): string {
  return text.length > LONGEST ? `${text.slice(0, LONGEST)}…` : text;
}
