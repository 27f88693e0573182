/**
 * `floodgate/admin`: the admin API and the live dashboard over limiters' traffic, as a `node:http` handler
 * to mount on a port of the application's own.
 */

export { type ClientDisplay, displayClient } from '../observe/client.js';
export { OUTCOMES, type Outcome, type SeriesPoint } from '../observe/series.js';
export { type HeavyHitter, mergeHeavyHitters, SpaceSaving } from '../observe/space-saving.js';
export { type SuggestedLimit, type Suggestion, suggestLimits } from '../observe/suggest.js';
export {
  type BucketSnapshot,
  type TopClients,
  Traffic,
  type TrafficOptions,
  type TrafficWindow,
  topOf,
} from '../observe/traffic.js';
export { compact, Fleet, type FleetClient, type FleetOptions } from './fleet.js';
export {
  type AdminAction,
  type AdminHandler,
  type AdminOptions,
  adminHandler,
  type LimiterSource,
} from './handler.js';
