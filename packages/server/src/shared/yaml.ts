import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { usageError } from './errors.js';

/** Reads a YAML (or JSON) file of settings: a mapping, or nothing. Errors say which file and why. */
export function readSettingsFile(file: string, example: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw usageError(
      `cannot read config file "${file}": ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (error) {
    throw usageError(`${file}: not valid YAML: ${(error as Error).message.split('\n')[0]}`);
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw usageError(`${file}: must be a mapping of settings (${example}, ...)`);
  }
  return data as Record<string, unknown>;
}
