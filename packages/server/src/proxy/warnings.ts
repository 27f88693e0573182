import type { ProxyConfig, RuleConfig } from './config.js';
import { ruleHostName } from './host.js';

type Match = NonNullable<RuleConfig['match']>;

/** A path prefix as rules compare it (see rules.ts): without a trailing "/", "" for every path. */
function prefixOf(path: string, sensitive: boolean): string {
  const given = path.endsWith('/') ? path.slice(0, -1) : path;
  return sensitive ? given : given.toLowerCase();
}

/**
 * Whether every request `later` matches is matched by `earlier` already, so that `later` never decides
 * one (the first matching rule decides). Only what can be told for sure: a pattern is compared with
 * nothing but a rule that matches every path.
 */
function covers(earlier: Match | undefined, later: Match | undefined, sensitive: boolean): boolean {
  if (earlier === undefined) return true;
  if (earlier.method !== undefined) {
    const methods = new Set(earlier.method.map((m) => m.toUpperCase()));
    if (later?.method === undefined || !later.method.every((m) => methods.has(m.toUpperCase()))) return false;
  }
  if (earlier.host !== undefined) {
    const hosts = new Set(earlier.host.map((h) => ruleHostName(h) ?? h));
    if (later?.host === undefined || !later.host.every((h) => hosts.has(ruleHostName(h) ?? h))) return false;
  }
  if (earlier.pattern !== undefined) return false;
  if (earlier.path === undefined) return true;
  const outer = prefixOf(earlier.path, sensitive);
  if (outer === '') return true;
  if (later?.path === undefined) return false;
  const inner = prefixOf(later.path, sensitive);
  return inner === outer || inner.startsWith(`${outer}/`);
}

/**
 * What a configuration that validates may still get wrong, in words for the log at start (and for
 * `--check`): it limits nothing (no rules), or a rule can never decide a request because an earlier one
 * matches all of its requests (a catch-all placed first).
 */
export function configWarnings(config: ProxyConfig): string[] {
  const rules = config.rules;
  if (rules.length === 0) {
    return ['no rules: every request is forwarded without a limit; add rules (see docs/proxy.md)'];
  }
  const warnings: string[] = [];
  for (const [i, later] of rules.entries()) {
    const earlier = rules.slice(0, i).find((e) => covers(e.match, later.match, config.caseSensitive));
    if (earlier !== undefined) {
      warnings.push(
        `rules[${i}] ("${later.name}") never applies: rule "${earlier.name}" before it matches all of its requests, and the first matching rule decides; move it up`,
      );
    }
  }
  return warnings;
}
