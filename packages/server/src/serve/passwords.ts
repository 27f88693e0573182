import { createHmac, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

// scrypt with N=2^15: tens of ms per check, so a stolen table is slow to attack. Stored as
// scrypt$N$r$p$salt$hash (base64url), so the parameters can be raised later without breaking old hashes.
const N = 2 ** 15;
const R = 8;
const P = 1;
const KEYLEN = 32;
const MAXMEM = 64 * 1024 * 1024;

function derive(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, KEYLEN, { N: n, r, p, maxmem: MAXMEM }, (error, key) =>
      error ? reject(error) : resolve(key),
    );
  });
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, N, R, P);
  return ['scrypt', N, R, P, salt.toString('base64url'), key.toString('base64url')].join('$');
}

/** True when `password` matches `stored`; false for any malformed stored value. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || salt === undefined || hash === undefined) return false;
  const expected = Buffer.from(hash, 'base64url');
  const key = await derive(password, Buffer.from(salt, 'base64url'), Number(n), Number(r), Number(p));
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** A hash to verify against when the user does not exist, so unknown names take as long as wrong passwords. */
let decoy: Promise<string> | undefined;
export function decoyHash(): Promise<string> {
  decoy ??= hashPassword(randomBytes(16).toString('hex'));
  return decoy;
}

/** Right passwords remembered, at most this many: past it the oldest are forgotten. */
const REMEMBERED = 10_000;

/**
 * Password checks with the slow hash done once per stored hash and password. A right answer is
 * remembered under an HMAC (with a key made for this process) of the stored hash and the password: a
 * changed password is a new stored hash, so it never matches an old entry, and a removed user has no
 * stored hash to match. Wrong answers are not remembered: each costs the hash again.
 */
export class PasswordChecks {
  readonly #key = randomBytes(32);
  readonly #right = new Set<string>();

  async verify(password: string, stored: string | undefined): Promise<boolean> {
    if (stored === undefined) {
      // Unknown names take as long as wrong passwords.
      await verifyPassword(password, await decoyHash());
      return false;
    }
    const id = createHmac('sha256', this.#key)
      .update(stored)
      .update('\u0000')
      .update(password)
      .digest('base64url');
    if (this.#right.has(id)) return true;
    if (!(await verifyPassword(password, stored))) return false;
    if (this.#right.size >= REMEMBERED) this.#right.delete(this.#right.values().next().value!);
    this.#right.add(id);
    return true;
  }
}
