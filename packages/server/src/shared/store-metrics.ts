import type { RedisStoreStats } from 'floodgate/redis';
import { Counter, type Registry } from 'prom-client';

/** A counter that shows running totals the store keeps itself, read when scraped. */
function totals(
  registry: Registry,
  name: string,
  help: string,
  read: Record<string, () => number>,
  label?: string,
): void {
  new Counter({
    name,
    help,
    labelNames: label === undefined ? [] : [label],
    registers: [registry],
    collect() {
      this.reset();
      for (const [value, total] of Object.entries(read)) {
        if (label === undefined) this.inc(total());
        else this.inc({ [label]: value }, total());
      }
    },
  });
}

/**
 * Failed calls to the rate-limit store, whatever the command: the one declaration of
 * `floodgate_store_errors_total` (the runtime counts into it from every store it makes).
 */
export function registerStoreErrors(registry: Registry): Counter {
  return new Counter({
    name: 'floodgate_store_errors_total',
    help: 'Failed calls to the rate-limit store',
    registers: [registry],
  });
}

/**
 * The Redis store's own counts: how decisions were made (in a script call, from a quota lease, from the deny
 * cache), script calls, and what became of leased units.
 */
export function registerStoreMetrics(registry: Registry, stats: RedisStoreStats): void {
  totals(registry, 'floodgate_store_script_calls_total', 'Script calls sent to Redis for decisions', {
    calls: () => stats.scripts,
  });
  totals(
    registry,
    'floodgate_store_decisions_total',
    'Decisions by where they were made: in a script call, from a quota lease, from the deny cache',
    { script: () => stats.decisions, lease: () => stats.localDecisions, deny_cache: () => stats.cacheHits },
    'path',
  );
  totals(registry, 'floodgate_store_leases_total', 'Quota leases taken from Redis', {
    leases: () => stats.leases,
  });
  totals(
    registry,
    'floodgate_store_lease_units_total',
    'Leased units: taken, given back to Redis, lapsed unspent',
    { leased: () => stats.leasedUnits, returned: () => stats.returnedUnits, lapsed: () => stats.lapsedUnits },
    'fate',
  );
}
