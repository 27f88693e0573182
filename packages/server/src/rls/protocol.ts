import { fileURLToPath } from 'node:url';
import {
  type GrpcObject,
  loadPackageDefinition,
  type ServiceClientConstructor,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { type Metadata, type MetadataValue, UNITS, type Unit } from './config.js';
import { InvalidRequest, MAX_COST, type RlsRequest } from './request.js';
import type { RlsResponse } from './service.js';

// Envoy's RLS v3 on the wire: the official protos (vendored under proto/, with where they came from), and
// the conversion between their messages, as proto-loader gives them, and the service's plain objects.

/** The folder of the vendored .proto files. */
export const PROTO_DIR = fileURLToPath(new URL('../../proto/', import.meta.url));
export const RLS_PROTO = 'envoy/service/ratelimit/v3/rls.proto';

/** `keepCase` keeps the protos' snake_case names; enums as their names; absent fields as their defaults. */
const LOADER = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

/** The RateLimitService, for a server's `addService` or a client's constructor. */
export function rateLimitService(): ServiceClientConstructor {
  const loaded = loadPackageDefinition(loadSync(RLS_PROTO, LOADER)) as unknown as {
    envoy: { service: { ratelimit: { v3: GrpcObject & { RateLimitService: ServiceClientConstructor } } } };
  };
  return loaded.envoy.service.ratelimit.v3.RateLimitService;
}

/** Marks a message that protobuf could not decode (see `serverDefinition`). */
export const UNREADABLE = Symbol('unreadable');

/**
 * The service's definition for a server. grpc-js answers a message its deserializer throws on with
 * INTERNAL; a client's malformed bytes are its own fault, so the decoding error is kept as a marked
 * request instead, which `fromWire` refuses as INVALID_ARGUMENT.
 */
export function serverDefinition(): ServiceDefinition {
  const definition = rateLimitService().service;
  return Object.fromEntries(
    Object.entries(definition).map(([name, method]) => {
      const decode = method.requestDeserialize;
      const lenient = (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch (error) {
          return { [UNREADABLE]: (error as Error).message };
        }
      };
      return [name, { ...method, requestDeserialize: lenient }];
    }),
  );
}

interface WireEntry {
  key?: string;
  value?: string;
}
/** A uint64 as loaded, or as another loader or client gives it (see `hitsOf`). */
type WireUint64 = number | string | bigint | object | null;
interface WireDescriptor {
  entries?: WireEntry[];
  limit?: { requests_per_unit?: number; unit?: string } | null;
  /** A `google.protobuf.UInt64Value`: null when unset, so that a set 0 is told from no value. */
  hits_addend?: { value?: WireUint64 } | null;
}
export interface WireRequest {
  domain?: string;
  descriptors?: WireDescriptor[];
  /** A number as loaded (`longs: Number`); a string, bigint or Long when given by other means. */
  hits_addend?: WireUint64;
  /** Set instead of the fields when the bytes were not a RateLimitRequest (see `serverDefinition`). */
  [UNREADABLE]?: string;
}

const UNIT_NAMES = new Set(Object.keys(UNITS));

/**
 * `hits_addend` as a number: a uint32 in Envoy's v3 protos, but a uint64 elsewhere and, from a loader
 * or client other than ours, a decimal string, a bigint or a Long. One past every limit is `MAX_COST`
 * (the number would lose its exactness past 2^53 and the library refuses such a cost).
 */
function hitsOf(raw: WireUint64 | undefined, field = 'hits_addend'): number {
  if (raw === undefined || raw === null) return 0;
  if (typeof raw === 'number') return raw;
  const text = String(raw);
  if (!/^\d+$/.test(text))
    throw new InvalidRequest(`${field} must be a non-negative integer; got ${text.slice(0, 32)}`);
  const big = BigInt(text);
  return big > BigInt(MAX_COST) ? MAX_COST : Number(big);
}

/** A request as the service reads it; what cannot be read is an `InvalidRequest`. */
export function fromWire(wire: WireRequest): RlsRequest {
  const unreadable = wire[UNREADABLE];
  if (unreadable !== undefined)
    throw new InvalidRequest(`the request is not a RateLimitRequest message: ${unreadable.slice(0, 80)}`);
  return {
    domain: wire.domain ?? '',
    hitsAddend: hitsOf(wire.hits_addend),
    descriptors: (wire.descriptors ?? []).map((d, i) => {
      const entries = (d.entries ?? []).map((e) => ({ key: e.key ?? '', value: e.value ?? '' }));
      const own =
        d.hits_addend === null || d.hits_addend === undefined
          ? {}
          : { hitsAddend: hitsOf(d.hits_addend.value, `descriptors[${i}].hits_addend`) };
      if (d.limit === null || d.limit === undefined) return { entries, ...own };
      const unit = String(d.limit.unit ?? '').toLowerCase();
      if (!UNIT_NAMES.has(unit))
        throw new InvalidRequest(`descriptors[${i}].limit.unit must be a unit; got ${d.limit.unit}`);
      return {
        entries,
        ...own,
        limit: { requests_per_unit: d.limit.requests_per_unit ?? 0, unit: unit as Unit },
      };
    }),
  };
}

/** A duration of ms as google.protobuf.Duration. */
function duration(ms: number): { seconds: number; nanos: number } {
  const whole = Math.max(0, Math.floor(ms / 1000));
  return { seconds: whole, nanos: Math.max(0, Math.round(ms - whole * 1000)) * 1_000_000 };
}

/** A value as google.protobuf.Value: camelCase, as protobufjs defines the well-known types whatever `keepCase`. */
function protoValue(value: MetadataValue): object {
  if (value === null) return { nullValue: 'NULL_VALUE' };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(protoValue) } };
  return { structValue: structOf(value as Metadata) };
}

/** A mapping as google.protobuf.Struct. */
export function structOf(mapping: Metadata): object {
  return { fields: Object.fromEntries(Object.entries(mapping).map(([k, v]) => [k, protoValue(v)])) };
}

/** The service's answer as a RateLimitResponse. */
export function toWire(response: RlsResponse): object {
  return {
    overall_code: response.overallCode,
    statuses: response.statuses.map((s) => ({
      code: s.code,
      ...(s.currentLimit === undefined
        ? {}
        : {
            current_limit: {
              name: s.currentLimit.name,
              requests_per_unit: s.currentLimit.requestsPerUnit,
              unit: s.currentLimit.unit.toUpperCase(),
            },
          }),
      limit_remaining: s.limitRemaining,
      ...(s.durationUntilReset === undefined ? {} : { duration_until_reset: duration(s.durationUntilReset) }),
    })),
    response_headers_to_add: response.responseHeadersToAdd.map(([key, value]) => ({ key, value })),
    ...(response.dynamicMetadata === undefined
      ? {}
      : { dynamic_metadata: structOf(response.dynamicMetadata) }),
  };
}
