import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

// Certificates for TLS tests, made by openssl in a folder of the test's: EC P-256, valid a day, for
// 127.0.0.1 and localhost.

export interface Pem {
  readonly cert: string;
  readonly key: string;
  /** The certificate's PEM text. */
  readonly pem: string;
}

const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A self-signed certificate `name.crt` (and `name.key`) in `dir`, its subject's CN `cn`. */
export function selfSigned(dir: string, name: string, cn = name, ca = false): Pem {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  const extensions = ca
    ? ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign']
    : ['-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'];
  openssl([
    'req',
    '-x509',
    ...EC,
    '-keyout',
    key,
    '-out',
    cert,
    '-days',
    '1',
    '-subj',
    `/CN=${cn}`,
    ...extensions,
  ]);
  return { cert, key, pem: readFileSync(cert, 'utf8') };
}

/** A certificate `name.crt` issued by the CA `issuer` (one made with `selfSigned(..., true)`). */
export function issuedBy(issuer: Pem, dir: string, name: string, cn = name): Pem {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  const request = join(dir, `${name}.csr`);
  openssl(['req', '-new', ...EC, '-keyout', key, '-out', request, '-subj', `/CN=${cn}`]);
  openssl([
    'x509',
    '-req',
    '-in',
    request,
    '-CA',
    issuer.cert,
    '-CAkey',
    issuer.key,
    '-CAcreateserial',
    '-out',
    cert,
    '-days',
    '1',
  ]);
  return { cert, key, pem: readFileSync(cert, 'utf8') };
}
