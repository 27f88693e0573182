import { experimental, ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { readTls, type TlsFiles, type TlsMaterial, type TlsNames, watchTls } from '../shared/tls.js';

// The gRPC listener's credentials: plain, or TLS (with a client CA, mutual TLS) from files read again when
// they change. grpc-js takes certificates that change through a certificate provider; its own file watcher
// is not used because it hands on whatever it last read, and a pair that does not load then makes the
// server drop every new connection. This provider only ever hands on a pair that loads.

export const TLS_NAMES: TlsNames = {
  cert: '--tls-cert',
  key: '--tls-key',
  clientCa: '--tls-client-ca',
  pair: '--tls-cert/--tls-key',
};

type IdentityListener = experimental.IdentityCertificateUpdateListener;
type CaListener = experimental.CaCertificateUpdateListener;

/** The certificates last read that load; every listener hears each new set. */
class CheckedCertificates implements experimental.CertificateProvider {
  #material: TlsMaterial;
  readonly #identity = new Set<IdentityListener>();
  readonly #ca = new Set<CaListener>();

  constructor(material: TlsMaterial) {
    this.#material = material;
  }

  update(material: TlsMaterial): void {
    this.#material = material;
    // The identity first, then the CA: grpc-js rebuilds its context at each, from both as last heard.
    for (const listener of this.#identity) this.#tellIdentity(listener);
    for (const listener of this.#ca) this.#tellCa(listener);
  }

  #tellIdentity(listener: IdentityListener): void {
    listener({ certificate: this.#material.cert, privateKey: this.#material.key });
  }

  #tellCa(listener: CaListener): void {
    const ca = this.#material.clientCa;
    listener(ca === undefined ? null : { caCertificate: ca });
  }

  // A listener hears the current set a moment after it is added, not during: grpc-js adds its server's
  // own watcher only once its listeners are added, and a set told before then would not reach the server.
  addIdentityCertificateListener(listener: IdentityListener): void {
    this.#identity.add(listener);
    queueMicrotask(() => {
      if (this.#identity.has(listener)) this.#tellIdentity(listener);
    });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.#identity.delete(listener);
  }

  addCaCertificateListener(listener: CaListener): void {
    this.#ca.add(listener);
    queueMicrotask(() => {
      if (this.#ca.has(listener)) this.#tellCa(listener);
    });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.#ca.delete(listener);
  }
}

/**
 * The listener's credentials. With `files`, read now (a bad file throws, naming its flag), and read again on
 * a change once `watch` is called (when the server listens: a failed start leaves no watcher behind); with
 * `clientCa`, clients must present a certificate that chains to it.
 */
export function grpcCredentials(files: TlsFiles | undefined): {
  credentials: ServerCredentials;
  watch(log: Logger): { close(): void };
} {
  if (files === undefined)
    return { credentials: ServerCredentials.createInsecure(), watch: () => ({ close() {} }) };
  const certificates = new CheckedCertificates(readTls(files, TLS_NAMES));
  const mutual = files.clientCa !== undefined;
  // grpc-js's declaration names the first argument the CA provider, but its code takes it as the identity's;
  // the second is the CA's, null for none.
  const credentials = experimental.createCertificateProviderServerCredentials(
    certificates,
    mutual ? certificates : null,
    mutual,
  );
  return {
    credentials,
    watch: (log) => watchTls(files, TLS_NAMES, (material) => certificates.update(material), log),
  };
}
