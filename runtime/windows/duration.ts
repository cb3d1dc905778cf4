/**
 * Durations as users write them — `500`, `'500ms'`, `'5s'`, `'1m'`, `'1h'`, `'1d'` — compiled once into whole
 * milliseconds, so the pure code downstream only ever sees numbers.
 */
import { AgentStreamsError, ErrorCode } from '../errors.ts';

export const DurationUnit = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
} as const;

export type DurationUnit = keyof typeof DurationUnit;

/** Whole milliseconds as a number, or a number with a unit: `'250ms'`, `'5s'`, `'1.5m'`, `'1h'`, `'7d'`. */
export type Duration = number | string;

const PATTERN = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/;
const EXPECTED = `expected whole milliseconds >= 0 (a number) or a number with a unit (${Object.keys(DurationUnit).join(', ')}) such as '500ms', '5s', '1m', '1h' or '1d'`;

export type DurationParse = { ok: true; ms: number } | { ok: false; reason: string };

/** Parses without throwing, for callers that collect every problem of an options object before failing. */
export function parseDuration(value: unknown): DurationParse {
  const shown =
    typeof value === 'number' || typeof value === 'bigint' ? String(value) : (JSON.stringify(value) ?? String(value));
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0)
      return { ok: false, reason: `${shown} is not a whole number of milliseconds >= 0; ${EXPECTED}` };
    return { ok: true, ms: value };
  }
  if (typeof value !== 'string')
    return { ok: false, reason: `${shown} (${value === null ? 'null' : typeof value}) is not a duration; ${EXPECTED}` };
  const match = PATTERN.exec(value.trim());
  if (!match) {
    const hint = /^\s*\d+(\.\d+)?\s*$/.test(value) ? ' (a string needs a unit; pass a number for milliseconds)' : '';
    return { ok: false, reason: `${shown} is not a duration${hint}; ${EXPECTED}` };
  }
  const unit = DurationUnit[match[2] as DurationUnit];
  const exact = Number(match[1]) * unit;
  const ms = Math.round(exact);
  // Tolerates binary rounding ('1.1s' is 1100.0000000000002 in floating point) but not sub-millisecond values.
  if (Math.abs(exact - ms) > 1e-6) return { ok: false, reason: `${shown} is not a whole number of milliseconds` };
  if (!Number.isSafeInteger(ms)) return { ok: false, reason: `${shown} is too large` };
  return { ok: true, ms };
}

/** Whole milliseconds for `value`; throws `AS_DURATION_INVALID` naming the bad value. `name` says what it was for. */
export function duration(value: Duration, name?: string): number {
  const parsed = parseDuration(value);
  if (parsed.ok) return parsed.ms;
  throw new AgentStreamsError(
    ErrorCode.DURATION_INVALID,
    `Invalid duration${name === undefined ? '' : ` for ${name}`}: ${parsed.reason}.`,
    {
      details: { value, ...(name === undefined ? {} : { name }) },
    },
  );
}
