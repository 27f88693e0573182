/**
 * A host as rules and keys compare it: lower case, trailing dots dropped (`api.example.com.` is the same
 * name, and most upstreams serve it), without a port, an IPv6 literal without its brackets. Undefined when
 * the value is no host: only letters, digits, `.`, `-` and `_` in a name, a bracketed literal of hex digits,
 * `:` and `.`, and an optional decimal port (empty allowed, RFC 3986).
 */
export function hostName(value: string): string | undefined {
  const m = /^(?:\[([0-9a-f:.]+)\]|([a-z0-9._-]*))(?::\d*)?$/i.exec(value);
  if (m === null) return undefined;
  if (m[1] !== undefined) return m[1].toLowerCase();
  return m[2]!.toLowerCase().replace(/\.+$/, '');
}

/** A rule's `host`: a name or IPv6 literal (bracketed or not), or `*.` and a name; no port. */
export function ruleHostName(value: string): string | undefined {
  const wild = value.startsWith('*.');
  const bare = wild ? value.slice(2) : value;
  // An IPv6 literal may be written without brackets in a rule: there is no port to tell it from.
  const name =
    !wild && /^[0-9a-f:.]+$/i.test(bare) && bare.includes(':') ? bare.toLowerCase() : hostName(bare);
  const port = bare.includes(']:') || (!name?.includes(':') && bare.includes(':'));
  if (name === undefined || name === '' || port) return undefined;
  return wild ? `*.${name}` : name;
}
