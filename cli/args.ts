/**
 * Command-line arguments: every command declares its flags as util.parseArgs options (strict: an unknown flag is
 * an error) and says how many positional arguments it takes. The same declarations drive `--help` and shell
 * completion, so a flag cannot exist in one and not the other.
 */
import type { ParseArgsConfig } from 'node:util';
import { AgentStreamsError, ErrorCode } from '../runtime/errors.ts';

export type Options = NonNullable<ParseArgsConfig['options']>;

export function usageError(message: string): AgentStreamsError {
  return new AgentStreamsError(ErrorCode.USAGE, message);
}

/**
 * The positional arguments, checked against `names` (`'file'` required, `'[group]'` optional, `'…'` suffix: any
 * number more). Too few or too many is a usage error that names what is missing or extra.
 */
export function expectPositionals(command: string, positionals: readonly string[], names: readonly string[]): string[] {
  const required = names.filter((n) => !n.startsWith('['));
  const variadic = names.some((n) => n.endsWith('…') || n.endsWith('...]'));
  if (positionals.length < required.length) {
    throw usageError(
      `${command} needs ${required
        .slice(positionals.length)
        .map((n) => `<${n}>`)
        .join(' ')}`,
    );
  }
  if (!variadic && positionals.length > names.length) {
    const extra = positionals.slice(names.length);
    throw usageError(
      `${command} takes ${names.length === 0 ? 'no arguments' : `${names.length} argument${names.length > 1 ? 's' : ''} (${names.join(' ')})`}, got extra ${extra.map((a) => `"${a}"`).join(' ')}`,
    );
  }
  return [...positionals];
}

/** A whole number within bounds, or a usage error naming the flag. */
export function wholeNumber(flag: string, raw: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const value = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || value < min || value > max)
    throw usageError(
      `--${flag} takes a whole number from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ''}, got "${raw}"`,
    );
  return value;
}

/** Levenshtein distance, for "did you mean" on a mistyped flag or command. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length]!;
}

/** The closest of `candidates` to `word`, if it is close enough to be a typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: { name: string; d: number } | undefined;
  for (const name of candidates) {
    const d = distance(word, name);
    if (!best || d < best.d) best = { name, d };
  }
  return best && best.d <= Math.max(2, Math.floor(word.length / 4)) ? best.name : undefined;
}
