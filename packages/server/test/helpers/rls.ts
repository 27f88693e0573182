import { type Client, credentials, type ServiceError } from '@grpc/grpc-js';
import { pino } from 'pino';
import { rateLimitService } from '../../src/rls/protocol.js';
import { type RlsOptions, type RlsSettings, type RunningRls, startRls } from '../../src/rls/rls.js';

// A real gRPC client of `floodgate rls`, over Envoy's own protos, and a server started for one test.

export type Entry = [key: string, value: string];
export interface Status {
  code: string;
  current_limit: { name: string; requests_per_unit: number; unit: string } | null;
  limit_remaining: number;
  duration_until_reset: { seconds: number; nanos: number } | null;
}
/** A google.protobuf.Struct as proto-loader gives it (camelCase, each Value's kind named). */
export interface WireStruct {
  fields: Record<string, WireValue>;
}
interface WireValue {
  kind?: string;
  [kind: string]: unknown;
}
export interface Reply {
  overall_code: string;
  statuses: Status[];
  response_headers_to_add: { key: string; value: string }[];
  dynamic_metadata: WireStruct | null;
}

/** A Struct read back as plain JSON, for assertions. */
export function jsonOf(struct: WireStruct): Record<string, unknown> {
  const value = (v: WireValue): unknown => {
    const kind = v.kind as string;
    const held = v[kind];
    if (kind === 'structValue') return jsonOf(held as WireStruct);
    if (kind === 'listValue') return ((held as { values?: WireValue[] }).values ?? []).map(value);
    if (kind === 'nullValue') return null;
    return held;
  };
  return Object.fromEntries(Object.entries(struct.fields).map(([k, v]) => [k, value(v)]));
}

type Call = (request: object, callback: (error: ServiceError | null, reply: Reply) => void) => void;
export type RlsClient = Client & { ShouldRateLimit: Call };

export function clientOf(address: string): RlsClient {
  const Service = rateLimitService();
  return new Service(address, credentials.createInsecure()) as unknown as RlsClient;
}

export function ask(client: RlsClient, request: object): Promise<Reply> {
  return new Promise((resolve, reject) =>
    client.ShouldRateLimit(request, (error, reply) => (error === null ? resolve(reply) : reject(error))),
  );
}

/** The header fields of an answer, each name with every value it was given. */
export function headersOf(reply: Reply): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const { key, value } of reply.response_headers_to_add) out.set(key, [...(out.get(key) ?? []), value]);
  return out;
}

/** A server on the configuration at `config` (a file or a folder), on free ports, stopped after `run`. */
export async function withRls(
  config: string,
  run: (client: RlsClient, rls: RunningRls) => Promise<void>,
  store = 'memory',
  options: RlsOptions = {},
  settings: Partial<RlsSettings> = {},
): Promise<void> {
  const rls = await startRls(
    config,
    { listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, store, ...settings },
    { log: pino({ level: 'silent' }), watch: false, ...options },
  );
  const client = clientOf(rls.address);
  try {
    await run(client, rls);
  } finally {
    client.close();
    await rls.stop();
  }
}
